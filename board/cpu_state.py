"""The CPU's architectural state as plain data, for snapshots: every mode's banked registers, VFP, CP15.

Unicorn has no register ids for the banked copies (r13_svc, r8_fiq, SPSR_abt, ...), so they are read
the way the CPU itself reaches them: by switching CPSR to each mode (a CPSR write switches the banks,
as board/exceptions.py relies on for exception entry) and reading r8-r14 and SPSR there. Monitor and
Hyp mode cannot be entered from the state this board runs in (Unicorn refuses the mode change), so
they hold nothing the guest can have set.

CP15: the registers a kernel writes (SCTLR, TTBR0/1, TTBCR, DACR, VBAR, the fault registers, the
memory remap registers, CONTEXTIDR and the thread ID registers, CPACR for VFP, ...), in both
security banks where Unicorn keeps two. Identification registers (MIDR, ...) are the model's and are
not saved. The generic timer's counters run on host time and nothing delivers its interrupt on this
board; only its control registers are saved.
"""

from __future__ import annotations

from .ucapi import (
    UC_ARM_REG_CPSR,
    UC_ARM_REG_D0,
    UC_ARM_REG_FPEXC,
    UC_ARM_REG_FPSCR,
    UC_ARM_REG_LR,
    UC_ARM_REG_PC,
    UC_ARM_REG_R0,
    UC_ARM_REG_SP,
    UC_ARM_REG_SPSR,
    Uc,
    UcError,
)

STATE_VERSION = 1
# The modes whose banked registers the board can reach (ARM ARM B1.3.2): usr/sys share theirs.
BANKED_MODES = {"usr": 0x10, "fiq": 0x11, "irq": 0x12, "svc": 0x13, "abt": 0x17, "und": 0x1B}
# (crn, opc1, crm, opc2) of each saved CP15 register (ARM ARM B4.1, the 32-bit VMSA registers).
CP15_REGISTERS = {
    "SCTLR": (1, 0, 0, 0), "ACTLR": (1, 0, 0, 1), "CPACR": (1, 0, 0, 2),
    "TTBR0": (2, 0, 0, 0), "TTBR1": (2, 0, 0, 1), "TTBCR": (2, 0, 0, 2), "DACR": (3, 0, 0, 0),
    "DFSR": (5, 0, 0, 0), "IFSR": (5, 0, 0, 1), "ADFSR": (5, 0, 1, 0), "AIFSR": (5, 0, 1, 1),
    "DFAR": (6, 0, 0, 0), "IFAR": (6, 0, 0, 2), "PAR": (7, 0, 4, 0),
    "PRRR": (10, 0, 2, 0), "NMRR": (10, 0, 2, 1), "AMAIR0": (10, 0, 3, 0), "AMAIR1": (10, 0, 3, 1),
    "VBAR": (12, 0, 0, 0), "FCSEIDR": (13, 0, 0, 0), "CONTEXTIDR": (13, 0, 0, 1),
    "TPIDRURW": (13, 0, 0, 2), "TPIDRURO": (13, 0, 0, 3), "TPIDRPRW": (13, 0, 0, 4),
    "CSSELR": (0, 2, 0, 0), "CNTKCTL": (14, 0, 1, 0), "CNTP_CTL": (14, 0, 2, 1), "CNTV_CTL": (14, 0, 3, 1),
}
SECURITY_BANKS = (0, 1)      # the `sec` field of UC_ARM_REG_CP_REG (board/exceptions.py CP15.SECURE is 0)
VFP_D_REGISTERS = 32


class CpuStateError(ValueError):
    """A saved CPU state this CPU cannot take (another version, a missing register)."""


def cpu_state(uc: Uc) -> dict:
    """Everything a restored CPU needs to continue exactly where this one is."""
    cpsr = uc.reg_read(UC_ARM_REG_CPSR)
    banked = {}
    try:
        for name, mode in BANKED_MODES.items():
            uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | mode)
            banked[name] = {"r8_r12": [uc.reg_read(UC_ARM_REG_R0 + i) for i in range(8, 13)],
                            "sp": uc.reg_read(UC_ARM_REG_SP), "lr": uc.reg_read(UC_ARM_REG_LR),
                            "spsr": uc.reg_read(UC_ARM_REG_SPSR)}
    finally:
        uc.reg_write(UC_ARM_REG_CPSR, cpsr)
    cp15 = {}
    for name, (crn, opc1, crm, opc2) in CP15_REGISTERS.items():
        for sec in SECURITY_BANKS:
            try:
                cp15[f"{name}/{sec}"] = uc.cpr_read(15, opc1, crn, crm, opc2, sec, False)
            except UcError:
                continue                      # not in this bank on this model
    return {
        "version": STATE_VERSION,
        "r0_r7": [uc.reg_read(UC_ARM_REG_R0 + i) for i in range(8)],
        "pc": uc.reg_read(UC_ARM_REG_PC), "cpsr": cpsr, "banked": banked, "cp15": cp15,
        "vfp": {"d": [uc.reg_read64(UC_ARM_REG_D0 + i) for i in range(VFP_D_REGISTERS)],
                "fpscr": uc.reg_read(UC_ARM_REG_FPSCR), "fpexc": uc.reg_read(UC_ARM_REG_FPEXC)},
    }


def load_cpu_state(uc: Uc, state: dict) -> None:
    """Put a cpu_state() back. CP15 first (SCTLR decides what the rest means), then each mode's
    bank, then the current mode's registers and CPSR. The caller flushes the TLB and the TB cache."""
    if state.get("version") != STATE_VERSION:
        raise CpuStateError(f"CPU state version {state.get('version')!r}; this board reads version {STATE_VERSION}")
    try:
        for key, value in state["cp15"].items():
            name, _, sec = key.partition("/")
            crn, opc1, crm, opc2 = CP15_REGISTERS[name]
            uc.cpr_write(15, opc1, crn, crm, opc2, int(sec), False, value)
        vfp = state["vfp"]
        for i, value in enumerate(vfp["d"]):
            uc.reg_write64(UC_ARM_REG_D0 + i, value)
        uc.reg_write(UC_ARM_REG_FPEXC, vfp["fpexc"])
        uc.reg_write(UC_ARM_REG_FPSCR, vfp["fpscr"])
        cpsr = state["cpsr"]
        for name, mode in BANKED_MODES.items():
            bank = state["banked"][name]
            uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | mode)
            for i, value in enumerate(bank["r8_r12"]):
                uc.reg_write(UC_ARM_REG_R0 + 8 + i, value)
            uc.reg_write(UC_ARM_REG_SP, bank["sp"])
            uc.reg_write(UC_ARM_REG_LR, bank["lr"])
            uc.reg_write(UC_ARM_REG_SPSR, bank["spsr"])
        uc.reg_write(UC_ARM_REG_CPSR, cpsr)        # back in the saved mode: its bank is current again
        for i, value in enumerate(state["r0_r7"]):
            uc.reg_write(UC_ARM_REG_R0 + i, value)
        uc.reg_write(UC_ARM_REG_PC, state["pc"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CpuStateError(f"malformed CPU state: {exc!r}") from None
    except UcError as exc:
        raise CpuStateError(f"the CPU refused a saved register: {exc}") from None
