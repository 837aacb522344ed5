"""Kernel tunables and kmem options, checked before the guest runs (bad input: exit 2, no boot).

A tunable is read as FreeBSD's kernel reads it (sys/kern/kern_environment.c): getenv_quad runs strtoq
with base 0 (0x hex, leading-0 octal, decimal, after optional white space and sign), which saturates
at QUAD_MAX / QUAD_MIN instead of failing, then accepts at most one more character, a k/m/g/t suffix
that multiplies by 1024 per step (in 64 bits, wrapping); anything else makes getenv_quad return 0, so
the kernel keeps its default. TUNABLE_INT_FETCH is getenv_int, which is getenv_quad followed by an
`(int)` cast: the low 32 bits, as a signed number.

armboard refuses what FreeBSD would quietly change: a value getenv_quad ignores is an error, and so
is one outside the tunable's range, where the message also says what FreeBSD would really take
(``debug.init_procs="99999999999999999999"``: strtoq stops at QUAD_MAX, the int cast keeps 0xffffffff,
so FreeBSD would start -1, that is no, processes). A mistyped value is far more often meant than
FreeBSD's wrapped one, and a boot that silently differs from what was asked teaches the wrong thing.
"""

from __future__ import annotations

from collections import namedtuple

from kernel_sim.errors import InputError
from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE
from kernel_sim.vm.kmem import kmeminit

KMEM_OPTIONS = ("VM_KMEM_SIZE", "VM_KMEM_SIZE_SCALE", "VM_KMEM_SIZE_MIN", "VM_KMEM_SIZE_MAX")
HZ_DEFAULT = 1000   # sys/kern/subr_param.c: HZ on arm

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1       # int is 32 bits on arm (sys/arm/include/_limits.h)
QUAD_MIN, QUAD_MAX = -(1 << 63), (1 << 63) - 1     # sys/sys/limits.h: what strtoq saturates at

# strtoq(3), base 0 (sys/libkern/strtoq.c): white space as the kernel's isspace, a sign, then the
# longest run of digits of the base the prefix selects ("0x" needs a hex digit, else it is "0").
_SPACE = " \t\n\v\f\r"
_HEX, _OCT, _DEC = frozenset("0123456789abcdefABCDEF"), frozenset("01234567"), frozenset("0123456789")
_SUFFIX_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}   # getenv_quad's fall-through switch


def _run(text: str, start: int, chars: frozenset[str]) -> int:
    """The end of the run of `chars` that begins at `start`."""
    end = start
    while end < len(text) and text[end] in chars:
        end += 1
    return end


def _strtoq_prefix(text: str) -> tuple[str, str, int] | None:
    """(sign, digits, end) of what strtoq reads at the start of `text`, or None if it reads nothing."""
    i = len(text) - len(text.lstrip(_SPACE))
    sign = text[i] if text[i:i + 1] in ("+", "-") else ""
    i += len(sign)
    if text[i:i + 2] in ("0x", "0X") and text[i + 2:i + 3] in _HEX and text[i + 2:i + 3]:
        end = _run(text, i + 2, _HEX)
    elif text[i:i + 1] == "0":
        end = _run(text, i + 1, _OCT)
    elif text[i:i + 1] in _DEC and text[i:i + 1]:
        end = _run(text, i, _DEC)
    else:
        return None
    return sign, text[i:end], end


def _strtoq_and_suffix(text: str) -> tuple[int, int, list[str]] | None:
    """(the number as written, what getenv_quad stores, how FreeBSD changed it), or None where
    getenv_quad returns 0."""
    read = _strtoq_prefix(text)
    if read is None:
        return None
    sign, digits, end = read
    rest = text[end:]
    if len(rest) > 1 or rest.lower() not in _SUFFIX_SHIFT:
        return None
    base = 16 if digits[:2] in ("0x", "0X") else 8 if digits.startswith("0") else 10
    body = (digits[2:] if base == 16 else digits).lstrip("0") or "0"
    shift = _SUFFIX_SHIFT[rest.lower()]
    # past QUAD_MAX in any base beyond 32 digits: no need to convert a huge literal to know that
    number = QUAD_MAX + 1 if len(body) > 32 else int(body, base)
    number = -number if sign == "-" else number
    exact = number << shift                                          # what the text means
    steps = []
    value = max(QUAD_MIN, min(QUAD_MAX, number))                     # strtoq: ERANGE, clamped
    if value != number:
        steps.append(f"strtoq stops at {'QUAD_MAX' if value > 0 else 'QUAD_MIN'}")
    stored = (value << shift) & ((1 << 64) - 1)                     # iv *= 1024 per step, in 64 bits
    stored = stored - (1 << 64) if stored > QUAD_MAX else stored
    if stored != value << shift:
        steps.append(f"the {rest} multiplication wraps in 64 bits to {stored}")
    return exact, stored, steps


def getenv_quad(text: str) -> int | None:
    """What getenv_quad stores for ``text``, or None where it returns 0 (the kernel keeps its default)."""
    read = _strtoq_and_suffix(text)
    return None if read is None else read[1]


def c_int(quad: int) -> int:
    """getenv_int's `(int) tmp`: the low 32 bits of the quad, signed."""
    low = quad & 0xFFFF_FFFF
    return low - (1 << 32) if low > INT_MAX else low


class Tunable(namedtuple("Tunable", "name fetch default minimum maximum meaning also", defaults=(None,))):
    """One tunable the Python kernel reads: how FreeBSD would fetch it and what armboard accepts."""

    __slots__ = ()

    name: str
    fetch: str  # "int" (TUNABLE_INT_FETCH, getenv_int) or "quad" (TUNABLE_QUAD_FETCH)
    default: int
    minimum: int
    maximum: int
    meaning: str  # what the value counts, for the range message
    also: int | None  # one more value outside the range with a meaning of its own (kern.hz -1)


TUNABLES = {t.name: t for t in (
    # armboard's own: how many processes init starts (each takes a kernel stack); read as an int.
    Tunable("debug.init_procs", "int", 0, 0, INT_MAX, "a number of processes"),
    # armboard's own: bytes of page-sized mallocs, read as a quad (a byte count beyond 4 GiB is legal,
    # the arena just runs out first).
    Tunable("debug.kmem_stress", "quad", 0, 0, QUAD_MAX, "a number of bytes"),
    # sys/kern/subr_param.c init_param1: hz = -1; TUNABLE_INT_FETCH("kern.hz", &hz); -1 means HZ; then
    # tick = 1000000 / hz, so 0 divides by zero and a negative hz makes every timeout negative.
    Tunable("kern.hz", "int", HZ_DEFAULT, 1, INT_MAX, "clock ticks per second", also=-1),
)}


def _range_text(t: Tunable) -> str:
    hi = {INT_MAX: "INT_MAX", QUAD_MAX: "QUAD_MAX"}.get(t.maximum, str(t.maximum))
    extra = f", or {t.also} for the default" if t.also is not None else ""
    return f"{t.minimum}..{hi}{extra}"


def tunable_value(env: dict[str, str], name: str, origin: dict[str, str] | None = None) -> int:
    """The value of tunable ``name`` (its default when unset), checked as the module docstring says;
    an InputError names where it was set (loader.conf:line, -g NAME=VALUE) and what FreeBSD would take."""
    t = TUNABLES[name]
    if name not in env:
        return t.default
    text = env[name]
    where = (origin or {}).get(name, name)
    read = _strtoq_and_suffix(text)
    if read is None:
        raise InputError(f'{name}="{text}" is not a number (decimal, 0x hexadecimal or 0-prefixed octal, with '
                         f"an optional k, m, g or t suffix); FreeBSD's getenv_quad would ignore it and keep "
                         f"the default {t.default}", where)
    exact, quad, steps = read
    value = quad
    if t.fetch == "int":
        value = c_int(quad)
        if value != quad:
            steps.append(f"the int cast keeps the low 32 bits, 0x{quad & 0xFFFF_FFFF:08x}")
    if value == exact and (t.minimum <= value <= t.maximum or value == t.also):
        return t.default if value == t.also else value
    message = f'{name}="{text}" is out of range: it is {t.meaning}, {_range_text(t)}'
    if value != exact:
        message += f"; FreeBSD's getenv_{t.fetch} would take {value} ({', '.join(steps)})"
    raise InputError(message, where)


# debug.wild_access is read by the guest itself, in initarm (kernel_sim/guest/initarm.c parse_u32): decimal
# or 0x hexadecimal digits up to the first other character, accumulated in a u32 that wraps.
WILD_ACCESS = "debug.wild_access"


def wild_access_address(env: dict[str, str], origin: dict[str, str] | None = None) -> int | None:
    """debug.wild_access as initarm's parse_u32 reads it, or None when unset; an InputError where the
    guest would read another address than the one written (and which one)."""
    if WILD_ACCESS not in env:
        return None
    text = env[WILD_ACCESS]
    where = (origin or {}).get(WILD_ACCESS, WILD_ACCESS)
    hexa = text[:2] in ("0x", "0X")
    digits = text[2:] if hexa else text
    if not digits or not set(digits) <= (_HEX if hexa else _DEC):
        raise InputError(f'{WILD_ACCESS}="{text}" is not an address (decimal or 0x hexadecimal digits only: '
                         "initarm's parse_u32 stops at the first other character)", where)
    base = 16 if hexa else 10
    if len(text) > 40 or int(digits, base) > 0xFFFF_FFFF:
        guest = 0
        for ch in digits:
            guest = (guest * base + int(ch, 16)) & 0xFFFF_FFFF
        raise InputError(f'{WILD_ACCESS}="{text}" is out of range: an address is 32 bits (0..0xffffffff); '
                         f"initarm's parse_u32 would wrap it to 0x{guest:08x}", where)
    return int(digits, base)


def _kmem_options(options: dict[str, object]) -> dict[str, int | None]:
    return {name: options[name] for name in KMEM_OPTIONS if options.get(name) is not None}


def check_inputs(physmem: int, devmap_va: int, options: dict[str, object], env: dict[str, str],
                 origin: dict[str, str] | None = None) -> None:
    """Refuse bad kmem options and tunables before the guest runs (InputError naming them, and the
    file:line that set them when ``origin`` says)."""
    kmeminit(v_page_count=max(1, physmem // PAGE_SIZE), physmem=physmem, kernel_map_size=devmap_va - KERNBASE,
             options=_kmem_options(options), tunables=env)
    for name in TUNABLES:
        tunable_value(env, name, origin)
    wild_access_address(env, origin)
