"""echo: sh's builtin echo (bin/sh/bltin/echo.c): one leading -n (no newline) or -e (escapes)."""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def main(sys: Sys, argv: list[str]) -> int:
    args = argv[1:]
    nflag = eflag = False
    if args and args[0] == "-n":
        nflag, args = True, args[1:]
    elif args and args[0] == "-e":
        eflag, args = True, args[1:]
    out: list[str] = []
    for i, arg in enumerate(args):
        if i:
            out.append(" ")
        if eflag:
            text, stop = _escapes(arg)
            out.append(text)
            if stop:
                nflag = True
                break
        else:
            out.append(arg)
    if not nflag:
        out.append("\n")
    sys.write(1, "".join(out).encode("utf-8", "surrogateescape"))
    return 0


def _escapes(arg: str) -> tuple[str, bool]:
    """-e: \\a \\b \\c (stop, no newline) \\f \\n \\r \\t \\v \\\\ and \\0nnn (octal)."""
    out: list[str] = []
    i = 0
    while i < len(arg):
        c = arg[i]
        if c != "\\" or i + 1 >= len(arg):
            out.append(c)
            i += 1
            continue
        nxt = arg[i + 1]
        if nxt == "c":
            return "".join(out), True
        if nxt == "0":
            j = i + 2
            while j < len(arg) and j < i + 5 and arg[j] in "01234567":
                j += 1
            out.append(chr(int(arg[i + 2:j] or "0", 8) & 0xFF))
            i = j
            continue
        out.append(_ESCAPES.get(nxt, "\\" + nxt))
        i += 2
    return "".join(out), False
