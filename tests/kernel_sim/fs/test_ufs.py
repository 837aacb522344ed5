"""UFS1/UFS2 reader against images built by Debian's makefs, and against corrupt images.

makefs (20190105) does not keep holes: a sparse source file is written with all its blocks allocated,
so holes are tested by zeroing block pointers in a makefs image, and triple indirect blocks (which need
a file beyond 12 + 512 + 512**2 blocks = ~1.0 GiB on UFS2 with bsize 4096, ~4.0 GiB on UFS1) by
hand-building the indirect chain in the free space of a makefs image.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim.fs.ufs import (
    DT_DIR,
    DT_LNK,
    DT_REG,
    MAXSYMLINKS,
    UfsError,
    UfsMount,
    mount_bytes,
)

MAKEFS = shutil.which("makefs") or ("/usr/sbin/makefs" if os.path.exists("/usr/sbin/makefs") else None)
needs_makefs = pytest.mark.skipif(MAKEFS is None, reason="makefs (Debian package makefs) is not installed")
BAD = ("EIO", "EINTEGRITY")

BIG = 10 * 1024 * 1024 + 777  # past UFS1's double-indirect threshold (12 + 1024 blocks = ~4.05 MiB)
MID = 3 * 1024 * 1024 + 5  # past UFS2's double-indirect threshold (12 + 512 blocks = ~2.05 MiB)


def _makefs(src: Path, image: Path, version: int, size: str) -> bytes:
    subprocess.run(
        [MAKEFS, "-t", "ffs", "-o", f"version={version},bsize=4096,fsize=512", "-s", size, str(image), str(src)],
        check=True,
        capture_output=True,
    )
    return image.read_bytes()


def _build_tree(root: Path) -> None:
    rng = random.Random(1234)
    root.mkdir()
    many = root / "many"
    many.mkdir()
    for i in range(150):
        (many / f"file{i:03d}").write_bytes(rng.randbytes(rng.randrange(0, 3000)))
    (root / "big").write_bytes(rng.randbytes(BIG))
    (root / "mid").write_bytes(rng.randbytes(MID))
    (root / "odd").write_bytes(rng.randbytes(1000))  # not a multiple of fsize: a fragment tail
    (root / "empty").write_bytes(b"")
    with open(root / "sparse", "wb") as f:  # sparse on the host; makefs allocates every block anyway
        f.seek(300_000)
        f.write(b"end of sparse\n")
    deep = root
    for i in range(12):
        deep = deep / f"level{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_bytes(b"at the bottom\n")
    os.symlink("odd", root / "short")
    os.symlink("./" * 90 + "many/file007", root / "long")  # 192 bytes: beyond fs_maxsymlinklen of both
    os.symlink("/" + "/".join(f"level{i}" for i in range(12)), root / "deeplink")
    os.symlink("deeplink/bottom.txt", root / "chain")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("nowhere", root / "dangling")
    os.symlink("../../odd", root / "level0" / "level1" / "up")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ufs") / "tree"
    _build_tree(root)
    return root


@pytest.fixture(scope="module", params=[1, 2], ids=["ufs1", "ufs2"])
def image(request: pytest.FixtureRequest, tree: Path) -> bytes:
    if MAKEFS is None:
        pytest.skip("makefs (Debian package makefs) is not installed")
    return _makefs(tree, tree.parent / f"img{request.param}", request.param, "24m")


@pytest.fixture(scope="module")
def small_images(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """Small images for the corruption and fuzz tests: a handful of files, one with indirect blocks."""
    if MAKEFS is None:
        pytest.skip("makefs (Debian package makefs) is not installed")
    base = tmp_path_factory.mktemp("ufs_small")
    src = base / "tree"
    src.mkdir()
    rng = random.Random(99)
    (src / "a").write_bytes(b"hello\n")
    (src / "ind").write_bytes(rng.randbytes(5 * 1024 * 1024))  # single and double indirect on both
    (src / "d").mkdir()
    (src / "d" / "b").write_bytes(rng.randbytes(700))
    os.symlink("d/b", src / "s")
    return {v: _makefs(src, base / f"img{v}", v, "8m") for v in (1, 2)}


def _walk_compare(m: UfsMount, src: Path) -> int:
    checked = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        dino = m.lookup("/" if rel == "." else rel)
        names = {n for n, _i, _t in m.readdir(dino)}
        assert names == set(dirnames) | set(filenames) | {".", ".."}
        types = {n: t for n, _i, t in m.readdir(dino)}
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            relname = os.path.relpath(p, src)
            ino = m.lookup(relname, follow=False)
            st = m.stat(ino)
            if p.is_symlink():
                assert types[name] == DT_LNK and st.is_lnk()
                assert m.readlink(ino) == os.readlink(p)
            elif p.is_dir():
                assert types[name] == DT_DIR and st.is_dir()
            else:
                data = p.read_bytes()
                assert types[name] == DT_REG and st.is_reg() and st.size == len(data)
                assert m.read(ino, 0, len(data) + 10) == data
            checked += 1
    return checked


@pytest.mark.interop
@needs_makefs
def test_whole_tree_byte_identical(image: bytes, tree: Path) -> None:
    m = mount_bytes(image)
    assert m.sb.bsize == 4096 and m.sb.fsize == 512
    assert _walk_compare(m, tree) > 150


@pytest.mark.interop
@needs_makefs
def test_superblock_and_versions(image: bytes) -> None:
    m = mount_bytes(image)
    assert m.sb.location == 8192  # Debian makefs 20190105 puts both versions there
    assert m.sb.maxsymlinklen == (120 if m.ufs2 else 60)
    assert m.sb.nindir == (512 if m.ufs2 else 1024)


@pytest.mark.interop
@needs_makefs
def test_double_indirect_and_offsets(image: bytes, tree: Path) -> None:
    m = mount_bytes(image)
    data = (tree / "big").read_bytes()
    ino = m.lookup("big")
    node = m._inode(ino)
    assert node.ib[1] != 0  # the double indirect block is in use on both versions
    rng = random.Random(5)
    for _ in range(200):
        off = rng.randrange(0, len(data))
        n = rng.randrange(0, 20000)
        assert m.read(ino, off, n) == data[off : off + n]
    assert m.read(ino, len(data), 10) == b""
    assert m.read(ino, len(data) + 5000, 10) == b""
    mid = m._inode(m.lookup("mid"))
    assert (mid.ib[1] != 0) == m.ufs2


@pytest.mark.interop
@needs_makefs
def test_read_10mib_in_one_call(image: bytes) -> None:
    m = mount_bytes(image)
    ino = m.lookup("big")
    assert len(m.read(ino, 0, BIG)) == BIG


@pytest.mark.interop
@needs_makefs
def test_sparse_source_is_allocated_by_makefs(image: bytes, tree: Path) -> None:
    m = mount_bytes(image)
    st_ = m.stat(m.lookup("sparse"))
    assert m.read(st_.ino, 0, st_.size) == (tree / "sparse").read_bytes()
    assert st_.blocks * 512 >= 300_000  # makefs does not keep holes


@pytest.mark.interop
@needs_makefs
def test_symlinks_and_lookup_errors(image: bytes, tree: Path) -> None:
    m = mount_bytes(image)
    assert m.lookup("short") == m.lookup("odd")
    assert m.lookup("/long") == m.lookup("many/file007")
    assert m.stat(m.lookup("long", follow=False)).size == 192
    assert m.read(m.lookup("chain"), 0, 100) == b"at the bottom\n"
    assert m.lookup("level0/level1/up") == m.lookup("odd")
    assert m.lookup("deeplink/" + "../" * 12 + "level0/./level1/up") == m.lookup("odd")
    assert m.lookup("..") == 2 and m.lookup("/") == 2
    for path, errno_name in [
        ("loop1", "ELOOP"),
        ("dangling", "ENOENT"),
        ("nope", "ENOENT"),
        ("odd/x", "ENOTDIR"),
        ("short/x", "ENOTDIR"),
        ("many/nope", "ENOENT"),
    ]:
        with pytest.raises(UfsError) as ei:
            m.lookup(path)
        assert ei.value.errno_name == errno_name, path
    assert MAXSYMLINKS == 32
    with pytest.raises(UfsError) as ei:
        m.readdir(m.lookup("odd"))
    assert ei.value.errno == 20


# --- crafted images: holes, triple indirect, corruption ----------------------------------------------


def _put_ptr(img: bytearray, m: UfsMount, off: int, value: int) -> None:
    struct.pack_into("<q" if m.ufs2 else "<i", img, off, value)


def _db_off(m: UfsMount, ino: int, i: int) -> int:
    """Byte offset of di_db[i] (i < 12) or di_ib[i - 12] of an inode (sys/ufs/ufs/dinode.h)."""
    return m.inode_offset(ino) + (112 + 8 * i if m.ufs2 else 40 + 4 * i)


def _size_off(m: UfsMount, ino: int) -> int:
    return m.inode_offset(ino) + (16 if m.ufs2 else 8)


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_holes_read_as_zeros(small_images: dict[int, bytes], version: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    ino = m.lookup("ind")
    orig = m.read(ino, 0, 5 * 1024 * 1024)
    _put_ptr(img, m, _db_off(m, ino, 3), 0)  # a direct hole
    ind = m._inode(ino).ib[0]
    _put_ptr(img, m, ind * m.sb.fsize + 8 * (8 if m.ufs2 else 4), 0)  # a hole under the single indirect
    m2 = mount_bytes(img)
    got = m2.read(ino, 0, len(orig))
    want = bytearray(orig)
    want[3 * 4096 : 4 * 4096] = bytes(4096)
    lbn = 12 + 8
    want[lbn * 4096 : (lbn + 1) * 4096] = bytes(4096)
    assert got == bytes(want)


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_triple_indirect_crafted(small_images: dict[int, bytes], version: int) -> None:
    """Build a file whose only data is under di_ib[2], in blocks the image leaves free at its end."""
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    ino = m.lookup("a")
    fsize, frag, nindir = m.sb.fsize, m.sb.frag, m.sb.nindir
    top = (m.sb.size // frag - 1) * frag  # last whole block; makefs fills from the front
    l1, l2, l3, data = top, top - frag, top - 2 * frag, top - 3 * frag
    assert m.read(m.lookup("ind"), 0, 1)  # sanity: the image is live
    ptr = 8 if m.ufs2 else 4
    for blk in (l1, l2, l3, data):
        img[blk * fsize : (blk + frag) * fsize] = bytes(frag * fsize)
    lbn = 12 + nindir + nindir**2 + 3 * nindir**2 + 5 * nindir + 7  # indices 3, 5, 7 on the three levels
    _put_ptr(img, m, l1 * fsize + 3 * ptr, l2)
    _put_ptr(img, m, l2 * fsize + 5 * ptr, l3)
    _put_ptr(img, m, l3 * fsize + 7 * ptr, data)
    payload = bytes(range(256)) * 16
    img[data * fsize : data * fsize + 4096] = payload
    for i in range(12):
        _put_ptr(img, m, _db_off(m, ino, i), 0)
    _put_ptr(img, m, _db_off(m, ino, 14), l1)
    struct.pack_into("<Q", img, _size_off(m, ino), (lbn + 1) * 4096)
    m2 = mount_bytes(img)
    assert m2.read(ino, lbn * 4096, 4096) == payload
    assert m2.read(ino, lbn * 4096 - 100, 200) == bytes(100) + payload[:100]
    assert m2.read(ino, 0, 4096) == bytes(4096)


def _expect_bad(fn) -> UfsError:  # noqa: ANN001 - any zero-argument callable
    with pytest.raises(UfsError) as ei:
        fn()
    assert ei.value.errno_name in BAD, ei.value
    assert ei.value.errno in (5, 97)
    return ei.value


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_bad_superblock_magic(small_images: dict[int, bytes], version: int) -> None:
    img = bytearray(small_images[version])
    img[8192 + 1372] ^= 0xFF
    _expect_bad(lambda: mount_bytes(img))
    img = bytearray(small_images[version])
    struct.pack_into("<i", img, 8192 + 48, 3000)  # fs_bsize not a power of two
    _expect_bad(lambda: mount_bytes(img))
    _expect_bad(lambda: mount_bytes(bytes(100)))
    _expect_bad(lambda: mount_bytes(small_images[version][: 1 << 20]))  # fs_size past the media


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_block_pointer_past_media(small_images: dict[int, bytes], version: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    ino = m.lookup("a")
    _put_ptr(img, m, _db_off(m, ino, 0), m.sb.size + 10)
    _expect_bad(lambda: mount_bytes(img).read(ino, 0, 10))
    _put_ptr(img, m, _db_off(m, ino, 0), -5)
    _expect_bad(lambda: mount_bytes(img).read(ino, 0, 10))


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_inode_number_past_media(small_images: dict[int, bytes], version: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    _expect_bad(lambda: m.stat(m.maxino + 5))
    _expect_bad(lambda: m.stat(1 << 31))
    root_blk = m._inode(2).db[0] * m.sb.fsize
    entries = m.readdir(2)
    # the third entry (after . and ..) of the root directory: point its d_ino past ncg * ipg
    pos = 0
    for _ in range(2):
        pos += struct.unpack_from("<H", img, root_blk + pos + 4)[0]
    struct.pack_into("<I", img, root_blk + pos, m.maxino + 1)
    _expect_bad(lambda: mount_bytes(img).readdir(2))
    assert len(entries) >= 5


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("reclen", [0, 6, 4096, 512 + 12])
def test_bad_dirent_reclen(small_images: dict[int, bytes], version: int, reclen: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    root_blk = m._inode(2).db[0] * m.sb.fsize
    struct.pack_into("<H", img, root_blk + 12 + 4, reclen)  # d_reclen of "..": "." takes 12 bytes
    _expect_bad(lambda: mount_bytes(img).readdir(2))
    _expect_bad(lambda: mount_bytes(img).lookup("a"))


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_bad_dirent_namlen(small_images: dict[int, bytes], version: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    root_blk = m._inode(2).db[0] * m.sb.fsize
    img[root_blk + 7] = 200  # "." with a 200-byte name in a 12-byte record
    _expect_bad(lambda: mount_bytes(img).readdir(2))


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("level", [0, 1])
def test_indirect_block_pointing_at_itself(small_images: dict[int, bytes], version: int, level: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    ino = m.lookup("ind")
    ib = m._inode(ino).ib[level]
    assert ib
    _put_ptr(img, m, ib * m.sb.fsize, ib)
    start = (12 if level == 0 else 12 + m.sb.nindir) * 4096
    _expect_bad(lambda: mount_bytes(img).read(ino, start, 4096))
    _expect_bad(lambda: mount_bytes(img).read(ino, 0, 5 * 1024 * 1024))


@needs_makefs
@pytest.mark.parametrize("version", [1, 2])
def test_absurd_size(small_images: dict[int, bytes], version: int) -> None:
    img = bytearray(small_images[version])
    m = mount_bytes(img)
    ino = m.lookup("a")
    struct.pack_into("<Q", img, _size_off(m, ino), 1 << 62)
    _expect_bad(lambda: mount_bytes(img).read(ino, 0, 10))
    struct.pack_into("<Q", img, _size_off(m, 2), 1 << 40)  # a directory as large as a terabyte
    _expect_bad(lambda: mount_bytes(img).readdir(2))


def _walk_all(m: UfsMount) -> None:
    """Touch every reachable inode the way a guest `find / -exec cat` would, bounded by a visited set."""
    seen: set[int] = set()
    todo = [(2, "/")]
    while todo and len(seen) < 500:
        ino, path = todo.pop()
        if ino in seen:
            continue
        seen.add(ino)
        st_ = m.stat(ino)
        if st_.is_dir():
            for name, child, _t in m.readdir(ino):
                if name not in (".", ".."):
                    todo.append((child, path.rstrip("/") + "/" + name))
                    m.lookup(path.rstrip("/") + "/" + name)
        elif st_.is_lnk():
            m.readlink(ino)
        else:
            m.read(ino, 0, 1 << 20)
            if st_.size > 1 << 20:
                m.read(ino, st_.size - 4096, 8192)


@needs_makefs
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from([1, 2]), data=st.data())
def test_fuzz_only_ufserror(small_images: dict[int, bytes], version: int, data: st.DataObject) -> None:
    img = bytearray(small_images[version])
    ref = mount_bytes(img)
    # Bias mutations toward metadata: the superblock, the cylinder group and inode blocks, directory and
    # indirect blocks, where a bad byte changes the reader's path rather than only file contents.
    hot = [
        8192,
        ref.inode_offset(2),
        ref._inode(2).db[0] * ref.sb.fsize,
        ref._inode(ref.lookup("ind")).ib[0] * ref.sb.fsize,
        ref._inode(ref.lookup("ind")).ib[1] * ref.sb.fsize,
        ref._inode(ref.lookup("d")).db[0] * ref.sb.fsize,
    ]
    n = data.draw(st.integers(1, 12))
    for _ in range(n):
        base = data.draw(st.sampled_from(hot + [None]))
        if base is None:
            pos = data.draw(st.integers(0, len(img) - 1))
        else:
            pos = base + data.draw(st.integers(0, 4095 if base != 8192 else 1375))
        img[pos] = data.draw(st.integers(0, 255))
    try:
        m = mount_bytes(img)
        _walk_all(m)
    except UfsError as e:
        assert e.errno_name in {"ENOENT", "EIO", "ENOTDIR", "EISDIR", "EINVAL", "ELOOP", "EINTEGRITY"}
