"""A small synchronous NBD client over the same protocol module the server uses.

For the tests, the fuzzers and the benchmarks, which must send what a well-behaved client would not
(bad magics, unaligned or oversized requests, a write that stops half way) and see every reply as it
is on the wire. The real clients (qemu-img, nbdcopy, nbdinfo, libnbd) are used by the interop tests.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from tools.nbd import protocol as p


class ClientError(Exception):
    """The server did something a client cannot follow (bad magic, closed the connection)."""


@dataclass
class OptionReply:
    option: int
    type: int
    data: bytes


@dataclass
class Reply:
    """One request's reply: the error (0 for success) and, for reads and block status, the payload."""

    cookie: int
    error: int = 0
    data: bytes = b""
    chunks: list[tuple[int, int, bytes]] = field(default_factory=list)   # (flags, type, payload)
    message: str = ""
    extents: list[tuple[int, int]] = field(default_factory=list)


class NbdClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.handshake_flags = 0
        self.structured = False
        self.size = 0
        self.flags = 0
        self.infos: dict[int, bytes] = {}
        self._cookie = 0

    @classmethod
    def connect(cls, address: str | tuple[str, int], *, timeout: float = 30.0) -> NbdClient:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return cls(sock)

    # -- raw I/O ------------------------------------------------------------------------------------------
    def recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            part = self.sock.recv(n - len(buf))
            if not part:
                raise ClientError(f"the server closed the connection ({len(buf)} of {n} bytes)")
            buf += part
        return bytes(buf)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_server(self) -> bool:
        """Whether the server has closed its side (reads EOF)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()

    # -- handshake -------------------------------------------------------------------------------------------
    def greet(self, client_flags: int = p.NBD_FLAG_C_FIXED_NEWSTYLE | p.NBD_FLAG_C_NO_ZEROES) -> None:
        magic, version, self.handshake_flags = p.HANDSHAKE.unpack(self.recv(p.HANDSHAKE.size))
        if (magic, version) != (p.NBD_MAGIC, p.IHAVEOPT):
            raise ClientError(f"not an NBD newstyle server (magic 0x{magic:x}, 0x{version:x})")
        self.send(p.CLIENT_FLAGS.pack(client_flags))

    def option(self, option: int, payload: bytes = b"") -> None:
        self.send(p.option(option, payload))

    def option_reply(self) -> OptionReply:
        magic, option, type_, length = p.OPTION_REPLY.unpack(self.recv(p.OPTION_REPLY.size))
        if magic != p.NBD_REP_MAGIC:
            raise ClientError(f"bad option reply magic 0x{magic:x}")
        return OptionReply(option, type_, self.recv(length))

    def option_replies(self, option: int, payload: bytes = b"") -> list[OptionReply]:
        """Send an option and collect its replies up to the final ACK or error."""
        self.option(option, payload)
        out = []
        while True:
            r = self.option_reply()
            out.append(r)
            if r.type == p.NBD_REP_ACK or r.type & p.NBD_REP_FLAG_ERROR:
                return out

    def go(self, name: str = "", infos: tuple[int, ...] = (p.NBD_INFO_BLOCK_SIZE,), *,
           structured: bool = True, meta: bool = True) -> None:
        """The usual handshake of a modern client: structured replies, base:allocation, NBD_OPT_GO."""
        self.greet()
        if structured:
            replies = self.option_replies(p.NBD_OPT_STRUCTURED_REPLY)
            self.structured = replies[-1].type == p.NBD_REP_ACK
            if meta and self.structured:
                self.option_replies(p.NBD_OPT_SET_META_CONTEXT, p.meta_context_request(name, [p.BASE_ALLOCATION]))
        replies = self.option_replies(p.NBD_OPT_GO, p.info_request(name, list(infos)))
        if replies[-1].type != p.NBD_REP_ACK:
            raise ClientError(f"NBD_OPT_GO {name!r}: reply 0x{replies[-1].type:x} {replies[-1].data!r}")
        for r in replies[:-1]:
            info = p.U16.unpack_from(r.data)[0]
            self.infos[info] = r.data[2:]
            if info == p.NBD_INFO_EXPORT:
                _, self.size, self.flags = p.INFO_EXPORT.unpack(r.data)

    @property
    def block_size(self) -> tuple[int, int, int] | None:
        raw = self.infos.get(p.NBD_INFO_BLOCK_SIZE)
        return p.INFO_BLOCK_SIZE.unpack(p.U16.pack(p.NBD_INFO_BLOCK_SIZE) + raw)[1:] if raw else None

    # -- transmission -------------------------------------------------------------------------------------------
    def request(self, type_: int, offset: int = 0, length: int = 0, *, flags: int = 0, data: bytes = b"") -> int:
        self._cookie += 1
        self.send(p.request(type_, offset, length, flags=flags, cookie=self._cookie) + data)
        return self._cookie

    def reply(self, type_: int, length: int = 0) -> Reply:
        """Read one reply; `type_` and `length` say what a simple reply's payload is (reads only)."""
        (magic,) = p.U32.unpack(self.recv(4))
        if magic == p.NBD_SIMPLE_REPLY_MAGIC:
            error, cookie = p.SIMPLE_REPLY.unpack(p.U32.pack(magic) + self.recv(12))[1:]
            data = self.recv(length) if type_ == p.NBD_CMD_READ and not error else b""
            return Reply(cookie, error, data)
        if magic != p.NBD_STRUCTURED_REPLY_MAGIC:
            raise ClientError(f"bad reply magic 0x{magic:x}")
        reply = Reply(0)
        data = bytearray()
        while True:
            flags, ctype, cookie, plen = p.CHUNK.unpack(p.U32.pack(magic) + self.recv(16))[1:]
            payload = self.recv(plen)
            reply.cookie = cookie
            reply.chunks.append((flags, ctype, payload))
            if ctype == p.NBD_REPLY_TYPE_OFFSET_DATA:
                data += payload[8:]
            elif ctype == p.NBD_REPLY_TYPE_OFFSET_HOLE:
                data += bytes(p.HOLE.unpack(payload)[1])
            elif ctype == p.NBD_REPLY_TYPE_BLOCK_STATUS:
                reply.extents = [p.DESCRIPTOR.unpack_from(payload, 4 + 8 * i) for i in range((plen - 4) // 8)]
            elif ctype & (1 << 15):
                reply.error, mlen = p.ERROR.unpack_from(payload)
                reply.message = payload[6:6 + mlen].decode("utf-8", "replace")
            if flags & p.NBD_REPLY_FLAG_DONE:
                break
            (magic,) = p.U32.unpack(self.recv(4))
        reply.data = bytes(data)
        return reply

    def call(self, type_: int, offset: int = 0, length: int = 0, *, flags: int = 0, data: bytes = b"") -> Reply:
        self.request(type_, offset, length, flags=flags, data=data)
        return self.reply(type_, length)

    def read(self, offset: int, length: int, flags: int = 0) -> Reply:
        return self.call(p.NBD_CMD_READ, offset, length, flags=flags)

    def write(self, offset: int, data: bytes, flags: int = 0) -> Reply:
        return self.call(p.NBD_CMD_WRITE, offset, len(data), flags=flags, data=data)

    def block_status(self, offset: int, length: int, flags: int = 0) -> Reply:
        return self.call(p.NBD_CMD_BLOCK_STATUS, offset, length, flags=flags)

    def disconnect(self) -> None:
        self.request(p.NBD_CMD_DISC)
        self.close()
