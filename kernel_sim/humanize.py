"""humanize_number(3) (lib/libutil/humanize_number.c) as the FreeBSD tools call it.

Why one module: geom(8), df(1) and mdconfig(8) print sizes through the same libutil routine, so the
kernel's geom listing and the guest's commands share this one copy.
"""

from __future__ import annotations


def humanize_number(n: int, length: int, *, divisor: int = 1024) -> str:
    """humanize_number(buf, length, n, "", HN_AUTOSCALE, HN_B | HN_NOSPACE | HN_DECIMAL) (lib/libutil):
    at most length - 1 characters, one decimal below 10, B/K/M/G/T/P/E."""
    prefixes = "BKMGTPE"
    deccut = 950 if divisor == 1000 else 973
    sign, baselen = (-1, 3) if n < 0 else (1, 2)
    quotient, remainder, i = abs(n), 0, 0
    maxv = 10 ** (length - baselen)
    while (quotient >= maxv or (quotient == maxv - 1 and (remainder >= deccut or remainder >= divisor // 2))) \
            and i < len(prefixes) - 1:
        remainder = quotient % divisor
        quotient //= divisor
        i += 1
    if ((quotient == 9 and remainder < deccut) or quotient < 9) and i > 0:
        s1 = quotient + ((remainder * 10 + divisor // 2) // divisor // 10)
        s2 = ((remainder * 10 + divisor // 2) // divisor) % 10
        return f"{sign * s1}.{s2}{prefixes[i]}"
    return f"{sign * (quotient + (remainder + divisor // 2) // divisor)}{prefixes[i]}"
