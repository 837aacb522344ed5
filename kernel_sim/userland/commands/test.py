"""test and [ (bin/test/test.c): file, string and integer tests; exit 0 true, 1 false, 2 error.

Errors are test.c's: "[: missing ]", "test: argument expected", "test: X: bad number",
"test: X: unexpected operator", "test: closing paren expected".
"""

from __future__ import annotations

import re

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

_UNARY_FILE = {"-b", "-c", "-d", "-e", "-f", "-g", "-h", "-k", "-L", "-p", "-r", "-s", "-S", "-t", "-u", "-w",
               "-x", "-O", "-G"}
_UNARY = _UNARY_FILE | {"-n", "-z"}
_BINARY = {"=", "==", "!=", "<", ">", "-eq", "-ne", "-gt", "-ge", "-lt", "-le", "-nt", "-ot", "-ef"}


class _TestError(Exception):
    pass


def main(sys: Sys, argv: list[str]) -> int:
    prog = argv[0].rsplit("/", 1)[-1]
    args = argv[1:]
    if prog == "[":
        if not args or args[-1] != "]":
            sys.write(2, b"[: missing ]\n")
            return 2
        args = args[:-1]
    try:
        return 0 if _Eval(sys, args).run() else 1
    except _TestError as exc:
        sys.write(2, f"{prog}: {exc}\n".encode("utf-8", "surrogateescape"))
        return 2


class _Eval:
    def __init__(self, sys: Sys, args: list[str]) -> None:
        self.sys = sys
        self.args = args
        self.i = 0

    def run(self) -> bool:
        a = self.args
        n = len(a)
        # POSIX's rules by argument count come first (they make `[ -n ]`, `[ ! = x ]` unambiguous).
        if n == 0:
            return False
        if n == 1:
            return a[0] != ""
        if n == 2:
            if a[0] == "!":
                return a[1] == ""
            if a[0] in _UNARY:
                return self.unary(a[0], a[1])
            if a[1] in _BINARY:
                raise _TestError(f"{a[1]}: argument expected")
            raise _TestError(f"{a[1]}: unexpected operator")
        if n == 3:
            if a[1] in _BINARY:
                return self.binary(a[0], a[1], a[2])
            if a[0] == "!":
                return not _Eval(self.sys, a[1:]).run()
            if a[0] == "(" and a[2] == ")":
                return a[1] != ""
        if n == 4 and a[0] == "!":
            return not _Eval(self.sys, a[1:]).run()
        value = self.oexpr()
        if self.i < n:
            raise _TestError(f"{a[self.i]}: unexpected operator")
        return value

    # the general grammar: oexpr := aexpr [-o oexpr]; aexpr := nexpr [-a aexpr]; nexpr := ! nexpr | primary
    def peek(self) -> str | None:
        return self.args[self.i] if self.i < len(self.args) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise _TestError("argument expected")
        self.i += 1
        return tok

    def oexpr(self) -> bool:
        v = self.aexpr()
        if self.peek() == "-o":
            self.i += 1
            return self.oexpr() or v
        return v

    def aexpr(self) -> bool:
        v = self.nexpr()
        if self.peek() == "-a":
            self.i += 1
            return self.aexpr() and v
        return v

    def nexpr(self) -> bool:
        if self.peek() == "!":
            self.i += 1
            return not self.nexpr()
        return self.primary()

    def primary(self) -> bool:
        tok = self.take()
        if tok == "(":
            v = self.oexpr()
            if self.peek() != ")":
                raise _TestError("closing paren expected")
            self.i += 1
            return v
        if tok in _UNARY and self.peek() is not None:
            return self.unary(tok, self.take())
        nxt = self.peek()
        if nxt in _BINARY:
            self.i += 1
            if self.peek() is None:
                raise _TestError(f"{nxt}: argument expected")
            return self.binary(tok, nxt, self.take())
        return tok != ""

    # the tests -------------------------------------------------------------------
    def unary(self, op: str, arg: str) -> bool:
        if op == "-n":
            return arg != ""
        if op == "-z":
            return arg == ""
        if op == "-t":
            try:
                return self.sys.fstat(_number(arg)).mode & S_IFMT == S_IFCHR
            except SysError:
                return False
        st = _stat(self.sys, arg, follow=op not in ("-h", "-L"))
        if st is None:
            return False
        kind = st.mode & S_IFMT
        if op == "-e":
            return True
        checks = {"-f": kind == S_IFREG, "-d": kind == S_IFDIR, "-b": kind == S_IFBLK, "-c": kind == S_IFCHR,
                  "-p": kind == S_IFIFO, "-S": kind == 0o140000, "-h": kind == S_IFLNK, "-L": kind == S_IFLNK,
                  "-s": st.size > 0, "-u": bool(st.mode & 0o4000), "-g": bool(st.mode & 0o2000),
                  "-k": bool(st.mode & 0o1000), "-O": st.uid == self.sys.uid, "-G": True}
        if op in checks:
            return checks[op]
        return _access(self.sys.uid, st, {"-r": 4, "-w": 2, "-x": 1}[op])

    def binary(self, a: str, op: str, b: str) -> bool:
        if op in ("=", "=="):
            return a == b
        if op == "!=":
            return a != b
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op in ("-nt", "-ot", "-ef"):
            sa, sb = _stat(self.sys, a, True), _stat(self.sys, b, True)
            if op == "-ef":
                return sa is not None and sb is not None and (sa.dev, sa.ino) == (sb.dev, sb.ino)
            if op == "-nt":
                return sa is not None and (sb is None or sa.mtime > sb.mtime)
            return sb is not None and (sa is None or sa.mtime < sb.mtime)
        x, y = _number(a), _number(b)
        return {"-eq": x == y, "-ne": x != y, "-gt": x > y, "-ge": x >= y, "-lt": x < y, "-le": x <= y}[op]


def _number(text: str) -> int:
    if not re.fullmatch(r"\s*[-+]?[0-9]+\s*", text):
        raise _TestError(f"{text}: bad number")
    return int(text)


def _stat(sys: Sys, path: str, follow: bool) -> Stat | None:
    try:
        return sys.stat(path) if follow else sys.lstat(path)
    except SysError:
        return None


def _access(uid: int, st: Stat, bit: int) -> bool:
    """access(2) as root and as others: root reads and writes anything, executes when any x bit is set."""
    if uid == 0:
        return bit != 1 or bool(st.mode & 0o111) or st.mode & S_IFMT == S_IFDIR
    shift = 6 if st.uid == uid else 0
    return bool(st.mode & (bit << shift))
