"""The board's debugging primitives: breakpoints that can go away, single-step, watchpoints on
physical memory, a stop requested from another thread. Tiny hand-assembled guests, no kernel."""

from __future__ import annotations

import struct
import threading

from unicorn.arm_const import UC_ARM_REG_R0, UC_ARM_REG_R1

from board.machine import Machine
from board.profile import load_profile

RAM = 0x40000000
MOVS = [0xE3A00001 + i for i in range(5)]            # mov r0, #1 .. mov r0, #5
B_SELF = 0xEAFFFFFE                                   # b .
EXIT = (0xE3A00018, 0xEF123456)                       # mov r0, #0x18 (SYS_EXIT) ; svc 0x123456


def words(*insns: int) -> bytes:
    return b"".join(struct.pack("<I", i) for i in insns)


def machine(code: bytes) -> Machine:
    m = Machine(load_profile("virt"), 16 << 20)
    m.phys.write(RAM, code)
    return m


def r0(m: Machine) -> int:
    return m.uc.reg_read(UC_ARM_REG_R0)


def test_resume_from_a_breakpoint_runs_its_instruction_and_stops_at_the_next_hit():
    # a loop: add r0, r0, #1 ; b back to it; the breakpoint on the add stops each pass
    m = machine(words(0xE2800001, 0xEAFFFFFD))
    m.add_breakpoint(RAM)
    assert m.run(RAM, timeout=5).kind == "breakpoint" and r0(m) == 0
    for passes in (1, 2, 3):                          # several stops at one breakpoint
        stop = m.run(m.pc, timeout=5, resume=True)
        assert stop.kind == "breakpoint" and m.pc == RAM and r0(m) == passes


def test_a_removed_breakpoint_no_longer_stops_the_guest():
    m = machine(words(*MOVS, *EXIT))
    first = m.add_breakpoint(RAM + 8)
    second = m.add_breakpoint(RAM + 8)                # two at one address share one hook
    m.remove_breakpoint(first)
    assert m.run(RAM, timeout=5).kind == "breakpoint" and m.pc == RAM + 8
    m.remove_breakpoint(second)
    assert m.run(m.pc, timeout=5).kind == "exit"


def test_a_breakpoint_added_after_its_code_was_translated_still_stops():
    # Unicorn does not retranslate blocks when a code hook is added: the board must drop them
    m = machine(words(0xE2800001, 0xE3500C01, 0x1AFFFFFC, *EXIT))   # count r0 to 256, then exit
    m.add_breakpoint(RAM + 4)
    assert m.run(RAM, timeout=5).kind == "breakpoint"                   # the loop's block is translated
    m.add_breakpoint(RAM + 8)
    stop = m.run(m.pc, timeout=5, resume=True)
    assert stop.kind == "breakpoint" and m.pc == RAM + 8


def test_steps_run_exactly_that_many_instructions():
    m = machine(words(*MOVS, *EXIT))
    stop = m.run(RAM, timeout=5, steps=3)
    assert stop.kind == "step" and m.pc == RAM + 12 and r0(m) == 3
    stop = m.run(m.pc, timeout=5, steps=1)
    assert stop.kind == "step" and m.pc == RAM + 16 and r0(m) == 4
    assert m.run(m.pc, timeout=5).kind == "exit"     # no step hook left behind


def test_a_step_from_a_breakpoint_moves_past_it():
    m = machine(words(*MOVS, *EXIT))
    m.add_breakpoint(RAM + 4)
    m.run(RAM, timeout=5)
    stop = m.run(m.pc, timeout=5, steps=1, resume=True)
    assert stop.kind == "step" and m.pc == RAM + 8 and r0(m) == 2


def test_a_step_into_an_abort_stops_at_the_guest_vector():
    # VBAR = RAM + 0x100 ; ldr r0, [r2] from nothing (0x20000000): the step ends at the data abort vector
    code = bytearray(0x200)
    code[0:20] = words(0xE59F0008, 0xEE0C0F10, 0xE5920000, B_SELF, RAM + 0x100)
    code[0x110:0x118] = words(*EXIT)
    m = machine(bytes(code))
    m.uc.reg_write(UC_ARM_REG_R0 + 2, 0x20000000)
    m.run(RAM, timeout=5, steps=2)
    stop = m.run(m.pc, timeout=5, steps=1)
    assert stop.kind == "step" and m.pc == RAM + 0x110


def test_a_write_watchpoint_stops_at_the_store_with_the_store_done():
    # ldr r1, =RAM+0x100 ; mov r0, #5 ; str r0, [r1] ; mov r0, #6 ; exit
    code = words(0xE59F1010, 0xE3A00005, 0xE5810000, 0xE3A00006, *EXIT, RAM + 0x100)
    m = machine(code)
    wp = m.add_watchpoint(RAM + 0x100, 4, "write")
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "watchpoint" and m.pc == RAM + 8               # the storing instruction
    assert stop.value.watchpoint == wp and stop.value.access == "write" and stop.value.address == RAM + 0x100
    assert m.phys.read_u32(RAM + 0x100) == 5 and r0(m) == 5
    m.remove_watchpoint(wp)
    assert m.run(m.pc, timeout=5).kind == "exit"


def test_watchpoints_see_overlapping_accesses_of_their_kind_only():
    # ldr r1, =RAM+0x100 ; strb r0, [r1, #3] ; ldr r2, [r1, #-4] (outside) ; ldrh r2, [r1, #2] ; exit
    code = words(0xE59F1014, 0xE5C10003, 0xE5112004, 0xE1D120B2, *EXIT, 0, RAM + 0x100)
    m = machine(code)
    m.add_watchpoint(RAM + 0x102, 2, "read")
    stop = m.run(RAM, timeout=5)
    assert stop.kind == "watchpoint" and m.pc == RAM + 12 and stop.value.access == "read"
    m2 = machine(code)
    m2.add_watchpoint(RAM + 0x100, 4, "access")
    stop = m2.run(RAM, timeout=5)
    assert stop.kind == "watchpoint" and m2.pc == RAM + 4 and stop.value.access == "write"


def test_request_stop_from_another_thread_interrupts_a_spinning_guest():
    m = machine(words(0xE2811001, 0xEAFFFFFD))        # add r1, r1, #1 ; b back: spins forever
    started = threading.Event()
    m.add_breakpoint(RAM + 4)
    m.run(RAM, timeout=5)                             # the loop runs once, then we let it spin
    m.remove_breakpoint(next(iter(m._bp_ids)))

    def interrupt() -> None:
        started.wait()
        m.request_stop()

    thread = threading.Thread(target=interrupt)
    thread.start()
    started.set()
    stop = m.run(m.pc, timeout=30)
    thread.join()
    assert stop.kind == "interrupt" and m.pc in (RAM, RAM + 4)
    assert m.uc.reg_read(UC_ARM_REG_R1) >= 1


def test_a_stop_requested_while_stopped_stops_the_next_run_before_its_first_instruction():
    m = machine(words(*MOVS, *EXIT))
    m.request_stop()
    assert m.run(RAM, timeout=5).kind == "interrupt" and r0(m) == 0 and m.pc == RAM
    assert m.run(RAM, timeout=5).kind == "exit"      # the request is used up
