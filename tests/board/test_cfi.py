"""CFI NOR flash: one behaviour suite over several geometries and both command sets.

The tests talk to the device the way a driver does, through read()/write() in bus terms, with
commands replicated to every chip of the bank (FreeBSD's cfi(4) and Linux's MTD both do).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board.devices.cfi import (
    AMD,
    DQ1,
    DQ5,
    DQ6,
    DQ7,
    INTEL,
    KIB,
    LOCKED,
    LOCKED_DOWN,
    MIB,
    SR_ERASE_ERROR,
    SR_LOCKED,
    SR_PROGRAM_ERROR,
    SR_READY,
    SR_SEQUENCE_ERROR,
    CfiFlash,
    CfiGeometry,
    FlashImage,
)

REPO = Path(__file__).resolve().parents[2]

GEOMETRIES = {
    "qemu-virt": CfiGeometry.qemu_virt(),
    "geom-map-example": CfiGeometry.geom_map_example(),
    # One byte-wide AMD chip (an x8-only part: unlock at 0x555/0x2AA in bytes).
    "amd-x8": CfiGeometry(size=2 * MIB, bank_width=1, device_width=1, erase_regions=((64 * KIB, 32),),
                          command_set=AMD, manufacturer_id=0x01, device_id=0xAD, chip_write_buffer=32,
                          interface=0x0000, typical_timeouts=(0x04, 0x07, 0x09, 0x0C),
                          max_timeouts=(0x04, 0x03, 0x04, 0x03), name="amd-x8"),
    # A 16-bit Intel part with parameter blocks (P30 bottom boot: 4 x 32 KiB + 63 x 128 KiB), locked at power-up.
    "intel-p30-x16": CfiGeometry(size=8 * MIB, bank_width=2, device_width=2,
                                 erase_regions=((32 * KIB, 4), (128 * KIB, 63)), command_set=INTEL,
                                 manufacturer_id=0x89, device_id=0x881A, chip_write_buffer=64, vcc=(0x17, 0x20),
                                 interface=0x0001, locked_at_reset=True, name="intel-p30-x16"),
    # Four byte-wide Intel chips interleaved on a 32-bit bus.
    "intel-4x8": CfiGeometry(size=4 * MIB, bank_width=4, device_width=1, erase_regions=((128 * KIB, 32),),
                             command_set=INTEL, manufacturer_id=0x89, device_id=0x16, chip_write_buffer=32,
                             interface=0x0000, name="intel-4x8"),
}
INTEL_GEOMETRIES = [k for k, g in GEOMETRIES.items() if g.command_set == INTEL]
AMD_GEOMETRIES = [k for k, g in GEOMETRIES.items() if g.command_set == AMD]


class Driver:
    """What a flash driver does on the bus for either command set."""

    def __init__(self, dev: CfiFlash) -> None:
        g = dev.geometry
        self.dev, self.g = dev, g
        self.bw = g.bank_width
        self.shift = g.bank_width.bit_length() - 1
        self.lane = (1 << (8 * g.device_width)) - 1
        self.rep = sum(1 << (8 * g.device_width * k) for k in range(g.chips))
        self.intel = g.command_set == INTEL
        self.ones = (1 << (8 * self.bw)) - 1

    # bus primitives
    def cmd(self, offset: int, c: int) -> None:
        self.dev.write(offset, self.bw, c * self.rep)

    def word(self, offset: int) -> int:
        return self.dev.read(offset, self.bw)

    def same(self, value: int) -> int:
        """Every chip of the bank answers the same: return that answer."""
        lanes = {(value >> (8 * self.g.device_width * k)) & self.lane for k in range(self.g.chips)}
        assert len(lanes) == 1, f"chips disagree: 0x{value:x}"
        return lanes.pop()

    def read_array(self) -> None:
        self.cmd(0, 0xFF if self.intel else 0xF0)

    def unlock(self, base: int = 0) -> None:
        self.cmd(base + (0x555 << self.shift), 0xAA)
        self.cmd(base + (0x2AA << self.shift), 0x55)

    def amd_cmd(self, c: int, base: int = 0) -> None:
        self.unlock(base)
        self.cmd(base + (0x555 << self.shift), c)

    # reads of the information spaces
    def query(self, i: int) -> int:
        return self.same(self.word(i << self.shift))

    def query_table(self, n: int = 0x60) -> bytes:
        self.cmd(0x55 << self.shift, 0x98)
        table = bytes(self.query(i) for i in range(n))
        self.read_array()
        return table

    def ident(self, index: int, block_offset: int = 0) -> int:
        if self.intel:
            self.cmd(0, 0x90)
        else:
            self.amd_cmd(0x90)
        value = self.same(self.word(block_offset + (index << self.shift)))
        self.read_array()
        return value

    def status(self) -> int:
        return self.same(self.word(0))

    # operations; each returns the error bits (0 = success) and leaves the bank in read array
    def _intel_finish(self) -> int:
        st_ = self.status()
        assert st_ & SR_READY
        self.cmd(0, 0x50)     # clear status (and back to read array)
        return st_ & ~SR_READY

    def _amd_wait(self, offset: int) -> int:
        """Toggle-bit polling as FreeBSD's cfi_wait_ready does it; DQ5 means the algorithm failed."""
        a, b = self.word(offset), self.word(offset)
        if (a ^ b) & (DQ6 * self.rep) == 0:
            return 0
        assert self.same(b) & DQ5
        self.cmd(0, 0xF0)
        return DQ5

    def program(self, offset: int, value: int) -> int:
        if self.intel:
            self.cmd(offset, 0x40)
            self.dev.write(offset, self.bw, value)
            return self._intel_finish()
        self.amd_cmd(0xA0)
        self.dev.write(offset, self.bw, value)
        return self._amd_wait(offset)

    def buffered(self, offset: int, values: list[int]) -> int:
        start = self.g.block_at(offset)[1]
        if self.intel:
            self.cmd(offset, 0xE8)
            assert self.status() & SR_READY
            self.cmd(offset, len(values) - 1)
        else:
            self.unlock()
            self.cmd(start, 0x25)
            self.cmd(start, len(values) - 1)
        for i, v in enumerate(values):
            self.dev.write(offset + i * self.bw, self.bw, v)
        if self.intel:
            self.cmd(offset, 0xD0)
            return self._intel_finish()
        self.cmd(start, 0x29)
        return self._amd_wait(offset)

    def erase(self, offset: int) -> int:
        if self.intel:
            self.cmd(offset, 0x20)
            self.cmd(offset, 0xD0)
            return self._intel_finish()
        self.amd_cmd(0x80)
        self.unlock()
        self.cmd(offset, 0x30)
        return self._amd_wait(offset)

    def lock_command(self, offset: int, second: int) -> int:
        self.cmd(offset, 0x60)
        self.cmd(offset, second)
        return self._intel_finish()


def make(name: str, image: FlashImage | None = None) -> tuple[CfiFlash, Driver]:
    dev = CfiFlash(GEOMETRIES[name], image)
    return dev, Driver(dev)


def unlock_all(dev: CfiFlash) -> None:
    """P30-like parts power up locked: a driver unlocks before writing."""
    for i in range(dev.geometry.blocks):
        dev.set_lock(i, 0)


def sparse_file(path: Path, size: int, content: bytes = b"", at: int = 0) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(at)
        f.write(content)
    return path


# ---------------------------------------------------------------------- query and identity
@pytest.mark.parametrize("name", GEOMETRIES)
def test_query_describes_the_geometry(name):
    dev, drv = make(name)
    g = dev.geometry
    t = drv.query_table()
    assert t[0x10:0x13] == b"QRY"
    assert int.from_bytes(t[0x13:0x15], "little") == g.command_set
    assert (1 << t[0x27]) * g.chips == g.size
    assert int.from_bytes(t[0x28:0x2A], "little") == g.interface
    buffer_log = int.from_bytes(t[0x2A:0x2C], "little")
    assert (1 << buffer_log if buffer_log else 0) == g.chip_write_buffer
    regions = []
    for i in range(t[0x2C]):
        e = t[0x2D + 4 * i:0x31 + 4 * i]
        blocks = int.from_bytes(e[:2], "little") + 1
        chip_block = int.from_bytes(e[2:], "little") * 256
        regions.append((chip_block * g.chips, blocks))
    assert tuple(regions) == g.erase_regions
    pri = int.from_bytes(t[0x15:0x17], "little")
    assert t[pri:pri + 3] == b"PRI"
    assert dev.in_read_array


def test_virt_query_is_what_qemu_returns():
    """../reference/unicorn.md: each 32-bit read at 4*i returns entry i in both 16-bit halves."""
    dev, drv = make("qemu-virt")
    assert drv.word(0) == 0            # a missing drive reads 0
    drv.cmd(0, 0x70)
    assert dev.read(0, 4) == 0x00800080   # status right after reset: ready, both chips (QEMU 7.2)
    expected = dict.fromkeys(range(0x60), 0)
    expected.update({0x10: 0x51, 0x11: 0x52, 0x12: 0x59, 0x13: 0x01, 0x14: 0x00, 0x15: 0x31, 0x16: 0x00,
                     0x1B: 0x45, 0x1C: 0x55, 0x1F: 0x07, 0x20: 0x07, 0x21: 0x0A, 0x22: 0x00,
                     0x23: 0x04, 0x24: 0x04, 0x25: 0x04, 0x26: 0x00, 0x27: 0x19, 0x28: 0x02, 0x29: 0x00,
                     0x2A: 0x0B, 0x2B: 0x00, 0x2C: 0x01, 0x2D: 0xFF, 0x2E: 0x00, 0x2F: 0x00, 0x30: 0x02,
                     0x31: 0x50, 0x32: 0x52, 0x33: 0x49, 0x34: 0x31, 0x35: 0x30, 0x3F: 0x01})
    drv.cmd(0, 0x98)
    for i, v in expected.items():
        assert dev.read(4 * i, 4) == v | v << 16, f"query entry 0x{i:x}"
    drv.cmd(0, 0x90)
    assert dev.read(0, 4) == 0x00890089
    assert dev.read(4, 4) == 0x00180018
    drv.cmd(0, 0xFF)
    assert dev.in_read_array


def test_narrow_and_wide_reads_take_their_byte_lanes():
    dev, drv = make("qemu-virt")
    drv.cmd(0, 0x98)
    assert dev.read(0x40, 1) == 0x51 and dev.read(0x41, 1) == 0 and dev.read(0x42, 1) == 0x51
    assert dev.read(0x42, 2) == 0x0051
    dev, drv = make("intel-p30-x16")
    drv.cmd(0, 0x98)
    assert dev.read(0x20, 4) == 0x00520051          # two bank words in one read: 'Q', 'R'
    assert dev.read(0x21, 2) == 0x5200              # unaligned: high byte of 'Q', low byte of 'R'


@pytest.mark.parametrize("name", GEOMETRIES)
def test_identifier_codes(name):
    dev, drv = make(name)
    g = dev.geometry
    assert drv.ident(0) == g.manufacturer_id
    assert drv.ident(1) == g.device_id
    if g.extended_ids:
        assert (drv.ident(0x0E), drv.ident(0x0F)) == g.extended_ids
    assert dev.in_read_array


# ---------------------------------------------------------------------- program and erase
@pytest.mark.parametrize("name", GEOMETRIES)
def test_word_program_only_clears_bits(name):
    dev, drv = make(name)
    unlock_all(dev)
    _, start, _ = dev.geometry.block_at(dev.size // 2)
    bw = drv.bw
    dev.array[start:start + 2 * bw] = b"\xf0" * bw + b"\xff" * bw
    assert drv.program(start + bw, int.from_bytes(b"\x5a" * bw, "little")) == 0
    assert bytes(dev.array[start + bw:start + 2 * bw]) == b"\x5a" * bw
    # asking for 0 -> 1: the result is old & new; Intel parts just do it, AMD parts fail with DQ5
    error = drv.program(start, int.from_bytes(b"\x0f" * bw, "little"))
    assert bytes(dev.array[start:start + bw]) == b"\x00" * bw
    assert error == (0 if drv.intel else DQ5)
    assert dev.in_read_array


@pytest.mark.parametrize("name", GEOMETRIES)
def test_buffered_program(name):
    dev, drv = make(name)
    unlock_all(dev)
    g = dev.geometry
    page = g.bank_write_buffer
    _, start, bsize = g.block_at(g.size - 1)
    dev.array[start:start + bsize] = b"\xff" * bsize
    words = page // drv.bw
    values = [(i * 0x01010101 + 0x10203040) & drv.ones for i in range(words)]
    assert drv.buffered(start + page, values) == 0
    expected = b"".join(v.to_bytes(drv.bw, "little") for v in values)
    assert bytes(dev.array[start + page:start + 2 * page]) == expected
    assert bytes(dev.array[start:start + page]) == b"\xff" * page
    # a partial page from the middle
    assert drv.buffered(start + 2 * page + drv.bw, [0x1234 & drv.ones, 0]) == 0
    assert bytes(dev.array[start + 2 * page:start + 2 * page + 3 * drv.bw]) == (
        b"\xff" * drv.bw + (0x1234 & drv.ones).to_bytes(drv.bw, "little") + b"\x00" * drv.bw)
    assert dev.in_read_array


@pytest.mark.parametrize("name", GEOMETRIES)
def test_erase_sets_the_block_and_only_the_block(name):
    dev, drv = make(name)
    unlock_all(dev)
    g = dev.geometry
    for probe in (0, g.size - 1):
        idx, start, bsize = g.block_at(probe)
        lo, hi = max(0, start - 16), min(g.size, start + bsize + 16)
        dev.array[lo:hi] = b"\x11" * (hi - lo)
        assert drv.erase(start + bsize // 2) == 0
        assert bytes(dev.array[start:start + bsize]) == b"\xff" * bsize
        assert bytes(dev.array[lo:start]) == b"\x11" * (start - lo)
        assert bytes(dev.array[start + bsize:hi]) == b"\x11" * (hi - start - bsize)


def test_two_erase_regions_have_their_own_block_sizes():
    dev, drv = make("intel-p30-x16")
    unlock_all(dev)
    dev.array[0:256 * KIB] = b"\x00" * (256 * KIB)
    assert drv.erase(32 * KIB + 5) == 0          # block 1, a 32 KiB parameter block
    assert bytes(dev.array[32 * KIB:64 * KIB]) == b"\xff" * (32 * KIB)
    assert dev.array[64 * KIB] == 0 and dev.array[32 * KIB - 1] == 0
    assert drv.erase(128 * KIB) == 0             # block 4, the first 128 KiB main block
    assert bytes(dev.array[128 * KIB:256 * KIB]) == b"\xff" * (128 * KIB)
    assert dev.geometry.block_at(128 * KIB) == (4, 128 * KIB, 128 * KIB)


# ---------------------------------------------------------------------- locking and status (Intel)
@pytest.mark.parametrize("name", INTEL_GEOMETRIES)
def test_intel_lock_unlock_lockdown(name):
    dev, drv = make(name)
    g = dev.geometry
    idx, start, bsize = g.block_at(g.size // 2)
    unlock_all(dev)
    dev.array[start:start + drv.bw] = b"\xff" * drv.bw
    assert drv.lock_command(start, 0x01) == 0
    assert drv.ident(2, start) == LOCKED
    assert drv.program(start, 0) == SR_PROGRAM_ERROR | SR_LOCKED
    assert drv.erase(start) == SR_ERASE_ERROR | SR_LOCKED
    assert bytes(dev.array[start:start + drv.bw]) == b"\xff" * drv.bw
    assert drv.lock_command(start, 0xD0) == 0
    assert drv.ident(2, start) == 0
    assert drv.program(start, 0) == 0
    assert drv.lock_command(start, 0x2F) == 0
    assert drv.ident(2, start) == LOCKED | LOCKED_DOWN
    assert drv.lock_command(start, 0xD0) == 0      # refused: WP# is low
    assert drv.ident(2, start) == LOCKED | LOCKED_DOWN
    assert drv.erase(start) == SR_ERASE_ERROR | SR_LOCKED
    assert drv.ident(2, g.block_start(idx - 1)[0]) == 0   # the neighbour is untouched
    dev.reset()                                    # lock-down only ends with a reset
    assert drv.ident(2, start) == (LOCKED if g.locked_at_reset else 0)


def test_p30_powers_up_locked():
    dev, drv = make("intel-p30-x16")
    assert drv.ident(2, 0) == LOCKED
    assert drv.program(0, 0) == SR_PROGRAM_ERROR | SR_LOCKED
    assert drv.lock_command(0, 0xD0) == 0
    assert drv.program(0, 0) == 0


@pytest.mark.parametrize("name", INTEL_GEOMETRIES)
def test_intel_status_errors(name):
    dev, drv = make(name)
    unlock_all(dev)
    dev.array[0:16] = b"\x00" * 16
    drv.cmd(0, 0x20)
    drv.cmd(0, 0xFF)                               # erase setup, then not a confirm
    assert drv.status() == SR_READY | SR_SEQUENCE_ERROR
    assert dev.array[0] == 0                       # nothing erased
    drv.cmd(0, 0x70)
    assert drv.status() == SR_READY | SR_SEQUENCE_ERROR   # sticky until cleared
    drv.cmd(0, 0x50)
    drv.cmd(0, 0x70)
    assert drv.status() == 0
    drv.cmd(0, 0x60)
    drv.cmd(0, 0x55)                               # lock setup, then not a lock command
    assert drv.status() == SR_READY | SR_SEQUENCE_ERROR
    drv.cmd(0, 0x50)
    drv.cmd(0, 0x33)                               # no such command
    assert drv.status() == SR_READY | SR_SEQUENCE_ERROR
    drv.cmd(0, 0x50)
    drv.cmd(0, 0xE8)                               # buffer count beyond the buffer
    drv.cmd(0, dev.geometry.chip_write_buffer // dev.geometry.device_width)
    assert drv.status() == SR_READY | SR_SEQUENCE_ERROR
    drv.cmd(0, 0x50)
    page = dev.geometry.bank_write_buffer        # a datum outside the buffer page: program error, nothing written
    dev.array[0:2 * page] = b"\xff" * (2 * page)
    drv.cmd(0, 0xE8)
    drv.cmd(0, 1)
    dev.write(0, drv.bw, 0)
    dev.write(page, drv.bw, 0)
    drv.cmd(0, 0xD0)
    assert drv.status() == SR_READY | SR_PROGRAM_ERROR
    drv.cmd(0, 0xFF)
    assert bytes(dev.array[0:2 * page]) == b"\xff" * (2 * page)


def test_intel_part_without_write_buffer_refuses_0xe8():
    g = dataclasses.replace(GEOMETRIES["intel-p30-x16"], chip_write_buffer=0, locked_at_reset=False)
    dev = CfiFlash(g)
    drv = Driver(dev)
    assert drv.query_table()[0x2A] == 0
    drv.cmd(0, 0xE8)
    assert drv.status() == SR_READY | SR_SEQUENCE_ERROR


def test_intel_query_at_any_address_and_commands_from_any_read_mode():
    dev, drv = make("qemu-virt")
    drv.cmd(0x1234 * 4, 0x98)
    assert drv.query(0x10) == ord("Q")
    drv.cmd(0, 0x90)                              # from query straight to identifier
    assert drv.same(drv.word(0)) == 0x89
    drv.cmd(0, 0x70)
    assert drv.status() == SR_READY
    drv.cmd(0, 0x00)                              # QEMU's alternative read-array command
    assert dev.in_read_array


def test_readonly_image_refuses_changes(tmp_path):
    g = GEOMETRIES["intel-4x8"]
    path = sparse_file(tmp_path / "ro.img", g.size, b"\x12" * 64)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    dev = CfiFlash(g, FlashImage.open(path, g.size, readonly=True))
    drv = Driver(dev)
    assert drv.program(0, 0) == SR_PROGRAM_ERROR
    assert drv.erase(0) == SR_ERASE_ERROR
    assert drv.buffered(0, [0]) == SR_PROGRAM_ERROR
    assert bytes(dev.array[:64]) == b"\x12" * 64
    dev.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


# ---------------------------------------------------------------------- AMD specifics
@pytest.mark.parametrize("name", AMD_GEOMETRIES)
def test_amd_failed_program_polls_as_a_real_part(name):
    dev, drv = make(name)
    dev.array[0:drv.bw] = b"\x00" * drv.bw
    drv.amd_cmd(0xA0)
    drv.dev.write(0, drv.bw, 0x80)                 # bit 7 cannot go 0 -> 1
    assert not dev.in_read_array
    a, b = drv.same(drv.word(0)), drv.same(drv.word(0))
    assert (a ^ b) == DQ6                          # DQ6 toggles
    assert a & DQ5 and not a & DQ7                 # DQ5 failed, DQ7 = complement of the datum's bit 7
    drv.cmd(0, 0xAA)                               # anything but the reset is ignored
    assert not dev.in_read_array
    drv.cmd(0, 0xF0)
    assert dev.in_read_array and dev.array[0] == 0


@pytest.mark.parametrize("name", AMD_GEOMETRIES)
def test_amd_write_buffer_abort_needs_the_abort_reset(name):
    dev, drv = make(name)
    g = dev.geometry
    dev.array[0:64] = b"\xff" * 64
    drv.unlock()
    drv.cmd(0, 0x25)
    drv.cmd(0, g.chip_write_buffer // g.device_width)   # one word too many
    a, b = drv.same(drv.word(0)), drv.same(drv.word(0))
    assert a & DQ1 and (a ^ b) == DQ6
    drv.cmd(0, 0xF0)                               # a plain reset does not leave the abort state
    assert not dev.in_read_array
    drv.unlock()
    drv.cmd(0x555 << drv.shift, 0xF0)              # write-to-buffer-abort reset
    assert dev.in_read_array
    # a datum outside the page aborts too, and nothing is programmed
    drv.unlock()
    drv.cmd(0, 0x25)
    drv.cmd(0, 1)
    dev.write(0, drv.bw, 0)
    dev.write(g.bank_write_buffer, drv.bw, 0)
    assert drv.same(drv.word(0)) & DQ1
    drv.unlock()
    drv.cmd(0x555 << drv.shift, 0xF0)
    assert bytes(dev.array[0:64]) == b"\xff" * 64


@pytest.mark.parametrize("name", AMD_GEOMETRIES)
def test_amd_protected_sector_and_autoselect(name):
    dev, drv = make(name)
    g = dev.geometry
    idx, start, bsize = g.block_at(g.size // 2)
    dev.array[start:start + 4] = b"\xff" * 4
    dev.set_lock(idx, LOCKED)
    assert drv.ident(2, start) == 1
    assert drv.ident(2, 0) == 0
    assert drv.program(start, 0) == 0              # the algorithm ends at once; nothing changes
    assert drv.erase(start) == 0
    assert bytes(dev.array[start:start + 4]) == b"\xff" * 4
    dev.array[0:4] = b"\x00" * 4
    drv.amd_cmd(0x80)                               # chip erase skips the protected sector
    drv.amd_cmd(0x10)
    assert drv._amd_wait(0) == 0
    assert dev.array[0] == 0xFF and bytes(dev.array[start:start + 4]) == b"\xff" * 4
    assert dev.array[g.size - 1] == 0xFF


@pytest.mark.parametrize("name", AMD_GEOMETRIES)
def test_amd_command_decoding(name):
    dev, drv = make(name)
    events: list[bool] = []
    dev.on_mode_change = events.append
    drv.cmd(0, 0x98)                               # CFI query only at 0x55
    assert dev.in_read_array
    drv.cmd(0x55 << drv.shift, 0x98)
    assert drv.query(0x10) == ord("Q")
    drv.cmd(0, 0x00)                               # any write leaves query mode
    assert dev.in_read_array
    drv.cmd(0x555 << drv.shift, 0xAA)              # a broken unlock goes back to read array
    drv.cmd(0x123 << drv.shift, 0x55)
    drv.cmd(0x555 << drv.shift, 0x90)
    assert dev.in_read_array
    drv.amd_cmd(0x90)                              # autoselect, then CFI query and back
    drv.cmd(0x55 << drv.shift, 0x98)
    assert drv.query(0x11) == ord("R")
    drv.cmd(0, 0xF0)
    assert drv.same(drv.word(0)) == dev.geometry.manufacturer_id
    drv.cmd(0, 0xF0)
    assert dev.in_read_array
    assert events == [False, True, False, True]


def test_amd_unlock_cycles_relative_to_the_sector_as_freebsd_writes_them():
    """FreeBSD's cfi_write_block puts the erase unlock cycles at sector + 0xAAA / + 0x555 (bytes, x16)."""
    dev, drv = make("geom-map-example")
    sector = 5 * 64 * KIB
    dev.array[sector:sector + 64 * KIB] = b"\x00" * (64 * KIB)
    drv.amd_cmd(0x80, base=sector)
    drv.amd_cmd(0x30, base=sector)
    # the third cycle went to sector + 0xAAA, which is in the sector: 0x30 erases it
    assert bytes(dev.array[sector:sector + 64 * KIB]) == b"\xff" * (64 * KIB)
    assert dev.in_read_array


def test_amd_unlock_bypass():
    dev, drv = make("geom-map-example")
    dev.array[0:8] = b"\xff" * 8
    drv.amd_cmd(0x20)
    for i in range(4):
        drv.cmd(0, 0xA0)
        dev.write(2 * i, 2, 0x1100 + i)
        assert drv._amd_wait(2 * i) == 0
    assert bytes(dev.array[0:8]) == bytes([0, 0x11, 1, 0x11, 2, 0x11, 3, 0x11])
    drv.cmd(0, 0x90)
    drv.cmd(0, 0x00)                               # unlock bypass reset
    drv.cmd(0, 0xA0)                               # no longer a program command
    dev.write(0, 2, 0)
    assert dev.array[1] == 0x11


# ---------------------------------------------------------------------- reset and modes
@pytest.mark.parametrize("name", GEOMETRIES)
def test_reset_returns_to_read_array(name):
    dev, drv = make(name)
    enters = [lambda: drv.cmd(0x55 << drv.shift, 0x98)]
    enters.append((lambda: drv.cmd(0, 0x90)) if drv.intel else (lambda: drv.amd_cmd(0x90)))
    for enter in enters:
        enter()
        assert not dev.in_read_array
        drv.read_array()
        assert dev.in_read_array
    drv.cmd(0x55 << drv.shift, 0x98)
    dev.reset()                                    # the RESET# pin, from any state
    assert dev.in_read_array
    if drv.intel:
        drv.cmd(0, 0xE8)
        drv.cmd(0, 0)
        dev.reset()
        drv.cmd(0, 0x70)
        assert drv.status() == SR_READY


@pytest.mark.parametrize("name", GEOMETRIES)
def test_mode_change_fires_exactly_on_enter_and_leave(name):
    dev, drv = make(name)
    unlock_all(dev)
    events: list[bool] = []
    dev.on_mode_change = events.append
    drv.read_array()                               # already there: nothing
    assert events == []
    drv.cmd(0x55 << drv.shift, 0x98)
    assert events == [False]
    if drv.intel:
        drv.cmd(0, 0x90)                           # query -> identifier: still not the array
    assert events == [False]
    drv.read_array()
    assert events == [False, True]
    assert drv.program(0, 0) in (0, DQ5)
    assert events == [False, True, False, True]
    assert drv.erase(0) == 0
    # AMD reads the array through the erase cycles (as QEMU) and the erase is instantaneous:
    # the bank never leaves read-array mode, so the machine never remaps it.
    assert events == [False, True, False, True] + ([False, True] if drv.intel else [])
    assert dev.in_read_array
    assert dev.read(0, drv.bw) == int.from_bytes(dev.array[:drv.bw], "little")


# ---------------------------------------------------------------------- the backing file
@pytest.mark.parametrize("name", GEOMETRIES)
def test_every_completed_operation_is_in_the_file(tmp_path, name):
    g = GEOMETRIES[name]
    path = sparse_file(tmp_path / "flash.img", g.size)
    image = FlashImage.open(path, g.size)
    dev = CfiFlash(g, image)
    unlock_all(dev)
    drv = Driver(dev)
    _, start, bsize = g.block_at(g.size - 1)

    def on_disk(offset: int, n: int) -> bytes:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(n)

    syncs = image.syncs
    assert drv.erase(start) == 0
    assert on_disk(start, bsize) == b"\xff" * bsize and image.syncs == syncs + 1
    assert drv.program(start + drv.bw, 0x5A5A5A5A & drv.ones) == 0
    assert on_disk(start + drv.bw, drv.bw) == b"\x5a" * drv.bw and image.syncs == syncs + 2
    assert drv.buffered(start + g.bank_write_buffer, [0] * 2) == 0
    assert on_disk(start + g.bank_write_buffer, 2 * drv.bw) == b"\x00" * 2 * drv.bw
    assert image.syncs == syncs + 3
    dev.close()
    reopened = CfiFlash(g, FlashImage.open(path, g.size))
    assert bytes(reopened.array[start:start + 2 * drv.bw]) == b"\xff" * drv.bw + b"\x5a" * drv.bw
    reopened.close()


def test_a_killed_process_loses_no_completed_operation(tmp_path):
    g = GEOMETRIES["geom-map-example"]
    path = sparse_file(tmp_path / "flash.img", g.size)
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from board.devices.cfi import CfiFlash, CfiGeometry, FlashImage
        dev = CfiFlash(CfiGeometry.geom_map_example(), FlashImage.open({str(path)!r}))
        def cycle(offset, value):
            dev.write(offset, 2, value)
        cycle(0xAAA, 0xAA); cycle(0x554, 0x55); cycle(0xAAA, 0x80)
        cycle(0xAAA, 0xAA); cycle(0x554, 0x55); cycle(0x10000, 0x30)
        cycle(0xAAA, 0xAA); cycle(0x554, 0x55); cycle(0xAAA, 0xA0)
        cycle(0x10002, 0x1234)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr.decode()
    data = path.read_bytes()
    assert data[0x10000:0x10002] == b"\xff\xff" and data[0x10002:0x10004] == b"\x34\x12"
    assert data[0x10004:0x20000] == b"\xff" * (0x10000 - 4)
    assert data[:0x10000] == bytes(0x10000) and data[0x20000:0x20010] == bytes(16)


def test_a_wrong_size_image_is_a_clear_error(tmp_path):
    g = GEOMETRIES["qemu-virt"]
    path = sparse_file(tmp_path / "small.img", 1 * MIB)
    with pytest.raises(ValueError, match=r"1048576 bytes.*exactly 67108864 bytes \(64 MiB\)"):
        FlashImage.open(path, g.size)
    image = FlashImage.open(path)
    with pytest.raises(ValueError, match=r"1048576 bytes.*67108864"):
        CfiFlash(g, image)
    image.close()
    empty = sparse_file(tmp_path / "empty.img", 0)
    with pytest.raises(ValueError, match="empty"):
        FlashImage.open(empty)
    assert path.stat().st_size == 1 * MIB          # never padded or truncated


def test_commands_that_change_nothing_leave_the_file_alone(tmp_path):
    g = GEOMETRIES["intel-p30-x16"]
    content = random.Random(4).randbytes(256 * KIB)
    path = sparse_file(tmp_path / "flash.img", g.size, content)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    image = FlashImage.open(path, g.size)
    dev = CfiFlash(g, image)
    drv = Driver(dev)
    drv.query_table()
    drv.ident(0)
    assert drv.program(0, 0) == SR_PROGRAM_ERROR | SR_LOCKED      # powered up locked
    assert drv.erase(0) == SR_ERASE_ERROR | SR_LOCKED
    drv.cmd(0, 0x20)
    drv.cmd(0, 0x00)
    drv.cmd(0, 0x50)
    for offset in range(0, 256, 2):
        dev.read(offset, 2)
    assert image.syncs == 0
    dev.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


# ---------------------------------------------------------------------- snapshots
@pytest.mark.parametrize("name", ["qemu-virt", "geom-map-example"])
def test_snapshot_restores_a_half_done_buffered_program(name):
    dev, drv = make(name)
    g = dev.geometry
    dev.array[0:g.bank_write_buffer] = b"\xff" * g.bank_write_buffer
    if drv.intel:
        drv.cmd(0, 0xE8)
        drv.cmd(0, 3)
    else:
        drv.unlock()
        drv.cmd(0, 0x25)
        drv.cmd(0, 3)
    dev.write(0, drv.bw, 0x11111111 & drv.ones)
    dev.write(drv.bw, drv.bw, 0x22222222 & drv.ones)
    state = json.loads(json.dumps(dev.state()))
    other = CfiFlash(g, FlashImage.anonymous(g.size, fill=0xFF))
    events: list[bool] = []
    other.on_mode_change = events.append
    other.load_state(state)
    assert events == [False]
    for d in (dev, other):
        d.write(2 * drv.bw, drv.bw, 0x33333333 & drv.ones)
        d.write(3 * drv.bw, drv.bw, 0x44444444 & drv.ones)
        d.write(0, drv.bw, (0xD0 if drv.intel else 0x29) * drv.rep)
        d.write(0, drv.bw, (0xFF if drv.intel else 0xF0) * drv.rep)
        assert bytes(d.array[0:4 * drv.bw]) == b"".join(bytes([v]) * drv.bw for v in (0x11, 0x22, 0x33, 0x44))
    assert other.state() == dev.state()


def test_snapshot_rejects_other_versions_and_geometries():
    dev, _ = make("qemu-virt")
    state = dev.state()
    with pytest.raises(ValueError, match="version"):
        dev.load_state({**state, "version": 99})
    amd, _ = make("geom-map-example")
    with pytest.raises(ValueError, match="geometry"):
        amd.load_state(state)
    with pytest.raises(ValueError, match="malformed"):
        dev.load_state({**state, "wcycle": "x"})


def test_bad_geometries_are_refused():
    ok = dict(size=8 * MIB, bank_width=2, device_width=2, erase_regions=((64 * KIB, 128),))
    CfiGeometry(**ok)
    for change in ({"bank_width": 3}, {"device_width": 4}, {"bank_width": 1},
                   {"erase_regions": ((64 * KIB, 127),)}, {"command_set": 3},
                   {"erase_regions": ((100, 8 * MIB // 100),)}, {"chip_write_buffer": 48},
                   {"size": 6 * MIB, "erase_regions": ((64 * KIB, 96),)}, {"device_id": 0x12345}):
        with pytest.raises(ValueError):
            CfiGeometry(**{**ok, **change})


# ---------------------------------------------------------------------- random sequences vs a model
def _tracked_blocks(g: CfiGeometry) -> tuple[list[int], list[int]]:
    targets = sorted({0, 1, g.blocks - 1})
    tracked = sorted({i for t in targets for i in (t - 1, t, t + 1) if 0 <= i < g.blocks})
    return targets, tracked


@pytest.mark.parametrize("name", GEOMETRIES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_operations_match_a_nor_model(name, data):
    """Program, buffered program, erase and (un)lock in any order do what NOR memory does."""
    g = GEOMETRIES[name]
    dev, drv = make(name)
    targets, tracked = _tracked_blocks(g)
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    model: dict[int, bytearray] = {}
    for idx in tracked:
        start, bsize = g.block_start(idx)
        content = b"\xff" * bsize if rng.random() < 0.5 else rng.randbytes(bsize)
        dev.array[start:start + bsize] = content
        model[idx] = bytearray(content)
    locked = {i for i in range(g.blocks) if dev.lock_state(i) & LOCKED}
    bw, page = drv.bw, g.bank_write_buffer
    value = st.one_of(st.just(0), st.just(drv.ones), st.integers(0, drv.ones))
    kinds = ["program", "buffer", "erase"] + (["lock", "unlock"] if drv.intel else ["protect", "chip_erase"])

    def expect_program(idx: int, at: int, values: list[int]) -> int:
        if idx in locked:
            return SR_PROGRAM_ERROR | SR_LOCKED if drv.intel else 0
        fail = 0
        for i, v in enumerate(values):
            old = int.from_bytes(model[idx][at + i * bw:at + (i + 1) * bw], "little")
            model[idx][at + i * bw:at + (i + 1) * bw] = (old & v).to_bytes(bw, "little")
            fail |= v & ~old
        return DQ5 if fail and not drv.intel else 0

    for _ in range(data.draw(st.integers(1, 10), label="length")):
        kind = data.draw(st.sampled_from(kinds))
        idx = data.draw(st.sampled_from(targets))
        start, bsize = g.block_start(idx)
        if kind == "program":
            at = data.draw(st.integers(0, 2 * page // bw - 1)) * bw
            v = data.draw(value)
            assert drv.program(start + at, v) == expect_program(idx, at, [v])
        elif kind == "buffer":
            first = data.draw(st.integers(0, page // bw - 1))
            values = data.draw(st.lists(value, min_size=1, max_size=page // bw - first))
            at = data.draw(st.integers(0, 1)) * page + first * bw
            assert drv.buffered(start + at, values) == expect_program(idx, at, values)
        elif kind == "erase":
            if idx in locked:
                assert drv.erase(start) == (SR_ERASE_ERROR | SR_LOCKED if drv.intel else 0)
            else:
                assert drv.erase(start) == 0
                model[idx][:] = b"\xff" * bsize
        elif kind == "chip_erase":
            drv.amd_cmd(0x80)
            drv.amd_cmd(0x10)
            assert drv._amd_wait(0) == 0
            for i in model:
                if i not in locked:
                    model[i][:] = b"\xff" * len(model[i])
        elif kind in ("lock", "unlock"):
            assert drv.lock_command(start, 0x01 if kind == "lock" else 0xD0) == 0
            (locked.add if kind == "lock" else locked.discard)(idx)
        else:
            protect = data.draw(st.booleans())
            dev.set_lock(idx, LOCKED if protect else 0)
            (locked.add if protect else locked.discard)(idx)
        assert dev.in_read_array
    for idx in tracked:
        start, bsize = g.block_start(idx)
        assert bytes(dev.array[start:start + bsize]) == bytes(model[idx]), f"block {idx}"


def test_every_geometry_a_profile_may_name_is_built_by_the_cfi_model():
    from board.devices.cfi import GEOMETRIES
    from board.devices.flash_image import GEOMETRY_NAMES

    assert tuple(GEOMETRIES) == GEOMETRY_NAMES
    assert all(GEOMETRIES[name]().name == name for name in GEOMETRY_NAMES)
