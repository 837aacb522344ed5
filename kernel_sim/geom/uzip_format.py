"""The cloop image format read by GEOM's UZIP and UNCOMPRESS classes and written by mkuzip(8).

Layout (sys/geom/uzip/g_uzip_cloop.h, usr.bin/mkuzip/mkuzip.c): a 128-byte text "magic" that is also a
shell script (it starts "#!/bin/sh\\n"; byte 0x0b names the compressor, byte 0x0c the major version),
big-endian u32 block size and u32 block count, then nblocks+1 big-endian u64 file offsets, then the
compressed clusters. The provider the kernel publishes is nblocks * blksz bytes with 512-byte sectors.

Reading follows the kernel, not a friendlier idea of the format, so that the synthetic kernel accepts
and refuses exactly what FreeBSD does:

* ``parse_header`` makes g_uzip_taste's checks in its order (sys/geom/uzip/g_uzip.c) or, with
  ``flavour="uncompress"``, g_uncompress_taste's (sys/geom/uncompress/g_uncompress.c), and for UZIP the
  table-of-contents massage of g_uzip_parse_toc: block lengths, zero blocks, dedup back-references.
* ``CloopImage.read_block`` decompresses as the kernel's decompressors do (g_uzip_zlib.c,
  g_uzip_lzma.c, g_uzip_zstd.c): into a buffer of exactly blksz bytes, failing when the data does
  not end within it.

Errors are ``CloopError`` with the errno FreeBSD would report (numbers from sys/sys/errno.h):

* ``EFTYPE`` (79): not a cloop image for this class: "no CLOOP magic", "unsupported image type",
  "image version too old". The kernel's taste just returns NULL; EFTYPE is what a caller reports.
* ``EINVAL`` (22): a cloop image with impossible geometry or table: block size, "media too small for
  %u blocks", offsets before the table or past the media, a back-reference that matches no block.
* ``EIO`` (5): the backing store could not be read (the read callback raised OSError or came back
  short), a request past the media (g_io_check), and every decompression failure under UNCOMPRESS.
* ``EILSEQ`` (86): a UZIP cluster whose compressed data is corrupt (g_uzip_do sets bio_error = EILSEQ).

Where FreeBSD misbehaves on hostile input we stay safe and say so where it happens: no 32-bit wrap of
the table size, no out-of-bounds table reads, no buffer overrun, no KASSERT panic; and where its code
contradicts its own comment (the zero-padded last cluster in g_uzip_do) we follow the comment.

Writing (``write_image``) produces mkuzip's format with its defaults: 16 KiB clusters, zlib level 9
("#V2.0"), lzma/xz ("#L3.0", level 6) or zstd level 9 with checksums ("#Z4.0"), all-zero clusters
stored as zero-length blocks unless ``zero_detect`` is off (-Z), MD5 dedup with back-references (-d,
lowercase compressor letter, zlib bumped to version 3), output padded to 512 bytes. It differs from
mkuzip only where the kernel reads the result the same: the last cluster is padded with zeros to
blksz; the nblocks+1'th offset always holds the end of the data; the zlib window and the xz
dictionary are sized to the cluster (faster, output within 0.01%); and an xz cluster larger than
g_uzip_lzma.c accepts is an error here rather than an image the kernel refuses.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import threading
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import BinaryIO

# hashlib, lzma, queue, shutil, tempfile and zstandard are imported where needed: `armboard mkuzip` is
# timed against a C tool, and a zlib image needs none of them.

# sys/geom/uzip/g_uzip_cloop.h
CLOOP_MAGIC_LEN = 128
CLOOP_OFS_COMPR = 0x0B
CLOOP_OFS_VERSN = CLOOP_OFS_COMPR + 1
CLOOP_MINVER_RELIABLE_LASTBLKSZ = ord("4")
# struct cloop_header: magic, u32 blksz, u32 nblocks
HEADER = struct.Struct(">II")
HEADER_SIZE = CLOOP_MAGIC_LEN + HEADER.size            # 136
CLOOP_MAGIC_START = b"#!/bin/sh\n"                    # sys/geom/uzip/g_uzip.c
DEV_BSIZE = 512                                       # sys/sys/param.h
MAXPHYS = 128 * 1024                                  # sys/sys/param.h (FreeBSD 11/12; MAX_BLKSZ in g_uzip.c)
BLEN_UNDEF = 0xFFFFFFFF                               # sys/geom/uzip/g_uzip.c struct g_uzip_blk
DEFAULT_CLSTSIZE = 16384                              # usr.bin/mkuzip/mkuzip.c
MAX_WORKERS_AUTO = 24                                 # usr.bin/mkuzip/mkuzip.h

# FreeBSD errno values (sys/sys/errno.h): not Linux's, EFTYPE does not exist there.
FREEBSD_ERRNO = {"EIO": 5, "EINVAL": 22, "EFTYPE": 79, "EILSEQ": 86}

# Compressor letters (g_uzip_cloop.h CLOOP_COMP_*) and the minimum major version of each
# (CLOOP_MINVER_ZLIB '2', CLOOP_MINVER_LZMA '3', CLOOP_MINVER_ZSTD '4').
COMPRESSOR_LETTER = {"zlib": "V", "lzma": "L", "zstd": "Z"}
LETTER_COMPRESSOR = {v: k for k, v in COMPRESSOR_LETTER.items()}
MIN_VERSION = {"zlib": "2", "lzma": "3", "zstd": "4"}
# usr.bin/mkuzip/mkuz_{zlib,lzma,zstd}.h DEFAULT_SUFX_*
SUFFIX = {"zlib": ".uzip", "lzma": ".ulzma", "zstd": ".uzst"}
# Default levels: mkuz_zlib.c Z_BEST_COMPRESSION, mkuz_lzma.c LZMA_PRESET_DEFAULT, mkuz_zstd.c 9.
DEFAULT_LEVEL = {"zlib": 9, "lzma": 6, "zstd": 9}
ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL = -(1 << 17), 22       # zstd.h ZSTD_minCLevel() (ZSTD_TARGETLENGTH_MAX), max

# Our own magic text: the same prefixes as mkuzip ("#!/bin/sh\n#V2.0 Format\n", "#!/bin/sh\n#L3.0\n",
# "#!/bin/sh\n#Z4.0 Format\n"), then a script that attaches and mounts the image on FreeBSD.
_MOUNT = b"m=geom_uzip\n(kldstat -qm g_uzip||kldload $m)>&-&&mount_cd9660 /dev/`mdconfig -af $0`.uzip $1\nexit $?\n"
MAGIC_TEXT = {
    "zlib": b"#!/bin/sh\n#V2.0 Format\n" + _MOUNT,
    "lzma": b"#!/bin/sh\n#L3.0\n" + _MOUNT,
    "zstd": b"#!/bin/sh\n#Z4.0 Format\n" + _MOUNT,
}
assert all(len(m) < CLOOP_MAGIC_LEN for m in MAGIC_TEXT.values())   # mkuzip asserts the same (strlcpy)

_ZSTD_FEED = 128   # zstd input fed per step while decompressing: bounds the output of a hostile frame


class CloopError(Exception):
    """A cloop image the kernel refuses or a cluster it cannot read, with FreeBSD's errno."""

    def __init__(self, message: str, errno_name: str) -> None:
        super().__init__(message)
        self.message = message
        self.errno_name = errno_name
        self.errno = FREEBSD_ERRNO[errno_name]

    def __str__(self) -> str:
        return f"{self.message} ({self.errno_name})"


# ---------------------------------------------------------------------------------------------------
# compression bounds


def zlib_compress_bound(n: int) -> int:
    """zlib's compressBound() (zlib/compress.c): g_uzip_zlib.c max_blen and mkuzip's buffer size."""
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


def zstd_compress_bound(n: int) -> int:
    """ZSTD_compressBound() (zstd/lib/zstd.h ZSTD_COMPRESSBOUND)."""
    return n + (n >> 8) + (((128 << 10) - n) >> 11 if n < (128 << 10) else 0)


def lz4_compress_bound(n: int) -> int:
    """The LZ4_compressBound() g_uzip_lzma.c uses as max_blen for xz clusters."""
    return n + n // 255 + 16


def lzma_stream_buffer_bound(n: int) -> int:
    """liblzma lzma_stream_buffer_bound(): mkuzip's bound for an xz cluster (mkuz_lzma.c)."""
    chunks = (n + (1 << 16) - 1) >> 16                # LZMA2_CHUNK_MAX
    block = ((n + chunks * 3 + 1 + 3) & ~3) + 1024 + 64   # + LZMA_BLOCK_HEADER_SIZE_MAX + LZMA_CHECK_SIZE_MAX
    return block + 2 * 12 + 24                        # + 2 * LZMA_STREAM_HEADER_SIZE + INDEX_BOUND


def kernel_max_blen(compressor: str, blksz: int) -> int:
    """The largest compressed cluster the kernel accepts (g_uzip_dapi max_blen of each decompressor)."""
    if compressor == "zlib":
        return zlib_compress_bound(blksz)
    if compressor == "lzma":
        return lz4_compress_bound(blksz)
    return zstd_compress_bound(blksz)


def mkuzip_compress_bound(compressor: str, blksz: int) -> int:
    """mkuzip's f_compress_bound: the cluster size it checks against MAXPHYS."""
    if compressor == "zlib":
        return zlib_compress_bound(blksz)
    if compressor == "lzma":
        return lzma_stream_buffer_bound(blksz)
    return zstd_compress_bound(blksz)


# ---------------------------------------------------------------------------------------------------
# reading


Reader = Callable[[int, int], bytes]


def table_entry(k: int) -> str:
    """Entry k of the offsets table and its place in the image, for messages about a damaged table."""
    return f"offsets table entry {k} at byte {HEADER_SIZE + 8 * k}"


def _read_exact(read: Reader, offset: int, length: int, what: str) -> bytes:
    """read(offset, length) or EIO: the backing provider failed or came back short."""
    try:
        data = read(offset, length)
    except OSError as exc:
        raise CloopError(f"cannot read {what} at offset {offset}: {exc.strerror or exc}", "EIO") from None
    if len(data) != length:
        raise CloopError(f"short read of {what}: {len(data)} of {length} bytes at offset {offset}", "EIO")
    return bytes(data)


class CloopImage:
    """A tasted image: geometry, the kernel's view of every cluster, and reads through it.

    ``version`` is the major version character ('2', '3', '4'), ``dedup`` whether the compressor
    letter is lowercase, ``media_size`` the size of the provider the image was tasted on. ``offsets``
    is the nblocks+1 table as stored in the image. ``blens`` (UZIP only) is each cluster's compressed
    length as g_uzip_parse_toc computed it; ``last`` the cluster it flagged as the last one holding
    data (a failed decompression of it that is all zero bytes reads as zeros).
    """

    def __init__(self, *, flavour: str, compressor: str, version: str, dedup: bool, blksz: int, nblocks: int,
                 offsets: array, media_size: int, log: Callable[[str], None] | None = None) -> None:
        self.flavour, self.compressor, self.version, self.dedup = flavour, compressor, version, dedup
        self.blksz, self.nblocks, self.offsets, self.media_size = blksz, nblocks, offsets, media_size
        self.blens: array | None = None
        self.last = -1
        self.log = log
        self._cache_blk = -1                        # the kernel's last_blk / last_buf
        self._cache_buf = b""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"CloopImage({self.flavour}, {self.compressor} v{self.version}{' dedup' if self.dedup else ''}, "
                f"{self.nblocks} x {self.blksz})")

    @property
    def mediasize(self) -> int:
        """The provider's size: (off_t)sc->nblocks * sc->blksz."""
        return self.nblocks * self.blksz

    @property
    def sectorsize(self) -> int:
        return DEV_BSIZE

    def provider_name(self, base: str) -> str:
        """The geom and provider name: "%s.uzip" (GUZ_DEV_NAME) or "%s.uncompress"."""
        return f"{base}.{self.flavour}"

    def block_extent(self, i: int) -> tuple[int, int]:
        """(file offset, compressed length) of cluster i; length 0 is an all-zero cluster.

        UZIP: the length g_uzip_parse_toc found (next larger offset - this one; a back-reference takes
        the length of the earlier cluster at the same offset). UNCOMPRESS: offsets[i+1] - offsets[i],
        which may be negative in a hostile image (read_block refuses it).
        """
        if not 0 <= i < self.nblocks:
            raise CloopError(f"cluster #{i} out of range (0..{self.nblocks - 1})", "EINVAL")
        if self.blens is not None:
            return self.offsets[i], self.blens[i]
        return self.offsets[i], self.offsets[i + 1] - self.offsets[i]

    def _bad_extent(self, i: int, offset: int, length: int) -> str:
        """Which offsets-table entry puts cluster i outside the media, and where that entry is."""
        media = f"the media ({self.media_size} bytes)"
        if offset >= self.media_size or self.blens is not None:
            return f"{table_entry(i)} says its compressed data starts at {offset}, past {media}"
        end = offset + length
        if length < 0:
            return f"{table_entry(i + 1)} says its compressed data ends at {end}, before it starts at {offset}"
        return f"{table_entry(i + 1)} says its compressed data ends at {end}, past {media}"

    def _fail(self, i: int, message: str, *, console: str | None = None) -> CloopError:
        if console and self.log:
            self.log(console)
        errno_name = "EILSEQ" if self.flavour == "uzip" else "EIO"
        return CloopError(f"cluster #{i}: {message}", errno_name)

    def read_block(self, i: int, read: Reader) -> bytes:
        """The blksz bytes of cluster i, decompressed as the kernel does, or CloopError."""
        offset, length = self.block_extent(i)
        if length == 0:
            return bytes(self.blksz)
        if length < 0 or offset + length > self.media_size:
            # UNCOMPRESS only: g_io_check refuses a read past the media, and a negative length would
            # have the kernel inflate from past its buffer
            raise self._fail(i, self._bad_extent(i, offset, length))
        data = _read_exact(read, offset, length, f"cluster #{i}")
        try:
            out = _DECOMPRESS[self.compressor](data, self.blksz)
        except _Corrupt as exc:
            if self.flavour == "uzip" and i == self.last and data.count(0) == len(data):
                # g_uzip_do: "Last block decompression has failed, check if it's just zero padding."
                # FreeBSD's test is inverted (g_uzip_memvcmp(...) == 0 takes non-zero data as padding);
                # we follow its stated intent, so zero padding reads as zeros and garbage as EILSEQ.
                return bytes(self.blksz)
            raise self._fail(i, str(exc), console=_console_message(self.flavour, self.compressor, exc)) from None
        if len(out) < self.blksz:
            if self.compressor == "zstd" and self.flavour == "uzip":
                # guz_zstd_decompress KASSERTs rc == blksz: a panic with INVARIANTS, stale data without
                raise self._fail(i, f"Expected {self.blksz} bytes, got {len(out)}")
            # zlib/xz: the kernel copies from last_buf whatever an earlier cluster left there; we use zeros
            out += bytes(self.blksz - len(out))
        return out

    def read(self, offset: int, length: int, read: Reader) -> bytes:
        """Bytes [offset, offset+length) of the provider, with g_io_check's rules for the range.

        A negative offset or length is EINVAL, an offset past the media EIO; a range that runs past
        the end is cut short there (the kernel completes a bio truncated to the media).
        """
        if offset < 0 or length < 0:
            raise CloopError(f"invalid request: offset {offset}, length {length}", "EINVAL")
        if offset > self.mediasize:
            raise CloopError(f"offset {offset} past the media ({self.mediasize} bytes)", "EIO")
        length = min(length, self.mediasize - offset)
        if length == 0:
            return b""
        parts = []
        pos, end = offset, offset + length
        while pos < end:
            blk, within = divmod(pos, self.blksz)
            take = min(self.blksz - within, end - pos)
            parts.append(self._cached_block(blk, read)[within:within + take])
            pos += take
        return b"".join(parts)

    def _cached_block(self, blk: int, read: Reader) -> bytes:
        with self._lock:
            if blk == self._cache_blk:
                return self._cache_buf
        data = self.read_block(blk, read)
        with self._lock:
            self._cache_blk, self._cache_buf = blk, data
        return data

    def iter_blocks(self, read: Reader) -> Iterator[bytes]:
        """Every cluster in order (what extract_compressed_fs would write)."""
        for i in range(self.nblocks):
            yield self.read_block(i, read)


def _console_message(flavour: str, compressor: str, exc: Exception) -> str | None:
    """The printf the kernel's decompressor makes on failure (without the geom name), if any."""
    if flavour == "uncompress":
        # g_uncompress_done: a printf for zlib, only a DPRINTF for xz
        return "UZIP decoder reset failed" if compressor == "zlib" else None
    if compressor == "zlib":
        return "UZIP(zlib) inflate() failed"                    # g_uzip_zlib.c
    if compressor == "zstd":
        return f"UZIP(zstd) decompress failed: {exc}"           # g_uzip_zstd.c (ZSTD_getErrorName)
    # g_uzip_lzma.c prints the xz_buf positions and pointers under its function name; no pointers here
    return f"g_uzip_lzma_decompress: xz_dec_run() failed: {exc}"


def parse_header(read: Reader, media_size: int, *, sector_size: int = DEV_BSIZE, flavour: str = "uzip",
                 log: Callable[[str], None] | None = None) -> CloopImage:
    """Taste a provider of media_size bytes as g_uzip_taste / g_uncompress_taste do.

    ``read(offset, length)`` reads the backing provider. ``log`` receives the lines the kernel prints
    on the console (without the "<geom name>: " prefix), such as "block size (%u) should be multiple
    of 512." or "GEOM_UZIP image found"; debug-only messages (DPRINTF) are not logged but are the
    CloopError's message. Raises CloopError (see the module docstring for the errnos).
    """
    if flavour not in ("uzip", "uncompress"):
        raise ValueError(f"flavour must be 'uzip' or 'uncompress', not {flavour!r}")
    say = log or (lambda line: None)
    # the kernel reads the first sector (UNCOMPRESS: roundup(sizeof(struct cloop_header), sectorsize))
    head = _read_exact(read, 0, min(max(sector_size, HEADER_SIZE), max(media_size, 0)), "the cloop header")
    if not head.startswith(CLOOP_MAGIC_START):
        raise CloopError("no CLOOP magic", "EFTYPE")
    if len(head) < HEADER_SIZE:
        raise CloopError(f"media too small for a cloop header ({media_size} bytes)", "EIO")
    letter, version = chr(head[CLOOP_OFS_COMPR]), chr(head[CLOOP_OFS_VERSN])
    # UZIP: CLOOP_COMP_{LIBZ,LZMA,ZSTD} and their _DDP (lowercase) forms; UNCOMPRESS: 'L' and 'V' only
    letters = "VvLlZz" if flavour == "uzip" else "VL"
    compressor = LETTER_COMPRESSOR[letter.upper()] if letter in letters else None
    if compressor is None:
        raise CloopError("unsupported image type", "EFTYPE")
    # armv7's char is unsigned, so a byte >= 0x80 compares above '2'
    if head[CLOOP_OFS_VERSN] < ord(MIN_VERSION[compressor]):
        raise CloopError("image version too old", "EFTYPE")
    if flavour == "uncompress":
        say("GEOM_ULZMA image found" if compressor == "lzma" else "GEOM_UZIP image found")
    blksz, nblocks = HEADER.unpack_from(head, CLOOP_MAGIC_LEN)
    multiple = DEV_BSIZE if flavour == "uzip" else 4
    if blksz % multiple != 0:
        msg = f"block size ({blksz}) should be multiple of {multiple}."
        say(msg)
        raise CloopError(msg, "EINVAL")
    if blksz > MAXPHYS:
        say(f"block size ({blksz}) should not be larger than {MAXPHYS}.")
    # The kernel computes this in 32 bits (total_offsets is a uint32_t, size_t is 32-bit on armv7), so
    # nblocks = 0xffffffff or >= 2**29 wraps and passes; we do the arithmetic exactly and refuse.
    total_offsets = nblocks + 1
    if HEADER_SIZE + total_offsets * 8 > media_size:
        msg = f"media too small for {nblocks} blocks"
        say(msg)
        raise CloopError(msg, "EINVAL")
    table = _read_exact(read, HEADER_SIZE, total_offsets * 8, "the block offsets")
    offsets = array("Q")
    offsets.frombytes(table)
    if offsets.itemsize != 8:                 # pragma: no cover - 'Q' is 8 bytes on every CPython we run
        raise RuntimeError("array('Q') is not 64-bit")
    if _LITTLE:
        offsets.byteswap()
    image = CloopImage(flavour=flavour, compressor=compressor, version=version, dedup=letter.islower(),
                       blksz=blksz, nblocks=nblocks, offsets=offsets, media_size=media_size, log=log)
    if flavour == "uzip":
        _parse_toc(image)
    return image


_LITTLE = array("H", [1]).tobytes()[0] == 1


def _parse_toc(image: CloopImage) -> None:
    """g_uzip_taste's last-offset rule and g_uzip_parse_toc: every cluster's length, or EINVAL."""
    n, media = image.nblocks, image.media_size
    toc = array("Q", image.offsets)           # the kernel's copy, whose last entry it may replace
    # "The last+1 block was not always initialized by earlier versions of mkuzip(8)": trusted from
    # version '4' on when nonzero, otherwise the end of the media.
    if ord(image.version) >= CLOOP_MINVER_RELIABLE_LASTBLKSZ and toc[n] != 0:
        if toc[n] > media:
            raise CloopError(f"bogus n+1 offset {toc[n]} > mediasize {media}", "EINVAL")
    else:
        toc[n] = media
    # nxt[j]: the first k > j with toc[k] > toc[j] (n+1 if none), so "seek forward until we hit a block
    # whose offset is larger than max_offset" skips runs of back-references in amortised O(1).
    nxt = array("Q", bytes(8 * (n + 1)))
    stack: list[int] = []
    for k in range(n, -1, -1):
        while stack and toc[stack[-1]] <= toc[k]:
            stack.pop()
        nxt[k] = stack[-1] if stack else n + 1
        stack.append(k)
    del stack
    blens = array("Q", bytes(8 * n))
    first_at: dict[int, int] = {}             # offset -> first non-empty cluster there (backref targets)
    min_offset = HEADER_SIZE + (n + 1) * 8
    max_offset = toc[0] - 1 if n else 0
    last = 0
    for i in range(n):
        off = toc[i]
        if off < min_offset or off > media:
            raise CloopError(f"cluster #{i}: invalid offset {off}, min_offset={min_offset} mediasize={media}",
                             "EINVAL")
        if off < max_offset:
            # a back-reference: the earlier non-empty cluster at the same offset gives the length.
            # (FreeBSD's loop also "matches" cluster i itself, leaving BLEN_UNDEF for the max_blen
            # check to refuse; the outcome, a TOC error, is the same.)
            j = first_at.get(off)
            if j is None:
                raise CloopError(f"cannot match backref'ed offset at cluster #{i}", "EINVAL")
            blens[i] = blens[j]
        else:
            last = i
            j = i + 1
            while j <= n and toc[j] <= max_offset:
                j = nxt[j]
            if j > n:
                # FreeBSD reads toc[nblocks + 1] here, past its allocation
                raise CloopError(f"cluster #{i}: no offset after it ends the cluster", "EINVAL")
            blen = (toc[j] - off) & 0xFFFFFFFF      # toc[].blen is a uint32_t
            if off + blen > media:
                raise CloopError(f"cluster #{i} extends past media boundary ({off + blen} > {media})", "EINVAL")
            blens[i] = blen
            max_offset = off + blen - 1
        if blens[i] != 0 and off not in first_at:
            first_at[off] = i
    max_blen = kernel_max_blen(image.compressor, image.blksz)
    for i in range(n):
        if blens[i] > max_blen:
            if i != last:
                raise CloopError(f"cluster #{i} length ({blens[i]}) exceeds max_blen ({max_blen})", "EINVAL")
            blens[i] = max_blen                 # "extra padding is detected, trimmed" (a DPRINTF)
    image.blens = blens
    image.last = last if n else -1


class _Corrupt(Exception):
    """Decompression failed: the caller turns it into EILSEQ (UZIP) or EIO (UNCOMPRESS)."""


def _inflate(data: bytes, cap: int) -> bytes:
    """inflate(Z_FINISH) into cap bytes must reach Z_STREAM_END (g_uzip_zlib_decompress).

    One byte more than cap is asked for (zlib's max_length 0 would mean "no limit"): getting it
    means the cluster does not fit, as Z_BUF_ERROR does in the kernel.
    """
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, cap + 1)
        if len(out) > cap:
            raise _Corrupt(f"inflates to more than {cap} bytes")
        if not d.eof:
            raise _Corrupt("inflate() did not reach the end of the stream")
    except zlib.error as exc:
        raise _Corrupt(f"inflate() failed: {exc}") from None
    return out


def _unxz(data: bytes, cap: int) -> bytes:
    """xz_dec_run(XZ_SINGLE) with out_size = cap must reach XZ_STREAM_END (g_uzip_lzma_decompress)."""
    import lzma

    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = d.decompress(data, cap + 1)
        if len(out) > cap:
            raise _Corrupt(f"decompresses to more than {cap} bytes")
        if not d.eof:
            raise _Corrupt("xz stream does not end")
    except (lzma.LZMAError, MemoryError) as exc:
        raise _Corrupt(f"xz data error: {exc}") from None
    return out


def _unzstd(data: bytes, cap: int) -> bytes:
    """ZSTD_decompressDCtx into cap bytes: every frame complete, nothing after the last one.

    Input goes in small steps so a hostile frame (RLE blocks, a huge declared size) cannot make us
    produce more than a few MiB before we notice it exceeds the cluster.
    """
    zstandard = _zstd_module()
    dctx = zstandard.ZstdDecompressor()
    out = bytearray()
    pos = 0
    try:
        if not data:
            raise _Corrupt("no zstd frame")
        while pos < len(data):
            obj = dctx.decompressobj()
            while not obj.eof:
                if pos >= len(data):
                    raise _Corrupt("truncated zstd frame")
                chunk = data[pos:pos + _ZSTD_FEED]
                pos += len(chunk)
                out += obj.decompress(chunk)
                if len(out) > cap:
                    raise _Corrupt(f"decompresses to more than {cap} bytes")
            pos -= len(obj.unused_data)
    except zstandard.ZstdError as exc:
        raise _Corrupt(str(exc)) from None
    return bytes(out)


_DECOMPRESS: dict[str, Callable[[bytes, int], bytes]] = {"zlib": _inflate, "lzma": _unxz, "zstd": _unzstd}


def _zstd_module(*, writing: bool = False):
    """The zstandard package (a dependency; Python 3.11 has no zstd of its own)."""
    try:
        import zstandard
    except ImportError:                         # pragma: no cover - zstandard is a dependency
        if writing:
            raise ValueError("zstd needs the 'zstandard' Python package (pip install zstandard)") from None
        raise CloopError("zstd images need the 'zstandard' Python package", "EIO") from None
    return zstandard


def file_reader(path: Path | str) -> tuple[Reader, int]:
    """A read(offset, length) over a file and its size (tools and tests; opens the file per read)."""
    path = Path(path)

    def read(offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            return os.pread(f.fileno(), length, offset)
    return read, path.stat().st_size


def open_image(path: Path | str, *, flavour: str = "uzip") -> tuple[CloopImage, Reader]:
    """Taste an image file: the image and the reader to pass to its read methods."""
    read, size = file_reader(path)
    return parse_header(read, size, flavour=flavour), read


# ---------------------------------------------------------------------------------------------------
# writing (mkuzip)


class WriteStats:
    """What write_image did: mkuzip -v's figures.

    ``data_end`` is where the data ends (header, table and clusters: mkuzip's "compressed data to"),
    ``output_size`` the file's size once padded to 512; ``zero_blocks`` the all-zero clusters stored
    without data, ``dedup_blocks`` the clusters stored as back-references.
    """

    def __init__(self, *, input_size: int, blksz: int, nblocks: int, compressor: str, level: int,
                 magic: bytes) -> None:
        self.input_size, self.blksz, self.nblocks = input_size, blksz, nblocks
        self.compressor, self.level, self.magic = compressor, level, magic
        self.data_end = self.output_size = self.zero_blocks = self.dedup_blocks = 0

    def __repr__(self) -> str:
        return (f"WriteStats({self.compressor}-{self.level}, {self.input_size} -> {self.output_size} bytes, "
                f"{self.nblocks} x {self.blksz}, {self.zero_blocks} zero, {self.dedup_blocks} dedup)")


def check_params(compressor: str, level: int | None, cluster: int) -> int:
    """mkuzip's option checks, with its messages: the compression level to use, or ValueError."""
    if compressor not in COMPRESSOR_LETTER:
        raise ValueError(f"invalid algorithm specified: {compressor}")
    if cluster <= 0:
        raise ValueError(f"invalid cluster size specified: {cluster}")
    if cluster % DEV_BSIZE != 0:
        raise ValueError(f"cluster size should be multiple of {DEV_BSIZE}")
    bound = mkuzip_compress_bound(compressor, cluster)
    if bound > MAXPHYS:
        raise ValueError(f"maximal compressed cluster size {bound} greater than MAXPHYS {MAXPHYS}")
    if level is None:
        return DEFAULT_LEVEL[compressor]
    if compressor == "zlib":
        ok = 1 <= level <= 9                    # Z_BEST_SPEED .. Z_BEST_COMPRESSION
    elif compressor == "lzma":
        ok = 0 <= level <= 9
    else:
        ok = ZSTD_MIN_LEVEL <= level <= ZSTD_MAX_LEVEL and level != 0
    if not ok:
        raise ValueError(f"provided compression level {level} is invalid")
    return level


def magic_for(compressor: str, dedup: bool) -> bytes:
    """The 128-byte magic: mkuzip's text; dedup lowercases the letter and lifts version 2 to 3."""
    text = bytearray(MAGIC_TEXT[compressor])
    if dedup:
        if text[CLOOP_OFS_VERSN] == ord("2"):
            text[CLOOP_OFS_VERSN] = ord("3")
        text[CLOOP_OFS_COMPR] = ord(chr(text[CLOOP_OFS_COMPR]).lower())
    return bytes(text).ljust(CLOOP_MAGIC_LEN, b"\0")


def _compressor(compressor: str, level: int, cluster: int) -> Callable[[bytes], bytes]:
    """A thread-safe function compressing one cluster as mkuzip's f_compress does."""
    if compressor == "zlib":
        # compress2() (mkuz_zlib.c): the zlib format at the level. The window is sized to the cluster
        # (windowBits 14 for 16 KiB clusters, at most 15) since a cluster is compressed on its own:
        # 10-15% less CPU for output within 0.01% of compress2's, inflated by any zlib (the kernel's
        # inflateInit accepts every window up to 32 KiB).
        wbits = min(15, max(9, (cluster - 1).bit_length()))

        def deflate(block: bytes) -> bytes:
            z = zlib.compressobj(level, zlib.DEFLATED, wbits)
            return z.compress(block) + z.flush()
        return deflate
    if compressor == "lzma":
        import lzma

        # mkuz_lzma.c: an xz stream, LZMA2 with the preset, CRC32 check. The dictionary is cut to the
        # cluster (all a cluster can reference): about the same output, 4x faster to set up per cluster.
        filters = [{"id": lzma.FILTER_LZMA2, "preset": level, "dict_size": max(cluster, 4096)}]
        return lambda block: lzma.compress(block, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)
    zstandard = _zstd_module(writing=True)
    local = threading.local()

    def compress(block: bytes) -> bytes:
        # ZSTD_compress2 with the level and ZSTD_c_checksumFlag (mkuz_zstd.c); a context per thread
        cctx = getattr(local, "cctx", None)
        if cctx is None:
            cctx = local.cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        return cctx.compress(block)
    return compress


def _input_size(f: BinaryIO) -> int | None:
    """The size of a file or block device (mkuz_insize.c), None for a pipe."""
    try:
        st = os.fstat(f.fileno())
    except (OSError, AttributeError, io.UnsupportedOperation):
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return st.st_size - f.tell()
    try:
        if not f.seekable():
            return None
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        return end - here
    except (OSError, io.UnsupportedOperation):
        return None


def _read_full(f: BinaryIO, n: int) -> bytes:
    buf = f.read(n)
    if len(buf) == n or not buf:
        return buf
    parts = [buf]
    got = len(buf)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def write_image(src: BinaryIO | Path | str, out: Path | str, *, compressor: str = "zlib", level: int | None = None,
                cluster: int = DEFAULT_CLSTSIZE, dedup: bool = False, zero_detect: bool = True, jobs: int = 1,
                log: Callable[[str], None] | None = None) -> WriteStats:
    """Compress src into a cloop image at out, as mkuzip(8) does; returns the figures.

    The input is read one cluster at a time; a last partial cluster is padded with zeros (so every
    cluster inflates to exactly blksz, which g_uzip_zstd.c asserts). ``jobs`` threads compress
    clusters in parallel (zlib, liblzma and zstd release the GIL) while the clusters are written in
    order. The image is written to a temporary file beside out and renamed over it when complete,
    so a failure leaves no partial image (mkuzip unlinks its output on failure).

    One deliberate difference: the nblocks+1'th offset always holds the end of the data. mkuzip
    leaves it 0 when no padding was needed; the kernel trusts it only from version 4 on and only
    when nonzero, so both read the same, and cloop-utils and QEMU, which always use it, read ours.
    ``log`` receives mkuzip -v's lines (all but the closing summary, which the caller prints).
    """
    level = check_params(compressor, level, cluster)
    if jobs < 1:
        raise ValueError(f"invalid number of compression threads specified: {jobs}")
    say = log or (lambda line: None)
    out = Path(out)
    with contextlib.ExitStack() as stack:
        if isinstance(src, (str, Path)):
            f: BinaryIO = stack.enter_context(open(src, "rb"))
        else:
            f = src
        size = _input_size(f)
        if size is None:                        # a pipe: spool it to learn the size (mkuzip refuses)
            import shutil
            import tempfile

            spool = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(f, spool, 1 << 20)
            size = spool.tell()
            spool.seek(0)
            f = spool
        nblocks = -(-size // cluster)
        if nblocks > 0xFFFFFFFF:
            raise ValueError(f"input of {size} bytes needs more than 2^32-1 clusters of {cluster} bytes")
        if size % cluster:
            say(f"file size is not multiple of {cluster}, padding data")
        data_start = HEADER_SIZE + (nblocks + 1) * 8
        say(f"data size {size} bytes, number of clusters {nblocks}, index length {(nblocks + 1) * 8} bytes")
        tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        # 0755 less the umask, as mkuzip creates it: the image is also a shell script that mounts itself
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o755)
        try:
            with os.fdopen(fd, "w+b") as w:
                stats = _write_clusters(f, w, size, nblocks, data_start, compressor=compressor, level=level,
                                        cluster=cluster, dedup=dedup, zero_detect=zero_detect, jobs=jobs, say=say)
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return stats


class _Job:
    __slots__ = ("block", "done", "result", "error")

    def __init__(self, block: bytes) -> None:
        self.block = block
        self.done = threading.Event()
        self.result: tuple[bytes, bytes] = (b"", b"")
        self.error: BaseException | None = None


def _ordered_map(work: Callable[[bytes], tuple[bytes, bytes]], blocks: Iterator[bytes],
                 jobs: int) -> Iterator[tuple[bytes, bytes]]:
    """work(block) for every block on `jobs` threads, results in input order, at most 4 per thread in
    flight (mkuzip's conveyor, ITEMS_PER_WORKER). A small pool rather than concurrent.futures, whose
    import (logging and all) costs more than compressing a few clusters."""
    import queue

    todo: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()

    def worker() -> None:
        while (job := todo.get()) is not None:
            try:
                job.result = work(job.block)
            except BaseException as exc:        # handed to the consumer, which re-raises it
                job.error = exc
            job.block = b""
            job.done.set()

    threads = [threading.Thread(target=worker, name=f"mkuzip-{n}", daemon=True) for n in range(jobs)]
    for t in threads:
        t.start()
    window: deque[_Job] = deque()

    def take() -> tuple[bytes, bytes]:
        job = window.popleft()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    try:
        for block in blocks:
            job = _Job(block)
            window.append(job)
            todo.put(job)
            if len(window) >= jobs * 4:
                yield take()
        while window:
            yield take()
    finally:
        for _ in threads:
            todo.put(None)
        for t in threads:
            t.join()


def _write_clusters(f: BinaryIO, w: BinaryIO, size: int, nblocks: int, data_start: int, *, compressor: str,
                    level: int, cluster: int, dedup: bool, zero_detect: bool, jobs: int,
                    say: Callable[[str], None]) -> WriteStats:
    compress = _compressor(compressor, level, cluster)
    zero = bytes(cluster)
    if dedup:
        import hashlib

    def work(block: bytes) -> tuple[bytes, bytes]:
        if zero_detect and block == zero:
            return b"", b""                     # an all-zero cluster: no data (mkuz_conveyor.c cworker)
        data = compress(block)
        return data, (hashlib.md5(data).digest() if dedup else b"")

    def clusters() -> Iterator[bytes]:
        for _ in range(nblocks):
            block = _read_full(f, cluster)
            yield block if len(block) == cluster else block + bytes(cluster - len(block))

    toc = array("Q", bytes(8 * (nblocks + 1)))
    stats = WriteStats(input_size=size, blksz=cluster, nblocks=nblocks, compressor=compressor, level=level,
                       magic=magic_for(compressor, dedup))
    cache: dict[tuple[int, bytes], tuple[int, int]] = {}     # (len, MD5) -> (offset, cluster) (mkuz_blockcache.c)
    offset = last_offset = data_start
    w.seek(data_start)

    max_blen = kernel_max_blen(compressor, cluster)

    def place(i: int, data: bytes, digest: bytes) -> None:
        nonlocal offset, last_offset
        if len(data) > max_blen:
            # only xz can exceed it (g_uzip_lzma.c bounds clusters by LZ4_compressBound, below xz's own
            # overhead for small incompressible clusters); mkuzip writes such an image, the kernel
            # then refuses it ("TOC error") or fails the cluster. Say so now instead.
            raise ValueError(f"cluster #{i} compresses to {len(data)} bytes, more than the {max_blen} the kernel "
                             f"accepts for {compressor} clusters of {cluster} bytes: use a larger cluster size")
        hit = None
        if dedup and data:
            key = (len(data), digest)
            seen = cache.get(key)
            if seen is None:
                cache[key] = (offset, i)
            else:
                w.flush()
                if os.pread(w.fileno(), len(data), seen[0]) == data:   # verify_match: not just the MD5
                    hit = seen
            # "There should be at least one non-empty block between us and the backref'ed offset"
            if hit is not None and hit[0] == last_offset:
                hit = None
        if hit is not None:
            toc[i] = hit[0]
            stats.dedup_blocks += 1
            say(f"cluster #{i}, in {cluster} bytes, out len=0 offset={hit[0]} (backref'ed to #{hit[1]})")
            return
        if data:
            w.write(data)
        else:
            stats.zero_blocks += 1
        toc[i] = last_offset = offset
        offset += len(data)
        say(f"cluster #{i}, in {cluster} bytes, out len={len(data)} offset={toc[i]}")

    if jobs == 1:
        for i, block in enumerate(clusters()):
            place(i, *work(block))
    else:
        for i, (data, digest) in enumerate(_ordered_map(work, clusters(), jobs)):
            place(i, data, digest)
    toc[nblocks] = offset
    stats.data_end = offset
    pad = -offset % DEV_BSIZE
    if pad:
        say(f"padding data with {pad} bytes so that file size is multiple of {DEV_BSIZE}")
        w.write(bytes(pad))
    stats.output_size = offset + pad
    if _LITTLE:
        toc.byteswap()
    w.seek(0)
    w.write(stats.magic + HEADER.pack(cluster, nblocks) + toc.tobytes())
    w.flush()
    return stats
