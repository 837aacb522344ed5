"""sleep seconds (bin/sleep): virtual time, fractions allowed; "usage: sleep number[unit] [...]" else."""

from __future__ import annotations

import re

from kernel_sim.kern.sysapi import Sys, SysError
from kernel_sim.userland.commands._util import say, warn, warnx

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def main(sys: Sys, argv: list[str]) -> int:
    if len(argv) < 2:
        say(sys, "usage: sleep number[unit] [...]\nUnit can be 's' (seconds, the default), m (minutes), "
                 "h (hours), or d (days).\n")
        return 1
    total = 0.0
    for arg in argv[1:]:
        m = re.fullmatch(r"([0-9]*\.?[0-9]+|[0-9]+\.)([smhd]?)", arg)
        if not m:
            warnx(sys, "sleep", f"invalid time interval: {arg}")
            return 1
        total += float(m.group(1)) * _UNITS[m.group(2)]
    try:
        sys.sleep(total)
    except SysError as exc:
        warn(sys, "sleep", "nanosleep", exc)
        return 1
    return 0
