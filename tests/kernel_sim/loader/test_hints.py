"""device.hints(5): parsing, resource lookup as resource_find does it, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.loader.hints import Hint, Hints, hints_from_env, parse_hints, parse_hints_text

# A copy of /work/shared/reference/geom_map-example.hints kept beside the tests, so they run anywhere.
GEOM_MAP_EXAMPLE = Path(__file__).with_name("geom_map-example.hints")
SHARED_EXAMPLE = Path("/work/shared/reference/geom_map-example.hints")


@pytest.fixture
def example() -> Path:
    return GEOM_MAP_EXAMPLE


def test_the_copy_matches_the_shared_reference() -> None:
    if not SHARED_EXAMPLE.exists():
        pytest.skip(f"{SHARED_EXAMPLE} is not available here")
    assert GEOM_MAP_EXAMPLE.read_bytes() == SHARED_EXAMPLE.read_bytes()


def test_geom_map_example_parses(example: Path) -> None:
    hints = parse_hints(example)
    assert hints.units("map") == [0, 1, 2, 3, 4, 5]
    names = [hints.lookup("map", unit, "name") for unit in hints.units("map")]
    assert names == ["bootloader", "factory", "upgrade", "kernel", "rootfs", "config"]
    assert all(hints.lookup("map", unit, "at") == "cfid0" for unit in range(6))
    assert hints.int_value("map", 0, "start") == 0
    assert hints.int_value("map", 0, "end") == 0x30000
    assert hints.int_value("map", 0, "readonly") == 1
    assert hints.int_value("map", 1, "readonly") is None
    assert hints.lookup("map", 3, "end") == "search:0x00100000:0x10000:.!/bin/sh"
    assert hints.lookup("map", 4, "start") == "search:0x00100000:0x10000:.!/bin/sh"
    first = hints.find("map", 0, "at")
    assert first is not None and first.where == f"{example}:4"
    env = hints.to_env()
    assert env["hint.map.5.end"] == "0x00800000"
    assert len(env) == len(hints) == 25


def test_search_value_is_not_a_number(example: Path) -> None:
    hints = parse_hints(example)
    with pytest.raises(InputError) as info:
        hints.int_value("map", 3, "end")
    assert info.value.where == f"{example}:22"
    assert info.value.message == (
        "hint.map.3.end=search:0x00100000:0x10000:.!/bin/sh is not a number "
        "(expected decimal, 0x hexadecimal or 0-prefixed octal)"
    )


def test_lookup_exact_unit_then_wildcard() -> None:
    hints = parse_hints_text("hint.uart.-1.baud=115200\nhint.uart.1.baud=9600\nhint.uart.-1.flags=0x10\n", "h")
    assert hints.lookup("uart", 1, "baud") == "9600"
    assert hints.lookup("uart", 0, "baud") == "115200"
    assert hints.lookup("uart", -1, "baud") == "115200"
    assert hints.int_value("uart", 7, "flags") == 0x10
    assert hints.lookup("uart", 0, "irq") is None
    assert hints.lookup("pl011", 0, "baud") is None
    assert hints.int_value("uart", 0, "irq") is None
    assert hints.units("uart") == [-1, 1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("010", 8),
        ("0x10", 16),
        ("-1", -1),
        ("0xffffffff", -1),  # stored in an int, as resource_int_value does
        ("0x7fffffff", 0x7FFF_FFFF),
        ("2147483648", -(1 << 31)),
        ("-2147483648", -(1 << 31)),
    ],
)
def test_int_value_is_strtoul_into_an_int(value: str, expected: int) -> None:
    hints = parse_hints_text(f'hint.x.0.v="{value}"\n', "h")
    assert hints.int_value("x", 0, "v") == expected


@pytest.mark.parametrize(
    ("value", "wording"),
    [
        ("yes", "hint.x.0.v=yes is not a number"),
        ("08", "hint.x.0.v=08 is not a number"),
        ("0x100000000", "hint.x.0.v=0x100000000 does not fit in 32 bits"),
        ("-2147483649", "hint.x.0.v=-2147483649 does not fit in 32 bits"),
    ],
)
def test_int_value_errors_name_the_hint_line(value: str, wording: str) -> None:
    hints = parse_hints_text(f"# c\nhint.x.0.v={value}\n", "dev.hints")
    with pytest.raises(InputError) as info:
        hints.int_value("x", 0, "v")
    assert info.value.where == "dev.hints:2"
    assert wording in info.value.message


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("hint.map.0.at=cfid0", "cfid0"),
        ('hint.map.0.at="cfid0"', "cfid0"),
        ('  hint.map.0.at = "cfid0"  ', "cfid0"),
        ("\thint.map.0.at=cfid0\t# comment", "cfid0"),
        ('hint.map.0.at="a b"', "a b"),
        ('hint.map.0.at=" padded "', " padded "),
        ("hint.map.0.at=x=y", "x=y"),
    ],
)
def test_line_forms(line: str, value: str) -> None:
    (hint,) = parse_hints_text(line + "\n", "h").entries
    assert hint == Hint("map", 0, "at", value, "h:1")
    assert hint.key == "hint.map.0.at"


def test_resource_names_may_contain_dots_and_dashes() -> None:
    (hint,) = parse_hints_text("hint.gpioled.0.pin.name-x=1\n", "h").entries
    assert (hint.driver, hint.unit, hint.name) == ("gpioled", 0, "pin.name-x")


def test_blank_comment_and_crlf_lines() -> None:
    hints = parse_hints_text("# only a comment\r\n\r\n   \r\nhint.a.0.b=1\r\n#x\n", "h")
    assert hints.to_env() == {"hint.a.0.b": "1"}
    assert hints.entries[0].where == "h:4"


@pytest.mark.parametrize(
    ("text", "line", "wording"),
    [
        ("map.0.at=cfid0\n", 1, "not a hint: lines must look like hint.<driver>.<unit>.<name>=<value>"),
        ("\nvfs.root.mountfrom=ufs:/dev/md0\n", 2, "not a hint"),
        ("hint.map.0.at\n", 1, "hint.map.0.at has no value: write hint.map.0.at=<value>"),
        ("hint.map.0=1\n", 1, "malformed hint 'hint.map.0': expected hint.<driver>.<unit>.<name>=<value>"),
        ("hint..0.at=1\n", 1, "malformed hint 'hint..0.at'"),
        ("hint.map..at=1\n", 1, "malformed hint"),
        ("hint.map.0.=1\n", 1, "malformed hint"),
        ("hint.9map.0.at=1\n", 1, "bad driver name '9map' in hint.9map.0.at"),
        ("hint.m-p.0.at=1\n", 1, "bad driver name 'm-p'"),
        ("hint." + "d" * 33 + ".0.at=1\n", 1, "is longer than 32 characters"),
        ("hint.map.x.at=1\n", 1, "bad unit 'x' in hint.map.x.at: a unit is a decimal number, or -1 for any unit"),
        ("hint.map.-2.at=1\n", 1, "bad unit '-2'"),
        ("hint.map.+1.at=1\n", 1, "bad unit '+1'"),
        ("hint.map.99999999999.at=1\n", 1, "bad unit '99999999999'"),
        ("hint.map.2147483648.at=1\n", 1, "bad unit '2147483648'"),
        ("hint.map.0.a t=1\n", 1, "bad resource name 'a t'"),
        ("hint.map.0." + "n" * 33 + "=1\n", 1, "resource name '" + "n" * 33 + "' in hint.map.0."),
        (
            'hint.map.0.end="search:0:1:#!/bin/sh"\n',
            1,
            "unterminated quote in the value of hint.map.0.end ('#' starts a comment even inside quotes)",
        ),
        ('hint.map.0.name="boot\n', 1, "unterminated quote in the value of hint.map.0.name"),
        ('hint.map.0.name="\n', 1, "unterminated quote"),
        ('hint.map.0.name="a"b"\n', 1, "the value of hint.map.0.name contains a quote"),
        ('hint.map.0.name=a"b"\n', 1, "misplaced quote in the value of hint.map.0.name"),
        (
            "hint.map.0.name=boot loader\n",
            1,
            'the value of hint.map.0.name contains spaces: write hint.map.0.name="boot loader"',
        ),
        ("hint.map.0.name=\n", 1, "hint.map.0.name has an empty value, which FreeBSD ignores as an invalid hint"),
        ('hint.map.0.name=""\n', 1, "has an empty value"),
        ("hint.map.0.name=# all comment\n", 1, "has an empty value"),
        (
            "hint.map.0.at=a\nhint.map.1.at=b\nhint.map.0.at=c\n",
            3,
            "hint.map.0.at is set twice (first at f.hints:1); remove one",
        ),
    ],
)
def test_errors_name_file_line(text: str, line: int, wording: str) -> None:
    with pytest.raises(InputError) as info:
        parse_hints_text(text, "f.hints")
    assert info.value.where == f"f.hints:{line}"
    assert wording in info.value.message


def test_unterminated_quote_without_hash_does_not_blame_comments() -> None:
    with pytest.raises(InputError) as info:
        parse_hints_text('hint.a.0.b="x\n', "h")
    assert "comment" not in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        parse_hints(tmp_path / "device.hints")
    assert str(info.value) == f"{tmp_path / 'device.hints'}: cannot open hints file: No such file or directory (ENOENT)"


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "device.hints"
    path.write_bytes(b"hint.a.0.b=\xff\xfe\n")
    with pytest.raises(InputError, match=r"hints file is not a text file \(invalid UTF-8"):
        parse_hints(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=" is a directory"):
        parse_hints(tmp_path)


def test_to_text_round_trips(example: Path) -> None:
    hints = parse_hints(example)
    again = parse_hints_text(hints.to_text(), "copy")
    assert again.to_env() == hints.to_env()


def test_hints_from_env() -> None:
    env = {"vfs.root.mountfrom": "ufs:/dev/md0", "hint.uart.0.at": "fdt", "hint.uart.0.baud": "115200"}
    origin = {"hint.uart.0.at": "loader.conf:4"}
    hints = hints_from_env(env, origin)
    assert [(h.key, h.value, h.where) for h in hints] == [
        ("hint.uart.0.at", "fdt", "loader.conf:4"),
        ("hint.uart.0.baud", "115200", "kenv"),
    ]
    with pytest.raises(InputError) as info:
        hints_from_env({"hint.uart.x.at": "fdt"}, {"hint.uart.x.at": "loader.conf:9"})
    assert info.value.where == "loader.conf:9" and "bad unit 'x'" in info.value.message
    with pytest.raises(InputError, match="has an empty value"):
        hints_from_env({"hint.uart.0.at": ""}, {})


def test_empty_hints() -> None:
    hints = Hints()
    assert len(hints) == 0 and hints.to_env() == {} and hints.to_text() == ""
    assert hints.lookup("map", 0, "at") is None


# -- generated files ---------------------------------------------------------------------------------

_DRIVER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,31}", fullmatch=True)
_UNIT = st.one_of(st.just(-1), st.integers(min_value=0, max_value=(1 << 31) - 1))
_NAME = st.from_regex(r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,31}", fullmatch=True)
_VALUE = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"#'), min_size=1, max_size=60)
_HINT = st.tuples(_DRIVER, _UNIT, _NAME, _VALUE)


@given(
    st.lists(_HINT, max_size=20, unique_by=lambda h: (h[0], h[1], h[2])),
    st.sampled_from(['{k}="{v}"', "{k}={v}", '  {k} = "{v}"  # note', "{k}={v}\t#"]),
    st.booleans(),
)
def test_generated_hint_files_round_trip(hints: list[tuple[str, int, str, str]], form: str, crlf: bool) -> None:
    newline = "\r\n" if crlf else "\n"
    lines = ["# generated"]
    for driver, unit, name, value in hints:
        lines.append(form.format(k=f"hint.{driver}.{unit}.{name}", v=value))
        lines.append("")
    parsed = parse_hints_text(newline.join(lines) + newline, "gen.hints")
    assert [(h.driver, h.unit, h.name, h.value) for h in parsed] == hints
    assert [h.where for h in parsed] == [f"gen.hints:{2 + 2 * i}" for i in range(len(hints))]
    for driver, unit, name, value in hints:
        assert parsed.lookup(driver, unit, name) == value
    assert parse_hints_text(parsed.to_text(), "again").to_env() == parsed.to_env()


@given(st.text(max_size=120) | st.lists(st.sampled_from(list('hint.map0-1=" #\t\r\nx9')), max_size=60).map("".join))
def test_arbitrary_text_raises_only_input_error(text: str) -> None:
    try:
        hints = parse_hints_text(text, "fuzz.hints")
    except InputError as err:
        assert err.where is not None and err.where.startswith("fuzz.hints:")
        return
    for hint in hints:
        try:
            hints.int_value(hint.driver, hint.unit, hint.name)
        except InputError as err:
            assert err.where == hint.where
