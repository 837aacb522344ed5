"""kenv [-hNq] | kenv [-q] variable[=value] | kenv [-q] -u variable (bin/kenv), over kenv(2).

No arguments: every variable as `name="value"`; a name: its value; name=value sets it and prints
`name="value"`; -u unsets. Errors: "kenv: unable to get name" (also "unable to set", "unable to
unset"), exit 1; -q keeps them quiet.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warnx

USAGE = ("usage: kenv [-l|-s] [-hNq]\n"
         "       kenv [-q] variable[=value]\n"
         "       kenv [-q] -u variable\n")


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, args = getopt(sys, "kenv", argv[1:], "hlNqsu")
    except Usage:
        say(sys, USAGE)
        return 1
    flags = {ch for ch, _ in opts}
    quiet, unset, names_only = "q" in flags, "u" in flags, "N" in flags
    if len(args) > 1 or (unset and not args):
        say(sys, USAGE)
        return 1
    if not args:
        try:
            rows = sys.kenv()
        except SysError as exc:
            warnx(sys, "kenv", f"unable to get kenv: {exc}")
            return 1
        out(sys, "".join(f"{n}\n" if names_only else f'{n}="{v}"\n' for n, v in rows))
        return 0
    name, eq, value = args[0].partition("=")
    if unset:
        try:
            sys.kenv(name, unset=True)
        except SysError:
            if not quiet:
                warnx(sys, "kenv", f"unable to unset {name}")
            return 1
        return 0
    if eq:
        try:
            sys.kenv(name, value)
        except SysError:
            if not quiet:
                warnx(sys, "kenv", f"unable to set {name} to {value}")
            return 1
        if not quiet:
            out(sys, f'{name}="{value}"\n')
        return 0
    try:
        rows = sys.kenv(name)
    except SysError:
        if not quiet:
            warnx(sys, "kenv", f"unable to get {name}")
        return 1
    out(sys, f"{rows[0][1]}\n")
    return 0
