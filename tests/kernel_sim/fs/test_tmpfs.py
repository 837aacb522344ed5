"""tmpfs: limits at the exact byte and node, the reserve tunables, page and kmem bookkeeping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kernel_sim.fs import tmpfs
from kernel_sim.fs.tmpfs import TmpfsError, TmpfsMount, TmpfsTunables

PAGE = 4096
MINRES = 4 * 1024 * 1024 // PAGE            # TMPFS_PAGES_MINRESERVED, sys/fs/tmpfs/tmpfs.h
META = 200 + 36                              # sizeof(tmpfs_node) + sizeof(tmpfs_dirent), ILP32 (derived)
NPP = -(-PAGE // META)                       # howmany(PAGE_SIZE, META)


def howmany(x: int, y: int) -> int:
    return -(-x // y)


class FakeMem:
    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.buf = bytearray(b"\xa5" * size)   # garbage: pages must be zeroed on alloc

    def read(self, pa: int, size: int) -> bytes:
        return bytes(self.buf[pa - self.base:pa - self.base + size])

    def write(self, pa: int, data) -> None:
        data = bytes(data)
        self.buf[pa - self.base:pa - self.base + len(data)] = data


class FakePages:
    """PhysAllocator's interface over a small pool."""

    def __init__(self, npages: int, base: int = 0x4000_0000) -> None:
        self.base = base
        self.npages = npages
        self.phys = FakeMem(base, npages * PAGE)
        self.free_set = set(range(npages))

    @property
    def free_count(self) -> int:
        return len(self.free_set)

    def alloc(self, npages: int) -> list[int]:
        if npages > len(self.free_set):
            raise RuntimeError("out of pages")
        taken = sorted(self.free_set)[:npages]
        self.free_set -= set(taken)
        out = [self.base + i * PAGE for i in taken]
        for pa in out:
            self.phys.write(pa, bytes(PAGE))
        return out

    def free(self, pa: int, npages: int) -> None:
        first = (pa - self.base) // PAGE
        for i in range(first, first + npages):
            assert i not in self.free_set, "double free"
            self.free_set.add(i)


class FakeKmem:
    def __init__(self, limit: int = 1 << 30) -> None:
        self.limit = limit
        self.charges: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.charges.values())

    def charge(self, mtype: str, nbytes: int) -> bool:
        if self.total + nbytes > self.limit:
            return False
        self.charges[mtype] = self.charges.get(mtype, 0) + nbytes
        return True

    def uncharge(self, mtype: str, nbytes: int) -> None:
        self.charges[mtype] -= nbytes
        assert self.charges[mtype] >= 0


def make(options=None, *, npages=4096, swap=0, kmem=None, covered=(0, 0, 0o755), tunables=None):
    pages = FakePages(npages)
    kmem = kmem or FakeKmem()
    clock = itertools.count(1000)
    m = TmpfsMount.mount(dict(options or {}), pages=pages, kmem=kmem, swap_pages_free=lambda: swap,
                         now=lambda: float(next(clock)), covered=covered, tunables=tunables)
    return m, pages, kmem


def err(exc: pytest.ExceptionInfo) -> str:
    return exc.value.errno_name


# ------------------------------------------------------------------ limits
def test_size_limit_enospc_at_exact_byte():
    m, _, _ = make({"size": "40k"})
    pages_max = howmany(40 * 1024, PAGE)
    f = m.create(2, "f", 0o644, 0, 0)
    meta = howmany(2 * META, PAGE)                  # root + f
    limit = (pages_max - meta) * PAGE
    assert m.write(f, 0, b"x" * limit) == limit
    with pytest.raises(TmpfsError) as e:
        m.write(f, limit, b"y")
    assert err(e) == "ENOSPC" and e.value.errno == 28
    assert m.stat(f).st_size == limit               # nothing half-written
    assert m.read(f, limit - 1, 10) == b"x"
    with pytest.raises(TmpfsError) as e:
        m.truncate(f, limit + 1)
    assert err(e) == "ENOSPC"
    # A new node needs one page of room: none left.
    with pytest.raises(TmpfsError) as e:
        m.create(2, "g", 0o644, 0, 0)
    assert err(e) == "ENOSPC"
    m.truncate(f, limit - PAGE)
    m.create(2, "g", 0o644, 0, 0)


def test_size_rounding_and_statfs():
    m, _, _ = make({"size": "5000"})
    assert m.pages_max == 2
    s = m.statfs()
    assert (s.f_blocks, s.f_bsize) == (2, PAGE)
    assert s.f_bfree == 2 - howmany(META, PAGE)
    assert s.f_files == 2 * NPP and s.f_ffree == 2 * NPP - 1


def test_inodes_limit():
    m, _, _ = make({"inodes": "10"})
    assert m.nodes_max == 10
    for i in range(9):                               # the root is node 1 of 10
        m.create(2, f"f{i}", 0o644, 0, 0)
    with pytest.raises(TmpfsError) as e:
        m.mkdir(2, "d", 0o755, 0, 0)
    assert err(e) == "ENOSPC"
    m.unlink(2, "f0")
    m.mkdir(2, "d", 0o755, 0, 0)


@pytest.mark.parametrize("given", ["0", "3"])
def test_inodes_default_from_pages(given):
    m, _, _ = make({"size": "1m", "inodes": given})
    assert m.nodes_max == 256 * NPP
    m2, _, _ = make({})
    assert m2.nodes_max == 2**31 - 1                # unlimited pages: INT_MAX


def test_maxfilesize_efbig_at_exact_byte():
    m, _, _ = make({"maxfilesize": "10000"})
    f = m.create(2, "f", 0o644, 0, 0)
    m.write(f, 0, b"a" * 10000)
    with pytest.raises(TmpfsError) as e:
        m.write(f, 10000, b"b")
    assert err(e) == "EFBIG" and e.value.errno == 27
    with pytest.raises(TmpfsError) as e:
        m.write(f, 9999, b"bb")                      # all or nothing
    assert err(e) == "EFBIG"
    assert m.read(f, 9990, 100) == b"a" * 10
    with pytest.raises(TmpfsError):
        m.truncate(f, 10001)
    m.truncate(f, 0)
    m.truncate(f, 10000)
    assert m.read(f, 0, 10000) == bytes(10000)
    m0, _, _ = make({"maxfilesize": "0"})
    assert m0.maxfilesize == 2**63 - 1


# ------------------------------------------------------------------ tunables
def test_memory_reserved_minimum():
    t = TmpfsTunables(avail_at_init=10_000)
    with pytest.raises(TmpfsError) as e:
        t.memory_reserved = MINRES * PAGE - 1
    assert err(e) == "EINVAL"
    with pytest.raises(TmpfsError):
        t.memory_reserved = PAGE * (MINRES - 1)
    t.memory_reserved = MINRES * PAGE
    assert t.pages_reserved == MINRES
    with pytest.raises(TmpfsError):
        t.memory_percent = 0
    with pytest.raises(TmpfsError):
        t.memory_percent = 101


def test_memory_percent_95_default_and_available_pages():
    avail = 100_000
    t = TmpfsTunables(avail_at_init=avail)
    assert t.memory_percent == 95
    assert t.pages_reserved == avail * 5 // 100
    t.memory_percent = 50
    assert t.pages_reserved == avail // 2
    small = TmpfsTunables(avail_at_init=3000)       # 5% of 3000 is below the minimum
    assert small.pages_reserved == MINRES
    t.memory_percent = 95
    m, pages, _ = make({}, npages=4096, swap=96_000, tunables=t)
    assert m.mem_avail() == 4096 + 96_000 - avail * 5 // 100
    assert m.statfs().f_blocks == m.pages_used + m.mem_avail()


def test_mount_enospc_when_reserve_not_available():
    t = TmpfsTunables(avail_at_init=0)              # reserve = the minimum
    with pytest.raises(TmpfsError) as e:
        make({}, npages=2 * MINRES - 1, tunables=t)
    assert err(e) == "ENOSPC"
    make({}, npages=2 * MINRES, tunables=TmpfsTunables(avail_at_init=0))


def test_reserve_stops_growth():
    t = TmpfsTunables(avail_at_init=0)
    m, pages, _ = make({}, npages=2 * MINRES + 40, tunables=t)
    f = m.create(2, "f", 0o644, 0, 0)
    # avail = free - reserve; growth by k pages needs avail >= k.
    room = pages.free_count - MINRES
    m.truncate(f, room * PAGE)                      # accounting only: holes take no page
    m.write(f, 0, b"z" * (room * PAGE))
    with pytest.raises(TmpfsError) as e:
        m.write(f, room * PAGE, b"!")
    assert err(e) == "ENOSPC"


# ------------------------------------------------------------------ pages and kmem
def test_write_until_pages_run_out_then_everything_comes_back():
    t = TmpfsTunables(avail_at_init=0)
    kmem = FakeKmem()
    m, pages, _ = make({}, npages=64, swap=10_000, kmem=kmem, tunables=t)
    f = m.create(2, "big", 0o644, 0, 0)
    m.write(f, 0, b"q" * (64 * PAGE))
    assert pages.free_count == 0
    with pytest.raises(TmpfsError) as e:
        m.write(f, 64 * PAGE, b"more")
    assert err(e) == "ENOSPC"
    assert m.stat(f).st_size == 64 * PAGE
    g = m.create(2, "g", 0o644, 0, 0)
    with pytest.raises(TmpfsError):
        m.write(g, 0, b"x")
    assert m.stat(g).st_size == 0 and m.data_pages == 64
    m.unlink(2, "big")
    assert pages.free_count == 64
    m.write(g, 5 * PAGE, b"x" * 3 * PAGE)            # pages 5..7; 0..4 are holes
    assert pages.free_count == 61
    assert m.read(g, 0, 6 * PAGE)[:5 * PAGE] == bytes(5 * PAGE)
    m.mkdir(2, "d", 0o755, 0, 0)
    m.symlink(2, "l", "/some/where")
    m.unmount()
    assert pages.free_count == 64
    assert all(v == 0 for v in kmem.charges.values()) and set(kmem.charges) == {
        "TMPFS node", "M_TMPFSDIR", "M_TMPFSNAME"}
    with pytest.raises(TmpfsError):
        m.stat(2)


def test_kmem_exhaustion_is_enospc():
    kmem = FakeKmem(limit=200 + 3 * 200 + 2 * 36 + 10)
    m, _, _ = make({}, kmem=kmem)
    m.create(2, "a", 0o644, 0, 0)
    m.create(2, "b", 0o644, 0, 0)
    before = dict(kmem.charges)
    with pytest.raises(TmpfsError) as e:
        m.create(2, "c" * 20, 0o644, 0, 0)
    assert err(e) == "ENOSPC"
    assert kmem.charges == before and m.nodes_inuse == 3


def test_truncate_frees_pages_and_zeroes_tail():
    m, pages, _ = make({})
    f = m.create(2, "f", 0o644, 0, 0)
    free0 = pages.free_count
    m.write(f, 0, b"\xff" * (3 * PAGE))
    assert pages.free_count == free0 - 3
    m.truncate(f, PAGE + 10)
    assert pages.free_count == free0 - 2
    m.truncate(f, 3 * PAGE)
    assert m.read(f, 0, 3 * PAGE) == b"\xff" * (PAGE + 10) + bytes(2 * PAGE - 10)


# ------------------------------------------------------------------ options
def test_option_parsing():
    m, _, _ = make({"size": "1m", "uid": "1001", "gid": "20", "mode": "1777", "nonc": "", "pgread": "",
                    "export": "", "nosymfollow": "", "easize": "64k", "from": "swap"})
    assert m.pages_max == 256
    st_ = m.stat(tmpfs.ROOT_INO)
    assert (st_.st_ino, st_.st_uid, st_.st_gid, st_.st_mode) == (2, 1001, 20, 0o41777)
    assert m.nonc and m.pgread and m.export and m.nosymfollow and not m.nomtime
    assert m.ea_max == 65536 and m.source == "swap"
    for sfx, mult in [("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("p", 1 << 50)]:
        assert tmpfs.parse_size("3" + sfx) == 3 * mult
        assert tmpfs.parse_size("3" + sfx.upper()) == 3 * mult
    with pytest.raises(ValueError):
        tmpfs.parse_size("3q")
    with pytest.raises(TmpfsError) as e:
        make({"bogus": "1"})
    assert err(e) == "EINVAL"
    d, _, _ = make({})
    assert d.ea_max == 16 * 1024 * 1024 and d.pages_max == 2**32 - 1


def test_root_from_covered_mount_point():
    m, _, _ = make({}, covered=(5, 6, 0o700))
    s = m.stat(2)
    assert (s.st_uid, s.st_gid, s.st_mode & 0o7777, s.st_nlink) == (5, 6, 0o700, 2)
    m2, _, _ = make({"mode": "755"}, covered=(5, 6, 0o700))
    assert m2.stat(2).st_mode & 0o7777 == 0o755 and m2.stat(2).st_uid == 5


def test_update_rules():
    m, pages, kmem = make({"size": "1m"})
    kw = dict(pages=pages, kmem=kmem, swap_pages_free=lambda: 0, now=lambda: 0.0, covered=None, update_of=m)
    assert TmpfsMount.mount({"size": "1m", "nomtime": "", "from": "x", "easize": "1k"}, **kw) is m
    assert m.nomtime and m.source == "x" and m.ea_max == 1024
    TmpfsMount.mount({"export": "", "nosymfollow": ""}, **kw)
    assert not m.nomtime and m.export and m.nosymfollow
    for bad in ({"size": "2m"}, {"uid": "1"}, {"inodes": "5"}, {"maxfilesize": "1"}, {"mode": "777"},
                {"nonc": ""}, {"pgread": ""}, {"bogus": ""}):
        with pytest.raises(TmpfsError) as e:
            TmpfsMount.mount(bad, **kw)
        assert err(e) == "EOPNOTSUPP" and e.value.errno == 45


def test_nomtime_only_affects_mapped_writes():
    m, _, _ = make({"nomtime": ""})
    f = m.create(2, "f", 0o644, 0, 0)
    t0 = m.stat(f).st_mtime
    m.write(f, 0, b"a", mapped=True)
    assert m.stat(f).st_mtime == t0
    m.write(f, 0, b"a")
    assert m.stat(f).st_mtime > t0


# ------------------------------------------------------------------ namespace
def test_namespace_errors():
    m, _, _ = make({})
    d = m.mkdir(2, "d", 0o755, 0, 0)
    f = m.create(d, "f", 0o644, 0, 0)
    assert m.lookup(2, "d") == d and m.lookup(d, "..") == 2 and m.lookup(d, ".") == d
    cases = [
        (lambda: m.lookup(2, "nope"), "ENOENT"),
        (lambda: m.create(2, "d", 0o644, 0, 0), "EEXIST"),
        (lambda: m.lookup(f, "x"), "ENOTDIR"),
        (lambda: m.rmdir(2, "d"), "ENOTEMPTY"),
        (lambda: m.unlink(2, "d"), "EISDIR"),
        (lambda: m.rmdir(d, "f"), "ENOTDIR"),
        (lambda: m.read(d, 0, 1), "EISDIR"),
        (lambda: m.create(2, "n" * 256, 0o644, 0, 0), "ENAMETOOLONG"),
        (lambda: m.readlink(f), "EINVAL"),
        (lambda: m.rename(2, "d", d, "sub"), "EINVAL"),
        (lambda: m.symlink(2, "l", "t" * 1024), "ENAMETOOLONG"),
    ]
    for fn, name in cases:
        with pytest.raises(TmpfsError) as e:
            fn()
        assert err(e) == name
    m.create(2, "n" * 255, 0o644, 0, 0)
    link = m.symlink(2, "l", "d/f")
    assert m.readlink(link) == "d/f" and m.stat(link).st_size == 3
    m.rename(d, "f", 2, "g")
    assert m.lookup(2, "g") == f
    assert sorted(n for n, _, _ in m.readdir(2)) == sorted([".", "..", "d", "g", "l", "n" * 255])
    m.rmdir(2, "d")
    assert m.stat(2).st_nlink == 2


# ------------------------------------------------------------------ model-based
class TmpfsModel(RuleBasedStateMachine):
    """Random create/write/truncate/unlink/read against a dict of bytearrays."""

    def __init__(self) -> None:
        super().__init__()
        self.m, self.pages, self.kmem = make({}, npages=MINRES * 2 + 64)
        self.model: dict[str, bytearray] = {}
        self.inos: dict[str, int] = {}

    names = st.sampled_from(["a", "b", "c", "d"])

    @rule(name=names)
    def create(self, name):
        if name in self.model:
            with pytest.raises(TmpfsError):
                self.m.create(2, name, 0o644, 0, 0)
            return
        self.inos[name] = self.m.create(2, name, 0o644, 0, 0)
        self.model[name] = bytearray()

    @precondition(lambda self: self.model)
    @rule(data=st.data(), offset=st.integers(0, 5 * PAGE), payload=st.binary(min_size=0, max_size=2 * PAGE + 7))
    def write(self, data, offset, payload):
        name = data.draw(st.sampled_from(sorted(self.model)))
        self.m.write(self.inos[name], offset, payload)
        buf = self.model[name]
        if payload and len(buf) < offset + len(payload):
            buf.extend(bytes(offset + len(payload) - len(buf)))
        buf[offset:offset + len(payload)] = payload

    @precondition(lambda self: self.model)
    @rule(data=st.data(), size=st.integers(0, 6 * PAGE))
    def truncate(self, data, size):
        name = data.draw(st.sampled_from(sorted(self.model)))
        self.m.truncate(self.inos[name], size)
        buf = self.model[name]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def unlink(self, data):
        name = data.draw(st.sampled_from(sorted(self.model)))
        self.m.unlink(2, name)
        del self.model[name], self.inos[name]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), offset=st.integers(0, 7 * PAGE), length=st.integers(0, 3 * PAGE))
    def read(self, data, offset, length):
        name = data.draw(st.sampled_from(sorted(self.model)))
        assert self.m.read(self.inos[name], offset, length) == bytes(self.model[name][offset:offset + length])

    @invariant()
    def accounting(self):
        data_pages = sum(howmany(len(b), PAGE) for b in self.model.values())
        nodes = 1 + len(self.model)
        assert self.m.pages_used == data_pages + howmany(nodes * META, PAGE)
        assert self.m.nodes_inuse == nodes
        assert self.pages.npages - self.pages.free_count == self.m.resident_pages
        assert self.kmem.charges.get("TMPFS node", 0) == nodes * 200

    def teardown(self) -> None:
        self.m.unmount()
        assert self.pages.free_count == self.pages.npages
        assert all(v == 0 for v in self.kmem.charges.values())


TestTmpfsModel = TmpfsModel.TestCase
TestTmpfsModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
