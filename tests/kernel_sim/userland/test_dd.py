"""dd: record counts, sizes with suffixes, skip/seek/conv, and the three summary lines on stderr."""

from __future__ import annotations

import pytest

from kernel_sim.userland.commands.dd import get_num


def _summary(full_in: str, full_out: str, nbytes: int) -> str:
    return (f"{full_in} records in\n{full_out} records out\n"
            f"{nbytes} bytes transferred in 0.000001 secs ({nbytes * 1000000} bytes/sec)\n")


def test_full_and_partial_records(board) -> None:
    assert board.run("dd if=/dev/zero of=/tmp/z bs=1k count=4") == (0, _summary("4+0", "4+0", 4096))
    assert board.init.stat("/tmp/z").size == 4096
    assert board.run("dd if=/tmp/z of=/tmp/y bs=1000") == (0, _summary("4+1", "4+1", 4096))
    # ibs/obs: input blocks are gathered into output blocks; the rest goes out as a partial block
    assert board.run("dd if=/tmp/z of=/dev/null ibs=512 obs=1536") == (0, _summary("8+0", "2+1", 4096))
    assert board.run("echo abc | dd of=/tmp/w") == (0, _summary("0+1", "0+1", 4))
    assert board.read_file("/tmp/w") == b"abc\n"


def test_skip_seek_notrunc_and_sync(board) -> None:
    board.write_file("/tmp/src", b"0123456789")
    board.write_file("/tmp/dst", b"abcdefghij")
    assert board.run("dd if=/tmp/src of=/tmp/dst bs=2 skip=1 seek=2 count=2 conv=notrunc status=none") == (0, "")
    assert board.read_file("/tmp/dst") == b"abcd2345ij"
    assert board.run("dd if=/tmp/src of=/tmp/dst bs=4 count=1 status=noxfer") == \
        (0, "1+0 records in\n1+0 records out\n")
    assert board.read_file("/tmp/dst") == b"0123"                 # truncated without notrunc
    assert board.run("dd if=/tmp/src of=/tmp/pad bs=4 conv=sync status=none") == (0, "")
    assert board.read_file("/tmp/pad") == b"0123456789\0\0"


def test_virtual_time_in_the_summary(board) -> None:
    board.kernel.clock.advance(5.0)
    status, out = board.run("dd if=/dev/zero of=/dev/null bs=1m count=2")
    assert out.endswith("2097152 bytes transferred in 0.000001 secs (2097152000000 bytes/sec)\n")


def test_errors(board) -> None:
    assert board.run("dd if=/nope") == (1, "dd: /nope: No such file or directory\n")   # before atexit: no summary
    assert board.run("dd foo=bar") == (1, "dd: unknown operand foo\n")
    assert board.run("dd bs=1q") == (1, "dd: 1q: illegal numeric value\n")
    assert board.run("dd conv=turbo") == (1, "dd: unknown conversion turbo\n")
    assert board.run("dd if=/dev/zero of=/nope/x count=1") == (1, "dd: /nope/x: No such file or directory\n")


def test_a_full_file_system_reports_the_error_and_the_summary(make) -> None:
    board = make()
    board.run("mount -t tmpfs -o size=64k tmpfs /mnt")
    status, out = board.run("dd if=/dev/zero of=/mnt/big bs=16k count=8")
    assert status == 1
    first, rest = out.split("\n", 1)
    assert first == "dd: /mnt/big: No space left on device"
    assert rest.splitlines()[0].endswith("records in")


@pytest.mark.parametrize(("text", "value"), [("512", 512), ("1b", 512), ("4k", 4096), ("1m", 1 << 20),
                                              ("2g", 2 << 30), ("3w", 12), ("2x3k", 6144), ("0x10", 16),
                                              ("1kx2", 2048)])
def test_numbers_take_dds_suffixes(text: str, value: int) -> None:
    assert get_num(text) == value
