"""cp [-R] [-f] [-p] [-v] source target / source ... directory (bin/cp).

Contents are copied in 64 KiB reads; a new file gets the source's permission bits. -R copies
directories (symlinks as symlinks). Errors as FreeBSD's: "cp: /nope: No such file or directory",
"cp: d is a directory (not copied).", "cp: a and a are identical (not copied).", exit 1.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import (
    EEXIST,
    ENOENT,
    O_CREAT,
    O_RDONLY,
    O_TRUNC,
    O_WRONLY,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    Sys,
    SysError,
)
from kernel_sim.userland.commands._util import UMASK, Usage, getopt, out, say, warn, warnx, write_all

USAGE = ("usage: cp [-R [-H | -L | -P]] [-f | -i | -n] [-alpsvx] source_file target_file\n"
         "       cp [-R [-H | -L | -P]] [-f | -i | -n] [-alpsvx] source_file ... target_directory\n")
CHUNK = 65536


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, args = getopt(sys, "cp", argv[1:], "HLPRafilnprsvx")
    except Usage:
        say(sys, USAGE)
        return 1
    flags = {ch for ch, _ in opts}
    recurse = bool(flags & {"R", "r", "a"})
    verbose = "v" in flags
    if len(args) < 2:
        say(sys, USAGE)
        return 1
    *sources, target = args
    target_is_dir = _is_dir(sys, target)
    if len(sources) > 1 and not target_is_dir:
        warnx(sys, "cp", f"{target} is not a directory")
        return 1
    status = 0
    for src in sources:
        dst = target.rstrip("/") + "/" + src.rstrip("/").rsplit("/", 1)[-1] if target_is_dir else target
        status |= _copy(sys, src, dst, recurse, verbose)
    return status


def _is_dir(sys: Sys, path: str) -> bool:
    try:
        return sys.stat(path).mode & S_IFMT == S_IFDIR
    except SysError:
        return False


def _copy(sys: Sys, src: str, dst: str, recurse: bool, verbose: bool) -> int:
    try:
        st = sys.lstat(src) if recurse else sys.stat(src)
    except SysError as exc:
        warn(sys, "cp", src, exc)
        return 1
    kind = st.mode & S_IFMT
    if kind == S_IFDIR:
        if not recurse:
            warnx(sys, "cp", f"{src} is a directory (not copied).")
            return 1
        try:
            sys.mkdir(dst, st.mode & 0o7777 & ~UMASK)
        except SysError as exc:
            if exc.errno != EEXIST or not _is_dir(sys, dst):
                warn(sys, "cp", dst, exc)
                return 1
        if verbose:
            out(sys, f"{src} -> {dst}\n")
        status = 0
        try:
            names = [n for n in sys.readdir(src) if n not in (".", "..")]
        except SysError as exc:
            warn(sys, "cp", src, exc)
            return 1
        for n in names:
            status |= _copy(sys, src.rstrip("/") + "/" + n, dst.rstrip("/") + "/" + n, recurse, verbose)
        return status
    if kind == S_IFLNK:
        try:
            sys.symlink(sys.readlink(src), dst)
        except SysError as exc:
            warn(sys, "cp", dst, exc)
            return 1
        return 0
    try:
        dst_st = sys.stat(dst)
        if (dst_st.dev, dst_st.ino) == (st.dev, st.ino):
            warnx(sys, "cp", f"{src} and {dst} are identical (not copied).")
            return 1
    except SysError as exc:
        if exc.errno != ENOENT:
            warn(sys, "cp", dst, exc)
            return 1
    try:
        ifd = sys.open(src, O_RDONLY)
    except SysError as exc:
        warn(sys, "cp", src, exc)
        return 1
    try:
        try:
            ofd = sys.open(dst, O_WRONLY | O_CREAT | O_TRUNC, st.mode & 0o777 & ~UMASK)
        except SysError as exc:
            warn(sys, "cp", dst, exc)
            return 1
        try:
            while data := sys.read(ifd, CHUNK):
                write_all(sys, ofd, data)
        except SysError as exc:
            warn(sys, "cp", dst, exc)
            return 1
        finally:
            sys.close(ofd)
    finally:
        sys.close(ifd)
    if verbose:
        out(sys, f"{src} -> {dst}\n")
    return 0
