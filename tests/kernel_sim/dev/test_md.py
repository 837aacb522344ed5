"""md(4) driver: every type's I/O, kmem exhaustion, COMPRESS, and the ioctl layer's errnos."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.dev import md as mdmod
from kernel_sim.dev.md import (
    EBUSY,
    EDOM,
    EINVAL,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EOPNOTSUPP,
    EROFS,
    MD_AUTOUNIT,
    MD_COMPRESS,
    MD_FORCE,
    MD_MALLOC,
    MD_NULL,
    MD_PRELOAD,
    MD_READONLY,
    MD_RESERVE,
    MD_SWAP,
    MD_VERIFY,
    MD_VNODE,
    MDIOCATTACH,
    MDIOCDETACH,
    MDIOCLIST,
    MDIOCQUERY,
    MDIOCRESIZE,
    MdDriver,
    MdError,
    MdIoctl,
)
from kernel_sim.geom.core import GeomError, Mesh


class Quota:
    """A sector allocator that gives out `limit` handles, like Malloc(M_NOWAIT) running out of kmem."""

    def __init__(self, limit: int = 10**9) -> None:
        self.limit = limit
        self.live: set[int] = set()
        self.next = 0
        self.zones: set[str] = set()

    def alloc(self, nbytes: int, zone: str) -> int | None:
        if len(self.live) >= self.limit:
            return None
        self.next += 1
        self.live.add(self.next)
        self.zones.add(zone)
        return self.next

    def free(self, handle: object) -> None:
        self.live.remove(handle)  # type: ignore[arg-type]


def make(limit: int = 10**9) -> tuple[MdDriver, Quota, Mesh]:
    q = Quota(limit)
    mesh = Mesh()
    return MdDriver(mesh, sector_alloc=q.alloc, sector_free=q.free), q, mesh


# ---------------------------------------------------------------- ioctl numbers and layout
def test_struct_layout_and_ioctl_numbers_match_ioccom_rules() -> None:
    # armv7 EABI: 8-byte types are 8-byte aligned. version, unit, type, file(ptr) = 16 bytes,
    # mediasize at 16, sectorsize 24, options 28, base 32, fwheads 40, fwsectors 44, label 48,
    # pad[96] 52..436, struct rounded up to 8 -> 440.
    assert 52 + 96 * 4 == 436
    size = (436 + 7) // 8 * 8
    assert mdmod.MD_IOCTL_SIZE == size == 440
    ioc_inout = 0x80000000 | 0x40000000
    expect = [ioc_inout | ((size & 0x1FFF) << 16) | (ord("m") << 8) | n for n in range(5)]
    assert expect == [MDIOCATTACH, MDIOCDETACH, MDIOCQUERY, MDIOCLIST, MDIOCRESIZE]
    assert MDIOCATTACH == 0xC1B86D00
    raw = MdIoctl(md_unit=3, md_mediasize=1 << 40, md_base=7, md_label=0x1234).pack()
    assert struct.unpack_from("<q", raw, 16)[0] == 1 << 40
    assert struct.unpack_from("<Q", raw, 32)[0] == 7
    assert struct.unpack_from("<I", raw, 48)[0] == 0x1234


# ---------------------------------------------------------------- round trips
def test_malloc_round_trip_and_geom() -> None:
    drv, q, mesh = make()
    unit = drv.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT | MD_COMPRESS)
    assert unit == 0
    data = bytes(range(256)) * 2 + b"\x07" * 512
    drv.write(0, 4096, data)
    assert drv.read(0, 4096, 1024) == data
    assert drv.read(0, 0, 512) == bytes(512)
    assert len(q.live) == 1 and q.zones == {"md0"}           # the uniform sector is one byte in the tree
    assert " u 0 s 512 f 0 fs 0 l 1048576 t malloc" in mesh.conftxt()
    cp = mesh.open("md0", write=True)
    cp.write(0, b"\x01\x02" * 256)
    assert cp.read(0, 512) == b"\x01\x02" * 256


def test_compress_zero_disk_costs_nothing_and_uniform_is_one_byte() -> None:
    drv, q, _ = make()
    drv.attach(MD_MALLOC, 64 << 20, options=MD_AUTOUNIT | MD_COMPRESS)
    chunk = bytes(1 << 20)
    for off in range(0, 64 << 20, 1 << 20):
        drv.write(0, off, chunk)
    assert len(q.live) == 0
    drv.write(0, 0, b"\xab" * 4096)
    assert len(q.live) == 0 and drv.read(0, 0, 4096) == b"\xab" * 4096
    drv.write(0, 512, b"x" + bytes(511))
    assert len(q.live) == 1
    drv.write(0, 512, b"\x00" * 512)                         # back to uniform: the buffer is freed
    assert len(q.live) == 0


def test_no_compress_allocates_every_written_sector() -> None:
    drv, q, _ = make()
    drv.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT)
    drv.write(0, 0, bytes(8192))
    assert len(q.live) == 16


def test_kmem_exhaustion_gives_enospc_and_reads_still_work() -> None:
    drv, q, _ = make(limit=5)
    drv.attach(MD_MALLOC, 8 << 20, options=MD_AUTOUNIT | MD_COMPRESS)
    data = bytes(range(256)) * 2
    for i in range(5):
        drv.write(0, i * 512, data)
    with pytest.raises(GeomError) as exc:
        drv.write(0, 5 * 512, data)
    assert exc.value.errno == ENOSPC
    assert drv.read(0, 0, 5 * 512) == data * 5
    drv.write(0, 6 * 512, b"\x11" * 512)                     # uniform sectors still fit
    drv.delete(0, 0, 512)                                    # BIO_DELETE frees ...
    assert len(q.live) == 4
    drv.write(0, 5 * 512, data)                              # ... so the write now succeeds
    assert drv.read(0, 0, 512) == bytes(512)


def test_two_malloc_disks_share_one_quota() -> None:
    drv, q, _ = make(limit=3)
    drv.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT)
    drv.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT)
    drv.write(0, 0, b"a" * 1024)
    drv.write(1, 0, b"b" * 512)
    with pytest.raises(GeomError, match="no memory"):
        drv.write(1, 512, b"c" * 512)
    drv.detach(0)
    assert len(q.live) == 1
    drv.write(1, 512, b"c" * 512)


def test_reserve_preallocates_or_enomem() -> None:
    drv, q, _ = make(limit=100)
    with pytest.raises(MdError) as exc:
        drv.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT | MD_RESERVE)
    assert exc.value.errno == ENOMEM
    assert len(q.live) == 0 and drv.list() == []
    unit = drv.attach(MD_MALLOC, 50 * 512, options=MD_AUTOUNIT | MD_RESERVE | MD_COMPRESS)
    assert len(q.live) == 50
    assert drv.query(unit)["options"] & MD_COMPRESS == 0
    drv.write(unit, 0, bytes(512))                           # no COMPRESS: stays allocated
    assert len(q.live) == 50


def test_preload_vnode_swap_null_round_trips(tmp_path) -> None:
    drv, _, mesh = make()
    image = bytearray(8192)
    u = drv.preload(len(image), image=image, name="/boot/root.img")
    drv.write(u, 512, b"p" * 512)
    assert image[512:1024] == b"p" * 512 and drv.read(u, 512, 512) == b"p" * 512
    path = tmp_path / "disk.img"
    path.write_bytes(b"v" * 8192)
    v = drv.attach(MD_VNODE, 8192, options=MD_AUTOUNIT, file=str(path))
    drv.write(v, 0, b"w" * 512)
    assert path.read_bytes()[:513] == b"w" * 512 + b"v"
    assert drv.query(v)["ident"].startswith("MD-DEV")
    drv.delete(v, 512, 512)
    assert path.read_bytes()[512:1024] == bytes(512)
    s = drv.attach(MD_SWAP, 64 << 10, options=MD_AUTOUNIT)
    drv.write(s, 4096 - 512, b"s" * 1024)
    assert drv.read(s, 4096 - 512, 1024) == b"s" * 1024
    drv.delete(s, 4096, 4096)
    assert drv.read(s, 4096, 512) == bytes(512)
    n = drv.attach(MD_NULL, 1 << 20, options=MD_AUTOUNIT)
    drv.write(n, 0, b"z" * 512)
    assert drv.read(n, 0, 512) == bytes(512)
    assert "file /boot/root.img" in mesh.conftxt() and " t null" in mesh.conftxt()


def test_readonly_md_refuses_write_open(tmp_path) -> None:
    drv, _, mesh = make()
    path = tmp_path / "ro.img"
    path.write_bytes(bytes(4096))
    drv.attach(MD_VNODE, 4096, options=MD_AUTOUNIT | MD_READONLY, file=str(path))
    with pytest.raises(GeomError) as exc:
        mesh.open("md0", write=True)
    assert exc.value.errno == EROFS
    mesh.open("md0")


def test_detach_busy_and_force() -> None:
    drv, _, mesh = make()
    drv.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT)
    cp = mesh.open("md0")
    with pytest.raises(MdError) as exc:
        drv.detach(0)
    assert exc.value.errno == EBUSY
    drv.detach(0, force=True)
    assert mesh.provider("md0") is None and cp.provider.error


# ---------------------------------------------------------------- the ioctl layer, table-driven
def call(drv: MdDriver, cmd: int, user: dict[int, bytearray] | None = None, **fields: int) -> tuple[int, MdIoctl]:
    errno, raw = drv.ioctl(cmd, MdIoctl(**fields).pack(), user)
    assert len(raw) == 440
    return errno, MdIoctl.unpack(raw)


FILE_ADDR, DIR_ADDR, MISSING_ADDR = 0x1000, 0x2000, 0x3000

ATTACH_CASES = [
    ("bad type", dict(md_type=9, md_mediasize=1 << 20, md_options=MD_AUTOUNIT), 22),
    ("bad version", dict(md_version=1, md_type=MD_MALLOC, md_mediasize=1 << 20, md_options=MD_AUTOUNIT), EINVAL),
    ("size < sector", dict(md_type=MD_MALLOC, md_mediasize=100, md_options=MD_AUTOUNIT), EINVAL),
    ("sector > maxphys", dict(md_type=MD_MALLOC, md_mediasize=1 << 30, md_sectorsize=1 << 18,
                              md_options=MD_AUTOUNIT), EINVAL),
    ("malloc bad option", dict(md_type=MD_MALLOC, md_mediasize=1 << 20, md_options=MD_AUTOUNIT | MD_READONLY),
     EINVAL),
    ("malloc sector not 2^n", dict(md_type=MD_MALLOC, md_mediasize=1 << 20, md_sectorsize=1536,
                                   md_options=MD_AUTOUNIT), EINVAL),
    ("malloc reserve too big", dict(md_type=MD_MALLOC, md_mediasize=1 << 20,
                                    md_options=MD_AUTOUNIT | MD_RESERVE), ENOMEM),
    ("preload via ioctl", dict(md_type=MD_PRELOAD, md_mediasize=1 << 20, md_options=MD_AUTOUNIT), EOPNOTSUPP),
    ("vnode directory", dict(md_type=MD_VNODE, md_mediasize=4096, md_file=DIR_ADDR,
                             md_options=MD_AUTOUNIT | MD_READONLY), EINVAL),
    ("vnode missing", dict(md_type=MD_VNODE, md_mediasize=4096, md_file=MISSING_ADDR, md_options=MD_AUTOUNIT),
     ENOENT),
    ("vnode bad pointer", dict(md_type=MD_VNODE, md_mediasize=4096, md_file=0x9999, md_options=MD_AUTOUNIT), 14),
    ("swap not page multiple", dict(md_type=MD_SWAP, md_mediasize=4096 + 512, md_options=MD_AUTOUNIT), EDOM),
    ("swap verify", dict(md_type=MD_SWAP, md_mediasize=8192, md_options=MD_AUTOUNIT | MD_VERIFY), EINVAL),
    ("null not page multiple", dict(md_type=MD_NULL, md_mediasize=1024, md_options=MD_AUTOUNIT), EDOM),
    ("unit taken", dict(md_type=MD_NULL, md_mediasize=4096, md_unit=0), EBUSY),
    ("unit > INT_MAX", dict(md_type=MD_NULL, md_mediasize=4096, md_unit=0x80000000), EINVAL),
]


@pytest.mark.parametrize("name,fields,errno", ATTACH_CASES, ids=[c[0] for c in ATTACH_CASES])
def test_attach_errnos(tmp_path, name: str, fields: dict, errno: int) -> None:
    drv, _, _ = make(limit=100)
    call(drv, MDIOCATTACH, md_type=MD_NULL, md_mediasize=4096, md_options=MD_AUTOUNIT)   # md0 exists
    (tmp_path / "d").mkdir()
    user = {FILE_ADDR: bytearray(str(tmp_path / "f").encode() + b"\0"),
            DIR_ADDR: bytearray(str(tmp_path / "d").encode() + b"\0"),
            MISSING_ADDR: bytearray(str(tmp_path / "nope").encode() + b"\0")}
    got, _ = call(drv, MDIOCATTACH, user, **fields)
    assert got == errno
    assert drv.list() == [0]


def test_ioctl_attach_query_list_resize_detach(tmp_path) -> None:
    drv, _, _ = make()
    path = tmp_path / "img"
    path.write_bytes(bytes(10000))
    user = {0x100: bytearray(str(path).encode() + b"\0"), 0x200: bytearray(b"mylabel\0"),
            0x300: bytearray(1024), 0x400: bytearray(64)}
    err, out = call(drv, MDIOCATTACH, user, md_type=MD_VNODE, md_mediasize=10000, md_file=0x100,
                    md_label=0x200, md_options=MD_AUTOUNIT)
    assert err == 0 and out.md_unit == 0 and out.md_mediasize == 9728 and out.md_sectorsize == 512
    err, out = call(drv, MDIOCATTACH, md_type=MD_MALLOC, md_mediasize=1 << 20, md_unit=5)
    assert err == 0 and out.md_unit == 5
    err, out = call(drv, MDIOCQUERY, user, md_unit=0, md_file=0x300, md_label=0x400)
    assert err == 0 and out.md_type == MD_VNODE and out.md_mediasize == 9728
    assert bytes(user[0x300]).split(b"\0")[0] == str(path).encode()
    assert bytes(user[0x400]).split(b"\0")[0] == b"mylabel"
    err, out = call(drv, MDIOCLIST)
    assert err == 0 and out.md_pad[:3] == [2, 0, 5]
    assert call(drv, MDIOCQUERY, md_unit=7)[0] == ENOENT
    # resize: malloc cannot; vnode can grow; shrinking needs force; options beyond force/reserve EINVAL
    assert call(drv, MDIOCRESIZE, md_unit=5, md_mediasize=2 << 20)[0] == EOPNOTSUPP
    assert call(drv, MDIOCRESIZE, md_unit=0, md_mediasize=20480)[0] == 0
    assert call(drv, MDIOCRESIZE, md_unit=0, md_mediasize=4096)[0] == EBUSY
    assert call(drv, MDIOCRESIZE, md_unit=0, md_mediasize=4096, md_options=MD_FORCE)[0] == 0
    assert call(drv, MDIOCRESIZE, md_unit=0, md_mediasize=4096, md_options=MD_COMPRESS)[0] == EINVAL
    assert call(drv, MDIOCRESIZE, md_unit=0, md_mediasize=100, md_options=MD_FORCE)[0] == EINVAL
    assert call(drv, MDIOCRESIZE, md_unit=9, md_mediasize=4096)[0] == ENOENT
    # detach: options within FORCE, no size, known unit
    assert call(drv, MDIOCDETACH, md_unit=0, md_options=MD_AUTOUNIT)[0] == EINVAL
    assert call(drv, MDIOCDETACH, md_unit=0, md_mediasize=512)[0] == EINVAL
    assert call(drv, MDIOCDETACH, md_unit=3)[0] == ENOENT
    assert call(drv, MDIOCDETACH, md_unit=0)[0] == 0
    assert drv.list() == [5]
    assert drv.ioctl(0x20006d09, MdIoctl().pack())[0] == 25   # unknown ioctl: ENOTTY


def test_swap_resize_edom_and_shrink_frees_pages() -> None:
    drv, _, _ = make()
    u = drv.attach(MD_SWAP, 16384, options=MD_AUTOUNIT)
    drv.write(u, 12288, b"q" * 4096)
    with pytest.raises(MdError) as exc:
        drv.resize(u, 16384 + 512)
    assert exc.value.errno == EDOM
    drv.resize(u, 8192, force=True)
    drv.resize(u, 16384)
    assert drv.read(u, 12288, 4096) == bytes(4096)


# ---------------------------------------------------------------- model check
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["w", "u", "d", "r"]), st.integers(0, 63), st.integers(1, 4),
                          st.integers(0, 255)), max_size=40))
def test_malloc_matches_bytearray_model(ops) -> None:
    drv, q, _ = make()
    nsec = 64
    drv.attach(MD_MALLOC, nsec * 512, options=MD_AUTOUNIT | MD_COMPRESS)
    model = bytearray(nsec * 512)
    for op, sec, count, byte in ops:
        count = min(count, nsec - sec)
        off, length = sec * 512, count * 512
        if op == "w":
            data = bytes((byte + i) % 256 for i in range(length))
            drv.write(0, off, data)
            model[off:off + length] = data
        elif op == "u":
            drv.write(0, off, bytes([byte]) * length)
            model[off:off + length] = bytes([byte]) * length
        elif op == "d":
            drv.delete(0, off, length)
            model[off:off + length] = bytes(length)
        else:
            assert drv.read(0, off, length) == model[off:off + length]
    assert drv.read(0, 0, nsec * 512) == model
    nonuniform = sum(1 for s in range(nsec) if len(set(model[s * 512:(s + 1) * 512])) > 1)
    assert len(q.live) == nonuniform == drv.malloc_sectors(0)


# ---------------------------------------------------------------- allocation (NBD base:allocation)
def _kinds(runs: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    assert all(n > 0 for _, n, _ in runs)
    assert all(a[0] + a[1] == b[0] and a[2] != b[2] for a, b in zip(runs, runs[1:], strict=False))
    return runs


def test_allocation_of_a_malloc_md_skips_empty_branches_and_tells_zero_sectors() -> None:
    drv, _, _ = make()
    size = 1 << 30                                    # 2M sectors: a 3-level tree, nearly all empty
    u = drv.attach(MD_MALLOC, size, options=MD_AUTOUNIT)
    drv.write(u, 5 << 20, b"d" * 1024)
    drv.write(u, 600 << 20, bytes(512))               # stored, but zeros (no MD_COMPRESS)
    assert _kinds(drv.allocation(u, 0, size)) == [
        (0, 5 << 20, "hole"), (5 << 20, 1024, "data"), ((5 << 20) + 1024, (595 << 20) - 1024, "hole"),
        (600 << 20, 512, "zero"), ((600 << 20) + 512, size - (600 << 20) - 512, "hole")]
    assert drv.allocation(u, 5 << 20, 512) == [(5 << 20, 512, "data")]
    drv.delete(u, 5 << 20, 1024)
    assert drv.allocation(u, 0, 1 << 20 << 6)[0] == (0, 64 << 20, "hole")


def test_allocation_of_compressed_uniform_sectors_is_data_swap_pages_and_vnode_holes(tmp_path) -> None:
    drv, _, _ = make()
    c = drv.attach(MD_MALLOC, 8192, options=MD_AUTOUNIT | MD_COMPRESS)
    drv.write(c, 512, b"\x07" * 512)                  # one byte in the tree, but it is data
    assert drv.allocation(c, 0, 8192) == [(0, 512, "hole"), (512, 512, "data"), (1024, 7168, "hole")]
    s = drv.attach(MD_SWAP, 64 << 10, options=MD_AUTOUNIT)
    drv.write(s, 8192, b"s" * 512)
    assert drv.allocation(s, 0, 64 << 10) == [(0, 8192, "hole"), (8192, 4096, "data"),
                                             (12288, (64 << 10) - 12288, "hole")]
    path = tmp_path / "sparse.img"
    with path.open("wb") as f:
        f.truncate(1 << 20)
        f.seek(256 << 10)
        f.write(b"v" * 4096)
    v = drv.attach(MD_VNODE, 1 << 20, options=MD_AUTOUNIT, file=str(path))
    runs = _kinds(drv.allocation(v, 0, 1 << 20))
    assert ("data" in {k for _, _, k in runs}) and runs[0][2] == "hole" and runs[-1][2] == "hole"
    data = [(o, n) for o, n, k in runs if k == "data"]
    assert data[0][0] <= 256 << 10 < (256 << 10) + 4096 <= data[-1][0] + data[-1][1]
    n = drv.attach(MD_NULL, 1 << 20, options=MD_AUTOUNIT)
    assert drv.allocation(n, 4096, 4096) == [(4096, 4096, "hole")]
    image = bytearray(8192)
    p = drv.preload(len(image), image=image)
    assert drv.allocation(p, 0, 8192) == [(0, 8192, "data")]
    with pytest.raises(GeomError):
        drv.allocation(c, 0, 8192 + 512)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["w", "z", "d"]), st.integers(0, 63), st.integers(1, 4)), max_size=30),
       st.integers(0, 63), st.integers(1, 64))
def test_allocation_agrees_with_the_bytes(ops, first, count) -> None:
    """Whatever allocation calls a hole or zero reads as zeros, and the runs cover the range exactly."""
    drv, _, _ = make()
    nsec = 64
    drv.attach(MD_MALLOC, nsec * 512, options=MD_AUTOUNIT)
    for op, sec, n in ops:
        n = min(n, nsec - sec)
        if op == "w":
            drv.write(0, sec * 512, b"x" * (n * 512))
        elif op == "z":
            drv.write(0, sec * 512, bytes(n * 512))
        else:
            drv.delete(0, sec * 512, n * 512)
    count = min(count, nsec - first)
    runs = _kinds(drv.allocation(0, first * 512, count * 512))
    assert runs[0][0] == first * 512 and sum(n for _, n, _ in runs) == count * 512
    for off, n, kind in runs:        # without MD_COMPRESS, "data" is exactly the sectors that hold a non-zero byte
        for sec in range(off // 512, (off + n) // 512):
            assert any(drv.read(0, sec * 512, 512)) == (kind == "data")
