"""sh [-ex] [-c string | file [arg ...]]: a new shell in the child process (`sh /etc/rc.local`).

Without a file or -c it runs what standard input holds (`echo ls | sh`); it is never interactive here:
init starts the console shell through Shell.interact.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys
from kernel_sim.userland.sh import Shell, run_file


def main(sys: Sys, argv: list[str]) -> int:
    errexit = xtrace = False
    command: str | None = None
    args = argv[1:]
    while args and args[0].startswith(("-", "+")) and args[0] not in ("-", "--", "+"):
        flags, args = args[0], args[1:]
        for ch in flags[1:]:
            if ch == "e":
                errexit = flags[0] == "-"
            elif ch == "x":
                xtrace = flags[0] == "-"
            elif ch == "c":
                if not args:
                    sys.write(2, b"sh: -c: option requires an argument\n")
                    return 2
                command, args = args[0], args[1:]
            else:
                sys.write(2, f"sh: Illegal option -{ch}\n".encode())
                return 2
    if args and args[0] in ("-", "--"):
        args = args[1:]
    if command is not None:
        shell = Shell(sys, args[0] if args else "sh", args[1:])
        shell.commandname = None
        shell.errexit, shell.xtrace = errexit, xtrace
        return shell.run_script(command)
    if not args:                                  # commands from standard input
        chunks = []
        while chunk := sys.read(0, 65536):
            chunks.append(chunk)
        shell = Shell(sys, "sh")
        shell.commandname = None
        shell.errexit, shell.xtrace = errexit, xtrace
        return shell.run_script(b"".join(chunks).decode("utf-8", "surrogateescape"))
    return run_file(sys, args[0], args[1:], errexit=errexit, xtrace=xtrace)
