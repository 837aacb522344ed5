"""mdconfig(8) (sbin/mdconfig/mdconfig.c): the guest's /sbin/mdconfig, also serving the monitor.

It follows the FreeBSD 14 tool: BSD getopt (stops at the first operand), its argument checks and
messages, exit 1 on errors (errx/err/usage), and `-l`'s return of -1 (exit status 255) when a queried
unit or file is not found. Everything it asks of md(4) goes through /dev/mdctl's ioctls with a packed
armv7 struct md_ioctl (MDIOCATTACH, MDIOCDETACH, MDIOCRESIZE, MDIOCQUERY, MDIOCLIST), md_file and
md_label pointing into the caller's buffers, as the real tool does. In the guest `main(sys, argv)`
opens /dev/mdctl and calls sys.ioctl; the monitor hands `mdconfig()` the driver itself, whose
`ioctl()` is the same entry point, so both take the same path. The listing walks MDIOCLIST and
MDIOCQUERY (the real tool reads the GEOM tree; same units, same order).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from kernel_sim.dev.md import (
    MD_ASYNC,
    MD_AUTOUNIT,
    MD_CACHE,
    MD_CLUSTER,
    MD_COMPRESS,
    MD_FORCE,
    MD_MALLOC,
    MD_NULL,
    MD_READONLY,
    MD_RESERVE,
    MD_SWAP,
    MD_VERIFY,
    MD_VNODE,
    MDIOCATTACH,
    MDIOCDETACH,
    MDIOCLIST,
    MDIOCQUERY,
    MDIOCRESIZE,
    MDNPAD,
    MdIoctl,
)
from kernel_sim.errnos import TEXT as ERRNO_TEXT
from kernel_sim.errnos import strerror
from kernel_sim.geom.md import MD_TYPE_NAMES
from kernel_sim.humanize import humanize_number
from kernel_sim.kern.sysapi import O_RDWR, S_IFMT, S_IFREG, Sys, SysError
from kernel_sim.userland.commands._util import bsd_getopt
from kernel_sim.userland.commands._util import realpath as guest_realpath

PROG = "mdconfig"
OPTSTRING = "ab:df:lno:rs:S:t:u:vx:y:L:"
DEV_BSIZE = 512

USAGE = (
    "usage: mdconfig -a -t type [-n] [-o [no]option] ... [-f file]\n"
    "                [-s size] [-S sectorsize] [-u unit] [-L label]\n"
    "                [-x sectors/track] [-y heads/cylinder]\n"
    "       mdconfig -d -u unit [-o [no]force]\n"
    "       mdconfig -r -u unit -s size [-o [no]force]\n"
    "       mdconfig -l [-v] [-n] [-f file] [-u unit]\n"
    "       mdconfig file\n"
    "\t\ttype = {malloc, vnode, swap}\n"
    "\t\toption = {cache, cluster, compress, force,\n"
    "\t\t          readonly, reserve, ro, verify}\n"
    "\t\tsize = %d (512 byte blocks), %db (B),\n"
    "\t\t       %dk (kB), %dm (MB), %dg (GB), \n"
    "\t\t       %dt (TB), or %dp (PB)\n"
)

_OPTIONS = {"async": MD_ASYNC, "cache": MD_CACHE, "cluster": MD_CLUSTER, "compress": MD_COMPRESS,
            "force": MD_FORCE, "readonly": MD_READONLY, "ro": MD_READONLY, "reserve": MD_RESERVE,
            "verify": MD_VERIFY}
_TYPES = {"malloc": MD_MALLOC, "vnode": MD_VNODE, "swap": MD_SWAP, "null": MD_NULL}
_SHIFTS = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}


PATH_MAX = 1024                 # sys/sys/syslimits.h: the buffers md_file and md_label point to
_FILE_PTR, _LABEL_PTR = 0x1000, 0x2000   # "addresses" of those buffers in the caller's memory


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class MdctlError(Exception):
    """An md ioctl that failed: `errno` is what ioctl(2) returned."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


class MdctlPort(Protocol):
    """/dev/mdctl's ioctl entry: (errno, the struct copied back out). MdDriver.ioctl is one."""

    def ioctl(self, cmd: int, data: bytes, user: dict[int, bytearray] | None = None) -> tuple[int, bytes]: ...


class SysMdctl:
    """ioctl(2) on an open /dev/mdctl descriptor of a guest process."""

    def __init__(self, sys: Sys, fd: int) -> None:
        self.sys = sys
        self.fd = fd

    def ioctl(self, cmd: int, data: bytes, user: dict[int, bytearray] | None = None) -> tuple[int, bytes]:
        try:
            return 0, self.sys.ioctl(self.fd, cmd, data, user)
        except SysError as exc:
            return exc.errno, data


class MdctlClient:
    """md(4)'s requests as mdconfig.c makes them: a struct md_ioctl per call, strings through pointers."""

    def __init__(self, port: MdctlPort) -> None:
        self.port = port

    def _call(self, cmd: int, mdio: MdIoctl, user: dict[int, bytearray] | None = None) -> MdIoctl:
        errno, out = self.port.ioctl(cmd, mdio.pack(), user or {})
        if errno:
            raise MdctlError(errno)
        return MdIoctl.unpack(out)

    def attach(self, type_: int, mediasize: int = 0, *, unit: int = 0, sectorsize: int = 0, options: int = 0,
               file: str = "", label: str = "", fwheads: int = 0, fwsectors: int = 0) -> int:
        user = {_FILE_PTR: bytearray(PATH_MAX)}
        raw = file.encode("utf-8", "surrogateescape")[:PATH_MAX - 1]
        user[_FILE_PTR][:len(raw)] = raw
        mdio = MdIoctl(md_unit=unit, md_type=type_, md_file=_FILE_PTR, md_mediasize=mediasize,
                       md_sectorsize=sectorsize, md_options=options, md_fwheads=fwheads, md_fwsectors=fwsectors)
        if label:
            user[_LABEL_PTR] = bytearray(label.encode("utf-8", "surrogateescape") + b"\0")
            mdio.md_label = _LABEL_PTR
        return self._call(MDIOCATTACH, mdio, user).md_unit

    def detach(self, unit: int, *, options: int = 0) -> None:
        self._call(MDIOCDETACH, MdIoctl(md_unit=unit, md_options=options))

    def resize(self, unit: int, size: int, *, options: int = 0) -> None:
        self._call(MDIOCRESIZE, MdIoctl(md_unit=unit, md_mediasize=size, md_options=options))

    def query(self, unit: int) -> dict[str, Any]:
        user = {_FILE_PTR: bytearray(PATH_MAX), _LABEL_PTR: bytearray(PATH_MAX)}
        q = self._call(MDIOCQUERY, MdIoctl(md_unit=unit, md_file=_FILE_PTR, md_label=_LABEL_PTR), user)

        def text(ptr: int) -> str:
            return bytes(user[ptr]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

        return {"unit": unit, "type": q.md_type, "options": q.md_options, "mediasize": q.md_mediasize,
                "sectorsize": q.md_sectorsize, "file": text(_FILE_PTR), "label": text(_LABEL_PTR)}

    def list(self) -> list[int]:
        """MDIOCLIST: md_pad[0] units follow; a -1 after them says the list was cut at MDNPAD - 2."""
        pad = self._call(MDIOCLIST, MdIoctl()).md_pad
        return [u for u in pad[1:1 + min(pad[0], MDNPAD - 2)] if u >= 0]


def _strtoumax(text: str) -> tuple[int, str]:
    """strtoumax(text, &end, 0): the value and the unparsed rest (0 and all of it when nothing parses)."""
    s = text.lstrip()
    i = 1 if s[:1] in "+-" else 0
    neg = s[:1] == "-"
    base, digits = 10, "0123456789"
    if s[i:i + 2].lower() == "0x" and s[i + 2:i + 3].lower() in "0123456789abcdef" and s[i + 2:i + 3]:
        base, digits, i = 16, "0123456789abcdef", i + 2
    elif s[i:i + 1] == "0":
        base, digits = 8, "01234567"
    j = i
    while j < len(s) and s[j].lower() in digits:
        j += 1
    if j == i:
        return 0, text
    value = min(int(s[i:j], base), (1 << 64) - 1)
    return ((-value) % (1 << 64) if neg else value), s[j:]


def humanize(n: int) -> str:
    """humanize_number(buf, 6, n, "", HN_AUTOSCALE, HN_B | HN_NOSPACE | HN_DECIMAL), as mdconfig.c calls it."""
    return humanize_number(n, 6)


def mdconfig(port: MdctlPort | Callable[[], MdctlPort], argv: list[str], *,
             realpath: Callable[[str], str] = os.path.realpath, stat: Callable[[str], Any] = os.stat,
             writable: Callable[[str], bool] = lambda p: os.access(p, os.W_OK)) -> tuple[int, str, str]:
    """Run `mdconfig argv...` (argv without the program name): (exit status, stdout, stderr).

    `port` is /dev/mdctl: an object with md's ioctl() (the MdDriver), or a function that opens it after
    the arguments are checked (raising MdctlError when the open fails), as the tool opens /dev/mdctl.
    `realpath`, `stat` (st_mode, st_size; OSError) and `writable` see the files -f names."""
    out: list[str] = []
    err: list[str] = []
    try:
        status = _main(port, argv, out, err, realpath, stat, writable)
    except _Exit as exc:
        status = exc.status
    return status, "".join(out), "".join(err)


def main(sys: Sys, argv: list[str]) -> int:
    """The guest's mdconfig: /dev/mdctl through this process's descriptors, -f paths in the guest VFS."""
    fds: list[int] = []

    def open_mdctl() -> MdctlPort:
        try:
            fds.append(sys.open("/dev/mdctl", O_RDWR))
        except SysError as exc:
            raise MdctlError(exc.errno) from None
        return SysMdctl(sys, fds[-1])

    try:
        status, out, err = mdconfig(open_mdctl, argv[1:], realpath=lambda p: _os_call(guest_realpath, sys, p),
                                    stat=lambda p: _StatView(_os_call(lambda s, q: s.stat(q), sys, p)),
                                    writable=lambda p: _writable(sys, p))
    finally:
        for fd in fds:
            sys.close(fd)
    if out:
        sys.write(1, out.encode("utf-8", "surrogateescape"))
    if err:
        sys.write(2, err.encode("utf-8", "surrogateescape"))
    return status


class _StatView:
    """A guest Stat seen through the two os.stat_result fields md_set_file() reads."""

    def __init__(self, st: Any) -> None:
        self.st_mode = st.mode
        self.st_size = st.size


def _os_call(fn: Callable[..., Any], sys: Sys, path: str) -> Any:
    try:
        return fn(sys, path)
    except SysError as exc:
        raise OSError(exc.errno, strerror(exc.errno), path) from None


def _writable(sys: Sys, path: str) -> bool:
    """access(path, W_OK) as the tool asks it: can this process open the file for writing?"""
    try:
        fd = sys.open(path, O_RDWR)
    except SysError:
        return False
    sys.close(fd)
    return True


def _main(port: MdctlPort | Callable[[], MdctlPort], argv: list[str], out: list[str], err: list[str],
          realpath: Callable[[str], str], stat: Callable[[str], Any], writable: Callable[[str], bool]) -> int:
    def usage() -> None:
        err.append(USAGE)
        raise _Exit(1)

    def errx(msg: str) -> None:
        err.append(f"{PROG}: {msg}\n")
        raise _Exit(1)

    if not argv:
        usage()
    action = "UNSET"
    options = 0
    mdtype = MD_MALLOC
    mediasize = sectorsize = fwsectors = fwheads = 0
    label = ""
    nflag = vflag = False
    fflag = sflag = tflag = uflag = None
    opts, operands = bsd_getopt(argv, OPTSTRING, PROG, err)
    for ch, optarg in opts:
        if ch in "adrl":
            name = {"a": "ATTACH", "d": "DETACH", "r": "RESIZE", "l": "LIST"}[ch]
            if action not in ("UNSET", name):
                others = {"a": "-d, -r, and -l", "d": "-a, -r, and -l", "r": "-a, -d, and -l",
                          "l": "-a, -r, and -d"}[ch]
                errx(f"-{ch} is mutually exclusive with {others}")
            action = name
            if ch != "a":
                options |= MD_AUTOUNIT
        elif ch == "n":
            nflag = True
        elif ch == "t":
            if tflag is not None:
                errx("-t can be passed only once")
            tflag = optarg
            if optarg not in _TYPES:
                errx(f"unknown type: {optarg}")
            mdtype = _TYPES[optarg]
            options |= MD_AUTOUNIT | MD_COMPRESS if mdtype == MD_MALLOC else MD_CLUSTER | MD_AUTOUNIT | MD_COMPRESS
        elif ch == "f":
            if fflag is not None:
                errx("-f can be passed only once")
            try:
                fflag = realpath_strict(realpath, optarg)
            except OSError as exc:
                errx(f"realpath: {ERRNO_TEXT.get(exc.errno or 0, exc.strerror)}")
        elif ch == "o":
            name = optarg[2:] if optarg.startswith("no") and optarg[2:] in _OPTIONS else optarg
            if name not in _OPTIONS:
                errx(f"unknown option: {optarg}")
            if name is optarg:
                options |= _OPTIONS[name]
            else:
                options &= ~_OPTIONS[name]
        elif ch == "S":
            sectorsize = _strtoumax(optarg)[0] & 0xFFFFFFFF
        elif ch == "s":
            if sflag is not None:
                errx("-s can be passed only once")
            sflag = optarg
            value, rest = _strtoumax(optarg)
            if not rest:
                mediasize = value * DEV_BSIZE
            elif rest[0].lower() in _SHIFTS:
                mediasize = value << _SHIFTS[rest[0].lower()]
            else:
                errx("unknown suffix on -s argument")
            mediasize &= (1 << 64) - 1
            if mediasize >= 1 << 63:                   # off_t
                mediasize -= 1 << 64
        elif ch == "u":
            uflag = optarg.removeprefix("/dev/").removeprefix("md")
        elif ch == "v":
            vflag = True
        elif ch == "x":
            fwsectors = _strtoumax(optarg)[0] & 0xFFFFFFFF
        elif ch == "y":
            fwheads = _strtoumax(optarg)[0] & 0xFFFFFFFF
        elif ch == "L":
            label = optarg
        else:
            usage()

    if action == "UNSET":
        action = "ATTACH"
    mdfile = ""
    if action == "ATTACH":
        if tflag is None:
            if fflag is not None or operands:
                mdtype = MD_VNODE
                options |= MD_CLUSTER | MD_AUTOUNIT | MD_COMPRESS
            elif sflag is not None:
                mdtype = MD_SWAP
                options |= MD_CLUSTER | MD_AUTOUNIT | MD_COMPRESS
            else:
                errx("unable to determine type")
        if (fflag is not None or operands) and mdtype != MD_VNODE:
            errx("only -t vnode can be used with file name")
        if mdtype == MD_VNODE:
            if fflag is not None:
                if operands:
                    usage()
                given = fflag
            else:
                if len(operands) != 1:
                    usage()
                given = operands[0]
            mdfile, mediasize = _set_file(given, mediasize, realpath, stat, errx)
            if not options & MD_READONLY and not writable(mdfile):
                err.append(f"{PROG}: WARNING: opening backing store: {mdfile} readonly\n")
                options |= MD_READONLY
        if mdtype in (MD_MALLOC, MD_SWAP, MD_NULL) and sflag is None:
            errx("must specify -s for -t malloc, -t swap, or -t null")
        if mdtype == MD_VNODE and not mdfile:
            errx("must specify -f for -t vnode")
    else:
        if sectorsize:
            errx("-S can only be used with -a")
        if action != "RESIZE" and sflag is not None:
            errx("-s can only be used with -a and -r")
        if fwsectors:
            errx("-x can only be used with -a")
        if fwheads:
            errx("-y can only be used with -a")
        if fflag is not None and action != "LIST":
            errx("-f can only be used with -a and -l")
        if tflag is not None:
            errx("-t can only be used with -a")
        if operands:
            errx("file can only be used with -a")
        if action not in ("DETACH", "RESIZE") and options & ~MD_AUTOUNIT:
            errx("-o can only be used with -a, -d, and -r")
        if action == "DETACH" and options & ~(MD_FORCE | MD_AUTOUNIT):
            errx("only -o [no]force can be used with -d")
        if action == "RESIZE" and options & ~(MD_FORCE | MD_RESERVE | MD_AUTOUNIT):
            errx("only -o [no]force and -o [no]reserve can be used with -r")
    if action == "RESIZE" and sflag is None:
        errx("must specify -s for -r")
    if action != "LIST" and vflag:
        errx("-v can only be used with -l")
    unit = 0
    if uflag is not None:
        value, rest = _strtoumax(uflag)
        if rest or value >= 0xFFFFFFFF:
            errx(f"bad unit: {uflag}")
        unit = value
        options &= ~MD_AUTOUNIT

    def ioctl_failed(exc: MdctlError) -> int:
        err.append(f"{PROG}: ioctl(/dev/mdctl): {strerror(exc.errno)}\n")
        return 1

    try:
        driver = MdctlClient(port() if callable(port) and not hasattr(port, "ioctl") else port)  # type: ignore
    except MdctlError as exc:                                           # err(1, "open(/dev/%s)", MDCTL_NAME)
        errx(f"open(/dev/mdctl): {strerror(exc.errno)}")
        raise  # pragma: no cover - errx raises
    if action == "ATTACH":
        try:
            unit = driver.attach(mdtype, mediasize, unit=unit, sectorsize=sectorsize, options=options,
                                 file=mdfile, label=label, fwheads=fwheads, fwsectors=fwsectors)
        except MdctlError as exc:
            return ioctl_failed(exc)
        if options & MD_AUTOUNIT:
            out.append(f"{'' if nflag else 'md'}{unit}\n")
    elif action == "DETACH":
        if options & MD_AUTOUNIT:
            errx("-d requires -u")
        try:
            driver.detach(unit, options=options)
        except MdctlError as exc:
            return ioctl_failed(exc)
    elif action == "RESIZE":
        if options & MD_AUTOUNIT:
            errx("-r requires -u")
        try:
            driver.resize(unit, mediasize, options=options)
        except MdctlError as exc:
            return ioctl_failed(exc)
    else:
        if options & MD_AUTOUNIT:
            return _list(driver, None, vflag, fflag, nflag, out, listing=True)
        return _list(driver, uflag, vflag, fflag, nflag, out, listing=False)
    return 0


def realpath_strict(realpath: Callable[[str], str], path: str) -> str:
    """realpath(3) fails when the path does not exist; os.path.realpath does not."""
    resolved = realpath(path)
    if realpath is os.path.realpath and not os.path.exists(resolved):
        raise FileNotFoundError(2, "No such file or directory", path)
    return resolved


def _set_file(fn: str, mediasize: int, realpath: Callable[[str], str], stat: Callable[[str], Any],
              errx: Callable[[str], None]) -> tuple[str, int]:
    """md_set_file(): the full path, and the file's size when -s was not given."""
    try:
        path = realpath_strict(realpath, fn)
    except OSError as exc:
        errx(f"could not find full path for {fn}: {ERRNO_TEXT.get(exc.errno or 0, exc.strerror)}")
        raise  # pragma: no cover - errx raises
    try:
        st = stat(path)
    except OSError as exc:
        errx(f"could not open {fn}: {ERRNO_TEXT.get(exc.errno or 0, exc.strerror)}")
        raise  # pragma: no cover
    if st.st_mode & S_IFMT != S_IFREG:
        errx(f"{fn} is not a regular file")
    return path, mediasize or st.st_size


def _find(units: str, name: str) -> bool:
    """md_find(): a comma-separated list of names or numbers."""
    for u in units.split(","):
        u = u.removeprefix("/dev/")
        if name in (u, f"md{u}"):
            return True
    return False


def _list(driver: MdctlClient, units: str | None, verbose: bool, fflag: str | None, nflag: bool, out: list[str],
          *, listing: bool) -> int:
    """md_list(): names (space separated) or, with -v or a unit query, unit, type, size, file, label."""
    ffound = ufound = done = False
    for unit in driver.list():
        q = driver.query(unit)
        name = f"md{unit}"
        if not listing and units is not None:
            if not _find(units, name):
                continue
            ufound = True
        type_name = MD_TYPE_NAMES[q["type"]]
        file = None
        if type_name in ("vnode", "preload"):
            file = q["file"]
            if fflag is not None and fflag != file:
                continue
            ffound = True
        elif fflag is not None:
            continue
        out.append(name[2:] if nflag else name)
        if verbose or (not listing and fflag is None):
            out.append(f"\t{type_name}\t{humanize(q['mediasize']):>6}\t{file or '-'}\t{q['label']}")
        done = True
        out.append(" " if listing and not verbose else "\n")
    if listing and done and not verbose:
        out.append("\n")
    if not listing:
        return 0 if (ffound if fflag is not None else ufound) else 255
    return 0 if fflag is None or ffound else 255
