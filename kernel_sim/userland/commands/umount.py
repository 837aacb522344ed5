"""umount [-f] node | special (sbin/umount): unmount(2) by mount point or by special file.

Errors as umount(8)'s: "umount: /x: not a file system root directory" for a path that is not mounted,
"umount: unmount of /tmp failed: Device busy" when unmount(2) refuses, exit 1.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, realpath, say, warn, warnx

USAGE = ("usage: umount [-fNnv] special ... | node ... | fsid ...\n"
         "       umount -a | -A [-F fstab] [-fnv] [-h host] [-t type]\n")


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, args = getopt(sys, "umount", argv[1:], "AaF:fh:Nnt:v")
    except Usage:
        say(sys, USAGE)
        return 1
    force = any(ch == "f" for ch, _ in opts)
    if not args:
        say(sys, USAGE)
        return 1
    status = 0
    for name in args:
        node = _mount_point(sys, name)
        if node is None:
            status = 1
            continue
        try:
            sys.unmount(node, force)
        except SysError as exc:
            warn(sys, "umount", f"unmount of {node} failed", exc)
            status = 1
    return status


def _mount_point(sys: Sys, name: str) -> str | None:
    try:
        mounts = sys.getfsstat()
    except SysError as exc:
        warn(sys, "umount", "getmntinfo", exc)
        return None
    for fs in reversed(mounts):                    # the newest mount at a path is the one on top
        if fs.mntfromname == name:
            return fs.mntonname
    try:
        path = realpath(sys, name)
    except SysError as exc:
        warn(sys, "umount", name, exc)
        return None
    if any(fs.mntonname == path for fs in mounts):
        return path
    warnx(sys, "umount", f"{name}: not a file system root directory")
    return None
