"""pwd: the working directory (also an sh builtin)."""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError, strerror


def main(sys: Sys, argv: list[str]) -> int:
    try:
        cwd = sys.getcwd()
    except SysError as exc:
        sys.write(2, f"pwd: {strerror(exc.errno)}\n".encode())
        return 1
    sys.write(1, f"{cwd}\n".encode("utf-8", "surrogateescape"))
    return 0
