"""The cloop/uzip format: mkuzip round trips, the kernel's taste checks and errors, fuzzing, cloop-utils interop."""

from __future__ import annotations

import io
import lzma
import random
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernel_sim.geom import uzip_format as uf
from kernel_sim.geom.uzip_format import CloopError, parse_header, write_image

try:
    import zstandard
except ImportError:                                     # pragma: no cover - a dependency
    zstandard = None

needs_zstd = pytest.mark.skipif(zstandard is None, reason="the zstandard package is not installed")
COMPRESSORS = ("zlib", "lzma", "zstd") if zstandard else ("zlib", "lzma")
HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reader(image: bytes):
    view = memoryview(image)
    return lambda offset, length: bytes(view[offset:offset + length])


def make(data: bytes, **kw) -> tuple[bytes, uf.WriteStats]:
    """An image of data (through a real file, as mkuzip writes it)."""
    with tempfile.TemporaryDirectory(prefix="uzip-test-") as tmp:
        out = Path(tmp) / "image.uzip"
        stats = write_image(io.BytesIO(data), out, **kw)
        return out.read_bytes(), stats


def taste(image: bytes, **kw) -> uf.CloopImage:
    return parse_header(reader(image), len(image), **kw)


def readback(image: bytes, **kw) -> bytes:
    img = taste(image, **kw)
    return img.read(0, img.mediasize, reader(image))


def padded(data: bytes, cluster: int) -> bytes:
    return data + bytes(-len(data) % cluster)


def with_table(image: bytes, entries: dict[int, int]) -> bytes:
    """The image with some table entries replaced."""
    b = bytearray(image)
    for i, value in entries.items():
        struct.pack_into(">Q", b, uf.HEADER_SIZE + 8 * i, value)
    return bytes(b)


def table(image: bytes) -> list[int]:
    n = struct.unpack_from(">I", image, 132)[0]
    return list(struct.unpack_from(f">{n + 1}Q", image, uf.HEADER_SIZE))


def text_block(rng: random.Random, n: int) -> bytes:
    words = [b"geom", b"uzip", b"cluster", b"offset", b"kernel", b"flash", b"\n"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


# --- round trips -------------------------------------------------------------------------------------

chunk = st.one_of(
    st.tuples(st.just("zero"), st.integers(1, 40000)),
    st.tuples(st.just("text"), st.integers(1, 40000)),
    st.tuples(st.just("random"), st.integers(1, 3000)),
    st.tuples(st.just("repeat"), st.integers(0, 5)),
)


def build(chunks: list[tuple[str, int]], seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    pieces: list[bytes] = []
    for kind, n in chunks:
        if kind == "zero":
            piece = bytes(n)
        elif kind == "text":
            piece = text_block(rng, n)
        elif kind == "random":
            piece = rng.randbytes(n)
        else:
            piece = pieces[n % len(pieces)] if pieces else b"x"
        pieces.append(piece)
        out += piece
    return bytes(out)


@HYPO
@given(chunks=st.lists(chunk, min_size=1, max_size=6), seed=st.integers(0, 2**16),
       compressor=st.sampled_from(COMPRESSORS), cluster=st.sampled_from([512, 1024, 4096, 16384]),
       dedup=st.booleans(), zero_detect=st.booleans(), jobs=st.sampled_from([1, 2]))
def test_round_trip(chunks, seed, compressor, cluster, dedup, zero_detect, jobs):
    data = build(chunks, seed)
    try:
        image, stats = make(data, compressor=compressor, cluster=cluster, dedup=dedup, zero_detect=zero_detect,
                            jobs=jobs)
    except ValueError as exc:
        # xz's overhead on an incompressible small cluster exceeds what g_uzip_lzma.c accepts
        assert compressor == "lzma" and cluster < 16384 and "use a larger cluster size" in str(exc)
        assume(False)
    img = taste(image)
    nblocks = -(-len(data) // cluster)
    assert (img.compressor, img.blksz, img.nblocks, img.dedup) == (compressor, cluster, nblocks, dedup)
    assert img.mediasize == nblocks * cluster == stats.nblocks * stats.blksz
    assert len(image) % 512 == 0 and len(image) == stats.output_size
    assert img.read(0, img.mediasize, reader(image)) == padded(data, cluster)
    full = padded(data, cluster)
    zero_clusters = sum(1 for i in range(nblocks) if not full[i * cluster:(i + 1) * cluster].strip(b"\0"))
    assert stats.zero_blocks == (zero_clusters if zero_detect else 0)
    if not dedup:
        # a zero cluster has the same offset as the next one (its extent may still cover the padding)
        toc = table(image)
        assert sum(1 for i in range(nblocks) if toc[i] == toc[i + 1]) == stats.zero_blocks
        assert stats.dedup_blocks == 0
    # the same image read as UNCOMPRESS (an older kernel) where that class takes it
    if compressor != "zstd" and not dedup:
        assert readback(image, flavour="uncompress") == padded(data, cluster)


@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("size", [1, 511, 512, 16383, 16384, 16385, 3 * 16384 + 7])
def test_odd_sizes_pad_the_last_cluster_with_zeros(compressor, size):
    data = text_block(random.Random(size), size)
    image, stats = make(data, compressor=compressor)
    assert stats.nblocks == -(-size // 16384)
    assert readback(image) == padded(data, 16384)
    # every cluster inflates to exactly blksz, which g_uzip_zstd.c asserts
    img = taste(image)
    assert all(len(img.read_block(i, reader(image))) == 16384 for i in range(img.nblocks))


@pytest.mark.parametrize("compressor,magic,version", [
    ("zlib", b"#!/bin/sh\n#V2.0 Format\n", "2"), ("lzma", b"#!/bin/sh\n#L3.0\n", "3"),
    pytest.param("zstd", b"#!/bin/sh\n#Z4.0 Format\n", "4", marks=needs_zstd)])
def test_header_is_mkuzips(compressor, magic, version):
    data = text_block(random.Random(1), 40000)
    image, stats = make(data, compressor=compressor, cluster=4096)
    assert image.startswith(magic) and image[len(magic):128].count(0) >= 1
    assert struct.unpack_from(">II", image, 128) == (4096, 10)
    toc = table(image)
    assert toc[0] == uf.HEADER_SIZE + 11 * 8 and toc == sorted(toc)
    assert toc[-1] == stats.data_end and image[stats.data_end:].count(0) == len(image) - stats.data_end
    img = taste(image)
    assert img.version == version and not img.dedup and img.provider_name("md0") == "md0.uzip"
    assert stats.level == uf.DEFAULT_LEVEL[compressor]
    dd, _ = make(data, compressor=compressor, cluster=4096, dedup=True)
    assert dd[11:13] == (magic[11:12].lower() + (b"3" if compressor == "zlib" else version.encode()))
    assert taste(dd).dedup


def test_default_levels_match_mkuzip():
    data = text_block(random.Random(2), 16384)
    image, _ = make(data)
    # zlib level 9 (compress2's Z_BEST_COMPRESSION) with the window sized to the 16 KiB cluster
    toc = table(image)
    z = zlib.compressobj(9, zlib.DEFLATED, 14)
    assert image[toc[0]:toc[1]] == z.compress(data) + z.flush()
    assert image[toc[0]] == 0x68 and zlib.decompress(image[toc[0]:toc[1]]) == data   # CINFO 6: a 16 KiB window
    assert abs((toc[1] - toc[0]) - len(zlib.compress(data, 9))) <= 8


def test_dedup_stores_repeats_once_with_back_references():
    rng = random.Random(3)
    a, b, c = (rng.randbytes(4096) for _ in range(3))
    data = a + b + a + c + a + b
    image, stats = make(data, cluster=4096, dedup=True)
    plain, _ = make(data, cluster=4096)
    assert stats.dedup_blocks == 3 and len(image) < len(plain)
    toc = table(image)
    assert toc[2] == toc[0] and toc[4] == toc[0] and toc[5] == toc[1]      # backward offsets
    img = taste(image)
    assert img.block_extent(2) == img.block_extent(0)
    assert img.read(0, img.mediasize, reader(image)) == data


def test_dedup_never_refers_to_the_cluster_just_written():
    # mkuzip: a reference to the previous cluster would read as a zero block (same offset twice)
    a = random.Random(4).randbytes(4096)
    image, stats = make(a * 3, cluster=4096, dedup=True)
    toc = table(image)
    assert toc[1] > toc[0] and toc[2] == toc[0] and stats.dedup_blocks == 1
    assert readback(image) == a * 3


def test_zero_clusters_have_no_data_unless_Z():
    data = b"x" * 4096 + bytes(8192) + b"y" * 4096
    image, stats = make(data, cluster=4096)
    img = taste(image)
    assert stats.zero_blocks == 2 and [img.block_extent(i)[1] == 0 for i in range(4)] == [False, True, True, False]
    image_z, stats_z = make(data, cluster=4096, zero_detect=False)
    assert stats_z.zero_blocks == 0 and all(taste(image_z).block_extent(i)[1] > 0 for i in range(4))
    assert readback(image) == readback(image_z) == data


def test_a_trailing_zero_cluster_over_padding_reads_as_zeros():
    # V2: the kernel ignores the last table entry, so the zero cluster spans the 512-byte padding;
    # its "decompression" fails and, being zero bytes in the last cluster, reads as zeros
    data = text_block(random.Random(5), 4096) + bytes(4096)
    image, _ = make(data, cluster=4096)
    img = taste(image)
    assert img.block_extent(1)[1] > 0 and img.last == 1
    assert img.read(0, img.mediasize, reader(image)) == data


def test_write_image_streams_from_a_pipe_and_leaves_no_partial_output(tmp_path):
    data = text_block(random.Random(6), 50000)
    src = tmp_path / "in.img"
    src.write_bytes(data)
    with subprocess.Popen(["cat", str(src)], stdout=subprocess.PIPE) as proc:
        stats = write_image(proc.stdout, tmp_path / "out.uzip", cluster=4096)
    assert stats.input_size == len(data)
    assert uf.open_image(tmp_path / "out.uzip")[0].nblocks == 13

    class Broken(io.BytesIO):
        def read(self, n=-1):
            raise OSError(5, "Input/output error")
    with pytest.raises(OSError):
        write_image(Broken(data), tmp_path / "bad.uzip", cluster=4096, jobs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.img", "out.uzip"]


@pytest.mark.parametrize("kw,message", [
    ({"cluster": 1000}, "cluster size should be multiple of 512"),
    ({"cluster": 0}, "invalid cluster size specified: 0"),
    ({"cluster": 131072}, "maximal compressed cluster size 131125 greater than MAXPHYS 131072"),
    ({"compressor": "lz4"}, "invalid algorithm specified: lz4"),
    ({"level": 0}, "provided compression level 0 is invalid"),
    ({"compressor": "lzma", "level": 10}, "provided compression level 10 is invalid"),
    pytest.param({"compressor": "zstd", "level": 0}, "provided compression level 0 is invalid", marks=needs_zstd),
])
def test_write_image_refuses_what_mkuzip_refuses(kw, message):
    with pytest.raises(ValueError, match=message):
        make(b"data", **kw)


def test_largest_clusters_mkuzip_allows():
    for compressor, ok, bad in (("zlib", 130560, 131072), ("zstd", 130560, 131072), ("lzma", 129536, 130048)):
        assert uf.check_params(compressor, None, ok) == uf.DEFAULT_LEVEL[compressor]
        with pytest.raises(ValueError, match="MAXPHYS"):
            uf.check_params(compressor, None, bad)


# --- the kernel's checks, in its order ------------------------------------------------------------------

@pytest.fixture(scope="module")
def good() -> bytes:
    rng = random.Random(7)
    a = text_block(rng, 4096)
    data = a + rng.randbytes(4096) + bytes(4096) + a + text_block(rng, 4096)
    return make(data, cluster=4096, dedup=True)[0]


def error(image: bytes, **kw) -> CloopError:
    with pytest.raises(CloopError) as info:
        taste(image, **kw)
    return info.value


def test_taste_accepts_and_describes(good):
    img = taste(good)
    assert (img.compressor, img.version, img.dedup, img.blksz, img.nblocks) == ("zlib", "3", True, 4096, 5)
    assert img.mediasize == 5 * 4096 and img.sectorsize == 512
    assert [img.block_extent(i)[1] == 0 for i in range(5)] == [False, False, True, False, False]
    assert img.block_extent(3) == img.block_extent(0)


def test_no_cloop_magic():
    e = error(b"\0" * 4096)
    assert (e.message, e.errno_name, e.errno) == ("no CLOOP magic", "EFTYPE", 79)
    assert error(b"#!/bin/bash\n" + bytes(600)).message == "no CLOOP magic"
    assert error(b"").message == "no CLOOP magic"


@pytest.mark.parametrize("magic,flavour,message", [
    (b"#!/bin/sh\n#V1.0", "uzip", "image version too old"),
    (b"#!/bin/sh\n#L2.0", "uzip", "image version too old"),
    (b"#!/bin/sh\n#Z3.0", "uzip", "image version too old"),
    (b"#!/bin/sh\n#z3.0", "uzip", "image version too old"),
    (b"#!/bin/sh\n#X4.0", "uzip", "unsupported image type"),
    (b"#!/bin/sh\n#Z4.0", "uncompress", "unsupported image type"),
    (b"#!/bin/sh\n#v3.0", "uncompress", "unsupported image type"),
    (b"#!/bin/sh\n#L2.0", "uncompress", "image version too old"),
])
def test_compressor_and_version(good, magic, flavour, message):
    e = error(magic + good[len(magic):], flavour=flavour)
    assert (e.message, e.errno_name) == (message, "EFTYPE")


def test_block_size_must_be_a_multiple_of_512(good):
    lines: list[str] = []
    bad = good[:128] + struct.pack(">I", 1000) + good[132:]
    e = error(bad, log=lines.append)
    assert (e.message, e.errno_name) == ("block size (1000) should be multiple of 512.", "EINVAL")
    assert lines == [e.message]          # a printf: on the console, not only in debug kernels


def test_uncompress_wants_a_multiple_of_4_and_says_what_it_found(good):
    plain = b"#!/bin/sh\n#V2.0" + good[15:]
    lines: list[str] = []
    img = taste(plain[:128] + struct.pack(">I", 1020) + plain[132:], flavour="uncompress", log=lines.append)
    assert img.blksz == 1020 and img.provider_name("cfid0s.rootfs") == "cfid0s.rootfs.uncompress"
    assert lines == ["GEOM_UZIP image found"]
    lines.clear()
    e = error(plain[:128] + struct.pack(">I", 1022) + plain[132:], flavour="uncompress", log=lines.append)
    assert e.message == "block size (1022) should be multiple of 4."
    assert lines == ["GEOM_UZIP image found", e.message]


def test_oversized_blocks_are_only_a_warning(good):
    lines: list[str] = []
    img = taste(good[:128] + struct.pack(">I", 256 * 1024) + good[132:], log=lines.append)
    assert img.blksz == 256 * 1024 and lines == ["block size (262144) should not be larger than 131072."]


@pytest.mark.parametrize("nblocks", [700, 1000, 0xFFFFFFFF, 1 << 29])
def test_media_too_small_for_the_table(good, nblocks):
    # 0xffffffff and 2**29 wrap FreeBSD's 32-bit arithmetic; we refuse them without allocating
    e = error(good[:132] + struct.pack(">I", nblocks) + good[136:])
    assert (e.message, e.errno_name) == (f"media too small for {nblocks} blocks", "EINVAL")


def test_truncated_image(good):
    assert error(good[:150]).message == "media too small for 5 blocks"
    assert error(good[:100]).errno_name == "EIO"            # not even a header
    e = error(good[:200])                                    # the table fits, the data does not
    assert e.message == "cluster #0 extends past media boundary (" + f"{table(good)[1]} > 200)"
    cut = good[:table(good)[2] - 1]
    assert error(cut).message == f"cluster #1 extends past media boundary ({table(good)[2]} > {len(cut)})"


def test_offsets_past_the_media(good):
    e = error(with_table(good, {0: len(good) + 512}))
    assert e.errno_name == "EINVAL" and e.message.startswith("cluster #0: invalid offset")
    # a far offset for cluster 1 first makes cluster 0 run past the end (the kernel's order)
    e = error(with_table(good, {1: len(good) + 512}))
    assert e.message == f"cluster #0 extends past media boundary ({len(good) + 512} > {len(good)})"


def test_offsets_inside_the_header(good):
    e = error(with_table(good, {0: 100}))
    assert e.message == f"cluster #0: invalid offset 100, min_offset={uf.HEADER_SIZE + 6 * 8} mediasize={len(good)}"


def test_backward_offset_that_matches_no_cluster(good):
    toc = table(good)
    e = error(with_table(good, {3: toc[0] + 1}))
    assert (e.message, e.errno_name) == ("cannot match backref'ed offset at cluster #3", "EINVAL")


def test_cluster_longer_than_max_blen(good):
    # a gap makes cluster 1 longer than compressBound(4096): refused unless it is the last one
    toc = table(good)
    big = good + bytes(8192)
    e = error(with_table(big, {2: len(big), 3: toc[0], 4: len(big), 5: len(big)}))
    assert "exceeds max_blen" in e.message


@needs_zstd
def test_version_4_trusts_the_last_offset(good):
    data = text_block(random.Random(8), 8192)
    image, _ = make(data, compressor="zstd", cluster=4096)
    assert taste(image).block_extent(1)[1] == table(image)[2] - table(image)[1]
    e = error(with_table(image, {2: len(image) + 1}))
    assert e.message == f"bogus n+1 offset {len(image) + 1} > mediasize {len(image)}"
    # 0 is "not initialised" (old mkuzip): the end of the media stands in, padding and all, and the
    # decompressor must then refuse the trailing zeros; zstd does, so that cluster is corrupt
    zeroed = with_table(image, {2: 0})
    img = taste(zeroed)
    assert img.block_extent(1)[0] + img.block_extent(1)[1] == len(image)
    if table(image)[2] != len(image):
        with pytest.raises(CloopError) as info:
            img.read_block(1, reader(zeroed))
        assert info.value.errno_name == "EILSEQ"


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_corrupt_cluster_reads_as_EILSEQ_and_EIO(compressor):
    rng = random.Random(9)
    data = text_block(rng, 8192) + text_block(rng, 8192)
    image, _ = make(data, compressor=compressor, cluster=8192)
    off, length = taste(image).block_extent(0)
    bad = bytearray(image)
    for k in range(off + length // 3, off + length // 3 + 8):
        bad[k] ^= 0x5A
    bad = bytes(bad)
    lines: list[str] = []
    img = taste(bad, log=lines.append)
    with pytest.raises(CloopError) as info:
        img.read(0, 4096, reader(bad))
    assert info.value.errno_name == "EILSEQ" and info.value.errno == 86
    assert lines and "failed" in lines[0]
    assert img.read(8192, 8192, reader(bad)) == data[8192:]          # the other cluster is fine
    if compressor != "zstd":
        with pytest.raises(CloopError) as info:
            taste(bad, flavour="uncompress").read_block(0, reader(bad))
        assert info.value.errno_name == "EIO"


def test_uncompress_refuses_a_backward_offset_when_reading(good):
    plain = b"#!/bin/sh\n#V2.0" + good[15:]
    img = taste(plain, flavour="uncompress")
    assert img.block_extent(2)[1] < 0                 # cluster 3 refers back: UNCOMPRESS knows no dedup
    with pytest.raises(CloopError) as info:
        img.read_block(2, reader(plain))
    assert info.value.errno_name == "EIO"


def hand_made(blocks: list[bytes], blksz: int, letter: bytes = b"V", version: bytes = b"2") -> bytes:
    """A cloop image from raw cluster payloads (whatever they contain)."""
    n = len(blocks)
    offsets = [uf.HEADER_SIZE + (n + 1) * 8]
    for b in blocks:
        offsets.append(offsets[-1] + len(b))
    head = (b"#!/bin/sh\n#" + letter + version + b".0\n").ljust(128, b"\0") + struct.pack(">II", blksz, n)
    image = head + struct.pack(f">{n + 1}Q", *offsets) + b"".join(blocks)
    return image + bytes(-len(image) % 512)


@needs_zstd
def test_decompressed_size_rules():
    # zlib/xz: a short cluster is completed with zeros; too long is corrupt
    short = hand_made([zlib.compress(b"abc"), zlib.compress(b"x" * 512)], 512)
    img = taste(short)
    assert img.read_block(0, reader(short)) == b"abc" + bytes(509)
    long = hand_made([zlib.compress(b"y" * 513), zlib.compress(b"x")], 512)
    with pytest.raises(CloopError, match="more than 512"):
        taste(long).read_block(0, reader(long))
    xz = hand_made([lzma.compress(b"q" * 100, format=lzma.FORMAT_XZ), b"\0" * 64], 512, b"L", b"3")
    assert taste(xz).read_block(0, reader(xz)) == b"q" * 100 + bytes(412)
    # zstd: g_uzip_zstd.c asserts exactly blksz
    c = zstandard.ZstdCompressor()
    zs = hand_made([c.compress(b"z" * 100), c.compress(b"z" * 512)], 512, b"Z", b"4")
    with pytest.raises(CloopError, match="Expected 512 bytes, got 100"):
        taste(zs).read_block(0, reader(zs))
    assert taste(zs).read_block(1, reader(zs)) == b"z" * 512


@needs_zstd
def test_a_decompression_bomb_is_refused_without_inflating_it():
    c = zstandard.ZstdCompressor(level=1)
    bomb = c.compress(bytes(64 << 20))                # about 2 KiB
    image = hand_made([bomb, c.compress(bytes(4096))], 4096, b"Z", b"4")
    with pytest.raises(CloopError) as info:
        taste(image).read_block(0, reader(image))
    assert info.value.errno_name == "EILSEQ" and "more than 4096" in info.value.message
    zb = hand_made([zlib.compress(bytes(1 << 20), 9), zlib.compress(b"x")], 4096)
    with pytest.raises(CloopError, match="more than 4096"):
        taste(zb).read_block(0, reader(zb))


def test_reads_follow_g_io_check(good):
    img = taste(good)
    read = reader(good)
    assert img.read(img.mediasize - 10, 100, read) == img.read(0, img.mediasize, read)[-10:]
    assert img.read(img.mediasize, 10, read) == b""
    with pytest.raises(CloopError) as info:
        img.read(img.mediasize + 1, 1, read)
    assert info.value.errno_name == "EIO"
    with pytest.raises(CloopError) as info:
        img.read(-1, 1, read)
    assert info.value.errno_name == "EINVAL"
    with pytest.raises(CloopError):
        img.read_block(5, read)


def test_a_failing_backing_store_is_EIO(good):
    def broken(offset, length):
        if offset >= 1024:
            raise OSError(5, "Input/output error")
        return good[offset:offset + length]
    img = taste(good)
    with pytest.raises(CloopError) as info:
        img.read_block(4, broken)
    assert info.value.errno_name == "EIO"
    with pytest.raises(CloopError) as info:
        taste(good, flavour="uzip").read_block(0, lambda o, n: good[o:o + n - 1])    # short read
    assert info.value.errno_name == "EIO"


# --- fuzzing: hostile images give CloopError and nothing else -----------------------------------------

def _fuzz_bases() -> list[bytes]:
    rng = random.Random(10)
    a = text_block(rng, 2048)
    data = a + rng.randbytes(1024) + bytes(2048) + a + text_block(rng, 3000)
    bases = []
    for compressor in COMPRESSORS:
        for dedup in (False, True):
            bases.append(make(data, compressor=compressor, cluster=2048, dedup=dedup)[0])
    return bases


FUZZ_BASES = _fuzz_bases()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("u32"), st.sampled_from([128, 132]), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("toc"), st.integers(0, 12), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("tocnear"), st.integers(0, 12), st.integers(-600, 600)),
    st.tuples(st.just("byte"), st.integers(11, 12), st.integers(0, 255)),
)


def mutate(image: bytes, mutations) -> bytes:
    b = bytearray(image)
    for kind, where, value in mutations:
        if not b:
            break
        if kind == "flip":
            b[where % len(b)] ^= value
        elif kind == "cut":
            del b[where % len(b):]
        elif kind == "u32" and len(b) >= where + 4:
            struct.pack_into(">I", b, where, value)
        elif kind in ("toc", "tocnear"):
            pos = uf.HEADER_SIZE + 8 * where
            if len(b) >= pos + 8:
                old = struct.unpack_from(">Q", b, pos)[0]
                new = value if kind == "toc" else max(0, old + value)
                struct.pack_into(">Q", b, pos, new % 2**64)
        elif kind == "byte" and len(b) > where:
            b[where] = value
    return bytes(b)


def exercise(image: bytes, flavour: str) -> None:
    """Taste and read everything; only CloopError may come out."""
    try:
        img = taste(image, flavour=flavour, log=lambda line: None)
    except CloopError:
        return
    assert img.mediasize == img.nblocks * img.blksz
    read = reader(image)
    for i in range(min(img.nblocks, 64)):
        try:
            data = img.read_block(i, read)
        except CloopError as exc:
            assert exc.errno_name in ("EILSEQ", "EIO")
            continue
        assert len(data) == img.blksz


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(FUZZ_BASES))), mutations=st.lists(mutation, min_size=1, max_size=4),
       flavour=st.sampled_from(["uzip", "uncompress"]))
def test_fuzz_mutated_images_only_raise_CloopError(base, mutations, flavour):
    exercise(mutate(FUZZ_BASES[base], mutations), flavour)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(min_size=0, max_size=2000), letter=st.sampled_from(b"VvLlZzQ"), version=st.integers(0, 255),
       blksz=st.sampled_from([0, 512, 1024, 4096, 1000]), nblocks=st.integers(0, 300))
def test_fuzz_random_bodies_only_raise_CloopError(body, letter, version, blksz, nblocks):
    head = (b"#!/bin/sh\n#" + bytes([letter, version])).ljust(128, b"\0") + struct.pack(">II", blksz, nblocks)
    assume(len(head) == 136)
    for flavour in ("uzip", "uncompress"):
        exercise(head + body, flavour)


# --- interop with cloop-utils ---------------------------------------------------------------------------

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (cloop-utils) is not installed")
    return path


def bench_like(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += text_block(rng, rng.randint(100, 3000))
        if rng.random() < 0.2:
            out += rng.randbytes(rng.randint(10, 300))
        if rng.random() < 0.05:
            out += bytes(rng.randint(1000, 40000))
    return bytes(out[:size])


@pytest.mark.interop
@pytest.mark.parametrize("size,cluster", [(95013, 16384), (300000, 65536), (1 << 20, 4096)])
def test_create_compressed_fs_images_read_back_identical(tmp_path, size, cluster):
    tool = _tool("create_compressed_fs")
    data = bench_like(size, size)
    (tmp_path / "in.img").write_bytes(data)
    subprocess.run([tool, "-q", "-B", str(cluster), str(tmp_path / "in.img"), str(tmp_path / "out.cloop")],
                   check=True, capture_output=True)
    image = (tmp_path / "out.cloop").read_bytes()
    img = taste(image)
    assert (img.compressor, img.version, img.blksz, img.nblocks) == ("zlib", "2", cluster, -(-size // cluster))
    assert img.provider_name("md0") == "md0.uzip"
    assert img.read(0, img.mediasize, reader(image)) == padded(data, cluster)
    # an older kernel's UNCOMPRESS class reads it too
    assert readback(image, flavour="uncompress") == padded(data, cluster)


@pytest.mark.interop
def test_extract_compressed_fs_reads_our_zlib_images(tmp_path):
    # What extract_compressed_fs (3.14) can read: zlib only (V2), no zero-length clusters (it calls
    # them "input corrupt": hence -Z), and at least 100 clusters (it divides by nblocks / 100 for its
    # progress line and dies of SIGFPE on smaller images, its own included).
    tool = _tool("extract_compressed_fs")
    data = bench_like(150 * 4096 - 1234, 11)
    ours = tmp_path / "ours.uzip"
    write_image(io.BytesIO(data), ours, cluster=4096, jobs=2, zero_detect=False)
    assert ours.read_bytes().startswith(b"#!/bin/sh\n#V2.0 Format\n")
    out = subprocess.run([tool, str(ours), "-"], capture_output=True, check=True).stdout
    assert out == padded(data, 4096)
    # with mkuzip's zero-cluster elision (the default) it gives up at the first zero cluster
    assert bytes(4096) in padded(data, 4096)
    write_image(io.BytesIO(data), ours, cluster=4096)
    proc = subprocess.run([tool, str(ours), "-"], capture_output=True)
    assert b"input corrupt" in proc.stderr
