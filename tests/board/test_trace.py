"""The board's event bus (board/trace.py) on tiny hand-assembled guests: what it emits, and that its
hooks go away with their subscribers."""

from __future__ import annotations

import struct

from board.machine import Machine
from board.profile import load_profile
from board.trace import CP15_NAMES, Events, _condition_passed, is_cp15_write
from board.ucapi import UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R7

RAM = 0x40000000
EXIT = (0xE3A00018, 0xE59F1000, 0xEF123456, 0x20026)   # mov r0, #0x18; ldr r1, [pc]; svc 0x123456; .word


def words(*insns: int) -> bytes:
    return b"".join(struct.pack("<I", i) for i in insns)


def machine(code: bytes) -> Machine:
    m = Machine(load_profile("virt"), 16 << 20)
    m.phys.write(RAM, code)
    return m


def test_no_bus_until_someone_listens():
    m = machine(words(*EXIT))
    assert m.events is None
    assert m.run(RAM, timeout=5).kind == "exit"
    assert m.events is None
    assert Events.of(m) is Events.of(m) is m.events


def test_blocks_and_instructions_are_counted_and_stop_with_the_subscriber():
    # mov r2, #3; loop: subs r2, r2, #1; bne loop; then exit
    code = words(0xE3A02003, 0xE2522001, 0x1AFFFFFD, *EXIT)
    m = machine(code)
    bus = Events.of(m)
    blocks, insns = [], []
    sub_b = bus.subscribe("block", lambda a, s: blocks.append((a, s)))
    sub_i = bus.subscribe("insn", lambda a, s: insns.append(a))
    assert m.run(RAM, timeout=5).kind == "exit"
    assert insns == [RAM, RAM + 4, RAM + 8, RAM + 4, RAM + 8, RAM + 4, RAM + 8,
                     RAM + 12, RAM + 16, RAM + 20]
    assert sum(s for _a, s in blocks) // 4 == len(insns)
    assert blocks[0][0] == RAM
    sub_b.cancel()
    sub_i.cancel()
    blocks.clear()
    insns.clear()
    assert m.run(RAM, timeout=5).kind == "exit"
    assert blocks == [] and insns == []
    assert bus.subscribers["block"] == [] and bus.subscribers["insn"] == []


def test_a_hook_added_after_code_ran_sees_that_code_run_again():
    # Unicorn calls a hook only from blocks translated after it was added: subscribing drops them.
    code = words(0xE3A02003, 0xE2522001, 0x1AFFFFFD, *EXIT)
    m = machine(code)
    assert m.run(RAM, timeout=5).kind == "exit"
    blocks: list[int] = []
    sub = Events.of(m).subscribe("block", lambda a, s: blocks.append(a))
    assert m.run(RAM, timeout=5).kind == "exit"
    assert blocks and blocks[0] == RAM
    sub.cancel()
    blocks.clear()
    m.run(RAM, timeout=5)
    assert blocks == []


def test_an_instruction_range_limits_the_hook():
    code = words(0xE3A02003, 0xE2522001, 0x1AFFFFFD, *EXIT)
    m = machine(code)
    seen: list[int] = []
    Events.of(m).subscribe("insn", lambda a, s: seen.append(a), begin=RAM + 4, end=RAM + 4)
    m.run(RAM, timeout=5)
    assert seen == [RAM + 4] * 3


def test_cp15_writes_at_the_named_sites_with_their_values():
    # ldr r3, [pc, #0x20] (0x40004000); mcr p15,0,r3,c2,c0,0 (TTBR0); mov r0,#0; mcr p15,0,r0,c8,c7,0
    # (TLBIALL); cmp r0,#1; mcreq p15,0,r3,c3,c0,0 (DACR: the condition fails); exit; the literal
    code = words(0xE59F3020, 0xEE023F10, 0xE3A00000, 0xEE080F17, 0xE3500001, 0x0E033F10, *EXIT, 0x40004000)
    m = machine(code)
    program = struct.unpack(f"<{len(code) // 4}I", code)
    sites = tuple(RAM + 4 * i for i, word in enumerate(program) if is_cp15_write(word))
    assert sites == (RAM + 4, RAM + 12, RAM + 20)
    writes = []
    Events.of(m).subscribe("cp15", writes.append, sites=sites)
    assert m.run(RAM, timeout=5).kind == "exit"
    assert [(w.pc, w.name, w.value) for w in writes] == [(RAM + 4, "TTBR0", 0x40004000), (RAM + 12, "TLBIALL", 0)]
    assert m.cp15.ttbr0 == 0x40004000


def test_condition_codes():
    z = 1 << 30
    assert _condition_passed(0x0, z) and not _condition_passed(0x1, z)      # EQ, NE
    assert _condition_passed(0xE, 0) and _condition_passed(0xE, z)          # AL
    assert _condition_passed(0xA, 0) and not _condition_passed(0xB, 0)      # GE, LT with N == V
    assert not is_cp15_write(0xEE110F10)                                   # mrc
    assert not is_cp15_write(0xEE010E10)                                   # mcr p14
    assert CP15_NAMES[(1, 0, 0, 0)] == "SCTLR"


def test_exceptions_mmio_and_the_gate_are_emitted():
    # VBAR = RAM + 0x100; str r2, [r1] to the UART (r1 = 0x09000000); hypercall svc; ldr r0, [r2] from
    # nothing: data abort -> vector -> exit.
    code = bytearray(0x200)
    code[0:28] = words(0xE59F0010, 0xEE0C0F10, 0xE5812000, 0xEF0AB0AB, 0xE5920000, 0xEAFFFFFE, 0)
    code[0x18:0x1C] = words(RAM + 0x100)
    code[0x110:0x110 + 16] = words(*EXIT)
    m = machine(bytes(code))
    m.uc.reg_write(UC_ARM_REG_R1, 0x09000000)
    m.uc.reg_write(UC_ARM_REG_R2, ord("A"))
    m.uc.reg_write(UC_ARM_REG_R7, 5)
    seen = []
    m.hypercall_handler = lambda machine, nr: m.uc.reg_write(UC_ARM_REG_R2, 0x20000000)
    bus = Events.of(m)
    for kind in ("exception", "mmio", "hypercall"):
        bus.subscribe(kind, lambda e, kind=kind: seen.append((kind, e)))
    m.uc.reg_write(UC_ARM_REG_R0, 0)
    assert m.run(RAM, timeout=5).kind == "exit"
    kinds = [k for k, _ in seen]
    assert kinds == ["mmio", "hypercall", "exception", "hypercall"]
    mmio = seen[0][1]
    assert (mmio.device, mmio.address, mmio.offset, mmio.value, mmio.write, mmio.source) == (
        "uart0", 0x09000000, 0, ord("A"), True, "cpu")
    gate = seen[1][1]
    assert (gate.pc, gate.imm, gate.number) == (RAM + 12, 0x0AB0AB, 5)
    taken = seen[2][1]
    assert (taken.vector, taken.pc, taken.fsr, taken.far, taken.new_pc, taken.mode) == (
        "data abort", RAM + 16, 0x008, 0x20000000, RAM + 0x110, 0x17)
    assert seen[3][1].imm == 0x123456 and seen[3][1].number == 0x18
    assert bytes(m.console.data) == b"A"


def test_memory_accesses_give_physical_addresses():
    code = words(0xE5912000, 0xE5812004, *EXIT)     # ldr r2, [r1]; str r2, [r1, #4]
    m = machine(code)
    m.uc.reg_write(UC_ARM_REG_R1, RAM + 0x1000)
    seen = []
    sub = Events.of(m).subscribe("memory", lambda w, a, s, v: seen.append((w, a, s)))
    m.run(RAM, timeout=5)
    assert (False, RAM + 0x1000, 4) in seen and (True, RAM + 0x1004, 4) in seen
    sub.cancel()
