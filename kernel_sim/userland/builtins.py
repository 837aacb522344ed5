"""The shell's builtins: the commands that must change the shell itself (cd, set, export, `.`, exit, ...)
plus echo, test/[, true and false, which FreeBSD's sh also runs without a fork.

Errors carry the builtin's name in front, as FreeBSD's sh sets commandname to argv[0] while a builtin
runs ("cd: /nope: No such file or directory", "shift: can't shift that many"). An error in a special
builtin (`.`, exit, set, shift, ...) ends a script; one in a regular builtin only gives status 2.
"""

from __future__ import annotations

from typing import Protocol

from kernel_sim.kern.sysapi import Sys, SysError, strerror
from kernel_sim.userland.commands import echo as echo_cmd
from kernel_sim.userland.commands import test as test_cmd
from kernel_sim.userland.shcommon import FuncReturn, LoopControl, ShellError, ShellExit, quote, read_file
from kernel_sim.userland.shparse import is_name


class Shell(Protocol):
    """What a builtin may read and change of the shell running it (sh.Shell)."""

    vars: dict[str, str]
    exported: set[str]
    functions: dict[str, object]
    params: list[str]
    status: int
    errexit: bool
    xtrace: bool

    def source(self, text: str, name: str) -> int: ...
    def evaluate(self, text: str) -> int: ...


def run(sh: Shell, name: str, io: Sys, argv: list[str]) -> int:
    return _TABLE[name](sh, io, argv)


def _err(name: str, message: str) -> Exception:
    return ShellError(message, prefix=name)


def _out(io: Sys, text: str) -> None:
    io.write(1, text.encode("utf-8", "surrogateescape"))


def _number(name: str, text: str) -> int:
    if not text.isdigit():
        raise _err(name, f"Illegal number: {text}")
    return int(text)


def _colon(sh: Shell, io: Sys, argv: list[str]) -> int:
    return 0


def _false(sh: Shell, io: Sys, argv: list[str]) -> int:
    return 1


def _echo(sh: Shell, io: Sys, argv: list[str]) -> int:
    return echo_cmd.main(io, argv)


def _test(sh: Shell, io: Sys, argv: list[str]) -> int:
    return test_cmd.main(io, argv)


def _cd(sh: Shell, io: Sys, argv: list[str]) -> int:
    args = [a for a in argv[1:] if a not in ("-L", "-P")]
    if len(args) > 1:
        raise _err("cd", "too many arguments")
    dest = args[0] if args else sh.vars.get("HOME", "/")
    show = False
    if dest == "-":
        dest, show = sh.vars.get("OLDPWD", ""), True
        if not dest:
            raise _err("cd", "OLDPWD not set")
    try:
        old = io.getcwd()
        io.chdir(dest)
        new = io.getcwd()
    except SysError as exc:
        raise _err("cd", f"{dest}: {strerror(exc.errno)}") from None
    sh.vars["OLDPWD"], sh.vars["PWD"] = old, new
    if show:
        _out(io, new + "\n")
    return 0


def _pwd(sh: Shell, io: Sys, argv: list[str]) -> int:
    try:
        _out(io, io.getcwd() + "\n")
    except SysError as exc:
        raise _err("pwd", strerror(exc.errno)) from None
    return 0


def _exit(sh: Shell, io: Sys, argv: list[str]) -> int:
    status = _number("exit", argv[1]) & 0xFF if len(argv) > 1 else sh.status
    raise ShellExit(status)


def _set(sh: Shell, io: Sys, argv: list[str]) -> int:
    args = argv[1:]
    if not args:
        for name in sorted(sh.vars):
            _out(io, f"{name}={quote(sh.vars[name])}\n")
        return 0
    while args and args[0][:1] in ("-", "+") and args[0] not in ("-", "+"):
        flag = args.pop(0)
        if flag == "--":
            sh.params = list(args)
            return 0
        on = flag[0] == "-"
        letters = flag[1:]
        if letters == "o":
            if not args:
                _out(io, f"errexit        {'on' if sh.errexit else 'off'}\nxtrace         "
                         f"{'on' if sh.xtrace else 'off'}\n")
                return 0
            opt = args.pop(0)
            letters = {"errexit": "e", "xtrace": "x"}.get(opt, "")
            if not letters:
                raise _err("set", f"Illegal option -o {opt}")
        for ch in letters:
            if ch == "e":
                sh.errexit = on
            elif ch == "x":
                sh.xtrace = on
            elif ch in "uCfnvabmh":
                pass                      # accepted, not modelled (no nounset/noclobber/noglob here)
            else:
                raise _err("set", f"Illegal option {flag[0]}{ch}")
    if args:
        sh.params = list(args)
    return 0


def _export(sh: Shell, io: Sys, argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "-p"]
    word = "export" if argv[0] == "export" else "readonly"
    if not args:
        for name in sorted(sh.exported):
            if name in sh.vars:
                _out(io, f"{word} {name}={quote(sh.vars[name])}\n")
        return 0
    for arg in args:
        name, eq, value = arg.partition("=")
        if not is_name(name):
            raise _err(argv[0], f"{name}: bad variable name")
        if eq:
            sh.vars[name] = value
        sh.exported.add(name)
    return 0


def _unset(sh: Shell, io: Sys, argv: list[str]) -> int:
    for name in argv[1:]:
        if name in ("-v", "-f"):
            continue
        sh.vars.pop(name, None)
        sh.exported.discard(name)
        sh.functions.pop(name, None)
    return 0


def _shift(sh: Shell, io: Sys, argv: list[str]) -> int:
    n = _number("shift", argv[1]) if len(argv) > 1 else 1
    if n > len(sh.params):
        raise _err("shift", "can't shift that many")
    sh.params = sh.params[n:]
    return 0


def _dot(sh: Shell, io: Sys, argv: list[str]) -> int:
    if len(argv) < 2:
        raise _err(".", "missing filename")
    name = argv[1]
    candidates = [name] if "/" in name else [f"{d or '.'}/{name}" for d in sh.vars.get("PATH", "").split(":")]
    for path in candidates:
        try:
            text = read_file(io, path)
        except SysError as exc:
            if "/" in name:
                raise _err(".", f"cannot open {name}: {strerror(exc.errno)}") from None
            continue
        return sh.source(text, path)
    raise _err(".", f"{name}: not found")


def _eval(sh: Shell, io: Sys, argv: list[str]) -> int:
    text = " ".join(argv[1:])
    if not text.strip():
        return 0
    return sh.evaluate(text)


def _loop_ctl(sh: Shell, io: Sys, argv: list[str]) -> int:
    n = _number(argv[0], argv[1]) if len(argv) > 1 else 1
    if n < 1:
        raise _err(argv[0], f"Illegal number: {argv[1]}")
    raise LoopControl(argv[0], n)


def _return(sh: Shell, io: Sys, argv: list[str]) -> int:
    raise FuncReturn(_number("return", argv[1]) if len(argv) > 1 else sh.status)


def _read(sh: Shell, io: Sys, argv: list[str]) -> int:
    """read [-r] [-p prompt] name ...: one line from standard input, split on IFS into the names."""
    args = argv[1:]
    raw = False
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "-r":
            raw = True
        elif opt == "-p" and args:
            io.write(2, args.pop(0).encode())
        else:
            raise _err("read", f"Illegal option {opt}")
    if not args:
        raise _err("read", "arg count")
    line = bytearray()
    eof = False
    while True:
        ch = io.read(0, 1)
        if not ch:
            eof = True
            break
        if ch == b"\n":
            if not raw and line.endswith(b"\\"):
                line = line[:-1]
                continue
            break
        line += ch
    text = line.decode("utf-8", "surrogateescape")
    if not raw:
        text = text.replace("\\", "")
    ifs = sh.vars.get("IFS", " \t\n")
    fields = text.strip(ifs).split(None, len(args) - 1) if ifs else [text]
    for i, name in enumerate(args):
        if not is_name(name):
            raise _err("read", f"{name}: bad variable name")
        sh.vars[name] = fields[i] if i < len(fields) else ""
    return 1 if eof and not line else 0


_TABLE = {":": _colon, "true": _colon, "false": _false, "echo": _echo, "test": _test, "[": _test, "cd": _cd,
          "pwd": _pwd, "exit": _exit, "set": _set, "export": _export, "readonly": _export, "unset": _unset,
          "shift": _shift, ".": _dot, "eval": _eval, "break": _loop_ctl, "continue": _loop_ctl,
          "return": _return, "read": _read}
