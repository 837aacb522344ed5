"""Monitor commands that stop and step the boot, for the student without gdb at hand.

    break SYMBOL[+OFF]|0xADDR|STAGE
                                a stop point: a guest kernel symbol (at its VA and, for locore before
                                the MMU is on, its PA, as --stop-at does), an address as the CPU sees
                                it, or a Python kernel stage (kmeminit, msgbuf, ..., init)
    delete [N]                  one breakpoint, or all of them
    continue                    resume the boot
    step [N]                    run N guest instructions (default 1)
    until STAGE                 resume until the Python kernel is about to run STAGE
    info break                  the breakpoints and how often each stopped the boot
    x/Ni ADDR, xp/Ni PADDR      N instructions disassembled, with the kernel's symbol+offset
    gdb [HOST:]PORT             hand the stopped board to gdb (tools/gdbstub)

The commands keep their state in a Stepping (the monitor's `stepping`): the breakpoints, and where
the boot is paused: at a guest stop, before a Python kernel stage, or after the end. A resuming
command leaves its answer in `monitor.resume`; whoever drives the monitor at a stop (the monitor
session, tools/monitor_session.py) hands it to the boot.
"""

from __future__ import annotations

from typing import Any

from kernel_sim.boot import Resume, StopPoint, describe_pc, stop_point
from kernel_sim.errors import InputError
from kernel_sim.kern.startup import STAGE_NAMES
from kernel_sim.loader.sizes import parse_int
from tools.monitor_errors import CommandRefused, MonitorError

__all__ = ["COMMANDS", "Stepping"]

STAGES = ", ".join(STAGE_NAMES)


class Breakpoint:
    """A numbered stop point: guest code (its addresses and the machine's breakpoint ids) or a stage."""

    __slots__ = ("number", "spec", "point", "stage", "ids", "hits")

    def __init__(self, number: int, spec: str, point: StopPoint | None, stage: str | None,
                 ids: list[int]) -> None:
        self.number, self.spec, self.point, self.stage, self.ids = number, spec, point, stage, ids
        self.hits = 0

    def describe(self) -> str:
        if self.stage is not None:
            return f"before the Python kernel's {self.stage} step"
        assert self.point is not None
        return self.point.describe()


class Stepping:
    """The boot's stop points and where it is paused.

    `paused` is "guest" (a guest instruction is next), "stage" (the Python kernel is about to run
    `stage`), "ended" (the boot is over) or "running". `gdb`: the commands serve gdb's `monitor`,
    where gdb itself breaks, steps and continues."""

    def __init__(self, machine: Any, image: Any, *, gdb: bool = False) -> None:
        self.machine, self.image, self.gdb = machine, image, gdb
        self.breakpoints: dict[int, Breakpoint] = {}
        self._next_number = 1
        self.paused = "running"
        self.stage: str | None = None
        self.stages_begun: list[str] = []      # the Python kernel's steps reached so far
        self.until: str | None = None
        self.ending = ""                       # how the boot ended, for refusals after it

    # -- what the driver of the monitor tells it
    def guest_stopped(self, pc: int, kind: str) -> str:
        """Count the hit and say where the boot stopped, as one line."""
        self.paused, self.stage = "guest", None
        where = describe_pc(self.image, pc)
        hit = [bp for bp in self.breakpoints.values() if bp.point is not None and pc in bp.point.addresses]
        for bp in hit:
            bp.hits += 1
        if hit and kind == "breakpoint":
            return f"Breakpoint {', '.join(str(bp.number) for bp in hit)}, {where}"
        if kind == "step":
            return f"Stepped to {where}"
        return f"Stopped at {where}"

    def stage_reached(self, name: str) -> str | None:
        """Before a Python kernel step: the line to say if the boot pauses there, or None to run on."""
        self.stages_begun.append(name)
        hit = [bp for bp in self.breakpoints.values() if bp.stage == name]
        for bp in hit:
            bp.hits += 1
        if hit:
            line = f"Breakpoint {', '.join(str(bp.number) for bp in hit)}, before the Python kernel's {name} step"
        elif self.until == name:
            line = f"Stopped before the Python kernel's {name} step"
        else:
            return None
        self.until = None
        self.paused, self.stage = "stage", name
        return line

    def ended(self, status: str) -> None:
        self.paused, self.stage, self.ending = "ended", None, status

    # -- for the commands
    def _refuse_if_over(self, command: str) -> None:
        if self.paused == "ended":
            raise CommandRefused(f"{command}: the boot has ended ({self.ending}); nothing more runs")

    def add(self, spec: str) -> Breakpoint:
        self._refuse_if_over("break")
        if spec in STAGE_NAMES:
            if spec in self.stages_begun:
                raise CommandRefused(f"break {spec}: the Python kernel's {spec} step has already run")
            bp = Breakpoint(self._next_number, spec, None, spec, [])
        else:
            if self.gdb:
                raise CommandRefused(f"break {spec}: under gdb, set guest breakpoints with gdb's own break "
                                     f"(monitor break takes a Python kernel stage: {STAGES})")
            if self.stages_begun:
                raise CommandRefused(f"break {spec}: the boot is past the hand-over; no guest instruction runs "
                                     "any more (a Python kernel stage can still stop it)")
            point = self._code_point(spec)
            bp = Breakpoint(self._next_number, spec, point, None,
                            [self.machine.add_breakpoint(a) for a in point.addresses])
        self.breakpoints[bp.number] = bp
        self._next_number += 1
        return bp

    def _code_point(self, spec: str) -> StopPoint:
        """SYMBOL, SYMBOL+OFFSET (both at the VA and the PA alias, as --stop-at) or 0xADDR."""
        name, plus, offset_text = spec.partition("+")
        if not name.lower().startswith("0x") and name not in self.image.symbols:
            raise MonitorError(f"break: unknown stop point '{spec}' (a guest kernel symbol such as initarm, "
                               "SYMBOL+OFFSET, an address 0xADDR, or a Python kernel stage: "
                               f"{STAGES})")
        try:
            offset = parse_int(offset_text, where="break") if plus else 0
            point = stop_point(self.image, name)
        except InputError as exc:
            raise MonitorError(f"break: {exc.message}") from None
        assert point is not None
        if plus:
            point = StopPoint(spec, tuple((a + offset) & 0xFFFFFFFF for a in point.addresses))
        return point

    def delete(self, number: int | None) -> list[Breakpoint]:
        numbers = list(self.breakpoints) if number is None else [number]
        if number is not None and number not in self.breakpoints:
            raise CommandRefused(f"delete: no breakpoint number {number}")
        gone = []
        for n in numbers:
            bp = self.breakpoints.pop(n)
            for bp_id in bp.ids:
                self.machine.remove_breakpoint(bp_id)
            gone.append(bp)
        return gone


def _stepping(monitor: Any) -> Stepping:
    stepping = getattr(monitor, "stepping", None)
    if stepping is None:
        raise CommandRefused("the boot cannot be stepped from here (start it with -S, --stop-at or --monitor)")
    return stepping


def _count(args: list[str], command: str) -> int:
    if not args:
        return 1
    if len(args) > 1 or not args[0].isdigit() or int(args[0]) == 0:
        raise MonitorError(f"usage: {command} [N] (N instructions, at least 1)")
    return int(args[0])


def cmd_break(monitor: Any, args: list[str]) -> None:
    if len(args) != 1:
        raise MonitorError(f"usage: break SYMBOL[+OFFSET]|0xADDR|STAGE (stages: {STAGES})")
    bp = _stepping(monitor).add(args[0])
    monitor.out.write(f"Breakpoint {bp.number} {'at ' if bp.point is not None else ''}{bp.describe()}\n")


def cmd_delete(monitor: Any, args: list[str]) -> None:
    if len(args) > 1 or (args and not args[0].isdigit()):
        raise MonitorError("usage: delete [N]")
    gone = _stepping(monitor).delete(int(args[0]) if args else None)
    monitor.out.write(f"Deleted {', '.join(f'breakpoint {bp.number}' for bp in gone) or 'no breakpoints'}\n")


def info_break(monitor: Any) -> None:
    """`info break`: number, where, and how often it stopped the boot (gdb's `info breakpoints`)."""
    stepping = _stepping(monitor)
    if not stepping.breakpoints:
        monitor.out.write("No breakpoints.\n")
        return
    monitor.out.write("Num  Where\n")
    for bp in stepping.breakpoints.values():
        times = f"; stopped the boot {bp.hits} time{'s' if bp.hits != 1 else ''}" if bp.hits else ""
        monitor.out.write(f"{bp.number:<4} {bp.describe()}{times}\n")


def _resume(monitor: Any, command: str) -> Stepping:
    stepping = _stepping(monitor)
    stepping._refuse_if_over(command)
    if stepping.gdb:
        raise CommandRefused(f"{command}: under gdb, use gdb's continue, stepi or until")
    return stepping


def cmd_continue(monitor: Any, args: list[str]) -> None:
    if args:
        raise MonitorError("usage: continue")
    _resume(monitor, "continue")
    monitor.resume = Resume()


def cmd_step(monitor: Any, args: list[str]) -> None:
    count = _count(args, "step")
    stepping = _resume(monitor, "step")
    if stepping.paused == "stage":
        raise CommandRefused(f"step: the boot is paused before the Python kernel's {stepping.stage} step, "
                             "which runs no guest instructions; use continue, or until STAGE")
    monitor.resume = Resume(count)


def cmd_until(monitor: Any, args: list[str]) -> None:
    if len(args) != 1 or args[0] not in STAGE_NAMES:
        raise MonitorError(f"usage: until STAGE (a Python kernel stage: {STAGES})")
    stepping = _resume(monitor, "until")
    if args[0] in stepping.stages_begun:
        raise CommandRefused(f"until {args[0]}: the Python kernel's {args[0]} step has already begun")
    stepping.until = args[0]
    monitor.resume = Resume()


def examine_instructions(monitor: Any, addr: int, count: int, *, physical: bool) -> None:
    """x/Ni: N instructions at addr (virtual through the current translation, or physical), with the
    kernel's symbol+offset; Thumb when the CPU is in Thumb state."""
    from board.memory import PhysicalAbort as BusAbort
    from kernel_sim.guest.symbols import SymbolTable
    from kernel_sim.vm.cpu_mmu import mmu_for
    from kernel_sim.vm.mmu import MMUFault
    from tools.disasm import listing

    machine = monitor.machine
    size = 4 * count
    try:
        if physical:
            code = machine.phys.read(addr, size)
        else:
            mmu = mmu_for(machine)
            code = mmu.read_virtual(addr, size, mmu.read_phys)
    except (MMUFault, BusAbort) as exc:
        raise CommandRefused(f"cannot access {'physical' if physical else 'virtual'} address 0x{addr:08x}: "
                             f"{exc}") from None
    image = getattr(monitor, "image", None)
    names = SymbolTable(image).describe if image is not None else (lambda a: None)
    monitor.out.write(listing(code, addr, count, names, thumb=bool(machine.cpsr & 0x20)))


def cmd_gdb(monitor: Any, args: list[str]) -> None:
    """Hand the stopped board to gdb: the session serves gdb from this stop on."""
    if len(args) != 1:
        raise MonitorError("usage: gdb [HOST:]PORT")
    start = getattr(monitor, "start_gdb", None)
    if start is None:
        raise CommandRefused("gdb: this monitor cannot hand the board over (it serves gdb already)")
    start(args[0])


COMMANDS = {
    "break": cmd_break, "b": cmd_break, "delete": cmd_delete, "continue": cmd_continue, "c": cmd_continue,
    "step": cmd_step, "stepi": cmd_step, "si": cmd_step, "until": cmd_until, "gdb": cmd_gdb,
}
