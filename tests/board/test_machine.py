"""The board alone: a tiny hand-assembled guest, no kernel_sim involved."""

from __future__ import annotations

import struct

import pytest
from unicorn.arm_const import UC_ARM_REG_R0, UC_ARM_REG_R1

from board.devices.pl011 import FR, FR_RXFE, FR_TXFE, FR_TXFF
from board.machine import Machine
from board.profile import load_profile

RAM = 0x40000000


def words(*insns: int) -> bytes:
    return b"".join(struct.pack("<I", i) for i in insns)


def machine(code: bytes, size: int = 16 << 20) -> Machine:
    m = Machine(load_profile("virt"), size)
    m.phys.write(RAM, code)
    return m


def test_semihosting_sys_exit_stops_with_status():
    m = machine(words(0xEF123456))          # svc 0x123456
    m.uc.reg_write(UC_ARM_REG_R0, 0x18)
    m.uc.reg_write(UC_ARM_REG_R1, 0x20026)  # ADP_Stopped_ApplicationExit
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "exit" and stop.code == 0
    m2 = machine(words(0xEF123456))
    m2.uc.reg_write(UC_ARM_REG_R0, 0x18)
    m2.uc.reg_write(UC_ARM_REG_R1, 0x20023)
    assert m2.run(RAM, timeout=5).code == 1


def test_uart_output_and_honest_flags():
    # ldr r1, =0x09000000 ; mov r2, #'A' ; str r2, [r1] ; ldr r3, [r1, #0x18] ; svc 0x123456
    code = words(0xE59F1014, 0xE3A02041, 0xE5812000, 0xE5913018, 0xE3A00018, 0xEF123456, 0, 0x09000000)
    m = machine(code)
    m.uc.reg_write(UC_ARM_REG_R1, 0)
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "exit"
    assert bytes(m.console.data) == b"A"
    fr = m.uc.reg_read(__import__("unicorn").arm_const.UC_ARM_REG_R3)
    assert fr & FR_TXFE and fr & FR_RXFE and not fr & FR_TXFF
    assert m.devices["uart0"].read(FR, 4) == fr


def test_access_to_nothing_becomes_an_external_abort_at_the_guest_vector():
    # VBAR = RAM + 0x100 ; ldr r0, [r2] with r2 = 0x20000000 (nothing there) ; vector: svc exit
    code = bytearray(0x200)
    code[0:16] = words(0xE59F0008, 0xEE0C0F10, 0xE5920000, 0xEAFFFFFE)   # ldr r0,=vbar; mcr VBAR; ldr r0,[r2]
    code[16:20] = words(RAM + 0x100)
    vec = words(0xE1A0F00E, 0xE1A0F00E, 0xE1A0F00E, 0xE1A0F00E,          # 0x00-0x0c
                0xE3A00018, 0xEF123456)                                  # 0x10: data abort -> exit
    code[0x100:0x100 + len(vec)] = vec
    m = machine(bytes(code))
    m.uc.reg_write(__import__("unicorn").arm_const.UC_ARM_REG_R2, 0x20000000)
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "exit"
    fault = m.faults[-1]
    assert fault.vector == "data abort" and fault.physical == 0x20000000 and fault.fsr == 0x008
    assert m.cp15.read(6, 0, 0, 0) == 0x20000000          # DFAR
    assert m.cp15.read(5, 0, 0, 0) == 0x008               # DFSR: synchronous external abort
    assert m.cpsr & 0x1F == 0x17                          # abort mode
    from unicorn.arm_const import UC_ARM_REG_LR
    assert m.uc.reg_read(UC_ARM_REG_LR) == RAM + 8 + 8    # faulting insn + 8


def test_undefined_instruction_enters_und_mode():
    code = bytearray(0x200)
    code[0:16] = words(0xE59F0008, 0xEE0C0F10, 0xE7F000F0, 0xEAFFFFFE)   # ...; udf #0
    code[16:20] = words(RAM + 0x100)
    code[0x104:0x10C] = words(0xE3A00018, 0xEF123456)
    m = machine(bytes(code))
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "exit" and m.cpsr & 0x1F == 0x1B
    assert m.faults[-1].vector == "undefined instruction" and m.faults[-1].pc == RAM + 8


class Boom(Exception):
    pass


def test_python_exception_in_a_hook_is_reraised_as_itself():
    from board.machine import HYPERCALL_IMM

    m = machine(words(0xEF000000 | HYPERCALL_IMM))

    def handler(_m, _nr):
        raise Boom("from the hypercall handler")

    m.hypercall_handler = handler
    with pytest.raises(Boom):
        m.run(RAM, timeout=5)


def test_untouched_ram_costs_no_host_memory():
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = Machine(load_profile("virt"), 3 << 30)
    m.phys.write(RAM + (2 << 30), b"x" * 4096)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (after - before) * 1024 < 64 << 20   # far less than the 3 GiB mapped
    assert m.phys.read(RAM + (2 << 30), 1) == b"x"


def test_timeout_stops_a_spinning_guest():
    m = machine(words(0xEAFFFFFE))   # b .
    stop = m.run(RAM, timeout=0.2)
    assert stop.kind == "timeout"


def test_breakpoints_stop_before_the_first_one_reached():
    # mov r0, #1 ; mov r0, #2 ; mov r0, #3 ; svc 0x123456 (r1 is not the exit reason: status 1)
    code = words(0xE3A00001, 0xE3A00002, 0xE3A00003, 0xEF123456)
    m = machine(code)
    m.add_breakpoint(RAM + 8)
    m.add_breakpoint(RAM + 4)
    m.add_breakpoint(RAM + 0x1000)                       # never executed
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "breakpoint" and m.pc == RAM + 4
    assert m.uc.reg_read(UC_ARM_REG_R0) == 1             # the instruction at the breakpoint has not run


def test_a_breakpoint_never_executed_does_not_stop_the_guest():
    m = machine(words(0xE3A00018, 0xEF123456))           # mov r0, #0x18 (SYS_EXIT) ; svc 0x123456
    m.add_breakpoint(RAM + 0x1000)
    assert m.run(RAM, timeout=5).kind == "exit"
