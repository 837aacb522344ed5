"""rm [-f] [-r|-R] [-d] [-v] file ... (bin/rm): -r removes directories and what they hold (depth
first, as fts does), -f hides missing files and never complains about its arguments. Errors as FreeBSD's:
"rm: x: No such file or directory", "rm: d: is a directory", exit 1."""

from __future__ import annotations

from kernel_sim.kern.sysapi import ENOENT, S_IFDIR, S_IFMT, Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warn, warnx

USAGE = "usage: rm [-f | -i] [-dIPRrvWx] file ...\n       unlink [-h] file\n"


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, files = getopt(sys, "rm", argv[1:], "dfiIPRrvWxh")
    except Usage:
        say(sys, USAGE)
        return 1
    flags = {ch for ch, _ in opts}
    force = "f" in flags
    recurse = bool(flags & {"r", "R"})
    rmdirs = "d" in flags
    verbose = "v" in flags
    if not files:
        if force:
            return 0
        say(sys, USAGE)
        return 1
    status = 0
    for name in files:
        base = name.rstrip("/").rsplit("/", 1)[-1]
        if base in (".", ".."):
            warnx(sys, "rm", '"." and ".." may not be removed')
            status = 1
            continue
        if name.strip("/") == "" and name:
            warnx(sys, "rm", '"/" may not be removed')
            status = 1
            continue
        try:
            st = sys.lstat(name)
        except SysError as exc:
            if not (force and exc.errno == ENOENT):
                warn(sys, "rm", name, exc)
                status = 1
            continue
        if st.mode & S_IFMT == S_IFDIR:
            if recurse:
                status |= _rm_tree(sys, name, force, verbose)
                continue
            if not rmdirs:
                warnx(sys, "rm", f"{name}: is a directory")
                status = 1
                continue
            remove = sys.rmdir
        else:
            remove = sys.unlink
        try:
            remove(name)
            if verbose:
                out(sys, name + "\n")
        except SysError as exc:
            warn(sys, "rm", name, exc)
            status = 1
    return status


def _rm_tree(sys: Sys, path: str, force: bool, verbose: bool) -> int:
    status = 0
    try:
        names = [n for n in sys.readdir(path) if n not in (".", "..")]
    except SysError as exc:
        warn(sys, "rm", path, exc)
        return 1
    for n in names:
        child = path.rstrip("/") + "/" + n
        try:
            st = sys.lstat(child)
            if st.mode & S_IFMT == S_IFDIR:
                status |= _rm_tree(sys, child, force, verbose)
                continue
            sys.unlink(child)
            if verbose:
                out(sys, child + "\n")
        except SysError as exc:
            warn(sys, "rm", child, exc)
            status = 1
    try:
        sys.rmdir(path)
        if verbose:
            out(sys, path + "\n")
    except SysError as exc:
        warn(sys, "rm", path, exc)
        status = 1
    return status
