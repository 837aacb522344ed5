"""What a part of the board is given to save and load the bulk of its state (pages, store contents).

Only the interfaces, for annotations: board/snapshot.py implements them over the snapshot file. Kept
apart so the parts never import the file format (it imports them).
"""

from __future__ import annotations

from typing import Protocol


class DataSink(Protocol):
    def put(self, data: bytes | bytearray | memoryview) -> None:
        """Append these bytes to the saved state (no copy is kept: the caller may reuse the buffer)."""


class DataSource(Protocol):
    def read_into(self, view: bytearray | memoryview) -> None:
        """Fill `view` with the next bytes of the saved state, in the order they were put."""

    def fill(self, view: bytearray | memoryview) -> None:
        """As read_into, but the bytes need only be in `view` once the whole state is loaded (so
        they can be decompressed into it side by side); `view` must stay valid until then."""
