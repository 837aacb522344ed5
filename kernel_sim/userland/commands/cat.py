"""cat [-u] [file ...]: files (or standard input, also for "-") to standard output.

Errors as FreeBSD's cat: "cat: /nope: No such file or directory", the other files still copied, exit 1.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import O_RDONLY, Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, say, warn, write_all

CHUNK = 65536


def main(sys: Sys, argv: list[str]) -> int:
    try:
        _opts, files = getopt(sys, "cat", argv[1:], "belnstuv")
    except Usage:
        say(sys, "usage: cat [-belnstuv] [file ...]\n")
        return 1
    status = 0
    for name in files or ["-"]:
        try:
            fd = 0 if name == "-" else sys.open(name, O_RDONLY)
        except SysError as exc:
            warn(sys, "cat", name, exc)
            status = 1
            continue
        try:
            while data := sys.read(fd, CHUNK):
                write_all(sys, 1, data)
        except SysError as exc:
            warn(sys, "cat", "stdout" if exc.errno not in (21, 5, 97) else name, exc)
            status = 1
        finally:
            if fd != 0:
                sys.close(fd)
    return status
