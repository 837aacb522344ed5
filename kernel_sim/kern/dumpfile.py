"""Reading a kernel dump offline, as kvm(3) reads an arm minidump (lib/libkvm/kvm_minidump_arm.c).

Why its own checks: a dump is user input. Every size in the headers is checked against the file
before it is used, and each problem is a DumpError that says what is wrong and where (the offset in
the file, or in the decompressed dump when it was compressed), so `armboard dump show` can print one
line and exit 2 instead of a traceback.

Accepted files: what MEM_KERNELDUMP writes (kernel_sim/kern/minidump.py: the dump, padding to the
block size, then the kerneldumpheader at the end, the dump compressed with gzip or zstd or not at
all), and a bare minidump (what savecore(8) leaves in vmcore.N: no kerneldumpheader).

Beyond kvm: every valid PTE whose page is dumpable must have its bitmap bit set (the writer builds
the bitmap from the same PTEs), so a bitmap or PTE section that does not belong to its header is
caught when the dump is opened, not when an address happens to be translated.
"""

from __future__ import annotations

import bisect
import mmap
import struct
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import check_input_file
from kernel_sim.guest.abi import PAGE_SIZE
from kernel_sim.kern import msgbuf as msgbuf_mod
from kernel_sim.kern.minidump import (
    COMPRESSIONS,
    KERNELDUMP_COMP_GZIP,
    KERNELDUMP_COMP_NONE,
    KERNELDUMP_COMP_ZSTD,
    KERNELDUMP_HEADER_SIZE,
    KERNELDUMPMAGIC,
    KERNELDUMPVERSION,
    MINIDUMP_MAGIC,
    MINIDUMP_MMU_FORMAT_UNKNOWN,
    MINIDUMP_MMU_FORMAT_V4,
    MINIDUMP_MMU_FORMAT_V6,
    MINIDUMP_VERSION,
    KernelDumpHeader,
    MinidumpHeader,
    dump_pages,
    kerneldump_parity,
    pte2_pa,
    round_page,
)

__all__ = ["Dump", "DumpError", "TranslateError", "Translation", "open_dump"]

CHUNK = 1 << 16                      # compressed bytes fed per step: the precision of a corruption's offset
ARCHITECTURES = ("armv7", "armv6", "arm")
MMU_NAMES = {0: "unknown", 1: "V4", 2: "V6", 3: "V6 LPAE"}
_BIT_POSITIONS = [tuple(b for b in range(8) if byte >> b & 1) for byte in range(256)]


class DumpError(Exception):
    """The file is not a readable dump: `what` is wrong at `offset` (`space` says in which bytes)."""

    def __init__(self, what: str, offset: int | None = None, space: str = "file") -> None:
        where = f" (at {space} offset {offset} = 0x{offset:x})" if offset is not None else ""
        super().__init__(f"{what}{where}")
        self.what = what
        self.offset = offset
        self.space = space


class TranslateError(Exception):
    """An address the dump cannot answer for (not mapped, not dumped)."""


@dataclass(frozen=True)
class Translation:
    va: int
    pte_index: int
    pte_offset: int          # where the PTE2 is in the dump
    pte: int
    pa: int
    page_offset: int         # where the page is in the dump (pa's byte included)


@dataclass
class Dump:
    """An opened, validated dump."""

    path: Path
    file_size: int
    kdh: KernelDumpHeader | None
    data: bytes | memoryview               # the minidump, decompressed
    hdr: MinidumpHeader
    offsets: dict[str, int]
    dump_avail: list[tuple[int, int]]
    bits: array                            # the set bitmap bits, ascending
    ptes: array                            # one PTE2 per page from kernbase
    msgbuf_header: msgbuf_mod.MsgBufHeader | None
    msgbuf_text: bytes
    _space: str = field(default="file", repr=False)

    # ------------------------------------------------------------------ pages
    @property
    def compression(self) -> int:
        return self.kdh.compression if self.kdh is not None else KERNELDUMP_COMP_NONE

    @property
    def npages(self) -> int:
        return len(self.bits)

    @property
    def kva_end(self) -> int:
        return self.hdr.kernbase + len(self.ptes) * PAGE_SIZE

    def _bit_of(self, pa: int) -> int | None:
        adj = 0
        for start, end in self.dump_avail:
            if start <= pa < end:
                return (pa >> 12) - (start >> 12) + adj
            adj += -(-end // PAGE_SIZE) - start // PAGE_SIZE
        return None

    def _pa_of(self, bit: int) -> int:
        for start, end in self.dump_avail:
            total = -(-end // PAGE_SIZE) - start // PAGE_SIZE
            if bit < total:
                return bit * PAGE_SIZE + (start & ~(PAGE_SIZE - 1))
            bit -= total
        raise ValueError(bit)

    def page_offset(self, pa: int) -> int | None:
        """_kvm_pt_find(): where the page holding pa is in the dump, or None if it was not dumped."""
        bit = self._bit_of(pa & ~(PAGE_SIZE - 1))
        if bit is None:
            return None
        i = bisect.bisect_left(self.bits, bit)
        if i == len(self.bits) or self.bits[i] != bit:
            return None
        return self.offsets["pages"] + i * PAGE_SIZE + (pa & (PAGE_SIZE - 1))

    def pa_runs(self) -> list[tuple[int, int]]:
        """The dumped physical memory as [start, end) runs."""
        runs: list[tuple[int, int]] = []
        for bit in self.bits:
            pa = self._pa_of(bit)
            if runs and runs[-1][1] == pa:
                runs[-1] = (runs[-1][0], pa + PAGE_SIZE)
            else:
                runs.append((pa, pa + PAGE_SIZE))
        return runs

    def kva_runs(self) -> list[tuple[int, int, int]]:
        """Mapped KVA as (va start, va end, pa start) runs with contiguous physical addresses."""
        runs: list[list[int]] = []
        kernbase = self.hdr.kernbase
        for i, pte in enumerate(self.ptes):
            va = kernbase + i * PAGE_SIZE
            pa = pte2_pa(pte, va)
            if pa is None:
                continue
            if runs and runs[-1][1] == va and runs[-1][2] + (va - runs[-1][0]) == pa:
                runs[-1][1] = va + PAGE_SIZE
            else:
                runs.append([va, va + PAGE_SIZE, pa])
        return [(a, b, c) for a, b, c in runs]

    # ------------------------------------------------------------------ kvm
    def translate(self, va: int) -> Translation:
        """_arm_minidump_kvatop(): va through the dumped PTEs to a page in the dump."""
        kernbase = self.hdr.kernbase
        if not kernbase <= va < self.kva_end:
            raise TranslateError(f"virtual address 0x{va:x} is not minidumped (the dump covers "
                                 f"0x{kernbase:08x}-0x{self.kva_end:08x})")
        index = (va - kernbase) >> 12
        pte = self.ptes[index]
        pte_offset = self.offsets["ptes"] + 4 * index
        pa_page = pte2_pa(pte, va)
        if pa_page is None:
            raise TranslateError(f"virtual address 0x{va:x}: PTE2 0x{pte:08x} (dump offset {pte_offset}) is not valid")
        pa = pa_page | (va & (PAGE_SIZE - 1))
        off = self.page_offset(pa)
        if off is None:
            raise TranslateError(f"virtual address 0x{va:x} maps physical address 0x{pa:x}, which is not in the dump")
        return Translation(va, index, pte_offset, pte, pa, off)

    def read_pa(self, pa: int, length: int) -> bytes:
        """Physical memory from the dump; TranslateError naming the first page that is not there."""
        out = bytearray()
        while length > 0:
            off = self.page_offset(pa)
            if off is None:
                raise TranslateError(f"physical address 0x{pa:x} is not in the dump")
            n = min(length, PAGE_SIZE - (pa & (PAGE_SIZE - 1)))
            out += self.data[off:off + n]
            pa += n
            length -= n
        return bytes(out)

    def read_va(self, va: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            t = self.translate(va)
            n = min(length, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            out += self.data[t.page_offset:t.page_offset + n]
            va += n
            length -= n
        return bytes(out)

    def msgbuf_contents(self) -> str:
        return self.msgbuf_text.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------- opening
def open_dump(path: str | Path) -> Dump:
    """Read and validate a dump file; DumpError says what is wrong and where (InputError when the path is
    not a regular file at all: checked on stat, before the open, so a FIFO or /dev/zero is never read)."""
    path = Path(path)
    check_input_file(path, what="dump")
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            raw: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {describe_host(exc)}") from None
    trailer = size >= KERNELDUMP_HEADER_SIZE and raw[size - KERNELDUMP_HEADER_SIZE:][:len(KERNELDUMPMAGIC) + 1] == (
        KERNELDUMPMAGIC + b"\0")
    # A bare minidump (savecore's vmcore: no header) is whole pages; 512 bytes more is a damaged header.
    if not trailer and raw[:len(MINIDUMP_MAGIC)] == MINIDUMP_MAGIC and size % PAGE_SIZE != KERNELDUMP_HEADER_SIZE:
        return _minidump(path, size, None, memoryview(raw), "file")
    kdh, kdh_off = _kerneldump_header(raw, size)
    stream = memoryview(raw)[:kdh.dumplength]
    if kdh.compression == KERNELDUMP_COMP_NONE:
        data, space = stream, "file"
    else:
        data, space = _decompress(stream, kdh.compression), "decompressed dump"
        if kdh.dumpextent and len(data) != kdh.dumpextent:
            raise DumpError(f"the {COMPRESSIONS[kdh.compression]} data decompresses to {len(data)} bytes but the "
                            f"header's dumpextent says {kdh.dumpextent}", kdh_off + 496)
    return _minidump(path, size, kdh, data, space)


def _kerneldump_header(raw, size: int) -> tuple[KernelDumpHeader, int]:
    if size < KERNELDUMP_HEADER_SIZE:
        raise DumpError(f"the file is {size} bytes: too short for a {KERNELDUMP_HEADER_SIZE}-byte kerneldumpheader "
                        "(truncated, or not a kernel dump)", 0)
    off = size - KERNELDUMP_HEADER_SIZE
    block = bytes(raw[off:size])
    if not block.startswith(KERNELDUMPMAGIC + b"\0"):
        found = block[:len(KERNELDUMPMAGIC)].split(b"\0", 1)[0]
        raise DumpError(f"no kerneldumpheader: the last {KERNELDUMP_HEADER_SIZE} bytes start with {found[:24]!r}, not "
                        f"{KERNELDUMPMAGIC.decode()!r} (wrong magic, or the file is truncated)", off)
    kdh = KernelDumpHeader.unpack(block)
    if kdh.version != KERNELDUMPVERSION:
        raise DumpError(f"unknown kerneldumpheader version {kdh.version} (armboard reads version {KERNELDUMPVERSION})",
                        off + 32)
    if kerneldump_parity(block):
        raise DumpError(f"kerneldumpheader parity mismatch (stored 0x{kdh.parity:08x}): the header is corrupt",
                        off + KERNELDUMP_HEADER_SIZE - 4)
    if kdh.architecture not in ARCHITECTURES:
        raise DumpError(f"the dump is for architecture {kdh.architecture!r}, not armv7", off + 20)
    if kdh.compression not in COMPRESSIONS:
        raise DumpError(f"unknown compression {kdh.compression} (0 none, 1 gzip, 2 zstd)", off + 495)
    if kdh.dumpkeysize:
        raise DumpError(f"the dump is encrypted (dumpkeysize {kdh.dumpkeysize}); armboard cannot read it", off + 56)
    if kdh.dumplength > off:
        raise DumpError(f"truncated: the header says the dump is {kdh.dumplength} bytes but only {off} bytes "
                        "precede the header", off + 40)
    block_size = kdh.blocksize or 1
    if block_size & (block_size - 1) or -(-kdh.dumplength // block_size) * block_size != off:
        raise DumpError(f"dumplength {kdh.dumplength} with blocksize {kdh.blocksize} puts the header at offset "
                        f"{-(-kdh.dumplength // block_size) * block_size}, but it is at {off} (extra or missing "
                        "bytes before the header)", off + 40)
    return kdh, off


def _decompress(stream: memoryview, compression: int) -> bytes:
    name = COMPRESSIONS[compression]
    if compression == KERNELDUMP_COMP_GZIP:
        obj = zlib.decompressobj(31)
        errors: tuple[type[BaseException], ...] = (zlib.error,)
    else:
        assert compression == KERNELDUMP_COMP_ZSTD
        import zstandard

        obj = zstandard.ZstdDecompressor().decompressobj()
        errors = (zstandard.ZstdError,)
    parts: list[bytes] = []
    pos = 0
    while pos < len(stream):
        chunk = stream[pos:pos + CHUNK]
        try:
            parts.append(obj.decompress(chunk))
        except errors as exc:
            raise DumpError(f"corrupt {name} data: {exc}", pos, "file") from None
        pos += len(chunk)
        if getattr(obj, "eof", False):
            break
    if not getattr(obj, "eof", False):
        raise DumpError(f"the {name} stream ends before its end mark: the compressed dump is truncated", len(stream))
    return b"".join(parts)


def _minidump(path: Path, file_size: int, kdh: KernelDumpHeader | None, data, space: str) -> Dump:
    size = len(data)
    if size < PAGE_SIZE:
        raise DumpError(f"truncated: the dump is {size} bytes, shorter than the minidump header page "
                        f"({PAGE_SIZE} bytes)", size, space)
    hdr = MinidumpHeader.unpack(bytes(data[:MinidumpHeader.SIZE]))
    magic = hdr.magic.split(b"\0", 1)[0]
    if magic != MINIDUMP_MAGIC:
        raise DumpError(f"not an arm minidump: magic {magic[:24]!r}, expected "
                        f"{MINIDUMP_MAGIC.decode()!r}", 0, space)
    if hdr.version not in (1, MINIDUMP_VERSION):
        raise DumpError(f"unknown minidump version {hdr.version} (armboard reads 1 and {MINIDUMP_VERSION})", 24, space)
    if hdr.mmuformat == MINIDUMP_MMU_FORMAT_UNKNOWN:    # kvm_minidump_arm.c: "a safe default"
        hdr = MinidumpHeader(hdr.magic, hdr.version, hdr.msgbufsize, hdr.bitmapsize, hdr.ptesize, hdr.kernbase,
                             hdr.arch, MINIDUMP_MMU_FORMAT_V6, hdr.dumpavailsize)
    if hdr.mmuformat not in (MINIDUMP_MMU_FORMAT_V4, MINIDUMP_MMU_FORMAT_V6):
        raise DumpError(f"MMU format {hdr.mmuformat} ({MMU_NAMES.get(hdr.mmuformat, '?')}) is not supported", 48, space)
    if hdr.version == 1:
        hdr = MinidumpHeader(hdr.magic, 1, hdr.msgbufsize, hdr.bitmapsize, hdr.ptesize, hdr.kernbase, hdr.arch,
                             hdr.mmuformat, 0)
    if hdr.ptesize % 4:
        raise DumpError(f"the PTE section size {hdr.ptesize} is not a whole number of 4-byte PTE2s", 36, space)
    if hdr.kernbase + hdr.ptesize // 4 * PAGE_SIZE > 1 << 32:
        raise DumpError(f"{hdr.ptesize // 4} PTEs from kernbase 0x{hdr.kernbase:x} run past the 32-bit address space",
                        36, space)
    offsets = hdr.section_offsets()
    for name, length, field_at in (("message buffer", hdr.msgbufsize, 28), ("dump_avail", hdr.dumpavailsize, 56),
                                   ("bitmap", hdr.bitmapsize, 32), ("PTE", hdr.ptesize, 36)):
        key = {"message buffer": "msgbuf", "dump_avail": "dump_avail", "bitmap": "bitmap", "PTE": "ptes"}[name]
        start = offsets[key]
        if start + round_page(length) > size:
            raise DumpError(f"truncated: the {name} section ({length} bytes at {space} offset {start}, from the "
                            f"header field at offset {field_at}) ends past the end of the dump ({size} bytes)",
                            field_at, space)
    avail = _dump_avail(data, offsets["dump_avail"], hdr, space)
    bitmap = bytes(data[offsets["bitmap"]:offsets["bitmap"] + hdr.bitmapsize])
    if not avail:      # version 1: the bitmap indexes physical pages from address 0
        avail = [(0, len(bitmap) * 8 * PAGE_SIZE)]
    span = dump_pages(avail)
    if hdr.bitmapsize * 8 < span:
        raise DumpError(f"the bitmap is {hdr.bitmapsize} bytes ({hdr.bitmapsize * 8} pages) but dump_avail spans "
                        f"{span} pages", 32, space)
    bits = array("l")
    for index, byte in enumerate(bitmap):
        if byte:
            base = index * 8
            bits.extend(base + b for b in _BIT_POSITIONS[byte])
    if bits and bits[-1] >= span:
        raise DumpError(f"the bitmap marks page {bits[-1]}, beyond the {span} pages of dump_avail",
                        offsets["bitmap"] + bits[-1] // 8, space)
    expected = offsets["pages"] + len(bits) * PAGE_SIZE
    if expected != size:
        have = size - offsets["pages"]
        what = "truncated: " if expected > size else ""
        raise DumpError(f"{what}the bitmap marks {len(bits)} pages ({len(bits) * PAGE_SIZE} bytes) but {have} bytes "
                        f"of page data follow the PTEs", offsets["pages"], space)
    ptes = array("I")
    ptes.frombytes(bytes(data[offsets["ptes"]:offsets["ptes"] + hdr.ptesize]))
    if ptes.itemsize != 4:
        raise RuntimeError("array('I') is not 32-bit on this host")
    dump = Dump(path, file_size, kdh, data, hdr, offsets, avail, bits, ptes, None, b"", space)
    _check_ptes(dump, space)
    region = bytes(data[offsets["msgbuf"]:offsets["msgbuf"] + round_page(hdr.msgbufsize)])
    dump.msgbuf_header, dump.msgbuf_text = msgbuf_mod.decode(region, hdr.msgbufsize)
    return dump


def _dump_avail(data, off: int, hdr: MinidumpHeader, space: str) -> list[tuple[int, int]]:
    avail: list[tuple[int, int]] = []
    for i in range(hdr.dumpavailsize // 16):
        start, end = struct.unpack_from("<QQ", data, off + 16 * i)
        if start == 0 and end == 0:
            break
        if end <= start or (avail and start < avail[-1][1]):
            raise DumpError(f"dump_avail entry {i} (0x{start:x}-0x{end:x}) is empty or out of order", off + 16 * i,
                            space)
        avail.append((start, end))
    return avail


def _check_ptes(dump: Dump, space: str) -> None:
    """Every valid PTE of a dumpable page must have its page in the dump."""
    kernbase = dump.hdr.kernbase
    bits = set(dump.bits)
    for i, pte in enumerate(dump.ptes):
        if not pte:
            continue
        va = kernbase + i * PAGE_SIZE
        pa = pte2_pa(pte, va)
        if pa is None:
            continue
        bit = dump._bit_of(pa)
        if bit is not None and bit not in bits:
            raise DumpError(f"the PTE of 0x{va:08x} maps physical 0x{pa:x}, a RAM page the bitmap does not mark: the "
                            "PTE section and the bitmap do not belong together", dump.offsets["ptes"] + 4 * i, space)
