"""Hardware events for whoever listens: blocks and instructions executed, exceptions taken, device
(MMIO) accesses, CP15 writes, memory accesses, TLB fills and calls through the svc gate.

Why a bus of its own: traces, the boot timeline and debuggers all want to know what the CPU did, but
the board knows nothing of symbols, disassembly or boot stages, and a boot nobody watches must not
pay for any of it. So the Machine keeps `events` None until someone subscribes here, and each Unicorn
hook is installed with its first subscriber and deleted with its last: no per-instruction or per-block
Python runs unless it was asked for. This module is imported only by those who subscribe.

CP15 writes: Unicorn has no instruction hook for ARM32 MCR, and a code hook added to code that is
already translated takes effect only when that code is translated again. So the subscriber names the
addresses of the MCR instructions (whoever knows the code finds them before the run, `is_cp15_write`
recognises one), and a code hook on each of those few addresses reads the instruction and the value
of its source register just before it executes. The alternative, comparing CP15 registers at every
block boundary, would cost several register reads per block and cannot see TLB maintenance
operations, which change no register.
"""

from __future__ import annotations

from collections import namedtuple

from .ucapi import (
    UC_ARM_REG_CPSR,
    UC_ARM_REG_LR,
    UC_ARM_REG_R0,
    UC_ARM_REG_SP,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_MEM_WRITE,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .exceptions import Vector
    from .machine import Machine

_CORE_REGS = (*(UC_ARM_REG_R0 + i for i in range(13)), UC_ARM_REG_SP, UC_ARM_REG_LR)
KINDS = ("block", "insn", "memory", "cp15", "exception", "mmio", "hypercall", "tlb_fill")


class ExceptionTaken(namedtuple("ExceptionTaken", "vector pc fsr far new_pc mode")):
    """The board entered an exception vector: `vector` its name ("data abort", ...), `pc` the
    instruction that took it (the one after an svc), `fsr`/`far` what went to DFSR/DFAR or IFSR/IFAR
    (None when the vector has none), `new_pc` the vector's address, `mode` the mode entered."""

    __slots__ = ()


class MmioAccess(namedtuple("MmioAccess", "device address offset size value write source")):
    """One device register access: `source` "cpu" (guest code) or "bus" (a driver of the Python
    kernel through Machine.bus_read/bus_write)."""

    __slots__ = ()


class Cp15Write(namedtuple("Cp15Write", "pc crn opc1 crm opc2 value")):
    """An MCR to CP15 about to execute at `pc`, with the value it writes."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return CP15_NAMES.get((self.crn, self.opc1, self.crm, self.opc2),
                              f"c{self.crn}, {self.opc1}, c{self.crm}, {self.opc2}")


class GateCall(namedtuple("GateCall", "pc imm number argument")):
    """An `svc #imm` the board answers itself (hypercall gate or semihosting): `number` r7 for the
    hypercall gate, r0 (the operation) for semihosting; `argument` r0 or r1."""

    __slots__ = ()


class TlbFill(namedtuple("TlbFill", "va access answer")):
    """A TLB fill answered in Python (`Machine(tlb_fill=...)`): `answer` (pa, perms) or the FSR."""

    __slots__ = ()


# ARM ARM B4.1 / B6.1: the CP15 registers and operations an early kernel writes.
CP15_NAMES = {
    (1, 0, 0, 0): "SCTLR", (1, 0, 0, 2): "CPACR", (2, 0, 0, 0): "TTBR0", (2, 0, 0, 1): "TTBR1",
    (2, 0, 0, 2): "TTBCR", (3, 0, 0, 0): "DACR", (5, 0, 0, 0): "DFSR", (5, 0, 0, 1): "IFSR",
    (6, 0, 0, 0): "DFAR", (6, 0, 0, 2): "IFAR", (10, 0, 2, 0): "PRRR", (10, 0, 2, 1): "NMRR",
    (12, 0, 0, 0): "VBAR", (13, 0, 0, 1): "CONTEXTIDR",
    (7, 0, 5, 0): "ICIALLU", (7, 0, 5, 6): "BPIALL", (7, 0, 1, 0): "ICIALLUIS", (7, 0, 1, 6): "BPIALLIS",
    (7, 0, 5, 1): "ICIMVAU", (7, 0, 14, 1): "DCCIMVAC", (7, 0, 10, 1): "DCCMVAC", (7, 0, 6, 1): "DCIMVAC",
    (8, 0, 7, 0): "TLBIALL", (8, 0, 7, 1): "TLBIMVA", (8, 0, 7, 2): "TLBIASID", (8, 0, 3, 0): "TLBIALLIS",
    (8, 0, 3, 1): "TLBIMVAIS", (8, 0, 3, 2): "TLBIASIDIS", (8, 0, 3, 3): "TLBIMVAAIS", (8, 0, 7, 3): "TLBIMVAA",
}


def is_cp15_write(word: int) -> bool:
    """Whether an ARM instruction word is an MCR to coprocessor 15 (any condition but 0b1111)."""
    return (word & 0x0F100F10) == 0x0E000F10 and (word >> 28) != 0xF


def _condition_passed(cond: int, cpsr: int) -> bool:
    """ARM ARM A8.3: the condition field against CPSR's N, Z, C, V."""
    n, z, c, v = (cpsr >> 31) & 1, (cpsr >> 30) & 1, (cpsr >> 29) & 1, (cpsr >> 28) & 1
    holds = bool((z, c, n, v, c and not z, n == v, not z and n == v, True)[cond >> 1])
    return not holds if cond & 1 else holds


class Subscription:
    """One subscriber: cancel() removes it (and its Unicorn hook)."""

    __slots__ = ("events", "kind", "fn", "handles")

    def __init__(self, events: Events, kind: str, fn: Callable, handles: list[int]) -> None:
        self.events, self.kind, self.fn, self.handles = events, kind, fn, handles

    def cancel(self) -> None:
        self.events.unsubscribe(self)


class Events:
    """The machine's event bus. `Events.of(machine)` gives the one bus of a machine, made on first use."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.subscribers: dict[str, list[Subscription]] = {kind: [] for kind in KINDS}

    @classmethod
    def of(cls, machine: Machine) -> Events:
        bus = machine.events
        if bus is None:
            bus = machine.events = cls(machine)
        return bus

    # ------------------------------------------------------------------ subscribing
    def subscribe(self, kind: str, fn: Callable, *, begin: int = 1, end: int = 0,
                  sites: tuple[int, ...] = ()) -> Subscription:
        """Listen to one kind of event.

        block(address, size) and insn(address, size): each executed block or instruction whose address
        is in [begin, end] (begin > end: everywhere), as the CPU sees it (virtual with the MMU on).
        memory(write, address, size, value): each guest load and store, physical address.
        cp15(Cp15Write): the MCR instructions at `sites`, before each executes (if its condition passes).
        exception(ExceptionTaken), mmio(MmioAccess), hypercall(GateCall), tlb_fill(TlbFill).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(KINDS)})")
        m = self.machine
        uc = m.uc
        handles: list[int] = []
        if kind in ("block", "insn"):
            def code(_uc, address: int, size: int, _user: object) -> None:
                fn(address, size)
            handles.append(uc.hook_add(UC_HOOK_BLOCK if kind == "block" else UC_HOOK_CODE, m._guarded(code),
                                       begin=begin, end=end))
        elif kind == "memory":
            def access(_uc, acc: int, address: int, size: int, value: int, _user: object) -> None:
                fn(acc == UC_MEM_WRITE, address, size, value)
            handles.append(uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, m._guarded(access),
                                       begin=begin, end=end))
        elif kind == "cp15":
            hook = m._guarded(self._cp15_hook(fn))
            handles += [uc.hook_add(UC_HOOK_CODE, hook, begin=site, end=site) for site in sorted(set(sites))]
        if handles:
            uc.ctl_flush_tb()       # blocks translated before the hook existed would not call it
        sub = Subscription(self, kind, fn, handles)
        self.subscribers[kind].append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self.subscribers[sub.kind]
        if sub in subs:
            subs.remove(sub)
            for handle in sub.handles:
                self.machine.uc.hook_del(handle)
            if sub.handles and not self.machine._running:
                self.machine.uc.ctl_flush_tb()   # nor may a block translated with the hook keep calling it
            sub.handles = []

    def _cp15_hook(self, fn: Callable[[Cp15Write], None]) -> Callable:
        m = self.machine

        def hook(uc, address: int, _size: int, _user: object) -> None:
            code = m.read_virtual(address, 4)
            if code is None:
                return
            word = int.from_bytes(code, "little")
            if not is_cp15_write(word) or not _condition_passed(word >> 28, uc.reg_read(UC_ARM_REG_CPSR)):
                return
            rt = (word >> 12) & 0xF
            value = address + 8 if rt == 15 else uc.reg_read(_CORE_REGS[rt])    # reading PC gives pc + 8
            fn(Cp15Write(address, (word >> 16) & 0xF, (word >> 21) & 0x7, word & 0xF, (word >> 5) & 0x7, value))
        return hook

    # ------------------------------------------------------------------ what the machine emits
    def exception(self, vector: Vector, pc: int, fsr: int | None, far: int | None, new_pc: int) -> None:
        subs = self.subscribers["exception"]
        if subs:
            event = ExceptionTaken(vector.name, pc, fsr, far, new_pc, vector.mode)
            for sub in list(subs):
                sub.fn(event)

    def mmio(self, device: str, address: int, offset: int, size: int, value: int, write: bool,
             source: str = "cpu") -> None:
        subs = self.subscribers["mmio"]
        if subs:
            event = MmioAccess(device, address, offset, size, value, write, source)
            for sub in list(subs):
                sub.fn(event)

    def gate(self, pc: int, imm: int, number: int, argument: int) -> None:
        subs = self.subscribers["hypercall"]
        if subs:
            event = GateCall(pc, imm, number, argument)
            for sub in list(subs):
                sub.fn(event)

    def tlb_fill(self, va: int, access: str, answer: object) -> None:
        subs = self.subscribers["tlb_fill"]
        if subs:
            event = TlbFill(va, access, answer)
            for sub in list(subs):
                sub.fn(event)
