"""parse_int and parse_size read numbers with string tests instead of `re` (every boot reads its
numbers through them): the patterns they replaced are the oracle here, on structured and random text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import parse_int, parse_size

_INT_BODY = r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*"
_OLD_INT = re.compile(rf"([+-]?)({_INT_BODY})")
_OLD_SIZE = re.compile(rf"({_INT_BODY})([a-zA-Z]?)")

numbers = st.one_of(st.from_regex(r"[+-]?(0[xX][0-9a-fA-FkmgKMG]{0,5}|[0-9]{1,6})[a-zA-Z]?", fullmatch=True),
                    st.text(alphabet="0123456789xXabefkmgtKMG+- .", max_size=10))


def outcome(fn, text):
    try:
        return fn(text)
    except InputError:
        return "error"


@given(numbers)
def test_parse_int_accepts_what_the_old_pattern_accepted(text):
    accepted = _OLD_INT.fullmatch(text.strip()) is not None
    assert (outcome(parse_int, text) != "error") == accepted


@given(numbers)
def test_parse_size_splits_number_and_suffix_as_the_old_pattern(text):
    stripped = text.strip()
    m = _OLD_SIZE.fullmatch(stripped)
    got = outcome(parse_size, text)
    if m is None or stripped.startswith("-"):
        assert got == "error"
    elif m.group(2).lower() in ("", "b", "k", "m", "g", "t", "p", "e"):
        body = m.group(1)
        base = 16 if body[:2] in ("0x", "0X") else 8 if body.startswith("0") and len(body) > 1 else 10
        value = int(body[2:] if base == 16 else body, base)
        shift = {"": None, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}[m.group(2).lower()]
        expected = value if shift is None else value << shift
        assert got == (expected if expected < 1 << 64 else "error")
    else:
        assert got == "error"


@pytest.mark.parametrize("text, value", [("0x1b", 27), ("0x1bk", 27 << 10), ("1e", 1 << 60), ("0b", 0),
                                         ("010k", 8 << 10), ("  64M ", 64 << 20)])
def test_hex_digits_b_and_e_are_digits_not_suffixes(text, value):
    assert parse_size(text) == value
