"""malloc(9) over the kmem arena, with malloc types whose sizes are charged.

Allocations take KVA from the kmem arena that kmeminit reserved at boot and real pages mapped in
the guest's tables. M_NOWAIT gets ENOMEM when the arena (or physical memory) is exhausted. M_WAITOK
would sleep forever on real hardware (sys/kern/subr_vmem.c vmem_xalloc): here the caller gets
KmemExhausted, which the boot turns into a diagnosis instead of a hang.
"""

from __future__ import annotations

from collections import defaultdict

from kernel_sim.guest.abi import PAGE_SIZE
from kernel_sim.vm.phys import OutOfPages, PhysAllocator
from kernel_sim.vm.pmap import KernelPmap
from kernel_sim.vm.vmem import Vmem, VmemExhausted

M_NOWAIT, M_WAITOK, M_ZERO = 0x0001, 0x0002, 0x0100   # sys/sys/malloc.h
ENOMEM = 12


class KmemExhausted(Exception):
    """An M_WAITOK allocation that would sleep forever: the arena or the free pages ran out."""

    def __init__(self, what: str, size: int, mtype: str) -> None:
        super().__init__(f"{what} exhausted allocating {size} bytes of {mtype}")
        self.what = what
        self.size = size
        self.mtype = mtype


class Malloc:
    """The kernel's malloc over one kmem arena."""

    def __init__(self, arena: Vmem, pmap: KernelPmap, pages: PhysAllocator) -> None:
        self.arena = arena
        self.pmap = pmap
        self.pages = pages
        self.by_type: dict[str, int] = defaultdict(int)   # bytes in use per malloc type
        self.allocations: dict[int, tuple[int, str]] = {}

    @property
    def in_use(self) -> int:
        return self.arena.in_use

    def malloc(self, size: int, mtype: str, flags: int = M_WAITOK) -> int | None:
        """A page-granular allocation (what UMA's large-allocation path does): the KVA or None (ENOMEM)."""
        length = (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        try:
            va = self.arena.alloc(length, name=mtype)
        except VmemExhausted:
            if flags & M_NOWAIT:
                return None
            raise KmemExhausted("kmem arena", size, mtype) from None
        try:
            pas = self.pages.alloc(length // PAGE_SIZE, zero=bool(flags & M_ZERO))
        except OutOfPages:
            self.arena.free(va, length)
            if flags & M_NOWAIT:
                return None
            raise KmemExhausted("free physical memory", size, mtype) from None
        self.pmap.kenter_range(va, pas)
        self.allocations[va] = (length, mtype)
        self.by_type[mtype] += length
        return va

    def free(self, va: int) -> None:
        length, mtype = self.allocations.pop(va)
        pas = [self.pmap.kextract(va + off) for off in range(0, length, PAGE_SIZE)]
        self.pmap.kremove_range(va, length)
        for pa in pas:
            if pa is not None:
                self.pages.free(pa)
        self.arena.free(va, length)
        self.by_type[mtype] -= length

    def top_types(self, n: int = 3) -> list[tuple[str, int]]:
        return sorted(((t, b) for t, b in self.by_type.items() if b), key=lambda tb: -tb[1])[:n]
