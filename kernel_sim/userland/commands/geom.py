"""geom [CLASS] list [name ...] (sbin/geom): the GEOM classes' geoms, providers and consumers.

`geom md list`, `geom map list`, or `geom list` for every class. The text is the kernel's (the same
walk `kern.geom.confxml` comes from). Errors: "geom: Class 'X' not found.", exit 1.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError
from kernel_sim.userland.commands._util import out, say, warnx

USAGE = "usage: geom [CLASS] list [name ...]\n"


def main(sys: Sys, argv: list[str]) -> int:
    args = argv[1:]
    if not args:
        say(sys, USAGE)
        return 1
    if args[0] == "list":
        cls, names = None, args[1:]
    elif len(args) >= 2 and args[1] == "list":
        cls, names = args[0], args[2:]
    else:
        say(sys, USAGE)
        return 1
    try:
        text = sys.geom_list(cls.upper() if cls else None)
    except SysError:
        warnx(sys, "geom", f"Class '{cls}' not found.")
        return 1
    if names:
        blocks = [b for b in text.split("\n\n") if any(b.startswith(f"Geom name: {n}\n") for n in names)]
        missing = [n for n in names if not any(b.startswith(f"Geom name: {n}\n") for b in blocks)]
        if missing:
            warnx(sys, "geom", f"No such geom: {missing[0]}.")
            return 1
        text = "".join(b + "\n\n" for b in blocks)
    out(sys, text)
    return 0
