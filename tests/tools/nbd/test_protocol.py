"""The wire layouts: the spec's sizes and magics, and option data that is refused as invalid."""

from __future__ import annotations

import pytest

from tools.nbd import protocol as p


def test_sizes_and_magics_are_the_specs() -> None:
    assert (p.HANDSHAKE.size, p.OPTION.size, p.OPTION_REPLY.size, p.REQUEST.size, p.SIMPLE_REPLY.size,
            p.CHUNK.size) == (18, 16, 20, 28, 16, 20)
    assert p.handshake(3)[:16] == b"NBDMAGICIHAVEOPT"
    assert p.request(p.NBD_CMD_READ, 5, 6, flags=1, cookie=7) == bytes.fromhex(
        "25609513" "0001" "0000" "0000000000000007" "0000000000000005" "00000006")
    assert p.simple_reply(22, 9)[:8] == bytes.fromhex("6744669800000016")
    assert p.chunk_offset_data_header(3, 4096, 10) == p.CHUNK.pack(p.NBD_STRUCTURED_REPLY_MAGIC, 1, 1, 3, 18) \
        + (4096).to_bytes(8, "big")
    assert p.export_name_reply(1, 2, no_zeroes=False) == (1).to_bytes(8, "big") + b"\0\2" + bytes(124)


def test_info_and_meta_context_requests_round_trip() -> None:
    assert p.parse_info_request(p.info_request("map/kernel", [3, 1])) == ("map/kernel", [3, 1])
    name, queries = p.parse_meta_context_request(p.meta_context_request("md0", ["base:allocation", "x:y"]))
    assert (name, list(queries)) == ("md0", ["base:allocation", "x:y"])
    assert p.parse_export_name(b"flash0,mode=nor") == "flash0,mode=nor"


@pytest.mark.parametrize("data, why", [
    (b"\0" * 5, "shorter than the 6"),
    (p.U32.pack(10) + b"abc" + p.U16.pack(0), "does not fit"),
    (p.U32.pack(1) + b"\xff" + p.U16.pack(0), "not UTF-8"),
    (p.U32.pack(1) + b"\0" + p.U16.pack(0), "NUL byte"),
    (p.info_request("a", [1]) + b"\0", "do not fill"),
])
def test_bad_info_requests(data, why) -> None:
    with pytest.raises(p.OptionInvalid, match=why):
        p.parse_info_request(data)


def test_a_bad_query_is_found_when_reached() -> None:
    data = p.U32.pack(0) + p.U32.pack(2) + p.U32.pack(5) + b"base:" + p.U32.pack(50)
    name, queries = p.parse_meta_context_request(data)
    assert name == "" and next(queries) == "base:"
    with pytest.raises(p.OptionInvalid, match="runs past"):
        next(queries)
    with pytest.raises(p.OptionInvalid, match="longer than"):
        p.parse_export_name(b"x" * 4097)
