"""Snapshots of a boot: save one where it pauses (`--save-at`), and go on from one (`--restore`).

A snapshot holds three things, each saved by its owner (DESIGN.md, "Snapshots"):

* the board: Machine.state() framed by board/snapshot.py ("pages" and "board" sections);
* the boot: the PreparedBoot, everything prepare() derived from the user's files, so a restore needs
  none of them again, only the host files the board maps (module overlays, flash images, vnodes),
  whose contents the board checks ("boot" section);
* the Python kernel, from the hand-over on: the Handoff and, between two steps of mi_startup, the
  StartupRun's object graph (kernel_sim/kern/snapshot_state.py, "kernel" section).

Where a snapshot can be taken, its `position`:

* "guest": at a guest kernel symbol or 0xADDR, before or after the MMU switch: the CPU stops there;
  the restored boot runs the guest on from that pc;
* "handover": at the hand-over hypercall, before mi_startup: the restored boot starts mi_startup;
* "stage": before a step of mi_startup (kernel_sim.kern.startup.STAGE_NAMES), or "done" after the
  last: the restored boot runs the remaining steps. Inside init and /etc/rc the kernel runs in live
  Python frames, which no snapshot can hold; those points are refused.

What the restoring command line gives is the run, not the board: the console sink, the time limit,
the stop point, the line reader for the console, watchers and a further save point.
"""

from __future__ import annotations

import os
from collections import namedtuple

from board import snapshot as board_snapshot
from board.machine import Machine
from board.snapshot import SnapshotError, SnapshotReader, SnapshotWriter
from kernel_sim import boot as boot_mod
from kernel_sim.boot import BootRequest, BootResult, Paused, PreparedBoot
from kernel_sim.errors import InputError
from kernel_sim.kern import snapshot_state
from kernel_sim.kern.snapshot_state import KernelStateError

BOOT_SECTION, KERNEL_SECTION = "boot", "kernel"
KERNEL_STATE_VERSION = 1
# What runs inside init's Python frames (no save point there).
INSIDE_INIT = ("rc", "shell", "command", "sh", "init_main")
# The request's fields that belong to the run, not to the saved boot: a restore takes them from the
# restoring command line.
RUNTIME_FIELDS = ("console", "timeout", "stop_at", "read_line", "on_stage", "pause_at", "on_pause", "debugger")
# Those of them that are host objects (a stream, callables, a debugger): saved as a reference, never copied.
HOST_FIELDS = ("console", "read_line", "on_stage", "on_pause", "debugger")


class SaveReport(namedtuple("SaveReport", "path point position stored pages")):
    """A written snapshot: its `path`, the save `point` and `position`, the file's size and the bytes of
    pages it holds before compression."""

    __slots__ = ()

    def describe(self) -> str:
        return (f"saved a snapshot {where_text(self.position, self.point)} to {self.path} ({self.stored} bytes; "
                f"{self.pages} bytes of memory pages before compression)")


def where_text(position: str, point: str) -> str:
    """Where a snapshot was taken, in words."""
    if position == "guest":
        return f"at {point} in the guest kernel"
    if position == "handover":
        return "at the hand-over to the Python kernel"
    if point == "done":
        return "at the end of mi_startup"
    return f"before mi_startup's step {point}"


class RestoredBoot(namedtuple("RestoredBoot", "prepared machine position point handoff run")):
    """A snapshot loaded onto a machine, ready to go on (restore()) or to be inspected (the monitor)."""

    __slots__ = ()


def _host_refs(request: BootRequest) -> dict[str, object]:
    """The request's host objects by name (None ones too: a loaded reference to one becomes None)."""
    return {f"host:{name}": getattr(request, name) for name in HOST_FIELDS}


def _kernel_refs(machine: Machine, request: BootRequest, run=None) -> dict[str, object]:
    """The board's parts and the host's objects; the run's stage listener (the request's listeners
    combined, boot.stage_listener) is one too: a restore gives the run the restoring command's."""
    listener = run.on_stage if run is not None else None
    return {**machine.parts(), **_host_refs(request), "host:run.on_stage": listener}


def save(path: str | os.PathLike[str], prepared: PreparedBoot, machine: Machine, *, position: str, point: str,
         handoff=None, run=None) -> SaveReport:
    """Write the snapshot of a paused boot. KernelStateError when the kernel holds what cannot be saved."""
    request = prepared.request
    boot_payload = snapshot_state.dumps(prepared, _host_refs(request))
    kernel = {"version": KERNEL_STATE_VERSION, "position": position, "point": point, "prepared": prepared,
              "handoff": handoff, "run": run, "tap": machine.console.tap if run is not None else None}
    kernel_payload = snapshot_state.dumps(kernel, _kernel_refs(machine, request, run))
    writer = SnapshotWriter(path)
    try:
        board_snapshot.save_machine(writer, machine)
        writer.add(BOOT_SECTION, boot_payload)
        writer.add(KERNEL_SECTION, kernel_payload)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return SaveReport(os.fspath(path), point, position, os.path.getsize(path),
                      writer.sizes[board_snapshot.PAGES_SECTION][1])


def save_paused(path: str | os.PathLike[str], paused: Paused) -> SaveReport:
    position = "guest" if paused.handoff is None else "handover"
    return save(path, paused.prepared, paused.machine, position=position, point=paused.name, handoff=paused.handoff)


def save_stage(path: str | os.PathLike[str], prepared: PreparedBoot, run) -> SaveReport:
    from kernel_sim.kern.startup import STEPS

    point = STEPS[run.next_step][0] if run.next_step < len(STEPS) else "done"
    return save(path, prepared, run.machine, position="stage", point=point, handoff=run.handoff, run=run)


def stage_names() -> tuple[str, ...]:
    """mi_startup's steps; imported when saving only, so that a restore starts decompressing its
    pages before the kernel's modules load (they load while the pages decompress)."""
    from kernel_sim.kern.startup import STAGE_NAMES

    return STAGE_NAMES


def save_points() -> str:
    return f"handover, a guest kernel symbol or 0xADDR, a stage of mi_startup ({', '.join(stage_names())}) or done"


def check_save_point(prepared: PreparedBoot, point: str) -> None:
    """InputError (`--save-at`) unless `point` names a place a snapshot can be taken."""
    if point in stage_names() or point in ("done", "handover"):
        return
    if point.lstrip("/").removeprefix("etc/") in INSIDE_INIT:
        raise InputError(f"'{point}' runs inside init, in live Python frames, which no snapshot can hold; save at "
                         "init (before it) or done (after it)", "--save-at")
    try:
        boot_mod.stop_point(prepared.image, point)
    except InputError:
        raise InputError(f"unknown save point '{point}' (use {save_points()})", "--save-at") from None
    if point == "halt":
        raise InputError(f"'halt' is no save point (use {save_points()})", "--save-at")


class SavePoint:
    """`--save-at POINT FILE`: save a snapshot the first time the boot reaches POINT, and go on.

    install() hooks it into a boot (a new one, or one restored from a snapshot); finish() says so in
    the result when the boot never got there (exit status 1, as an unreached stop point)."""

    def __init__(self, prepared: PreparedBoot, point: str, path: str | os.PathLike[str], report=None) -> None:
        check_save_point(prepared, point)
        self.prepared, self.point, self.path, self.report = prepared, point, path, report
        self.saved: SaveReport | None = None

    def _keep(self, make) -> None:
        if self.saved is not None:
            return
        try:
            self.saved = make()
        except KernelStateError as exc:
            raise InputError(f"cannot save here: {exc}", f"--save-at {self.point}") from None
        except OSError as exc:
            from kernel_sim.errnos import describe_host

            raise InputError(f"cannot write the snapshot: {describe_host(exc)}", os.fspath(self.path)) from None
        if self.report is not None:
            self.report(self.saved)

    def install(self, run=None) -> None:
        """Hook into the boot's request (and into `run`, a StartupRun already under way)."""
        request, point = self.prepared.request, self.point
        if point in stage_names() or point == "done":
            inner = request.on_stage

            def on_stage(name: str, startup_run) -> None:
                if inner is not None:
                    inner(name, startup_run)
                if name == point:
                    self._keep(lambda: save_stage(self.path, self.prepared, startup_run))

            request.on_stage = on_stage
            if run is not None:
                run.on_stage = boot_mod.stage_listener(request)
        else:
            request.pause_at = point
            request.on_pause = lambda paused: self._keep(lambda: save_paused(self.path, paused))

    def finish(self, result: BootResult) -> BootResult:
        if self.saved is None and result.exit_code in (0, 1):
            result.message = (f"The save point {self.point} was never reached, so no snapshot was written; the boot "
                              f"ended in {result.stage}: {result.message}")
            if result.exit_code == 0:
                result.exit_code, result.status = 1, "unreached"
        return result


def boot_saving(prepared: PreparedBoot, point: str, path: str | os.PathLike[str], report=None,
                machine: Machine | None = None) -> BootResult:
    """Boot (on `machine` if given), saving a snapshot at `point` on the way (`report(SaveReport)`
    hears it)."""
    saver = SavePoint(prepared, point, path, report)
    saver.install()
    return saver.finish(boot_mod.run(prepared, machine))


def _reader(path: str | os.PathLike[str], deep: bool) -> SnapshotReader:
    try:
        return SnapshotReader(path, deep=deep)
    except SnapshotError as exc:
        raise InputError(str(exc), os.fspath(path)) from None
    except OSError as exc:
        from kernel_sim.errnos import describe_host

        raise InputError(f"cannot read the snapshot: {describe_host(exc)}", os.fspath(path)) from None


def _kernel_section(reader: SnapshotReader, refs: dict[str, object], where: str) -> dict:
    offset = reader.sections[KERNEL_SECTION].offset if KERNEL_SECTION in reader.sections else 0
    try:
        kernel = snapshot_state.loads(reader.read(KERNEL_SECTION), refs)
    except SnapshotError as exc:
        raise InputError(str(exc), where) from None
    except KernelStateError as exc:
        raise InputError(f"offset {offset}: {exc}", where) from None
    if not isinstance(kernel, dict) or kernel.get("version") != KERNEL_STATE_VERSION:
        version = kernel.get("version") if isinstance(kernel, dict) else None
        raise InputError(f"offset {offset}: kernel state version {version!r}; this armboard reads version "
                         f"{KERNEL_STATE_VERSION}", where)
    return kernel


def _apply_runtime(prepared: PreparedBoot, runtime: BootRequest | None) -> None:
    """The restoring run's fields on the saved request. The console's line reader only where the
    saved boot had one: whether the kernel can ask the console (the mountroot> prompt) is part of
    what it does, not of how it is run."""
    runtime = runtime if runtime is not None else BootRequest(console=None)
    had_reader = prepared.request.read_line is not None
    for name in RUNTIME_FIELDS:
        setattr(prepared.request, name, getattr(runtime, name))
    if not had_reader:
        prepared.request.read_line = None


def load(path: str | os.PathLike[str], runtime: BootRequest | None = None,
         machine: Machine | None = None) -> RestoredBoot:
    """Read a snapshot and put it on a board: a new one built as the saved boot built its own, or
    `machine` (the monitor's loadvm), which must be the same board. InputError (exit 2) for a damaged,
    foreign or mismatched file, with the file and the offset."""
    where = os.fspath(path)
    with _reader(path, deep=machine is not None) as reader:     # a running machine: every frame first
        offset = reader.sections.get(BOOT_SECTION).offset if BOOT_SECTION in reader.sections else 0
        try:
            prepared = snapshot_state.loads(reader.read(BOOT_SECTION), _host_refs(runtime or BootRequest()))
            state = board_snapshot.machine_state(reader)
        except SnapshotError as exc:
            raise InputError(str(exc), where) from None
        except KernelStateError as exc:
            raise InputError(f"offset {offset}: {exc}", where) from None
        if not isinstance(prepared, PreparedBoot):
            raise InputError(f"offset {offset}: the boot section holds no boot", where)
        _apply_runtime(prepared, runtime)
        if machine is None:
            try:
                machine = boot_mod.build_machine(prepared, load=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"the saved board cannot be built again: {exc}", where) from None
        refs = _kernel_refs(machine, prepared.request)
        try:
            kernel = board_snapshot.load_machine(reader, machine, state,
                                                 meanwhile=lambda: _kernel_section(reader, refs, where))
        except SnapshotError as exc:
            raise InputError(str(exc), where) from None
    prepared = kernel["prepared"]          # the kernel's own copy: the objects its run shares with the boot
    _apply_runtime(prepared, runtime)
    run = kernel["run"]
    if run is not None:
        run.on_stage = boot_mod.stage_listener(prepared.request)
        machine.console.tap = kernel["tap"]
    return RestoredBoot(prepared, machine, kernel["position"], kernel["point"], kernel["handoff"], run)


def position_of(result: BootResult) -> RestoredBoot:
    """Where a finished or stopped boot can be saved from (the monitor's savevm), or KernelStateError
    saying why it cannot: a guest that stopped for good (a panic, a fatal trap) has nothing to go on."""
    from kernel_sim.kern.startup import STEPS

    prepared, machine, run = result.prepared, result.machine, result.run
    if run is not None:
        point = STEPS[run.next_step][0] if run.next_step < len(STEPS) else "done"
        return RestoredBoot(prepared, machine, "stage", point, run.handoff, run)
    if result.status == "stopped":
        if result.handoff is not None:
            return RestoredBoot(prepared, machine, "handover", "handover", result.handoff, None)
        return RestoredBoot(prepared, machine, "guest", result.stage, None, None)
    if result.status == "timeout" and result.handoff is None:
        return RestoredBoot(prepared, machine, "guest", f"0x{machine.pc:08x}", None, None)
    raise KernelStateError(f"the boot ended in {result.stage} ({result.status}); there is no state to go on from")


def save_position(path: str | os.PathLike[str], where: RestoredBoot) -> SaveReport:
    return save(path, where.prepared, where.machine, position=where.position, point=where.point,
                handoff=where.handoff, run=where.run)


def resume(restored: RestoredBoot) -> BootResult:
    """Go on from a loaded snapshot as the saved boot would have gone on. A stop point the snapshot
    is already past is an InputError: no boot from it can reach it."""
    prepared, machine = restored.prepared, restored.machine
    stop_at = prepared.request.stop_at
    behind = (restored.position != "guest" and stop_at not in ("halt", "handover")) or (
        restored.position == "stage" and stop_at == "handover")
    if behind:
        raise InputError(f"the snapshot is {where_text(restored.position, restored.point)}, past this stop point: "
                         "a boot from it cannot get there", f"--stop-at {stop_at}")
    if restored.position == "guest":
        return boot_mod.run(prepared, machine, resume=True)
    if prepared.request.debugger is not None:     # start() attaches it in guest code; here no guest code runs
        prepared.request.debugger.attach(machine, prepared)
    result = BootResult(1, "failed", "handover", "", machine, prepared)
    return boot_mod._after_handover(result, restored.handoff, restored.run)


def restore(path: str | os.PathLike[str], runtime: BootRequest) -> BootResult:
    """`armboard boot --restore FILE`: load the snapshot onto a new board and boot on from it (saving
    again at runtime.pause_at / a stage, if asked)."""
    restored = load(path, runtime)
    return resume(restored)
