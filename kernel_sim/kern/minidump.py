"""Live minidumps in FreeBSD's arm format, written from the guest's own memory and page tables.

Why the real format: a dump taken here should read with the tools people know (kvm(3) readers, and
`armboard dump show`, kernel_sim/kern/dumpfile.py, which follows lib/libkvm/kvm_minidump_arm.c), and
what it holds is what the machine holds: the pages the guest's tables map from KERNBASE to
kernel_vm_end, found by walking those tables as pmap_dump_kextract() does.

The file is what livedump_start() (sys/kern/kern_vnodedumper.c) writes for MEM_KERNELDUMP: the dump
from offset 0 (through the compressor when one is asked for), zero-padded to the block size
(PAGE_SIZE), then the 512-byte kerneldumpheader. The dump itself (sys/arm/arm/minidump_machdep.c,
sys/arm/include/minidump.h, MINIDUMP_VERSION 2):

    one page     struct minidumphdr
    msgbuf       round_page(msgbufsize) bytes from msg_ptr
    dump_avail   one page of u64 (start, end) pairs, zero-terminated
    bitmap       round_page(BITSET_SIZE(vm_page_dump_pages)): one bit per page of dump_avail
    PTEs         one u32 PTE2 per page from KERNBASE to kernel_vm_end (sections synthesized)
    pages        every page whose bit is set, in bit order

Choices (FreeBSD says otherwise or nothing):
* The PTE section is zero-padded to a page boundary. minidump_machdep.c writes ptesize bytes unpadded
  but kvm_minidump_arm.c places the pages at round_page(ptesize); with kernel_vm_end a multiple of
  1 MiB (not 4 MiB) the two disagree, so the padding is what a reader needs. dumplength counts it.
* dump_avail is every RAM region on the bus (RAM and file-backed RAM), merged: what initarm's
  physmem code reports for a board without NODUMP exclusions.
* The progress line is FreeBSD 11/12's blk_write(): " N" (MB still to write) every 4 MiB.
* dumptime is the kernel's virtual clock (armboard is deterministic: the same machine, the same dump).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE
from kernel_sim.kern.sysapi import E2BIG, EINVAL, ENOSPC, SysError
from kernel_sim.vm.phys import dump_avail_of

if TYPE_CHECKING:
    from board.memory import PhysicalMemory

__all__ = [
    "KERNELDUMP_COMP_GZIP", "KERNELDUMP_COMP_NONE", "KERNELDUMP_COMP_ZSTD", "COMPRESSIONS",
    "DumpResult", "DumpSource", "KernelDumpHeader", "MinidumpHeader", "bitmap_index", "dump_avail_of",
    "kernel_ptes", "minidumpsys", "pte2_pa",
]

# sys/arm/include/minidump.h
MINIDUMP_MAGIC = b"minidump FreeBSD/arm"
MINIDUMP_VERSION = 2
MINIDUMP_MMU_FORMAT_UNKNOWN, MINIDUMP_MMU_FORMAT_V4, MINIDUMP_MMU_FORMAT_V6, MINIDUMP_MMU_FORMAT_V6_LPAE = 0, 1, 2, 3
ARM_ARCH = 7                                      # __ARM_ARCH of an armv7 kernel
# sys/sys/kerneldump.h
KERNELDUMPMAGIC = b"FreeBSD Kernel Dump"
KERNELDUMPVERSION = 4
KERNELDUMP_ARM_VERSION = 1
KERNELDUMP_COMP_NONE, KERNELDUMP_COMP_GZIP, KERNELDUMP_COMP_ZSTD = 0, 1, 2
COMPRESSIONS = {KERNELDUMP_COMP_NONE: "none", KERNELDUMP_COMP_GZIP: "gzip", KERNELDUMP_COMP_ZSTD: "zstd"}
MACHINE_ARCH = b"armv7"                           # sys/arm/include/param.h MACHINE_ARCH for armv7
KERNELDUMP_HEADER_SIZE = 512                      # sys/arm/arm/minidump_machdep.c CTASSERT
DUMP_BLOCKSIZE = PAGE_SIZE                        # sys/kern/kern_vnodedumper.c: di.blocksize = PAGE_SIZE
DUMP_AVAIL_SIZE = PAGE_SIZE                       # minidump_machdep.c writes dump_avail as one page
KERNELDUMP_GZLEVEL = 6                            # sys/kern/kern_shutdown.c kerneldump_gzlevel default
PROGRESS_EVERY = 1 << 22                          # minidump_machdep.c (11/12): counter >> 22

# PTE bits (sys/arm/include/pte-v6.h): ATTR_TO_L2 turns a section's attributes into a PTE2's.
L1_TYPE_MASK, L1_TYPE_C, L1_TYPE_S = 0x3, 0x1, 0x2
L1_S_SUPERSEC = 0x00040000
_ATTR_TO_L2 = (           # (PTE1 bit, PTE2 bit)
    (0x1000, 0x040),      # L1_S_TEX0 -> L2_TEX0
    (0x0008, 0x008),      # L1_S_C -> L2_C
    (0x0004, 0x004),      # L1_S_B -> L2_B
    (0x0400, 0x010),      # PTE1_A -> PTE2_A
    (0x8000, 0x200),      # PTE1_NM -> PTE2_NM
    (0x10000, 0x400),     # PTE1_S -> PTE2_S
    (0x20000, 0x800),     # PTE1_NG -> PTE2_NG
    (0x0010, 0x001),      # PTE1_NX -> PTE2_NX
    (0x2000, 0x080),      # PTE1_RO -> PTE2_RO
    (0x0800, 0x020),      # PTE1_U -> PTE2_U
    (0x4000, 0x100),      # PTE1_W -> PTE2_W
)
PTE2_V = 0x002
L2_TYPE_MASK, L2_TYPE_L = 0x3, 0x1
L2_S_FRAME, L2_L_FRAME = 0xFFFFF000, 0xFFFF0000


def _roundup(x: int, m: int) -> int:
    return -(-x // m) * m


def round_page(x: int) -> int:
    return _roundup(x, PAGE_SIZE)


def attr_to_l2(pte1: int) -> int:
    """ATTR_TO_L2(): the PTE2 attribute bits a section's PTE1 stands for."""
    return sum(l2 for l1, l2 in _ATTR_TO_L2 if pte1 & l1)


def pte2_pa(pte2: int, va: int) -> int | None:
    """The page frame a dumped PTE2 maps va to (64 KiB pages as kvm does), None when invalid."""
    kind = pte2 & L2_TYPE_MASK
    if kind == 0:
        return None
    if kind == L2_TYPE_L:
        return (pte2 & L2_L_FRAME) + (va & 0xFFFF & L2_S_FRAME)
    return pte2 & L2_S_FRAME


# ---------------------------------------------------------------------------------------------- formats
_MDHDR = struct.Struct("<24s8I")


@dataclass(frozen=True)
class MinidumpHeader:
    """struct minidumphdr (sys/arm/include/minidump.h), little-endian like the kernel that wrote it."""

    magic: bytes
    version: int
    msgbufsize: int
    bitmapsize: int
    ptesize: int
    kernbase: int
    arch: int
    mmuformat: int
    dumpavailsize: int

    SIZE = _MDHDR.size

    def pack(self) -> bytes:
        return _MDHDR.pack(self.magic, self.version, self.msgbufsize, self.bitmapsize, self.ptesize,
                           self.kernbase, self.arch, self.mmuformat, self.dumpavailsize)

    @classmethod
    def unpack(cls, raw: bytes) -> MinidumpHeader:
        return cls(*_MDHDR.unpack_from(raw))

    def section_offsets(self) -> dict[str, int]:
        """Where each section starts in the dump (kvm_minidump_arm.c's arithmetic)."""
        msgbuf = PAGE_SIZE
        avail = msgbuf + round_page(self.msgbufsize)
        bitmap = avail + round_page(self.dumpavailsize)
        ptes = bitmap + round_page(self.bitmapsize)
        pages = ptes + round_page(self.ptesize)
        return {"msgbuf": msgbuf, "dump_avail": avail, "bitmap": bitmap, "ptes": ptes, "pages": pages}


# struct kerneldumpheader (sys/sys/kerneldump.h): big-endian ("dump byte order") fields.
_KDH = struct.Struct(">20s12sIIQQII64s192s175sBQ4sI")
assert _KDH.size == KERNELDUMP_HEADER_SIZE


def kerneldump_parity(raw: bytes) -> int:
    """kerneldump_parity(): XOR of the header's 32-bit words (endian-insensitive)."""
    words = struct.unpack(f"<{len(raw) // 4}I", raw)
    parity = 0
    for w in words:
        parity ^= w
    return parity


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class KernelDumpHeader:
    """struct kerneldumpheader, version 4."""

    magic: str
    architecture: str
    version: int
    architectureversion: int
    dumplength: int
    dumptime: int
    dumpkeysize: int
    blocksize: int
    hostname: str
    versionstring: str
    panicstring: str
    compression: int
    dumpextent: int
    parity: int = 0

    def pack(self) -> bytes:
        fields = (self.magic.encode(), self.architecture.encode(), self.version, self.architectureversion,
                  self.dumplength, self.dumptime, self.dumpkeysize, self.blocksize,
                  self.hostname.encode()[:63], self.versionstring.encode()[:191], self.panicstring.encode()[:174],
                  self.compression, self.dumpextent, b"", 0)
        raw = _KDH.pack(*fields)
        parity = kerneldump_parity(raw)
        return raw[:-4] + struct.pack("<I", parity)   # the parity word makes the XOR of all words 0

    @classmethod
    def unpack(cls, raw: bytes) -> KernelDumpHeader:
        (magic, arch, version, archver, length, dumptime, keysize, blocksize, host, vers, panic, comp, extent,
         _unused, _parity) = _KDH.unpack(raw)
        parity = struct.unpack_from("<I", raw, KERNELDUMP_HEADER_SIZE - 4)[0]
        return cls(_cstr(magic), _cstr(arch), version, archver, length, dumptime, keysize, blocksize,
                   _cstr(host), _cstr(vers), _cstr(panic), comp, extent, parity)


# ---------------------------------------------------------------------------------------------- the walk
def dump_pages(avail: list[tuple[int, int]]) -> int:
    """vm_page_dump_pages (sys/vm/vm_page.c): pages the dump_avail ranges span."""
    return sum(_roundup(end, PAGE_SIZE) // PAGE_SIZE - start // PAGE_SIZE for start, end in avail)


def bitmap_index(avail: list[tuple[int, int]], pa: int) -> int | None:
    """vm_page_dump_add()'s bit for pa (sys/vm/vm_dumpset.h), or None when pa is not dumpable."""
    adj = 0
    for start, end in avail:
        if start <= pa < end:
            return (pa >> 12) - (start >> 12) + adj
        adj += _roundup(end, PAGE_SIZE) // PAGE_SIZE - start // PAGE_SIZE
    return None


def bitmap_pa(avail: list[tuple[int, int]], bit: int) -> int | None:
    """vm_page_dump_index_to_pa(): the page a bit stands for."""
    for start, end in avail:
        total = _roundup(end, PAGE_SIZE) // PAGE_SIZE - start // PAGE_SIZE
        if bit < total:
            return bit * PAGE_SIZE + (start & ~(PAGE_SIZE - 1))
        bit -= total
    return None


def kernel_ptes(phys: PhysicalMemory, kern_pt1: int, kern_pt2tab: int, end: int) -> list[int]:
    """pmap_dump_kextract()'s PTE2 for every page from KERNBASE to `end`: the PT2 entry read through
    PT2TAB for a linked MiB, a synthesized PTE2 for a section, 0 where nothing is mapped."""
    l1 = struct.unpack("<4096I", phys.read(kern_pt1, 16384))
    tab = struct.unpack("<1024I", phys.read(kern_pt2tab, 4096))
    out: list[int] = []
    va = KERNBASE
    while va < end:
        count = min((end - va) // PAGE_SIZE, (0x100000 - (va & 0xFFFFF)) // PAGE_SIZE)
        pte1 = l1[va >> 20]
        kind = pte1 & L1_TYPE_MASK
        if kind in (L1_TYPE_S, L1_TYPE_S | 1):
            base = (pte1 & 0xFF000000) | (va & 0x00F00000) if pte1 & L1_S_SUPERSEC else pte1 & 0xFFF00000
            attrs = attr_to_l2(pte1) | PTE2_V
            first = (va & 0xFFFFF) // PAGE_SIZE
            out.extend((base + (first + i) * PAGE_SIZE) | attrs for i in range(count))
        elif kind == L1_TYPE_C and tab[va >> 22] & PTE2_V:
            pt2pg = tab[va >> 22] & L2_S_FRAME
            index = (va >> 12) & 0x3FF
            out.extend(struct.unpack(f"<{count}I", phys.read(pt2pg + 4 * index, 4 * count)))
        else:
            out.extend([0] * count)
        va += count * PAGE_SIZE
    return out


# ---------------------------------------------------------------------------------------------- writing
class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


@dataclass
class DumpSource:
    """What a dump reads from the running kernel."""

    phys: PhysicalMemory
    kern_pt1: int
    kern_pt2tab: int
    kernel_vm_end: int
    dump_avail: list[tuple[int, int]]
    msgbuf_area: bytes             # round_page(msg_size) bytes from msg_ptr
    msgbuf_size: int               # msg_size
    physmem: int                   # bytes, for "Physical memory: N MB"
    version: str = ""
    hostname: str = ""
    panicstring: str = ""
    dumptime: int = 0


@dataclass
class DumpResult:
    dumpsize: int                  # bytes of the minidump before compression
    dumplength: int                # bytes written before the header (compressed size when compressed)
    pages: int                     # pages of memory in the dump
    ptesize: int
    compression: int
    header: KernelDumpHeader
    file_size: int = 0
    console: list[str] = field(default_factory=list)


class _Out:
    """The dump stream: straight to the sink or through a compressor, in large writes."""

    CHUNK = 1 << 20

    def __init__(self, sink: Sink, compression: int, level: int) -> None:
        self.sink = sink
        self.written = 0
        self._buf: list[bytes] = []
        self._buffered = 0
        if compression == KERNELDUMP_COMP_GZIP:
            self._comp = zlib.compressobj(level, zlib.DEFLATED, 31)          # gzip wrapper, as gzio writes
        elif compression == KERNELDUMP_COMP_ZSTD:
            import zstandard

            # sys/kern/subr_compressor.c zstdio_init: ZSTD_c_checksumFlag 1, content size unknown
            self._comp = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
        else:
            self._comp = None

    def write(self, data: bytes | memoryview) -> None:
        if self._comp is not None:
            data = self._comp.compress(data)
            if not data:
                return
        self._emit(data)

    def _emit(self, data: bytes | memoryview) -> None:
        if len(data) >= self.CHUNK and not self._buf:
            self._sink_write(data)
            return
        self._buf.append(bytes(data))
        self._buffered += len(data)
        if self._buffered >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._sink_write(b"".join(self._buf))
            self._buf.clear()
            self._buffered = 0

    def _sink_write(self, data: bytes | memoryview) -> None:
        n = self.sink.write(data)
        self.written += len(data) if n is None else n

    def finish(self) -> int:
        """Flush the compressor; returns the bytes of dump written (the dumplength)."""
        if self._comp is not None:
            tail = self._comp.flush()
            if tail:
                self._emit(tail)
        self.flush()
        return self.written


def _phys_views(phys: PhysicalMemory, pa: int, length: int) -> Iterator[memoryview]:
    """Zero-copy views of guest RAM (the host mappings behind the bus)."""
    while length > 0:
        r = phys.find(pa)
        if r is None:
            from board.memory import PhysicalAbort

            raise PhysicalAbort(pa)
        n = min(length, r.end - pa)
        yield memoryview(r.host)[pa - r.base:pa - r.base + n]
        pa += n
        length -= n


def minidumpsys(sink: Sink, src: DumpSource, compression: int = KERNELDUMP_COMP_NONE, *,
                level: int | None = None, printf: Callable[[str], None] | None = None) -> DumpResult:
    """Write a live minidump and its trailing kerneldumpheader to `sink`.

    Raises SysError(EINVAL) for an unknown compression before writing anything; a SysError from the
    sink (ENOSPC on a full file system) is printed as FreeBSD prints a failed dump and re-raised."""
    if compression not in COMPRESSIONS:
        raise SysError(EINVAL, f"kernel dump compression {compression} is not supported")
    say = printf or (lambda _text: None)
    console: list[str] = []

    def log(text: str) -> None:
        console.append(text)
        say(text)

    level = KERNELDUMP_GZLEVEL if level is None else level
    avail = src.dump_avail
    kva_end = src.kernel_vm_end
    ptes = kernel_ptes(src.phys, src.kern_pt1, src.kern_pt2tab, kva_end)
    npages_avail = dump_pages(avail)
    bitmap = bytearray(_roundup(npages_avail, 32) // 8)          # BITSET_SIZE: 32-bit longs on arm
    va = KERNBASE
    for pte in ptes:
        pa = pte2_pa(pte, va)
        if pa is not None:
            bit = bitmap_index(avail, pa)
            if bit is not None:
                bitmap[bit >> 3] |= 1 << (bit & 7)
        va += PAGE_SIZE
    ptesize = 4 * len(ptes)
    npages = sum(b.bit_count() for b in bitmap)
    hdr = MinidumpHeader(MINIDUMP_MAGIC, MINIDUMP_VERSION, src.msgbuf_size, round_page(len(bitmap)), ptesize,
                         KERNBASE, ARM_ARCH, MINIDUMP_MMU_FORMAT_V6, DUMP_AVAIL_SIZE)
    dumpsize = (PAGE_SIZE + round_page(src.msgbuf_size) + DUMP_AVAIL_SIZE + round_page(len(bitmap))
                + round_page(ptesize) + npages * PAGE_SIZE)
    log(f"Physical memory: {src.physmem // 1048576} MB\n")
    log(f"Dumping {dumpsize >> 20} MB:")
    out = _Out(sink, compression, level)
    progress = [dumpsize, 0]               # bytes still to write, counter since the last progress figure

    def put(data: bytes | memoryview) -> None:
        out.write(data)
        progress[0] -= len(data)
        progress[1] += len(data)
        if progress[1] >> 22:
            log(f" {(progress[0] // PAGE_SIZE + 255) >> 8}")        # PG2MB(progress >> PAGE_SHIFT)
            progress[1] &= PROGRESS_EVERY - 1

    try:
        put(hdr.pack().ljust(PAGE_SIZE, b"\0"))
        put(bytes(src.msgbuf_area[:round_page(src.msgbuf_size)]).ljust(round_page(src.msgbuf_size), b"\0"))
        put(b"".join(struct.pack("<QQ", s, e) for s, e in avail).ljust(DUMP_AVAIL_SIZE, b"\0"))
        put(bytes(bitmap).ljust(round_page(len(bitmap)), b"\0"))
        put(struct.pack(f"<{len(ptes)}I", *ptes).ljust(round_page(ptesize), b"\0"))
        for pa, length in _runs(bitmap, avail):
            for view in _phys_views(src.phys, pa, length):
                put(view)
        dumplength = out.finish()
        pad = _roundup(dumplength, DUMP_BLOCKSIZE) - dumplength
        if pad:
            out.sink.write(bytes(pad))
        kdh = KernelDumpHeader(KERNELDUMPMAGIC.decode(), MACHINE_ARCH.decode(), KERNELDUMPVERSION,
                               KERNELDUMP_ARM_VERSION, dumplength, src.dumptime, 0, DUMP_BLOCKSIZE,
                               src.hostname, src.version, src.panicstring, compression, dumpsize)
        out.sink.write(kdh.pack())
    except SysError as exc:
        if exc.errno in (E2BIG, ENOSPC):
            log(f"\nDump failed. Partition too small (about {dumpsize >> 20}MB were needed this time).\n")
        else:
            log(f"\n** DUMP FAILED (ERROR {exc.errno}) **\n")
        raise
    log("\nDump complete\n")
    packed = KernelDumpHeader.unpack(kdh.pack())
    return DumpResult(dumpsize, dumplength, npages, ptesize, compression, packed,
                      dumplength + pad + KERNELDUMP_HEADER_SIZE, console)


def _runs(bitmap: bytearray, avail: list[tuple[int, int]], limit: int = 1 << 20) -> Iterator[tuple[int, int]]:
    """Physically contiguous runs of dumped pages, in bit order, at most `limit` bytes each."""
    start = length = 0
    for byte_index, byte in enumerate(bitmap):
        if not byte:
            continue
        for b in range(8):
            if not byte >> b & 1:
                continue
            pa = bitmap_pa(avail, byte_index * 8 + b)
            assert pa is not None
            if length and pa == start + length and length < limit:
                length += PAGE_SIZE
                continue
            if length:
                yield start, length
            start, length = pa, PAGE_SIZE
    if length:
        yield start, length
