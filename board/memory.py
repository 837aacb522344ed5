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

    from .state_io import DataSink, DataSource

PAGE = mmap.PAGESIZE
# /proc/PID/pagemap entry bits (Linux Documentation/admin-guide/mm/pagemap.rst).
PM_PRESENT, PM_SWAPPED, PM_FILE = 1 << 63, 1 << 62, 1 << 61
_PAGEMAP_CHUNK = 512        # entries read and tested for all-zero at once (one 4 KiB read)


class MemoryStateError(ValueError):
    """A saved memory state that does not fit this bus (other regions, a changed file)."""


def host_address(host: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(host))


def _pagemap_candidates(host: mmap.mmap, file_backed: bool) -> list[int] | None:
    """Pages of the mapping that may hold something a fresh mapping would not: present or swapped
    pages, and of a private file mapping only those no longer the file's (copied on write). None when
    /proc/self/pagemap cannot be read (not Linux, or no access): then every page is a candidate."""
    count = len(host) // PAGE
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as f:
            f.seek(host_address(host) // PAGE * 8)
            raw = f.read(count * 8)
    except OSError:
        return None
    if len(raw) != count * 8:
        return None
    entries = memoryview(raw).cast("Q")
    zero_chunk = bytes(_PAGEMAP_CHUNK * 8)
    out: list[int] = []
    for first in range(0, count, _PAGEMAP_CHUNK):
        if raw[first * 8:(first + _PAGEMAP_CHUNK) * 8] == zero_chunk[:8 * min(_PAGEMAP_CHUNK, count - first)]:
            continue
        for page in range(first, min(first + _PAGEMAP_CHUNK, count)):
            e = entries[page]
            if e & PM_SWAPPED or (e & PM_PRESENT and not (file_backed and e & PM_FILE)):
                out.append(page)
    return out


def changed_pages(host: mmap.mmap, baseline: str | None = None) -> list[tuple[int, int]]:
    """Runs (first page, count) of the pages that differ from what a fresh mapping reads: zeros for
    anonymous memory, the file `baseline` for a private file mapping. The kernel's pagemap narrows
    the search to touched pages (cheap on a sparse 2 GiB board); each candidate is then compared, so
    a page that was only read, or written back to zeros, is not saved."""
    candidates = _pagemap_candidates(host, baseline is not None)
    if candidates is None:
        candidates = range(len(host) // PAGE)
    zero = bytes(PAGE)
    base_file = open(baseline, "rb") if baseline is not None else None   # noqa: SIM115 - closed below
    runs: list[tuple[int, int]] = []
    try:
        for page in candidates:
            data = host[page * PAGE:(page + 1) * PAGE]
            if base_file is None:
                if data == zero:
                    continue
            else:
                base_file.seek(page * PAGE)
                if data == base_file.read(PAGE):
                    continue
            if runs and runs[-1][0] + runs[-1][1] == page:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((page, 1))
    finally:
        if base_file is not None:
            base_file.close()
    return runs


def file_identity(path: str, length: int) -> dict:
    """What a restore checks a file against: its path, size, modification time and inode, and the
    SHA-256 of its first `length` bytes (the part mapped)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        left = length
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
            "sha256": digest.hexdigest()}


_identities: dict[tuple, dict] = {}


def module_file_identity(path: str, length: int) -> dict:
    """file_identity() of a module file, remembered while its size, modification time and inode stay
    (a monitor saving again does not read a 200 MiB image again)."""
    st = os.stat(path)
    key = (path, length, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _identities:
        if len(_identities) >= 16:
            _identities.clear()
        _identities[key] = file_identity(path, length)
    return _identities[key]


def check_file_identity(saved: dict, path: str, length: int, what: str, *, quick: bool = False) -> None:
    """Refuse a restore over a file that is not the one the snapshot was taken with. `quick`: the
    same size, modification time and inode are taken for the same file without reading it, as
    rsync's quick check does (for module files, which armboard never writes; a flash image, which
    the guest writes through its mapping, is always read)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise MemoryStateError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if quick and (st.st_size, st.st_mtime_ns, st.st_ino) == (saved.get("size"), saved.get("mtime_ns"),
                                                             saved.get("ino")):
        return
    try:
        now = file_identity(path, length)
    except OSError as exc:
        raise MemoryStateError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if now["sha256"] != saved.get("sha256") or now["size"] != saved.get("size"):
        raise MemoryStateError(f"{what} {path} has changed since the snapshot was saved (SHA-256 "
                               f"{now['sha256'][:16]}..., {now['size']} bytes; the snapshot has "
                               f"{str(saved.get('sha256'))[:16]}..., {saved.get('size')} bytes)")


def save_pages(host: mmap.mmap, runs: list[tuple[int, int]], sink: DataSink) -> None:
    view = memoryview(host)
    try:
        for first, count in runs:
            sink.put(view[first * PAGE:(first + count) * PAGE])
    finally:
        view.release()


def load_pages(host: mmap.mmap, runs: list[tuple[int, int]], source: DataSource) -> None:
    """Discard what the mapping holds (zeros again, or the file's bytes again for a private file
    mapping: MADV_DONTNEED drops the copied-on-write pages) and have the saved pages put into it
    (source.fill: they are in place once the source is finished)."""
    host.madvise(mmap.MADV_DONTNEED)
    view = memoryview(host)
    try:
        for first, count in runs:
            if first < 0 or count < 0 or (first + count) * PAGE > len(host):
                raise MemoryStateError(f"saved pages {first}..{first + count} are outside a {len(host)}-byte mapping")
            source.fill(view[first * PAGE:(first + count) * PAGE])
    finally:
        view.release()


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

    # ------------------------------------------------------------------ snapshots
    def state(self, sink: DataSink) -> dict:
        """Only the pages that differ from a fresh region (zeros, or the overlay file's bytes) go to
        `sink`; a file overlay also records the file's identity, so a restore over another file fails."""
        baseline = self.name if self.kind == "file" else None
        runs = changed_pages(self.host, baseline)
        save_pages(self.host, runs, sink)
        out = {"base": self.base, "size": self.size, "kind": self.kind, "runs": runs}
        if baseline is not None:
            out["file"] = module_file_identity(baseline, self.size)
        return out

    def check_state(self, state: dict) -> None:
        """Whether load_state(state) fits this region (checked for every part before anything loads)."""
        if (state.get("base"), state.get("size"), state.get("kind")) != (self.base, self.size, self.kind):
            raise MemoryStateError(f"the snapshot has {state.get('kind')} memory at 0x{state.get('base', 0):x} "
                                   f"(0x{state.get('size', 0):x} bytes) where this board has {self.kind} memory "
                                   f"at 0x{self.base:x} (0x{self.size:x} bytes)")
        if self.kind == "file":
            check_file_identity(state.get("file", {}), self.name, self.size, "the module file", quick=True)

    def load_state(self, state: dict, source: DataSource) -> None:
        """The region as saved: a check_state()ed state and its pages from `source`."""
        load_pages(self.host, state["runs"], source)


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

    def state(self, sink: DataSink) -> list[dict]:
        return [r.state(sink) for r in self.regions]

    def check_state(self, state: list[dict]) -> None:
        if len(state) != len(self.regions):
            raise MemoryStateError(f"the snapshot has {len(state)} memory regions; this board has "
                                   f"{len(self.regions)} ({', '.join(r.name for r in self.regions)})")
        for region, saved in zip(self.regions, state, strict=True):
            region.check_state(saved)

    def load_state(self, state: list[dict], source: DataSource) -> None:
        for region, saved in zip(self.regions, state, strict=True):
            region.load_state(saved, source)
