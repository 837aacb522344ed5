"""`armboard boot --save-at POINT FILE` and `--restore FILE`: the command line over kernel_sim/boot_snapshot.py.

Loaded only when one of the two is given: a plain boot never imports the snapshot code.
"""

from __future__ import annotations

import sys

from kernel_sim import boot_snapshot
from kernel_sim.boot import BootRequest, BootResult
from kernel_sim.errors import InputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from board.machine import Machine
    from kernel_sim.boot import PreparedBoot

# What a restore takes from the snapshot, not from the command line: the board and kernel
# configuration (add_config_arguments) and what the kernel was asked to do.
CONFIG_OPTIONS = {
    "board": "--board", "kernconf": "--kernconf", "overrides": "-o", "loader_conf": "--loader-conf",
    "no_loader_conf": "--no-loader-conf", "hints": "--hints", "mfsroot": "--mfsroot", "md_images": "--md-image",
    "md_vnodes": "--md-vnode", "physmem": "--physmem", "kernel": "--kernel", "kernel_footprint": "--kernel-footprint",
    "flash": "--flash", "bootverbose": "-v", "abi": "--abi", "mmu": "--mmu", "shell": "--shell",
    "guest_command": "-c", "swap": "--swap",
}


def _check_no_config(args: argparse.Namespace, defaults: dict[str, object]) -> None:
    for dest, flag in CONFIG_OPTIONS.items():
        if getattr(args, dest, None) != defaults.get(dest):
            raise InputError(f"the board and kernel configuration come from the snapshot; {flag} cannot be given "
                             "with it", f"--restore {args.restore}")


def _report(saved: boot_snapshot.SaveReport) -> None:
    sys.stdout.flush()
    print(f"armboard: {saved.describe()}", file=sys.stderr)


def load(args: argparse.Namespace, request: BootRequest, defaults: dict[str, object]) -> boot_snapshot.RestoredBoot:
    """`--restore FILE` loaded onto a new board; the command line gives the run (console, time limit,
    stop point, the terminal as the console's input). `defaults`: `armboard boot`'s option defaults,
    to tell which configuration options were given."""
    _check_no_config(args, defaults)
    runtime = BootRequest(console=request.console, timeout=request.timeout, stop_at=request.stop_at,
                          read_line=sys.stdin.readline, debugger=request.debugger)
    return boot_snapshot.load(args.restore, runtime)


def run(args: argparse.Namespace, prepared: PreparedBoot | None, machine: Machine | None,
        restored: boot_snapshot.RestoredBoot | None) -> BootResult:
    """The boot `armboard boot` asked for, from `restored` or from `prepared` (on `machine`, when the
    caller built it), with its save point if any."""
    point, path = args.save_at if args.save_at else (None, None)
    if restored is None:
        return boot_snapshot.boot_saving(prepared, point, path, _report, machine=machine)
    saver = None
    if point is not None:
        saver = boot_snapshot.SavePoint(restored.prepared, point, path, _report)
        saver.install(restored.run)
    result = boot_snapshot.resume(restored)
    return saver.finish(result) if saver is not None else result
