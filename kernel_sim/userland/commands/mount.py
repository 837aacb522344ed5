"""mount [-t type] [-o options] [-u] [-r | -w] special node, and mount alone (sbin/mount).

Without arguments it lists the mounted file systems as FreeBSD's mount does:
"/dev/md0 on / (ufs, local, read-only)". A mount goes to nmount(2) with the options as name/value
pairs ("from" is the special file, -o size=32m,mode=1777 become "size" and "mode", -r "ro", -w "rw",
-u "update"). Errors as mount(8)'s warn: "mount: tmpfs: Operation not permitted", exit 1.
There is no /etc/fstab processing (mount -a, mount NODE).
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import StatFs, Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warn, warnx

USAGE = ("usage: mount [-adflpruvw] [-F fstab] [-o options] [-t ufs | external_type]\n"
         "       mount [-dfpruvw] special | node\n"
         "       mount [-dfpruvw] [-o options] [-t ufs | external_type] special node\n")


def describe(fs: StatFs) -> str:
    return f"{fs.mntfromname} on {fs.mntonname} ({', '.join((fs.fstypename, *fs.flags))})"


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, args = getopt(sys, "mount", argv[1:], "adF:flo:prt:uvw")
    except Usage:
        say(sys, USAGE)
        return 1
    fstype = "ufs"
    options: dict[str, str] = {}
    for ch, arg in opts:
        if ch == "t":
            fstype = arg
        elif ch == "o":
            for item in filter(None, arg.split(",")):
                name, eq, value = item.partition("=")
                options[name] = value if eq else ""
        elif ch == "r":
            options.pop("rw", None)
            options["ro"] = ""
        elif ch == "w":
            options.pop("ro", None)
            options["rw"] = ""
        elif ch == "u":
            options["update"] = ""
        elif ch in "a":
            warnx(sys, "mount", "-a: there is no /etc/fstab processing here")
            return 1
    if not args:
        try:
            mounts = sys.getfsstat()
        except SysError as exc:
            warn(sys, "mount", "getmntinfo", exc)
            return 1
        out(sys, "".join(describe(fs) + "\n" for fs in mounts))
        return 0
    if len(args) == 1:
        if "update" in options:
            return _update(sys, args[0], options)
        warnx(sys, "mount", f"{args[0]}: unknown special file or file system")
        return 1
    if len(args) != 2:
        say(sys, USAGE)
        return 1
    special, node = args
    options["from"] = special
    if fstype == "cd9660" and "rw" not in options:
        options["ro"] = ""              # sbin/mount_cd9660: a CD is mounted read-only (MNT_RDONLY)
    try:
        sys.mount(fstype, node, options)
    except SysError as exc:
        warn(sys, "mount", special, exc)
        return 1
    return 0


def _update(sys: Sys, node: str, options: dict[str, str]) -> int:
    """mount -u NODE: the mounted file system's own type and source."""
    try:
        fs = sys.statfs(node)
    except SysError as exc:
        warn(sys, "mount", node, exc)
        return 1
    options["from"] = fs.mntfromname
    try:
        sys.mount(fs.fstypename, fs.mntonname, options)
    except SysError as exc:
        warn(sys, "mount", fs.mntfromname, exc)
        return 1
    return 0
