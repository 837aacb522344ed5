"""Sizes and numbers as FreeBSD's tools read them; the shared line splitter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import (
    SIZE_MAX,
    format_size,
    parse_int,
    parse_size,
    split_lines,
)

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("1k", KIB),
        ("1K", KIB),
        ("9m", 9 * MIB),
        ("9M", 9 * MIB),
        ("3G", 3 * GIB),
        ("2t", 2 << 40),
        ("1p", 1 << 50),
        ("1e", 1 << 60),
        ("123b", 123),
        ("123B", 123),
        ("0x10", 16),
        ("0X10", 16),
        ("0x1m", MIB),
        ("0x1b", 0x1B),  # in hex, b is a digit (strtoumax), not the bytes suffix
        ("010k", 8 * KIB),  # leading 0 is octal, as expand_number's strtoumax base 0
        ("0k", 0),
        ("  8m \t", 8 * MIB),
    ],
)
def test_parse_size_accepts_freebsd_forms(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("16", 16 * 512), ("16b", 16), ("1k", KIB), ("0x2", 1024), ("0", 0)],
)
def test_parse_size_default_unit_counts_sectors(text: str, expected: int) -> None:
    assert parse_size(text, default_unit=512) == expected


@pytest.mark.parametrize(
    ("text", "wording"),
    [
        ("", "the size is empty"),
        ("   ", "the size is empty"),
        ("-1", "size -1 is negative; sizes must be 0 or more"),
        ("-4k", "size -4k is negative"),
        ("1.5M", "size 1.5M is not a whole number; fractions are not accepted (write 1536K instead)"),
        ("0.5k", "(write 512B instead)"),
        ("1.3b", "size 1.3b is not a whole number; fractions are not accepted"),
        ("abc", "'abc' is not a size (expected a number with an optional b, k, m, g or t suffix)"),
        ("9 M", "'9 M' is not a size"),
        ("12kb", "'12kb' is not a size"),
        ("1q", "size '1q' has an unknown suffix 'q' (use b, k, m, g, t, p or e)"),
        ("0x", "'0x' is not a size: 0x must be followed by hexadecimal digits"),
        ("08", "a leading 0 means octal, and 8 and 9 are not octal digits"),
        ("16e", "size 16e is too large: the largest size is 18446744073709551615 bytes"),
        ("18446744073709551616", "is too large"),
        ("9" * 2000, "is far too large (over 1000 digits)"),
        ("1_000", "'1_000' is not a size"),
        ("+5", "'+5' is not a size"),
    ],
)
def test_parse_size_rejects_bad_sizes_with_where(text: str, wording: str) -> None:
    with pytest.raises(InputError) as info:
        parse_size(text, where="board.toml:7")
    assert info.value.where == "board.toml:7"
    assert wording in info.value.message
    assert str(info.value).startswith("board.toml:7: ")


def test_parse_size_fraction_suggestion_uses_default_unit() -> None:
    with pytest.raises(InputError, match=r"write 768B instead"):
        parse_size("1.5", default_unit=512)


def test_parse_size_rejects_nonpositive_default_unit() -> None:
    with pytest.raises(ValueError):
        parse_size("1", default_unit=0)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (9 * MIB, "9M"),
        (512 * KIB, "512K"),
        (1536 * KIB, "1536K"),
        (3 * GIB, "3G"),
        (1 << 40, "1T"),
        (1 << 50, "1P"),
        (1 << 60, "1E"),
        (123, "123B"),
        (0, "0B"),
        (1025, "1025B"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_format_size_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_size(-1)


@given(st.integers(min_value=0, max_value=SIZE_MAX))
def test_size_round_trip(n: int) -> None:
    assert parse_size(format_size(n)) == n
    assert parse_size(format_size(n), default_unit=512) == n  # the suffix always wins


@given(st.integers(min_value=0, max_value=1 << 30), st.sampled_from([0, 10, 20, 30]))
def test_size_round_trip_of_round_sizes(k: int, shift: int) -> None:
    n = k << shift
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("42", 42),
        ("0x2a", 42),
        ("0X2A", 42),
        ("052", 42),
        ("00", 0),
        ("-1", -1),
        ("+7", 7),
        (" 0x10 ", 16),
        ("4294967295", 0xFFFF_FFFF),
    ],
)
def test_parse_int_is_strtoul_base_0(text: str, expected: int) -> None:
    assert parse_int(text) == expected


@pytest.mark.parametrize(
    ("text", "wording"),
    [
        ("", "expected a number (decimal, 0x hexadecimal or 0-prefixed octal), got nothing"),
        ("  ", "got nothing"),
        ("abc", "'abc' is not a number (expected decimal, 0x hexadecimal or 0-prefixed octal)"),
        ("0x", "'0x' is not a number"),
        ("12abc", "'12abc' is not a number"),
        ("1.0", "'1.0' is not a number"),
        ("1_000", "'1_000' is not a number"),
        ("09", "'09' is not a number: a leading 0 means octal, and 8 and 9 are not octal digits"),
        ("1 2", "'1 2' is not a number"),
        ("--1", "'--1' is not a number"),
        ("9" * 1001, "is far too large"),
    ],
)
def test_parse_int_rejects_garbage_with_where(text: str, wording: str) -> None:
    with pytest.raises(InputError) as info:
        parse_int(text, where="device.hints:3")
    assert info.value.where == "device.hints:3"
    assert wording in info.value.message


@given(st.integers(min_value=0, max_value=(1 << 64) - 1), st.sampled_from(["{:d}", "0x{:x}", "0{:o}"]))
def test_parse_int_round_trip(n: int, form: str) -> None:
    assert parse_int(form.format(n)) == n


def test_split_lines_keeps_editor_line_numbers() -> None:
    assert split_lines("a\r\nb\x0cc\n") == ["a", "b\x0cc", ""]


@given(st.text(max_size=40) | st.lists(st.sampled_from(list("0123456789xXabkmgtpeB.-+ _")), max_size=25).map("".join))
def test_arbitrary_text_raises_only_input_error(text: str) -> None:
    for parse in (parse_size, parse_int):
        try:
            parse(text, where="w")
        except InputError as err:
            assert err.where == "w"
