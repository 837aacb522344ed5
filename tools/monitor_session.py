"""The monitor as the boot's debugger: `-x` commands and the `(armboard)` prompt at each stop.

`-x` keeps its meaning: the commands run when the boot stops. A stop is now any of them: the
--stop-at point, reset with -S, a breakpoint, the end of a step, a Python kernel stage, and the end
of the boot. The commands are taken in order across the stops: `continue`, `step` and `until` resume
the boot, and the next commands run at the next stop. When the list runs out at a stop, --monitor
opens the prompt there; without it the boot ends at that stop, as a --stop-at boot always did.
"""

from __future__ import annotations

import sys
from typing import TextIO

from kernel_sim.boot import Debugger, EndBoot, Resume
from kernel_sim.errors import InputError
from tools.monitor import Monitor, interactive
from tools.monitor_debug import Stepping
from tools.monitor_errors import CommandRefused, MonitorError


class MonitorSession(Debugger):
    """Runs a Monitor at the boot's stops. `stop_at_reset`: -S, stop before the first instruction."""

    def __init__(self, commands: list[str], *, prompt: bool, stop_at_reset: bool = False,
                 stdin: TextIO | None = None, out: TextIO | None = None, nbd=None) -> None:
        self.pending = list(commands)
        self.prompt = prompt
        self.stop_at_reset = stop_at_reset
        self.stdin, self.out = stdin, out
        self.nbd = nbd                 # --nbd's server: the prompt waits with its Giant released
        self.extend = None             # more commands for the monitor (the timeline's), given it at each stop
        self.monitor: Monitor | None = None
        self.prep = None
        self.finished = False          # quit, or the prompt's input ended: nothing more is asked
        self.delegate: Debugger | None = None    # the gdb stub, once `gdb PORT` handed the board over
        self._at_reset = False

    # ------------------------------------------------------------------ Debugger
    def attach(self, machine, prep) -> None:
        self.prep = prep
        self.monitor = self._new_monitor(machine, prep.image)
        if self.stop_at_reset:
            self._at_reset = True
            machine.request_stop()

    def stopped(self, stop):
        if self.delegate is not None:
            return self.delegate.stopped(stop)
        monitor = self.monitor
        line = monitor.stepping.guest_stopped(monitor.machine.pc, stop.kind)
        if self._at_reset and stop.kind == "interrupt":
            line += ", before the first instruction"
        self._at_reset = False
        self._say(line)
        # where savevm saves from (kernel_sim.boot_snapshot.RestoredBoot's fields): the guest, paused
        monitor.paused_at = (self.prep, monitor.machine, "guest", f"0x{monitor.machine.pc:08x}", None, None)
        resume = self._commands()
        monitor.paused_at = None
        if resume is None and self.delegate is not None:      # `gdb PORT` at this stop
            return self.delegate.stopped(stop)
        monitor.stepping.paused = "running"
        return resume

    def on_stage(self, name: str, run) -> None:
        if self.delegate is not None:
            self.delegate.on_stage(name, run)
            return
        monitor = self.monitor
        first = self._at_reset                  # -S on a boot restored between two steps: stop at the first
        if first:
            self._at_reset = False
            monitor.stepping.until = name
        line = monitor.stepping.stage_reached(name)
        if line is None:
            return
        if first:
            line += ", where the restored boot goes on"
        monitor.bind_startup(run.s)
        self._say(line)
        monitor.paused_at = (self.prep, monitor.machine, "stage", name, run.handoff, run)
        resume = self._commands()
        monitor.paused_at = None
        if resume is None and self.delegate is not None:
            self.delegate.on_stage(name, run)
            return
        if resume is None:
            raise EndBoot(name, run.s)
        monitor.stepping.paused = "running"

    # ------------------------------------------------------------------ after the boot
    def after_boot(self, result) -> Monitor:
        """The boot is over (halted, failed or stopped): the rest of the commands, then the prompt."""
        earlier = self.delegate
        if earlier is not None:                 # gdb, handed the board at a stop, hears the end
            earlier.after_boot(result)
        if self.monitor is None:
            self.monitor = self._new_monitor(result.machine, result.prepared.image)
            self.prep = result.prepared
        self.monitor.bind_startup(result.startup)
        self.monitor.boot_result = result       # what savevm saves
        self.monitor.stepping.ended(result.status)
        if self.extend is not None:
            self.extend(self.monitor)           # what they know now that the boot has ended
        self._commands()
        if self.delegate is not None and self.delegate is not earlier:
            self.delegate.after_boot(result)    # `gdb PORT` after the end: gdb looks at the halted board
        return self.monitor

    # ------------------------------------------------------------------ the commands
    def _new_monitor(self, machine, image) -> Monitor:
        monitor = Monitor(machine, out=self.out)
        monitor.add_mem_commands(None)
        monitor.add_debug_commands(Stepping(machine, image), image)
        monitor.start_gdb = self._start_gdb
        if self.nbd is not None:
            monitor.nbd, monitor.waiting = self.nbd, self.nbd.waiting
        if self.extend is not None:
            self.extend(monitor)
        return monitor

    def _say(self, line: str) -> None:
        self.monitor.machine.console.flush()
        self.monitor.out.write(line + "\n")
        self.monitor.out.flush()

    def _commands(self) -> Resume | None:
        """The pending -x commands, then the prompt if asked for, until one resumes the boot."""
        monitor = self.monitor
        monitor.resume = None
        while self.pending and not monitor.done and self.delegate is None:
            command = self.pending.pop(0)
            try:
                monitor.run(command)
            except CommandRefused as exc:     # a result: say it and go on with the next command
                monitor.out.write(f"{exc}\n")
            except MonitorError as exc:       # malformed: the remaining commands would not mean what was meant
                raise InputError(str(exc), f"-x {command}") from None
            if monitor.resume is not None:
                return self._take_resume()
        if self.prompt and not monitor.done and not self.finished and self.delegate is None:
            interactive(monitor, self.stdin if self.stdin is not None else sys.stdin)
            if monitor.resume is not None:
                return self._take_resume()
            self.finished = True
        return None

    def _take_resume(self) -> Resume:
        resume, self.monitor.resume = self.monitor.resume, None
        return resume

    def _start_gdb(self, address: str) -> None:
        """`gdb [HOST:]PORT`: from this stop on, gdb drives the boot (the prompt hands over)."""
        from tools.gdbstub import GdbStub, parse_address

        try:
            host, port = parse_address(address)
        except InputError as exc:
            raise MonitorError(f"gdb: {exc.message}") from None
        stub = GdbStub(host, port, wait=True)
        stub.waiting = self.monitor.waiting
        try:
            stub.listen()
        except InputError as exc:
            raise CommandRefused(f"gdb: {exc.message}") from None
        stub.attach(self.monitor.machine, self.prep, reset=False)
        self.delegate = stub
