"""The snapshot file: the parts' own states assembled into one versioned, checksummed file.

Each part of the board saves and loads itself (Machine.state(), Region.state(), the devices', the
stores'); this module only frames them, as QEMU's migration stream frames each device's vmstate.
Software running on the board (the Python kernel) adds sections of its own, which this module
carries without reading them.

Layout (little-endian):

    file header     magic b"\\x89ARMSNAP" | format version u32 | CRC-32 of the 12 bytes before it
    section ...     name 16s | codec u32 | flags u32 | stored length u64 | decoded length u64 |
                    CRC-32 of the stored payload u32 | CRC-32 of the 44 header bytes before it u32,
                    then the payload
    end section     a section named "end" with no payload; nothing may follow it

Codecs: 0 raw, 1 zstd (one frame, with its content checksum), 2 zstd frames: independent frames of
FRAME_SIZE decoded bytes each (compressed and decompressed by threads side by side), then the frame
index, (stored, decoded, CRC-32 of the stored bytes) as u32 triples, and the frame count u32; the
section header's CRC covers that index, each frame is checked against its own as it is read. The
"board" section holds the
machine's state as plain data (a pickle of dicts, lists, numbers, strings and bytes: its loader
accepts no other type, so a foreign file cannot make it build objects); the "pages" section holds,
in the order the state lists them, every page of memory, flash and swap store that differs from a
fresh board, zstd-compressed. A damaged, truncated or foreign file is refused before anything is
loaded, with the offset and the section where it goes wrong.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import zstandard  # only a boot that saves or restores imports this module

from .machine import Machine, MachineStateError

MAGIC = b"\x89ARMSNAP"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<8sII")
SECTION_HEADER = struct.Struct("<16sIIQQII")
CODEC_RAW, CODEC_ZSTD, CODEC_ZSTD_FRAMES = 0, 1, 2
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_ZSTD: "zstd", CODEC_ZSTD_FRAMES: "zstd frames"}
FRAME_SIZE = 8 << 20           # decoded bytes per frame of a page section
FRAME_INDEX = struct.Struct("<III")      # per frame: stored bytes, decoded bytes, CRC-32 of the stored bytes
WORKERS = max(1, min(4, os.cpu_count() or 1))   # threads that compress or decompress frames side by side
ZSTD_LEVEL = 3                 # zstd's own default level, what `zstd` on the command line uses
BOARD_SECTION, PAGES_SECTION, END_SECTION = "board", "pages", "end"
_COPY_CHUNK = 1 << 20


class SnapshotError(ValueError):
    """A snapshot file that cannot be loaded: `offset` is where in the file it goes wrong."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"offset {offset}: {message}")
        self.offset = offset
        self.message = message


class _CountingFile:
    """A write-only file that keeps the CRC-32 and length of what passes through it."""

    def __init__(self, f) -> None:
        self.f, self.crc, self.length = f, 0, 0

    def write(self, data) -> int:
        self.crc = zlib.crc32(data, self.crc)
        self.length += len(data)
        return self.f.write(data)


_local = threading.local()


def _compress(data: bytearray) -> bytes:
    cctx = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return cctx.compress(data)


def _decompress(fd: int, offset: int, stored: int, decoded: int, crc: int) -> bytes:
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    try:
        data = dctx.decompress(_frame_bytes(fd, offset, stored, crc), max_output_size=decoded)
    except zstandard.ZstdError as exc:
        raise SnapshotError(offset, f"a frame does not decompress: {exc}") from None
    if len(data) != decoded:
        raise SnapshotError(offset, f"a frame decodes to {len(data)} bytes, not {decoded}")
    return data


class DataSink:
    """Where a part puts the bytes of its state (pages, store contents) while the snapshot is written.

    The bytes are cut into frames of FRAME_SIZE, each compressed on its own by a pool of threads
    (zstd releases the GIL), so a restore can decompress them side by side too."""

    def __init__(self, out: _CountingFile) -> None:
        self._out = out
        self._buf = bytearray()
        self._pending: deque = deque()
        self._pool = ThreadPoolExecutor(WORKERS) if WORKERS > 1 else None
        self.index: list[tuple[int, int, int]] = []      # (stored, decoded, CRC-32) of each frame
        self.length = 0

    def put(self, data) -> None:
        view = memoryview(data).cast("B")
        self.length += len(view)
        while len(view):
            n = min(FRAME_SIZE - len(self._buf), len(view))
            self._buf += view[:n]
            view = view[n:]
            if len(self._buf) == FRAME_SIZE:
                self._submit()

    def _submit(self) -> None:
        chunk, self._buf = self._buf, bytearray()
        future = self._pool.submit(_compress, chunk) if self._pool is not None else None
        self._pending.append((future, chunk))
        while len(self._pending) > WORKERS:
            self._write_one()

    def _write_one(self) -> None:
        future, chunk = self._pending.popleft()
        frame = future.result() if future is not None else _compress(chunk)
        self._out.write(frame)
        self.index.append((len(frame), len(chunk), zlib.crc32(frame)))

    def close(self) -> int:
        """Write what is left, then the frame index and the frame count; the index's CRC-32."""
        try:
            if self._buf:
                self._submit()
            while self._pending:
                self._write_one()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
        tail = b"".join(FRAME_INDEX.pack(*entry) for entry in self.index) + struct.pack("<I", len(self.index))
        self._out.write(tail)
        return zlib.crc32(tail)


def frame_index(fd: int, section: _Section) -> list[tuple[int, int, int, int, int]]:
    """The frames of a zstd-frames section: (file offset, stored, decoded, CRC-32, decoded start)."""
    name, offset, stored = section.name, section.offset, section.stored
    if stored < 4:
        raise SnapshotError(offset, f"section {name!r} has no frame index")
    (count,) = struct.unpack("<I", os.pread(fd, 4, offset + stored - 4))
    index_at = offset + stored - 4 - count * FRAME_INDEX.size
    if index_at < offset:
        raise SnapshotError(offset + stored - 4, f"section {name!r} claims {count} frames, more than it holds")
    raw = os.pread(fd, count * FRAME_INDEX.size, index_at)
    if zlib.crc32(raw + struct.pack("<I", count)) != section.crc:
        raise SnapshotError(index_at, f"the frame index of section {name!r} fails its checksum: the file is damaged")
    frames: list[tuple[int, int, int, int, int]] = []
    at, start = offset, 0
    for k in range(count):
        frame_stored, decoded, crc = FRAME_INDEX.unpack_from(raw, k * FRAME_INDEX.size)
        frames.append((at, frame_stored, decoded, crc, start))
        at += frame_stored
        start += decoded
    if at != index_at or start != section.decoded:
        raise SnapshotError(index_at, f"section {name!r}: its frame index does not add up to the section")
    return frames


def _frame_bytes(fd: int, offset: int, stored: int, crc: int) -> bytes:
    data = os.pread(fd, stored, offset)
    if len(data) != stored or zlib.crc32(data) != crc:
        raise SnapshotError(offset, f"the frame at offset {offset} ({stored} bytes) fails its checksum: the file "
                                    "is damaged")
    return data


class DataSource:
    """Where a part reads back the bytes it put, in the same order.

    `fill(view)` asks for the next bytes to be in `view` by the time the section is finished: the
    frames are decompressed by a pool of threads straight into the memory that asked for them (guest
    RAM, flash), side by side. `read_into(view)` wants them at once (a store that copies them on)."""

    def __init__(self, fd: int, section: _Section) -> None:
        self._fd, self._section = fd, section
        self._frames = frame_index(fd, section)
        self._pool = ThreadPoolExecutor(WORKERS) if WORKERS > 1 else None
        self._jobs: list = []
        self._next = 0                       # the first frame not decoded yet
        self._pos = 0                        # decoded bytes given a place so far
        self._pending: list[memoryview] = []   # places for frame _next onwards (from its start to _pos)
        self._carry = memoryview(b"")        # the rest of a frame decoded at once, from _pos on

    def _frame_end(self, k: int) -> int:
        return self._frames[k][4] + self._frames[k][2]

    def _take(self, size: int) -> list[memoryview]:
        """The pending places of the next `size` decoded bytes, split where a frame ends."""
        out: list[memoryview] = []
        while size:
            view = self._pending[0]
            if len(view) <= size:
                out.append(self._pending.pop(0))
                size -= len(view)
            else:
                out.append(view[:size])
                self._pending[0] = view[size:]
                size = 0
        return out

    def _dispatch(self) -> None:
        while self._next < len(self._frames) and self._frame_end(self._next) <= self._pos:
            at, stored, decoded, crc, _start = self._frames[self._next]
            job = (_decompress_into, self._fd, at, stored, decoded, crc, self._take(decoded))
            self._jobs.append((self._pool.submit(*job) if self._pool is not None else job, at))
            self._next += 1

    def _place(self, view: memoryview) -> memoryview:
        """Copy what a frame decoded at once still holds into `view`; the rest of `view`."""
        n = min(len(self._carry), len(view))
        if n:
            view[:n] = self._carry[:n]
            self._carry = self._carry[n:]
            self._pos += n
        return view[n:]

    def _check(self, size: int) -> None:
        if self._pos + size > self._section.decoded:
            raise SnapshotError(self._section.offset, f"section {self._section.name!r} holds "
                                                      f"{self._section.decoded - self._pos} more bytes; the board "
                                                      f"state asks for {size}")

    def fill(self, view) -> None:
        view = memoryview(view).cast("B")
        self._check(len(view))
        view = self._place(view)
        if len(view):
            self._pending.append(view)
            self._pos += len(view)
            self._dispatch()

    def read_into(self, view) -> None:
        view = memoryview(view).cast("B")
        self._check(len(view))
        view = self._place(view)
        if len(view):
            self._pending.append(view)
            self._pos += len(view)
            self._dispatch()
            if self._pending:                # the frame holding the end of `view` goes on past it
                at, stored, decoded, crc, start = self._frames[self._next]
                data = memoryview(_decompress(self._fd, at, stored, decoded, crc))
                offset = 0
                for place in self._take(self._pos - start):
                    place[:] = data[offset:offset + len(place)]
                    offset += len(place)
                self._carry = data[offset:]
                self._next += 1
        self._wait()

    def _wait(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job, at in jobs:
            try:
                job.result() if self._pool is not None else job[0](*job[1:])
            except SnapshotError:
                raise
            except zstandard.ZstdError as exc:
                raise SnapshotError(at, f"section {self._section.name!r}: a frame does not decompress: "
                                        f"{exc}") from None
            except ValueError as exc:
                raise SnapshotError(at, f"section {self._section.name!r}: {exc}") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def finish(self) -> None:
        """Every byte asked for is in place; the section had no more and no fewer."""
        self._dispatch()
        self._wait()
        if self._pos != self._section.decoded or self._pending or len(self._carry):
            raise SnapshotError(self._section.offset, f"section {self._section.name!r} has "
                                                      f"{self._section.decoded - self._pos} bytes the board state "
                                                      "does not account for")


def _decompress_into(fd: int, offset: int, stored: int, decoded: int, crc: int, places: list[memoryview]) -> None:
    """Decompress one frame straight into `places` (decoded bytes in order); the frame must end
    there, its checksum checked."""
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    reader = dctx.stream_reader(_frame_bytes(fd, offset, stored, crc), read_across_frames=False)
    for place in places:
        pos = 0
        while pos < len(place):
            got = reader.readinto(place[pos:])
            if not got:
                raise ValueError(f"a frame decodes to fewer than its {decoded} bytes")
            pos += got
    if reader.read(1):
        raise ValueError(f"a frame decodes to more than its {decoded} bytes")


class SnapshotWriter:
    """Writes a snapshot file section by section; `close()` ends it. The file appears under its name
    only once complete (written beside it, then renamed), so a failed save leaves no half file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._tmp = f"{self.path}.tmp{os.getpid()}"
        self._f = open(self._tmp, "wb")   # noqa: SIM115 - closed by close() or abort()
        head = FILE_HEADER.pack(MAGIC, FORMAT_VERSION, 0)[:12]
        self._f.write(head + struct.pack("<I", zlib.crc32(head)))
        self.sizes: dict[str, tuple[int, int]] = {}    # name -> (stored, decoded) bytes

    def _header(self, name: str, codec: int, stored: int, decoded: int, crc: int) -> bytes:
        head = SECTION_HEADER.pack(name.encode(), codec, 0, stored, decoded, crc, 0)[:-4]
        return head + struct.pack("<I", zlib.crc32(head))

    def add(self, name: str, data: bytes, *, compress: bool = True) -> None:
        """One section from bytes in memory (the board's plain-data state, a kernel's own section)."""
        if len(name.encode()) > 16 or name == END_SECTION or name in self.sizes:
            raise ValueError(f"bad or repeated section name {name!r}")
        payload = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(data) if compress else data
        codec = CODEC_ZSTD if compress else CODEC_RAW
        self._f.write(self._header(name, codec, len(payload), len(data), zlib.crc32(payload)))
        self._f.write(payload)
        self.sizes[name] = (len(payload), len(data))

    def stream(self, name: str) -> _StreamSection:
        """A zstd section written through a DataSink while the parts save themselves."""
        return _StreamSection(self, name)

    def close(self) -> None:
        self._f.write(self._header(END_SECTION, CODEC_RAW, 0, 0, 0))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


class _StreamSection:
    def __init__(self, writer: SnapshotWriter, name: str) -> None:
        self.writer, self.name = writer, name

    def __enter__(self) -> DataSink:
        f = self.writer._f
        self._start = f.tell()
        f.write(bytes(SECTION_HEADER.size))             # filled in once the lengths are known
        self._counter = _CountingFile(f)
        self.sink = DataSink(self._counter)
        return self.sink

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            if self.sink._pool is not None:
                self.sink._pool.shutdown(cancel_futures=True)
            return
        index_crc = self.sink.close()
        f = self.writer._f
        end = f.tell()
        f.seek(self._start)
        f.write(self.writer._header(self.name, CODEC_ZSTD_FRAMES, self._counter.length, self.sink.length, index_crc))
        f.seek(end)
        self.writer.sizes[self.name] = (self._counter.length, self.sink.length)


class _Section:
    __slots__ = ("name", "codec", "stored", "decoded", "crc", "header_offset", "offset")

    def __init__(self, name: str, codec: int, stored: int, decoded: int, crc: int, header_offset: int) -> None:
        self.name, self.codec, self.stored, self.decoded, self.crc = name, codec, stored, decoded, crc
        self.header_offset, self.offset = header_offset, header_offset + SECTION_HEADER.size


class SnapshotReader:
    """An opened snapshot whose framing and checksums all hold (SnapshotError otherwise)."""

    def __init__(self, path: str | os.PathLike[str], *, deep: bool = False) -> None:
        """`deep`: read every frame of the page sections now, not as they are loaded (a load into a
        running machine must not find a damaged frame half-way)."""
        self.path = os.fspath(path)
        self._f = open(self.path, "rb")   # noqa: SIM115 - closed by close()
        try:
            self.sections = self._scan()
            self._verify(deep)
        except BaseException:
            self._f.close()
            raise

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan(self) -> dict[str, _Section]:
        f = self._f
        size = os.fstat(f.fileno()).st_size
        head = f.read(FILE_HEADER.size)
        if len(head) < FILE_HEADER.size or head[:8] != MAGIC:
            raise SnapshotError(0, f"not an armboard snapshot (it does not start with {MAGIC!r})")
        _magic, version, crc = FILE_HEADER.unpack(head)
        if crc != zlib.crc32(head[:12]):
            raise SnapshotError(8, "the file header fails its checksum: the file is damaged")
        if version != FORMAT_VERSION:
            raise SnapshotError(8, f"snapshot format version {version}; this armboard reads version {FORMAT_VERSION}")
        sections: dict[str, _Section] = {}
        pos = FILE_HEADER.size
        while True:
            raw = f.read(SECTION_HEADER.size)
            if len(raw) < SECTION_HEADER.size:
                where = "in a section header" if raw else "where a section header or the end marker belongs"
                raise SnapshotError(pos, f"the file ends {where} ({size} bytes): it is truncated")
            name_raw, codec, _flags, stored, decoded, crc, head_crc = SECTION_HEADER.unpack(raw)
            if head_crc != zlib.crc32(raw[:-4]):
                raise SnapshotError(pos, "a section header fails its checksum: the file is damaged")
            try:
                name = name_raw.rstrip(b"\0").decode("ascii")
            except UnicodeDecodeError:
                raise SnapshotError(pos, f"section name {name_raw!r} is not ASCII") from None
            if codec not in CODEC_NAMES:
                raise SnapshotError(pos + 16, f"section {name!r} has unknown codec {codec}")
            if name in sections:
                raise SnapshotError(pos, f"section {name!r} appears twice")
            section = _Section(name, codec, stored, decoded, crc, pos)
            if name == END_SECTION:
                if pos + SECTION_HEADER.size != size:
                    raise SnapshotError(pos + SECTION_HEADER.size,
                                        f"{size - pos - SECTION_HEADER.size} bytes follow the end of the snapshot")
                return sections
            if section.offset + stored > size:
                raise SnapshotError(size, f"the file ends inside section {name!r}, whose {stored} bytes start at "
                                          f"offset {section.offset}: it is truncated")
            sections[name] = section
            pos = section.offset + stored
            f.seek(pos)

    def _verify(self, deep: bool) -> None:
        fd = self._f.fileno()
        for section in self.sections.values():
            if section.codec == CODEC_ZSTD_FRAMES:
                frames = frame_index(fd, section)
                for at, stored, _decoded, crc, _start in frames if deep else ():
                    _frame_bytes(fd, at, stored, crc)
                continue
            self._f.seek(section.offset)
            crc, left = 0, section.stored
            while left:
                chunk = self._f.read(min(left, 4 * _COPY_CHUNK))
                crc = zlib.crc32(chunk, crc)
                left -= len(chunk)
            if crc != section.crc:
                raise SnapshotError(section.offset, f"section {section.name!r} (bytes {section.offset}-"
                                                    f"{section.offset + section.stored - 1}) fails its checksum "
                                                    f"(CRC-32 0x{crc:08x}, expected 0x{section.crc:08x}): "
                                                    "the file is damaged")

    def _section(self, name: str) -> _Section:
        try:
            return self.sections[name]
        except KeyError:
            raise SnapshotError(FILE_HEADER.size, f"the snapshot has no section {name!r} (it has: "
                                                  f"{', '.join(self.sections) or 'none'})") from None

    def read(self, name: str) -> bytes:
        """A whole section, decoded."""
        section = self._section(name)
        if section.codec == CODEC_ZSTD_FRAMES:
            raise SnapshotError(section.header_offset + 16, f"section {name!r} is read through source()")
        self._f.seek(section.offset)
        payload = self._f.read(section.stored)
        if section.codec == CODEC_RAW:
            return payload
        try:
            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=section.decoded)
        except zstandard.ZstdError as exc:
            raise SnapshotError(section.offset, f"section {name!r} does not decompress: {exc}") from None
        if len(data) != section.decoded:
            raise SnapshotError(section.offset, f"section {name!r} decodes to {len(data)} bytes, not {section.decoded}")
        return data

    def source(self, name: str) -> _SourceContext:
        """A DataSource over a zstd section, decompressed while the parts read it."""
        return _SourceContext(self, self._section(name))


class _SourceContext:
    def __init__(self, reader: SnapshotReader, section: _Section) -> None:
        self.reader, self.section = reader, section

    def __enter__(self) -> DataSource:
        if self.section.codec != CODEC_ZSTD_FRAMES:
            raise SnapshotError(self.section.header_offset + 16, f"section {self.section.name!r} is not made of "
                                                                 "zstd frames")
        self.data = DataSource(self.reader._f.fileno(), self.section)
        return self.data

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is None:
                self.data.finish()
        finally:
            self.data.close()


class _PlainData(pickle.Unpickler):
    """Loads the board's plain-data state: containers, numbers, strings and bytes, nothing else."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"the board state names {module}.{name}; it holds plain data only")


def dump_plain(state: object) -> bytes:
    return pickle.dumps(state, protocol=5)


def load_plain(data: bytes, offset: int, what: str) -> object:
    try:
        return _PlainData(io.BytesIO(data)).load()
    except Exception as exc:   # noqa: BLE001 - any failure of a foreign payload is a damaged file
        raise SnapshotError(offset, f"section {what!r} is not a board state: {exc}") from None


def save_machine(writer: SnapshotWriter, machine: Machine) -> None:
    """The machine's sections: its pages, then its state."""
    with writer.stream(PAGES_SECTION) as sink:
        state = machine.state(sink)
    writer.add(BOARD_SECTION, dump_plain(state))


def machine_state(reader: SnapshotReader) -> dict:
    state = load_plain(reader.read(BOARD_SECTION), reader._section(BOARD_SECTION).offset, BOARD_SECTION)
    if not isinstance(state, dict):
        raise SnapshotError(reader._section(BOARD_SECTION).offset, "the board section does not hold a board state")
    return state


def load_machine(reader: SnapshotReader, machine: Machine, state: dict | None = None, meanwhile=None):
    """Make `machine` the saved one. Everything that can refuse (the file's framing, the board, RAM
    size, regions, flash files) is checked before the first byte is loaded. `meanwhile()` runs while
    the pages are decompressed into place (the kernel's state loads then); its result is returned."""
    state = machine_state(reader) if state is None else state
    offset = reader._section(BOARD_SECTION).offset
    try:
        machine.check_state(state)
    except MachineStateError as exc:
        raise SnapshotError(offset, str(exc)) from None
    try:
        with reader.source(PAGES_SECTION) as source:
            machine.load_state(state, source)
            return meanwhile() if meanwhile is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(offset, f"the board state does not load: {exc}") from None
