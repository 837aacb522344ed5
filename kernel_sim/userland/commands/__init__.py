"""The guest's commands: name -> module, each module with `main(sys, argv) -> int`.

Why a registry of module paths: the guest's /bin and /sbin hold no executables, so the shell finds a
command here by name (or by the basename of /bin/NAME, /sbin/NAME, ...), and a module is imported only
when the command first runs, as exec would load only the program it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernel_sim.kern.sysapi import Sys

_PKG = "kernel_sim.userland.commands"

COMMANDS: dict[str, str] = {
    "[": f"{_PKG}.test",
    "cat": f"{_PKG}.cat",
    "cp": f"{_PKG}.cp",
    "dd": f"{_PKG}.dd",
    "df": f"{_PKG}.df",
    "echo": f"{_PKG}.echo",
    "false": f"{_PKG}.truefalse",
    "geom": f"{_PKG}.geom",
    "halt": f"{_PKG}.reboot",
    "kenv": f"{_PKG}.kenv",
    "ls": f"{_PKG}.ls",
    "mdconfig": f"{_PKG}.mdconfig",
    "memctl": f"{_PKG}.memctl",
    "mkdir": f"{_PKG}.mkdir",
    "mount": f"{_PKG}.mount",
    "poweroff": f"{_PKG}.reboot",
    "pwd": f"{_PKG}.pwd",
    "reboot": f"{_PKG}.reboot",
    "rm": f"{_PKG}.rm",
    "sh": f"{_PKG}.sh",
    "sha256": f"{_PKG}.sha256",
    "sleep": f"{_PKG}.sleep",
    "su": f"{_PKG}.su",
    "sysctl": f"{_PKG}.sysctl",
    "test": f"{_PKG}.test",
    "touch": f"{_PKG}.touch",
    "true": f"{_PKG}.truefalse",
    "umount": f"{_PKG}.umount",
    "uname": f"{_PKG}.uname",
}


def load(name: str) -> Callable[[Sys, list[str]], int]:
    """The command's main(); ImportError when its module is registered but not written yet."""
    return importlib.import_module(COMMANDS[name]).main
