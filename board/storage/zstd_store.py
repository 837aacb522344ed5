"""The zstd allocator: the sparse layout with every 32 KiB page stored as a zstd frame.

nbdkit common/allocators/zstd.c keeps sparse.c's two-level table but compresses each page at zstd's
default level (3); a read decompresses the page, a write decompresses, patches and recompresses it,
and zero frees whole or now all-zero pages and recompresses the rest. With the typical 2:1 ratio the
man page assumes, twice as much swap fits in the same host memory, at the cost of CPU per access.
"""

from __future__ import annotations

from typing import Any

import zstandard

from .base import PAGE_SIZE, StorageError
from .sparse import PagedAllocator

# zstd's ZSTD_CLEVEL_DEFAULT, which zstd.c uses.
DEFAULT_LEVEL = 3


class ZstdAllocator(PagedAllocator):
    """allocator=zstd: compressed pages, otherwise the same as sparse (virtual size up to 2**63-1)."""

    kind = "zstd"

    def __init__(self, size: int | str, *, level: int = DEFAULT_LEVEL) -> None:
        # One context each, reused: zstd.c also keeps a compression and a decompression context.
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._dctx = zstandard.ZstdDecompressor()
        super().__init__(size)

    def _entry_bytes(self, entry: Any) -> int:
        return len(entry)

    def _view(self, entry: Any) -> bytes:
        page = self._dctx.decompress(entry, max_output_size=PAGE_SIZE)
        if len(page) != PAGE_SIZE:   # a corrupt frame would otherwise shift every later byte
            raise StorageError("EIO", f"zstd page decompressed to {len(page)} bytes, expected {PAGE_SIZE}")
        return page

    def _load(self, entry: Any) -> bytearray:
        return bytearray(self._view(entry))

    def _encode(self, page: bytearray) -> bytes:
        return self._cctx.compress(page)
