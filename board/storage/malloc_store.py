"""The malloc allocator: one flat array of the whole disk (nbdkit common/allocators/malloc.c).

No sparseness: the whole virtual size is host memory from the start, zero is a memset and extents
always report data (malloc.c has no extents of its own, so the server reports one data extent).
With mlock=True, as `allocator=malloc,mlock=true`, the array is a page-aligned anonymous mapping
locked with mlock(2) so it is never swapped out; that usually needs a raised RLIMIT_MEMLOCK.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import resource

from .base import Allocator, Extent, SizeError, StorageError


def _host_memory() -> int:
    """Physical memory of the host: a larger flat array can only end in the OOM killer."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 2**48


_libc: ctypes.CDLL | None = None


def _get_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return _libc


def _memlock_limit() -> str:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"


class MallocAllocator(Allocator):
    """allocator=malloc[,mlock=true]: the whole disk in one array; limited by host memory."""

    kind = "malloc"

    def __init__(self, size: int | str, *, mlock: bool = False) -> None:
        self.mlock = mlock
        self._buf: bytearray | mmap.mmap = bytearray()
        self._locked = 0
        super().__init__(size)

    def _resize(self, old: int, new: int) -> None:
        if new > _host_memory():
            raise SizeError(f"malloc allocator: size {new} is larger than host memory ({_host_memory()} bytes); "
                            "use allocator=sparse or zstd for large virtual sizes")
        if not self.mlock:
            try:
                if new > old:
                    self._buf.extend(bytes(new - old))   # type: ignore[union-attr]
                else:
                    del self._buf[new:]                   # type: ignore[arg-type]
            except MemoryError as exc:
                raise StorageError("ENOMEM", f"malloc allocator: cannot allocate {new} bytes") from exc
            return
        # mlock: a fresh page-aligned anonymous mapping, locked, then the old contents copied over.
        buf = mmap.mmap(-1, max(new, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        locked = self._lock(buf, new)
        keep = min(old, new)
        if keep:
            buf[:keep] = self._buf[:keep]
        self.close()
        self._buf, self._locked = buf, locked

    @staticmethod
    def _address(buf: mmap.mmap) -> int:
        holder = ctypes.c_char.from_buffer(buf)
        try:
            return ctypes.addressof(holder)
        finally:
            del holder

    def _lock(self, buf: mmap.mmap, length: int) -> int:
        if length == 0:
            return 0
        libc = _get_libc()
        if libc.mlock(self._address(buf), length) != 0:
            err = ctypes.get_errno()
            buf.close()
            name = {1: "EPERM", 12: "ENOMEM"}.get(err, "EIO")
            raise StorageError(name, f"mlock of {length} bytes failed ({os.strerror(err)}): RLIMIT_MEMLOCK "
                                     f"(ulimit -l) is {_memlock_limit()}; raise it or drop mlock=true")
        return length

    def close(self) -> None:
        if isinstance(self._buf, mmap.mmap) and not self._buf.closed:
            if self._locked:
                _get_libc().munlock(self._address(self._buf), self._locked)
            self._buf.close()
            self._locked = 0

    def _read(self, offset: int, length: int) -> bytes:
        return bytes(memoryview(self._buf)[offset:offset + length])

    def _read_buffers(self, offset: int, length: int) -> list[bytes | bytearray | memoryview]:
        return [memoryview(self._buf)[offset:offset + length]]

    def _write(self, offset: int, data: memoryview) -> None:
        memoryview(self._buf)[offset:offset + len(data)] = data

    def _zero(self, offset: int, length: int) -> None:
        # malloc.c: memset; nothing is ever freed.
        step = 1 << 24
        view = memoryview(self._buf)
        for pos in range(offset, offset + length, step):
            n = min(step, offset + length - pos)
            view[pos:pos + n] = bytes(n)

    def _extents(self, offset: int, length: int) -> list[Extent]:
        return [(offset, length, 0)]

    @property
    def resident_bytes(self) -> int:
        return self._size
