"""Guest physical memory: sparse RAM in host mmaps, and the bus that decodes physical addresses.

RAM is anonymous host memory mapped into Unicorn with mem_map_ptr, so guest pages never touched
cost no host memory and Python reads and writes the same bytes the CPU sees. A large preloaded
module can be an overlay: a private (copy-on-write) mapping of the file at its physical address,
so placing it costs neither a copy nor resident memory, and the file is never modified.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from bisect import bisect_right
from collections import namedtuple

TYPE_CHECKING = False   # typing and pathlib cost imports on every boot; annotations are strings here
if TYPE_CHECKING:
    from os import PathLike

PAGE = mmap.PAGESIZE


class Region:
    """One host mapping behind a range of guest physical addresses; `kind` is "ram", "file" or "flash"."""

    __slots__ = ("base", "size", "host", "kind", "name", "writable")

    def __init__(self, base: int, size: int, host: mmap.mmap, kind: str, name: str, writable: bool = True) -> None:
        self.base, self.size, self.host, self.kind, self.name, self.writable = base, size, host, kind, name, writable

    def __repr__(self) -> str:
        return f"Region(0x{self.base:x}, 0x{self.size:x}, {self.kind!r}, {self.name!r})"

    @property
    def end(self) -> int:
        return self.base + self.size

    def address(self) -> int:
        """Host address of the mapping (for Unicorn's mem_map_ptr)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(self.host))


class FileOverlay(namedtuple("FileOverlay", "pa path")):
    """Map the page-aligned head of the file `path` privately at the guest physical address `pa`."""

    __slots__ = ()


class PhysicalAbort(Exception):
    """A physical access with nothing behind it (an external abort on real hardware)."""

    def __init__(self, pa: int) -> None:
        super().__init__(f"no memory or device at physical address 0x{pa:08x}")
        self.pa = pa


def anonymous_mapping(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)


class PhysicalMemory:
    """The memory regions of the bus (RAM, file overlays, flash) sorted by address."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self._bases: list[int] = []

    def add(self, region: Region) -> None:
        for r in self.regions:
            if region.base < r.end and r.base < region.end:
                raise ValueError(f"region {region.name} overlaps {r.name}")
        self.regions.append(region)
        self.regions.sort(key=lambda r: r.base)
        self._bases = [r.base for r in self.regions]

    def add_ram(self, base: int, size: int, overlays: tuple[FileOverlay, ...] = ()) -> None:
        """RAM at [base, base+size), split around the overlays (each page-aligned)."""
        cursor = base
        for ov in sorted(overlays, key=lambda o: o.pa):
            length = os.path.getsize(ov.path) // PAGE * PAGE
            if ov.pa % PAGE or ov.pa < cursor or ov.pa + length > base + size:
                raise ValueError(f"overlay {ov.path} at 0x{ov.pa:x} does not fit RAM")
            if length == 0:
                continue
            if ov.pa > cursor:
                self.add(Region(cursor, ov.pa - cursor, anonymous_mapping(ov.pa - cursor), "ram", "ram"))
            with open(ov.path, "rb") as f:
                host = mmap.mmap(f.fileno(), length, flags=mmap.MAP_PRIVATE,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
            self.add(Region(ov.pa, length, host, "file", str(ov.path)))
            cursor = ov.pa + length
        if cursor < base + size:
            self.add(Region(cursor, base + size - cursor, anonymous_mapping(base + size - cursor), "ram", "ram"))

    def find(self, pa: int) -> Region | None:
        i = bisect_right(self._bases, pa) - 1
        if i >= 0 and pa < self.regions[i].end:
            return self.regions[i]
        return None

    def read(self, pa: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            r = self.find(pa)
            if r is None:
                raise PhysicalAbort(pa)
            n = min(size, r.end - pa)
            off = pa - r.base
            out += r.host[off:off + n]
            pa += n
            size -= n
        return bytes(out)

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            r = self.find(pa)
            if r is None:
                raise PhysicalAbort(pa)
            n = min(len(view), r.end - pa)
            off = pa - r.base
            r.host[off:off + n] = view[:n]
            pa += n
            view = view[n:]

    def read_u32(self, pa: int) -> int:
        r = self.find(pa)
        if r is None or pa + 4 > r.end:
            return struct.unpack("<I", self.read(pa, 4))[0]
        return struct.unpack_from("<I", r.host, pa - r.base)[0]

    def write_u32(self, pa: int, value: int) -> None:
        r = self.find(pa)
        if r is None or pa + 4 > r.end:
            self.write(pa, struct.pack("<I", value))
        else:
            struct.pack_into("<I", r.host, pa - r.base, value)

    def readinto_file(self, pa: int, path: str | PathLike[str], length: int, offset: int = 0) -> None:
        """Read a file straight into guest RAM (no intermediate Python bytes for large files)."""
        with open(path, "rb") as f:
            f.seek(offset)
            while length > 0:
                r = self.find(pa)
                if r is None:
                    raise PhysicalAbort(pa)
                n = min(length, r.end - pa)
                view = memoryview(r.host)[pa - r.base:pa - r.base + n]
                got = f.readinto(view)
                view.release()
                if not got:
                    break
                pa += got
                length -= got

    def resident_regions(self) -> list[Region]:
        return list(self.regions)
