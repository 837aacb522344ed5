"""What sh(1) and its builtins share: the control-flow exceptions, `set -x` quoting, reading a script.

Why apart from sh.py: the builtins (builtins.py) raise these and sh catches them; with them here sh
imports the builtins and the builtins never import sh, so the dependency runs one way.
"""

from __future__ import annotations

import re

from kernel_sim.kern.sysapi import Sys
from kernel_sim.userland.commands._util import read_path

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+\Z")


class ShellExit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class ShellError(Exception):
    """error() in FreeBSD's sh: a message after the shell's (or the builtin's) name; status 2."""

    def __init__(self, message: str, prefix: str | None = None, status: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.prefix = prefix
        self.status = status


class LoopControl(Exception):
    """`break N` / `continue N` on their way out through N loops."""

    def __init__(self, kind: str, count: int) -> None:
        self.kind = kind
        self.count = count


class FuncReturn(Exception):
    """`return N` on its way out of a function or a `.` file."""

    def __init__(self, status: int) -> None:
        self.status = status


def quote(text: str) -> str:
    """A word as `set -x` and `set` print it: bare when safe, else in single quotes."""
    if _SAFE.match(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def read_file(sys: Sys, path: str) -> str:
    """A whole file through the descriptor calls (scripts are read this way)."""
    return read_path(sys, path).decode("utf-8", "surrogateescape")
