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

Codecs: 0 raw, 1 zstd (one frame, with its content checksum). The "board" section holds the
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
import zlib

import zstandard  # only a boot that saves or restores imports this module

from .machine import Machine, MachineStateError

MAGIC = b"\x89ARMSNAP"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<8sII")
SECTION_HEADER = struct.Struct("<16sIIQQII")
CODEC_RAW, CODEC_ZSTD = 0, 1
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_ZSTD: "zstd"}
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

    def flush(self) -> None:
        self.f.flush()


class DataSink:
    """Where a part puts the bytes of its state (pages, store contents) while the snapshot is written:
    straight into the compressor, no copy of the whole."""

    def __init__(self, writer) -> None:
        self._writer = writer
        self.length = 0

    def put(self, data) -> None:
        self._writer.write(data)
        self.length += len(memoryview(data).cast("B"))


class DataSource:
    """Where a part reads back the bytes it put, in the same order, straight into its memory."""

    def __init__(self, reader, length: int, offset: int) -> None:
        self._reader, self._left, self._offset = reader, length, offset

    def read_into(self, view) -> None:
        view = memoryview(view).cast("B")
        if len(view) > self._left:
            raise SnapshotError(self._offset, f"section {PAGES_SECTION!r} holds {self._left} more bytes; the board "
                                              f"state asks for {len(view)}")
        pos = 0
        while pos < len(view):
            got = self._reader.readinto(view[pos:pos + _COPY_CHUNK])
            if not got:
                raise SnapshotError(self._offset, f"section {PAGES_SECTION!r} ends early")
            pos += got
        self._left -= len(view)

    def finish(self) -> None:
        if self._left:
            raise SnapshotError(self._offset, f"section {PAGES_SECTION!r} has {self._left} bytes the board state "
                                              "does not account for")


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
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        self._zw = cctx.stream_writer(self._counter, closefd=False)
        self.sink = DataSink(self._zw)
        return self.sink

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            return
        self._zw.flush(zstandard.FLUSH_FRAME)
        self._zw.close()
        f = self.writer._f
        end = f.tell()
        f.seek(self._start)
        f.write(self.writer._header(self.name, CODEC_ZSTD, self._counter.length, self.sink.length, self._counter.crc))
        f.seek(end)
        self.writer.sizes[self.name] = (self._counter.length, self.sink.length)


class _Section:
    __slots__ = ("name", "codec", "stored", "decoded", "crc", "header_offset", "offset")

    def __init__(self, name: str, codec: int, stored: int, decoded: int, crc: int, header_offset: int) -> None:
        self.name, self.codec, self.stored, self.decoded, self.crc = name, codec, stored, decoded, crc
        self.header_offset, self.offset = header_offset, header_offset + SECTION_HEADER.size


class SnapshotReader:
    """An opened snapshot whose framing and checksums all hold (SnapshotError otherwise)."""

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        self.path = os.fspath(path)
        self._f = open(self.path, "rb")   # noqa: SIM115 - closed by close()
        try:
            self.sections = self._scan()
            if verify:
                self._verify()
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

    def _verify(self) -> None:
        for section in self.sections.values():
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
        f = self.reader._f
        f.seek(self.section.offset)
        limited = io.BufferedReader(_Window(f, self.section.stored), 4 * _COPY_CHUNK)
        self._zr = zstandard.ZstdDecompressor().stream_reader(limited, read_across_frames=False)
        self.data = DataSource(self._zr, self.section.decoded, self.section.offset)
        return self.data

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is None:
                self.data.finish()
        finally:
            self._zr.close()

    def wrap(self, exc: Exception) -> SnapshotError:
        return SnapshotError(self.section.offset, f"section {self.section.name!r} does not decompress: {exc}")


class _Window(io.RawIOBase):
    """`length` bytes of a file from its current position, as a raw stream."""

    def __init__(self, f, length: int) -> None:
        self.f, self.left = f, length

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        got = self.f.readinto(memoryview(b)[:n])
        self.left -= got
        return got


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


def load_machine(reader: SnapshotReader, machine: Machine, state: dict | None = None) -> None:
    """Make `machine` the saved one. Everything that can refuse (the file's framing, the board, RAM
    size, regions, flash files) is checked before the first byte is loaded."""
    state = machine_state(reader) if state is None else state
    offset = reader._section(BOARD_SECTION).offset
    try:
        machine.check_state(state)
    except MachineStateError as exc:
        raise SnapshotError(offset, str(exc)) from None
    context = reader.source(PAGES_SECTION)
    try:
        with context as source:
            machine.load_state(state, source)
    except zstandard.ZstdError as exc:
        raise context.wrap(exc) from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(offset, f"the board state does not load: {exc}") from None
