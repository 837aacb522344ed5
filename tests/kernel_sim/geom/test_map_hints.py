"""geom_map's hints (kernel_sim.geom.map_hints): parsing and search as g_map_parse_part and find_marker do it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.geom import map_hints
from kernel_sim.geom.map_hints import MapPart, find_marker, jx, parse_map_hints, read_from, strtouq
from kernel_sim.loader.hints import parse_hints_text

MIB, KIB = 1 << 20, 1 << 10

# The MAP lines of geom_map(4)'s example (../shared/seeds/geom_map.4.txt, FreeBSD 9.2), whose
# format had no geom name yet: "MAP: %jxx%jx, ..." and "MAP: search key ..." (start 0 prints "0x...").
MAN_PAGE_MAP_LINES = [
    'MAP: 0x30000, data=0x30000 "/dev/map/bootloader"',
    'MAP: 30000x10000, data=0x10000 "/dev/map/factory"',
    'MAP: 40000x7a0000, data=0x7a0000 "/dev/map/upgrade"',
    'MAP: search key ".!/bin/sh" from 0x100000, step 0x10000',
    'MAP: 40000x110000, data=0x110000 "/dev/map/kernel"',
    'MAP: search key ".!/bin/sh" from 0x100000, step 0x10000',
    'MAP: 150000x690000, data=0x690000 "/dev/map/rootfs"',
    'MAP: 7e0000x20000, data=0x20000 "/dev/map/config"',
]

EXAMPLE_HINTS = """
hint.map.0.at="cfid0"
hint.map.0.start=0x00000000
hint.map.0.end=0x00030000
hint.map.0.name="bootloader"
hint.map.0.readonly=1
hint.map.1.at="cfid0"
hint.map.1.start=0x00030000
hint.map.1.end=0x00040000
hint.map.1.name="factory"
hint.map.2.at="cfid0"
hint.map.2.start=0x00040000
hint.map.2.end=0x007e0000
hint.map.2.name="upgrade"
hint.map.3.at="cfid0"
hint.map.3.start=0x00040000
hint.map.3.end="search:0x00100000:0x10000:.!/bin/sh"
hint.map.3.name="kernel"
hint.map.4.at="cfid0"
hint.map.4.start="search:0x00100000:0x10000:.!/bin/sh"
hint.map.4.end=0x007e0000
hint.map.4.name="rootfs"
hint.map.5.at="cfid0"
hint.map.5.start=0x007e0000
hint.map.5.end=0x00800000
hint.map.5.name="config"
"""


def to_freebsd_9(line: str, geom: str = "cfid0") -> str:
    """Today's MAP line in the man page's older format: drop the geom name FreeBSD added since."""
    return line.replace(f"MAP: search {geom} for key ", "MAP: search key ").replace(f"MAP: {geom}: ", "MAP: ")


def example_image() -> bytearray:
    image = bytearray(b"\xff") * (8 * MIB)
    image[0x40000:0x40000 + 0x10F000] = bytes(0x10F000)          # a kernel of zeros
    image[0x150000:0x150000 + 23] = b"#!/bin/sh\n#V2.0 Format\n"  # the cloop header of the rootfs
    return image


def run(text: str, data: bytes | bytearray = b"", *, provider: str = "cfid0", media: int | None = None,
        sector: int = 4, verbose: bool = True, **kwargs) -> tuple[list[MapPart], list[str], list]:
    hints = parse_hints_text(text, "test.hints")
    lines: list[str] = []
    problems: list = []
    parts = parse_map_hints(hints, provider, len(data) if media is None else media, sector, read_from(data),
                            bootverbose=verbose, printf=lines.append, problems=problems, **kwargs)
    return parts, lines, problems


def one(n: int = 0, *, name: str | None = "p", start: str | None = "0x0", end: str | None = "0x10000",
        at: str = "cfid0", **extra: str) -> str:
    """The hints of one partition; None leaves a hint out, values are written quoted."""
    values = {"at": at, "name": name, "start": start, "end": end, **extra}
    return "".join(f'hint.map.{n}.{k}="{v}"\n' for k, v in values.items() if v is not None)


# ---------------------------------------------------------------------------------------------- the example
def test_the_man_page_example_splits_as_the_man_page_shows() -> None:
    parts, lines, problems = run(EXAMPLE_HINTS, example_image())
    assert problems == []
    assert [(p.name, p.start, p.end, p.readonly) for p in parts] == [
        ("bootloader", 0, 0x30000, True), ("factory", 0x30000, 0x40000, False),
        ("upgrade", 0x40000, 0x7E0000, False), ("kernel", 0x40000, 0x150000, False),
        ("rootfs", 0x150000, 0x7E0000, False), ("config", 0x7E0000, 0x800000, False)]
    assert [line.rstrip("\n") for line in lines] == [
        'MAP: cfid0: 0x30000, data=0x30000 "/dev/map/bootloader"',
        'MAP: cfid0: 30000x10000, data=0x10000 "/dev/map/factory"',
        'MAP: cfid0: 40000x7a0000, data=0x7a0000 "/dev/map/upgrade"',
        'MAP: search cfid0 for key ".!/bin/sh" from 0x100000, step 0x10000',
        'MAP: cfid0: 40000x110000, data=0x110000 "/dev/map/kernel"',
        'MAP: search cfid0 for key ".!/bin/sh" from 0x100000, step 0x10000',
        'MAP: cfid0: 150000x690000, data=0x690000 "/dev/map/rootfs"',
        'MAP: cfid0: 7e0000x20000, data=0x20000 "/dev/map/config"']
    assert [to_freebsd_9(line.rstrip("\n")) for line in lines] == MAN_PAGE_MAP_LINES
    assert all(line.endswith("\n") for line in lines)


def test_without_bootverbose_nothing_is_printed() -> None:
    parts, lines, _ = run(EXAMPLE_HINTS, example_image(), verbose=False)
    assert len(parts) == 6 and lines == []


def test_map_part_properties() -> None:
    part = MapPart(3, "kernel", 0x40000, 0x150000, 0x100, 0x1000, True)
    assert (part.size, part.slice_start, part.provider, part.has_provider) == (0x110000, 0x40100, "map/kernel", True)
    with pytest.raises(AttributeError):
        part.start = 0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- hint rules
def test_partitions_come_in_n_order_not_file_order() -> None:
    text = one(5, name="e", start="0x50000", end="0x60000") + one(0, name="a") + one(2, name="c", start="0x20000",
                                                                                        end="0x30000")
    parts, _, _ = run(text, bytes(1 * MIB))
    assert [(p.index, p.name) for p in parts] == [(0, "a"), (2, "c"), (5, "e")]


def test_only_n_0_to_63_are_read() -> None:
    parts, _, _ = run(one(63, name="last") + one(64, name="beyond"), bytes(MIB))
    assert [p.name for p in parts] == ["last"]


@pytest.mark.parametrize("at", ["cfid", "cfid00", "CFID0", "cfid0 ", "map/cfid0"])
def test_at_must_name_the_provider_exactly(at: str) -> None:
    parts, lines, problems = run(one(0, at=at), bytes(MIB))
    assert parts == [] and problems == []
    assert lines == ["MAP: No valid partition found at cfid0\n"]


def test_hints_for_other_providers_are_left_alone() -> None:
    text = one(0, name="a") + one(1, name="b", at="cfid1")
    assert [p.name for p in run(text, bytes(MIB))[0]] == ["a"]
    assert [p.name for p in run(text, bytes(MIB), provider="cfid1")[0]] == ["b"]


def test_offset_and_default_dsize() -> None:
    parts, lines, _ = run(one(0, name="k", start="0x40000", end="0x50000", offset="0x100"), bytes(MIB))
    (part,) = parts
    assert (part.offset, part.dsize, part.slice_start, part.size) == (0x100, 0xFF00, 0x40100, 0x10000)
    assert lines == ['MAP: cfid0: 40000x10000, data=100xff00 "/dev/map/k"\n']


def test_explicit_dsize_and_dsize_zero_means_the_default() -> None:
    (part,), _, _ = run(one(0, offset="16", dsize="0x100"), bytes(MIB))
    assert (part.offset, part.dsize) == (16, 0x100)
    (part,), _, _ = run(one(0, offset="16", dsize="0"), bytes(MIB))
    assert part.dsize == 0x10000 - 16


def test_readonly() -> None:
    text = one(0, name="ro", readonly="1") + one(1, name="rw", start="0x10000", end="0x20000", readonly="0") + \
        one(2, name="dflt", start="0x20000", end="0x30000")
    parts, _, _ = run(text, bytes(MIB))
    assert [(p.name, p.readonly) for p in parts] == [("ro", True), ("rw", False), ("dflt", False)]


def test_readonly_that_is_not_a_number_is_an_input_error_at_its_line() -> None:
    with pytest.raises(InputError) as exc:
        run(one(0, readonly="yes"), bytes(MIB))
    assert exc.value.where == "test.hints:5"


@pytest.mark.parametrize(("value", "expected"), [
    ("0x40000", 0x40000), ("262144", 0x40000), ("01000000", 0x40000), (" 0x40000", 0x40000), ("+0x10", 0x10),
    ("0", 0), ("0X1f", 0x1F),
])
def test_numbers_are_read_by_strtouq_base_0(value: str, expected: int) -> None:
    (part,), _, _ = run(one(0, start=value, end="0x100000"), bytes(2 * MIB))
    assert part.start == expected


@pytest.mark.parametrize("value", ["0x40000 ", "08", "0x", "0xg", "40k", "1.5", "search", "search:1", "search:0x:1:k",
                                   "search:1:2:", "search:1:2", "search::2:k", "search:+:2:k", "Search:1:2:k",
                                   "search:0 :1:k"])
def test_values_strtouq_and_sscanf_refuse(value: str) -> None:
    parts, lines, problems = run(one(0, name="p", start=value), bytes(MIB))
    assert parts == []
    assert lines[-2:] == ['MAP: "p" can\'t parse/use start value\n', "MAP: No valid partition found at cfid0\n"]
    assert problems[0].message == 'MAP: "p" can\'t parse/use start value'


def test_strtouq_details() -> None:
    assert strtouq("0x10") == (16, 4)
    assert strtouq("  017x") == (15, 5)
    assert strtouq("0x") == (0, 0)                  # sys/libkern/strtouq.c: no digit after 0x: nothing read
    assert strtouq("-1") == ((1 << 64) - 1, 2)
    assert strtouq("99999999999999999999999") == ((1 << 64) - 1, 23)
    assert jx(-1) == "ffffffffffffffff" and jx(0x150000) == "150000"


# ---------------------------------------------------------------------------------------------- messages
def test_every_message_in_freebsds_words() -> None:
    image = bytes(2 * MIB)
    text = (
        'hint.map.0.at="cfid0"\nhint.map.0.start=0\nhint.map.0.end=0x10000\n'           # no name
        + one(1, name="nostart", start=None)
        + one(2, name="badstart", start="zero")
        + one(3, name="noend", end=None)
        + one(4, name="badend", end="search:0x0:0x10000:NOPE")                            # key not found
        + one(5, name="badoffset", offset="1k")
        + one(6, name="baddsize", dsize="0x")
        + one(7, name="backwards", start="0x20000", end="0x10000")
        + one(8, name="toobig", dsize="0x10001")
        + one(9, name="toobig2", offset="0x100", dsize="0x10000")
        + one(10, name="fine", start="0x10000", end="0x20000")
    )
    parts, lines, problems = run(text, image)
    assert [p.name for p in parts] == ["fine"]
    assert [line.rstrip("\n") for line in lines] == [
        "MAP: hint.map.0 has no name",
        'MAP: "nostart" has no start value',
        'MAP: "badstart" can\'t parse/use start value',
        'MAP: "noend" has no end value',
        'MAP: search cfid0 for key "NOPE" from 0x0, step 0x10000',
        'MAP: "badend" can\'t parse/use end value',
        'MAP: "badoffset" can\'t parse offset',
        'MAP: "baddsize" can\'t parse dsize',
        'MAP: "backwards", "end" less than "start"',
        'MAP: "toobig", "dsize" bigger than partition - offset',
        'MAP: "toobig2", "dsize" bigger than partition - offset',
        'MAP: cfid0: 10000x10000, data=0x10000 "/dev/map/fine"',
    ]
    assert [p.index for p in problems] == list(range(10))
    assert problems[0].where == "test.hints:1"           # the `at` line: there is no name to point at
    assert problems[2].where == "test.hints:9"           # the start line of badstart
    assert all(p.message == line.rstrip("\n") for p, line in zip(problems, [ln for ln in lines
                                                                          if "search" not in ln], strict=False))


def test_no_valid_partition() -> None:
    parts, lines, problems = run(one(0, name="x", start="0x20000", end="0x10000"), bytes(MIB))
    assert parts == []
    assert lines[-1] == "MAP: No valid partition found at cfid0\n"
    _, lines, _ = run("", bytes(MIB), provider="md0")
    assert lines == ["MAP: No valid partition found at md0\n"]        # MAP tastes every provider


def test_problems_are_collected_without_bootverbose() -> None:
    parts, lines, problems = run(one(0, name="x", start="0x20000", end="0x10000"), bytes(MIB), verbose=False)
    assert (parts, lines) == ([], [])
    assert problems[0].message == 'MAP: "x", "end" less than "start"'


def test_slice_config_refusal_is_reported_as_freebsd_does() -> None:
    seen: list[MapPart] = []

    def slice_config(part: MapPart) -> int:
        seen.append(part)
        return 22 if part.name == "b" else 0

    text = one(0, name="a") + one(1, name="b", start="0x10000", end="0x20000")
    parts, lines, problems = run(text, bytes(MIB), slice_config=slice_config)
    assert [p.name for p in seen] == ["a", "b"] and [p.name for p in parts] == ["a"]
    assert lines == ['MAP: cfid0: 0x10000, data=0x10000 "/dev/map/a"\n', 'MAP: g_slice_config returns 22 for "b"\n']
    assert problems[0].message == 'MAP: g_slice_config returns 22 for "b"'


def test_an_empty_partition_prints_its_line_but_configures_no_provider() -> None:
    parts, lines, _ = run(one(0, name="z", start="0x10000", end="0x10000"), bytes(MIB))
    assert parts[0].dsize == 0 and not parts[0].has_provider
    assert lines == ['MAP: cfid0: 10000x0, data=0x0 "/dev/map/z"\n', "MAP: No valid partition found at cfid0\n"]


def test_offset_beyond_the_partition_passes_freebsds_checks() -> None:
    # dsize = size - offset comes out negative, and offset + dsize == size is not "bigger": FreeBSD goes on.
    (part,), lines, _ = run(one(0, name="odd", offset="0x20000"), bytes(MIB))
    assert part.dsize == -0x10000
    assert lines == ['MAP: cfid0: 0x10000, data=20000xffffffffffff0000 "/dev/map/odd"\n']


# ---------------------------------------------------------------------------------------------- search
def image_with(marks: dict[int, bytes], size: int = MIB, fill: int = 0xFF) -> bytearray:
    image = bytearray([fill]) * size
    for off, data in marks.items():
        image[off:off + len(data)] = data
    return image


def test_search_finds_the_first_probe_that_matches() -> None:
    image = image_with({0x30000: b"#!/bin/sh", 0x50000: b"#!/bin/sh", 0x60000: b"#!/bin/sh"})
    (part,), lines, _ = run(one(0, start="search:0x40000:0x10000:.!/bin/sh", end="0x100000"), image)
    assert part.start == 0x50000
    assert lines[0] == 'MAP: search cfid0 for key ".!/bin/sh" from 0x40000, step 0x10000\n'


def test_search_only_probes_on_its_grid() -> None:
    image = image_with({0x48000: b"KEY"})
    assert run(one(0, start="search:0x40000:0x10000:KEY", end="0x100000"), image)[0] == []
    assert run(one(0, start="search:0x40000:0x8000:KEY", end="0x100000"), image)[0][0].start == 0x48000


def test_key_not_found() -> None:
    parts, lines, problems = run(one(0, name="k", start="0", end="search:0x0:0x10000:.!/bin/sh"), bytes(MIB))
    assert parts == []
    assert lines[:2] == ['MAP: search cfid0 for key ".!/bin/sh" from 0x0, step 0x10000\n',
                         'MAP: "k" can\'t parse/use end value\n']
    assert problems[0].where == "test.hints:4"


def test_search_from_past_the_media_finds_nothing() -> None:
    image = image_with({0: b"KEY"})
    assert run(one(0, start="search:0x100000:0x10000:KEY", end="0x100000"), image)[0] == []


@pytest.mark.parametrize("found", [b"#!/bin/sh", b"X!/bin/sh", b"\x00!/bin/sh"])
def test_wildcard_dot_matches_any_byte(found: bytes) -> None:
    image = image_with({0x20000: found})
    (part,), _, _ = run(one(0, start="search:0:0x10000:.!/bin/sh", end="0x100000"), image)
    assert part.start == 0x20000


def test_wildcard_is_not_a_regular_expression() -> None:
    image = image_with({0x10000: b"a.c", 0x20000: b"abc", 0x30000: b"a*c"})
    assert run(one(0, start="search:0:0x10000:a*c", end="0x100000"), image)[0][0].start == 0x30000
    assert run(one(0, start="search:0:0x10000:a.c", end="0x100000"), image)[0][0].start == 0x10000


def test_the_key_is_the_rest_of_the_value_cut_at_63_bytes() -> None:
    key = "k: with spaces:and colons"
    image = image_with({0x10000: key.encode()})
    (part,), lines, _ = run(one(0, start=f"search: 0x0: 0x10000:{key}", end="0x100000"), image)
    assert part.start == 0x10000 and f'key "{key}"' in lines[0]
    long_key = "L" * 63 + "TAIL"
    image = image_with({0x20000: b"L" * 63 + b"????"})
    (part,), lines, _ = run(one(0, start=f"search:0:0x10000:{long_key}", end="0x100000"), image)
    assert part.start == 0x20000 and f'key "{"L" * 63}"' in lines[0]


def test_search_numbers_are_scanf_qi() -> None:
    image = image_with({0x10000: b"KEY"})
    for form in ("search:0:65536:KEY", "search:00:0200000:KEY", "search:0x0:0x10000:KEY", "search:-0:+65536:KEY"):
        assert run(one(0, start=form, end="0x100000"), image)[0][0].start == 0x10000, form
    # The kernel's vsscanf accepts "0x" only as the 2nd character of the number, so not after a sign.
    assert run(one(0, start="search:0:+0x10000:KEY", end="0x100000"), image)[0] == []


def test_an_unaligned_probe_that_would_compare_past_its_sectors_does_not_match() -> None:
    # find_marker reads roundup(9, 512) = 512 bytes at 0 but compares 9 bytes at 510: past its buffer.
    image = image_with({510: b"#!/bin/sh", 0x10000 + 100: b"#!/bin/sh"})
    (part,), _, _ = run(one(0, start="search:510:0xfe66:.!/bin/sh", end="0x100000"), image, sector=512)
    assert part.start == 0x10000 + 100
    (part,), _, _ = run(one(0, start="search:510:0xfe66:.!/bin/sh", end="0x100000"), image, sector=4)
    assert part.start == 510


def test_a_key_cut_by_the_end_of_the_media_does_not_match() -> None:
    image = image_with({MIB - 4: b"#!/b"})
    assert run(one(0, start="search:0xffffc:1:.!/bin/sh", end="0x100000"), image)[0] == []


def test_a_failed_read_is_skipped() -> None:
    image = image_with({0x10000: b"KEY", 0x20000: b"KEY"})
    reader = read_from(image)
    lines: list[str] = []

    def flaky(offset: int, length: int) -> bytes | None:
        return None if offset == 0x10000 else reader(offset, length)

    hints = parse_hints_text(one(0, start="search:0:0x10000:KEY", end="0x100000"), "t")
    (part,) = parse_map_hints(hints, "cfid0", MIB, 4, flaky, bootverbose=True, printf=lines.append)
    assert part.start == 0x20000


def test_a_step_that_never_advances_is_diagnosed() -> None:
    image = image_with({0x10000: b"KEY"})
    assert run(one(0, start="search:0x10000:0:KEY", end="0x100000"), image)[0][0].start == 0x10000
    # A negative step searches backwards, and finds what lies there.
    assert run(one(0, start="search:0x30000:-65536:KEY", end="0x100000"), image)[0][0].start == 0x10000
    for value in ("search:0x20000:0:KEY", "search:0x8000:-4096:KEY"):
        with pytest.raises(InputError, match="loop forever") as exc:
            run(one(0, start=value, end="0x100000"), image)
        assert exc.value.where == "test.hints:3"
    assert run(one(0, start="search:0x100000:0:KEY", end="0x100000"), image)[0] == []   # never below the media


keys = st.text(alphabet="XYZ.", min_size=1, max_size=12).filter(lambda k: k.strip(".") != "")


@settings(max_examples=150, deadline=None)
@given(key=keys, blocks=st.integers(4, 48), block_shift=st.integers(4, 9), data=st.data())
def test_search_over_random_images_finds_the_first_planted_key(key: str, blocks: int, block_shift: int,
                                                               data: st.DataObject) -> None:
    block = 1 << block_shift
    size = blocks * block
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    image = bytearray(rng.choices(b"abc", k=size))   # bytes a, b, c only: the key's X, Y, Z never occur there
    planted = sorted(data.draw(st.sets(st.integers(0, blocks - 1), max_size=5)))
    for b in planted:
        wild = data.draw(st.binary(min_size=len(key), max_size=len(key)))
        image[b * block:b * block + len(key)] = bytes(w if k == "." else ord(k) for k, w in zip(key, wild,
                                                                                                strict=True))
    first = data.draw(st.integers(0, blocks - 1))
    sector = data.draw(st.sampled_from([1, 4, 512]))
    value = f"search:{first * block:#x}:{block:#x}:{key}"
    # A probe off a sector boundary compares past its roundup(len, sector) buffer (only when sector > block).
    expected = next((b * block for b in planted if b >= first
                     and (b * block) % sector + len(key) <= -(-len(key) // sector) * sector), None)
    kwargs = dict(geom="cfid0", media_size=size, sectorsize=sector, bootverbose=False, printf=lambda _: None)
    got = find_marker(value, read=lambda o, n: bytes(image[o:o + n]), **kwargs)
    assert got == expected
    assert find_marker(value, read=read_from(image), **kwargs) == expected


@settings(max_examples=200, deadline=None)
@given(image=st.binary(min_size=1, max_size=600).map(lambda b: bytes(c % 4 + 0x61 for c in b)),
       key=st.text(alphabet="abcd.", min_size=1, max_size=6), start=st.integers(-8, 700), step=st.integers(1, 40),
       sector=st.sampled_from([1, 2, 4, 16, 512]))
def test_the_fast_scan_agrees_with_probing(monkeypatch_module, image: bytes, key: str, start: int, step: int,
                                           sector: int) -> None:
    value = f"search:{start}:{step}:{key}"
    kwargs = dict(geom="g", media_size=len(image), sectorsize=sector, bootverbose=False, printf=lambda _: None)
    probed = find_marker(value, read=lambda o, n: image[o:o + n] if o >= 0 else None, **kwargs)
    assert find_marker(value, read=read_from(image), **kwargs) == probed      # the regular-expression path


@pytest.fixture(scope="module")
def monkeypatch_module():
    """Make every bytes-backed search take the regular-expression path."""
    mp = pytest.MonkeyPatch()
    mp.setattr(map_hints, "_FAST_SCAN_PROBES", -1)
    yield mp
    mp.undo()


def test_a_large_bytes_backed_search_is_quick() -> None:

    image = image_with({60 * MIB: b"#!/bin/sh"}, size=64 * MIB)
    hit = find_marker("search:0:4:.!/bin/sh", geom="cfid0", media_size=len(image), sectorsize=4,
                      read=read_from(image), bootverbose=False, printf=lambda _: None)
    assert hit == 60 * MIB


# --- fuzzing: any hint.map.N set is parts that passed geom_map's checks, or one InputError at the hint's line --

_NUMBERS = st.one_of(st.integers(-5, 70000).map(str), st.integers(0, 2**70).map(hex),
                     st.sampled_from(["", "0x", "-0x10", "010", "08", "1k", "0x7fffffffffffffff",
                                      "18446744073709551616", " 0x100", "0x100 ", "abc"]))
_SEARCHES = st.builds(lambda a, b, key: f"search:{a}:{b}:{key}", _NUMBERS, _NUMBERS,
                      st.text(alphabet="KEY.#!/x\\ ", max_size=70))
_HINT_VALUE = st.one_of(_NUMBERS, _SEARCHES, st.text(max_size=20))
_ENTRY = st.fixed_dictionaries({"start": _HINT_VALUE, "end": _HINT_VALUE,
                                "name": st.text(alphabet="abc/.-_ ", min_size=1, max_size=12)},
                               optional={"readonly": _HINT_VALUE, "offset": _NUMBERS, "dsize": _NUMBERS,
                                         "at": st.sampled_from(["g", "other"])})


def _hint_text(entries: list[dict]) -> str:
    lines = []
    for n, entry in enumerate(entries):
        lines.append(f'hint.map.{n}.at="{entry.get("at", "g")}"')
        for key, value in entry.items():
            if key != "at":
                lines.append(f'hint.map.{n}.{key}="{value}"'.replace("\\", "\\\\")
                             if '"' not in value else f"hint.map.{n}.{key}=0")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(_ENTRY, min_size=1, max_size=4), size=st.integers(0, 65536),
       planted=st.lists(st.integers(0, 65535), max_size=3), sector=st.sampled_from([1, 4, 512]))
def test_fuzz_hints_give_checked_parts_or_one_input_error(entries, size, planted, sector) -> None:
    size -= size % sector
    image = bytearray(b"\xff") * size
    for at in planted:
        image[at:at + 3] = b"KEY"
    del image[size:]
    try:
        hints = parse_hints_text(_hint_text(entries), "device.hints")
    except InputError:
        return                                  # the hints file itself is malformed: its own parser says so
    try:
        parts = parse_map_hints(hints, "g", size, sector, read_from(image), bootverbose=True,
                                printf=lambda _line: None, problems=[])
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("device.hints:")
        return
    for part in parts:      # g_map_parse_part's own checks held (FreeBSD does not bound a slice by the media)
        assert part.start <= part.end and part.offset + part.dsize <= part.end - part.start


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(_ENTRY, min_size=1, max_size=4), planted=st.lists(st.integers(0, 16383), max_size=3))
def test_fuzz_the_map_class_publishes_what_reads_or_fails_with_an_errno(entries, planted) -> None:
    """The same hints through the MAP class on a 16 KiB disk: tasting, the graph's dumps and a read of
    every published slice (FreeBSD publishes even a slice past the media: g_slice_config's "XXX: check
    offset + length <= MEDIASIZE") end in data or an errno, never an exception."""
    from kernel_sim.fs.devfs import DiskFile
    from kernel_sim.geom.core import Mesh
    from kernel_sim.geom.disk import DiskClass, DiskDriver
    from kernel_sim.geom.map import MapClass
    from kernel_sim.kern.sysapi import O_RDONLY, SysError

    image = bytearray(b"\xff") * 16384
    for at in planted:
        image[at:at + 3] = b"KEY"
    try:
        hints = parse_hints_text(_hint_text(entries).replace('"g"', '"ada0"'), "device.hints")
    except InputError:
        return
    mesh = Mesh(printf=lambda _line: None)
    try:
        mesh.add_class(MapClass(hints, bootverbose=True))
        disk = DiskClass()
        mesh.add_class(disk)
        disk.create(mesh, DiskDriver("ada", 0, len(image), 512, lambda o, n: bytes(image[o:o + n])))
    except InputError as exc:                   # a search that would loop forever, at its hint's line
        assert exc.where is not None and exc.where.startswith("device.hints:")
        return
    mesh.conftxt(), mesh.confxml(), mesh.confdot()
    for gp in mesh.geoms:
        for pp in list(gp.providers):
            if not pp.name.startswith("map/"):
                continue
            try:
                f = DiskFile(mesh, pp.name, O_RDONLY)
            except SysError:
                continue
            try:
                f.read(0, 512)
            except SysError as exc:
                assert exc.errno in (5, 6, 22)
            f.close()
