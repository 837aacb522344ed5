"""Monitor commands for snapshots, as QEMU's savevm and loadvm:

    savevm NAME    save the stopped boot: board, and the Python kernel from the hand-over on
    loadvm NAME    put a snapshot back on this board (the same board: type, RAM, flash files) and
                   show it: info registers, x, sysctl, ls, ... then answer for the loaded state
    snapshots      the names in the snapshot directory

NAME is a file path when it holds a '/' (./boot.snap, /tmp/a.snap); otherwise it is a name in the
snapshot directory, $ARMBOARD_SNAPSHOT_DIR or $XDG_CACHE_HOME/armboard/snapshots (by default
~/.cache/armboard/snapshots), as NAME.snap. QEMU keeps its snapshots inside the qcow2 disk image;
armboard's board has no such disk, so they are files. Both commands say which file they used.

To run on from a snapshot: `armboard boot --restore FILE`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tools.monitor_errors import CommandRefused, MonitorError

__all__ = ["COMMANDS", "snapshot_dir", "snapshot_path"]
SUFFIX = ".snap"


def snapshot_dir() -> str:
    explicit = os.environ.get("ARMBOARD_SNAPSHOT_DIR")
    if explicit:
        return explicit
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "armboard", "snapshots")


def snapshot_path(name: str, *, create: bool = False) -> str:
    """A path as given, or NAME.snap in the snapshot directory (made when saving)."""
    if "/" in name or os.sep in name:
        return name
    if not name or name.startswith(".") or any(c.isspace() for c in name):
        raise MonitorError(f"'{name}' is not a snapshot name (letters, digits, -, _ and .; or a path with a /)")
    directory = snapshot_dir()
    if create:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise MonitorError(f"{directory}: cannot make the snapshot directory: {exc.strerror}") from None
    return os.path.join(directory, name if name.endswith(SUFFIX) else name + SUFFIX)


def _name(args: list[str], usage: str) -> str:
    if len(args) != 1:
        raise MonitorError(usage)
    return args[0]


def savevm_command(monitor: Any, args: list[str]) -> None:
    """`savevm NAME`: the boot as it stopped (at a stop point, a breakpoint or stage the monitor's
    stepping paused at, the hand-over, the end of mi_startup)."""
    from kernel_sim import boot_snapshot
    from kernel_sim.errnos import describe_host
    from kernel_sim.kern.snapshot_state import KernelStateError

    path = snapshot_path(_name(args, "usage: savevm NAME (a name in the snapshot directory, or a path)"),
                         create=True)
    where = getattr(monitor, "snapshot_position", None)
    try:
        paused = getattr(monitor, "paused_at", None)     # the monitor session's, while the boot waits
        if where is None and paused is not None:
            where = boot_snapshot.RestoredBoot(*paused)
        if where is None:
            result = getattr(monitor, "boot_result", None)
            if result is None:
                raise CommandRefused("savevm: this monitor has no boot to save")
            where = boot_snapshot.position_of(result)
        saved = boot_snapshot.save_position(path, where)
    except KernelStateError as exc:
        raise CommandRefused(f"savevm: {exc}") from None
    except OSError as exc:
        raise MonitorError(f"{path}: cannot write the snapshot: {describe_host(exc)}") from None
    monitor.out.write(f"savevm: {saved.describe()}\n")


def loadvm_command(monitor: Any, args: list[str]) -> None:
    """`loadvm NAME`: this board becomes the saved one, and the monitor shows the loaded kernel."""
    from kernel_sim import boot_snapshot
    from kernel_sim.errors import InputError

    path = snapshot_path(_name(args, "usage: loadvm NAME (a name in the snapshot directory, or a path)"))
    if getattr(monitor, "paused_at", None) is not None:
        raise CommandRefused("loadvm: the boot is paused, not ended: its run would go on from a board it did not "
                             "build; load a snapshot with --restore, or after the boot has ended")
    result = getattr(monitor, "boot_result", None)
    runtime = result.prepared.request if result is not None else None
    try:
        restored = boot_snapshot.load(path, runtime, machine=monitor.machine)
    except InputError as exc:
        raise CommandRefused(f"loadvm: {exc}") from None
    startup = restored.run.s if restored.run is not None else None
    monitor.snapshot_position = restored
    monitor.startup = startup
    monitor.sysctl = startup.sysctl if startup is not None else None
    monitor.geom = startup.geom if startup is not None else None
    monitor.vfs = startup.vfs if startup is not None else None
    monitor.mem_devices = getattr(startup, "mem_devices", None)
    where = boot_snapshot.where_text(restored.position, restored.point)
    monitor.out.write(f"loadvm: loaded {path}, a snapshot {where} (pc 0x{monitor.machine.pc:08x})\n")


def snapshots_command(monitor: Any, args: list[str]) -> None:
    """`snapshots`: the snapshot directory's names, sizes and save points."""
    directory = snapshot_dir()
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise MonitorError(f"{directory}: cannot list it: {exc.strerror}") from None
    monitor.out.write(f"snapshots in {directory}: {len(names)}\n")
    for name in names:
        size = os.path.getsize(os.path.join(directory, name))
        monitor.out.write(f"  {name[:-len(SUFFIX)]:<24} {size:>12} bytes\n")


COMMANDS: dict[str, Callable[[Any, list[str]], None]] = {
    "savevm": savevm_command,
    "loadvm": loadvm_command,
    "snapshots": snapshots_command,
}
