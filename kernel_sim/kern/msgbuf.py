"""The kernel message buffer: FreeBSD's struct msgbuf and its ring, in guest pages mapped in KVA.

Why in guest memory: dmesg, /dev/kmem and a minidump must find the kernel's messages where FreeBSD
keeps them, so the ring and its header live in real guest pages, entered in the guest's own page
tables at the KVA the boot layout reserved for "message buffer (msgbuf)". The Python objects here
keep no copy of the state: every append reads the header from guest RAM and writes it back.

Layout as sys/kern/subr_msgbuf.c msgbufinit() leaves it on arm (initarm hands it a page-rounded area
from pmap_preboot_get_vpages): the ring occupies the area from its start, the struct msgbuf sits
in the last sizeof(struct msgbuf) bytes, and msg_size = area size - sizeof(struct msgbuf). So the
round_page(msg_size) bytes a minidump writes from msg_ptr (sys/arm/arm/minidump_machdep.c) carry
the header too, which is how `decode()` (used by the dump reader) recovers the text in order.

Appends follow msgbuf_addstr() with pri = -1 and carriage returns filtered, which is what printf's
putbuf() -> msglogstr() does (sys/kern/subr_prf.c): no "<pri>" prefixes, the checksum kept as
msgbuf_do_addchar() keeps it (sum of the ring's bytes, modulo 2**32).
"""

from __future__ import annotations

import struct
from collections import namedtuple
from typing import TYPE_CHECKING

from kernel_sim.guest.abi import PAGE_SIZE

if TYPE_CHECKING:
    from board.memory import PhysicalMemory
    from kernel_sim.vm.phys import PhysAllocator
    from kernel_sim.vm.pmap import KernelPmap

__all__ = ["MSG_MAGIC", "MSGBUF_SIZE", "SIZEOF_MSGBUF", "MsgBuf", "MsgBufHeader", "decode"]

MSG_MAGIC = 0x063062            # sys/sys/msgbuf.h
MSGBUF_SIZE = 32768 * 3         # sys/sys/msgbuf.h MSGBUF_SIZE (the msgbufsize default)
MSGBUF_NEEDNL = 0x01            # sys/sys/msgbuf.h
MSGBUF_WRAP = 0x02              # sys/sys/msgbuf.h
SEQMOD_FACTOR = 16              # sys/kern/subr_msgbuf.c SEQMOD(size) = size * 16
KVA_ROW = "message buffer (msgbuf)"   # kernel_sim/vm/kva_layout.py's boot row for initarm's msgbuf pages

# struct msgbuf on armv7 (ILP32): char *msg_ptr; u_int msg_magic, msg_size, msg_wseq, msg_rseq,
# msg_cksum, msg_seqmod; int msg_lastpri; u_int msg_flags; struct mtx msg_lock (sys/sys/msgbuf.h).
# struct mtx is a struct lock_object (lo_name, lo_flags, lo_data, lo_witness: 16 bytes) and
# mtx_lock (4 bytes) (sys/sys/_lock.h, sys/sys/_mutex.h): 20 bytes, left zero here.
_HEADER = struct.Struct("<IIIIIIIiI20x")
SIZEOF_MSGBUF = _HEADER.size    # 56
_MASK32 = 0xFFFFFFFF


class MsgBufHeader(namedtuple("MsgBufHeader",
                              "msg_ptr msg_magic msg_size msg_wseq msg_rseq msg_cksum msg_seqmod msg_lastpri "
                              "msg_flags")):
    """The fields of struct msgbuf, as read from guest memory or a dump."""

    __slots__ = ()

    msg_ptr: int
    msg_magic: int
    msg_size: int
    msg_wseq: int
    msg_rseq: int
    msg_cksum: int
    msg_seqmod: int
    msg_lastpri: int
    msg_flags: int

    @classmethod
    def unpack(cls, raw: bytes) -> MsgBufHeader:
        return cls(*_HEADER.unpack(raw[:SIZEOF_MSGBUF]))

    def pack(self) -> bytes:
        return _HEADER.pack(self.msg_ptr, self.msg_magic, self.msg_size, self.msg_wseq, self.msg_rseq,
                            self.msg_cksum, self.msg_seqmod, self.msg_lastpri, self.msg_flags)

    def first_seq(self) -> int:
        """msgbuf_peekbytes(NULL): where the oldest byte still in the ring starts."""
        if self.msg_flags & MSGBUF_WRAP:
            return (self.msg_wseq - self.msg_size) % self.msg_seqmod
        return 0


def _ordered(ring: bytes, hdr: MsgBufHeader) -> bytes:
    """The ring's bytes from the oldest to the newest (msgbuf_peekbytes until wseq)."""
    size = hdr.msg_size
    length = (hdr.msg_wseq - hdr.first_seq()) % hdr.msg_seqmod
    length = min(length, size)
    start = hdr.first_seq() % size
    if start + length <= size:
        return ring[start:start + length]
    return ring[start:] + ring[:start + length - size]


def decode(region: bytes, msg_size: int) -> tuple[MsgBufHeader | None, bytes]:
    """The header and the ordered text of a dumped message buffer area.

    `region` is what a minidump wrote from msg_ptr (round_page(msg_size) bytes). When the struct
    msgbuf is not where msgbufinit() puts it (wrong magic or size, or a checksum that does not
    match the ring), the header is None and the text is the ring with its NUL bytes dropped."""
    ring = region[:msg_size]
    tail = region[msg_size:msg_size + SIZEOF_MSGBUF]
    if len(tail) == SIZEOF_MSGBUF:
        hdr = MsgBufHeader.unpack(tail)
        if (hdr.msg_magic == MSG_MAGIC and hdr.msg_size == msg_size and hdr.msg_seqmod
                and hdr.msg_cksum == sum(ring) & _MASK32):
            return hdr, _ordered(ring, hdr)
    return None, ring.replace(b"\0", b"")


class MsgBuf:
    """The message buffer of a booted kernel: `append(text)` is printf's hook, `contents()` dmesg's."""

    def __init__(self, phys: PhysicalMemory, va: int, pages: list[int], area_size: int = MSGBUF_SIZE) -> None:
        if area_size % PAGE_SIZE or len(pages) != area_size // PAGE_SIZE:
            raise ValueError(f"msgbuf area of {area_size} bytes needs {area_size // PAGE_SIZE} whole pages")
        self.phys = phys
        self.va = va                       # msg_ptr: the ring's first byte
        self.pages = list(pages)           # the physical page behind each page of the area
        self.area_size = area_size
        self.msg_size = area_size - SIZEOF_MSGBUF
        self.header_va = va + self.msg_size

    # ------------------------------------------------------------------ construction
    @classmethod
    def allocate(cls, phys: PhysicalMemory, pages: PhysAllocator, pmap: KernelPmap, va: int,
                 area_size: int = MSGBUF_SIZE) -> MsgBuf:
        """initarm's msgbuf: zeroed pages from the allocator, entered at `va`, then msgbuf_init()."""
        pas = pages.alloc(area_size // PAGE_SIZE, zero=True)
        pmap.kenter_range(va, pas)
        mb = cls(phys, va, pas, area_size)
        mb._init()
        return mb

    @classmethod
    def for_startup(cls, startup) -> MsgBuf:
        """The message buffer of a kernel_sim Startup, at the KVA its boot layout reserved."""
        row = startup.kva.row(KVA_ROW)
        return cls.allocate(startup.pmap.phys, startup.pages, startup.pmap, row.start, row.size)

    def _init(self) -> None:
        """msgbuf_init(): clear the ring and write a fresh header."""
        hdr = MsgBufHeader(self.va, MSG_MAGIC, self.msg_size, 0, 0, 0, self.msg_size * SEQMOD_FACTOR, -1, 0)
        self._write_header(hdr)

    # ------------------------------------------------------------------ guest memory
    def _spans(self, offset: int, length: int):
        """(physical address, length) runs covering [offset, offset + length) of the area."""
        while length > 0:
            page, within = divmod(offset, PAGE_SIZE)
            n = min(length, PAGE_SIZE - within)
            yield self.pages[page] + within, n
            offset += n
            length -= n

    def _read(self, offset: int, length: int) -> bytes:
        return b"".join(self.phys.read(pa, n) for pa, n in self._spans(offset, length))

    def _write(self, offset: int, data: bytes) -> None:
        done = 0
        for pa, n in self._spans(offset, len(data)):
            self.phys.write(pa, data[done:done + n])
            done += n

    def header(self) -> MsgBufHeader:
        return MsgBufHeader.unpack(self._read(self.msg_size, SIZEOF_MSGBUF))

    def _write_header(self, hdr: MsgBufHeader) -> None:
        self._write(self.msg_size, hdr.pack())

    def area(self) -> bytes:
        """The whole area as a minidump writes it: the ring, then the struct msgbuf."""
        return self._read(0, self.area_size)

    # ------------------------------------------------------------------ printf and dmesg
    def append(self, text: str | bytes) -> None:
        """msgbuf_addstr(mbp, -1, text, 1): what the kernel's printf logs besides the console."""
        data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
        data = data.replace(b"\r", b"")
        if not data:
            return
        hdr = self.header()
        size = hdr.msg_size
        if len(data) > size:       # only the last msg_size bytes can survive; the sequence still advances
            skipped, data = len(data) - size, data[-size:]
        else:
            skipped = 0
        wseq = (hdr.msg_wseq + skipped) % hdr.msg_seqmod
        pos = wseq % size
        first = min(len(data), size - pos)
        old = self._read(pos, first) + self._read(0, len(data) - first)
        self._write(pos, data[:first])
        if len(data) > first:
            self._write(0, data[first:])
        cksum = (hdr.msg_cksum + sum(data) - sum(old)) & _MASK32
        wseq = (wseq + len(data)) % hdr.msg_seqmod
        flags = hdr.msg_flags | MSGBUF_NEEDNL if data[-1:] != b"\n" else hdr.msg_flags & ~MSGBUF_NEEDNL
        if hdr.msg_wseq + skipped + len(data) >= size or hdr.msg_flags & MSGBUF_WRAP:
            flags |= MSGBUF_WRAP
        self._write_header(MsgBufHeader(hdr.msg_ptr, hdr.msg_magic, size, wseq, hdr.msg_rseq, cksum,
                                        hdr.msg_seqmod, -1, flags))

    def contents(self) -> str:
        """Everything still in the ring, oldest first (what `dmesg` prints)."""
        hdr = self.header()
        return _ordered(self._read(0, self.msg_size), hdr).decode("utf-8", "replace")
