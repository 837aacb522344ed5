"""The cfi disk driver probes the chips over the bus and writes through their command sets."""

from __future__ import annotations

import pytest

from board.devices.flash_image import FlashImage
from board.machine import Machine
from board.profile import load_profile
from kernel_sim.dev.cfi import AMD, INTEL, CfiDriver, CfiProbeError
from kernel_sim.geom.core import GeomError


@pytest.mark.parametrize("board, base, expected", [
    ("virt", 0x0, (INTEL, 64 << 20, 4, [(256 << 10, 256)], 0x89, 0x18)),
    ("embedded", 0x1F000000, (AMD, 8 << 20, 4, [(64 << 10, 128)], 0x0001, 0x227E)),
])
def test_probe_reads_query_and_identifier(board, base, expected):
    machine = Machine(load_profile(board), 32 << 20)
    chip = CfiDriver(machine, base).chip
    assert (chip.command_set, chip.size, chip.width, chip.regions, chip.manufacturer, chip.device) == expected
    assert all(bank.device.in_read_array for bank in machine.flash.values())   # left in read-array mode


def test_intel_write_erases_and_programs_one_block(tmp_path):
    path = tmp_path / "flash0.img"
    path.write_bytes(b"\xff" * (64 << 20))
    machine = Machine(load_profile("virt"), 32 << 20,
                      flash_images={"flash0": FlashImage.open(path, durable=False)})
    drv = CfiDriver(machine, 0x0)
    drv.write(0x40000 + 8, b"firmware")
    assert drv.read(0x40000, 16) == b"\xff" * 8 + b"firmware"
    with path.open("rb") as f:
        f.seek(0x40000)
        assert f.read(16) == b"\xff" * 8 + b"firmware"


def test_locked_intel_block_fails_with_eio():
    machine = Machine(load_profile("virt"), 32 << 20)
    drv = CfiDriver(machine, 0x0)
    machine.flash["flash0"].device.set_lock(0, 1)
    with pytest.raises(GeomError) as err:
        drv.write(0, b"abcd")
    assert err.value.errno == 5


def test_nothing_answering_is_a_probe_error():
    machine = Machine(load_profile("virt"), 32 << 20)
    with pytest.raises(Exception) as err:
        CfiDriver(machine, 0x40000000)       # RAM, not a flash
    assert isinstance(err.value, (CfiProbeError,))
