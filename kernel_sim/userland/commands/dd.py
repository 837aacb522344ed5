"""dd [operand ...] (bin/dd): copy in input blocks, write in output blocks, and count them.

Operands: if= of= bs= ibs= obs= count= skip= seek= conv=notrunc,sync,noerror status=none|noxfer.
Numbers take dd's suffixes (b 512, k, m, g, t, w 4) and products with x. The summary goes to standard
error as FreeBSD's misc.c summary() prints it, also after an I/O error (dd registers it with atexit
once its arguments and files are set up, so a bad operand or an unopenable file prints no summary):
"N+M records in", "N+M records out", "X bytes transferred in S secs (R bytes/sec)" where S is virtual
time, at least the clock's resolution (1 us here), so a copy that took no virtual time says 0.000001.
"""

from __future__ import annotations

import contextlib
import re

from kernel_sim.kern.sysapi import (
    ESPIPE,
    O_CREAT,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    S_IFMT,
    S_IFREG,
    SEEK_CUR,
    Sys,
    SysError,
    strerror,
)
from kernel_sim.userland.commands._util import UMASK, say

CLOCK_RES = 1e-6
_MULT = {"b": 512, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60, "w": 4}
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)([bkmgtpewBKMGTPEW]?)")
_OPERANDS = {"bs", "cbs", "conv", "count", "files", "fillchar", "ibs", "if", "iflag", "obs", "of", "oflag",
             "seek", "skip", "status", "iseek", "oseek"}
_CONVS = {"notrunc", "sync", "noerror", "fsync", "fdatasync", "sparse"}


class _Fail(Exception):
    def __init__(self, msg: str) -> None:
        self.msg = msg


def get_num(text: str) -> int:
    """args.c get_num(): strtoumax base 0, a size suffix, then x/* products."""
    total, pos = 1, 0
    while True:
        m = _NUMBER.match(text, pos)
        if not m:
            raise _Fail(f"{text}: illegal numeric value")
        digits, suffix = m.group(1), m.group(2)
        value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if len(digits) > 1 and \
            digits.startswith("0") else int(digits)
        total *= value * (_MULT[suffix.lower()] if suffix else 1)
        pos = m.end()
        if pos == len(text):
            return total
        if text[pos] not in "x*":
            raise _Fail(f"{text}: illegal numeric value")
        pos += 1


class _Stats:
    def __init__(self) -> None:
        self.in_full = self.in_part = self.out_full = self.out_part = self.bytes = 0
        self.copying = False          # dd.c registers summary() with atexit only once setup() is done


def main(sys: Sys, argv: list[str]) -> int:
    st = _Stats()
    start = sys.time()
    status = 0
    show = "all"
    try:
        ops: dict[str, str] = {}
        for arg in argv[1:]:
            name, eq, value = arg.partition("=")
            if not eq or name not in _OPERANDS:
                raise _Fail(f"unknown operand {name}")
            ops[name] = value
        show = ops.get("status", "all")
        if show not in ("all", "none", "noxfer", "progress"):
            raise _Fail(f"unknown status {show}")
        _copy(sys, ops, st)
    except _Fail as exc:
        say(sys, f"dd: {exc.msg}\n")
        status = 1
    if show != "none" and st.copying:
        secs = max(sys.time() - start, CLOCK_RES)
        lines = f"{st.in_full}+{st.in_part} records in\n{st.out_full}+{st.out_part} records out\n"
        if show != "noxfer":
            lines += f"{st.bytes} bytes transferred in {secs:.6f} secs ({st.bytes / secs:.0f} bytes/sec)\n"
        say(sys, lines)
    return status


def _copy(sys: Sys, ops: dict[str, str], st: _Stats) -> None:
    conv = set(filter(None, ops.get("conv", "").split(",")))
    for c in conv - _CONVS:
        raise _Fail(f"unknown conversion {c}")
    bs_mode = "bs" in ops
    ibs = obs = get_num(ops["bs"]) if bs_mode else 512
    if not bs_mode:
        ibs = get_num(ops["ibs"]) if "ibs" in ops else 512
        obs = get_num(ops["obs"]) if "obs" in ops else 512
    if ibs == 0 or obs == 0:
        raise _Fail(f"{'bs' if bs_mode else 'ibs' if ibs == 0 else 'obs'} must be between 1 and "
                    f"{(1 << 31) - 1}")                  # args.c: "%s must be between 1 and %jd"
    count = get_num(ops["count"]) if "count" in ops else 0
    skip = get_num(ops.get("skip", ops.get("iseek", "0")))
    seek = get_num(ops.get("seek", ops.get("oseek", "0")))

    iname = ops.get("if")
    oname = ops.get("of")
    ifd, ofd = 0, 1
    opened: list[int] = []
    try:
        if iname is not None:
            try:
                ifd = sys.open(iname, O_RDONLY)
            except SysError as exc:
                raise _Fail(f"{iname}: {strerror(exc.errno)}") from None
            opened.append(ifd)
        if oname is not None:
            ofd = _open_out(sys, oname, trunc=not (seek or "notrunc" in conv))
            opened.append(ofd)
        ilabel, olabel = iname or "stdin", oname or "stdout"
        if skip:
            _position(sys, ifd, skip * ibs, ilabel, reading=True)
        if seek:
            _position(sys, ofd, seek * obs, olabel, reading=False)
        pending = bytearray()
        done = 0
        st.copying = True
        while count == 0 or done < count:
            try:
                data = sys.read(ifd, ibs)
            except SysError as exc:
                if "noerror" not in conv:
                    raise _Fail(f"{ilabel}: {strerror(exc.errno)}") from None
                say(sys, f"dd: {ilabel}: {strerror(exc.errno)}\n")
                data = b""
                if not data:
                    break
            if not data:
                break
            done += 1
            if len(data) == ibs:
                st.in_full += 1
            else:
                st.in_part += 1
                if "sync" in conv:
                    data += bytes(ibs - len(data))
            if bs_mode:
                _write(sys, ofd, bytes(data), obs, st, olabel)
            else:
                pending += data
                while len(pending) >= obs:
                    _write(sys, ofd, bytes(pending[:obs]), obs, st, olabel)
                    del pending[:obs]
        if pending:
            _write(sys, ofd, bytes(pending), obs, st, olabel)
    finally:
        for fd in opened:
            with contextlib.suppress(SysError):
                sys.close(fd)


def _open_out(sys: Sys, name: str, trunc: bool) -> int:
    """setup(): O_RDWR first (for conv=notrunc block updates), then O_WRONLY; O_TRUNC only for a regular
    file (a disk or the console is not truncated)."""
    regular = True
    with contextlib.suppress(SysError):
        regular = sys.stat(name).mode & S_IFMT == S_IFREG
    flags = O_CREAT | (O_TRUNC if trunc and regular else 0)
    try:
        return sys.open(name, O_RDWR | flags, 0o666 & ~UMASK)
    except SysError:
        try:
            return sys.open(name, O_WRONLY | flags, 0o666 & ~UMASK)
        except SysError as exc:
            raise _Fail(f"{name}: {strerror(exc.errno)}") from None


def _position(sys: Sys, fd: int, offset: int, label: str, *, reading: bool) -> None:
    """pos_in()/pos_out(): lseek when the file can seek, else read (or write zeros) past the blocks."""
    try:
        sys.lseek(fd, offset, SEEK_CUR)
        return
    except SysError as exc:
        if exc.errno != ESPIPE:
            raise _Fail(f"{label}: {strerror(exc.errno)}") from None
    if not reading:
        raise _Fail(f"{label}: {strerror(ESPIPE)}")
    left = offset
    while left:
        chunk = sys.read(fd, min(left, 65536))
        if not chunk:
            say(sys, "dd: skip reached end of input\n")
            return
        left -= len(chunk)


def _write(sys: Sys, fd: int, data: bytes, obs: int, st: _Stats, label: str) -> None:
    done = 0
    while done < len(data):
        try:
            n = sys.write(fd, data[done:])
        except SysError as exc:
            raise _Fail(f"{label}: {strerror(exc.errno)}") from None
        if n <= 0:
            raise _Fail(f"{label}: short write on character device")
        done += n
        st.bytes += n
    if len(data) == obs:
        st.out_full += 1
    else:
        st.out_part += 1
