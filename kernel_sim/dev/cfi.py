"""The CFI flash disk driver (sys/dev/cfi/cfi_core.c, cfi_disk.c), talking to the chip over the bus.

Probe: the CFI query ("QRY", command set, size, erase regions, write buffer) and the identifier,
then back to read-array. Reads copy from the array in read-array mode; a write erases each touched
erase block and programs it again, with the command set's own sequences and status polling, as
cfi_write_block does. Errors reported by the chip become EIO.
"""

from __future__ import annotations

from dataclasses import dataclass

from board.machine import Machine
from kernel_sim.geom.core import EIO, GeomError

INTEL, AMD = 0x0001, 0x0002


class CfiProbeError(Exception):
    pass


@dataclass
class CfiChip:
    base: int
    width: int               # bus bytes per access (the bank width)
    command_set: int
    size: int
    regions: list[tuple[int, int]]   # (block size on the bus, count)
    write_buffer: int
    manufacturer: int = 0
    device: int = 0

    def block_of(self, offset: int) -> tuple[int, int]:
        """(start, size) of the erase block holding offset."""
        start = 0
        for size, count in self.regions:
            if offset < start + size * count:
                return start + (offset - start) // size * size, size
            start += size * count
        raise GeomError(EIO, f"offset 0x{offset:x} is past the flash")


class CfiDriver:
    """One attached cfi(4) device: cfid<unit> for GEOM."""

    def __init__(self, machine: Machine, base: int, *, unit: int = 0) -> None:
        self.machine = machine
        self.unit = unit
        self.chip = self._probe(base)
        self.sectorsize = self.chip.width    # the sector size cfid printed in geom_map(4)'s conftxt

    # ------------------------------------------------------------ bus
    def _rd(self, offset: int) -> int:
        return self.machine.bus_read(self.chip_base + offset, self.width)

    def _wr(self, offset: int, value: int) -> None:
        self.machine.bus_write(self.chip_base + offset, self.width, value)

    def _cmd(self, word: int, cmd: int) -> None:
        """A command at a word address: every chip of the bank gets it (replicated per byte lane)."""
        self._wr(word * self.width, cmd * self._replicate)

    def _probe(self, base: int) -> CfiChip:
        self.chip_base = base
        for width in (4, 2, 1):
            self.width = width
            self._replicate = 1
            self._cmd(0x55, 0x98)
            q = bytes(self._rd(i * width) & 0xFF for i in (0x10, 0x11, 0x12))
            if q == b"QRY":
                break
            self._cmd(0, 0xFF)
            self._cmd(0, 0xF0)
        else:
            raise CfiProbeError(f"no CFI flash answers at 0x{base:08x}")
        def q8(i: int) -> int:
            return self._rd(i * self.width) & 0xFF

        per_chip = 1 << q8(0x27)
        device_width = 2 if (q8(0x28) | q8(0x29) << 8) in (1, 2) else 1   # interface: x16 or x8/x16
        chips = max(1, self.width // device_width)
        self._replicate = sum(1 << (8 * device_width * k) for k in range(chips))
        command_set = q8(0x13) | q8(0x14) << 8
        regions = []
        for r in range(q8(0x2C)):
            count = (q8(0x2D + 4 * r) | q8(0x2E + 4 * r) << 8) + 1
            size = (q8(0x2F + 4 * r) | q8(0x30 + 4 * r) << 8) * 256 * chips
            regions.append((size, count))
        write_buffer = (1 << (q8(0x2A) | q8(0x2B) << 8)) * chips
        self._cmd(0, 0xF0 if command_set == AMD else 0xFF)
        # The identifier (autoselect): manufacturer at word 0, device at word 1 (cfi_core.c cfi_probe)
        if command_set == AMD:
            self._unlock()
            self._cmd(0x555, 0x90)
        else:
            self._cmd(0, 0x90)
        lane = (1 << (8 * device_width)) - 1
        manufacturer, device = self._rd(0) & lane, self._rd(self.width) & lane
        self._cmd(0, 0xF0 if command_set == AMD else 0xFF)
        return CfiChip(base, self.width, command_set, per_chip * chips, regions, write_buffer,
                       manufacturer, device)

    # ------------------------------------------------------------ strategy
    def read(self, offset: int, length: int) -> bytes:
        bank = self.machine.flash_at(self.chip.base)
        if bank is None or not bank.device.in_read_array:
            raise GeomError(EIO, "cfi: the flash is not in read-array mode")
        start = self.chip.base - bank.base + offset
        return bytes(bank.device.array[start:start + length])

    def write(self, offset: int, data: bytes) -> None:
        """Erase and reprogram every erase block the write touches (cfi_write_block)."""
        end = offset + len(data)
        pos = offset
        while pos < end:
            start, size = self.chip.block_of(pos)
            block = bytearray(self.read(start, size))
            lo, hi = max(offset, start), min(end, start + size)
            block[lo - start:hi - start] = data[lo - offset:hi - offset]
            self._erase(start)
            self._program(start, bytes(block))
            pos = start + size

    def _erase(self, start: int) -> None:
        if self.chip.command_set == AMD:
            self._unlock()
            self._cmd(0x555, 0x80)
            self._unlock()
            self._wr(start, 0x30 * self._replicate)
            self._amd_wait(start)
        else:
            self._wr(start, 0x20 * self._replicate)
            self._wr(start, 0xD0 * self._replicate)
            self._intel_wait(start, "erase")

    def _program(self, start: int, block: bytes) -> None:
        w = self.width
        erased = (1 << (8 * w)) - 1
        for off in range(0, len(block), w):
            value = int.from_bytes(block[off:off + w], "little")
            if value == erased:
                continue                          # erased flash already reads all ones
            if self.chip.command_set == AMD:
                self._unlock()
                self._cmd(0x555, 0xA0)
                self._wr(start + off, value)
                self._amd_wait(start + off)
            else:
                self._wr(start + off, 0x40 * self._replicate)
                self._wr(start + off, value)
                self._intel_wait(start + off, "program")
            if self._rd(start + off) != value:       # verify in read-array mode, as cfi_write_block does
                raise GeomError(EIO, f"cfi: program at 0x{start + off:x} did not take")

    def _unlock(self) -> None:
        self._cmd(0x555, 0xAA)
        self._cmd(0x2AA, 0x55)

    def _intel_wait(self, offset: int, what: str) -> None:
        self._wr(offset, 0x70 * self._replicate)
        status = self._rd(offset)
        self._wr(offset, 0x50 * self._replicate)     # clear status
        self._wr(offset, 0xFF * self._replicate)     # read array
        lanes = [(status >> (8 * k)) & 0xFF for k in range(self.width)]
        if any(s & 0x3A for s in lanes):               # SR.1 locked, SR.3 VPP, SR.4 program, SR.5 erase
            raise GeomError(EIO, f"cfi: {what} at 0x{offset:x} failed (status 0x{status:x})")

    def _amd_wait(self, offset: int) -> None:
        """Toggle polling: DQ6 stops toggling when done; DQ5 means the chip gave up."""
        first, second = self._rd(offset), self._rd(offset)
        if first != second:
            self._cmd(0, 0xF0)
            raise GeomError(EIO, f"cfi: operation at 0x{offset:x} did not complete (status 0x{second:x})")
