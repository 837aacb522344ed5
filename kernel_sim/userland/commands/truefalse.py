"""true and false: exit 0 and exit 1, whatever the arguments."""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys


def main(sys: Sys, argv: list[str]) -> int:
    return 1 if argv[0].rsplit("/", 1)[-1] == "false" else 0
