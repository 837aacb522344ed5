"""Users and groups from /etc/passwd and /etc/group, as getpwuid(3)/getgrgid(3) read them.

Why files and not a database: the guest has no pwd.db; the flat files are what the image ships, and
a missing or unreadable file simply means numbers are shown.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError
from kernel_sim.userland.commands._util import read_path


def _entries(sys: Sys, path: str) -> list[list[str]]:
    try:
        text = read_path(sys, path).decode("utf-8", "replace")
    except SysError:
        return []
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            fields = line.split(":")
            if len(fields) >= 3 and fields[2].lstrip("-").isdigit():
                rows.append(fields)
    return rows


def user_names(sys: Sys) -> dict[int, str]:
    names: dict[int, str] = {}
    for f in _entries(sys, "/etc/passwd"):
        names.setdefault(int(f[2]), f[0])
    return names


def group_names(sys: Sys) -> dict[int, str]:
    names: dict[int, str] = {}
    for f in _entries(sys, "/etc/group"):
        names.setdefault(int(f[2]), f[0])
    return names


def passwd_entry(sys: Sys, user: str) -> tuple[int, int, str, str] | None:
    """getpwnam(3): (uid, gid, home, shell), also for a numeric uid; None when unknown."""
    for f in _entries(sys, "/etc/passwd"):
        if f[0] == user or (user.isdigit() and int(f[2]) == int(user)):
            gid = int(f[3]) if len(f) > 3 and f[3].isdigit() else 0
            return int(f[2]), gid, f[5] if len(f) > 5 else "/", f[6] if len(f) > 6 else "/bin/sh"
    return None
