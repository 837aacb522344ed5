"""What the NBD server serves: exports, the filters that compose over them, and the catalogue of names.

An `Export` is one connection's open of one storage object, with nbdkit's plugin callbacks (pread,
pwrite, zero, trim, flush, cache, extents) and its can_* answers; the connection validates every
request against those answers before calling it, as nbdkit's server/protocol.c does, so an export
only sees requests inside its size. Filters wrap an export and change one thing, as nbdkit's filters
do: `ReadOnly` (nbdkit -r, or a provider GEOM will not open for writing) and `Offset` (nbdkit's
offset filter: a window of the export below). Errors are `ExportError(errno name, message)`; the
connection turns the name into the NBD error value (nbdkit's nbd_errno mapping).

`StoreExport` serves a board store (board/storage: sparse, malloc, zstd) with the memory plugin's
semantics; the board's own objects (flash banks, md units, GEOM providers, RAM) are in board_exports.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from board.storage import Allocator, StorageError

Buffer = bytes | bytearray | memoryview
Extent = tuple[int, int, int]          # (offset, length, NBD_STATE_* flags)

# The largest read or write request the server takes (nbdkit's MAX_REQUEST_SIZE, server/internal.h):
# larger ones are refused with ENOMEM, as nbdkit does.
MAX_REQUEST = 64 << 20
# What an export that has no constraint of its own advertises as the maximum payload when the client
# asks for NBD_INFO_BLOCK_SIZE: proto.md's "at least 2^25" default.
DEFAULT_MAX_PAYLOAD = 32 << 20


class ExportError(Exception):
    """An I/O request an export refused: `errno_name` is the errno the NBD error value comes from."""

    def __init__(self, errno_name: str, message: str) -> None:
        super().__init__(message)
        self.errno_name = errno_name


class UnknownExport(LookupError):
    """No export of that name (NBD_REP_ERR_UNKNOWN); the message lists what there is."""


@dataclass(frozen=True)
class BlockSize:
    """NBD_INFO_BLOCK_SIZE: minimum (alignment), preferred and maximum payload, in bytes."""

    minimum: int
    preferred: int
    maximum: int


class Export:
    """One open of an export; subclasses override the callbacks they support."""

    name = ""
    size = 0
    readonly = False
    description = ""
    block_size: BlockSize | None = None     # None: no constraint, NBD_INFO_BLOCK_SIZE is not sent
    can_flush = True
    can_trim = True
    can_zero = True
    can_fast_zero = True
    can_fua = True
    can_cache = True
    can_multi_conn = True
    can_extents = True

    def read(self, offset: int, length: int) -> list[Buffer]:
        """The bytes, as buffers sent as they are (views of the store's memory where it allows)."""
        raise ExportError("EIO", f"{self.name}: reading is not supported")

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        raise ExportError("EPERM", f"{self.name}: writing is not supported")

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        """Write zeroes. A `fast` request that cannot be cheaper than a write fails with ENOTSUP."""
        if fast:
            raise ExportError("ENOTSUP", f"{self.name}: zeroing is no faster than writing")
        self.write(offset, memoryview(bytes(length)), fua=fua)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        """A hint: the range is no longer needed. Doing nothing is correct."""

    def flush(self) -> None:
        """Every completed write reaches stable storage before this returns."""

    def cache(self, offset: int, length: int) -> None:
        """NBD_CMD_CACHE: the data is already where reads find it."""

    def extents(self, offset: int, length: int, *, req_one: bool) -> list[Extent]:
        """base:allocation from `offset`; the last extent may run past offset+length (not past the size)."""
        return [(offset, length, 0)]

    def close(self) -> None:
        """The connection ends."""


class Filter(Export):
    """An export over another one, passing everything through (nbdkit's filter 'next' calls)."""

    def __init__(self, inner: Export) -> None:
        self.inner = inner

    name = property(lambda self: self.inner.name)                  # type: ignore[assignment]
    size = property(lambda self: self.inner.size)                  # type: ignore[assignment]
    readonly = property(lambda self: self.inner.readonly)          # type: ignore[assignment]
    description = property(lambda self: self.inner.description)    # type: ignore[assignment]
    block_size = property(lambda self: self.inner.block_size)      # type: ignore[assignment]
    can_flush = property(lambda self: self.inner.can_flush)        # type: ignore[assignment]
    can_trim = property(lambda self: self.inner.can_trim)          # type: ignore[assignment]
    can_zero = property(lambda self: self.inner.can_zero)          # type: ignore[assignment]
    can_fast_zero = property(lambda self: self.inner.can_fast_zero)  # type: ignore[assignment]
    can_fua = property(lambda self: self.inner.can_fua)            # type: ignore[assignment]
    can_cache = property(lambda self: self.inner.can_cache)        # type: ignore[assignment]
    can_multi_conn = property(lambda self: self.inner.can_multi_conn)  # type: ignore[assignment]
    can_extents = property(lambda self: self.inner.can_extents)    # type: ignore[assignment]

    def read(self, offset: int, length: int) -> list[Buffer]:
        return self.inner.read(offset, length)

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        self.inner.write(offset, data, fua=fua)

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        self.inner.zero(offset, length, may_trim=may_trim, fast=fast, fua=fua)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        self.inner.trim(offset, length, fua=fua)

    def flush(self) -> None:
        self.inner.flush()

    def cache(self, offset: int, length: int) -> None:
        self.inner.cache(offset, length)

    def extents(self, offset: int, length: int, *, req_one: bool) -> list[Extent]:
        return self.inner.extents(offset, length, req_one=req_one)

    def close(self) -> None:
        self.inner.close()


class ReadOnly(Filter):
    """nbdkit -r / the readonly filter: advertised read-only; writes never reach the export below."""

    def __init__(self, inner: Export, reason: str = "") -> None:
        super().__init__(inner)
        self.reason = reason or f"{inner.name} is read-only"

    readonly = True                     # type: ignore[assignment]
    can_trim = False                    # type: ignore[assignment]
    can_zero = False                    # type: ignore[assignment]
    can_fast_zero = False               # type: ignore[assignment]
    can_fua = False                     # type: ignore[assignment]

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        raise ExportError("EPERM", self.reason)

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        raise ExportError("EPERM", self.reason)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        raise ExportError("EPERM", self.reason)


class Offset(Filter):
    """nbdkit's offset filter: bytes [offset, offset+size) of the export below, seen from 0."""

    def __init__(self, inner: Export, offset: int, size: int, *, name: str | None = None,
                 description: str | None = None) -> None:
        super().__init__(inner)
        if offset < 0 or size < 0 or offset + size > inner.size:
            raise ValueError(f"offset window {offset}+{size} is outside {inner.name} ({inner.size} bytes)")
        self.base = offset
        self._size = size
        self._name = name
        self._description = description

    size = property(lambda self: self._size)                       # type: ignore[assignment]
    name = property(lambda self: self._name or self.inner.name)    # type: ignore[assignment]
    description = property(lambda self: self._description if self._description is not None  # type: ignore
                           else self.inner.description)

    def read(self, offset: int, length: int) -> list[Buffer]:
        return self.inner.read(self.base + offset, length)

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        self.inner.write(self.base + offset, data, fua=fua)

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        self.inner.zero(self.base + offset, length, may_trim=may_trim, fast=fast, fua=fua)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        self.inner.trim(self.base + offset, length, fua=fua)

    def cache(self, offset: int, length: int) -> None:
        self.inner.cache(self.base + offset, length)

    def extents(self, offset: int, length: int, *, req_one: bool) -> list[Extent]:
        out = []
        end = self._size
        for off, n, flags in self.inner.extents(self.base + offset, length, req_one=req_one):
            lo, hi = off - self.base, min(off - self.base + n, end)
            if hi > lo:
                out.append((lo, hi - lo, flags))
        return out


def storage_error(exc: StorageError) -> ExportError:
    return ExportError(exc.errno_name, exc.message)


class StoreExport(Export):
    """A board store (board/storage) as nbdkit's memory plugin serves its allocator.

    memory.c: every can_* is yes (FUA native, fast zero, multi-conn: one store for all connections),
    flush does nothing (memory has no cache below), trim is zero, zero ignores may_trim and fast. A
    lock around each call keeps the store's tables whole while several connections use it, as the
    allocators' own mutex does in nbdkit (the buffers a read returns are used after it is released).
    """

    def __init__(self, name: str, store: Allocator, *, lock: AbstractContextManager | None = None,
                 description: str = "") -> None:
        self.name = name
        self.store = store
        self.lock = lock if lock is not None else threading.Lock()
        self.description = description

    @property
    def size(self) -> int:   # type: ignore[override]
        return self.store.size

    def read(self, offset: int, length: int) -> list[Buffer]:
        with self.lock:
            return self.store.read_buffers(offset, length)

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        try:
            with self.lock:
                self.store.write(offset, data)
        except StorageError as exc:
            raise storage_error(exc) from None

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        with self.lock:
            self.store.zero(offset, length)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        with self.lock:
            self.store.trim(offset, length)

    def extents(self, offset: int, length: int, *, req_one: bool) -> list[Extent]:
        with self.lock:
            return self.store.block_status(offset, length)


# A catalogue entry: opens the export for one connection, given the name the client asked for (which
# may carry options after a comma, "flash0,mode=nor") and whether the server is read-only.
Opener = Callable[[str, bool], Export]


class Catalogue:
    """The export names a server answers to, in NBD_OPT_LIST order, and how to open each.

    Entries are static (a flash bank, RAM) or come from `providers`, functions called at each lookup
    that list what exists now (a GEOM mesh whose providers come and go). `default` names the export
    an empty name (the protocol's default export) opens; `any_name` opens the default for every name,
    as `nbdkit memory` does."""

    def __init__(self, *, default: str | None = None, any_name: bool = False,
                 listing_lock: Callable[[], AbstractContextManager] = nullcontext) -> None:
        self._static: dict[str, tuple[Opener, str]] = {}
        self.providers: list[Callable[[], Iterator[tuple[str, Opener, str]]]] = []
        self.default = default
        self.any_name = any_name
        self.listing_lock = listing_lock

    def add(self, name: str, opener: Opener, description: str = "") -> None:
        self._static[name] = (opener, description)

    def remove(self, name: str) -> None:
        self._static.pop(name, None)

    def _all(self) -> dict[str, tuple[Opener, str]]:
        with self.listing_lock():
            out = dict(self._static)      # copied under the lock: entries may be added while it waited
            for provider in self.providers:
                for name, opener, description in provider():
                    out.setdefault(name, (opener, description))
        return out

    def listing(self) -> list[tuple[str, str]]:
        """(name, description) of every export, for NBD_OPT_LIST."""
        if self.any_name:
            return [(self.default or "", "")]
        return [(name, description) for name, (_, description) in self._all().items()]

    def resolve(self, name: str) -> tuple[str, Opener]:
        """(canonical name, opener) for a name a client asked for, or UnknownExport."""
        base, _, options = name.partition(",")
        static = self._static.get(name) or (self._static.get(base) if options else None)
        if static is not None and not self.any_name:
            return name, static[0]        # a static export needs no provider (nor the lock providers take)
        entries = self._all()
        if self.any_name and self.default in entries:
            return name, entries[self.default][0]
        if name == "" and self.default is not None and self.default in entries:
            return self.default, entries[self.default][0]
        if name in entries:
            return name, entries[name][0]
        if options and base in entries:     # "flash0,mode=nor": options the opener parses from the name
            return name, entries[base][0]
        known = ", ".join(entries) or "none"
        raise UnknownExport(f"no export named {name!r} (exports: {known})")


def memory_catalogue(store: Allocator) -> Catalogue:
    """What `nbdkit memory` serves: one store, under every export name (the memory plugin has no
    list_exports, so NBD_OPT_LIST answers the default name "" and any name opens the same disk)."""
    lock = threading.Lock()

    def opener(name: str, readonly: bool) -> Export:
        export = StoreExport(name, store, lock=lock)
        return ReadOnly(export) if readonly else export

    catalogue = Catalogue(default="", any_name=True)
    catalogue.add("", opener)
    return catalogue
