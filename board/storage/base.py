"""The common interface of the host-side backing stores, modelled on nbdkit's memory plugin.

nbdkit (plugins/memory/memory.c over common/allocators/allocator.h) puts one small vtable in front of
three stores: sparse, malloc and zstd. We keep that split: `Allocator` does the range checks and the
errnos the NBD server would apply (../shared/reference/freebsd.md section 11: ENOSPC for write/zero
out of range, EINVAL otherwise), and each store only implements the unchecked `_read`, `_write`,
`_zero`, `_extents` primitives. The board never imports the kernel, so size parsing lives here too.
"""

from __future__ import annotations

import errno
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..state_io import DataSink, DataSource

# nbdkit's largest export size: the NBD protocol carries sizes as int64 (nbdkit-memory-plugin(1)).
MAX_SIZE = 2**63 - 1

# common/allocators/sparse.c: PAGE_SIZE 32768, L2_SIZE 4096 entries -> 128 MiB per L1 entry.
PAGE_SIZE = 32768
L2_SIZE = 4096
L1_SPAN = PAGE_SIZE * L2_SIZE

# include/nbdkit-common.h: NBDKIT_EXTENT_HOLE and NBDKIT_EXTENT_ZERO.
EXTENT_HOLE = 1 << 0
EXTENT_ZERO = 1 << 1

Extent = tuple[int, int, int]


class StorageError(Exception):
    """An I/O error with the errno name the NBD server would send back (e.g. "ENOSPC", "EINVAL")."""

    def __init__(self, errno_name: str, message: str) -> None:
        super().__init__(f"{errno_name}: {message}")
        self.errno_name = errno_name
        self.errno = getattr(errno, errno_name, errno.EIO)
        self.message = message


class SizeError(StorageError, ValueError):
    """A size string or value that nbdkit would refuse (bad syntax, negative, above 2**63-1)."""

    def __init__(self, message: str) -> None:
        super().__init__("EINVAL", message)


@dataclass(frozen=True)
class Features:
    """What a store supports natively; the memory plugin answers every can_* callback with yes.

    memory.c: can_multi_conn true, can_fua NBDKIT_FUA_NATIVE, can_cache NBDKIT_CACHE_NATIVE,
    can_fast_zero true, native zero/trim/extents for all three allocators.
    """

    write: bool = True
    flush: bool = True
    trim: bool = True
    zero: bool = True
    fast_zero: bool = True
    extents: bool = True
    fua: bool = True
    multi_conn: bool = True
    cache: bool = True


MEMORY_PLUGIN_FEATURES = Features()

_SUFFIXES = {"b": 1, "s": 512, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}
_SIZE_RE = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*([bBsSkKmMgGtTpPeE]?)(?:(?<=[kKmMgGtTpPeE])iB)?\s*$")


def parse_size(text: str | int) -> int:
    """Parse a size the way nbdkit_parse_size does: decimal (or 0x hex) with b k m g t p e (x1024) or s (x512).

    Sizes above 2**63-1 are refused because nbdkit cannot export them (nbdkit-memory-plugin(1)).
    """
    if isinstance(text, bool):
        raise SizeError(f"size {text!r} is not a number")
    if isinstance(text, int):
        value = text
        shown = str(text)
    else:
        m = _SIZE_RE.match(text)
        if m is None:
            raise SizeError(f"could not parse size {text!r}: expected a number with an optional suffix "
                            "b, s (512), k, m, g, t, p or e (powers of 1024)")
        value = int(m.group(1), 0) * _SUFFIXES[(m.group(2) or "b").lower()]
        shown = repr(text)
    if value < 0:
        raise SizeError(f"size {shown} is negative")
    if value > MAX_SIZE:
        raise SizeError(f"size {shown} = {value} bytes is too large: the largest size nbdkit allows is "
                        f"2**63-1 = {MAX_SIZE} bytes")
    return value


class Allocator(ABC):
    """A virtual disk of `size` bytes, initially all zeroes; subclasses store the data.

    The public methods check ranges once (as nbdkit's server/protocol.c does before calling the
    plugin), so the primitives can assume 0 <= offset and offset + length <= size.
    """

    kind: str = "abstract"
    features: Features = MEMORY_PLUGIN_FEATURES
    max_size: int = MAX_SIZE
    # The unit the allocator's own extents callback works in (nbdkit's sparse.c and zstd.c walk pages,
    # malloc.c answers the range as asked): what block_status rounds the end of a query up to.
    extent_granularity: int = 1

    def __init__(self, size: int | str) -> None:
        self._size = 0
        self.size = size  # type: ignore[assignment]

    # -- size ---------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The virtual size in bytes."""
        return self._size

    @size.setter
    def size(self, value: int | str) -> None:
        new = parse_size(value)
        if new > self.max_size:
            raise SizeError(f"size {new} is larger than the {self.kind} allocator allows ({self.max_size})")
        old = self._size
        if new < old:
            # Whatever lies beyond the new end must read as zeroes if the disk grows again.
            self._zero(new, old - new)
        self._resize(old, new)
        self._size = new

    def _resize(self, old: int, new: int) -> None:  # noqa: B027 - optional hook
        """Hook for stores whose storage depends on the size (malloc). Sparse layouts need nothing."""

    # -- checks -------------------------------------------------------------------------------------
    def _check(self, offset: int, length: int, errno_name: str, what: str) -> None:
        if offset < 0 or length < 0:
            raise StorageError("EINVAL", f"{what}: negative offset {offset} or length {length}")
        if offset + length > self._size:
            raise StorageError(errno_name, f"{what} of {length} bytes at offset {offset} is beyond the end of "
                                           f"the {self._size}-byte disk")

    # -- public I/O ---------------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        """pread: holes read as zeroes. Out of range is EINVAL."""
        self._check(offset, length, "EINVAL", "read")
        if length == 0:
            return b""
        return self._read(offset, length)

    def write(self, offset: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        """pwrite. Out of range is ENOSPC. FUA needs nothing: the data is already in (host) memory."""
        data = memoryview(data).cast("B")
        self._check(offset, len(data), "ENOSPC", "write")
        if len(data):
            self._write(offset, data)

    def zero(self, offset: int, length: int, *, may_trim: bool = True, fast: bool = False, fua: bool = False) -> None:
        """Write zeroes. Out of range is ENOSPC.

        The memory plugin ignores may_trim: zeroing is always the cheap, freeing operation, so a fast
        zero request (NBD_CMD_FLAG_FAST_ZERO) never has to fail with ENOTSUP.
        """
        self._check(offset, length, "ENOSPC", "zero")
        if length:
            self._zero(offset, length)

    def trim(self, offset: int, length: int, *, fua: bool = False) -> None:
        """Trim is zero in memory.c (memory_trim calls a->f->zero): the range reads back as zeroes."""
        self._check(offset, length, "EINVAL", "trim")
        if length:
            self._zero(offset, length)

    def flush(self) -> None:  # noqa: B027 - a no-op for memory, overridable
        """Nothing to do: memory has no write cache below us (memory.c has no flush of its own)."""

    def cache(self, offset: int, length: int) -> None:
        """NBD_CMD_CACHE: the data is already in memory (NBDKIT_CACHE_NATIVE does nothing)."""
        self._check(offset, length, "EINVAL", "cache")

    def read_buffers(self, offset: int, length: int) -> list[bytes | bytearray | memoryview]:
        """The bytes of [offset, offset+length) as buffers to send as they are (socket.sendmsg), in order.

        Stores whose data is plain memory return views of it, so a large read is never copied into a
        new Python object; holes are views of one shared zero buffer. The buffers are only valid until
        the next write to the same range (a later write may change what a view shows)."""
        self._check(offset, length, "EINVAL", "read")
        if length == 0:
            return []
        return self._read_buffers(offset, length)

    def _read_buffers(self, offset: int, length: int) -> list[bytes | bytearray | memoryview]:
        return [self._read(offset, length)]

    def block_status(self, offset: int, length: int) -> list[Extent]:
        """Extents as nbdkit's allocator adds them for NBD_CMD_BLOCK_STATUS: the query's end rounded up
        to `extent_granularity` (within the disk), so the last extent may run past offset+length as the
        protocol allows and as `nbdkit memory` answers."""
        self._check(offset, length, "EINVAL", "extents")
        if length == 0:
            return []
        g = self.extent_granularity
        end = min(self._size, -(-(offset + length) // g) * g)
        return self.extents(offset, end - offset)

    def extents(self, offset: int, length: int) -> list[Extent]:
        """Coalesced (offset, length, flags) covering exactly [offset, offset+length)."""
        self._check(offset, length, "EINVAL", "extents")
        out: list[Extent] = []
        if length == 0:
            return out
        for off, n, flags in self._extents(offset, length):
            if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == off:
                prev = out.pop()
                out.append((prev[0], prev[1] + n, flags))
            else:
                out.append((off, n, flags))
        return out

    # -- snapshots ----------------------------------------------------------------------------------
    def state(self, sink: DataSink) -> dict:
        """The stored data as a snapshot keeps it: the non-zero PAGE_SIZE pieces of the data extents
        go to `sink` (holes and zero pages cost nothing), their offsets into the returned dict."""
        pieces: list[tuple[int, int]] = []
        zero = bytes(PAGE_SIZE)
        for off, n, flags in self.extents(0, self._size) if self._size else ():
            if flags & (EXTENT_HOLE | EXTENT_ZERO):
                continue
            for pos in range(off, off + n, PAGE_SIZE):
                length = min(PAGE_SIZE, off + n - pos)
                data = self.read(pos, length)
                if data == zero[:length]:
                    continue
                sink.put(data)
                if pieces and pieces[-1][0] + pieces[-1][1] == pos:
                    pieces[-1] = (pieces[-1][0], pieces[-1][1] + length)
                else:
                    pieces.append((pos, length))
        return {"kind": self.kind, "size": self._size, "extents": pieces}

    def check_state(self, state: dict) -> None:
        if (state.get("kind"), state.get("size")) != (self.kind, self._size):
            raise StorageError("EINVAL", f"the snapshot's store is {state.get('kind')} of {state.get('size')} bytes; "
                                         f"this one is {self.kind} of {self._size} bytes")

    def load_state(self, state: dict, source: DataSource) -> None:
        """The store as saved (after check_state): everything else reads as zeroes again."""
        if self._size:
            self.zero(0, self._size)
        for off, length in state["extents"]:
            for pos in range(off, off + length, 1 << 20):
                buf = bytearray(min(1 << 20, off + length - pos))
                source.read_into(buf)
                self.write(pos, buf)

    # -- accounting ---------------------------------------------------------------------------------
    @property
    @abstractmethod
    def resident_bytes(self) -> int:
        """Host memory the stored data (and its tables) takes, in bytes."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release host memory (munlock/munmap for malloc,mlock=true)."""

    def __enter__(self) -> Allocator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self._size} resident={self.resident_bytes}>"

    # -- primitives ---------------------------------------------------------------------------------
    @abstractmethod
    def _read(self, offset: int, length: int) -> bytes: ...

    @abstractmethod
    def _write(self, offset: int, data: memoryview) -> None: ...

    @abstractmethod
    def _zero(self, offset: int, length: int) -> None: ...

    @abstractmethod
    def _extents(self, offset: int, length: int) -> list[Extent]: ...
