"""geom_map's configuration from device.hints, as sys/geom/geom_map.c g_map_parse_part reads it.

The parsing is kept apart from the GEOM graph so that the kernel (the MAP class tasting cfid0) and
the offline tool (``armboard flash map``) make the same split from the same code. The caller gives
the provider's name, size and sector size and a ``read(offset, length)`` over it; we return the
partitions geom_map would configure and print, through ``printf``, what FreeBSD prints.

What FreeBSD does, and so what we do (geom_map.c, FreeBSD 10-14; freebsd.md section 6):

* hint.map.N for N in 0..63 (MAP_MAXSLICE), in N order. ``at`` must equal the provider's name
  exactly; a missing or different ``at`` is skipped without a word.
* ``name`` is required; ``start`` and ``end`` are required and are either a whole number as
  strtouq(value, &op, 0) reads it (``*op == '\\0'``) or ``search:<start>:<step>:<key>`` as
  sscanf("search:%qi:%qi:%63c") reads it (find_marker). ``readonly`` is resource_int_value;
  ``offset`` (default 0) and ``dsize`` (default, and also when 0: size - offset) are strtouq numbers.
* Checks, in this order: "end" less than "start", then offset + dsize > size. Then g_slice_config.
* Every message, error or not, is printed only with bootverbose; a bad hint skips its partition
  (the kernel does not panic). If no provider results: ``MAP: No valid partition found at %s``.

Where FreeBSD's code has undefined or endless behaviour we choose, and say so:

* A search probe at a negative offset fails (g_io_check refuses negative offsets; for offsets in
  (-sectorsize, 0) C's rounddown and % would read before the buffer).
* find_marker reads roundup(strlen(key), sectorsize) bytes at rounddown(off, sectorsize) but compares
  strlen(key) bytes at off % sectorsize, so an unaligned probe can compare past its buffer (heap
  garbage on FreeBSD). Such a probe, and one whose read is cut short by the end of the media, does
  not match here.
* A search whose step is 0 or negative never leaves the media from below, so FreeBSD loops forever
  (the boot hangs) unless it matches at the start or, stepping back, before offset 0. We probe the
  same offsets and, instead of hanging, raise an InputError that says so, naming the hint's line.
* A ``readonly`` that is not a number is an InputError at its line (kernel_sim.loader.hints policy;
  FreeBSD would silently make the slice writable).
* FreeBSD does not check that a slice lies inside the media (g_slice_config: "XXX: check offset +
  length <= MEDIASIZE"), nor that offset <= size (dsize then comes out negative). We configure what
  FreeBSD configures; the GEOM layer's ``slice_config`` may refuse it with an errno, which prints
  ``MAP: g_slice_config returns %d for "%s"`` as FreeBSD does.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kernel_sim.errors import InputError
from kernel_sim.loader.hints import Hints

MAP_MAXSLICE = 64            # geom_map.c: hint.map.0 .. hint.map.63
MAP_MAX_MARKER_LEN = 64      # geom_map.c: key buffer; sscanf "%63c" fills at most 63 bytes
_U64 = (1 << 64) - 1
_Q_MAX, _Q_MIN = (1 << 63) - 1, -(1 << 63)
_ISSPACE = " \t\n\v\f\r"     # sys/sys/ctype.h isspace
# Above this many probes a bytes-backed search scans with a regular expression instead of probing.
_FAST_SCAN_PROBES = 1 << 16

Reader = Callable[[int, int], "bytes | None"]


@dataclass(frozen=True)
class MapPart:
    """One partition geom_map configured: the hint's values after parsing and searching."""

    index: int           # N of hint.map.N; also the slice (provider) index
    name: str            # the provider is map/<name>
    start: int           # from the beginning of the parent media
    end: int
    offset: int          # where the data begins inside the partition (sc->entry)
    dsize: int           # data size (sc->dsize); the slice's length
    readonly: bool
    where: str | None = field(default=None, compare=False)   # the hint line of hint.map.N.name

    @property
    def size(self) -> int:
        """end - start, as g_map_parse_part computes it."""
        return self.end - self.start

    @property
    def slice_start(self) -> int:
        """Where the slice (the provider's byte 0) lies on the parent: start + offset."""
        return self.start + self.offset

    @property
    def provider(self) -> str:
        return f"map/{self.name}"

    @property
    def has_provider(self) -> bool:
        """g_slice_config with length 0 configures no provider (it only deletes an old one)."""
        return self.dsize != 0


@dataclass(frozen=True)
class MapProblem:
    """A hint.map.N that geom_map skipped: FreeBSD's message (without newline) and the hint's line."""

    index: int
    message: str
    where: str | None


class BytesReader:
    """``read(offset, length)`` over bytes in memory (or an mmap): for tests and the offline tool.

    Like a GEOM read it is cut short at the end of the media; a negative offset fails (None).
    The search also uses ``data`` directly to scan large images quickly.
    """

    def __init__(self, data: bytes | bytearray | memoryview | mmap.mmap) -> None:
        self.data = data

    def __call__(self, offset: int, length: int) -> bytes | None:
        if offset < 0 or length < 0 or offset > len(self.data):
            return None
        return bytes(self.data[offset:offset + length])


def read_from(data: bytes | bytearray | memoryview | mmap.mmap) -> BytesReader:
    """A reader over ``data``, for parse_map_hints."""
    return BytesReader(data)


def jx(value: int) -> str:
    """printf("%jx") of an intmax_t: hex without 0x, negatives as 64-bit two's complement."""
    return format(value & _U64, "x")


def ju(value: int) -> str:
    """printf("%ju") of a value stored in an off_t."""
    return str(value & _U64)


def _to_off_t(value: int) -> int:
    """A u_quad_t stored into an off_t (int64_t)."""
    value &= _U64
    return value - (1 << 64) if value > _Q_MAX else value


def strtouq(text: str, base: int = 0) -> tuple[int, int]:
    """strtouq(3) as sys/libkern/strtouq.c: (value, index where parsing stopped).

    The stop index is 0 when no digit was read ("0x" with no hex digit after it included). Overflow
    saturates at UQUAD_MAX; a minus sign negates modulo 2**64. The value is returned as a u_quad_t.
    """
    i, n = 0, len(text)
    while i < n and text[i] in _ISSPACE:
        i += 1
    neg = False
    if i < n and text[i] in "+-":
        neg = text[i] == "-"
        i += 1
    if base in (0, 16) and text[i:i + 1] == "0" and text[i + 1:i + 2] in ("x", "X"):
        i += 2
        base = 16
    if base == 0:
        base = 8 if text[i:i + 1] == "0" else 10
    acc, any_digits, overflow = 0, False, False
    while i < n:
        digit = _digit(text[i])
        if digit is None or digit >= base:
            break
        acc = acc * base + digit
        overflow = overflow or acc > _U64
        any_digits = True
        i += 1
    if not any_digits:
        return 0, 0
    if overflow:
        return _U64, i
    return (-acc & _U64 if neg else acc), i


def _digit(ch: str) -> int | None:
    if "0" <= ch <= "9":
        return ord(ch) - ord("0")
    if "a" <= ch <= "z":
        return ord(ch) - ord("a") + 10
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    return None


def _number(value: str) -> int | None:
    """``strtouq(value, &op, 0)`` accepted only when ``*op == '\\0'``, as an off_t; else None."""
    number, stop = strtouq(value)
    return _to_off_t(number) if stop == len(value) else None


def _scan_qi(text: str, pos: int) -> tuple[int, int] | None:
    """One ``%qi`` of the kernel's vsscanf (sys/kern/subr_scanf.c): (value, new position) or None.

    Leading white space is skipped; at most 31 characters are taken (BUF - 1); a number that is only
    a sign fails; a trailing "0x" is given back as "0". The digits are converted by strtoq.
    """
    n = len(text)
    while pos < n and text[pos] in _ISSPACE:
        pos += 1
    if pos >= n:
        return None
    base, pfxok, signok, ndigits, nzdigits = 0, False, True, True, True
    buf: list[str] = []
    while pos < n and len(buf) < 31:
        c = text[pos]
        if c == "0":
            if base == 0:
                base, pfxok = 8, True
            if nzdigits:
                signok = nzdigits = ndigits = False
            else:
                signok = pfxok = ndigits = False
        elif "1" <= c <= "7":
            base = base or 10
            signok = pfxok = ndigits = False
        elif c in "89":
            base = base or 10
            if base <= 8:
                break
            signok = pfxok = ndigits = False
        elif c in "abcdefABCDEF":
            if base <= 10:
                break
            signok = pfxok = ndigits = False
        elif c in "+-":
            if not signok:
                break
            signok = False
        elif c in "xX":
            if not (pfxok and len(buf) == 1):
                break
            base, pfxok = 16, False
        else:
            break
        buf.append(c)
        pos += 1
    if ndigits:
        return None
    if buf[-1] in "xX":
        buf.pop()
        pos -= 1
    digits = "".join(buf)
    neg = digits.startswith("-")
    body = digits.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        body = body[2:]
    value = int(body, base) if body else 0
    value = -value if neg else value
    return max(_Q_MIN, min(_Q_MAX, value)), pos


@dataclass(frozen=True)
class _Search:
    start: int
    step: int
    key: bytes


def _parse_search(value: str) -> _Search | None:
    """sscanf(value, "search:%qi:%qi:%63c", ...) == 3, else None.

    The kernel's %63c copies 63 bytes from wherever the value starts (past its NUL), so the key is
    the rest of the value cut at 63 bytes: it may hold ':' and spaces.
    """
    prefix = "search:"
    if not value.startswith(prefix):
        return None
    first = _scan_qi(value, len(prefix))
    if first is None or value[first[1]:first[1] + 1] != ":":
        return None
    second = _scan_qi(value, first[1] + 1)
    if second is None or value[second[1]:second[1] + 1] != ":":
        return None
    rest = value[second[1] + 1:]
    if not rest:
        return None
    return _Search(first[0], second[0], rest.encode("utf-8")[:MAP_MAX_MARKER_LEN - 1])


def _rounddown(x: int, y: int) -> int:
    return (x // y) * y


def _roundup(x: int, y: int) -> int:
    return ((x + y - 1) // y) * y


def _key_matches(buf: bytes, at: int, key: bytes) -> bool:
    """memcmp of the key at buf[at:], with '.' in the key taking the buffer's byte (no escape)."""
    if at + len(key) > len(buf):
        return False
    window = buf[at:at + len(key)]
    return all(k == 0x2E or k == b for k, b in zip(key, window, strict=True))


def _probe(read: Reader, off: int, key: bytes, sectorsize: int, media_size: int) -> bool:
    """One probe of find_marker at ``off``: read the sectors FreeBSD reads and compare."""
    if off < 0:
        return False
    base = _rounddown(off, sectorsize)
    length = min(_roundup(len(key), sectorsize), media_size - base)
    buf = read(base, length)
    if buf is None:
        return False
    return _key_matches(buf, off - base, key)


def _scan_bytes(data: bytes | bytearray | memoryview | mmap.mmap, search: _Search, sectorsize: int,
                media_size: int) -> int | None:
    """find_marker over bytes in memory with a regular expression: the same answer as probing."""
    key = search.key
    body = b"".join(b"." if k == 0x2E else re.escape(bytes([k])) for k in key)
    pattern = re.compile(b"(?=" + body + b")", re.DOTALL)
    rlen = _roundup(len(key), sectorsize)
    limit = min(media_size, len(data))
    for m in pattern.finditer(data, max(search.start, 0), limit):
        off = m.start()
        if (off - search.start) % search.step:
            continue
        base = _rounddown(off, sectorsize)
        if off + len(key) <= min(base + rlen, media_size):
            return off
    return None


def find_marker(value: str, *, geom: str, media_size: int, sectorsize: int, read: Reader, bootverbose: bool,
                printf: Callable[[str], None], where: str | None = None) -> int | None:
    """A start or end hint's offset, as geom_map.c find_marker computes it, or None if unusable.

    A whole number is taken as is; otherwise ``search:<start>:<step>:<key>`` is probed from start
    while below the media size, stepping by step (with bootverbose the search line is printed first).
    """
    number = _number(value)
    if number is not None:
        return number
    search = _parse_search(value)
    if search is None:
        return None
    if bootverbose:
        key_text = search.key.decode("utf-8", "replace")
        printf(f'MAP: search {geom} for key "{key_text}" from 0x{jx(search.start)}, step 0x{jx(search.step)}\n')
    if not search.key:
        return None
    if search.step <= 0:
        if search.start >= media_size:
            return None
        # The loop stays below the media size for ever: it ends only at a match. Past offset 0 no probe can
        # match, so a search that has not matched by then is the endless loop FreeBSD would run.
        off = search.start
        while off >= 0:
            if _probe(read, off, search.key, sectorsize, media_size):
                return off
            if search.step == 0:
                break
            off += search.step
        what = "0" if search.step == 0 else f"negative ({search.step})"
        raise InputError(f"search step {what} in {value!r} and the key is not found: FreeBSD's find_marker "
                         "would loop forever here (the boot hangs)", where)
    if isinstance(read, BytesReader) and (media_size - search.start) // search.step > _FAST_SCAN_PROBES:
        return _scan_bytes(read.data, search, sectorsize, media_size)
    off = search.start
    while off < media_size:
        if _probe(read, off, search.key, sectorsize, media_size):
            return off
        off += search.step
    return None


class _Skip(Exception):
    """g_map_parse_part returned 1 after printing ``message``."""

    def __init__(self, message: str, where: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def _parse_part(hints: Hints, i: int, provider: str, media_size: int, sectorsize: int, read: Reader,
                bootverbose: bool, printf: Callable[[str], None]) -> MapPart:
    """g_map_parse_part for hint.map.<i>; raises _Skip with FreeBSD's message when it returns 1."""
    at = hints.find("map", i, "at")
    name_hint = hints.find("map", i, "name")
    if name_hint is None:
        raise _Skip(f"MAP: hint.map.{i} has no name", at.where if at else None)
    name = name_hint.value

    def location(what: str) -> int:
        hint = hints.find("map", i, what)
        if hint is None:
            raise _Skip(f'MAP: "{name}" has no {what} value', name_hint.where)
        off = find_marker(hint.value, geom=provider, media_size=media_size, sectorsize=sectorsize, read=read,
                          bootverbose=bootverbose, printf=printf, where=hint.where)
        if off is None:
            raise _Skip(f'MAP: "{name}" can\'t parse/use {what} value', hint.where)
        return off

    start = location("start")
    end = location("end")
    readonly = hints.int_value("map", i, "readonly") or 0

    def number(what: str) -> int:
        hint = hints.find("map", i, what)
        if hint is None:
            return 0
        value = _number(hint.value)
        if value is None:
            raise _Skip(f'MAP: "{name}" can\'t parse {what}', hint.where)
        return value

    offset = number("offset")
    dsize = number("dsize")
    size = end - start
    if dsize == 0:
        dsize = size - offset
    if end < start:
        raise _Skip(f'MAP: "{name}", "end" less than "start"', name_hint.where)
    if offset + dsize > size:
        raise _Skip(f'MAP: "{name}", "dsize" bigger than partition - offset', name_hint.where)
    return MapPart(i, name, start, end, offset, dsize, readonly != 0, name_hint.where)


def parse_map_hints(hints: Hints, provider: str, media_size: int, sector_size: int, read: Reader, *,
                    bootverbose: bool, printf: Callable[[str], None],
                    problems: list[MapProblem] | None = None,
                    slice_config: Callable[[MapPart], int] | None = None) -> list[MapPart]:
    """The partitions geom_map's taste of ``provider`` configures, in N order (g_map_taste).

    ``read(offset, length)`` reads the provider (None where g_read_data would fail). ``printf`` gets
    each line with its newline, only with ``bootverbose``, as the kernel prints them. ``problems``, if
    given, collects the skipped hints with FreeBSD's message and the hint's line whether or not
    bootverbose is set (the offline tool reports them). ``slice_config`` stands for g_slice_config:
    called for each part that passed the checks, before its MAP line; a non-zero errno skips it.
    Parts with dsize 0 are returned (FreeBSD prints their line) but configure no provider.
    """
    if sector_size <= 0:
        raise ValueError(f"sector size must be positive, not {sector_size}")
    parts: list[MapPart] = []
    for i in range(MAP_MAXSLICE):
        at = hints.lookup("map", i, "at")
        if at is None or at != provider:
            continue
        try:
            part = _parse_part(hints, i, provider, media_size, sector_size, read, bootverbose, printf)
            error = slice_config(part) if slice_config is not None else 0
            if error:
                raise _Skip(f'MAP: g_slice_config returns {error} for "{part.name}"', part.where)
        except _Skip as skip:
            if bootverbose:
                printf(skip.message + "\n")
            if problems is not None:
                problems.append(MapProblem(i, skip.message, skip.where))
            continue
        if bootverbose:
            printf(f'MAP: {provider}: {jx(part.start)}x{jx(part.size)}, data={jx(part.offset)}x{jx(part.dsize)} '
                   f'"/dev/map/{part.name}"\n')
        parts.append(part)
    if not any(part.has_provider for part in parts) and bootverbose:
        printf(f"MAP: No valid partition found at {provider}\n")
    return parts
