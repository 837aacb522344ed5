"""sysctl [-bdehiNnoqx] [-a] [name[=value] ...] (sbin/sysctl), over sysctl(2).

Output as FreeBSD's: "name: value" (-n: the value alone, -N: the name alone), a set prints
"name: old -> new". Errors: "sysctl: unknown oid 'x'" for a missing name, "sysctl: oid 'x' is read only",
"sysctl: x=1: Operation not permitted" for a user; exit 1 (-i ignores unknown names).
-d (descriptions) is refused: sysctl(2) here returns values only.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import EINVAL, EISDIR, ENOENT, EPERM, Sys, SysError, strerror
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warnx

USAGE = ("usage: sysctl [-bdehiNnoTtqx] [ -B <bufsize> ] [-f filename] name[=value] ...\n"
         "       sysctl [-bdehNnoTtqx] [ -B <bufsize> ] -a\n")


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, names = getopt(sys, "sysctl", argv[1:], "AabB:def:hiNnoqTtWXx")
    except Usage:
        say(sys, USAGE)
        return 1
    flags = {ch for ch, _ in opts}
    if "d" in flags:
        warnx(sys, "sysctl", "-d: this kernel's sysctl(2) does not return descriptions")
        return 1
    nflag, name_only, ignore, quiet = "n" in flags, "N" in flags, "i" in flags, "q" in flags
    if flags & {"a", "A", "X", "o"} and not names:
        names = [""]
    if not names:
        say(sys, USAGE)
        return 1
    status = 0
    for arg in names:
        name, eq, value = arg.partition("=")
        try:
            if eq:
                old = sys.sysctl(name, value)
                new = sys.sysctl(name)
                if not quiet:
                    shown = [] if nflag else [f"{name}: "]
                    out(sys, "".join(shown) + f"{old[0][1]} -> {new[0][1]}\n")
                continue
            rows = sys.sysctl(name)
        except SysError as exc:
            if exc.errno == ENOENT:
                if not ignore:
                    if not quiet:
                        warnx(sys, "sysctl", f"unknown oid '{name}'")
                    status = 1
            elif exc.errno == EPERM and eq and sys.uid == 0:
                warnx(sys, "sysctl", f"oid '{name}' is read only")
                status = 1
            elif exc.errno == EISDIR and eq:
                warnx(sys, "sysctl", f"oid '{name}' isn't a leaf node")
                status = 1
            elif exc.errno == EINVAL and eq:
                warnx(sys, "sysctl", f"{name}={value}: {strerror(EINVAL)}")
                status = 1
            else:
                warnx(sys, "sysctl", f"{arg}: {strerror(exc.errno)}")
                status = 1
            continue
        lines = []
        for oid, val in rows:
            if name_only:
                lines.append(f"{oid}\n")
            elif nflag:
                lines.append(f"{val}\n")
            else:
                lines.append(f"{oid}: {val}\n")
        out(sys, "".join(lines))
    return status
