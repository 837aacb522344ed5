"""The lean binding's constants and behaviour match the official unicorn package."""

from __future__ import annotations

import unicorn
from unicorn import arm_const

from board import ucapi


def test_constants_match_the_installed_unicorn():
    names = [n for n in dir(ucapi) if n.startswith("UC_")]
    assert len(names) > 40
    for name in names:
        official = getattr(unicorn, name, None)
        if official is None:
            official = getattr(arm_const, name)
        assert getattr(ucapi, name) == official, name


def test_registers_memory_and_errors():
    import mmap

    uc = ucapi.Uc(ucapi.UC_ARCH_ARM, ucapi.UC_MODE_ARM)
    uc.ctl_set_cpu_model(ucapi.UC_CPU_ARM_CORTEX_A15)
    host = mmap.mmap(-1, 0x10000)
    import ctypes

    uc.mem_map_ptr(0x10000, 0x10000, ucapi.UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(host)))
    uc.mem_write(0x10000, bytes.fromhex("0100a0e3"))          # mov r0, #1
    uc.reg_write(ucapi.UC_ARM_REG_R0, 0xDEADBEEF)
    uc.emu_start(0x10000, 0x10004)
    assert uc.reg_read(ucapi.UC_ARM_REG_R0) == 1
    assert host[0:4] == bytes.fromhex("0100a0e3")
    uc.cpr_write(15, 0, 3, 0, 0, 0, False, 0x55555555)          # DACR, Secure bank
    assert uc.cpr_read(15, 0, 3, 0, 0, 0, False) == 0x55555555
    try:
        uc.emu_start(0x900000, 0x900004)
    except ucapi.UcError as exc:
        assert exc.errno == ucapi.UC_ERR_FETCH_UNMAPPED
        assert "UC_ERR_FETCH_UNMAPPED" in str(exc) or "fetch" in str(exc).lower()
    else:
        raise AssertionError("fetching from nothing must fail")


def test_vfp_d_registers_are_64_bit():
    # vmov d5, r0, r1 (ARM encoding 0xec410b15): the guest sees what reg_read64 reads and writes
    import ctypes
    import mmap

    uc = ucapi.Uc(ucapi.UC_ARCH_ARM, ucapi.UC_MODE_ARM)
    uc.ctl_set_cpu_model(ucapi.UC_CPU_ARM_CORTEX_A15)
    host = mmap.mmap(-1, 0x1000)
    uc.mem_map_ptr(0x10000, 0x1000, ucapi.UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(host)))
    uc.reg_write(ucapi.UC_ARM_REG_FPEXC, 1 << 30)               # FPEXC.EN: VFP instructions allowed
    uc.mem_write(0x10000, bytes.fromhex("150b41ec"))
    uc.reg_write(ucapi.UC_ARM_REG_R0, 0x89ABCDEF)
    uc.reg_write(ucapi.UC_ARM_REG_R1, 0x01234567)
    uc.emu_start(0x10000, 0x10004)
    assert uc.reg_read64(ucapi.UC_ARM_REG_D0 + 5) == 0x0123456789ABCDEF
    uc.reg_write64(ucapi.UC_ARM_REG_D0 + 31, 0xFEDCBA9876543210)
    assert uc.reg_read64(ucapi.UC_ARM_REG_D0 + 31) == 0xFEDCBA9876543210
    assert uc.reg_read(ucapi.UC_ARM_REG_D0 + 31) == 0x76543210   # the 32-bit read keeps the low word
