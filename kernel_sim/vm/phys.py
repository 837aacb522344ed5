"""Physical pages: the page allocator every kernel allocation draws guest RAM from.

Why this exists: "guest memory is the truth" (DESIGN.md). Kernel stacks, kmem, md sectors, tmpfs
pages and page-table pages all take real pages of guest RAM from here, so /dev/mem, dumps and the
free-page figures show what really happened.

What is free follows FreeBSD 11/12 armv7:
* initarm() excludes the kernel and everything pmap_bootstrap allocated after it from the VM
  allocation pool: physmem_exclude_region(abp_physaddr, pmap_preboot_get_pages(0) - abp_physaddr,
  EXFLAG_NOALLOC) (sys/arm/arm/machdep.c). Here that is [handoff.physaddr, handoff.first_free_pa):
  the kernel, preloaded modules, metadata, the round-up to 1 MiB before the boot page tables, the
  L1 table, PT2TAB and the NKPT2PG (+ extra) PT2 pages.
* RAM below the 1 MiB-aligned load address is free unless a region is reserved (nothing on virt:
  the kernel loads at the start of RAM).
* With the Linux boot ABI the guest does not copy the DTB into the kernel as FreeBSD's
  fake_preload_metadata() does (sys/arm/arm/machdep_boot.c), so its pages stay where QEMU put them:
  `from_handoff` reserves them (choice made here, so the DTB is never handed out and zeroed).
* v_page_count is the number of pages handed to the allocator at boot (vm_page_startup /
  vm_phys_add_seg in sys/vm/vm_page.c, sys/vm/vm_phys.c); pages taken later (wired, PT2 pages,
  kmem) lower free_count, never v_page_count.

Allocation is deterministic: always the lowest free address first (FreeBSD's buddy queues give no
such guarantee; a reproducible boot matters more here). The state is one byte per page in a
bytearray, searched with C-speed regular expressions, so a 3 GiB board (786432 pages) costs
768 KiB and no Python object per page.
"""

from __future__ import annotations

import re

from board.memory import PhysicalAbort, PhysicalMemory
from kernel_sim.guest.abi import PAGE_SIZE

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Iterable

    from board.machine import Machine
    from kernel_sim.guest.abi import Handoff

__all__ = ["OutOfPages", "PhysAllocator", "PAGE_SIZE"]

PAGE_SHIFT = 12             # sys/arm/include/param.h
PAGE_MASK = PAGE_SIZE - 1
FDT_MAGIC = 0xD00DFEED      # the flattened device tree header (Devicetree Specification 5.2)
ABI_LINUX = 2               # struct handoff .abi (kernel_sim/guest/armboard.h)

_FREE, _ALLOCATED, _RESERVED = 0, 1, 2
_FREE_RUN = re.compile(rb"\x00+")
_FREE_BYTE = bytes([_FREE])
_ZEROS = memoryview(bytes(1 << 20))     # zeroing goes out in 1 MiB writes


class OutOfPages(Exception):
    """No free page (or no free run of the requested length) is left."""

    def __init__(self, requested: int, free: int, contiguous: bool) -> None:
        what = f"{requested} contiguous pages" if contiguous and requested > 1 else f"{requested} pages"
        super().__init__(f"out of physical pages: {what} requested, {free} free")
        self.requested = requested
        self.free = free
        self.contiguous = contiguous


def _round_page(x: int) -> int:
    return (x + PAGE_MASK) & ~PAGE_MASK


class PhysAllocator:
    """The free pages of guest RAM [ram_base, ram_end) minus the excluded ranges.

    `excluded` ranges (physical [start, end), clipped to RAM and widened to whole pages) are never
    free and can never be freed.
    """

    def __init__(self, phys: PhysicalMemory, ram_base: int, ram_end: int,
                 excluded: Iterable[tuple[int, int]] = ()) -> None:
        if ram_base & PAGE_MASK or ram_end & PAGE_MASK or ram_end <= ram_base:
            raise ValueError(f"RAM range 0x{ram_base:x}-0x{ram_end:x} is not a non-empty range of pages")
        self.phys = phys
        self.ram_base = ram_base
        self.ram_end = ram_end
        self.npages = (ram_end - ram_base) >> PAGE_SHIFT
        self._map = bytearray(self.npages)
        self.excluded: list[tuple[int, int]] = []
        for start, end in excluded:
            start, end = max(start & ~PAGE_MASK, ram_base), min(_round_page(end), ram_end)
            if start < end:
                self.excluded.append((start, end))
                i, j = self._index(start), self._index(end)
                self._map[i:j] = bytes([_RESERVED]) * (j - i)
        self.excluded.sort()
        self._free = self._map.count(_FREE)
        self._hint = 0                  # no free page below this index
        self.v_page_count = self._free  # vm_cnt.v_page_count: managed pages at boot

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_handoff(cls, phys: PhysicalMemory, handoff: Handoff, *, ram_base: int, ram_size: int,
                     reserved: Iterable[tuple[int, int]] = ()) -> PhysAllocator:
        """The allocator FreeBSD's initarm would build from this boot (see the module docstring)."""
        excluded = [(handoff.physaddr, handoff.first_free_pa), *reserved]
        if handoff.abi == ABI_LINUX and handoff.dtbp:
            excluded.append((handoff.dtbp, handoff.dtbp + _fdt_size(phys, handoff.dtbp)))
        return cls(phys, ram_base, ram_base + ram_size, excluded)

    @classmethod
    def for_machine(cls, machine: Machine, handoff: Handoff,
                    reserved: Iterable[tuple[int, int]] = ()) -> PhysAllocator:
        """The allocator over a booted machine's RAM (the board profile's base, the machine's size)."""
        return cls.from_handoff(machine.phys, handoff, ram_base=machine.profile.ram_base,
                                ram_size=machine.ram_size, reserved=reserved)

    # ------------------------------------------------------------------ figures
    @property
    def free_count(self) -> int:
        """vm_cnt.v_free_count: pages that can be allocated now."""
        return self._free

    @property
    def allocated_count(self) -> int:
        """Pages handed out and not yet freed."""
        return self.v_page_count - self._free

    def is_free(self, pa: int) -> bool:
        return self.ram_base <= pa < self.ram_end and self._map[self._index(pa & ~PAGE_MASK)] == _FREE

    def free_ranges(self) -> list[tuple[int, int]]:
        """The free physical ranges [start, end), in address order (phys_avail's shape)."""
        base = self.ram_base
        return [(base + (m.start() << PAGE_SHIFT), base + (m.end() << PAGE_SHIFT))
                for m in _FREE_RUN.finditer(self._map)]

    # ------------------------------------------------------------------ allocation
    def alloc(self, npages: int = 1, *, contiguous: bool = False, zero: bool = True,
              alignment: int = PAGE_SIZE) -> list[int]:
        """Take `npages` pages, lowest addresses first; their physical addresses in ascending order.

        `contiguous` asks for one physically contiguous run whose start is a multiple of
        `alignment` (a power of two, at least a page: 16 KiB for an L1 table). `zero` clears the
        pages in guest RAM, as VM_ALLOC_ZERO callers expect. Nothing is taken when OutOfPages is
        raised."""
        if npages < 1:
            raise ValueError(f"cannot allocate {npages} pages")
        if alignment < PAGE_SIZE or alignment & (alignment - 1):
            raise ValueError(f"alignment 0x{alignment:x} is not a power of two of at least a page")
        if npages > self._free:
            raise OutOfPages(npages, self._free, contiguous)
        if contiguous:
            runs = [self._find_contig(npages, alignment)]
        else:
            runs = []
            need = npages
            pos = self._hint
            while need:
                # Bounded scans: find the next free page, then at most `need` pages of its run
                # (matching the whole run would cost O(free pages) on every allocation).
                start = self._map.find(_FREE_BYTE, pos)
                end = _FREE_RUN.match(self._map, start, start + need).end()
                runs.append((start, end))
                need -= end - start
                pos = end
            self._hint = runs[-1][1]
        out: list[int] = []
        for start, end in runs:
            self._map[start:end] = bytes([_ALLOCATED]) * (end - start)
            pa = self.ram_base + (start << PAGE_SHIFT)
            if zero:
                self._zero(pa, (end - start) << PAGE_SHIFT)
            out.extend(range(pa, pa + ((end - start) << PAGE_SHIFT), PAGE_SIZE))
        self._free -= npages
        return out

    def alloc_page(self, *, zero: bool = True) -> int:
        """One page (vm_page_alloc): its physical address."""
        return self.alloc(1, zero=zero)[0]

    def _find_contig(self, npages: int, alignment: int) -> tuple[int, int]:
        for m in _FREE_RUN.finditer(self._map, self._hint):
            start, end = m.span()
            if end - start < npages:
                continue
            pa = self.ram_base + (start << PAGE_SHIFT)
            first = start + (((-pa) % alignment) >> PAGE_SHIFT)
            if first + npages <= end:
                return first, first + npages
        raise OutOfPages(npages, self._free, True)

    def free(self, pa: int, npages: int = 1) -> None:
        """Return pages taken with alloc(); freeing a page that is not allocated is a ValueError."""
        if pa & PAGE_MASK or npages < 1:
            raise ValueError(f"free(0x{pa:x}, {npages}): not a page-aligned, non-empty range")
        if pa < self.ram_base or pa + (npages << PAGE_SHIFT) > self.ram_end:
            raise ValueError(f"free(0x{pa:x}, {npages}): outside RAM 0x{self.ram_base:x}-0x{self.ram_end:x}")
        i = self._index(pa)
        j = i + npages
        if self._map.count(_ALLOCATED, i, j) != npages:
            bad = next(k for k in range(i, j) if self._map[k] != _ALLOCATED)
            state = "free" if self._map[bad] == _FREE else "reserved (kernel or boot tables)"
            raise ValueError(f"free(0x{pa:x}, {npages}): page 0x{self.ram_base + (bad << PAGE_SHIFT):x} is {state}")
        self._map[i:j] = bytes(npages)
        self._free += npages
        self._hint = min(self._hint, i)

    # ------------------------------------------------------------------ helpers
    def _index(self, pa: int) -> int:
        return (pa - self.ram_base) >> PAGE_SHIFT

    def _zero(self, pa: int, size: int) -> None:
        """pmap_zero_page over a run, through the bus (the host writes guest RAM)."""
        while size > 0:
            n = min(size, len(_ZEROS))
            self.phys.write(pa, _ZEROS[:n])
            pa += n
            size -= n

    def __repr__(self) -> str:
        return (f"PhysAllocator(0x{self.ram_base:08x}-0x{self.ram_end:08x}, v_page_count={self.v_page_count}, "
                f"free_count={self._free})")


def dump_avail_of(phys: PhysicalMemory) -> list[tuple[int, int]]:
    """dump_avail: the RAM on the bus as merged [start, end) ranges, in address order (what arm's
    physmem code reports for a board without NODUMP exclusions; /dev/mem and minidumps use it)."""
    out: list[tuple[int, int]] = []
    for r in sorted(phys.regions, key=lambda r: r.base):
        if r.kind not in ("ram", "file"):
            continue
        if out and out[-1][1] == r.base:
            out[-1] = (out[-1][0], r.end)
        else:
            out.append((r.base, r.end))
    return out


def _fdt_size(phys: PhysicalMemory, pa: int) -> int:
    """A DTB's totalsize from its header (big-endian), or one page when no FDT is there."""
    try:
        header = phys.read(pa, 8)
    except PhysicalAbort:   # nothing there: reserve the page the guest was pointed at
        return PAGE_SIZE
    magic, total = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
    return total if magic == FDT_MAGIC and total > 0 else PAGE_SIZE
