"""Numbers and sizes as FreeBSD's tools read and print them, and the line splitter the parsers share.

Every parser of the configure step reads numbers the same way, so a value means the same thing in a
kernel config, loader.conf, device.hints and on the command line:

* ``parse_int`` follows strtoul(3) with base 0 (``0x`` hex, leading-``0`` octal, decimal): that is how
  the kernel reads hint values (``resource_int_value`` in sys/kern/subr_hints.c).
* ``parse_size`` follows expand_number(3) (lib/libutil/expand_number.c) and mdconfig(8) ``-s``: a
  strtoumax base-0 number, so ``010k`` is 8 KiB as on FreeBSD, then one optional suffix
  b/k/m/g/t/p/e in powers of 1024. Without a suffix the number counts ``default_unit`` bytes (512 for
  tools that count sectors, as mdconfig does). In hex the letters ``b`` and ``e`` are digits, as for
  strtoumax: ``0x1b`` is 27 units, not 1 byte.
* ``format_size`` prints the largest unit that divides the size exactly ("9M", "1536K", "3G"), else
  bytes with a ``B`` suffix ("123B", "0B"). It never rounds, so ``parse_size(format_size(n)) == n``;
  humanize_number(3)-style rounding ("1.5M") would lose the exact value a user must type back.
"""

from __future__ import annotations

from kernel_sim.errors import InputError

_HEX, _OCT, _DEC = frozenset("0123456789abcdefABCDEF"), frozenset("01234567"), frozenset("0123456789")


def _is_int_body(body: str) -> bool:
    """One strtoul(3) base-0 literal: 0x hex, 0-prefixed octal (a lone "0" included), or decimal.
    Plain string tests, not `re`: every boot reads its numbers through here."""
    if body[:2] in ("0x", "0X"):
        return len(body) > 2 and set(body[2:]) <= _HEX
    if body[:1] == "0":
        return set(body[1:]) <= _OCT
    return body[:1] in _DEC and set(body) <= _DEC


def _split_size(text: str) -> tuple[str, str] | None:
    """(number, suffix letter or "") of `<literal>[letter]`, the longest literal first, or None."""
    if _is_int_body(text):
        return text, ""
    if len(text) > 1 and text[-1].isascii() and text[-1].isalpha() and _is_int_body(text[:-1]):
        return text[:-1], text[-1]
    return None

# expand_number(3) (lib/libutil/expand_number.c): each suffix is a power of 1024.
SIZE_SHIFTS: dict[str, int] = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
# expand_number stores into a uint64_t and fails with ERANGE beyond it.
SIZE_MAX = (1 << 64) - 1

_NUMBER_FORMS = "decimal, 0x hexadecimal or 0-prefixed octal"


# Longer literals are junk, and Python refuses to convert decimal strings of more than 4300 digits.
MAX_DIGITS = 1000


def _int_value(body: str, text: str, where: str | None) -> int:
    """The value of one strtoul base-0 literal already matched by _INT_BODY."""
    if len(body) > MAX_DIGITS:
        raise InputError(f"the number {text[:24]}... is far too large (over {MAX_DIGITS} digits)", where)
    if body[:2] in ("0x", "0X"):
        return int(body[2:], 16)
    if body.startswith("0"):
        return int(body, 8) if len(body) > 1 else 0
    return int(body, 10)


def parse_int(text: str, *, where: str | None = None) -> int:
    """Read ``text`` as strtoul(3) with base 0 would, but reject what strtoul would silently stop at.

    A leading ``-`` is accepted and gives a negative result (strtoul negates; the kernel then stores
    the value in an int, so ``-1`` means -1); callers check their own range. Surrounding white space is
    ignored. Anything else that is not a whole number is an InputError naming ``where``.
    """
    stripped = text.strip()
    if not stripped:
        raise InputError(f"expected a number ({_NUMBER_FORMS}), got nothing", where)
    sign, body = (stripped[0], stripped[1:]) if stripped[0] in "+-" else ("", stripped)
    if not _is_int_body(body):
        import re  # the error path only

        if re.fullmatch(r"[+-]?0[0-9]+", stripped):
            raise InputError(
                f"{stripped!r} is not a number: a leading 0 means octal, and 8 and 9 are not octal digits",
                where,
            )
        raise InputError(f"{stripped!r} is not a number (expected {_NUMBER_FORMS})", where)
    value = _int_value(body, stripped, where)
    return -value if sign == "-" else value


def parse_size(text: str, *, where: str | None = None, default_unit: int = 1) -> int:
    """Read a size the way expand_number(3) and mdconfig(8) do and return it in bytes.

    ``default_unit`` is the size of one unit when there is no suffix (1 for byte counts, 512 for tools
    that count sectors). Empty, negative, fractional, overflowing or garbled sizes raise InputError.
    """
    if default_unit < 1:
        raise ValueError(f"default_unit must be positive, not {default_unit}")
    stripped = text.strip()
    if not stripped:
        raise InputError("the size is empty", where)
    if stripped.startswith("-"):
        raise InputError(f"size {stripped} is negative; sizes must be 0 or more", where)
    parts = _split_size(stripped)
    if parts is None:
        import re  # the error path only

        frac = re.fullmatch(r"([0-9]*\.[0-9]+|[0-9]+\.[0-9]*)([a-zA-Z]?)", stripped)
        if frac is not None:
            raise InputError(_fraction_message(stripped, frac, default_unit), where)
        if re.fullmatch(r"0[0-9]+[a-zA-Z]?", stripped):
            raise InputError(
                f"size {stripped!r} is not a number: a leading 0 means octal, and 8 and 9 are not "
                "octal digits",
                where,
            )
        raise InputError(
            f"{stripped!r} is not a size (expected a number with an optional b, k, m, g or t suffix)",
            where,
        )
    number, letter = parts
    suffix = letter.lower()
    if suffix == "x":  # "0x" with no digits: strtoumax would stop after the 0
        raise InputError(f"{stripped!r} is not a size: 0x must be followed by hexadecimal digits", where)
    if suffix and suffix not in SIZE_SHIFTS:
        raise InputError(
            f"size {stripped!r} has an unknown suffix {letter!r} (use b, k, m, g, t, p or e)",
            where,
        )
    value = _int_value(number, stripped, where)
    value = value << SIZE_SHIFTS[suffix] if suffix else value * default_unit
    if value > SIZE_MAX:
        raise InputError(f"size {stripped} is too large: the largest size is {SIZE_MAX} bytes", where)
    return value


def _fraction_message(text: str, frac, default_unit: int) -> str:
    """Explain that sizes are whole numbers, suggesting the exact equivalent when there is one."""
    from decimal import Decimal, InvalidOperation  # only on the error path: slow to import

    message = f"size {text} is not a whole number; fractions are not accepted"
    suffix = frac.group(2).lower()
    if suffix and suffix not in SIZE_SHIFTS:
        return message
    try:
        exact = Decimal(frac.group(1)) * ((1 << SIZE_SHIFTS[suffix]) if suffix else default_unit)
    except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
        return message
    if exact == exact.to_integral_value() and 0 <= exact <= SIZE_MAX:
        return f"{message} (write {format_size(int(exact))} instead)"
    return message


def format_size(n: int) -> str:
    """Print ``n`` bytes exactly, with the largest suffix that divides it: 9M, 1536K, 3G, 123B, 0B."""
    if n < 0:
        raise ValueError(f"a size cannot be negative: {n}")
    if n:
        for suffix in "EPTGMK":
            shift = SIZE_SHIFTS[suffix.lower()]
            if n % (1 << shift) == 0:
                return f"{n >> shift}{suffix}"
    return f"{n}B"


def split_lines(text: str) -> list[str]:
    """Split on newlines only (not str.splitlines' form feeds and separators) so line numbers match editors.

    A trailing carriage return is dropped from each line (files written on Windows).
    """
    return [line.removesuffix("\r") for line in text.split("\n")]
