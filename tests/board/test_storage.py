"""Swap backing stores (board/storage): nbdkit memory plugin semantics for sparse, malloc and zstd.

Issue 5 part 6: the three allocators behave the same on random operation sequences, and sparse and
zstd use memory in proportion to the data written.
"""

from __future__ import annotations

import random
import resource
import tracemalloc

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from board.storage import (
    EXTENT_HOLE,
    EXTENT_ZERO,
    MAX_SIZE,
    PAGE_SIZE,
    Allocator,
    MallocAllocator,
    SizeError,
    SparseAllocator,
    StorageError,
    ZstdAllocator,
    open_allocator,
    parse_size,
)

KINDS = ("sparse", "malloc", "zstd")
HZ = EXTENT_HOLE | EXTENT_ZERO

# A few MiB, and deliberately not a page multiple so the last page is partial.
MODEL_SIZE = 3 * (1 << 20) + 1000
NPAGES = (MODEL_SIZE + PAGE_SIZE - 1) // PAGE_SIZE

# Offsets biased to page boundaries (and the bytes either side), plus anywhere.
offsets = st.one_of(
    st.builds(lambda p, d: min(max(p * PAGE_SIZE + d, 0), MODEL_SIZE),
              st.integers(0, NPAGES), st.integers(-48, 48)),
    st.integers(0, MODEL_SIZE),
)
lengths = st.one_of(
    st.integers(0, 200),
    st.builds(lambda k, d: max(k * PAGE_SIZE + d, 0), st.integers(1, 3), st.integers(-64, 64)),
    st.integers(0, 3 * PAGE_SIZE),
)
# How the written bytes look: random, all zero, one repeated byte, text-like.
patterns = st.sampled_from(["random", "zeros", "byte", "text"])


def make_data(pattern: str, n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    if pattern == "random":
        return rnd.randbytes(n)
    if pattern == "zeros":
        return bytes(n)
    if pattern == "byte":
        return bytes([rnd.randrange(1, 256)]) * n
    words = [b"swap ", b"page ", b"tmpfs ", b"md0 ", b"kernel ", b"\n"]
    # At least n bytes: a word list of n // 4 + 1 words can fall short when "\n" comes up often.
    return b"".join(rnd.choices(words, k=n + 1))[:n]


def coalesce(extents: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for off, n, flags in extents:
        if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == off:
            out[-1] = (out[-1][0], out[-1][1] + n, flags)
        else:
            out.append((off, n, flags))
    return out


class AllocatorsAgree(RuleBasedStateMachine):
    """sparse, malloc and zstd against a bytearray, plus a model of which pages sparse.c allocates."""

    @initialize()
    def setup(self) -> None:
        self.model = bytearray(MODEL_SIZE)
        self.allocated: set[int] = set()   # page numbers sparse/zstd should hold
        self.stores: dict[str, Allocator] = {k: open_allocator(k, MODEL_SIZE) for k in KINDS}

    def clamp(self, offset: int, length: int) -> int:
        return min(length, MODEL_SIZE - offset)

    def pages(self, offset: int, length: int) -> range:
        return range(offset // PAGE_SIZE, (offset + length - 1) // PAGE_SIZE + 1) if length else range(0)

    @rule(offset=offsets, length=lengths, pattern=patterns, seed=st.integers(0, 2**32))
    def write(self, offset: int, length: int, pattern: str, seed: int) -> None:
        length = self.clamp(offset, length)
        data = make_data(pattern, length, seed)
        for store in self.stores.values():
            store.write(offset, data)
        self.model[offset:offset + length] = data
        self.allocated.update(self.pages(offset, length))   # allocate on write, even for zeroes

    def _zeroed(self, offset: int, length: int) -> None:
        self.model[offset:offset + length] = bytes(length)
        for p in self.pages(offset, length):
            # Freed when covered whole or when it became all zero; either way it is all zero now.
            if not any(self.model[p * PAGE_SIZE:(p + 1) * PAGE_SIZE]):
                self.allocated.discard(p)

    @rule(offset=offsets, length=lengths, may_trim=st.booleans())
    def zero(self, offset: int, length: int, may_trim: bool) -> None:
        length = self.clamp(offset, length)
        for store in self.stores.values():
            store.zero(offset, length, may_trim=may_trim)
        self._zeroed(offset, length)

    @rule(offset=offsets, length=lengths)
    def trim(self, offset: int, length: int) -> None:
        length = self.clamp(offset, length)
        for store in self.stores.values():
            store.trim(offset, length)
        self._zeroed(offset, length)

    @rule(offset=offsets, length=lengths)
    def read(self, offset: int, length: int) -> None:
        length = self.clamp(offset, length)
        want = bytes(self.model[offset:offset + length])
        for kind, store in self.stores.items():
            assert store.read(offset, length) == want, kind

    @rule(offset=offsets, length=lengths)
    def read_buffers(self, offset: int, length: int) -> None:
        """What the NBD server sends: the same bytes as read(), as views (no copy) where memory allows."""
        length = self.clamp(offset, length)
        want = bytes(self.model[offset:offset + length])
        for kind, store in self.stores.items():
            buffers = store.read_buffers(offset, length)
            assert b"".join(bytes(b) for b in buffers) == want, kind
            if kind != "zstd":        # zstd must decompress; the others hand out their own memory
                assert all(isinstance(b, memoryview) for b in buffers), kind

    @rule(offset=offsets, length=lengths)
    def block_status(self, offset: int, length: int) -> None:
        """nbdkit's granularity: the paged stores answer to the end of the last page (within the disk),
        malloc answers the range as asked, and every extent still tells the truth."""
        length = self.clamp(offset, length)
        if not length:
            return
        end = min(MODEL_SIZE, -(-(offset + length) // PAGE_SIZE) * PAGE_SIZE)
        for kind in ("sparse", "zstd"):
            assert self.stores[kind].block_status(offset, length) == self.stores[kind].extents(offset, end - offset)
        assert self.stores["malloc"].block_status(offset, length) == [(offset, length, 0)]

    @rule(offset=offsets, length=lengths)
    def extents(self, offset: int, length: int) -> None:
        length = self.clamp(offset, length)
        expect: list[tuple[int, int, int]] = []
        end = offset + length
        for p in self.pages(offset, length):
            lo, hi = max(offset, p * PAGE_SIZE), min(end, (p + 1) * PAGE_SIZE)
            if p not in self.allocated:
                flags = HZ
            else:
                flags = 0 if any(self.model[lo:hi]) else EXTENT_ZERO     # the bytes the extent covers
            expect.append((lo, hi - lo, flags))
        expect = coalesce(expect)
        assert self.stores["sparse"].extents(offset, length) == expect
        assert self.stores["zstd"].extents(offset, length) == expect
        assert self.stores["malloc"].extents(offset, length) == ([(offset, length, 0)] if length else [])
        for off, n, flags in expect:   # whatever says ZERO must read as zeroes
            if flags & EXTENT_ZERO:
                assert not any(self.model[off:off + n])

    @rule(offset=st.integers(0, MODEL_SIZE), over=st.integers(1, 3 * PAGE_SIZE),
          op=st.sampled_from(["read", "write", "zero", "trim", "extents"]))
    def out_of_range(self, offset: int, over: int, op: str) -> None:
        length = MODEL_SIZE - offset + over
        want = "ENOSPC" if op in ("write", "zero") else "EINVAL"
        for kind, store in self.stores.items():
            with pytest.raises(StorageError) as info:
                if op == "write":
                    store.write(offset, bytes(length))
                else:
                    getattr(store, op)(offset, length)
            assert info.value.errno_name == want, kind

    @invariant()
    def sparse_pages_match_model(self) -> None:
        if hasattr(self, "stores"):
            assert self.stores["sparse"].pages == len(self.allocated)
            assert self.stores["zstd"].pages == len(self.allocated)

    @precondition(lambda self: hasattr(self, "stores"))
    @rule()
    def flush(self) -> None:
        for store in self.stores.values():
            store.flush()

    def teardown(self) -> None:
        if hasattr(self, "stores"):
            want = bytes(self.model)
            for kind, store in self.stores.items():
                assert store.read(0, MODEL_SIZE) == want, kind
                store.close()


AllocatorsAgree.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestAllocatorsAgree = AllocatorsAgree.TestCase


# -- memory in proportion to the data -------------------------------------------------------------

def _fill(store: Allocator, npages: int, pattern: str) -> None:
    for i in range(npages):
        # Distinct pages spread over the disk (every 7th page), each with its own content.
        store.write(i * 7 * PAGE_SIZE, make_data(pattern, PAGE_SIZE, i))


@pytest.mark.parametrize("kind", ["sparse", "zstd"])
def test_resident_grows_linearly_and_zeroing_frees(kind):
    figures = {}
    for n in (8, 16, 32, 64):
        store = open_allocator(kind, 64 << 20)
        assert store.resident_bytes == 0
        tracemalloc.start()
        _fill(store, n, "random")
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        figures[n] = store.resident_bytes
        # Random data does not compress: about one page of host memory per page written (plus one
        # 32 KiB L2 directory), and Python really holds that much.
        assert n * PAGE_SIZE <= figures[n] <= n * (PAGE_SIZE + 64) + 2 * 32784
        assert 0.9 * figures[n] <= traced <= 1.2 * figures[n] + 65536
        store.zero(0, store.size)
        assert store.resident_bytes == 0
        assert store.extents(0, store.size) == [(0, store.size, HZ)]
    # Linear: each further page costs the same.
    per_page = [(figures[b] - figures[a]) / (b - a) for a, b in ((8, 16), (16, 32), (32, 64))]
    assert max(per_page) - min(per_page) < 0.02 * PAGE_SIZE
    assert PAGE_SIZE <= per_page[0] <= PAGE_SIZE + 64


def test_zstd_holds_compressible_data_in_far_less():
    sparse, zstd = SparseAllocator(64 << 20), ZstdAllocator(64 << 20)
    for store in (sparse, zstd):
        _fill(store, 64, "text")
    assert sparse.resident_bytes >= 64 * PAGE_SIZE
    assert zstd.resident_bytes < sparse.resident_bytes / 4
    assert zstd.read(0, 64 * 7 * PAGE_SIZE) == sparse.read(0, 64 * 7 * PAGE_SIZE)
    # Zeroing part of a page recompresses; zeroing the rest of it frees it.
    before = zstd.pages
    zstd.zero(0, 100)
    assert zstd.pages == before and zstd.read(0, 100) == bytes(100)
    zstd.zero(100, PAGE_SIZE - 100)
    assert zstd.pages == before - 1


@pytest.mark.parametrize("kind", ["sparse", "zstd"])
def test_zero_flag_describes_the_bytes_of_the_extent_not_the_whole_page(kind):
    """sparse.c checks a page from the extent's start to the page's end: the zero second half of a
    page that holds data in its first half is ZERO, as `nbdkit memory` reports it."""
    store = open_allocator(kind, 4 * PAGE_SIZE)
    store.write(0, b"x" * (PAGE_SIZE // 2) + bytes(PAGE_SIZE // 2))
    assert store.extents(PAGE_SIZE // 2, PAGE_SIZE // 2) == [(PAGE_SIZE // 2, PAGE_SIZE // 2, EXTENT_ZERO)]
    assert store.extents(0, PAGE_SIZE) == [(0, PAGE_SIZE, 0)]
    # block_status answers to the end of the page, as nbdkit's allocators do.
    assert store.block_status(PAGE_SIZE // 2, 1) == [(PAGE_SIZE // 2, PAGE_SIZE // 2, EXTENT_ZERO)]
    assert store.block_status(0, 1) == [(0, PAGE_SIZE, 0)]
    assert store.block_status(PAGE_SIZE + 5, 10) == [(PAGE_SIZE + 5, PAGE_SIZE - 5, HZ)]


def test_read_buffers_of_a_large_hole_are_few_and_cost_nothing():
    store = SparseAllocator(1 << 30)
    store.write(5 << 20, b"data")
    buffers = store.read_buffers(0, 64 << 20)
    assert len(buffers) < 70                  # 1 MiB runs of zeros, not one buffer per 32 KiB page
    assert sum(len(b) for b in buffers) == 64 << 20
    assert b"".join(bytes(b) for b in buffers[5:6]).startswith(b"data")


def test_zeroing_part_of_a_page_keeps_it_until_all_zero():
    store = SparseAllocator(1 << 20)
    store.write(10, b"abc")
    store.zero(0, 11)                       # byte 11, 12 still set
    assert store.pages == 1 and store.read(10, 3) == b"\0bc"
    assert store.extents(0, PAGE_SIZE) == [(0, PAGE_SIZE, 0)]
    store.write(PAGE_SIZE, bytes(10))        # writing zeroes allocates: an all-zero page is ZERO
    assert store.extents(PAGE_SIZE, PAGE_SIZE) == [(PAGE_SIZE, PAGE_SIZE, EXTENT_ZERO)]
    store.zero(11, 2)
    assert store.pages == 1 and store.extents(0, PAGE_SIZE) == [(0, PAGE_SIZE, HZ)]


def test_malloc_is_the_full_size_from_the_start():
    size = 8 << 20
    tracemalloc.start()
    store = MallocAllocator(size)
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert store.resident_bytes == size and traced >= size
    store.write(5, b"x")
    store.zero(0, size)
    assert store.resident_bytes == size
    assert store.extents(0, size) == [(0, size, 0)]
    assert store.read(0, 16) == bytes(16)


def test_malloc_mlock():
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        with open_allocator("malloc", "1M", mlock="true") as store:
            store.write(0, b"locked")
            assert store.read(0, 6) == b"locked" and store.resident_bytes == 1 << 20
            store.size = 2 << 20                  # regrows the locked mapping, keeping the data
            assert store.read(0, 6) == b"locked" and store.read((2 << 20) - 4, 4) == bytes(4)
        # With RLIMIT_MEMLOCK at 0 an unprivileged mlock fails; root (CAP_IPC_LOCK) may still succeed.
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
        try:
            open_allocator("malloc", "1M", mlock=True).close()
        except StorageError as exc:
            assert exc.errno_name in ("EPERM", "ENOMEM") and "RLIMIT_MEMLOCK" in exc.message
    except StorageError as exc:   # mlock not allowed at all on this host: still a clear error
        assert exc.errno_name in ("EPERM", "ENOMEM") and "RLIMIT_MEMLOCK" in exc.message
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))


# -- huge virtual sizes --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sparse", "zstd"])
def test_largest_virtual_size(kind):
    store = open_allocator(kind, MAX_SIZE)
    assert store.size == MAX_SIZE and store.resident_bytes == 0
    assert store.extents(0, MAX_SIZE) == [(0, MAX_SIZE, HZ)]
    store.write(MAX_SIZE - 10, b"0123456789")
    store.write(2**62 + 12345, b"middle")
    assert store.read(MAX_SIZE - 12, 12) == b"\0\x000123456789"
    assert store.read(2**62 + 12340, 16) == bytes(5) + b"middle" + bytes(5)
    assert store.pages == 2 and store.resident_bytes < 4 * (PAGE_SIZE + 32784)
    assert len(store.extents(0, MAX_SIZE)) == 4   # hole, page at 2**62, hole, last page
    store.trim(0, MAX_SIZE)
    assert store.resident_bytes == 0
    with pytest.raises(SizeError):
        store.size = MAX_SIZE + 1
    with pytest.raises(StorageError) as info:
        store.write(MAX_SIZE - 1, b"ab")
    assert info.value.errno_name == "ENOSPC"


def test_above_the_largest_size_is_rejected():
    for kind in KINDS:
        with pytest.raises(SizeError, match="2\\*\\*63-1"):
            open_allocator(kind, 2**63)
    with pytest.raises(SizeError, match="too large"):
        open_allocator("sparse", "8E")
    with pytest.raises(SizeError, match="host memory"):
        open_allocator("malloc", MAX_SIZE)


def test_parse_size():
    assert parse_size("1") == 1
    assert parse_size("10b") == 10
    assert parse_size("2s") == 1024
    assert parse_size("4k") == parse_size("4K") == parse_size("4KiB") == 4096
    assert parse_size("1M") == 1 << 20 and parse_size("1g") == 1 << 30 and parse_size("1T") == 1 << 40
    assert parse_size("1p") == 1 << 50 and parse_size("7E") == 7 << 60
    assert parse_size("0x1000") == 4096
    assert parse_size(str(MAX_SIZE)) == MAX_SIZE
    for bad in ("", "k", "1.5G", "-1", "1x", "1 G B", "12Q"):
        with pytest.raises(SizeError):
            parse_size(bad)
    with pytest.raises(SizeError, match="too large"):
        parse_size("8E")


# -- errors and the interface ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_out_of_range_errnos(kind):
    store = open_allocator(kind, "1M")
    end = store.size
    cases = [
        (lambda: store.write(end - 1, b"ab"), "ENOSPC"),
        (lambda: store.write(end + 1, b""), "ENOSPC"),
        (lambda: store.zero(end - 1, 2), "ENOSPC"),
        (lambda: store.read(end - 1, 2), "EINVAL"),
        (lambda: store.read(end + 1, 0), "EINVAL"),
        (lambda: store.trim(end, 1), "EINVAL"),
        (lambda: store.extents(0, end + 1), "EINVAL"),
        (lambda: store.cache(end, 1), "EINVAL"),
        (lambda: store.read(-1, 1), "EINVAL"),
        (lambda: store.write(-1, b"a"), "EINVAL"),
    ]
    for call, name in cases:
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.errno_name == name
    store.write(end, b"")                    # empty at the very end is fine
    assert store.read(end, 0) == b""


@pytest.mark.parametrize("kind", KINDS)
def test_features_and_resize(kind):
    store = open_allocator(kind, "64k")
    f = store.features
    assert all((f.write, f.flush, f.trim, f.zero, f.fast_zero, f.extents, f.fua, f.multi_conn, f.cache))
    store.write(0, b"\xff" * store.size)
    store.size = "40k"                       # shrink drops the tail...
    store.size = "64k"                       # ...which reads as zeroes when it grows back
    assert store.read(0, store.size) == b"\xff" * 40960 + bytes(24576)


def test_open_allocator_rejects_unknowns():
    with pytest.raises(StorageError, match="unknown allocator"):
        open_allocator("tmpfile", "1M")
    with pytest.raises(StorageError, match="mlock"):
        open_allocator("sparse", "1M", mlock=True)
    with pytest.raises(StorageError, match="bad options"):
        open_allocator("zstd", "1M", colour="blue")
