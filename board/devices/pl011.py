"""ARM PrimeCell PL011 UART (DDI0183): transmit to a host sink, honest flag register.

Output is instantaneous, so the transmit FIFO is always empty (TXFE set, TXFF and BUSY clear)
and the receive FIFO empty (RXFE) since nothing types into it yet. As in QEMU's pl011.c, the
UART transmits whether or not the guest set UARTEN.
"""

from __future__ import annotations

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

DR, RSR, FR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS, IMSC, RIS, MIS, ICR, DMACR = (
    0x00, 0x04, 0x18, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34, 0x38, 0x3C, 0x40, 0x44, 0x48)
FR_RXFE = 1 << 4
FR_TXFF = 1 << 5
FR_TXFE = 1 << 7
# PrimeCell identification registers at 0xFE0..0xFFC (pl011 r1p5, as QEMU's pl011_id_arm).
ID_REGS = {0xFE0: 0x11, 0xFE4: 0x10, 0xFE8: 0x14, 0xFEC: 0x00,
           0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}


class Console:
    """Collects everything the guest printed; optionally mirrors it to a host stream."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream
        self.data = bytearray()
        self.tap: Callable[[str], None] | None = None   # also gets the kernel's output (a message buffer)

    def put(self, byte: int) -> None:
        self.data.append(byte)
        if self.stream is not None:
            self.stream.write(bytes((byte,)))
            if byte == 0x0A:
                self.stream.flush()

    def write_text(self, text: str) -> None:
        """Output from the Python kernel, with the CRLF line endings the guest's driver sends."""
        data = text.replace("\n", "\r\n").encode()
        self.data += data
        if self.tap is not None:
            self.tap(text)
        if self.stream is not None:
            self.stream.write(data)
            self.stream.flush()

    def write_tty(self, data: bytes) -> None:
        """Output from guest processes through the tty: ONLCR turns each newline into CR LF."""
        data = data.replace(b"\n", b"\r\n")
        self.data += data
        if self.stream is not None:
            self.stream.write(data)
            self.stream.flush()

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace").replace("\r\n", "\n")

    def state(self) -> dict:
        """What the console has shown so far (the kernel's message buffer reads it); the host stream
        and the tap belong to whoever runs the board, not to its state."""
        return {"data": bytes(self.data)}

    def load_state(self, state: dict) -> None:
        self.data[:] = state["data"]


class PL011:
    """Register file of one PL011; the machine maps it as MMIO."""

    def __init__(self, name: str, base: int, size: int, console: Console) -> None:
        self.name = name
        self.base = base
        self.size = size
        self.console = console
        self.regs = {IBRD: 0, FBRD: 0, LCR_H: 0, CR: 0x300, IFLS: 0x12, IMSC: 0, DMACR: 0, ILPR: 0}
        self.ris = 0

    def read(self, offset: int, size: int) -> int:
        if offset == DR:
            return 0  # nothing received
        if offset == FR:
            return FR_TXFE | FR_RXFE
        if offset == RSR:
            return 0
        if offset == RIS:
            return self.ris
        if offset == MIS:
            return self.ris & self.regs[IMSC]
        if offset in ID_REGS:
            return ID_REGS[offset]
        return self.regs.get(offset, 0)

    def state(self) -> dict:
        return {"regs": dict(self.regs), "ris": self.ris}

    def load_state(self, state: dict) -> None:
        regs = {int(k): int(v) & 0xFFFF for k, v in state["regs"].items()}
        if set(regs) != set(self.regs):
            raise ValueError(f"{self.name}: the saved PL011 registers are {sorted(regs)}, not {sorted(self.regs)}")
        self.regs, self.ris = regs, int(state["ris"])

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == DR:
            self.console.put(value & 0xFF)
        elif offset == ICR:
            self.ris &= ~value
        elif offset in self.regs:
            self.regs[offset] = value & 0xFFFF
