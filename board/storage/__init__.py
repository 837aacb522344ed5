"""Host-side backing stores with nbdkit's memory plugin semantics (sparse, malloc, zstd).

The swap device of a board profile (issue 5 part 6) is one of these. The facade mirrors
`nbdkit memory SIZE allocator=sparse|malloc[,mlock=true]|zstd` (nbdkit-memory-plugin(1)).
"""

from __future__ import annotations

from typing import Any

from .base import (
    EXTENT_HOLE,
    EXTENT_ZERO,
    L1_SPAN,
    L2_SIZE,
    MAX_SIZE,
    MEMORY_PLUGIN_FEATURES,
    PAGE_SIZE,
    Allocator,
    Extent,
    Features,
    SizeError,
    StorageError,
    parse_size,
)
from .malloc_store import MallocAllocator
from .sparse import PagedAllocator, SparseAllocator
from .zstd_store import ZstdAllocator

ALLOCATORS: dict[str, type[Allocator]] = {
    "sparse": SparseAllocator,
    "malloc": MallocAllocator,
    "zstd": ZstdAllocator,
}


def open_allocator(kind: str, size: int | str, **options: Any) -> Allocator:
    """Make a store as `nbdkit memory size=SIZE allocator=KIND[,options]` would (default sparse).

    Options: malloc takes mlock (bool, or the strings "true"/"false"); zstd takes level.
    """
    try:
        cls = ALLOCATORS[kind]
    except KeyError:
        raise StorageError("EINVAL", f"unknown allocator {kind!r}: expected one of sparse, malloc, zstd") from None
    if "mlock" in options and isinstance(options["mlock"], str):
        options["mlock"] = options["mlock"].lower() in ("1", "true", "yes", "on")
    if "mlock" in options and kind != "malloc":
        raise StorageError("EINVAL", f"the mlock option is only for allocator=malloc, not {kind}")
    try:
        return cls(size, **options)
    except TypeError as exc:
        raise StorageError("EINVAL", f"allocator {kind}: bad options {sorted(options)}: {exc}") from None


__all__ = [
    "ALLOCATORS",
    "EXTENT_HOLE",
    "EXTENT_ZERO",
    "L1_SPAN",
    "L2_SIZE",
    "MAX_SIZE",
    "MEMORY_PLUGIN_FEATURES",
    "PAGE_SIZE",
    "Allocator",
    "Extent",
    "Features",
    "MallocAllocator",
    "PagedAllocator",
    "SizeError",
    "SparseAllocator",
    "StorageError",
    "ZstdAllocator",
    "open_allocator",
    "parse_size",
]
