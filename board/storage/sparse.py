"""The sparse allocator: 32 KiB pages in a two-level table (nbdkit common/allocators/sparse.c).

Layout, as in sparse.c: an L1 directory kept as a sorted vector searched by binary search (here a
sorted list of L1 indexes and `bisect`), each entry pointing at an L2 directory of 4096 page
pointers, so one L1 entry spans 128 MiB and a 2**63-1 byte disk costs nothing until it is written.
Pages are allocated on write; zeroing frees pages it covers whole and pages that become all-zero,
and an L2 directory is dropped with its last page, so zeroing returns the memory (the swap pager
relies on that to give host memory back).

`PagedAllocator` holds the table walk; the sparse and zstd stores differ only in how a page is kept
(a plain bytearray here, a zstd frame in zstd_store.py), exactly as nbdkit's two files share a layout.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .base import EXTENT_HOLE, EXTENT_ZERO, L1_SPAN, L2_SIZE, PAGE_SIZE, Allocator, Extent

ZERO_PAGE = bytes(PAGE_SIZE)
# What holes are sent from (read_buffers): one run of zeros, so a large hole is a few buffers, not
# one per page (sendmsg takes at most IOV_MAX of them). bytes() of a size is calloc'd: untouched
# pages of it cost no memory.
ZERO_RUN = bytes(1 << 20)
# What the tables cost in C (sparse.c): an L2 directory is 4096 pointers, an L1 entry is
# {offset, l2_dir}. A Python list slot is a pointer too, so the figure holds here as well.
L2_DIR_BYTES = L2_SIZE * 8
L1_ENTRY_BYTES = 16


class _L2:
    """One L2 directory: 4096 page slots and how many are in use (to free it with its last page)."""

    __slots__ = ("key", "pages", "count")

    def __init__(self, key: int) -> None:
        self.key = key
        self.pages: list[Any] = [None] * L2_SIZE
        self.count = 0


class PagedAllocator(Allocator):
    """The two-level page table shared by the sparse and zstd stores."""

    extent_granularity = PAGE_SIZE

    def __init__(self, size: int | str) -> None:
        self._l1_keys: list[int] = []     # sorted L1 indexes (offset // 128 MiB)
        self._l1_dirs: list[_L2] = []
        self._data_bytes = 0
        super().__init__(size)

    # -- how a page is kept (overridden by zstd) ----------------------------------------------------
    def _entry_bytes(self, entry: Any) -> int:
        return len(entry)

    def _view(self, entry: Any) -> bytes | bytearray:
        """The page's 32 KiB for reading."""
        return entry

    def _load(self, entry: Any) -> bytearray:
        """The page's 32 KiB for modifying; `_store` is always called afterwards."""
        return entry

    def _encode(self, page: bytearray) -> Any:
        return page

    # -- table ----------------------------------------------------------------------------------------
    def _l2(self, key: int, create: bool) -> _L2 | None:
        i = bisect_left(self._l1_keys, key)
        if i < len(self._l1_keys) and self._l1_keys[i] == key:
            return self._l1_dirs[i]
        if not create:
            return None
        l2 = _L2(key)
        self._l1_keys.insert(i, key)
        self._l1_dirs.insert(i, l2)
        return l2

    def _store(self, l2: _L2, idx: int, page: bytearray) -> None:
        old = l2.pages[idx]
        if old is None:
            l2.count += 1
        else:
            self._data_bytes -= self._entry_bytes(old)
        entry = self._encode(page)
        l2.pages[idx] = entry
        self._data_bytes += self._entry_bytes(entry)

    def _free(self, l2: _L2, idx: int) -> None:
        old = l2.pages[idx]
        if old is None:
            return
        self._data_bytes -= self._entry_bytes(old)
        l2.pages[idx] = None
        l2.count -= 1
        if l2.count == 0:
            i = bisect_left(self._l1_keys, l2.key)
            del self._l1_keys[i]
            del self._l1_dirs[i]

    def _present(self, offset: int, length: int) -> list[tuple[int, _L2, int]]:
        """(page offset, L2, index) of every allocated page touching the range, in ascending order.

        Walks only the L1 entries that exist, so ranges over a 2**63-byte disk cost O(pages stored).
        """
        end = offset + length
        first, last = offset // L1_SPAN, (end - 1) // L1_SPAN
        out: list[tuple[int, _L2, int]] = []
        i = bisect_left(self._l1_keys, first)
        while i < len(self._l1_keys) and self._l1_keys[i] <= last:
            l2 = self._l1_dirs[i]
            base = l2.key * L1_SPAN
            j0 = (max(offset, base) - base) // PAGE_SIZE
            j1 = (min(end, base + L1_SPAN) - 1 - base) // PAGE_SIZE
            pages = l2.pages
            out.extend((base + j * PAGE_SIZE, l2, j) for j in range(j0, j1 + 1) if pages[j] is not None)
            i += 1
        return out

    # -- primitives -----------------------------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        out = bytearray(length)   # holes read as zeroes
        end = offset + length
        for page_off, l2, j in self._present(offset, length):
            lo, hi = max(offset, page_off), min(end, page_off + PAGE_SIZE)
            out[lo - offset:hi - offset] = self._view(l2.pages[j])[lo - page_off:hi - page_off]
        return bytes(out)

    def _write(self, offset: int, data: memoryview) -> None:
        pos, end, src = offset, offset + len(data), 0
        while pos < end:
            page_off = pos - pos % PAGE_SIZE
            n = min(end, page_off + PAGE_SIZE) - pos
            l2 = self._l2(page_off // L1_SPAN, create=True)
            assert l2 is not None
            j = (page_off % L1_SPAN) // PAGE_SIZE
            entry = l2.pages[j]
            if n == PAGE_SIZE:
                page = bytearray(data[src:src + n])
            else:
                page = bytearray(PAGE_SIZE) if entry is None else self._load(entry)
                page[pos - page_off:pos - page_off + n] = data[src:src + n]
            self._store(l2, j, page)
            pos += n
            src += n

    def _zero(self, offset: int, length: int) -> None:
        end = offset + length
        for page_off, l2, j in self._present(offset, length):
            lo, hi = max(offset, page_off), min(end, page_off + PAGE_SIZE)
            if hi - lo == PAGE_SIZE:
                self._free(l2, j)
                continue
            page = self._load(l2.pages[j])
            page[lo - page_off:hi - page_off] = bytes(hi - lo)
            if page == ZERO_PAGE:
                self._free(l2, j)
            else:
                self._store(l2, j, page)

    def _read_buffers(self, offset: int, length: int) -> list[bytes | bytearray | memoryview]:
        """Views of the stored pages and of one zero page for the holes: nothing is copied."""
        out: list[bytes | bytearray | memoryview] = []
        pos, end = offset, offset + length
        zeros = memoryview(ZERO_RUN)
        for page_off, l2, j in self._present(offset, length):
            lo, hi = max(offset, page_off), min(end, page_off + PAGE_SIZE)
            while pos < lo:
                n = min(lo - pos, len(ZERO_RUN))
                out.append(zeros[:n])
                pos += n
            out.append(memoryview(self._view(l2.pages[j]))[lo - page_off:hi - page_off])
            pos = hi
        while pos < end:
            n = min(end - pos, len(ZERO_RUN))
            out.append(zeros[:n])
            pos += n
        return out

    def _extents(self, offset: int, length: int) -> list[Extent]:
        """sparse.c: a missing page is HOLE|ZERO, an allocated page whose bytes in the range are all
        zero is ZERO (sparse.c checks from the offset to the page's end), else data."""
        out: list[Extent] = []
        pos, end = offset, offset + length
        for page_off, l2, j in self._present(offset, length):
            lo, hi = max(offset, page_off), min(end, page_off + PAGE_SIZE)
            if lo > pos:
                out.append((pos, lo - pos, EXTENT_HOLE | EXTENT_ZERO))
            page = self._view(l2.pages[j])
            if hi - lo == PAGE_SIZE:
                zero = page == ZERO_PAGE
            else:
                zero = ZERO_PAGE.startswith(page[lo - page_off:hi - page_off])
            out.append((lo, hi - lo, EXTENT_ZERO if zero else 0))
            pos = hi
        if pos < end:
            out.append((pos, end - pos, EXTENT_HOLE | EXTENT_ZERO))
        return out

    # -- accounting -----------------------------------------------------------------------------------
    @property
    def pages(self) -> int:
        """Number of allocated pages."""
        return sum(l2.count for l2 in self._l1_dirs)

    @property
    def resident_bytes(self) -> int:
        return self._data_bytes + len(self._l1_dirs) * (L2_DIR_BYTES + L1_ENTRY_BYTES)


class SparseAllocator(PagedAllocator):
    """allocator=sparse, nbdkit's default: uncompressed 32 KiB pages, virtual size up to 2**63-1."""

    kind = "sparse"
