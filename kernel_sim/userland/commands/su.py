"""su [-m] [-] login [args] (usr.bin/su): run a shell as another user; root needs no password.

The shell runs in a child spawned with the user's uid (from /etc/passwd): `su operator -c 'id'` is
`sh -c id` as uid 2. Without -m an account whose shell is nologin gets nologin's "This account is
currently not available." A user other than root cannot authenticate here and gets "su: Sorry"
(status 1), as a wrong password gives.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError, strerror
from kernel_sim.userland.commands._util import Usage, getopt, say, warnx
from kernel_sim.userland.commands.ids import passwd_entry

USAGE = "usage: su [-] [-flms] [-c class] [login [args]]\n"


def main(sys: Sys, argv: list[str]) -> int:
    args = argv[1:]
    if args and args[0] == "-":
        args = args[1:]
    try:
        opts, args = getopt(sys, "su", args, "flmsC:")
    except Usage:
        say(sys, USAGE)
        return 1
    keep_shell = any(ch == "m" for ch, _ in opts)
    if args and args[0] == "-":
        args = args[1:]
    user = args[0] if args else "root"
    shell_args = args[1:]
    entry = passwd_entry(sys, user)
    if entry is None:
        warnx(sys, "su", f"unknown login: {user}")
        return 1
    uid, _gid, _home, shell = entry
    if sys.uid != 0 and uid != sys.uid:
        warnx(sys, "su", "Sorry")
        return 1
    if not keep_shell and shell.rsplit("/", 1)[-1] == "nologin":
        say(sys, "This account is currently not available.\n", fd=1)
        return 1
    try:
        child = sys.spawn_kstack("sh", uid=uid)
    except SysError as exc:
        warnx(sys, "su", f"fork: {strerror(exc.errno)}")
        return 1
    status = 1
    try:
        from kernel_sim.userland.commands import sh

        status = sh.main(child, ["sh", *shell_args])
    finally:
        child.exit(status)
    return status
