"""The remote protocol's framing: checksums, escapes, acks and the interrupt byte, however the stream
is cut into reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tools.gdbstub.packets import Event, Framer, checksum, console_output, escape, frame, unescape, unhex


def test_frame_and_checksum_as_the_protocol_defines_them():
    # gdb's manual: the checksum is the payload's byte sum modulo 256, two lower-case hex digits
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"") == b"$#00"
    assert checksum(b"qSupported") == sum(b"qSupported") % 256


def test_escapes_cover_the_four_special_bytes():
    assert escape(b"a#b$c}d*e") == b"a}\x03b}\x04c}]d}\x0ae"
    assert unescape(escape(b"#$}*")) == b"#$}*"


@given(st.binary(max_size=300))
def test_escape_round_trips_and_leaves_no_special_byte(data):
    escaped = escape(data)
    assert unescape(escaped) == data
    assert not set(escaped) & set(b"#$*")


@given(st.lists(st.binary(max_size=40).map(escape), max_size=6), st.data())
def test_packets_survive_any_split_of_the_stream(payloads, data):
    stream = b"".join(b"+" + frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer, events = Framer(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += framer.feed(stream[a:b])
    assert [e.payload for e in events if e.kind == "packet"] == payloads
    assert [e.kind for e in events].count("ack") == len(payloads)


def test_a_wrong_checksum_is_a_bad_packet_and_the_stream_goes_on():
    events = Framer().feed(b"$g#00$g#67")
    assert events == [Event("bad", b"g"), Event("packet", b"g")]


def test_interrupt_and_nack_between_packets_and_noise_ignored():
    events = Framer().feed(b"\x03-junk$?#3f")
    assert [e.kind for e in events] == ["interrupt", "nack", "packet"]


def test_non_hex_checksum_digits_are_a_bad_packet():
    assert Framer().feed(b"$g#zz") == [Event("bad", b"g")]


def test_console_output_is_hex_in_o_packets():
    packets = console_output("ab\n", chunk=2)
    assert packets == [b"O6162", b"O0a"]
    assert unhex(packets[0][1:]) == b"ab"
