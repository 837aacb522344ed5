"""memctl: the guest's way to mem(4)'s ioctls, through /dev/mem like memcontrol(8) and dumpon(8) use it.

    memctl paddr VA                        MEM_EXTRACT_PADDR: where VA is (mapped, valid, invalid)
    memctl ranges [-a]                     MEMRANGE_GET, printed as `memcontrol list` prints it
    memctl setrange BASE LEN ATTR [OWNER]  MEMRANGE_SET (update): ATTR is one of memcontrol's names
    memctl delrange BASE LEN               MEMRANGE_SET (remove)
    memctl dump [-z gzip|zstd] FILE        MEM_KERNELDUMP into FILE (created, mode 0600)

Why one tool: FreeBSD spreads these over memcontrol(8) and a few test programs; armboard's users want
to see where an address lives, the board's ranges and a live dump from inside the guest. Errors are
err(3) lines ("memctl: ioctl(/dev/mem): Operation not permitted") and exit 1; bad usage prints the
usage and exits 1.
"""

from __future__ import annotations

from kernel_sim.dev.mem import (
    MDF_ACTIVE,
    ME_STATE_MAPPED,
    ME_STATE_VALID,
    MEM_EXTRACT,
    MEM_EXTRACT_PADDR,
    MEM_KERNELDUMP,
    MEM_LIVEDUMP_ARG,
    MEM_RANGE_DESC,
    MEM_RANGE_OP,
    MEMRANGE_GET,
    MEMRANGE_SET,
    MEMRANGE_SET_REMOVE,
    MEMRANGE_SET_UPDATE,
    SETTABLE_ATTRS,
    RangeDesc,
    flag_names,
)
from kernel_sim.kern.minidump import KERNELDUMP_COMP_GZIP, KERNELDUMP_COMP_NONE, KERNELDUMP_COMP_ZSTD
from kernel_sim.kern.sysapi import O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY, Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, out, say, warn, warnx

PROG = "memctl"
PATH_MEM = "/dev/mem"                    # include/paths.h _PATH_MEM
USAGE = ("usage: memctl paddr va\n"
         "       memctl ranges [-a]\n"
         "       memctl setrange base length attribute [owner]\n"
         "       memctl delrange base length\n"
         "       memctl dump [-z gzip|zstd] file\n"
         "       attribute = {" + ", ".join(SETTABLE_ATTRS) + "}\n")
STATES = {ME_STATE_MAPPED: "mapped", ME_STATE_VALID: "valid, not mapped"}
COMPRESSION = {"gzip": KERNELDUMP_COMP_GZIP, "zstd": KERNELDUMP_COMP_ZSTD}
DESC_PTR = 0x1000                        # where the descriptor buffer is in this process's memory


def _number(text: str) -> int:
    """strtoull(text, &ep, 0) that must consume everything (memcontrol's check)."""
    body = text.strip().lower()
    try:
        if body.startswith("0x"):
            return int(body[2:], 16)
        if len(body) > 1 and body.startswith("0"):
            return int(body[1:], 8)
        return int(body, 10)
    except ValueError:
        raise Usage from None


def main(sys: Sys, argv: list[str]) -> int:
    args = argv[1:]
    if not args:
        say(sys, USAGE)
        return 1
    commands = {"paddr": _paddr, "ranges": _ranges, "setrange": _setrange, "delrange": _delrange, "dump": _dump}
    command = commands.get(args[0])
    if command is None:
        warnx(sys, PROG, f"unknown command '{args[0]}'")
        say(sys, USAGE)
        return 1
    try:
        fd = sys.open(PATH_MEM, O_RDONLY)
    except SysError as exc:
        warn(sys, PROG, PATH_MEM, exc)
        return 1
    try:
        return command(sys, fd, args[1:])
    except Usage:
        say(sys, USAGE)
        return 1
    except SysError as exc:
        warn(sys, PROG, f"ioctl({PATH_MEM})", exc)
        return 1
    finally:
        sys.close(fd)


def _paddr(sys: Sys, fd: int, args: list[str]) -> int:
    if len(args) != 1:
        raise Usage
    va = _number(args[0])
    raw = sys.ioctl(fd, MEM_EXTRACT_PADDR, MEM_EXTRACT.pack(va, 0, 0, 0))
    _va, pa, domain, state = MEM_EXTRACT.unpack(raw)
    if state == ME_STATE_MAPPED:
        out(sys, f"0x{va:08x}: physical 0x{pa:08x} (mapped, domain {domain})\n")
    else:
        out(sys, f"0x{va:08x}: {STATES.get(state, 'invalid')}\n")
    return 0


def _ranges(sys: Sys, fd: int, args: list[str]) -> int:
    opts, rest = getopt(sys, PROG, args, "a")
    if rest:
        raise Usage
    show_all = bool(opts)
    count = MEM_RANGE_OP.unpack(sys.ioctl(fd, MEMRANGE_GET, MEM_RANGE_OP.pack(0, 0, 0)))[1]
    buf = bytearray(count * MEM_RANGE_DESC.size)
    sys.ioctl(fd, MEMRANGE_GET, MEM_RANGE_OP.pack(DESC_PTR, count, 0), {DESC_PTR: buf})
    for i in range(count):
        d = RangeDesc.unpack(bytes(buf[i * MEM_RANGE_DESC.size:(i + 1) * MEM_RANGE_DESC.size]))
        if not show_all and not d.flags & MDF_ACTIVE:
            continue
        words = "".join(f"{name} " for name in flag_names(d.flags))
        out(sys, f"0x{d.base:x}/0x{d.length:x} {d.owner or '-'} {words}\n")    # memcontrol.c listfunc
    return 0


def _set(sys: Sys, fd: int, desc: RangeDesc, op: int) -> None:
    buf = bytearray(desc.pack())
    sys.ioctl(fd, MEMRANGE_SET, MEM_RANGE_OP.pack(DESC_PTR, op, 0), {DESC_PTR: buf})


def _setrange(sys: Sys, fd: int, args: list[str]) -> int:
    if len(args) not in (3, 4):
        raise Usage
    base, length = _number(args[0]), _number(args[1])
    attr = SETTABLE_ATTRS.get(args[2])
    owner = args[3] if len(args) == 4 else "user"             # memcontrol's default owner
    if attr is None or not owner or len(owner) > 7:
        raise Usage
    _set(sys, fd, RangeDesc(base, length, attr, owner), MEMRANGE_SET_UPDATE)
    return 0


def _delrange(sys: Sys, fd: int, args: list[str]) -> int:
    if len(args) != 2:
        raise Usage
    _set(sys, fd, RangeDesc(_number(args[0]), _number(args[1]), 0, ""), MEMRANGE_SET_REMOVE)
    return 0


def _dump(sys: Sys, fd: int, args: list[str]) -> int:
    opts, rest = getopt(sys, PROG, args, "z:")
    if len(rest) != 1:
        raise Usage
    compression = KERNELDUMP_COMP_NONE
    for _opt, value in opts:
        if value not in COMPRESSION:
            warnx(sys, PROG, f"unknown compression '{value}' (gzip or zstd)")
            raise Usage
        compression = COMPRESSION[value]
    try:
        out_fd = sys.open(rest[0], O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    except SysError as exc:
        warn(sys, PROG, rest[0], exc)
        return 1
    try:
        sys.ioctl(fd, MEM_KERNELDUMP, MEM_LIVEDUMP_ARG.pack(out_fd, 0, compression))
    finally:
        sys.close(out_fd)
    return 0
