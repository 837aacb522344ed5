"""device.hints(5): ``hint.<driver>.<unit>.<name>=<value>`` lines that tell drivers where devices are.

The format is what sys/kern/subr_hints.c accepts (``sscanf "hint.%32[^.].%d.%32[^=]=%128s"``): a
driver name without dots (here: a C identifier) of at most 32 characters, a decimal unit (``-1`` is the
wildcard unit), a resource name of at most 32 characters and a non-empty value. config(8)
(usr.sbin/config/mkmakefile.c makehints) cuts each line at its first ``#``, even inside quotes, which is
why a geom_map search key writes ``.`` (any byte) for ``#``. We do the same.

A value may be quoted; the quotes are not part of it. Inside quotes spaces are kept (as when loader(8)
reads the file); an unquoted value must be one word.

The kernel prints "CONFIG: invalid hint '%s'" for a malformed hint and ignores it. We raise an
InputError at file:line instead: the user must fix the file, since an ignored hint changes the device
layout silently. For the same reason a hint set twice is an error (FreeBSD would use the first).

Lookups follow resource_find: the exact unit first, then unit -1. ``int_value`` follows
resource_int_value: strtoul base 0, stored in an int; a value that is not a number is an InputError
naming the hint's line where FreeBSD returns EFTYPE.
"""

from __future__ import annotations

import os
from collections import namedtuple

from kernel_sim.errors import InputError, read_text_file
from kernel_sim.loader.sizes import parse_int, split_lines

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from kernel_sim.errors import StrPath

# sys/kern/subr_hints.c res_find: "hint.%32[^.].%d.%32[^=]=%128s"
HINT_NAME_MAX = 32
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
_DRIVER_CHARS = _LETTERS | _DIGITS
_RESNAME_CHARS = _DRIVER_CHARS | frozenset("-.")


# Names are checked with string tests, not `re`: every boot reads the hints of its config.
def _is_driver_name(text: str) -> bool:
    return text[:1] in _LETTERS and bool(text) and set(text) <= _DRIVER_CHARS


def _is_resource_name(text: str) -> bool:
    return text[:1] in _DRIVER_CHARS and bool(text) and set(text) <= _RESNAME_CHARS


def _is_unit(text: str) -> bool:
    return text == "-1" or (bool(text) and set(text) <= _DIGITS)
_INT_MAX = (1 << 31) - 1
_FORM = "hint.<driver>.<unit>.<name>=<value>"


class Hint(namedtuple("Hint", "driver unit name value where")):
    """One hint and the line it came from."""

    __slots__ = ()

    driver: str
    unit: int
    name: str
    value: str
    where: str

    @property
    def key(self) -> str:
        """The kernel environment name, "hint.<driver>.<unit>.<name>"."""
        return f"hint.{self.driver}.{self.unit}.{self.name}"


class Hints:
    """The hints of one file, in file order."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[Hint] | None = None) -> None:
        self.entries = [] if entries is None else entries

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __iter__(self) -> Iterator[Hint]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, driver: str, unit: int, name: str) -> Hint | None:
        """The hint resource_find would return: exact unit first, then the wildcard unit -1."""
        for want in (unit, -1) if unit != -1 else (-1,):
            for hint in self.entries:
                if hint.driver == driver and hint.unit == want and hint.name == name:
                    return hint
        return None

    def lookup(self, driver: str, unit: int, name: str) -> str | None:
        """The hint's value as a string (resource_string_value), or None if there is none."""
        hint = self.find(driver, unit, name)
        return hint.value if hint is not None else None

    def int_value(self, driver: str, unit: int, name: str) -> int | None:
        """The hint's value as resource_int_value reads it (strtoul base 0 into an int), or None.

        A value that is not a number, or does not fit 32 bits, raises InputError at the hint's line.
        """
        hint = self.find(driver, unit, name)
        if hint is None:
            return None
        try:
            value = parse_int(hint.value)
        except InputError:
            raise InputError(
                f"{hint.key}={hint.value} is not a number (expected decimal, 0x hexadecimal or "
                "0-prefixed octal)",
                hint.where,
            ) from None
        if not -(1 << 31) <= value <= (1 << 32) - 1:
            raise InputError(f"{hint.key}={hint.value} does not fit in 32 bits", hint.where)
        value &= 0xFFFF_FFFF
        return value - (1 << 32) if value > _INT_MAX else value

    def units(self, driver: str) -> list[int]:
        """The distinct units hinted for ``driver``, in increasing order (-1 included if present)."""
        return sorted({hint.unit for hint in self.entries if hint.driver == driver})

    def to_env(self) -> dict[str, str]:
        """The hints as kernel environment variables, "hint.x.y.z" -> value, in file order."""
        return {hint.key: hint.value for hint in self.entries}

    def to_text(self) -> str:
        """The hints as a device.hints file, each value quoted."""
        return "".join(f'{hint.key}="{hint.value}"\n' for hint in self.entries)


def _parse_key(key: str, where: str) -> tuple[str, int, str]:
    """Split and check "hint.<driver>.<unit>.<name>"."""
    parts = key.split(".", 3)
    if len(parts) != 4 or parts[0] != "hint" or not all(parts[1:]):
        raise InputError(f"malformed hint {key!r}: expected {_FORM}", where)
    _, driver, unit_text, name = parts
    if not _is_driver_name(driver):
        raise InputError(
            f"bad driver name {driver!r} in {key}: use letters, digits and _, not starting with a digit",
            where,
        )
    if len(driver) > HINT_NAME_MAX:
        raise InputError(
            f"driver name {driver!r} in {key} is longer than {HINT_NAME_MAX} characters", where
        )
    if not _is_unit(unit_text) or len(unit_text) > 10 or int(unit_text) > _INT_MAX:
        raise InputError(
            f"bad unit {unit_text!r} in {key}: a unit is a decimal number, or -1 for any unit", where
        )
    if not _is_resource_name(name):
        raise InputError(f"bad resource name {name!r} in {key}: use letters, digits, _, - and .", where)
    if len(name) > HINT_NAME_MAX:
        raise InputError(
            f"resource name {name!r} in {key} is longer than {HINT_NAME_MAX} characters", where
        )
    return driver, int(unit_text), name


def _parse_line(line: str, where: str) -> Hint | None:
    """One line of a hints file: a Hint, or None for a blank or comment line."""
    had_comment = "#" in line
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    if not text.startswith("hint."):
        raise InputError(f"not a hint: lines must look like {_FORM}", where)
    key, sep, value = text.partition("=")
    key = key.rstrip()
    if not sep:
        raise InputError(f"{key} has no value: write {key}=<value>", where)
    driver, unit, name = _parse_key(key, where)
    value = value.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            note = " ('#' starts a comment even inside quotes)" if had_comment else ""
            raise InputError(f"unterminated quote in the value of {key}{note}", where)
        value = value[1:-1]
        if '"' in value:
            raise InputError(f"the value of {key} contains a quote, which hints cannot hold", where)
    elif '"' in value:
        raise InputError(f"misplaced quote in the value of {key}: quote the whole value", where)
    elif any(ch.isspace() for ch in value):
        raise InputError(f'the value of {key} contains spaces: write {key}="{value}"', where)
    if not value:
        raise InputError(f"{key} has an empty value, which FreeBSD ignores as an invalid hint", where)
    return Hint(driver, unit, name, value, where)


def parse_hints_text(text: str, origin: str) -> Hints:
    """Parse device.hints text; ``origin`` names it in "origin:line" (a path, or a test's name)."""
    hints = Hints()
    seen: dict[tuple[str, int, str], Hint] = {}
    for lineno, line in enumerate(split_lines(text), start=1):
        hint = _parse_line(line, f"{origin}:{lineno}")
        if hint is None:
            continue
        ident = (hint.driver, hint.unit, hint.name)
        if ident in seen:
            raise InputError(
                f"{hint.key} is set twice (first at {seen[ident].where}); remove one", hint.where
            )
        seen[ident] = hint
        hints.entries.append(hint)
    return hints


def parse_hints(path: StrPath) -> Hints:
    """Read a device.hints file."""
    p = os.fspath(path)
    return parse_hints_text(read_text_file(p, what="hints file"), p)


def hints_from_env(env: Mapping[str, str], origin: Mapping[str, str]) -> Hints:
    """The ``hint.*`` variables of a kernel environment (e.g. from loader.conf), checked like a file's.

    ``origin`` maps a variable to where it was set; variables without one are reported as "kenv".
    """
    hints = Hints()
    for key, value in env.items():
        if not key.startswith("hint."):
            continue
        where = origin.get(key, "kenv")
        driver, unit, name = _parse_key(key, where)
        if not value:
            raise InputError(f"{key} has an empty value, which FreeBSD ignores as an invalid hint", where)
        hints.entries.append(Hint(driver, unit, name, value, where))
    return hints
