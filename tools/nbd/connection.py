"""The transmission phase of one connection: read a request, check it, run it, reply; until NBD_CMD_DISC.

Requests are checked in the order and with the errors of nbdkit's validate_request (server/protocol.c,
1.32): a write-class command on a read-only export is EPERM, a range that is empty or runs past the
end is ENOSPC for writes and zeroes and EINVAL otherwise, unknown commands and flags are EINVAL, a
read or write of more than 64 MiB is ENOMEM (its payload is skipped, up to twice that; beyond, the
connection is dropped). Exports with a minimum block size (a flash sector, an md sector) add
proto.md's EINVAL for a request not aligned to it. A refused write's payload is read and dropped so
the stream stays in step.

Replies go out in request order. With structured replies a read is one NBD_REPLY_TYPE_OFFSET_DATA
chunk and block status one NBD_REPLY_TYPE_BLOCK_STATUS chunk, as nbdkit sends them; errors are
NBD_REPLY_TYPE_ERROR chunks carrying the reason as text (simple replies carry only the number).
The data of a read goes from the export's memory to the socket without a copy in between; a write
is received whole into the connection's buffer before the export sees it, so a client that leaves
in the middle of a write changes nothing.
"""

from __future__ import annotations

import errno as host_errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from tools.nbd import protocol as p
from tools.nbd.exports import MAX_REQUEST, ExportError
from tools.nbd.negotiate import BASE_ALLOCATION_ID, Session
from tools.nbd.wire import PeerGone, Wire

MAX_EXTENTS = 1 << 20          # server/extents.c: at most 2^20 extents per reply, as proto.md asks

_WRITES = (p.NBD_CMD_WRITE, p.NBD_CMD_TRIM, p.NBD_CMD_WRITE_ZEROES)
_RANGED = (p.NBD_CMD_READ, p.NBD_CMD_CACHE, p.NBD_CMD_WRITE, p.NBD_CMD_TRIM, p.NBD_CMD_WRITE_ZEROES,
           p.NBD_CMD_BLOCK_STATUS)


def nbd_error(errno_name: str, flags: int) -> int:
    """nbdkit's nbd_errno(): an errno (by name: host and FreeBSD numbers differ) to the NBD error value."""
    if errno_name in ("EROFS", "EPERM", "EACCES"):
        return p.NBD_EPERM
    if errno_name in ("EIO", "EINTEGRITY", "ENXIO"):
        return p.NBD_EIO
    if errno_name == "ENOMEM":
        return p.NBD_ENOMEM
    if errno_name in ("EDQUOT", "EFBIG", "ENOSPC"):
        return p.NBD_ENOSPC
    if errno_name == "ESHUTDOWN":
        return p.NBD_ESHUTDOWN
    if errno_name in ("ENOTSUP", "EOPNOTSUPP"):
        return p.NBD_ENOTSUP if flags & p.NBD_CMD_FLAG_FAST_ZERO else p.NBD_EINVAL
    if errno_name == "EOVERFLOW":
        return p.NBD_EOVERFLOW if flags & p.NBD_CMD_FLAG_DF else p.NBD_EINVAL
    return p.NBD_EINVAL


class Refused(Exception):
    """A request refused before it reaches the export: an errno name and why."""

    def __init__(self, errno_name: str, message: str) -> None:
        super().__init__(message)
        self.errno_name = errno_name


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    by_command: dict[str, int] = field(default_factory=dict)


class Connection:
    """Serves one negotiated session on one wire; `run()` returns when the session is over."""

    def __init__(self, wire: Wire, session: Session, *, log: Callable[[str], None] = lambda _m: None,
                 shutting_down: Callable[[], bool] = lambda: False) -> None:
        self.wire = wire
        self.session = session
        self.export = session.export
        self.log = log
        self.shutting_down = shutting_down
        self.stats = Stats()
        self._header = bytearray(p.REQUEST.size)
        self._buffer = bytearray()
        block = self.export.block_size
        self.align = block.minimum if block is not None else 1

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> str:
        """Serve until the client disconnects; the reason, for the log."""
        try:
            while True:
                try:
                    self.wire.recv_into(memoryview(self._header), boundary=True)
                except PeerGone as exc:
                    return "the client closed the connection" if exc.clean else str(exc)
                req = p.parse_request(self._header)
                if req.magic != p.NBD_REQUEST_MAGIC:
                    self.log(f"bad request magic 0x{req.magic:08x} (expected 0x{p.NBD_REQUEST_MAGIC:08x}): "
                             "closing the connection")
                    return "protocol error"
                if req.type == p.NBD_CMD_DISC:
                    return "the client sent NBD_CMD_DISC"
                self.stats.requests += 1
                name = p.command_name(req.type)
                self.stats.by_command[name] = self.stats.by_command.get(name, 0) + 1
                if not self._request(req):
                    return "protocol error"
        except PeerGone as exc:
            self.log(f"connection lost: {exc}")
            return str(exc)
        finally:
            self.export.close()

    def _request(self, req: p.Request) -> bool:
        """One request and its reply; False when the connection must be dropped."""
        try:
            self._validate(req)
        except Refused as exc:
            if req.type == p.NBD_CMD_WRITE:
                if req.length > 2 * MAX_REQUEST:
                    self.log(f"{p.command_name(req.type)} of {req.length} bytes is too large to skip: "
                             "closing the connection")
                    return False
                self.wire.skip(req.length)
            self._error(req, exc.errno_name, str(exc))
            return True
        data = None
        if req.type == p.NBD_CMD_WRITE:
            if len(self._buffer) < req.length:
                self._buffer = bytearray(req.length)
            data = memoryview(self._buffer)[:req.length]
            self.wire.recv_into(data)
        if self.shutting_down():
            self._error(req, "ESHUTDOWN", "the server is shutting down")
            return True
        try:
            self._execute(req, data)
        except ExportError as exc:
            self._error(req, exc.errno_name, str(exc))
        except PeerGone:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug below must not take the board down with it
            self.log(f"{p.command_name(req.type)} at {req.offset}+{req.length}: internal error "
                     f"{type(exc).__name__}: {exc}")
            self._error(req, "EIO", f"internal error: {type(exc).__name__}")
        return True

    # -- checks (validate_request) ---------------------------------------------------------------------------
    def _validate(self, req: p.Request) -> None:
        ex, s = self.export, self.session
        cmd, flags, offset, length = req.type, req.flags, req.offset, req.length
        what = p.command_name(cmd)
        if ex.readonly and cmd in _WRITES:
            raise Refused("EROFS", f"{what}: {ex.name} is read-only")
        if cmd in _RANGED:
            if not (length > 0 and offset <= ex.size and offset + length <= ex.size):
                raise Refused("ENOSPC" if cmd in (p.NBD_CMD_WRITE, p.NBD_CMD_WRITE_ZEROES) else "EINVAL",
                              f"{what} of {length} bytes at offset {offset} is outside the {ex.size}-byte export")
        elif cmd == p.NBD_CMD_FLUSH:
            if offset or length:
                raise Refused("EINVAL", f"{what} with offset {offset} and length {length} (both must be 0)")
        else:
            raise Refused("EINVAL", f"unknown command {cmd}")
        if flags & ~p.KNOWN_CMD_FLAGS:
            raise Refused("EINVAL", f"{what}: unknown command flags 0x{flags & ~p.KNOWN_CMD_FLAGS:x}")
        if flags & p.NBD_CMD_FLAG_NO_HOLE and cmd != p.NBD_CMD_WRITE_ZEROES:
            raise Refused("EINVAL", f"{what}: NBD_CMD_FLAG_NO_HOLE is only for NBD_CMD_WRITE_ZEROES")
        if flags & p.NBD_CMD_FLAG_FAST_ZERO and cmd != p.NBD_CMD_WRITE_ZEROES:
            raise Refused("EINVAL", f"{what}: NBD_CMD_FLAG_FAST_ZERO is only for NBD_CMD_WRITE_ZEROES")
        if flags & p.NBD_CMD_FLAG_DF:
            if cmd != p.NBD_CMD_READ:
                raise Refused("EINVAL", f"{what}: NBD_CMD_FLAG_DF is only for NBD_CMD_READ")
            if not s.structured:
                raise Refused("EINVAL", f"{what}: NBD_CMD_FLAG_DF needs structured replies")
        if flags & p.NBD_CMD_FLAG_REQ_ONE and cmd != p.NBD_CMD_BLOCK_STATUS:
            raise Refused("EINVAL", f"{what}: NBD_CMD_FLAG_REQ_ONE is only for NBD_CMD_BLOCK_STATUS")
        if flags & p.NBD_CMD_FLAG_FUA and not s.flags & p.NBD_FLAG_SEND_FUA:
            raise Refused("EINVAL", f"{what}: NBD_CMD_FLAG_FUA was not offered")
        if cmd in (p.NBD_CMD_READ, p.NBD_CMD_WRITE) and length > MAX_REQUEST:
            raise Refused("ENOMEM", f"{what} of {length} bytes is larger than the {MAX_REQUEST} the server takes")
        if cmd == p.NBD_CMD_FLUSH and not s.flags & p.NBD_FLAG_SEND_FLUSH:
            raise Refused("EINVAL", f"{what}: flush was not offered")
        if cmd == p.NBD_CMD_TRIM and not s.flags & p.NBD_FLAG_SEND_TRIM:
            raise Refused("EINVAL", f"{what}: trim was not offered")
        if cmd == p.NBD_CMD_WRITE_ZEROES and not s.flags & p.NBD_FLAG_SEND_WRITE_ZEROES:
            raise Refused("EINVAL", f"{what}: write zeroes was not offered")
        if cmd == p.NBD_CMD_CACHE and not s.flags & p.NBD_FLAG_SEND_CACHE:
            raise Refused("EINVAL", f"{what}: cache was not offered")
        if cmd == p.NBD_CMD_BLOCK_STATUS:
            if not s.structured:
                raise Refused("EINVAL", f"{what}: structured replies were not negotiated")
            if not s.base_allocation:
                raise Refused("EINVAL", f"{what}: base:allocation was not negotiated")
        if self.align > 1 and cmd in _RANGED and (offset | length) % self.align:
            raise Refused("EINVAL", f"{what} of {length} bytes at offset {offset} is not aligned to the "
                                    f"{self.align}-byte block size of {ex.name}")

    # -- running a request ---------------------------------------------------------------------------------
    def _execute(self, req: p.Request, data: memoryview | None) -> None:
        ex = self.export
        cmd, flags, offset, length = req.type, req.flags, req.offset, req.length
        fua = bool(flags & p.NBD_CMD_FLAG_FUA)
        if cmd == p.NBD_CMD_READ:
            buffers = ex.read(offset, length)
            if sum(len(b) for b in buffers) != length:
                raise ExportError("EIO", f"{ex.name}: read of {length} bytes at {offset} came back short")
            if self.session.structured:
                head = p.chunk_offset_data_header(req.cookie, offset, length)
            else:
                head = p.simple_reply(0, req.cookie)
            self.wire.send_buffers([head, *buffers])
            self.stats.bytes_read += length
            return
        if cmd == p.NBD_CMD_WRITE:
            assert data is not None
            ex.write(offset, data, fua=fua)
            self.stats.bytes_written += length
        elif cmd == p.NBD_CMD_WRITE_ZEROES:
            ex.zero(offset, length, may_trim=not flags & p.NBD_CMD_FLAG_NO_HOLE,
                    fast=bool(flags & p.NBD_CMD_FLAG_FAST_ZERO), fua=fua)
        elif cmd == p.NBD_CMD_TRIM:
            ex.trim(offset, length, fua=fua)
        elif cmd == p.NBD_CMD_FLUSH:
            ex.flush()
        elif cmd == p.NBD_CMD_CACHE:
            ex.cache(offset, length)
        elif cmd == p.NBD_CMD_BLOCK_STATUS:
            descriptors = self._descriptors(offset, length, bool(flags & p.NBD_CMD_FLAG_REQ_ONE))
            self.wire.send(p.chunk_block_status(req.cookie, BASE_ALLOCATION_ID, descriptors))
            return
        self.wire.send(p.simple_reply(0, req.cookie))

    def _descriptors(self, offset: int, length: int, req_one: bool) -> list[tuple[int, int]]:
        """nbdkit's extents list and extents_to_block_descriptors: extents clipped to [offset, size),
        neighbours of one type merged, at most 2^20; with REQ_ONE one descriptor no longer than the
        request; otherwise descriptors until one passes offset+length."""
        ex = self.export
        merged: list[list[int]] = []
        pos = offset
        for off, n, flags in ex.extents(offset, length, req_one=req_one):
            lo, hi = max(off, offset, pos), min(off + n, ex.size)
            if off > pos:
                raise ExportError("EIO", f"{ex.name}: extents leave a gap at {pos}")
            if hi <= lo:
                continue
            flags &= p.NBD_STATE_HOLE | p.NBD_STATE_ZERO
            if merged and merged[-1][1] == flags:
                merged[-1][0] += hi - lo
            elif len(merged) < MAX_EXTENTS:
                merged.append([hi - lo, flags])
            else:
                break
            pos = hi
        if not merged:
            raise ExportError("EIO", f"{ex.name}: no extent at {offset}")
        if req_one:
            return [(min(merged[0][0], length), merged[0][1])]
        out: list[tuple[int, int]] = []
        end, pos = offset + length, offset
        for n, flags in merged:
            n = min(n, 0xFFFFFFFF)
            out.append((n, flags))
            pos += n
            if pos > end:
                break
        return out

    # -- errors -------------------------------------------------------------------------------------------------
    def _error(self, req: p.Request, errno_name: str, message: str) -> None:
        code = nbd_error(errno_name, req.flags)
        self.stats.errors += 1
        self.log(f"{p.command_name(req.type)} at {req.offset}+{req.length}: {message} "
                 f"({p.ERROR_NAMES.get(code, code)})")
        if self.session.structured:
            self.wire.send(p.chunk_error(req.cookie, code, f"{message} ({_strerror(errno_name)})"))
        else:
            self.wire.send(p.simple_reply(code, req.cookie))


def _strerror(errno_name: str) -> str:
    number = getattr(host_errno, errno_name, None)
    return f"{os.strerror(number)}, {errno_name}" if number is not None else errno_name
