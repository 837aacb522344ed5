"""The virtual address a faulting load/store used, recovered by decoding the instruction.

Unicorn keeps the fault address inside QEMU's state and offers no API for it
(../shared/reference/unicorn.md), so the board decodes the instruction with capstone
(imported only on this rare path) and evaluates its address operand from the registers.
"""

from __future__ import annotations

from .ucapi import UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_SP, Uc

_cs = None


def _disassembler():
    global _cs
    if _cs is None:
        import capstone

        _cs = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_ARM)
        _cs.detail = True
    return _cs


def _reg(uc: Uc, cs_reg: int, pc: int) -> int:
    import capstone.arm as A

    if cs_reg == A.ARM_REG_PC:
        return pc + 8
    regs = {A.ARM_REG_R0 + i: UC_ARM_REG_R0 + i for i in range(13)}
    regs.update({A.ARM_REG_SP: UC_ARM_REG_SP, A.ARM_REG_LR: UC_ARM_REG_LR})
    return uc.reg_read(regs[cs_reg]) if cs_reg in regs else 0


def data_address(uc: Uc, code: bytes, pc: int | None = None) -> tuple[int | None, bool | None]:
    """(virtual address, is_write) of the load/store `code` at pc, or (None, None)."""
    import capstone.arm as A

    if pc is None:
        pc = uc.reg_read(UC_ARM_REG_PC)
    insns = list(_disassembler().disasm(code[:4], pc, 1))
    if not insns:
        return None, None
    insn = insns[0]
    name = insn.mnemonic.split(".")[0]
    is_write = name.startswith(("str", "stm", "push", "srs"))
    mem_ops = [op for op in insn.operands if op.type == A.ARM_OP_MEM]
    if mem_ops:
        mem = mem_ops[0].mem
        base = _reg(uc, mem.base, pc)
        regs_read = [op for op in insn.operands if op.type in (A.ARM_OP_REG, A.ARM_OP_IMM)]
        post_indexed = insn.operands[-1].type != A.ARM_OP_MEM and len(regs_read) > (2 if name.endswith("d") else 1)
        if post_indexed:
            return base & 0xFFFFFFFF, is_write
        offset = mem.disp
        if mem.index:
            offset = _reg(uc, mem.index, pc)
            if mem.lshift:
                offset <<= mem.lshift
        if mem_ops[0].subtracted:
            offset = -offset
        return (base + offset) & 0xFFFFFFFF, is_write
    # ldm/stm/push/pop: the lowest address the transfer touches.
    reg_ops = [op for op in insn.operands if op.type == A.ARM_OP_REG]
    if name in ("push", "pop"):
        sp = uc.reg_read(UC_ARM_REG_SP)
        count = len(reg_ops)
        return ((sp - 4 * count) if name == "push" else sp) & 0xFFFFFFFF, is_write
    if reg_ops and name[:3] in ("ldm", "stm"):
        base = _reg(uc, reg_ops[0].reg, pc)
        count = len(reg_ops) - 1
        mode = name[3:5]
        if mode == "db":
            base -= 4 * count
        elif mode == "da":
            base -= 4 * (count - 1)
        elif mode == "ib":
            base += 4
        return base & 0xFFFFFFFF, is_write
    return None, is_write
