"""The remote serial protocol's framing: `$payload#cs` packets, acks, the interrupt byte, escapes.

gdb's "Remote Protocol" appendix (Overview, Binary data): a packet is `$`, the payload, `#` and two
hex digits of the payload's byte sum modulo 256. The receiver answers `+` (good) or `-` (resend)
until both sides agree on QStartNoAckMode. A 0x03 byte outside a packet is an interrupt (Ctrl-C).
In binary payloads (X, qXfer replies) `#`, `$`, `}` and `*` travel as `}` and the byte XOR 0x20.
"""

from __future__ import annotations

INTERRUPT = 0x03
ESCAPE = 0x7D                      # '}'
_SPECIAL = frozenset(b"#$}*")


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data made safe for a payload."""
    out = bytearray()
    for b in data:
        if b in _SPECIAL:
            out += bytes((ESCAPE, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == ESCAPE:
            nxt = next(it, None)
            if nxt is None:
                raise ValueError("binary data ends with the escape byte")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """`$payload#cs` (the payload escaped already where it is binary)."""
    return b"$" + payload + b"#" + f"{checksum(payload):02x}".encode()


class Event:
    """What the byte stream from gdb brings: kind is "packet", "bad" (checksum wrong), "ack",
    "nack" or "interrupt"; payload the packet's bytes as sent (still escaped)."""

    __slots__ = ("kind", "payload")

    def __init__(self, kind: str, payload: bytes = b"") -> None:
        self.kind, self.payload = kind, payload

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, {self.payload!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and (self.kind, self.payload) == (other.kind, other.payload)


class Framer:
    """Splits the bytes gdb sends into Events, however the stream is cut into reads."""

    def __init__(self) -> None:
        self._packet: bytearray | None = None    # inside $...: the payload so far
        self._sum: bytearray | None = None       # after '#': the checksum digits so far

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for b in data:
            if self._sum is not None:
                self._sum.append(b)
                if len(self._sum) == 2:
                    payload = bytes(self._packet)
                    try:
                        good = int(self._sum.decode("ascii"), 16) == checksum(payload)
                    except (UnicodeDecodeError, ValueError):
                        good = False
                    events.append(Event("packet" if good else "bad", payload))
                    self._packet = self._sum = None
            elif self._packet is not None:
                if b == ord("#"):
                    self._sum = bytearray()
                elif b == ord("$"):              # a new packet before the old one ended: start again
                    self._packet = bytearray()
                else:
                    self._packet.append(b)
            elif b == ord("$"):
                self._packet = bytearray()
            elif b == ord("+"):
                events.append(Event("ack"))
            elif b == ord("-"):
                events.append(Event("nack"))
            elif b == INTERRUPT:
                events.append(Event("interrupt"))
            # anything else between packets is line noise: ignored, as gdbserver does
        return events


def hex_bytes(data: bytes) -> bytes:
    return data.hex().encode()


def unhex(text: bytes | str) -> bytes:
    return bytes.fromhex(text.decode() if isinstance(text, bytes) else text)


def console_output(text: str, chunk: int = 1024) -> list[bytes]:
    """`O` packets carrying text to gdb's console (monitor command output), hex-encoded."""
    data = text.encode()
    return [b"O" + hex_bytes(data[i:i + chunk]) for i in range(0, len(data), chunk)]
