"""A small vmem(9)-like arena allocator: the bookkeeping behind every range of kernel virtual addresses.

Why: FreeBSD 11.3 hands out KVA through vmem arenas (sys/kern/subr_vmem.c): kernel_arena imports 1 MiB
chunks from kernel_map, and the kmem, buffer and transient arenas are vmem arenas over fixed ranges.
What does not fit must fail the way it fails there, so the model keeps real address ranges, not totals.

Like subr_vmem.c, and deliberately so:
* sizes are rounded up to the quantum (vmem_roundup_size); addresses are quantum multiples;
* free segments coalesce with their neighbours, but never across the boundary of two imported spans
  (vmem keeps a span as a unit: an allocation cannot straddle two spans, which is why an import must
  be large enough by itself);
* "first-fit" takes the lowest address that fits (vm_map_find's search in kernel_map), "best-fit" the
  smallest free segment that fits, the lowest address on a tie (M_BESTFIT, what kva_alloc asks for).

Free segments are a sorted list of starts (bisect) plus a start -> end dict; allocations a dict. A search
scans the free segments only, so thousands of allocations stay cheap. Everything is deterministic.
"""

from __future__ import annotations

import bisect
from collections import namedtuple

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from typing import Literal

    Policy = Literal["first-fit", "best-fit"]

PAGE_SIZE = 4096  # sys/arm/include/param.h



class VmemExhausted(Exception):
    """No free segment can hold the request (vmem_xalloc returning ENOMEM)."""

    def __init__(self, arena: str, requested: int, free: int, largest: int, align: int) -> None:
        super().__init__(f"{arena}: no room for {requested} bytes (align {align}): {free} bytes free, "
                         f"largest free segment {largest} bytes")
        self.arena = arena
        self.requested = requested
        self.free = free
        self.largest = largest
        self.align = align


class VmemAllocation(namedtuple("VmemAllocation", "start size name")):
    """One allocated range, named for the layout table."""

    __slots__ = ()

    start: int
    size: int
    name: str

    @property
    def end(self) -> int:
        return self.start + self.size


def _roundup(x: int, m: int) -> int:
    return -(-x // m) * m


class Vmem:
    """An arena over one or more spans, with a quantum (PAGE_SIZE by default)."""

    def __init__(self, name: str, base: int = 0, size: int = 0, *, quantum: int = PAGE_SIZE) -> None:
        if quantum <= 0 or quantum & (quantum - 1):
            raise ValueError(f"{name}: quantum {quantum} is not a power of two")
        self.name = name
        self.quantum = quantum
        self._spans: list[tuple[int, int]] = []     # sorted [start, end)
        self._span_starts: set[int] = set()
        self._span_ends: set[int] = set()
        self._free_starts: list[int] = []            # sorted
        self._free: dict[int, int] = {}              # start -> end
        self._allocs: dict[int, tuple[int, str]] = {}  # start -> (size, name)
        self._in_use = 0
        self._total = 0
        if size:
            self.add(base, size)

    # -- spans -------------------------------------------------------------------------------------
    def add(self, base: int, size: int) -> None:
        """Import the span [base, base+size) (vmem_add): it must not overlap an existing span."""
        self._check_range(base, size, "span")
        end = base + size
        i = bisect.bisect_left(self._spans, (base, end))
        if (i > 0 and self._spans[i - 1][1] > base) or (i < len(self._spans) and self._spans[i][0] < end):
            raise ValueError(f"{self.name}: span 0x{base:x}-0x{end:x} overlaps an existing span")
        self._spans.insert(i, (base, end))
        self._span_starts.add(base)
        self._span_ends.add(end)
        self._total += size
        self._insert_free(base, end)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._spans)

    # -- allocation --------------------------------------------------------------------------------
    def alloc(self, size: int, *, align: int | None = None, policy: Policy = "first-fit", name: str = "") -> int:
        """Allocate `size` bytes (rounded up to the quantum) aligned to `align`; return the address."""
        size = self._round_size(size)
        align = self._check_align(align)
        best: tuple[int, int] | None = None  # (segment length, address)
        for start in self._free_starts:
            end = self._free[start]
            addr = _roundup(start, align)
            if addr + size > end:
                continue
            if policy == "first-fit":
                best = (0, addr)
                break
            if policy != "best-fit":
                raise ValueError(f"unknown vmem policy {policy!r}")
            if best is None or end - start < best[0]:
                best = (end - start, addr)
                if addr == start and end - start == size:
                    break   # an exact fit cannot be beaten
        if best is None:
            raise VmemExhausted(self.name, size, self.free_total, self.largest_free_aligned(align), align)
        self._take(best[1], size, name)
        return best[1]

    def xalloc(self, addr: int, size: int, *, name: str = "") -> int:
        """Allocate exactly [addr, addr+size) (vmem_xalloc with minaddr == addr): it must be free."""
        self._check_range(addr, size, "range")
        size = self._round_size(size)
        i = bisect.bisect_right(self._free_starts, addr) - 1
        if i < 0 or self._free[self._free_starts[i]] < addr + size:
            raise VmemExhausted(self.name, size, self.free_total, self.largest_free, self.quantum)
        self._take(addr, size, name)
        return addr

    def free(self, addr: int, size: int) -> None:
        """Free an allocation (vmem_free): `addr` and `size` must be those it was allocated with."""
        size = self._round_size(size)
        got = self._allocs.get(addr)
        if got is None or got[0] != size:
            raise ValueError(f"{self.name}: free of 0x{addr:x}+{size} does not match an allocation")
        del self._allocs[addr]
        self._in_use -= size
        self._insert_free(addr, addr + size)

    # -- statistics --------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes in all spans (vmem_size(VMEM_ALLOC|VMEM_FREE))."""
        return self._total

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def free_total(self) -> int:
        """Free bytes in all spans (vmem_size(VMEM_FREE))."""
        return self._total - self._in_use

    @property
    def largest_free(self) -> int:
        return max((end - start for start, end in self._free.items()), default=0)

    def largest_free_aligned(self, align: int) -> int:
        """The largest request an `align`-aligned allocation could still get."""
        best = 0
        for start, end in self._free.items():
            best = max(best, end - _roundup(start, align))
        return best

    def allocations(self) -> list[VmemAllocation]:
        """The live allocations in address order, for a layout table."""
        return [VmemAllocation(a, s, n) for a, (s, n) in sorted(self._allocs.items())]

    def free_segments(self) -> list[tuple[int, int]]:
        """The free segments [start, end) in address order."""
        return [(s, self._free[s]) for s in self._free_starts]

    # -- internals ---------------------------------------------------------------------------------
    def _round_size(self, size: int) -> int:
        if size <= 0:
            raise ValueError(f"{self.name}: size {size} must be positive")
        return _roundup(size, self.quantum)

    def _check_align(self, align: int | None) -> int:
        align = self.quantum if align is None else align
        if align < self.quantum or align & (align - 1):
            raise ValueError(f"{self.name}: alignment {align} is not a power-of-two multiple of the quantum")
        return align

    def _check_range(self, base: int, size: int, what: str) -> None:
        if size <= 0 or base < 0 or base % self.quantum or size % self.quantum:
            raise ValueError(f"{self.name}: {what} 0x{base:x}+0x{size:x} is not a non-empty range of quanta")

    def _take(self, addr: int, size: int, name: str) -> None:
        i = bisect.bisect_right(self._free_starts, addr) - 1
        start = self._free_starts[i]
        end = self._free.pop(start)
        del self._free_starts[i]
        if start < addr:
            self._free[start] = addr
            bisect.insort(self._free_starts, start)
        if addr + size < end:
            self._free[addr + size] = end
            bisect.insort(self._free_starts, addr + size)
        self._allocs[addr] = (size, name)
        self._in_use += size

    def _insert_free(self, start: int, end: int) -> None:
        """Add [start, end) to the free list, coalescing with neighbours inside the same span."""
        i = bisect.bisect_left(self._free_starts, start)
        if i > 0:
            prev = self._free_starts[i - 1]
            if self._free[prev] == start and start not in self._span_starts:
                start = prev
                del self._free_starts[i - 1]
                del self._free[prev]
                i -= 1
        if i < len(self._free_starts):
            nxt = self._free_starts[i]
            if nxt == end and end not in self._span_ends:
                end = self._free.pop(nxt)
                del self._free_starts[i]
        self._free[start] = end
        self._free_starts.insert(i, start)
