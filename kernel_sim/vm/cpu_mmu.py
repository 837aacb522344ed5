"""The MMU simulator bound to a machine: the CPU's current CP15 state over guest RAM."""

from __future__ import annotations

from board.memory import PhysicalAbort as BusAbort
from kernel_sim.vm.mmu import MMU, MMUFault, PhysicalAbort

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from board.machine import Machine

SCTLR_M, SCTLR_TRE, SCTLR_AFE = 1 << 0, 1 << 28, 1 << 29


def mmu_for(machine: Machine) -> MMU:
    """A walker with the registers the guest set (TTBR0/1, TTBCR, DACR, SCTLR)."""
    phys = machine.phys

    def read_u32(pa: int) -> int:
        try:
            return phys.read_u32(pa)
        except BusAbort:
            raise PhysicalAbort(pa) from None

    def read_phys(pa: int, n: int) -> bytes:
        try:
            return phys.read(pa, n)
        except BusAbort:
            raise PhysicalAbort(pa) from None

    cp = machine.cp15
    sctlr = cp.sctlr
    return MMU(read_u32, ttbr0=cp.ttbr0, ttbr1=cp.ttbr1, ttbcr=cp.ttbcr, dacr=cp.dacr,
               m=bool(sctlr & SCTLR_M), afe=bool(sctlr & SCTLR_AFE), tre=bool(sctlr & SCTLR_TRE),
               read_phys=read_phys)


def classify_fault(machine: Machine, va: int, access: str) -> int:
    """The FSR the CPU reports for an access Unicorn refused, from the Python walk.

    The board adds WnR itself. If the walk finds no fault the two MMUs disagree; report
    status 0 ('Undefined Code (0x000)') rather than invent one."""
    try:
        mmu_for(machine).translate(va, access)
    except MMUFault as fault:
        return fault.fsr & ~(1 << 11)
    return 0


class GuestMemory:
    """Kernel virtual memory as the Python kernel sees it: the guest's own tables, walked in Python."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    @property
    def mmu(self) -> MMU:
        return mmu_for(self.machine)

    def read(self, va: int, size: int) -> bytes:
        mmu = self.mmu
        return mmu.read_virtual(va, size, mmu.read_phys)

    def write(self, va: int, data: bytes) -> None:
        def write_phys(pa: int, chunk: bytes) -> None:
            try:
                self.machine.phys.write(pa, chunk)
            except BusAbort:
                raise PhysicalAbort(pa) from None

        self.mmu.write_virtual(va, data, write_phys)

    def read_u32(self, va: int) -> int:
        return int.from_bytes(self.read(va, 4), "little")

    def read_string(self, va: int, limit: int = 1024) -> str:
        out = bytearray()
        mmu = self.mmu
        while len(out) < limit:
            chunk = mmu.read_virtual(va + len(out), min(64, 4096 - ((va + len(out)) & 0xFFF)),
                                     mmu.read_phys)
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                break
            out += chunk
        return out.decode("utf-8", "replace")


def tlb_fill(machine: Machine, va: int, access: str, privileged: bool) -> tuple[int, int] | int:
    """Answer one of Unicorn's TLB fills from the guest's tables (`armboard boot --mmu python`).

    Returns (pa, UC_PROT_* permissions for this privilege) or the FSR of the fault."""
    try:
        t = mmu_for(machine).translate(va, access, privileged)
    except MMUFault as fault:
        return fault.fsr & ~(1 << 11)
    if privileged:
        perms = (1 if t.priv_read else 0) | (2 if t.priv_write else 0) | (4 if t.priv_exec else 0)
    else:
        perms = (1 if t.user_read else 0) | (2 if t.user_write else 0) | (4 if t.user_exec else 0)
    return t.pa, perms
