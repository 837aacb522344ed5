"""The boot timeline: each stage with its guest instruction count, virtual time and wall time.

Stages, in order: the guest's (reset, locore's L1 build, MMU on, initarm's metadata walk,
pmap_bootstrap, the hand-over), then the Python kernel's steps (kmeminit with each boot KVA consumer
under it, msgbuf, swapon, GEOM taste, root mount, start_init, kmem_stress, init with each command it
and its shells ran as a process under it).

How it counts: while a timeline is asked for, a UC_HOOK_BLOCK hook adds each executed block's
instructions (ARM state, 4 bytes each: the guest is built -marm) and code hooks mark the first
instruction of each guest stage. A stage that begins inside a block takes the block's rest, and a block
an exception cuts short gives back the instructions after the one that took it, so the counts are the
instructions executed, the same as one line per instruction of `--trace insn`. The cost, only then:
about 0.35 us per block, some 20 ms for the default boot's 54,000 blocks (a boot without --timeline
installs no hook). The Python kernel executes no guest instruction;
its stages count 0. Virtual time comes from the kernel's VirtualClock where one exists (from init on;
kmem_stress reports its own); before that it is not defined and is left out (null), never invented.
The KVA consumers are one computation inside kmeminit: they are listed with their ranges, their time
is kmeminit's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from board.machine import Machine
from board.trace import Events
from kernel_sim.guest.build import GuestImage
from kernel_sim.guest.stages import GUEST_STAGES
from kernel_sim.humanize import humanize_number
from tools.stage_watch import StageWatch

KERNEL_TITLES = {
    "kmeminit": "kmeminit: vm_mem_init, kmeminit and the boot KVA layout",
    "msgbuf": "msgbuf: the message buffer, /dev/mem and /dev/kmem",
    "swapon": "swapon: swap devices and the pageout daemon",
    "geom_taste": "GEOM taste: disks attach, classes taste them",
    "mountroot": "root mount (vfs_mountroot)",
    "start_init": "start_init: init (pid 1) and debug.init_procs",
    "kmem_stress": "debug.kmem_stress",
    "init": "init: /etc/rc, then -c and the console shell",
}
GUEST_TITLES = {s.name: s.title for s in GUEST_STAGES}
MAX_PROCESS_ROWS = 500      # a loop in rc may start thousands of commands: the rest are counted


@dataclass
class Row:
    """One line of the timeline. `parent` names the row it belongs to (a KVA consumer's is kmeminit,
    a command's the shell's row or init). Times in seconds; None where not measured."""

    name: str
    title: str
    kind: str                       # "guest", "kernel", "kva", "process"
    parent: str | None = None
    instructions: int = 0
    wall_start: float | None = None
    wall: float | None = None
    virtual_start: float | None = None
    virtual: float | None = None
    address: int | None = None      # where a guest stage began, as the CPU ran it
    detail: str = ""


@dataclass
class Timeline:
    """What one boot's timeline holds; `Recorder` fills it."""

    rows: list[Row] = field(default_factory=list)
    instructions: int = 0
    wall: float = 0.0
    outcome: dict = field(default_factory=dict)
    processes_not_listed: int = 0

    def stages(self) -> list[Row]:
        return [r for r in self.rows if r.kind in ("guest", "kernel")]

    def to_json(self) -> dict:
        return {"stages": [asdict(r) for r in self.rows], "instructions": self.instructions, "wall": self.wall,
                "outcome": self.outcome, "processes_not_listed": self.processes_not_listed}

    def depths(self) -> dict[str, int]:
        """How deep each row sits under its parents (a stage 0, a KVA consumer or init's child 1, ...)."""
        parents = {r.name: r.parent for r in self.rows}
        out = {}
        for r in self.rows:
            depth, parent = 0, r.parent
            while parent is not None and depth < len(self.rows):
                depth, parent = depth + 1, parents.get(parent)
            out[r.name] = depth
        return out

    def text(self) -> str:
        """The table the monitor's `timeline` prints."""
        lines = [f"{'stage':<40} {'instructions':>12} {'wall ms':>9} {'virtual s':>9}  detail"]
        depth = self.depths()
        for r in self.rows:
            name = "  " * depth[r.name] + r.name
            wall = "-" if r.wall is None else f"{r.wall * 1e3:.2f}"
            virtual = "-" if r.virtual is None else f"{r.virtual:.3f}"
            detail = r.detail or r.title
            lines.append(f"{name[:40]:<40} {r.instructions:>12,} {wall:>9} {virtual:>9}  {detail}")
        lines.append(f"{'total':<40} {self.instructions:>12,} {self.wall * 1e3:>9.2f}")
        if self.processes_not_listed:
            lines.append(f"({self.processes_not_listed} more processes not listed)")
        return "\n".join(lines) + "\n"


class Recorder:
    """Records a Timeline for one boot: attach before the run, pass `on_stage` to the boot, then finish."""

    def __init__(self, machine: Machine, image: GuestImage, clock: Callable[[], float] = time.perf_counter) -> None:
        self.machine = machine
        self.clock = clock
        self.timeline = Timeline()
        self.t0 = clock()
        self.insns = 0                     # instructions executed so far
        self._block = (0, 0)               # the block executing now: (address, size)
        self._open: Row | None = None
        self._open_insns = 0
        self._run = None                   # the StartupRun, once the Python kernel runs
        self._kva_listed = False
        self._rows_by_pid: dict[int, Row] = {}
        self._proc_start: dict[int, tuple[float, float | None]] = {}
        bus = Events.of(machine)
        self._subs = [bus.subscribe("block", self._on_block), bus.subscribe("exception", self._on_exception)]
        self.watch = StageWatch(machine, image)
        self.watch.listeners.append(self._on_stage)

    # ------------------------------------------------------------------ guest
    def _on_block(self, address: int, size: int) -> None:
        self.insns += size >> 2
        self._block = (address, size)

    def _unrun(self, address: int) -> int:
        """Instructions of the current block from `address` on (counted, not yet run)."""
        start, size = self._block
        return (start + size - address) >> 2 if start <= address < start + size else 0

    def _on_exception(self, event) -> None:
        # The block was counted whole; after the instruction that took the exception, it did not run. The
        # instruction itself counts, as an instruction trace lists it (for an svc, `pc` is the one after).
        after = event.pc if event.vector == "supervisor call" else event.pc + 4
        self.insns -= self._unrun(after)
        self._block = (0, 0)

    # ------------------------------------------------------------------ stages
    def _virtual_now(self) -> float | None:
        s = getattr(self._run, "s", None)
        clock = getattr(s, "clock", None)
        return clock.now() if clock is not None else None

    def _on_stage(self, name: str, address: int | None, run: object) -> None:
        if run is not None:
            self._run = run
        at = self.insns - (self._unrun(address) if address is not None else 0)
        now = self.clock() - self.t0
        self._close(at, now)
        if name == "done":
            return
        if name == "msgbuf":
            self._list_kva()
        if name == "init":
            self._watch_processes()
        guest = address is not None
        row = Row(name, GUEST_TITLES.get(name) if guest else KERNEL_TITLES.get(name, name),
                  "guest" if guest else "kernel", wall_start=now, address=address, virtual_start=self._virtual_now())
        self.timeline.rows.append(row)
        self._open, self._open_insns = row, at

    def _close(self, at: int, now: float) -> None:
        row = self._open
        if row is None:
            return
        row.instructions = at - self._open_insns
        row.wall = now - row.wall_start
        v = self._virtual_now()
        if row.virtual_start is not None and v is not None:
            row.virtual = v - row.virtual_start
        elif row.name == "init" and v is not None:
            row.virtual = v                      # the clock is made in init and starts at 0
        elif row.name == "kmem_stress":
            row.virtual = getattr(getattr(self._run, "s", None), "virtual_seconds", None) or None
        self._open = None

    def _list_kva(self) -> None:
        """The boot KVA consumers kmeminit placed, under it (once, when they exist)."""
        s = getattr(self._run, "s", None)
        kva = getattr(s, "kva", None)
        if kva is None or self._kva_listed:
            return
        self._kva_listed = True
        rows = self.timeline.rows
        at = next((i + 1 for i, r in enumerate(rows) if r.name == "kmeminit"), len(rows))
        for i, r in enumerate(kva.rows):
            rows.insert(at + i, Row(r.consumer, r.source, "kva", parent="kmeminit",
                                    detail=f"0x{r.start:08x}-0x{r.end:08x} {humanize_number(r.size, 6)} ({r.map})"))
        failure = kva.failure
        if failure is not None:
            needs, free = humanize_number(failure.requested, 6), humanize_number(failure.available, 6)
            rows.insert(at + len(kva.rows), Row(failure.consumer, failure.source, "kva", parent="kmeminit",
                                                detail=f"does not fit: needs {needs}, {free} free"))

    # ------------------------------------------------------------------ init's processes
    def _watch_processes(self) -> None:
        procs = getattr(getattr(self._run, "s", None), "procs", None)
        if procs is None:
            return
        procs.eventhandlers["process_fork"].append(self._forked)
        procs.eventhandlers["process_exit"].append(self._exited)
        self._procs = procs

    def _forked(self, proc, parent: int) -> None:
        if len(self._rows_by_pid) >= MAX_PROCESS_ROWS:
            self.timeline.processes_not_listed += 1
            return
        parent_row = self._rows_by_pid.get(parent)
        row = Row(f"{proc.comm} (pid {proc.pid})", proc.comm, "process",
                  parent=parent_row.name if parent_row else "init", wall_start=self.clock() - self.t0,
                  virtual_start=self._virtual_now())
        self._rows_by_pid[proc.pid] = row
        self.timeline.rows.append(row)

    def _exited(self, proc) -> None:
        row = self._rows_by_pid.get(proc.pid)
        if row is None or row.wall is not None:
            return
        row.wall = self.clock() - self.t0 - row.wall_start
        v = self._virtual_now()
        if row.virtual_start is not None and v is not None:
            row.virtual = v - row.virtual_start

    # ------------------------------------------------------------------ end
    def finish(self, result=None) -> Timeline:
        """Close the last stage, remove every hook, note how the boot ended."""
        stop = getattr(result, "stop", None)
        if stop is not None and stop.kind == "breakpoint":
            self.insns -= self._unrun(self.machine.pc)      # a stop point stops before its instruction runs
        self._close(self.insns, self.clock() - self.t0)
        self._list_kva()
        for sub in self._subs:
            sub.cancel()
        self._subs = []
        self.watch.close()
        procs = getattr(self, "_procs", None)
        if procs is not None:
            procs.eventhandlers["process_fork"].remove(self._forked)
            procs.eventhandlers["process_exit"].remove(self._exited)
            self._procs = None
        t = self.timeline
        t.instructions = self.insns
        t.wall = self.clock() - self.t0
        if result is not None:
            t.outcome = {"status": result.status, "stage": result.stage, "exit_code": result.exit_code,
                         "message": result.message}
        return t


def write_timeline(timeline: Timeline, path, flag: str = "--timeline") -> None:
    """FILE.json: the rows; FILE.svg or FILE.png: the picture."""
    from pathlib import Path

    from kernel_sim.errnos import describe_host
    from kernel_sim.errors import InputError

    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            path.write_text(json.dumps(timeline.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"cannot write the timeline: {describe_host(exc)}", str(path)) from None
        return
    from tools.pictures import save_figure, timeline_figure

    save_figure(timeline_figure(timeline), path, flag, also=".json")
