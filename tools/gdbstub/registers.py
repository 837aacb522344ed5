"""The ARM register set as gdb sees it: the target description and the g/G/p/P layout.

As QEMU describes a Cortex-A15 (gdb-xml/arm-core.xml and arm-neon.xml): the feature
org.gnu.gdb.arm.core with r0-r12, sp, lr, pc (remote numbers 0-15) and cpsr at 25 (the FPA
registers once sat between pc and cpsr in the g packet), and org.gnu.gdb.arm.vfp with d0-d31
(26-57, as NEON unions) and fpscr (58). gdb then offers s0-s31 and q0-q15 as pseudo registers.
The g packet carries every register in remote-number order, little-endian: 16 x 4 bytes, cpsr,
32 x 8 bytes, fpscr (328 bytes). The architecture is armv7 where QEMU says arm: the guest ELF carries
no build attributes, and from "arm" alone gdb would disassemble ARMv7 instructions (movw) wrongly.
"""

from __future__ import annotations

from collections import namedtuple

from board.ucapi import (
    UC_ARM_REG_CPSR,
    UC_ARM_REG_D0,
    UC_ARM_REG_FPSCR,
    UC_ARM_REG_LR,
    UC_ARM_REG_PC,
    UC_ARM_REG_R0,
    UC_ARM_REG_SP,
)


class Register(namedtuple("Register", "name regnum size uc_reg feature")):
    """One register: gdb's name and remote number, its size in bytes and Unicorn's register id."""

    __slots__ = ()


CORE_FEATURE, VFP_FEATURE = "org.gnu.gdb.arm.core", "org.gnu.gdb.arm.vfp"
REGISTERS: tuple[Register, ...] = (
    *(Register(f"r{i}", i, 4, UC_ARM_REG_R0 + i, CORE_FEATURE) for i in range(13)),
    Register("sp", 13, 4, UC_ARM_REG_SP, CORE_FEATURE),
    Register("lr", 14, 4, UC_ARM_REG_LR, CORE_FEATURE),
    Register("pc", 15, 4, UC_ARM_REG_PC, CORE_FEATURE),
    Register("cpsr", 25, 4, UC_ARM_REG_CPSR, CORE_FEATURE),
    *(Register(f"d{i}", 26 + i, 8, UC_ARM_REG_D0 + i, VFP_FEATURE) for i in range(32)),
    Register("fpscr", 58, 4, UC_ARM_REG_FPSCR, VFP_FEATURE),
)
BY_REGNUM = {r.regnum: r for r in REGISTERS}
G_PACKET_SIZE = sum(r.size for r in REGISTERS)


def read(uc, reg: Register) -> bytes:
    value = uc.reg_read64(reg.uc_reg) if reg.size == 8 else uc.reg_read(reg.uc_reg)
    return value.to_bytes(reg.size, "little")


def write(uc, reg: Register, data: bytes) -> None:
    value = int.from_bytes(data, "little")
    if reg.size == 8:
        uc.reg_write64(reg.uc_reg, value)
    else:
        uc.reg_write(reg.uc_reg, value)


def read_all(uc) -> bytes:
    """The g packet's bytes."""
    return b"".join(read(uc, r) for r in REGISTERS)


def write_all(uc, data: bytes) -> None:
    """The G packet: every register, in the g packet's layout (CPSR last of the core ones, so the
    banked sp and lr written before it are the current mode's)."""
    if len(data) != G_PACKET_SIZE:
        raise ValueError(f"a G packet holds {G_PACKET_SIZE} bytes of registers, not {len(data)}")
    offset = 0
    for reg in REGISTERS:
        write(uc, reg, data[offset:offset + reg.size])
        offset += reg.size


# ---------------------------------------------------------------- target description
_NEON_TYPES = """  <vector id="neon_uint8x8" type="uint8" count="8"/>
  <vector id="neon_uint16x4" type="uint16" count="4"/>
  <vector id="neon_uint32x2" type="uint32" count="2"/>
  <vector id="neon_float32x2" type="ieee_single" count="2"/>
  <union id="neon_d">
    <field name="u8" type="neon_uint8x8"/>
    <field name="u16" type="neon_uint16x4"/>
    <field name="u32" type="neon_uint32x2"/>
    <field name="u64" type="uint64"/>
    <field name="f32" type="neon_float32x2"/>
    <field name="f64" type="ieee_double"/>
  </union>
"""


def _feature(name: str) -> str:
    lines = [f'<?xml version="1.0"?>\n<!DOCTYPE feature SYSTEM "gdb-target.dtd">\n<feature name="{name}">\n']
    if name == VFP_FEATURE:
        lines.append(_NEON_TYPES)
    for reg in REGISTERS:
        if reg.feature != name:
            continue
        attrs = f'name="{reg.name}" bitsize="{8 * reg.size}"'
        if reg.name == "sp":
            attrs += ' type="data_ptr"'
        elif reg.name == "pc":
            attrs += ' type="code_ptr"'
        elif reg.name == "cpsr":
            attrs += f' regnum="{reg.regnum}"'
        elif reg.name.startswith("d"):
            attrs += ' type="neon_d"'
        elif reg.name == "fpscr":
            attrs += ' type="int" group="float"'
        lines.append(f"  <reg {attrs}/>\n")
    lines.append("</feature>\n")
    return "".join(lines)


def target_files() -> dict[str, bytes]:
    """The annexes gdb reads with qXfer:features:read: target.xml and the files it includes."""
    target = ('<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target>\n'
              "  <architecture>armv7</architecture>\n"
              '  <xi:include href="arm-core.xml"/>\n  <xi:include href="arm-neon.xml"/>\n</target>\n')
    return {"target.xml": target.encode(), "arm-core.xml": _feature(CORE_FEATURE).encode(),
            "arm-neon.xml": _feature(VFP_FEATURE).encode()}
