"""Tunables read as FreeBSD's getenv_quad / getenv_int read them, and refused where FreeBSD would
quietly take another value; init stops once fork keeps failing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.kern.startup import INIT_FORK_FAILURES
from kernel_sim.kern.tunables import (
    INT_MAX,
    QUAD_MAX,
    QUAD_MIN,
    c_int,
    getenv_quad,
    tunable_value,
    wild_access_address,
)


@pytest.mark.parametrize("text, value", [
    ("100", 100), ("0x10", 16), ("010", 8), ("0", 0), ("-1", -1), ("  7", 7), ("+3", 3),
    ("4k", 4096), ("4K", 4096), ("1m", 1 << 20), ("2g", 2 << 30), ("1t", 1 << 40), ("0x10k", 16 << 10),
    ("99999999999999999999", QUAD_MAX),          # strtoq saturates instead of failing
    ("-99999999999999999999", QUAD_MIN),
    ("9" * 5000, QUAD_MAX),                      # longer than Python converts: still just saturated
    ("8388608t", -(1 << 63)),                    # 2^23 * 2^40 = 2^63: the multiplication wraps
])
def test_getenv_quad_reads_what_freebsd_stores(text, value) -> None:
    assert getenv_quad(text) == value


@pytest.mark.parametrize("text", ["", " ", "many", "10kb", "1b", "08", "0x", "1 ", "1.5", "k", "-", "1e3"])
def test_getenv_quad_ignores_what_freebsd_ignores(text) -> None:
    assert getenv_quad(text) is None


def test_c_int_keeps_the_low_32_bits() -> None:
    assert c_int(QUAD_MAX) == -1 and c_int(1 << 32 | 5) == 5 and c_int(INT_MAX + 1) == -(1 << 31)


@given(st.text(max_size=30) | st.from_regex(r"[ +-]?(0[xX])?[0-9a-fA-F]{0,40}[kKmMgGtTx]?", fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_getenv_quad_never_raises_and_stays_a_quad(text: str) -> None:
    value = getenv_quad(text)
    assert value is None or QUAD_MIN <= value <= QUAD_MAX


@given(st.integers(min_value=0, max_value=INT_MAX), st.sampled_from(["{:d}", "0x{:x}", "0{:o}"]))
@settings(max_examples=100, deadline=None)
def test_in_range_values_are_taken_as_written(n: int, form: str) -> None:
    assert tunable_value({"debug.init_procs": form.format(n)}, "debug.init_procs") == n


def test_unset_and_default_meaning_values() -> None:
    assert tunable_value({}, "debug.init_procs") == 0
    assert tunable_value({}, "kern.hz") == 1000
    assert tunable_value({"kern.hz": "-1"}, "kern.hz") == 1000        # subr_param.c: -1 means HZ
    assert tunable_value({"debug.kmem_stress": "300M"}, "debug.kmem_stress") == 300 << 20


@pytest.mark.parametrize("name, text, words", [
    ("debug.init_procs", "99999999999999999999",
     "is out of range: it is a number of processes, 0..INT_MAX; FreeBSD's getenv_int would take -1 (strtoq stops "
     "at QUAD_MAX, the int cast keeps the low 32 bits, 0xffffffff)"),
    ("debug.init_procs", "4294967297", "FreeBSD's getenv_int would take 1 (the int cast keeps the low 32 bits"),
    ("debug.init_procs", "2g", "FreeBSD's getenv_int would take -2147483648"),
    ("debug.init_procs", "-5", "is out of range: it is a number of processes, 0..INT_MAX"),
    ("kern.hz", "0", "is out of range: it is clock ticks per second, 1..INT_MAX, or -1 for the default"),
    ("debug.kmem_stress", "99999999999999999999",
     "FreeBSD's getenv_quad would take 9223372036854775807 (strtoq stops at QUAD_MAX)"),
    ("debug.kmem_stress", "8388608t", "the t multiplication wraps in 64 bits to -9223372036854775808"),
    ("debug.init_procs", "many", "is not a number (decimal, 0x hexadecimal or 0-prefixed octal, with an optional "
     "k, m, g or t suffix); FreeBSD's getenv_quad would ignore it and keep the default 0"),
])
def test_refused_values_name_the_line_and_what_freebsd_would_take(name, text, words) -> None:
    with pytest.raises(InputError) as info:
        tunable_value({name: text}, name, {name: "loader.conf:7"})
    assert info.value.where == "loader.conf:7"
    assert info.value.message.startswith(f'{name}="{text}" ') and words in info.value.message


def test_a_huge_init_procs_is_one_line_and_exit_2(capsys, tmp_path) -> None:
    from tools.cli import main

    conf = tmp_path / "loader.conf"
    conf.write_text('kern.hz="100"\ndebug.init_procs="99999999999999999999"\n')
    assert main(["boot", "--loader-conf", str(conf)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"armboard: {conf}:2: debug.init_procs=\"99999999999999999999\" is out of range")


def test_init_stops_once_fork_keeps_failing(boot, loader_conf) -> None:
    """INT_MAX processes on the small board: init stops after INIT_FORK_FAILURES failed forks in a row and
    the boot ends in the kernel-stack diagnosis, instead of printing a failure for each of 2^31 - 1."""
    result = boot(board="embedded", loader_conf=loader_conf('debug.init_procs="0x7fffffff"\n'))
    text = result.console.decode().replace("\r\n", "\n")
    assert result.exit_code == 1 and result.stage == "init"
    assert text.count("init: cannot allocate kernel stack for process") == INIT_FORK_FAILURES
    started = result.startup.started_procs
    assert 0 < started < 100_000
    assert f"init: {INIT_FORK_FAILURES} forks in a row failed; not starting the other " \
           f"{INT_MAX - started - INIT_FORK_FAILURES} processes\n" in text
    assert f"init: started {started} of {INT_MAX} processes\n" in text
    assert result.diagnosis.option == "debug.init_procs"
    assert "more than the whole kernel address space holds" in result.message
    assert f"Lower debug.init_procs well below {started}" in result.message


@pytest.mark.parametrize("text, words", [
    ("0x1_0000_0000", "is not an address (decimal or 0x hexadecimal digits only"),
    ("0x100000000", "is out of range: an address is 32 bits (0..0xffffffff); initarm's parse_u32 would wrap it "
                    "to 0x00000000"),
    ("4294967297", "would wrap it to 0x00000001"),
    ("9" * 5000, "is out of range"),
    ("010k", "is not an address"),
])
def test_wild_access_is_checked_as_the_guest_reads_it(text, words) -> None:
    with pytest.raises(InputError) as info:
        wild_access_address({"debug.wild_access": text}, {"debug.wild_access": "loader.conf:3"})
    assert info.value.where == "loader.conf:3" and words in info.value.message


def test_wild_access_addresses_in_range() -> None:
    assert wild_access_address({}) is None
    assert wild_access_address({"debug.wild_access": "0x12345678"}) == 0x12345678
    assert wild_access_address({"debug.wild_access": "4294967295"}) == 0xFFFF_FFFF


_OLD_STRTOQ = __import__("re").compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


@given(st.text(alphabet=" \t+-0123456789xXabcdefgkmKM", max_size=12))
def test_strtoq_prefix_reads_what_the_old_pattern_read(text):
    from kernel_sim.kern.tunables import _strtoq_prefix

    m = _OLD_STRTOQ.match(text)
    assert _strtoq_prefix(text) == (None if m is None else (m.group(1), m.group(2), m.end()))
