"""CFI NOR flash: the JESD68 query, Intel/Sharp (0x0001) and AMD/Fujitsu (0x0002) command sets.

One bank of `bank_width / device_width` identical chips wired side by side on the bus, modelled as
QEMU's hw/block/pflash_cfi01.c and pflash_cfi02.c model them: a state machine (`wcycle`, `cmd`,
`status`) in front of the array. In read-array mode a read is the array itself, so the machine can
map `array` as plain memory ("no Python on reads"); the first write that leaves that mode makes the
device call `on_mode_change(False)` and the machine maps the bank as MMIO until the guest returns
(`on_mode_change(True)`). Writes always come here, in either mapping.

Every operation completes at once (virtual time does not advance), so what a read returns right
after is what a real part returns once it is done: Intel status with SR.7 set, AMD array data (so
DQ7 data polling and DQ6 toggle polling both see "done"). The states a real part cannot leave on
its own (AMD DQ5 failure, AMD write-buffer abort) stay until the guest resets them.

Where this model and QEMU or real parts differ, on purpose:
- All chips of a bank act in lockstep: the command is the low byte of the bus value (QEMU does the
  same); real interleaved chips each decode their own byte lane.
- Intel: any command is accepted from any read mode (QEMU ignores most writes in query mode);
  block erase happens at the 0xD0 confirm at the confirm's block (QEMU erases at the 0x20 cycle);
  a wrong confirm or an unknown command is a command sequence error, SR.4|SR.5, as on real parts
  (QEMU falls back to read array). 0x00 and 0xF0 return to read array and 0x50 clears the status
  and returns to read array, as in QEMU. Status after reset reads SR.7 = 1 (ready), as Debian's
  QEMU 7.2 was measured to answer (0x00800080) and as real parts do; the reference's "reads 0"
  did not hold for that QEMU.
- Intel locking is modelled (QEMU has none): lock bit and lock-down bit per block, shown at offset 2
  of a block in the ID space; WP# is held low, so locked-down blocks stay locked until reset.
- AMD: programming a 0 bit to 1 ends in the DQ5 failure state until 0xF0 (real parts do this;
  QEMU just ANDs). Buffered program (0x25 .. 0x29) with the Spansion abort rules and the
  write-to-buffer-abort reset (QEMU has none). Sector protection is set by the host (set_lock).
  Unknown autoselect offsets read 0 (QEMU reads the array there).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .flash_image import FlashImage, human_size

INTEL = 0x0001   # Intel/Sharp extended command set (JEP137 ID 0x0001)
AMD = 0x0002     # AMD/Fujitsu standard command set (ID 0x0002)
SNAPSHOT_VERSION = 1

# Intel status register (SR) bits.
SR_READY = 0x80             # SR.7 write state machine ready
SR_ERASE_SUSPENDED = 0x40
SR_ERASE_ERROR = 0x20       # SR.5 erase (or clear lock-bit) error
SR_PROGRAM_ERROR = 0x10     # SR.4 program (or set lock-bit) error
SR_VPP_LOW = 0x08
SR_PROGRAM_SUSPENDED = 0x04
SR_LOCKED = 0x02            # SR.1 the operation hit a locked block
SR_SEQUENCE_ERROR = SR_ERASE_ERROR | SR_PROGRAM_ERROR

# AMD status bits (read in place of data while an embedded algorithm runs or has failed).
DQ7 = 0x80   # data polling: complement of bit 7 of the datum being programmed
DQ6 = 0x40   # toggles on every read
DQ5 = 0x20   # exceeded timing limits: the operation failed
DQ2 = 0x04
DQ1 = 0x02   # write-to-buffer abort

# Per-block lock state, as the Intel ID space shows it at block + 2 (D0 locked, D1 locked down).
LOCKED = 0x01
LOCKED_DOWN = 0x02

# AMD wcycle values beyond QEMU's 0..6 unlock/command cycles.
_WC_CFI = 7              # CFI query entered from read array
_WC_AUTOSELECT_CFI = 8   # CFI query entered from autoselect (0xF0 goes back to autoselect)
_WC_FAILED = 9           # DQ5 set: only 0xF0 leaves
_WC_ABORT = 10           # write-buffer abort: AA@unlock0, 55@unlock1, F0 leaves (10, 11, 12)

KIB = 1024
MIB = 1024 * KIB


def _log2(value: int) -> int:
    return value.bit_length() - 1


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class CfiGeometry:
    """What a bank is: size, wiring, erase regions, identity and the values of its query table.

    Sizes are bus sizes (what the guest sees across the whole bank) except `chip_write_buffer`,
    which is per chip, as the query table gives it. Timeouts are the raw query values
    (0x1F-0x22 typical: 2^n us word, 2^n us buffer, 2^n ms block, 2^n ms chip; 0x23-0x26 maximum:
    2^n times typical). The pri_* fields fill the Intel primary extended table only.
    """

    size: int
    bank_width: int
    device_width: int
    erase_regions: tuple[tuple[int, int], ...]    # (block size on the bus, count), in address order
    command_set: int = INTEL
    manufacturer_id: int = 0x89
    device_id: int = 0x18
    extended_ids: tuple[int, int] | None = None   # AMD autoselect words 0x0E, 0x0F
    chip_write_buffer: int = 0                    # bytes per chip; 0 = no buffered program
    vcc: tuple[int, int] = (0x27, 0x36)           # min, max (BCD volts, query 0x1B-0x1C)
    vpp: tuple[int, int] = (0x00, 0x00)           # 0 = no Vpp pin
    typical_timeouts: tuple[int, int, int, int] = (0x07, 0x07, 0x0A, 0x00)
    max_timeouts: tuple[int, int, int, int] = (0x04, 0x04, 0x04, 0x00)
    interface: int = 0x0002                       # 0 x8, 1 x16, 2 x8/x16 (query 0x28)
    unlock_addresses: tuple[int, int] = (0x555, 0x2AA)   # AMD, in chip words
    locked_at_reset: bool = False                 # Intel parts such as P30 power up locked
    pri_features: int = 0x20                      # bit 5: instant individual block locking
    pri_block_status: int = 0x03                  # lock and lock-down bits shown at block + 2
    pri_vcc_optimum: int = 0x33
    name: str = "cfi"

    def __post_init__(self) -> None:
        regions = tuple((int(b), int(n)) for b, n in self.erase_regions)
        object.__setattr__(self, "erase_regions", regions)
        where = f"flash geometry {self.name}"
        if self.bank_width not in (1, 2, 4):
            raise ValueError(f"{where}: bank width {self.bank_width} is not 1, 2 or 4")
        if self.device_width not in (1, 2) or self.device_width > self.bank_width:
            raise ValueError(f"{where}: device width {self.device_width} does not fit bank width {self.bank_width}")
        if self.command_set not in (INTEL, AMD):
            raise ValueError(f"{where}: command set 0x{self.command_set:04x} is not 0x0001 or 0x0002")
        if not 1 <= len(regions) <= 4:
            raise ValueError(f"{where}: {len(regions)} erase regions (1 to 4 fit the query table)")
        chips = self.bank_width // self.device_width
        for block, count in regions:
            chip_block = block // chips
            if block % chips or chip_block % 256 or not 256 <= chip_block <= 0xFFFF * 256 \
                    or not 1 <= count <= 0x10000:
                raise ValueError(f"{where}: erase region {count} x {block} bytes cannot be described by CFI "
                                 f"with {chips} chip(s)")
            if self.chip_write_buffer and chip_block % self.chip_write_buffer:
                raise ValueError(f"{where}: {block}-byte blocks are not a multiple of the write buffer")
        total = sum(b * n for b, n in regions)
        if total != self.size:
            raise ValueError(f"{where}: erase regions cover {total} bytes, not the size {self.size}")
        if not _is_pow2(self.size // chips) or self.size % chips:
            raise ValueError(f"{where}: {self.size} bytes over {chips} chip(s) is not a power of two per chip")
        if self.chip_write_buffer and (not _is_pow2(self.chip_write_buffer)
                                       or self.chip_write_buffer < self.device_width):
            raise ValueError(f"{where}: write buffer {self.chip_write_buffer} is not a power of two of words")
        limit = 1 << (8 * self.device_width)
        ids = (self.manufacturer_id, self.device_id, *(self.extended_ids or ()))
        if any(not 0 <= i < limit for i in ids):
            raise ValueError(f"{where}: an ID does not fit a {8 * self.device_width}-bit device")

    # ------------------------------------------------------------------ the two reference banks
    @classmethod
    def qemu_virt(cls) -> CfiGeometry:
        """One flash bank of QEMU's `virt` board (hw/arm/virt.c: two x16 Intel chips, 256 KiB sectors).

        The query values are the ones QEMU's pflash_cfi01 returns (../reference/unicorn.md)."""
        return cls(size=64 * MIB, bank_width=4, device_width=2, erase_regions=((256 * KIB, 256),),
                   command_set=INTEL, manufacturer_id=0x89, device_id=0x18, chip_write_buffer=2 * KIB,
                   vcc=(0x45, 0x55), vpp=(0x00, 0x00), typical_timeouts=(0x07, 0x07, 0x0A, 0x00),
                   max_timeouts=(0x04, 0x04, 0x04, 0x00), interface=0x0002,
                   pri_features=0, pri_block_status=0, pri_vcc_optimum=0, name="qemu-virt")

    @classmethod
    def geom_map_example(cls) -> CfiGeometry:
        """The 8 MiB cfid0 of geom_map(4)'s example: 128 uniform 64 KiB sectors.

        An embedded router of that era carries one x16 AMD-command-set part on a 16-bit bus, so:
        bank width 2, one chip, AMD/Fujitsu commands. The IDs are those of a Spansion S29GL064N
        with uniform sectors (0x0001, 0x227E, 0x220C, 0x2201), with a 32-byte write buffer; the
        voltages and timeouts are plausible 3 V values (QEMU's pflash_cfi02 typicals), not a datasheet's."""
        return cls(size=8 * MIB, bank_width=2, device_width=2, erase_regions=((64 * KIB, 128),),
                   command_set=AMD, manufacturer_id=0x0001, device_id=0x227E, extended_ids=(0x220C, 0x2201),
                   chip_write_buffer=32, vcc=(0x27, 0x36), vpp=(0x00, 0x00),
                   typical_timeouts=(0x07, 0x07, 0x09, 0x0C), max_timeouts=(0x04, 0x04, 0x03, 0x03),
                   interface=0x0002, name="geom-map-example")

    # ------------------------------------------------------------------ derived values
    @property
    def chips(self) -> int:
        return self.bank_width // self.device_width

    @property
    def chip_size(self) -> int:
        return self.size // self.chips

    @property
    def bank_write_buffer(self) -> int:
        """Bytes on the bus one buffered program can cover (all chips' buffers side by side)."""
        return self.chip_write_buffer * self.chips

    @property
    def blocks(self) -> int:
        return sum(n for _, n in self.erase_regions)

    @cached_property
    def _region_table(self) -> tuple[list[int], list[tuple[int, int, int]]]:
        starts, info, offset, index = [], [], 0, 0
        for block, count in self.erase_regions:
            starts.append(offset)
            info.append((offset, block, index))
            offset += block * count
            index += count
        return starts, info

    def block_at(self, offset: int) -> tuple[int, int, int]:
        """(index, start, size) of the erase block holding a bus offset."""
        starts, info = self._region_table
        base, block, first = info[bisect_right(starts, offset) - 1]
        n = (offset - base) // block
        return first + n, base + n * block, block

    def block_start(self, index: int) -> tuple[int, int]:
        """(start, size) of erase block `index`."""
        for (base, block, first), (_, count) in zip(self._region_table[1], self.erase_regions, strict=True):
            if first <= index < first + count:
                return base + (index - first) * block, block
        raise IndexError(f"erase block {index} is not one of the {self.blocks} blocks")

    @cached_property
    def query_table(self) -> bytes:
        """The CFI query table of one chip, indexed by query word offset (JESD68 / CFI publication 100)."""
        t = bytearray(0x52)
        t[0x10:0x13] = b"QRY"
        pri = (0x31 if len(self.erase_regions) == 1 else 0x2D + 4 * len(self.erase_regions)) \
            if self.command_set == INTEL else 0x40
        t[0x13:0x15] = self.command_set.to_bytes(2, "little")
        t[0x15:0x17] = pri.to_bytes(2, "little")
        t[0x1B], t[0x1C] = self.vcc
        t[0x1D], t[0x1E] = self.vpp
        t[0x1F:0x23] = bytes(self.typical_timeouts)
        t[0x23:0x27] = bytes(self.max_timeouts)
        t[0x27] = _log2(self.chip_size)
        t[0x28:0x2A] = self.interface.to_bytes(2, "little")
        t[0x2A:0x2C] = (_log2(self.chip_write_buffer) if self.chip_write_buffer else 0).to_bytes(2, "little")
        t[0x2C] = len(self.erase_regions)
        for i, (block, count) in enumerate(self.erase_regions):
            t[0x2D + 4 * i:0x31 + 4 * i] = ((count - 1).to_bytes(2, "little")
                                            + (block // self.chips // 256).to_bytes(2, "little"))
        if self.command_set == INTEL:
            # Primary extended table, version 1.0: features, after-suspend functions, block status
            # register mask, Vcc/Vpp optimum, one protection register field (left zero, as QEMU).
            t[pri:pri + 5] = b"PRI10"
            t[pri + 5:pri + 9] = self.pri_features.to_bytes(4, "little")
            t[pri + 10:pri + 12] = self.pri_block_status.to_bytes(2, "little")
            t[pri + 12] = self.pri_vcc_optimum
            t[pri + 14] = 0x01
        else:
            # AMD primary extended table 1.0 as QEMU's pflash_cfi02 fills it: unlock required,
            # erase suspend to read/write, no sector protect scheme, no simultaneous/burst/page mode.
            t[pri:pri + 5] = b"PRI10"
            t[pri + 6] = 0x02
        return bytes(t)


def _embedded_8m() -> CfiGeometry:
    """geom_map(4)'s 8 MiB flash with 64 KiB erase blocks, as two x16 AMD chips on a 32-bit bus:
    the bus width 4 is the sector size its cfid0 shows in kern.geom.conftxt."""
    import dataclasses

    return dataclasses.replace(CfiGeometry.geom_map_example(), bank_width=4, name="embedded-8m")


# The geometries a board profile names, by the names board/devices/flash_image.py lists.
GEOMETRIES: dict[str, Callable[[], CfiGeometry]] = {
    "qemu-virt": CfiGeometry.qemu_virt,
    "geom-map-example": CfiGeometry.geom_map_example,
    "embedded-8m": _embedded_8m,
}


class CfiFlash:
    """One CFI flash bank: read/write in bus terms (offsets from the bank base, little-endian).

    `in_read_array` says whether a read returns the array bytes (then the machine may map `array`
    as memory); `on_mode_change(in_read_array)` is called exactly when that changes. For AMD this
    includes the unlock cycles and the erase cycles (reads return the array there, as in QEMU), so
    an erase never remaps the bank. The machine must send every guest write to write(), in both
    mappings, and may check `in_read_array` after any write.
    """

    def __init__(self, geometry: CfiGeometry, image: FlashImage | None = None, *, name: str = "flash",
                 on_mode_change: Callable[[bool], None] | None = None) -> None:
        if image is None:
            image = FlashImage.anonymous(geometry.size)
        if image.size != geometry.size:
            where = f"flash image {image.path}" if image.path else "flash image"
            raise ValueError(f"{where} is {image.size} bytes ({human_size(image.size)}); the {geometry.name} flash "
                             f"bank needs exactly {geometry.size} bytes ({human_size(geometry.size)})")
        g = geometry
        self.geometry = g
        self.image = image
        self.name = name
        self.size = g.size
        self.array = image.array
        self.on_mode_change = on_mode_change
        self.wp_low = True           # WP# held low: locked-down blocks cannot be unlocked
        self._amd = g.command_set == AMD
        self._bw = g.bank_width
        self._shift = _log2(g.bank_width)
        self._lane_mask = (1 << (8 * g.device_width)) - 1
        self._replicator = sum(1 << (8 * g.device_width * k) for k in range(g.chips))
        self._unlock0, self._unlock1 = g.unlock_addresses
        self._unlock_mask = 0x7FF if max(g.unlock_addresses) < 0x800 else 0xFFF
        self._buffer_words = g.chip_write_buffer // g.device_width
        self._buffer = bytearray(b"\xff" * g.bank_write_buffer)
        self._loaded = bytearray(g.bank_write_buffer)   # 0xFF where the guest loaded a byte
        self.locks = bytearray(g.blocks)
        self.in_read_array = True
        self.wcycle = 0
        self.cmd = 0x00
        self.status = 0x00
        self.bypass = False
        self.counter = 0
        self.op_block = -1
        self.buf_base = -1
        self.buf_error = False
        self.last_data = 0
        self.reset()

    # ------------------------------------------------------------------ host side
    def reset(self) -> None:
        """Power-on / RESET# pin: read-array mode; Intel lock bits to their power-up state.

        An Intel part's status reads SR.7 (ready) after reset: measured on Debian's QEMU 7.2, whose
        virt flash answers 0x70 right after boot with 0x00800080 (both chips ready)."""
        self.wcycle, self.cmd = 0, 0x00
        self.status = 0x00 if self._amd else SR_READY
        self._clear_operation()
        self.bypass = False
        if not self._amd:   # Intel lock bits are volatile; AMD sector protection is not
            state = LOCKED if self.geometry.locked_at_reset else 0
            self.locks[:] = bytes([state]) * len(self.locks)
        self._update_mode()

    def lock_state(self, block: int) -> int:
        """LOCKED / LOCKED_DOWN bits of an erase block (AMD: LOCKED = the sector is protected)."""
        return self.locks[block]

    def set_lock(self, block: int, state: int) -> None:
        """Set a block's lock state from the host (board set-up, AMD sector protection)."""
        self.locks[block] = state & (LOCKED | LOCKED_DOWN)

    @property
    def mode(self) -> str:
        """What a read returns now, in words (for monitors and diagnoses)."""
        if self.in_read_array:
            return "read-array"
        if self.cmd == 0x98:
            return "cfi-query"
        if self.cmd == 0x90:
            return "autoselect" if self._amd else "read-identifier"
        return "status"

    def close(self) -> None:
        self.image.close()

    # ------------------------------------------------------------------ bus interface
    def read(self, offset: int, size: int) -> int:
        """A guest read of `size` bytes at `offset` from the bank base."""
        if offset < 0 or size <= 0 or offset + size > self.size:
            raise ValueError(f"{self.name}: read of {size} bytes at 0x{offset:x} is outside the bank")
        if self.in_read_array:
            return int.from_bytes(self.array[offset:offset + size], "little")
        cmd = self.cmd
        if cmd == 0x98:
            word = self._query_word
        elif cmd == 0x90:
            word = self._amd_id_word if self._amd else self._intel_id_word
        else:
            if self._amd:
                self.status ^= DQ6   # DQ6 toggles on every read while the part is busy or failed
            value = (self.status & self._lane_mask) * self._replicator
            return self._assemble(offset, size, lambda w: value)
        return self._assemble(offset, size, word)

    def write(self, offset: int, size: int, value: int) -> None:
        """A guest write: a command cycle or a datum, depending on the state."""
        if offset < 0 or size <= 0 or offset + size > self.size:
            raise ValueError(f"{self.name}: write of {size} bytes at 0x{offset:x} is outside the bank")
        value &= (1 << (8 * size)) - 1
        if self._amd:
            self._amd_write(offset, size, value)
        else:
            self._intel_write(offset, size, value)
        self._update_mode()

    # ------------------------------------------------------------------ snapshots
    def state(self) -> dict[str, Any]:
        """The state machine (not the array, which is the image), JSON-compatible."""
        return {
            "version": SNAPSHOT_VERSION, "device": "cfi", "command_set": self.geometry.command_set,
            "wcycle": self.wcycle, "cmd": self.cmd, "status": self.status, "bypass": self.bypass,
            "counter": self.counter, "op_block": self.op_block, "buf_base": self.buf_base,
            "buf_error": self.buf_error, "buffer": self._buffer.hex() if self.buf_base >= 0 else None,
            "loaded": self._loaded.hex() if self.buf_base >= 0 else None,
            "last_data": self.last_data, "locks": list(self.locks), "wp_low": self.wp_low,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Load a state() of a bank with the same geometry (ValueError otherwise)."""
        if state.get("version") != SNAPSHOT_VERSION or state.get("device") != "cfi":
            raise ValueError(f"{self.name}: snapshot version {state.get('version')!r} is not {SNAPSHOT_VERSION}")
        if state.get("command_set") != self.geometry.command_set or len(state.get("locks", ())) != len(self.locks):
            raise ValueError(f"{self.name}: snapshot is of a different flash geometry")
        try:
            buffer, loaded = state["buffer"], state["loaded"]
            if buffer is not None and not len(bytes.fromhex(buffer)) == len(bytes.fromhex(loaded)) == len(self._buffer):
                raise ValueError("write buffer size differs")
            self.wcycle, self.cmd, self.status = int(state["wcycle"]), int(state["cmd"]), int(state["status"])
            self.bypass, self.counter = bool(state["bypass"]), int(state["counter"])
            self.op_block, self.buf_base = int(state["op_block"]), int(state["buf_base"])
            self.buf_error, self.last_data = bool(state["buf_error"]), int(state["last_data"])
            self._buffer[:] = bytes.fromhex(buffer) if buffer is not None else b"\xff" * len(self._buffer)
            self._loaded[:] = bytes.fromhex(loaded) if buffer is not None else bytes(len(self._loaded))
            self.locks[:] = bytes(int(v) for v in state["locks"])
            self.wp_low = bool(state["wp_low"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}: malformed snapshot: {exc}") from None
        self._update_mode()

    # ------------------------------------------------------------------ common helpers
    def _update_mode(self) -> None:
        if self._amd:
            now = self.cmd in (0x00, 0x80) and self.wcycle < _WC_CFI
        else:
            now = self.wcycle == 0 and self.cmd == 0x00
        if now != self.in_read_array:
            self.in_read_array = now
            if self.on_mode_change is not None:
                self.on_mode_change(now)

    def _assemble(self, offset: int, size: int, word: Callable[[int], int]) -> int:
        """Bytes [offset, offset+size) of the bank words that `word(index)` returns."""
        first = offset >> self._shift
        last = (offset + size - 1) >> self._shift
        value = 0
        for w in range(last, first - 1, -1):
            value = (value << (8 * self._bw)) | word(w)
        return (value >> (8 * (offset - (first << self._shift)))) & ((1 << (8 * size)) - 1)

    def _query_word(self, w: int) -> int:
        table = self.geometry.query_table
        return (table[w] if w < len(table) else 0) * self._replicator

    def _block_index(self, offset: int) -> int:
        return self.geometry.block_at(offset)[0]

    def _clear_operation(self) -> None:
        self.counter, self.op_block, self.buf_base, self.buf_error = 0, -1, -1, False
        self._buffer[:] = b"\xff" * len(self._buffer)
        self._loaded[:] = bytes(len(self._loaded))

    def _program(self, offset: int, data: int, size: int) -> int:
        """NOR program: new = old & data. Returns the bits that asked for 0 -> 1 (which cannot happen)."""
        old = int.from_bytes(self.array[offset:offset + size], "little")
        new = old & data
        if new != old:
            self.array[offset:offset + size] = new.to_bytes(size, "little")
            self.image.sync(offset, size)
        return data & ~old

    def _erase(self, start: int, size: int) -> None:
        self.array[start:start + size] = b"\xff" * size
        self.image.sync(start, size)

    def _program_buffer(self) -> int:
        """Program the loaded page (bytes never loaded are 0xFF, so they change nothing)."""
        fail = self._program(self.buf_base, int.from_bytes(self._buffer, "little"), len(self._buffer))
        return fail & int.from_bytes(self._loaded, "little")

    def _load_buffer(self, offset: int, size: int, value: int) -> bool:
        """Put a datum in the write buffer; False if it falls outside the page or the block."""
        page = len(self._buffer)
        if self.buf_base < 0:
            self.buf_base = offset - offset % page
        if not self.buf_base <= offset <= offset + size <= self.buf_base + page \
                or self._block_index(offset) != self.op_block:
            return False
        at = offset - self.buf_base
        self._buffer[at:at + size] = value.to_bytes(size, "little")
        self._loaded[at:at + size] = b"\xff" * size
        return True

    # ------------------------------------------------------------------ Intel/Sharp (0x0001)
    def _intel_id_word(self, w: int) -> int:
        g = self.geometry
        i = w & 0xFF
        if i == 0:
            v = g.manufacturer_id
        elif i == 1:
            v = g.device_id
        elif i == 2:
            v = self.locks[self._block_index(w << self._shift)]
        else:
            v = 0
        return v * self._replicator

    def _intel_done(self, error: int = 0) -> None:
        """The operation finished (at once): status shows ready and any error; reads return status."""
        self.status |= SR_READY | error
        self.wcycle, self.cmd = 0, 0x70
        self._clear_operation()

    def _intel_write(self, offset: int, size: int, value: int) -> None:
        cmd = value & 0xFF
        wc, c = self.wcycle, self.cmd
        if wc == 0:
            self._intel_command(offset, cmd)
        elif wc == 1 and c in (0x40, 0x10):
            idx = self._block_index(offset)
            if self.locks[idx] & LOCKED:
                self._intel_done(SR_PROGRAM_ERROR | SR_LOCKED)
            elif not self.image.writable:
                self._intel_done(SR_PROGRAM_ERROR)
            else:
                self._program(offset, value, size)
                self._intel_done()
        elif wc == 1 and c == 0x20:
            if cmd != 0xD0:
                self._intel_done(SR_SEQUENCE_ERROR)
                return
            idx, start, bsize = self.geometry.block_at(offset)
            if self.locks[idx] & LOCKED:
                self._intel_done(SR_ERASE_ERROR | SR_LOCKED)
            elif not self.image.writable:
                self._intel_done(SR_ERASE_ERROR)
            else:
                self._erase(start, bsize)
                self._intel_done()
        elif wc == 1 and c == 0x60:
            idx = self._block_index(offset)
            if cmd == 0x01:
                self.locks[idx] |= LOCKED
            elif cmd == 0x2F:
                self.locks[idx] |= LOCKED | LOCKED_DOWN
            elif cmd == 0xD0:
                if not (self.locks[idx] & LOCKED_DOWN and self.wp_low):
                    self.locks[idx] &= ~LOCKED
            elif cmd != 0x03:   # 0x03: set read configuration register; nothing to configure here
                self._intel_done(SR_SEQUENCE_ERROR)
                return
            self._intel_done()
        elif wc == 1 and c == 0xE8:
            n = value & self._lane_mask   # word count - 1, the same in every chip's lane
            if n + 1 > self._buffer_words:
                self._intel_done(SR_SEQUENCE_ERROR)
                return
            self.counter = n
            self.wcycle = 2
        elif wc == 2 and c == 0xE8:
            if not self._load_buffer(offset, size, value):
                self.buf_error = True
            if self.counter == 0:
                self.wcycle = 3
            else:
                self.counter -= 1
        elif wc == 3 and c == 0xE8:
            if cmd != 0xD0:
                self._intel_done(SR_SEQUENCE_ERROR)
            elif self.buf_error:
                self._intel_done(SR_PROGRAM_ERROR)
            elif self.locks[self.op_block] & LOCKED:
                self._intel_done(SR_PROGRAM_ERROR | SR_LOCKED)
            elif not self.image.writable:
                self._intel_done(SR_PROGRAM_ERROR)
            else:
                self._program_buffer()
                self._intel_done()
        else:   # not reachable from a consistent state (a restored bad snapshot): start over
            self.wcycle, self.cmd = 0, 0x00
            self._clear_operation()

    def _intel_command(self, offset: int, cmd: int) -> None:
        if cmd in (0xFF, 0x00, 0xF0):   # read array (0x00 and 0xF0 too, as QEMU)
            self.cmd = 0x00
        elif cmd in (0x70, 0x90, 0x98):  # read status / read identifier / CFI query (at any address)
            self.cmd = cmd
        elif cmd == 0x50:                # clear status; QEMU then returns to read array
            self.status = 0
            self.cmd = 0x00
        elif cmd in (0x40, 0x10, 0x20, 0x60):
            self.cmd, self.wcycle = cmd, 1
        elif cmd == 0xE8 and self._buffer_words:
            self.cmd, self.wcycle = cmd, 1
            self._clear_operation()
            self.op_block = self._block_index(offset)
            self.status |= SR_READY      # the write buffer is available
        elif cmd in (0xB0, 0xD0):        # suspend / resume with nothing running: ignored
            pass
        else:
            self._intel_done(SR_SEQUENCE_ERROR)

    # ------------------------------------------------------------------ AMD/Fujitsu (0x0002)
    def _amd_id_word(self, w: int) -> int:
        g = self.geometry
        i = w & 0xFF
        if i == 0:
            v = g.manufacturer_id
        elif i == 1:
            v = g.device_id
        elif i == 2:
            v = self.locks[self._block_index(w << self._shift)] & LOCKED
        elif i in (0x0E, 0x0F) and g.extended_ids is not None:
            v = g.extended_ids[i - 0x0E]
        else:
            v = 0
        return v * self._replicator

    def _amd_reset(self) -> None:
        self.wcycle, self.cmd, self.bypass = 0, 0x00, False
        self.status &= ~(DQ5 | DQ2 | DQ1)
        self._clear_operation()

    def _amd_finish(self) -> None:
        """An embedded algorithm completed (at once): back to read array, or to unlock bypass."""
        if self.bypass:
            self.wcycle, self.cmd = 2, 0x00
            self._clear_operation()
        else:
            self._amd_reset()

    def _amd_fail(self, datum: int) -> None:
        """DQ5: a program asked for a 0 bit to become 1. The part stays busy-failed until 0xF0."""
        self.status = (self.status & DQ6) | (~datum & DQ7) | DQ5
        self.wcycle, self.cmd = _WC_FAILED, 0xA0

    def _amd_abort(self) -> None:
        """Write-buffer abort: DQ1 set until the write-to-buffer-abort reset sequence."""
        self.status = (self.status & DQ6) | (~self.last_data & DQ7) | DQ1
        self.wcycle, self.cmd = _WC_ABORT, 0x25

    def _amd_protected(self, idx: int) -> bool:
        return bool(self.locks[idx] & LOCKED) or not self.image.writable

    def _amd_write(self, offset: int, size: int, value: int) -> None:
        cmd = value & 0xFF
        w = (offset >> self._shift) & self._unlock_mask   # the address bits a chip decodes for commands
        wc, c = self.wcycle, self.cmd
        if wc == _WC_FAILED:
            if cmd == 0xF0:
                self._amd_reset()
            return
        if wc >= _WC_ABORT:
            if wc == _WC_ABORT:
                self.wcycle = _WC_ABORT + 1 if (w, cmd) == (self._unlock0, 0xAA) else _WC_ABORT
            elif wc == _WC_ABORT + 1:
                self.wcycle = _WC_ABORT + 2 if (w, cmd) == (self._unlock1, 0x55) else _WC_ABORT
            elif cmd == 0xF0:
                self._amd_reset()
            else:
                self.wcycle = _WC_ABORT
            return
        if cmd == 0xF0 and c not in (0xA0, 0x25):   # reset, unless the write is a datum
            if wc == _WC_AUTOSELECT_CFI:
                self.wcycle, self.cmd = 3, 0x90
            else:
                self._amd_reset()
            return
        if wc in (_WC_CFI, _WC_AUTOSELECT_CFI):
            self._amd_reset()
        elif wc == 0:
            if w == 0x55 and cmd == 0x98:
                self.wcycle, self.cmd = _WC_CFI, 0x98
            elif w == self._unlock0 and cmd == 0xAA:
                self.wcycle = 1
            else:   # erase suspend/resume with nothing running, or noise: stay in read array
                self._amd_reset()
        elif wc == 1 and c == 0x00:
            if w == self._unlock1 and cmd == 0x55:
                self.wcycle = 2
            else:
                self._amd_reset()
        elif wc == 2 and c == 0x00:
            self._amd_command(offset, w, cmd)
        elif wc == 3 and c == 0x80:
            if w == self._unlock0 and cmd == 0xAA:
                self.wcycle = 4
            else:
                self._amd_reset()
        elif wc == 4 and c == 0x80:
            if w == self._unlock1 and cmd == 0x55:
                self.wcycle = 5
            else:
                self._amd_reset()
        elif wc == 5 and c == 0x80:
            self._amd_erase(offset, w, cmd)
        elif wc == 3 and c == 0xA0:
            self.last_data = value & 0xFF
            idx = self._block_index(offset)
            if self._amd_protected(idx):   # a protected sector: the algorithm ends at once, nothing changes
                self._amd_finish()
            elif self._program(offset, value, size):
                self._amd_fail(value)
            else:
                self.status = (self.status & DQ6) | (~value & DQ7)
                self._amd_finish()
        elif wc == 3 and c == 0x90:
            if self.bypass and cmd == 0x00:   # unlock bypass reset (0x90, 0x00)
                self._amd_reset()
            elif w == 0x55 and cmd == 0x98:
                self.wcycle, self.cmd = _WC_AUTOSELECT_CFI, 0x98
            else:
                self._amd_reset()
        elif wc == 3 and c == 0x25:
            n = value & self._lane_mask
            if self._block_index(offset) != self.op_block or n + 1 > self._buffer_words:
                self._amd_abort()
            else:
                self.counter, self.wcycle = n, 4
        elif wc == 4 and c == 0x25:
            self.last_data = value & 0xFF
            if not self._load_buffer(offset, size, value):
                self._amd_abort()
            elif self.counter == 0:
                self.wcycle = 5
            else:
                self.counter -= 1
        elif wc == 5 and c == 0x25:
            if cmd != 0x29 or self._block_index(offset) != self.op_block:
                self._amd_abort()
            elif self._amd_protected(self.op_block):
                self._amd_finish()
            elif self._program_buffer():
                self._amd_fail(self.last_data)
            else:
                self._amd_finish()
        else:
            self._amd_reset()

    def _amd_command(self, offset: int, w: int, cmd: int) -> None:
        """The third cycle, after AA@unlock0 and 55@unlock1 (or any cycle in unlock bypass)."""
        if cmd == 0x25 and self._buffer_words:   # write to buffer, at the sector address
            self._clear_operation()
            self.op_block = self._block_index(offset)
            self.wcycle, self.cmd = 3, 0x25
        elif not self.bypass and w != self._unlock0:
            self._amd_reset()
        elif cmd == 0x20 and not self.bypass:    # enter unlock bypass
            self.bypass = True
            self.wcycle, self.cmd = 2, 0x00
        elif cmd in (0x80, 0x90, 0xA0):
            self.wcycle, self.cmd = 3, cmd
        else:
            self._amd_reset()

    def _amd_erase(self, offset: int, w: int, cmd: int) -> None:
        if cmd == 0x10 and w == self._unlock0:   # chip erase: every unprotected sector
            if not self.image.writable:
                pass
            elif not any(b & LOCKED for b in self.locks):
                self._erase(0, self.size)
            else:
                for idx in range(len(self.locks)):
                    if not self.locks[idx] & LOCKED:
                        self._erase(*self.geometry.block_start(idx))
            self.status &= ~DQ7   # DQ7 reads 0 while erasing; the erased array then reads 1
            self._amd_finish()
        elif cmd == 0x30:                        # sector erase
            idx, start, bsize = self.geometry.block_at(offset)
            if not self._amd_protected(idx):
                self._erase(start, bsize)
            self.status &= ~DQ7
            self._amd_finish()
        else:
            self._amd_reset()
