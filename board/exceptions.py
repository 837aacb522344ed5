"""ARMv7-A exception entry, performed by the board because Unicorn never runs guest vectors
for synchronous exceptions (../shared/reference/unicorn.md, "Exceptions").

Entry follows the ARM ARM (B1.8): the new mode's banked LR and SPSR, CPSR.I (and CPSR.A for
aborts) set, Thumb/IT/J cleared, DFSR/DFAR or IFSR/IFAR written, PC = VBAR + offset.
"""

from __future__ import annotations

from collections import namedtuple

from .ucapi import UC_ARM_REG_CPSR, UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_SPSR, Uc

MODE_USR, MODE_FIQ, MODE_IRQ, MODE_SVC, MODE_ABT, MODE_UND, MODE_SYS = 0x10, 0x11, 0x12, 0x13, 0x17, 0x1B, 0x1F
MODE_NAMES = {MODE_USR: "usr", MODE_FIQ: "fiq", MODE_IRQ: "irq", MODE_SVC: "svc", MODE_ABT: "abt",
              MODE_UND: "und", MODE_SYS: "sys", 0x16: "mon", 0x1A: "hyp"}
PSR_T, PSR_F, PSR_I, PSR_A, PSR_E, PSR_J = 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 24
PSR_IT_MASK = (0x3F << 10) | (0x3 << 25)

# Short-descriptor fault status values (ARM ARM B3.13.3), with FS[4] at bit 10, WnR at bit 11.
FSR_SYNC_EXTERNAL = 0x008
FSR_WNR = 1 << 11


class Vector(namedtuple("Vector", "name offset mode lr_adjust mask_abort")):
    """An exception vector: `offset` from VBAR, the `mode` entered, LR = the address of the
    faulting (or next) instruction + `lr_adjust` in ARM state, and whether CPSR.A is set too.
    A namedtuple, not a dataclass: this module is on every boot's path, dataclasses is not."""

    __slots__ = ()


UNDEFINED = Vector("undefined instruction", 0x04, MODE_UND, 4, False)
SVC = Vector("supervisor call", 0x08, MODE_SVC, 0, False)          # LR = address after the svc
PREFETCH_ABORT = Vector("prefetch abort", 0x0C, MODE_ABT, 4, True)
DATA_ABORT = Vector("data abort", 0x10, MODE_ABT, 8, True)


class CP15:
    """The CP15 registers the board needs, in the bank the guest runs in (Secure after reset)."""

    SECURE = 0  # the `sec` field of UC_ARM_REG_CP_REG: 0 selects the Secure bank

    def __init__(self, uc: Uc) -> None:
        self.uc = uc

    def read(self, crn: int, opc1: int, crm: int, opc2: int) -> int:
        return self.uc.cpr_read(15, opc1, crn, crm, opc2, self.SECURE, False)

    def write(self, crn: int, opc1: int, crm: int, opc2: int, value: int) -> None:
        self.uc.cpr_write(15, opc1, crn, crm, opc2, self.SECURE, False, value)

    @property
    def sctlr(self) -> int:
        return self.read(1, 0, 0, 0)

    @property
    def ttbr0(self) -> int:
        return self.read(2, 0, 0, 0)

    @property
    def ttbr1(self) -> int:
        return self.read(2, 0, 0, 1)

    @property
    def ttbcr(self) -> int:
        return self.read(2, 0, 0, 2)

    @property
    def dacr(self) -> int:
        return self.read(3, 0, 0, 0)

    @property
    def vbar(self) -> int:
        return self.read(12, 0, 0, 0)

    def set_data_fault(self, fsr: int, far: int) -> None:
        self.write(5, 0, 0, 0, fsr)   # DFSR
        self.write(6, 0, 0, 0, far)   # DFAR

    def set_prefetch_fault(self, fsr: int, far: int) -> None:
        self.write(5, 0, 0, 1, fsr)   # IFSR
        self.write(6, 0, 0, 2, far)   # IFAR


def enter(uc: Uc, cp15: CP15, vector: Vector, address: int, *,
          fsr: int | None = None, far: int | None = None) -> int:
    """Take an exception: `address` is the faulting instruction (or the one after an svc).

    Returns the new PC.
    """
    cpsr = uc.reg_read(UC_ARM_REG_CPSR)
    sctlr = cp15.sctlr
    new = (cpsr & ~(0x1F | PSR_T | PSR_J | PSR_IT_MASK | PSR_E)) | vector.mode | PSR_I
    if vector.mask_abort:
        new |= PSR_A
    if sctlr & (1 << 30):   # SCTLR.TE: exceptions taken in Thumb state
        new |= PSR_T
    if sctlr & (1 << 25):   # SCTLR.EE
        new |= PSR_E
    if vector is DATA_ABORT:
        cp15.set_data_fault(fsr or 0, far or 0)
    elif vector is PREFETCH_ABORT:
        cp15.set_prefetch_fault(fsr or 0, far if far is not None else address)
    uc.reg_write(UC_ARM_REG_CPSR, new)        # switches to the new mode's banked registers
    uc.reg_write(UC_ARM_REG_SPSR, cpsr)
    uc.reg_write(UC_ARM_REG_LR, address + vector.lr_adjust)
    base = 0xFFFF0000 if sctlr & (1 << 13) else cp15.vbar & ~0x1F
    pc = base + vector.offset
    uc.reg_write(UC_ARM_REG_PC, pc)
    return pc
