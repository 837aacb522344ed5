"""The Python kernel's side of the hypercall gate: what the guest hands over, and when it fails."""

from __future__ import annotations

import struct
from collections import namedtuple

from board.ucapi import UC_ARM_REG_R0
from kernel_sim.guest.abi import FATAL_KINDS, HANDOFF_SIZE, HC_FATAL, HC_HANDOVER, HC_PANIC, unpack_handoff
from kernel_sim.vm.cpu_mmu import GuestMemory
from kernel_sim.vm.mmu import MMUFault

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from board.machine import Machine


class FatalReport(namedtuple("FatalReport", "kind fsr far pc spsr registers")):
    """The guest trap handler's report: the exception `kind`, FSR, FAR, pc, SPSR and r0..r12."""

    __slots__ = ()


class GateEvent(namedtuple("GateEvent", "kind handoff panic fatal number", defaults=(None, None, None, 0))):
    """One hypercall that ends the guest's run: `kind` "handover" (with its Handoff), "panic"
    (with the message), "fatal" (with a FatalReport) or "unknown"; `number` the hypercall."""

    __slots__ = ()


def _read_fatal(mem: GuestMemory, va: int) -> FatalReport:
    kind, fsr, far, tf = struct.unpack("<4I", mem.read(va, 16))
    words = struct.unpack("<17I", mem.read(tf, 68))
    return FatalReport(FATAL_KINDS.get(kind, f"kind {kind}"), fsr, far, words[16], words[0], words[1:14])


def handle_hypercall(machine: Machine, nr: int) -> GateEvent:
    """Decode a hypercall's argument through the guest's own page tables (the MMU simulator)."""
    mem = GuestMemory(machine)
    arg = machine.uc.reg_read(UC_ARM_REG_R0)
    try:
        if nr == HC_HANDOVER:
            return GateEvent("handover", handoff=unpack_handoff(mem.read(arg, HANDOFF_SIZE), mem.read_string),
                             number=nr)
        if nr == HC_PANIC:
            return GateEvent("panic", panic=mem.read_string(arg, 256), number=nr)
        if nr == HC_FATAL:
            return GateEvent("fatal", fatal=_read_fatal(mem, arg), number=nr)
    except MMUFault as fault:
        return GateEvent("unknown", panic=f"hypercall {nr}: argument 0x{arg:08x} unreadable ({fault})",
                         number=nr)
    return GateEvent("unknown", panic=f"unknown hypercall {nr}", number=nr)
