"""The monitor's `timeline [FILE.json|FILE.svg]`: the boot timeline recorded for this boot (tools/timeline.py).

A timeline is recorded only when it is asked for before the boot (`--timeline FILE`, `--report`, or a
`-x timeline` command): counting instructions needs a hook from the first one, so an interactive
monitor that was not told before cannot make one afterwards and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from tools.monitor_errors import CommandRefused, MonitorError

__all__ = ["COMMANDS", "add_timeline_commands"]


def timeline_command(monitor: Any, args: list[str]) -> None:
    timeline = getattr(monitor, "timeline", None)
    if len(args) > 1:
        raise MonitorError("usage: timeline [FILE.json|FILE.svg|FILE.png]")
    if timeline is None:
        raise CommandRefused("timeline: no timeline was recorded for this boot; boot with --timeline FILE or "
                             "-x timeline to record one")
    if not args:
        monitor.out.write(timeline.text())
        return
    from kernel_sim.errors import InputError
    from tools.timeline import write_timeline

    try:
        write_timeline(timeline, args[0], "timeline")
    except InputError as exc:
        raise MonitorError(str(exc)) from None
    monitor.out.write(f"timeline written to {args[0]}\n")


COMMANDS: dict[str, Callable[[Any, list[str]], None]] = {"timeline": timeline_command}


def add_timeline_commands(monitor: Any, timeline) -> None:
    monitor.timeline = timeline
    for name, fn in COMMANDS.items():
        monitor.commands[name] = partial(fn, monitor)
