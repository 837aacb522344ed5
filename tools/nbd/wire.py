"""The socket side of a connection: exact reads, reads into a caller's memory, and gathered sends.

Why its own module: the negotiation and the request loop both need "exactly n bytes or the peer is
gone", and the data path must move large payloads without making Python objects of them: reads go
with recv_into straight into the buffer the export will use, replies go out with sendmsg over the
export's own memory (a list of views), cut to IOV_MAX buffers per call and resumed after a short send.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence

try:
    IOV_MAX = os.sysconf("SC_IOV_MAX")
except (ValueError, OSError):      # not POSIX-reported: Linux's and the BSDs' value
    IOV_MAX = 1024
if IOV_MAX <= 0:
    IOV_MAX = 1024

Buffer = bytes | bytearray | memoryview


class PeerGone(Exception):
    """The peer closed the connection, or the socket failed: the session is over.

    `clean` is True when the close fell on a message boundary (nothing of a message was read yet)."""

    def __init__(self, message: str, *, clean: bool = False) -> None:
        super().__init__(message)
        self.clean = clean


class Wire:
    """One connected socket; every method raises PeerGone when the peer is no longer there."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.bytes_in = 0
        self.bytes_out = 0

    def recv_into(self, view: memoryview, *, boundary: bool = False) -> None:
        """Fill `view` completely. `boundary`: EOF before the first byte is a clean end of the session."""
        got, n = 0, len(view)
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except OSError as exc:
                raise PeerGone(f"receive failed: {exc.strerror or exc}") from None
            if k == 0:
                if boundary and got == 0:
                    raise PeerGone("the client closed the connection", clean=True)
                raise PeerGone(f"the client closed the connection {got} bytes into a {n}-byte message")
            got += k
        self.bytes_in += n

    def recv(self, n: int, *, boundary: bool = False) -> bytes:
        """Exactly n bytes as a new object (for small messages: headers, option data)."""
        buf = bytearray(n)
        if n:
            self.recv_into(memoryview(buf), boundary=boundary)
        return bytes(buf)

    def recv_limited(self, n: int, limit: int) -> bytes:
        """n bytes of option data, read as they arrive (a client announcing a huge length and sending
        little costs only what it sent); more than `limit` is refused by the caller before this."""
        parts: list[bytes] = []
        left = n
        while left:
            part = self.recv(min(left, 1 << 20))
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Read and drop n bytes (the payload of a refused write)."""
        scratch = memoryview(bytearray(min(n, 1 << 20)))
        while n:
            k = min(n, len(scratch))
            self.recv_into(scratch[:k])
            n -= k

    def send(self, data: Buffer) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise PeerGone(f"send failed: {exc.strerror or exc}") from None
        self.bytes_out += len(data)

    def send_buffers(self, buffers: Sequence[Buffer]) -> None:
        """Send the buffers in order with as few system calls as the kernel allows, copying none of them."""
        views = [memoryview(b).cast("B") if not isinstance(b, memoryview) or b.format != "B" else b
                 for b in buffers if len(b)]
        i = 0
        while i < len(views):
            batch = views[i:i + IOV_MAX]
            try:
                sent = self.sock.sendmsg(batch)
            except OSError as exc:
                raise PeerGone(f"send failed: {exc.strerror or exc}") from None
            self.bytes_out += sent
            # Skip what went out; a buffer sent in part is resumed from where it stopped.
            while sent and i < len(views):
                n = len(views[i])
                if sent >= n:
                    sent -= n
                    i += 1
                else:
                    views[i] = views[i][sent:]
                    sent = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
