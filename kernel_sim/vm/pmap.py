"""The kernel pmap over the guest's real page tables (FreeBSD 11/12 pmap-v6 layout).

Why this exists: after the hand-over the kernel is Python, but the CPU still translates through
the tables the guest's pmap_bootstrap built (kernel_sim/guest/pmap.c). Every kernel mapping the
Python kernel makes (kmem, kernel stacks, md sectors, ...) is written into those tables in guest
RAM, so Unicorn's MMU, the Python MMU (kernel_sim/vm/mmu.py), /dev/kmem and dumps all see it.

The layout (sys/arm/arm/pmap-v6.c, sys/arm/include/pmap_var.h, sys/arm/include/pte-v6.h):
* kern_pt1: the 16 KiB L1 table, one PTE1 per MiB; KVA is linked to L2 tables (PTE1_LINK).
* PT2 pages: one page holds NPT2_IN_PG = 4 L2 tables of 1 KiB, i.e. the 1024 PTE2s of 4 MiB of
  KVA; PTE2 of `va` is word (va >> 12) & 0x3FF of the page for va >> 22.
* PT2TAB: one page of PTE2s, entry va >> 22 maps the PT2 page of that 4 MiB. Its own entry for
  PT2MAP (KERNBASE - 4 MiB) points at itself, and the L1 entries of the PT2MAP window link to
  PT2TAB's four quarters, so every PT2 page appears at PT2MAP + (va >> 22) * PAGE_SIZE by the
  mere act of writing its PT2TAB entry (pmap_kenter_pt2tab).

The host writes the tables by physical address (PhysicalMemory) and then does the TLB maintenance
the CPU needs: one `flush_tlb()` call per public operation, never per page (Unicorn keeps stale
translations otherwise: shared/reference/unicorn.md).

Choices (FreeBSD says otherwise or nothing):
* PTE2 bits are the guest's (kernel_sim/guest/armboard.h PTE2_KERN = V | A, no PTE2_S: a UP kernel,
  TEX class 0 = VM_MEMATTR_WB_WA). A read-only mapping sets PTE2_AP_KR = PTE2_RO | PTE2_NM as
  FreeBSD does: PTE2_NM is the hardware AP[2] bit (0x200) that makes it read-only for both MMUs,
  PTE2_RO (0x80, TEX[1]) is FreeBSD's software copy, ignored by the hardware under TEX remap.
  Non-executable mappings set PTE2_NX (FreeBSD's pmap_kenter maps everything executable; here
  execute permission has to be asked for).
* PT2TAB entries for new PT2 pages are PTE2_KERN | PTE2_NX like the guest's, where FreeBSD's
  PTE2_KPT has no NX: page tables are never code.
* A kenter (or kenter_range) reaching beyond kernel_vm_end grows the kernel first, as FreeBSD's
  callers do (kmem_back / vm_map_insert call pmap_growkernel before pmap_enter), so it can raise
  KernelPanic("pmap_growkernel: no memory to grow kernel"). Addresses outside
  [KERNBASE, vm_max_kernel_address) are refused with ValueError: they are not kernel map KVA.
* growkernel() follows pmap_growkernel: it links one L2 table per MiB (rounding addr up to
  PTE1_SIZE, not to 4 MiB), allocates a PT2 page only when the 4 MiB has none yet, skips L1 entries
  that are already valid (sections, links) and stops at vm_max_kernel_address. Rounding to 4 MiB
  would link over the console's devmap section at 0xFFE00000, inside the 4 MiB at 0xFFC00000.
"""

from __future__ import annotations

import struct
from collections import namedtuple

from board.memory import PhysicalMemory
from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE, PT2MAP
from kernel_sim.kern.panic import KernelPanic
from kernel_sim.vm.phys import OutOfPages, PhysAllocator

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from board.machine import Machine
    from kernel_sim.guest.abi import Handoff

__all__ = ["KernelPmap", "PmapStats", "pte2_bits"]

PAGE_SHIFT = 12
PAGE_MASK = PAGE_SIZE - 1
PTE1_SHIFT = 20                     # sys/arm/include/pte-v6.h L1_S_SHIFT
PTE1_SIZE = 1 << PTE1_SHIFT         # sys/arm/include/pte-v6.h L1_S_SIZE
PT2TAB_SHIFT = 22                   # one PT2TAB entry (one PT2 page) per 4 MiB
NPT2_IN_PG = 4                      # sys/arm/include/pmap_var.h
NB_IN_PT2 = 1024                    # sys/arm/include/pte-v6.h L2_TABLE_SIZE
NPTE2_IN_PG = PAGE_SIZE // 4        # PTE2s in one PT2 page (4 L2 tables of 256)

# L1 descriptors (sys/arm/include/pte-v6.h).
L1_TYPE_MASK = 0x3
L1_TYPE_C = 0x1                     # PTE1_LINK: a coarse L2 table
L1_C_ADDR_MASK = 0xFFFFFC00
L1_S_SUPERSEC = 0x00040000
# L2 descriptors and pmap-v6's names for their bits (sys/arm/include/pte-v6.h).
PTE2_NX = 0x001                     # L2_NX
PTE2_V = 0x002                      # L2_TYPE_S: small page
PTE2_A = 0x010                      # L2_AP0: the access flag with SCTLR.AFE
PTE2_RO = 0x080                     # L2_TEX1: software read-only (TEX remap leaves TEX[2:1] to the OS)
PTE2_NM = 0x200                     # L2_AP2: "not modified", the hardware write-disable bit
PTE2_FRAME = 0xFFFFF000
PTE2_AP_KRW = 0                     # sys/arm/include/pte-v6.h
PTE2_AP_KR = PTE2_RO | PTE2_NM      # sys/arm/include/pte-v6.h
PTE2_KERN = PTE2_V | PTE2_A         # kernel_sim/guest/armboard.h (pte-v6.h PTE2_KERN without PTE2_S)
L2_TYPE_L = 0x1                     # large (64 KiB) page, never written here but decoded
L2_L_FRAME = 0xFFFF0000

PANIC_NO_MEMORY = "pmap_growkernel: no memory to grow kernel"       # sys/arm/arm/pmap-v6.c
PANIC_NO_PT2 = "pmap_kenter_prot_attr: kernel PT2 not allocated!"   # sys/arm/arm/pmap-v6.c


def pte2_bits(*, writable: bool = True, executable: bool = False) -> int:
    """The PTE2 bits (everything but the frame) of a kernel 4 KiB mapping."""
    return PTE2_KERN | (PTE2_AP_KRW if writable else PTE2_AP_KR) | (0 if executable else PTE2_NX)


class PmapStats(namedtuple("PmapStats", "kernel_vm_end vm_max_kernel_address pt2pg_in_use pt2pg_boot pt2pg_grown")):
    """What `sysctl vm.pmap` and the boot banner report about the kernel pmap."""

    __slots__ = ()

    kernel_vm_end: int  # first KVA without an L2 table linked (pmap-v6 kernel_vm_end)
    vm_max_kernel_address: int  # end of the kernel map (the lowest devmap address)
    pt2pg_in_use: int  # PT2 pages linked for KVA from KERNBASE (PT2TAB entries valid)
    pt2pg_boot: int  # linked by the guest's pmap_bootstrap (NKPT2PG + extra)
    pt2pg_grown: int  # taken from the page allocator by growkernel


class KernelPmap:
    """kernel_pmap: kenter/kremove/kextract and growkernel on the tables in guest RAM."""

    def __init__(self, phys: PhysicalMemory, pages: PhysAllocator, *, kern_pt1: int, kern_pt2tab: int,
                 kernel_vm_end: int, vm_max_kernel_address: int,
                 flush_tlb: Callable[[], None] | None = None) -> None:
        self.phys = phys
        self.pages = pages
        self.kern_pt1 = kern_pt1
        self.kern_pt2tab = kern_pt2tab
        self.kernel_vm_end = kernel_vm_end
        self.vm_max_kernel_address = vm_max_kernel_address
        self.flush_tlb = flush_tlb
        self.flushes = 0            # TLB flushes: one per kenter/kremove call, one per growkernel that linked
        self.pt2pg_grown = 0
        self.pt2pg_boot = self.pt2pg_in_use()

    @classmethod
    def from_handoff(cls, phys: PhysicalMemory, handoff: Handoff, pages: PhysAllocator,
                     flush_tlb: Callable[[], None] | None = None) -> KernelPmap:
        """The pmap of the tables pmap_bootstrap handed over (vm_max_kernel_address = devmap_va)."""
        return cls(phys, pages, kern_pt1=handoff.kern_pt1, kern_pt2tab=handoff.kern_pt2tab,
                   kernel_vm_end=handoff.kernel_vm_end, vm_max_kernel_address=handoff.devmap_va,
                   flush_tlb=flush_tlb)

    @classmethod
    def for_machine(cls, machine: Machine, handoff: Handoff, pages: PhysAllocator) -> KernelPmap:
        """The pmap of a booted machine, flushing Unicorn's TLB after every change."""
        return cls.from_handoff(machine.phys, handoff, pages, flush_tlb=machine.flush_tlb)

    # ------------------------------------------------------------------ table access
    def _pte1_pa(self, va: int) -> int:
        return self.kern_pt1 + 4 * (va >> PTE1_SHIFT)

    def pte1(self, va: int) -> int:
        """The L1 descriptor covering va."""
        return self.phys.read_u32(self._pte1_pa(va))

    def pt2tab_entry(self, va: int) -> int:
        """The PT2TAB entry (the PTE2 mapping the PT2 page) for the 4 MiB holding va."""
        return self.phys.read_u32(self.kern_pt2tab + 4 * (va >> PT2TAB_SHIFT))

    def _pt2pg(self, va: int) -> int | None:
        pte2 = self.pt2tab_entry(va)
        return pte2 & PTE2_FRAME if pte2 & PTE2_V else None

    def pte2(self, va: int) -> int:
        """The PTE2 of va as the guest sees it at PT2MAP (0 when no PT2 page is allocated)."""
        pt2pg = self._pt2pg(va)
        if pt2pg is None:
            return 0
        return self.phys.read_u32(pt2pg + 4 * ((va >> PAGE_SHIFT) & (NPTE2_IN_PG - 1)))

    @staticmethod
    def pt2map_va(va: int) -> int:
        """The KVA where the guest reads the PTE2 of va (pmap-v6 pt2map_entry)."""
        return PT2MAP + 4 * ((va & 0xFFFFFFFF) >> PAGE_SHIFT)

    def pt2pg_in_use(self) -> int:
        """PT2 pages linked for KVA from KERNBASE (the PT2MAP self-entry is not counted)."""
        first = KERNBASE >> PT2TAB_SHIFT
        count = (1 << (32 - PT2TAB_SHIFT)) - first
        words = struct.unpack(f"<{count}I", self.phys.read(self.kern_pt2tab + 4 * first, 4 * count))
        return sum(1 for w in words if w & PTE2_V)

    def stats(self) -> PmapStats:
        return PmapStats(self.kernel_vm_end, self.vm_max_kernel_address, self.pt2pg_in_use(),
                         self.pt2pg_boot, self.pt2pg_grown)

    def _flush(self) -> None:
        self.flushes += 1
        if self.flush_tlb is not None:
            self.flush_tlb()

    def _check_kva(self, va: int, npages: int, what: str) -> None:
        if va & PAGE_MASK:
            raise ValueError(f"{what}: va 0x{va:x} is not page aligned")
        end = va + (npages << PAGE_SHIFT)
        if va < KERNBASE or end > self.vm_max_kernel_address:
            raise ValueError(f"{what}: 0x{va:08x}-0x{end:08x} is outside the kernel map "
                             f"0x{KERNBASE:08x}-0x{self.vm_max_kernel_address:08x}")

    # ------------------------------------------------------------------ growkernel
    def growkernel(self, addr: int) -> None:
        """pmap_growkernel: link L2 tables up to addr (rounded up to 1 MiB, capped at the map's end).

        Raises KernelPanic when no physical page is left for a PT2 page; what was linked before
        stays linked and consistent."""
        try:
            changed = self._grow(addr)
        except KernelPanic:
            self._flush()
            raise
        if changed:
            self._flush()

    def _grow(self, addr: int) -> bool:
        vm_max = self.vm_max_kernel_address
        end = self.kernel_vm_end = (self.kernel_vm_end + PTE1_SIZE - 1) & ~(PTE1_SIZE - 1)
        addr = (addr + PTE1_SIZE - 1) & ~(PTE1_SIZE - 1)
        if addr - 1 >= vm_max:
            addr = vm_max
        changed = False
        while end < addr:
            if self.pte1(end) & L1_TYPE_MASK == 0:
                pt2pg = self._pt2pg(end)
                if pt2pg is None:
                    try:
                        pt2pg = self.pages.alloc_page(zero=True)
                    except OutOfPages:
                        raise KernelPanic(PANIC_NO_MEMORY) from None
                    # pmap_kenter_pt2tab: this also maps the new page at PT2MAP.
                    self.phys.write_u32(self.kern_pt2tab + 4 * (end >> PT2TAB_SHIFT), pt2pg | PTE2_KERN | PTE2_NX)
                    self.pt2pg_grown += 1
                # pmap_kenter_pte1(kernel_vm_end, PTE1_LINK(pt2_pa)): the L2 table of this MiB.
                pt2_pa = pt2pg + NB_IN_PT2 * ((end >> PTE1_SHIFT) & (NPT2_IN_PG - 1))
                self.phys.write_u32(self._pte1_pa(end), (pt2_pa & L1_C_ADDR_MASK) | L1_TYPE_C)
                changed = True
            end += PTE1_SIZE
            self.kernel_vm_end = end
            if end - 1 >= vm_max:
                self.kernel_vm_end = vm_max
                break
        return changed

    # ------------------------------------------------------------------ kenter / kremove
    def kenter(self, va: int, pa: int, *, writable: bool = True, executable: bool = False) -> None:
        """pmap_kenter: map one 4 KiB page of KVA to pa (growing the kernel when va needs it)."""
        self.kenter_range(va, (pa,), writable=writable, executable=executable)

    def kenter_range(self, va: int, pas: Sequence[int], *, writable: bool = True,
                     executable: bool = False) -> None:
        """pmap_qenter: map len(pas) consecutive pages of KVA from va, page i to pas[i].

        For a physically contiguous run pass range(pa, pa + size, PAGE_SIZE). No PTE2 is written
        when an argument is refused (ValueError) or growing the kernel panics."""
        npages = len(pas)
        if npages == 0:
            return
        self._check_kva(va, npages, "kenter")
        for pa in pas:
            if pa & PAGE_MASK or not 0 <= pa <= PTE2_FRAME:
                raise ValueError(f"kenter: pa 0x{pa:x} is not a page-aligned 32-bit physical address")
        end = va + (npages << PAGE_SHIFT)
        bits = pte2_bits(writable=writable, executable=executable)
        try:
            if end > self.kernel_vm_end:
                self._grow(end)
            chunks = self._pte2_chunks(va, npages)
            if any(pte2_pa is None for _, pte2_pa, _ in chunks):
                raise KernelPanic(PANIC_NO_PT2)     # an L1 entry valid without a PT2 page: never built here
            done = 0
            for _, pte2_pa, count in chunks:
                assert pte2_pa is not None
                self.phys.write(pte2_pa, struct.pack(f"<{count}I", *[pa | bits for pa in pas[done:done + count]]))
                done += count
        finally:
            self._flush()

    def _pte2_chunks(self, va: int, npages: int) -> list[tuple[int, int | None, int]]:
        """Per PT2 page touched by the npages from va: (first va, PA of its first PTE2 or None, count)."""
        out: list[tuple[int, int | None, int]] = []
        while npages > 0:
            index = (va >> PAGE_SHIFT) & (NPTE2_IN_PG - 1)
            count = min(npages, NPTE2_IN_PG - index)
            pt2pg = self._pt2pg(va)
            out.append((va, None if pt2pg is None else pt2pg + 4 * index, count))
            va += count << PAGE_SHIFT
            npages -= count
        return out

    def kremove(self, va: int) -> None:
        """pmap_kremove: unmap one 4 KiB page of KVA."""
        self.kremove_range(va, PAGE_SIZE)

    def kremove_range(self, va: int, size: int) -> None:
        """pmap_qremove: unmap [va, va + size) (size rounded up to pages).

        As pmap_kremove, a 1 MiB section met in the range is removed whole; pages whose 4 MiB has
        no PT2 page are already unmapped."""
        npages = (size + PAGE_MASK) >> PAGE_SHIFT
        if npages <= 0:
            return
        self._check_kva(va, npages, "kremove")
        try:
            while npages > 0:
                # One MiB at a time: the unit an L1 entry (section or link) covers.
                count = min(npages, (PTE1_SIZE - (va & (PTE1_SIZE - 1))) >> PAGE_SHIFT)
                pte1 = self.pte1(va)
                if pte1 & L1_TYPE_MASK not in (0, L1_TYPE_C):
                    self.phys.write_u32(self._pte1_pa(va), 0)
                else:
                    pt2pg = self._pt2pg(va)
                    if pt2pg is not None:
                        index = (va >> PAGE_SHIFT) & (NPTE2_IN_PG - 1)
                        self.phys.write(pt2pg + 4 * index, bytes(4 * count))
                va += count << PAGE_SHIFT
                npages -= count
        finally:
            self._flush()

    # ------------------------------------------------------------------ kextract
    def kextract(self, va: int) -> int | None:
        """pmap_kextract: the physical address va maps to, read back from the tables; None if unmapped.

        The PTE2 is found the way pmap-v6 does it, through PT2TAB (the PT2MAP window), not through
        the L1 link the hardware walks, so this is a view independent of both MMUs."""
        va &= 0xFFFFFFFF
        pte1 = self.pte1(va)
        kind = pte1 & L1_TYPE_MASK
        if kind == 0:
            return None
        if kind != L1_TYPE_C:
            if pte1 & L1_S_SUPERSEC:
                return (pte1 & 0xFF000000) | (va & 0x00FFFFFF)
            return (pte1 & 0xFFF00000) | (va & (PTE1_SIZE - 1))
        pte2 = self.pte2(va)
        if pte2 & PTE2_V:
            return (pte2 & PTE2_FRAME) | (va & PAGE_MASK)
        if pte2 & L2_TYPE_L:
            return (pte2 & L2_L_FRAME) | (va & 0xFFFF)
        return None

    def check(self) -> list[str]:
        """Audit the kernel tables: every linked L1 entry from KERNBASE must point into the PT2 page
        PT2TAB names for its 4 MiB, and PT2MAP must map PT2TAB. Returns the problems found."""
        problems = []
        l1 = struct.unpack("<4096I", self.phys.read(self.kern_pt1, 16384))
        tab = struct.unpack("<1024I", self.phys.read(self.kern_pt2tab, 4096))
        for i in range(KERNBASE >> PTE1_SHIFT, 4096):
            if l1[i] & L1_TYPE_MASK != L1_TYPE_C:
                continue
            entry = tab[i >> 2]
            want = (entry & PTE2_FRAME) + NB_IN_PT2 * (i & (NPT2_IN_PG - 1))
            if not entry & PTE2_V:
                problems.append(f"L1[0x{i:03x}] links 0x{l1[i] & L1_C_ADDR_MASK:08x} but PT2TAB[{i >> 2}] is invalid")
            elif l1[i] & L1_C_ADDR_MASK != want:
                problems.append(f"L1[0x{i:03x}] links 0x{l1[i] & L1_C_ADDR_MASK:08x}, PT2TAB says 0x{want:08x}")
        if tab[PT2MAP >> PT2TAB_SHIFT] & PTE2_FRAME != self.kern_pt2tab:
            problems.append("PT2TAB does not map itself at PT2MAP")
        return problems
