"""ls [-1ACadln] [file ...] (bin/ls): names, or -l's long lines in FreeBSD's format.

-l prints `strmode  links owner  group  size date name [-> target]` with the columns padded to the
widest entry as print.c's printlong does, owners and groups by name from /etc/passwd and /etc/group
(numbers when missing or with -n), character devices' rdev in hex, and the date as printtime does
("Jan  1 00:12" within six months of now, "Jan  1  1970" otherwise) from the virtual clock. Names go
in columns (-C) when standard output is the console and one per line (-1) otherwise, as isatty decides.
"""

from __future__ import annotations

import contextlib
import time as timemod

from kernel_sim.kern.sysapi import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    Stat,
    Sys,
    SysError,
)
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warn
from kernel_sim.userland.commands.ids import group_names, user_names

SIXMONTHS = (365 // 2) * 86400        # print.c
TERMWIDTH = 80                        # the console's width (no TIOCGWINSZ here)
_TYPES = {S_IFDIR: "d", S_IFCHR: "c", S_IFBLK: "b", S_IFREG: "-", S_IFLNK: "l", S_IFIFO: "p", 0o140000: "s"}


def strmode(mode: int) -> str:
    """strmode(3): type letter and rwx triplets with s/S, t/T, then the space for the ACL mark."""
    chars = [_TYPES.get(mode & S_IFMT, "?")]
    for shift, special, letter in ((6, 0o4000, "s"), (3, 0o2000, "s"), (0, 0o1000, "t")):
        bits = (mode >> shift) & 7
        chars.append("r" if bits & 4 else "-")
        chars.append("w" if bits & 2 else "-")
        if mode & special:
            chars.append(letter if bits & 1 else letter.upper())
        else:
            chars.append("x" if bits & 1 else "-")
    return "".join(chars) + " "


class _Entry:
    __slots__ = ("name", "path", "st")

    def __init__(self, name: str, path: str, st: Stat) -> None:
        self.name = name
        self.path = path
        self.st = st


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, operands = getopt(sys, "ls", argv[1:], "1ACadlnF")
    except Usage:
        say(sys, "usage: ls [-1ACFadln] [file ...]\n")
        return 1
    flags = {ch for ch, _ in opts}
    long = "l" in flags or "n" in flags
    one = not _isatty(sys)
    for ch, _ in opts:
        if ch in "1C":
            one = ch == "1"
    show_all = "a" in flags
    almost_all = "A" in flags or sys.uid == 0        # -A is implied for the super-user (ls.1)
    ls = _Ls(sys, long=long, one=one, numeric="n" in flags, classify="F" in flags,
             show_all=show_all, almost_all=almost_all)
    names = operands or ["."]
    files: list[_Entry] = []
    dirs: list[_Entry] = []
    status = 0
    for name in names:
        try:
            st = sys.lstat(name)
            if st.mode & S_IFMT == S_IFLNK and not long:
                with contextlib.suppress(SysError):      # a dangling link is listed as the link
                    st = sys.stat(name)
        except SysError as exc:
            warn(sys, "ls", name, exc)
            status = 1
            continue
        entry = _Entry(name, name, st)
        (dirs if st.mode & S_IFMT == S_IFDIR and "d" not in flags else files).append(entry)
    files.sort(key=lambda e: e.name)
    dirs.sort(key=lambda e: e.name)
    if files:
        ls.print_list(files, total=False)
    for i, d in enumerate(dirs):
        if files or i:
            out(sys, "\n")
        if len(names) > 1:
            out(sys, f"{d.name}:\n")
        if not ls.print_dir(d):
            status = 1
    return status


def _isatty(sys: Sys) -> bool:
    try:
        return sys.fstat(1).mode & S_IFMT == S_IFCHR
    except SysError:
        return False


class _Ls:
    def __init__(self, sys: Sys, *, long: bool, one: bool, numeric: bool, classify: bool, show_all: bool,
                 almost_all: bool) -> None:
        self.sys = sys
        self.long = long
        self.one = one
        self.classify = classify
        self.show_all = show_all
        self.almost_all = almost_all
        self.users = {} if numeric else user_names(sys)
        self.groups = {} if numeric else group_names(sys)
        self.now = sys.time()

    def print_dir(self, d: _Entry) -> bool:
        try:
            names = self.sys.readdir(d.path)
        except SysError as exc:
            warn(self.sys, "ls", d.name, exc)
            return False
        entries = []
        ok = True
        for name in sorted(names):
            if name.startswith(".") and not self.show_all and not (self.almost_all and name not in (".", "..")):
                continue
            path = d.path.rstrip("/") + "/" + name if d.path != "/" else "/" + name
            try:
                entries.append(_Entry(name, path, self.sys.lstat(path)))
            except SysError as exc:
                warn(self.sys, "ls", name, exc)
                ok = False
        self.print_list(entries, total=True)
        return ok

    def print_list(self, entries: list[_Entry], *, total: bool) -> None:
        if self.long:
            self._long(entries, total)
        elif self.one:
            for e in entries:
                out(self.sys, self._name(e) + "\n")
        else:
            self._columns([self._name(e) for e in entries])

    def _name(self, e: _Entry) -> str:
        if not self.classify:
            return e.name
        kind = e.st.mode & S_IFMT
        mark = {S_IFDIR: "/", S_IFLNK: "@", S_IFIFO: "|", 0o140000: "="}.get(kind, "")
        if kind == S_IFREG and e.st.mode & 0o111:
            mark = "*"
        return e.name + mark

    def _columns(self, names: list[str]) -> None:
        """print.c printcol(): tab-aligned columns filled top to bottom, 8-column tab stops."""
        if not names:
            return
        colwidth = (max(len(n) for n in names) + 8) & ~7
        if 2 * colwidth > TERMWIDTH:
            for n in names:
                out(self.sys, n + "\n")
            return
        numcols = TERMWIDTH // colwidth
        numrows = -(-len(names) // numcols)
        lines = []
        for row in range(numrows):
            line: list[str] = []
            chcnt, endcol, base = 0, colwidth, row
            for _col in range(numcols):
                line.append(names[base])
                chcnt += len(names[base])
                base += numrows
                if base >= len(names):
                    break
                while (cnt := (chcnt + 8) & ~7) <= endcol:
                    line.append("\t")
                    chcnt = cnt
                endcol += colwidth
            lines.append("".join(line) + "\n")
        out(self.sys, "".join(lines))

    def _long(self, entries: list[_Entry], total: bool) -> None:
        """print.c printlong(): "%s %*ju %-*s  %-*s  " then size (or rdev), date, name, "-> target"."""
        if total:
            out(self.sys, f"total {sum(e.st.blocks for e in entries)}\n")
        if not entries:
            return
        owners = [self.users.get(e.st.uid, str(e.st.uid)) for e in entries]
        groups = [self.groups.get(e.st.gid, str(e.st.gid)) for e in entries]
        sizes = [f"{e.st.rdev:#x}" if e.st.mode & S_IFMT in (S_IFCHR, S_IFBLK) else str(e.st.size) for e in entries]
        wl = max(len(str(e.st.nlink)) for e in entries)
        wu = max(len(o) for o in owners)
        wg = max(len(g) for g in groups)
        ws = max(len(s) for s in sizes)
        lines = []
        for e, owner, group, size in zip(entries, owners, groups, sizes, strict=True):
            line = (f"{strmode(e.st.mode)} {e.st.nlink:>{wl}} {owner:<{wu}}  {group:<{wg}}  {size:>{ws}} "
                    f"{self._time(e.st.mtime)}{self._name(e)}")
            if e.st.mode & S_IFMT == S_IFLNK:
                try:
                    line += " -> " + self.sys.readlink(e.path)
                except SysError as exc:
                    warn(self.sys, "ls", e.name, exc)
            lines.append(line + "\n")
        out(self.sys, "".join(lines))

    def _time(self, t: float) -> str:
        """printtime(): "%b %e %H:%M " when within six months of now, else "%b %e  %Y "."""
        tm = timemod.gmtime(int(t))
        month = timemod.strftime("%b", tm)
        if t + SIXMONTHS > self.now and t < self.now + SIXMONTHS:
            return f"{month} {tm.tm_mday:>2} {tm.tm_hour:02d}:{tm.tm_min:02d} "
        return f"{month} {tm.tm_mday:>2}  {tm.tm_year} "
