"""The bytes of a flash bank: a host file or anonymous memory, mapped where the CPU can read it.

Kept apart from the CFI state machine (board/devices/cfi.py): a bank in read-array mode is plain
memory to the CPU and needs only these bytes, so a boot whose guest never sends a flash command
never imports the command sets, their geometries and query tables.
"""

from __future__ import annotations

import mmap
import os

from ..memory import MemoryStateError, changed_pages, check_file_identity, file_identity, load_pages, save_pages

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..state_io import DataSink, DataSource

MIB = 1 << 20
# The CFI geometries a board profile may name (board/devices/cfi.py GEOMETRIES builds them; a test
# holds the two lists to the same names).
GEOMETRY_NAMES = ("qemu-virt", "geom-map-example", "embedded-8m")


def human_size(size: int) -> str:
    """1 GiB, 8 MiB, 64 KiB or N bytes: how the flash errors name a size."""
    for unit, name in ((1 << 30, "GiB"), (MIB, "MiB"), (1 << 10, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


class FlashImage:
    """The bytes of a bank: a host file mapped MAP_SHARED (or anonymous memory) the CPU can map.

    Only completed program and erase operations write to it, each followed by sync() of the
    touched range (msync), so the file holds every completed operation even if armboard is killed
    right after. `durable=False` skips the msync (the page cache still has the data: a killed
    process loses nothing, only a host crash could); the file is synced when closed either way.
    """

    def __init__(self, host: mmap.mmap, size: int, *, path: str | None = None, writable: bool = True,
                 durable: bool = True) -> None:
        self.host = host
        self.size = size
        self.path = path
        self.writable = writable
        self.durable = durable
        self.array = memoryview(host)
        self.syncs = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], size: int | None = None, *, readonly: bool = False,
             durable: bool = True) -> FlashImage:
        """Map a file as a flash image; its size must be `size` exactly (ValueError with both sizes).

        The file is never truncated, padded or rewritten. `readonly` maps it copy-on-write and the
        device refuses programs and erases (status error bits, as QEMU does for a read-only drive)."""
        p = os.fspath(path)
        actual = os.stat(p).st_size
        if size is not None and actual != size:
            raise ValueError(f"flash image {p} is {actual} bytes ({human_size(actual)}); "
                             f"the flash bank needs exactly {size} bytes ({human_size(size)})")
        if actual == 0:
            raise ValueError(f"flash image {p} is empty")
        with open(p, "rb" if readonly else "r+b") as f:
            if readonly:
                host = mmap.mmap(f.fileno(), actual, access=mmap.ACCESS_COPY)
            else:
                host = mmap.mmap(f.fileno(), actual, flags=mmap.MAP_SHARED,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(host, actual, path=p, writable=not readonly, durable=durable)

    @classmethod
    def anonymous(cls, size: int, fill: int = 0x00) -> FlashImage:
        """Host memory with no file: pages cost nothing until touched. QEMU's virt flash without a
        drive reads 0; `fill=0xFF` gives an erased part (and touches every page)."""
        host = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                         prot=mmap.PROT_READ | mmap.PROT_WRITE)
        if fill:
            chunk = bytes([fill]) * min(size, MIB)
            for off in range(0, size, len(chunk)):
                n = min(len(chunk), size - off)
                host[off:off + n] = chunk[:n]
        return cls(host, size)

    def sync(self, offset: int, length: int) -> None:
        """msync the pages holding [offset, offset+length) so a completed operation is in the file."""
        if self.path is None or not self.writable or not self.durable or length <= 0:
            return
        page = mmap.PAGESIZE
        start = offset - offset % page
        end = min(self.size, -(-(offset + length) // page) * page)
        self.host.flush(start, end - start)
        self.syncs += 1

    # ------------------------------------------------------------------ snapshots
    def state(self, sink: DataSink) -> dict:
        """A bank over a file is the file: the snapshot keeps its identity (SHA-256), and a restore over
        a file that has changed since is refused. A bank of anonymous memory keeps its non-zero pages."""
        if self.path is not None:
            return {"size": self.size, "file": file_identity(self.path, self.size)}
        runs = changed_pages(self.host)
        save_pages(self.host, runs, sink)
        return {"size": self.size, "runs": runs}

    def check_state(self, state: dict, what: str) -> None:
        if state.get("size") != self.size:
            raise MemoryStateError(f"{what}: the snapshot's bank is {state.get('size')} bytes, this one {self.size}")
        if ("file" in state) != (self.path is not None):
            have = f"the image file {self.path}" if self.path else "no image file"
            want = f"the image file {state['file'].get('path')}" if "file" in state else "no image file"
            raise MemoryStateError(f"{what}: the snapshot was saved with {want}; this boot has {have}")
        if self.path is not None:
            check_file_identity(state["file"], self.path, self.size, f"{what}: the flash image")

    def load_state(self, state: dict, source: DataSource) -> None:
        if self.path is None:
            load_pages(self.host, state["runs"], source)

    def close(self) -> None:
        if self.host.closed:
            return
        if self.path is not None and self.writable:
            self.host.flush()
        self.array.release()
        self.host.close()

    def __enter__(self) -> FlashImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
