"""mkdir [-pv] [-m mode] directory ... (bin/mkdir): -p makes the missing parents and accepts existing
directories; errors as "mkdir: /x/y: No such file or directory", exit 1."""

from __future__ import annotations

from kernel_sim.kern.sysapi import EEXIST, S_IFDIR, S_IFMT, Sys, SysError
from kernel_sim.userland.commands._util import UMASK, Usage, getopt, out, say, warn, warnx

USAGE = "usage: mkdir [-pv] [-m mode] directory_name ...\n"


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, dirs = getopt(sys, "mkdir", argv[1:], "m:pv")
    except Usage:
        say(sys, USAGE)
        return 1
    mode = 0o777
    parents = verbose = False
    for ch, arg in opts:
        if ch == "p":
            parents = True
        elif ch == "v":
            verbose = True
        else:
            try:
                mode = int(arg, 8)
            except ValueError:
                warnx(sys, "mkdir", f"invalid file mode: {arg}")
                return 1
    if not dirs:
        say(sys, USAGE)
        return 1
    status = 0
    for d in dirs:
        try:
            if parents:
                _mkdir_p(sys, d, mode, verbose)
            else:
                sys.mkdir(d, mode & ~UMASK)
                if verbose:
                    out(sys, d + "\n")
        except SysError as exc:
            warn(sys, "mkdir", d, exc)
            status = 1
    return status


def _mkdir_p(sys: Sys, path: str, mode: int, verbose: bool) -> None:
    """build() in mkdir.c: every component in turn, existing directories are fine."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if not sub or sub.endswith("/") or parts[i - 1] in ("", "."):
            continue
        try:
            sys.mkdir(sub, (mode if i == len(parts) else 0o777) & ~UMASK)
            if verbose:
                out(sys, sub + "\n")
        except SysError as exc:
            if exc.errno != EEXIST:
                raise
            if sys.stat(sub).mode & S_IFMT != S_IFDIR:
                raise
