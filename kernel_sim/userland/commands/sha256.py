"""sha256 [-qr] [-s string] [file ...] (sbin/md5's sha256): "SHA256 (file) = hex", or the digest alone
for standard input or -q, "hex file" with -r. Errors: "sha256: /nope: No such file or directory", exit 1."""

from __future__ import annotations

import hashlib

from kernel_sim.kern.sysapi import O_RDONLY, Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warn


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, files = getopt(sys, "sha256", argv[1:], "bcpqrs:tx")
    except Usage:
        say(sys, "usage: sha256 [-pqrtx] [-c string] [-s string] [files ...]\n")
        return 1
    quiet = any(ch == "q" for ch, _ in opts)
    reverse = any(ch == "r" for ch, _ in opts)
    strings = [arg for ch, arg in opts if ch == "s"]
    status = 0
    for s in strings:
        digest = hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest()
        out(sys, _line(f'"{s}"', digest, quiet, reverse))
    if not files and not strings:
        out(sys, _digest(sys, 0).hexdigest() + "\n")
        return 0
    for name in files:
        try:
            fd = sys.open(name, O_RDONLY)
        except SysError as exc:
            warn(sys, "sha256", name, exc)
            status = 1
            continue
        try:
            h = _digest(sys, fd)
        except SysError as exc:
            warn(sys, "sha256", name, exc)
            status = 1
            continue
        finally:
            sys.close(fd)
        out(sys, _line(name, h.hexdigest(), quiet, reverse))
    return status


def _line(name: str, digest: str, quiet: bool, reverse: bool) -> str:
    if quiet:
        return digest + "\n"
    return f"{digest} {name}\n" if reverse else f"SHA256 ({name}) = {digest}\n"


def _digest(sys: Sys, fd: int):
    h = hashlib.sha256()
    while data := sys.read(fd, 65536):
        h.update(data)
    return h
