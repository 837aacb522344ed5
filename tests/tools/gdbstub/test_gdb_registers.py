"""The ARM register set as gdb reads it: target description features and the g/G layout with VFP."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from board import ucapi
from tools.gdbstub import registers


@pytest.fixture
def uc():
    engine = ucapi.Uc(ucapi.UC_ARCH_ARM, ucapi.UC_MODE_ARM)
    engine.ctl_set_cpu_model(ucapi.UC_CPU_ARM_CORTEX_A15)
    return engine


def _regs(xml: bytes) -> list[tuple[str, int, str | None]]:
    root = ET.fromstring(xml.split(b"?>", 1)[1].split(b">", 1)[1])   # past the XML and DOCTYPE lines
    return [(r.get("name"), int(r.get("bitsize")), r.get("regnum")) for r in root.iter("reg")]


def test_the_description_has_qemus_core_and_vfp_features():
    files = registers.target_files()
    target = files["target.xml"].decode()
    assert "<architecture>armv7</architecture>" in target
    assert 'href="arm-core.xml"' in target and 'href="arm-neon.xml"' in target
    assert b'<feature name="org.gnu.gdb.arm.core">' in files["arm-core.xml"]
    assert b'<feature name="org.gnu.gdb.arm.vfp">' in files["arm-neon.xml"]
    core = _regs(files["arm-core.xml"])
    assert [name for name, _, _ in core] == [f"r{i}" for i in range(13)] + ["sp", "lr", "pc", "cpsr"]
    assert core[-1] == ("cpsr", 32, "25")                      # after the FPA gap, as gdb expects
    vfp = _regs(files["arm-neon.xml"])
    assert [name for name, _, _ in vfp] == [f"d{i}" for i in range(32)] + ["fpscr"]
    assert all(size == 64 for name, size, _ in vfp if name.startswith("d"))


def test_g_packet_layout_core_cpsr_then_vfp(uc):
    for i in range(13):
        uc.reg_write(ucapi.UC_ARM_REG_R0 + i, 0x1000 + i)
    uc.reg_write(ucapi.UC_ARM_REG_PC, 0x40000000)
    uc.reg_write64(ucapi.UC_ARM_REG_D0 + 3, 0x1122334455667788)
    uc.reg_write(ucapi.UC_ARM_REG_FPSCR, 0x03000000)
    g = registers.read_all(uc)
    assert len(g) == registers.G_PACKET_SIZE == 16 * 4 + 4 + 32 * 8 + 4
    assert g[0:4] == (0x1000).to_bytes(4, "little") and g[48:52] == (0x100C).to_bytes(4, "little")
    assert g[60:64] == (0x40000000).to_bytes(4, "little")        # pc
    assert int.from_bytes(g[64:68], "little") == uc.reg_read(ucapi.UC_ARM_REG_CPSR)
    assert g[68 + 3 * 8:68 + 4 * 8] == (0x1122334455667788).to_bytes(8, "little")   # d3
    assert g[-4:] == (0x03000000).to_bytes(4, "little")          # fpscr


def test_g_then_G_round_trips_and_G_writes_every_register(uc):
    data = bytearray(registers.read_all(uc))
    data[4:8] = (0xCAFEF00D).to_bytes(4, "little")               # r1
    data[68 + 31 * 8:68 + 32 * 8] = (0x0123456789ABCDEF).to_bytes(8, "little")    # d31
    registers.write_all(uc, bytes(data))
    assert uc.reg_read(ucapi.UC_ARM_REG_R1) == 0xCAFEF00D
    assert uc.reg_read64(ucapi.UC_ARM_REG_D0 + 31) == 0x0123456789ABCDEF
    assert registers.read_all(uc) == bytes(data)


def test_a_short_G_packet_is_refused(uc):
    with pytest.raises(ValueError, match="328 bytes"):
        registers.write_all(uc, b"\0" * 68)


def test_p_numbers_follow_the_description():
    assert registers.BY_REGNUM[25].name == "cpsr"
    assert registers.BY_REGNUM[26].name == "d0" and registers.BY_REGNUM[57].name == "d31"
    assert registers.BY_REGNUM[58].name == "fpscr" and 16 not in registers.BY_REGNUM
