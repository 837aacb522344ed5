"""What the commands share: BSD getopt(3), err(3)-style messages and whole-descriptor I/O.

Why: FreeBSD's tools get their option errors ("ls: illegal option -- q") from getopt(3) and their
failure lines ("cat: /nope: No such file or directory") from warn(3)/err(3); one copy here keeps every
command worded alike.
"""

from __future__ import annotations

from kernel_sim.humanize import humanize_number  # noqa: F401  (the commands import it from here)
from kernel_sim.kern.sysapi import Sys, SysError, strerror

# The kernel has no umask(2) yet: programs that create files apply CMASK (sys/sys/param.h), the umask
# every FreeBSD process starts with, themselves.
UMASK = 0o022


class Usage(Exception):
    """A bad option: getopt already printed its line; the command prints its usage and exits."""


def bsd_getopt(argv: list[str], optstring: str, prog: str,
               err: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """BSD getopt(3): options until the first operand or "--"; an unknown or argument-less option is
    ('?', '') in the options, with getopt's complaint appended to `err` (the caller decides: usage)."""
    opts: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            ch = arg[j]
            k = optstring.find(ch)
            if ch == ":" or k < 0:
                err.append(f"{prog}: illegal option -- {ch}\n")
                opts.append(("?", ""))
                j += 1
                continue
            if optstring[k + 1:k + 2] == ":":
                if j + 1 < len(arg):
                    opts.append((ch, arg[j + 1:]))
                elif i + 1 < len(argv):
                    i += 1
                    opts.append((ch, argv[i]))
                else:
                    err.append(f"{prog}: option requires an argument -- {ch}\n")
                    opts.append(("?", ""))
                break
            opts.append((ch, ""))
            j += 1
        i += 1
    return opts, argv[i:]


def getopt(sys: Sys, prog: str, argv: list[str], optstring: str) -> tuple[list[tuple[str, str]], list[str]]:
    """bsd_getopt for a command that stops at the first bad option: the complaint, then Usage."""
    err: list[str] = []
    opts, operands = bsd_getopt(argv, optstring, prog, err)
    if err:
        say(sys, err[0])
        raise Usage
    return opts, operands


def say(sys: Sys, text: str, fd: int = 2) -> None:
    """Write text; a write error on standard error has nowhere to be reported."""
    try:
        sys.write(fd, text.encode("utf-8", "surrogateescape"))
    except SysError:
        if fd != 2:
            raise


def out(sys: Sys, text: str) -> None:
    sys.write(1, text.encode("utf-8", "surrogateescape"))


def warn(sys: Sys, prog: str, what: str, exc: SysError | int) -> None:
    """warn(3): "prog: what: strerror"."""
    errno = exc if isinstance(exc, int) else exc.errno
    say(sys, f"{prog}: {what}: {strerror(errno)}\n")


def warnx(sys: Sys, prog: str, msg: str) -> None:
    say(sys, f"{prog}: {msg}\n")


def write_all(sys: Sys, fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = sys.write(fd, bytes(view))
        if n <= 0:
            break
        view = view[n:]


def read_all(sys: Sys, fd: int, chunk: int = 65536) -> bytes:
    parts = []
    while data := sys.read(fd, chunk):
        parts.append(data)
    return b"".join(parts)


def read_path(sys: Sys, path: str) -> bytes:
    from kernel_sim.kern.sysapi import O_RDONLY

    fd = sys.open(path, O_RDONLY)
    try:
        return read_all(sys, fd)
    finally:
        sys.close(fd)


def realpath(sys: Sys, path: str) -> str:
    """realpath(3) through the process's calls: absolute, symlinks followed, SysError when missing."""
    from kernel_sim.kern.sysapi import ELOOP, S_IFLNK, S_IFMT

    if not path.startswith("/"):
        path = sys.getcwd().rstrip("/") + "/" + path
    todo = [c for c in path.split("/") if c]
    done: list[str] = []
    links = 0
    while todo:
        comp = todo.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        here = "/" + "/".join(done + [comp])
        st = sys.lstat(here)
        if st.mode & S_IFMT == S_IFLNK:
            links += 1
            if links > 32:
                raise SysError(ELOOP, here)
            target = sys.readlink(here)
            todo = [c for c in target.split("/") if c] + todo
            if target.startswith("/"):
                done = []
            continue
        done.append(comp)
    return "/" + "/".join(done)
