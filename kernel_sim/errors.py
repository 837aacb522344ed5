"""Bad user input (exit status 2, not a guest failure): the error, and the check every file a user names
goes through before it is read.

Every file argument (--kernconf, --loader-conf, --hints, --mfsroot, --md-image, --md-vnode, --kernel,
--kernel-footprint, --flash, --board FILE, kernel config ``include`` and ``makeoptions MFS_IMAGE``,
loader.conf modules, flash layouts and their part files, mkuzip's input, `dump show`'s file) is
checked by ``check_input_file`` on stat(2), never by opening it: opening a FIFO for reading blocks
until a writer comes, and reading /dev/zero never ends. Text inputs are read by ``read_text_file``
with a size bound that the error names. These live here, beside InputError, because the boot path
reads its inputs through them and must not import a module more for it.
"""

from __future__ import annotations

import os
import stat

from kernel_sim.errnos import describe_host

TYPE_CHECKING = False   # typing and pathlib cost imports on every boot; annotations are strings here
if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]   # a path as the user gave it: text or an os.PathLike

KIB, MIB = 1 << 10, 1 << 20
# The bound for every text input (kernel configs, loader.conf, device.hints, layouts, board profiles).
# FreeBSD's largest real one, sys/conf/NOTES, is about 100 KiB; ten times that is still a config,
# beyond it the file is not one (or is a device that never ends) and reading it would only fill memory.
TEXT_LIMIT = 1 * MIB

# What stat(2)'s S_IFMT says a path is, in ls(1)/file(1)'s words, for "not a regular file (KIND)".
_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"),
          (stat.S_ISSOCK, "socket"))


class InputError(Exception):
    """A malformed or out-of-range input: reported as one line naming what and where."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def format_limit(n: int) -> str:
    """A limit as a person reads it: "1 MiB", "64 KiB", "512 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _article(what: str) -> str:
    return "an" if what[:1].lower() in "aeiou" else "a"


def check_input_file(path: StrPath, *, what: str, where: str | None = None, limit: int | None = None,
                     block_devices: bool = False, writable: bool = False) -> os.stat_result:
    """stat(2) a file the user named and return the result, or raise one InputError saying why it cannot
    be read: missing, a directory, not a regular file (character device, FIFO, socket, block device),
    unreadable, or (with ``limit``) larger than the limit for ``what``.

    ``what`` names the file's role ("kernel config", "module file"). With ``where`` (an option such as
    ``--mfsroot`` or the file:line that named the file) the message names the path too; without it the
    path is the place. ``block_devices`` admits a block device (mkuzip reads disks); ``writable`` also
    asks for write access (a flash image or vnode that programs write through).
    """
    p = os.fspath(path)
    shown = f"{what} {p}" if where else what
    loc = where or str(p)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise InputError(f"cannot open {shown}: {describe_host(exc)}", loc) from None
    except ValueError:                      # a NUL byte in the path
        raise InputError(f"cannot open {shown}: the path contains a NUL byte", loc) from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise InputError(f"{shown} is a directory", loc)
    if not stat.S_ISREG(mode) and not (block_devices and stat.S_ISBLK(mode)):
        kind = next((name for test, name in _KINDS if test(mode)), f"file type 0{stat.S_IFMT(mode):o}")
        raise InputError(f"{shown} is not a regular file ({kind})", loc)
    need = os.R_OK | (os.W_OK if writable else 0)
    if not os.access(p, need):
        raise InputError(f"cannot open {shown} for {'writing' if writable else 'reading'}: Permission denied", loc)
    if limit is not None and stat.S_ISREG(mode) and st.st_size > limit:
        raise InputError(f"{shown} is {st.st_size} bytes, larger than the {format_limit(limit)} limit for "
                         f"{_article(what)} {what}", loc)
    return st


def read_input_bytes(path: StrPath, *, what: str, where: str | None = None, limit: int) -> bytes:
    """The bytes of a regular file the user named, checked first and read with at most ``limit`` bytes
    (a file that grew past the limit after the check is refused, not read to its end)."""
    check_input_file(path, what=what, where=where, limit=limit)
    p = os.fspath(path)
    shown = f"{what} {p}" if where else what
    loc = where or str(p)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {shown}: {describe_host(exc)}", loc) from None
    if len(data) > limit:
        raise InputError(f"{shown} is larger than the {format_limit(limit)} limit for {_article(what)} {what}", loc)
    return data


def read_text_file(path: StrPath, *, what: str, where: str | None = None, limit: int = TEXT_LIMIT) -> str:
    """Return the UTF-8 text of a user's input file, or raise one InputError that says what went wrong.

    Every configure-step parser reads through here so that a missing file, a directory, a device, an
    unreadable, oversized or binary file is reported as bad input (exit status 2) and never as a Python
    traceback. ``what``, ``where`` and ``limit`` are as for check_input_file.
    """
    data = read_input_bytes(path, what=what, where=where, limit=limit)
    p = os.fspath(path)
    shown = f"{what} {p}" if where else what
    loc = where or str(p)
    if b"\0" in data:
        raise InputError(f"{shown} is not a text file (it contains NUL bytes)", loc)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown} is not a text file (invalid UTF-8 at byte {exc.start})", loc) from None
    return text.removeprefix("\ufeff")
