"""Read-only UFS1/UFS2 (FFS) reader over a block reader.

Layouts follow FreeBSD's sys/ufs/ffs/fs.h (struct fs, cgbase/cgstart/cgimin, ino_to_fsba),
sys/ufs/ufs/dinode.h (struct ufs1_dinode, struct ufs2_dinode) and sys/ufs/ufs/dir.h (struct direct).
The image is untrusted: every loop is bounded by the image's own limits (block counts, indirect depth,
symlink count) and every inconsistency is a UfsError carrying EIO or EINTEGRITY, never an IndexError,
struct.error or a hang, because the guest kernel must survive a corrupt root image.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, namedtuple
from collections.abc import Callable

# Errno numbers as FreeBSD defines them (sys/sys/errno.h); EINTEGRITY appeared in FreeBSD 12.
ERRNOS: dict[str, int] = {
    "ENOENT": 2,
    "EIO": 5,
    "ENOTDIR": 20,
    "EISDIR": 21,
    "EINVAL": 22,
    "ELOOP": 62,
    "EINTEGRITY": 97,
}

# sys/ufs/ffs/fs.h
SBLOCKSEARCH: tuple[int, ...] = (65536, 8192, 0, 262144)
SBLOCKSIZE = 8192  # sys/ufs/ffs/fs.h: SBLOCKSIZE, the most a superblock can take
SB_STRUCT_SIZE = 1376  # sys/ufs/ffs/fs.h: CTASSERT(sizeof(struct fs) == 1376)
FS_UFS1_MAGIC = 0x011954
FS_UFS2_MAGIC = 0x19540119
MAXMNTLEN = 468
MAXVOLLEN = 32
MINBSIZE = 4096  # sys/ufs/ffs/fs.h
MAXBSIZE = 65536  # sys/sys/param.h
MAXFRAG = 8  # sys/ufs/ffs/fs.h
DEV_BSIZE = 512  # sys/sys/param.h

# sys/ufs/ufs/dinode.h
UFS_ROOTINO = 2
UFS_NDADDR = 12
UFS_NIADDR = 3
UFS1_DINODE_SIZE = 128
UFS2_DINODE_SIZE = 256
IFMT = 0o170000
IFIFO = 0o010000
IFCHR = 0o020000
IFDIR = 0o040000
IFBLK = 0o060000
IFREG = 0o100000
IFLNK = 0o120000
IFSOCK = 0o140000
IFWHT = 0o160000

# sys/ufs/ufs/dir.h
DIRBLKSIZ = 512  # DEV_BSIZE
UFS_MAXNAMLEN = 255
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK, DT_WHT = 0, 1, 2, 4, 6, 8, 10, 12, 14

# sys/sys/param.h
MAXSYMLINKS = 32
MAXPATHLEN = 1024

_IFTODT = {
    IFIFO: DT_FIFO,
    IFCHR: DT_CHR,
    IFDIR: DT_DIR,
    IFBLK: DT_BLK,
    IFREG: DT_REG,
    IFLNK: DT_LNK,
    IFSOCK: DT_SOCK,
    IFWHT: DT_WHT,
}

_INDIR_CACHE_MAX = 256  # indirect blocks kept decoded; a 10 MiB read touches ~5 of them


class UfsError(Exception):
    """A UFS failure with a FreeBSD errno, so the VFS can hand the guest the errno it expects."""

    def __init__(self, errno_name: str, message: str) -> None:
        super().__init__(f"{errno_name}: {message}")
        self.errno_name = errno_name
        self.errno = ERRNOS[errno_name]
        self.message = message


def _integrity(message: str) -> UfsError:
    return UfsError("EINTEGRITY", message)


class UfsStat(namedtuple("UfsStat", "ino mode nlink uid gid size atime mtime ctime birthtime blocks flags gen")):
    """The fields of struct ufs1_dinode / ufs2_dinode a stat(2) needs."""

    __slots__ = ()

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime: int
    mtime: int
    ctime: int
    birthtime: int  # 0 for UFS1, which has no birth time
    blocks: int  # in DEV_BSIZE units, as di_blocks
    flags: int
    gen: int

    @property
    def type(self) -> int:
        return self.mode & IFMT

    def is_dir(self) -> bool:
        return self.type == IFDIR

    def is_reg(self) -> bool:
        return self.type == IFREG

    def is_lnk(self) -> bool:
        return self.type == IFLNK


class _Inode(namedtuple("_Inode", "stat db ib raw_blocks")):
    __slots__ = ()

    stat: UfsStat
    db: tuple[int, ...]  # di_db[UFS_NDADDR]
    ib: tuple[int, ...]  # di_ib[UFS_NIADDR]
    raw_blocks: bytes  # di_db..di_ib bytes: where a short symlink lives


class Superblock(namedtuple("Superblock",
                            "location magic sblkno iblkno old_cgoffset old_cgmask ncg bsize fsize frag "
                            "fsbtodb sbsize nindir inopb ipg fpg volname size dsize maxsymlinklen maxfilesize")):
    """The struct fs fields the reader needs, with offsets from sys/ufs/ffs/fs.h."""

    __slots__ = ()

    location: int
    magic: int
    sblkno: int
    iblkno: int
    old_cgoffset: int
    old_cgmask: int
    ncg: int
    bsize: int
    fsize: int
    frag: int
    fsbtodb: int
    sbsize: int
    nindir: int
    inopb: int
    ipg: int
    fpg: int
    volname: str
    size: int
    dsize: int
    maxsymlinklen: int
    maxfilesize: int

    @property
    def ufs2(self) -> bool:
        return self.magic == FS_UFS2_MAGIC


def _parse_superblock(buf: bytes, location: int) -> Superblock:
    """Decode struct fs; offsets are those of sys/ufs/ffs/fs.h (sizeof(struct fs) == 1376)."""
    i32 = struct.Struct("<i").unpack_from
    u32 = struct.Struct("<I").unpack_from
    i64 = struct.Struct("<q").unpack_from
    u64 = struct.Struct("<Q").unpack_from
    magic = i32(buf, 1372)[0]  # fs_magic
    if magic == FS_UFS1_MAGIC:
        # ffs_oldfscompat_read: UFS1 keeps its sizes in the fs_old_* fields.
        size = i32(buf, 36)[0]  # fs_old_size
        dsize = i32(buf, 40)[0]  # fs_old_dsize
    else:
        size = i64(buf, 1080)[0]  # fs_size
        dsize = i64(buf, 1088)[0]  # fs_dsize
    return Superblock(
        location=location,
        magic=magic,
        sblkno=i32(buf, 8)[0],  # fs_sblkno
        iblkno=i32(buf, 16)[0],  # fs_iblkno
        old_cgoffset=i32(buf, 24)[0],  # fs_old_cgoffset
        old_cgmask=i32(buf, 28)[0],  # fs_old_cgmask
        ncg=u32(buf, 44)[0],  # fs_ncg
        bsize=i32(buf, 48)[0],  # fs_bsize
        fsize=i32(buf, 52)[0],  # fs_fsize
        frag=i32(buf, 56)[0],  # fs_frag
        fsbtodb=i32(buf, 100)[0],  # fs_fsbtodb
        sbsize=i32(buf, 104)[0],  # fs_sbsize
        nindir=i32(buf, 116)[0],  # fs_nindir
        inopb=u32(buf, 120)[0],  # fs_inopb
        ipg=u32(buf, 184)[0],  # fs_ipg
        fpg=i32(buf, 188)[0],  # fs_fpg
        volname=buf[680 : 680 + MAXVOLLEN].split(b"\0", 1)[0].decode("latin-1"),  # fs_volname
        size=size,
        dsize=dsize,
        maxsymlinklen=i32(buf, 1320)[0],  # fs_maxsymlinklen
        maxfilesize=u64(buf, 1328)[0],  # fs_maxfilesize
    )


def _pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def _check_superblock(sb: Superblock, media_size: int) -> str | None:
    """Return why the superblock is not sane (ffs_sbget/validate_sblock's checks), or None."""
    if not (_pow2(sb.bsize) and MINBSIZE <= sb.bsize <= MAXBSIZE):
        return f"fs_bsize {sb.bsize}"
    if not (_pow2(sb.fsize) and DEV_BSIZE <= sb.fsize <= sb.bsize and sb.bsize // sb.fsize <= MAXFRAG):
        return f"fs_fsize {sb.fsize}"
    if sb.frag != sb.bsize // sb.fsize:
        return f"fs_frag {sb.frag}"
    if not 0 <= sb.fsbtodb < 8 or sb.fsize != DEV_BSIZE << sb.fsbtodb:
        return f"fs_fsbtodb {sb.fsbtodb}"
    if not SB_STRUCT_SIZE <= sb.sbsize <= SBLOCKSIZE:
        return f"fs_sbsize {sb.sbsize}"
    ptr = 8 if sb.ufs2 else 4
    dino = UFS2_DINODE_SIZE if sb.ufs2 else UFS1_DINODE_SIZE
    if sb.nindir != sb.bsize // ptr:
        return f"fs_nindir {sb.nindir}"
    if sb.inopb != sb.bsize // dino:
        return f"fs_inopb {sb.inopb}"
    media_frags = media_size // sb.fsize
    if not 0 < sb.size <= media_frags:
        return f"fs_size {sb.size} (media holds {media_frags} fragments)"
    if not 0 < sb.fpg <= sb.size + sb.fpg or sb.fpg % sb.frag:
        return f"fs_fpg {sb.fpg}"
    if sb.ncg == 0 or (sb.ncg - 1) * sb.fpg >= sb.size:
        return f"fs_ncg {sb.ncg}"
    if sb.ipg == 0 or sb.ipg % sb.inopb or sb.ncg * sb.ipg >= 2**32:
        return f"fs_ipg {sb.ipg}"
    if not 0 <= sb.sblkno < sb.iblkno or sb.iblkno + (sb.ipg // sb.inopb) * sb.frag > sb.fpg:
        return f"fs_sblkno {sb.sblkno} / fs_iblkno {sb.iblkno}"
    if not sb.ufs2 and sb.old_cgoffset and sb.old_cgoffset * (sb.ncg + 1) > sb.fpg * sb.ncg:
        return f"fs_old_cgoffset {sb.old_cgoffset}"
    if not 0 <= sb.maxsymlinklen <= (UFS_NDADDR + UFS_NIADDR) * ptr:
        return f"fs_maxsymlinklen {sb.maxsymlinklen}"
    return None


class UfsMount:
    """A mounted read-only UFS1/UFS2 file system; all arithmetic is done once at open()."""

    def __init__(self, read: Callable[[int, int], bytes], media_size: int, sb: Superblock) -> None:
        self._read = read
        self.media_size = media_size
        self.sb = sb
        self.ufs2 = sb.ufs2
        self.maxino = sb.ncg * sb.ipg
        self._bshift = sb.bsize.bit_length() - 1
        self._ptr = struct.Struct(f"<{sb.nindir}{'q' if sb.ufs2 else 'i'}")
        self._dsize = UFS2_DINODE_SIZE if sb.ufs2 else UFS1_DINODE_SIZE
        # Blocks reachable through each level of indirection, and the largest file the map can describe.
        self._span = [1, sb.nindir, sb.nindir**2, sb.nindir**3]
        self._maxblocks = UFS_NDADDR + sb.nindir + sb.nindir**2 + sb.nindir**3
        self._fs_bytes = sb.size * sb.fsize
        self._indir: OrderedDict[int, tuple[int, ...]] = OrderedDict()
        self._inodes: OrderedDict[int, _Inode] = OrderedDict()

    # --- mounting -------------------------------------------------------------------------------

    @classmethod
    def open(cls, read: Callable[[int, int], bytes], media_size: int) -> UfsMount:
        """Find and validate the superblock at the SBLOCKSEARCH locations, as ffs_sbget does."""
        reasons = []
        for loc in SBLOCKSEARCH:
            if loc + SB_STRUCT_SIZE > media_size:
                continue
            buf = read(loc, SB_STRUCT_SIZE)
            if len(buf) != SB_STRUCT_SIZE:
                raise UfsError("EIO", f"short read of the superblock at {loc}")
            magic = struct.unpack_from("<i", buf, 1372)[0]
            if magic not in (FS_UFS1_MAGIC, FS_UFS2_MAGIC):
                continue
            sb = _parse_superblock(buf, loc)
            why = _check_superblock(sb, media_size)
            if why is None:
                return cls(read, media_size, sb)
            reasons.append(f"at {loc}: bad {why}")
        if reasons:
            raise _integrity("superblock " + "; ".join(reasons))
        # A missing magic is a corrupt (or foreign) image to the reader: EINTEGRITY, as for a bad field.
        raise _integrity("no UFS1/UFS2 superblock magic at any SBLOCKSEARCH location")

    # --- raw access -----------------------------------------------------------------------------

    def _read_bytes(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.media_size:
            raise UfsError("EIO", f"read of {length} bytes at {offset} past the media ({self.media_size})")
        data = self._read(offset, length)
        if len(data) != length:
            raise UfsError("EIO", f"short read: {len(data)} of {length} bytes at {offset}")
        return data

    def _check_frags(self, fsb: int, nfrags: int, what: str) -> None:
        if fsb < 0 or fsb + nfrags > self.sb.size:
            raise _integrity(f"{what}: block {fsb} past fs_size {self.sb.size}")

    # --- cylinder-group arithmetic (sys/ufs/ffs/fs.h) ------------------------------------------

    def cgbase(self, c: int) -> int:
        return self.sb.fpg * c

    def cgstart(self, c: int) -> int:
        if self.ufs2:
            return self.cgbase(c)
        return self.cgbase(c) + self.sb.old_cgoffset * (c & ~self.sb.old_cgmask)

    def cgimin(self, c: int) -> int:
        return self.cgstart(c) + self.sb.iblkno

    def ino_to_fsba(self, ino: int) -> int:
        sb = self.sb
        return self.cgimin(ino // sb.ipg) + ((ino % sb.ipg) // sb.inopb) * sb.frag

    # --- inodes ---------------------------------------------------------------------------------

    def inode_offset(self, ino: int) -> int:
        """Byte offset of inode `ino` on the media (ino_to_fsba, ino_to_fsbo); tools and tests patch there."""
        return self.ino_to_fsba(ino) * self.sb.fsize + (ino % self.sb.inopb) * self._dsize

    def _inode(self, ino: int) -> _Inode:
        cached = self._inodes.get(ino)
        if cached is not None:
            return cached
        if not UFS_ROOTINO <= ino < self.maxino:
            raise _integrity(f"inode {ino} outside 2..{self.maxino - 1}")
        fsb = self.ino_to_fsba(ino)
        self._check_frags(fsb, 1, f"inode {ino}")
        off = self.inode_offset(ino)
        raw = self._read_bytes(off, self._dsize)
        node = self._decode_inode(ino, raw)
        self._inodes[ino] = node
        if len(self._inodes) > 4096:
            self._inodes.popitem(last=False)
        return node

    def _decode_inode(self, ino: int, raw: bytes) -> _Inode:
        if self.ufs2:
            # struct ufs2_dinode (sys/ufs/ufs/dinode.h)
            mode, nlink, uid, gid, _blksize, size, blocks, atime, mtime, ctime, birth = struct.unpack_from(
                "<HhIIIQQqqqq", raw, 0
            )
            gen, _kernflags, flags = struct.unpack_from("<III", raw, 80)
            ptrs = struct.unpack_from("<15q", raw, 112)
            raw_blocks = raw[112:232]
        else:
            # struct ufs1_dinode (sys/ufs/ufs/dinode.h)
            mode, nlink, _freelink, size, atime, _an, mtime, _mn, ctime, _cn = struct.unpack_from("<HhIQiiiiii", raw, 0)
            ptrs = struct.unpack_from("<15i", raw, 40)
            flags, blocks, gen, uid, gid = struct.unpack_from("<IIIII", raw, 100)
            raw_blocks = raw[40:100]
            birth = 0
        st = UfsStat(
            ino=ino,
            mode=mode,
            nlink=nlink,
            uid=uid,
            gid=gid,
            size=size,
            atime=atime,
            mtime=mtime,
            ctime=ctime,
            birthtime=birth,
            blocks=blocks,
            flags=flags,
            gen=gen,
        )
        return _Inode(stat=st, db=ptrs[:UFS_NDADDR], ib=ptrs[UFS_NDADDR:], raw_blocks=raw_blocks)

    def stat(self, ino: int) -> UfsStat:
        """stat(2) fields of inode `ino`."""
        return self._inode(ino).stat

    def _checked_size(self, node: _Inode) -> int:
        size = node.stat.size
        limit = min(self._maxblocks << self._bshift, max(self.sb.maxfilesize, 0) or 2**63)
        if size > limit:
            raise _integrity(f"inode {node.stat.ino}: size {size} beyond the largest UFS file ({limit})")
        return size

    # --- block map ------------------------------------------------------------------------------

    def _indirect(self, fsb: int) -> tuple[int, ...]:
        ptrs = self._indir.get(fsb)
        if ptrs is not None:
            self._indir.move_to_end(fsb)
            return ptrs
        self._check_frags(fsb, self.sb.frag, "indirect block")
        ptrs = self._ptr.unpack(self._read_bytes(fsb * self.sb.fsize, self.sb.bsize))
        self._indir[fsb] = ptrs
        if len(self._indir) > _INDIR_CACHE_MAX:
            self._indir.popitem(last=False)
        return ptrs

    def bmap(self, node: _Inode, lbn: int) -> int:
        """Logical block -> fragment address (0 for a hole), as ufs_bmaparray, at most 3 levels deep.

        A pointer back to any indirect block on its own path (an indirect loop) is EINTEGRITY:
        the walk itself is bounded by depth, but such a block would read metadata as file data.
        """
        if lbn < UFS_NDADDR:
            return node.db[lbn]
        leaf = self._bmap_leaf(node, lbn)
        if leaf is None:
            return 0
        ptrs, idx, path = leaf
        fsb = ptrs[idx]
        if fsb in path:
            raise _integrity(f"inode {node.stat.ino}: data block {fsb} is its own indirect block")
        return fsb

    def _bmap_leaf(self, node: _Inode, lbn: int) -> tuple[tuple[int, ...], int, list[int]] | None:
        """The last-level indirect block's pointers holding lbn, lbn's index in them and the indirect
        blocks walked; None when an indirect pointer on the way is a hole."""
        rel = lbn - UFS_NDADDR
        for level in range(UFS_NIADDR):
            span = self._span[level + 1]
            if rel < span:
                break
            rel -= span
        else:
            raise _integrity(f"inode {node.stat.ino}: logical block {lbn} beyond triple indirect")
        fsb = node.ib[level]
        path: list[int] = []
        while True:
            if fsb == 0:
                return None
            if fsb in path:
                raise _integrity(f"inode {node.stat.ino}: indirect block {fsb} refers to itself")
            path.append(fsb)
            ptrs = self._indirect(fsb)
            span = self._span[level]
            if level == 0:
                return ptrs, rel, path
            fsb = ptrs[rel // span]
            rel %= span
            level -= 1

    def _bmap_run(self, node: _Inode, lbn: int, count: int) -> list[int]:
        """bmap of lbn .. lbn+count-1. Why: a large read maps hundreds of blocks; those under one
        last-level indirect block come from one slice of its pointers instead of a walk each."""
        out: list[int] = []
        while count > 0:
            if lbn < UFS_NDADDR:
                n = min(count, UFS_NDADDR - lbn)
                out += node.db[lbn:lbn + n]
            else:
                leaf = self._bmap_leaf(node, lbn)
                if leaf is None:
                    n = 1
                    out.append(0)
                else:
                    ptrs, idx, path = leaf
                    n = min(count, len(ptrs) - idx)
                    run = ptrs[idx:idx + n]
                    for fsb in path:
                        if fsb in run:
                            raise _integrity(f"inode {node.stat.ino}: data block {fsb} is its own indirect block")
                    out += run
            lbn += n
            count -= n
        return out

    # --- file data ------------------------------------------------------------------------------

    def read(self, ino: int, offset: int, length: int) -> bytes:
        """Read up to `length` bytes at `offset`; holes read as zeros, the tail may be a fragment run."""
        if offset < 0 or length < 0:
            raise UfsError("EINVAL", f"bad offset {offset} / length {length}")
        node = self._inode(ino)
        return self._read_node(node, offset, length)

    def _read_node(self, node: _Inode, offset: int, length: int) -> bytes:
        size = self._checked_size(node)
        end = min(size, offset + length)
        if offset >= end:
            return b""
        bsize, fsize, bshift = self.sb.bsize, self.sb.fsize, self._bshift
        out = bytearray()
        run_start = -1  # byte address of the pending contiguous physical run
        run_len = 0
        pos = offset
        first = offset >> bshift
        fsbs = self._bmap_run(node, first, ((end - 1) >> bshift) - first + 1)
        if len(fsbs) == 1 and fsbs[0] and (offset & (bsize - 1)) + (end - offset) <= bsize:
            fsb = fsbs[0]                                     # the common small read: one block
            boff = offset & (bsize - 1)
            self._check_frags(fsb, -(-(boff + end - offset) // fsize), f"inode {node.stat.ino} block {first}")
            return self._read_bytes(fsb * fsize + boff, end - offset)
        while pos < end:
            lbn = pos >> bshift
            boff = pos & (bsize - 1)
            n = min(bsize - boff, end - pos)
            fsb = fsbs[lbn - first]
            if fsb == 0:
                if run_len:
                    out += self._read_bytes(run_start, run_len)
                    run_len = 0
                out += bytes(n)
            else:
                # blksize(): a short last direct block is a run of fragments, not a whole block.
                nfrags = -(-(boff + n) // fsize)
                self._check_frags(fsb, nfrags, f"inode {node.stat.ino} block {lbn}")
                addr = fsb * fsize + boff
                if run_len and run_start + run_len == addr:
                    run_len += n
                else:
                    if run_len:
                        out += self._read_bytes(run_start, run_len)
                    run_start, run_len = addr, n
            pos += n
        if run_len:
            if not out:
                return self._read_bytes(run_start, run_len)   # one contiguous run: no second copy
            out += self._read_bytes(run_start, run_len)
        return bytes(out)

    # --- directories ----------------------------------------------------------------------------

    def readdir(self, ino: int) -> list[tuple[str, int, int]]:
        """List (name, ino, d_type) of a directory, "." and ".." included, checking each struct direct."""
        node = self._inode(ino)
        if not node.stat.is_dir():
            raise UfsError("ENOTDIR", f"inode {ino} is not a directory")
        size = self._checked_size(node)
        if size % DIRBLKSIZ or size > self._fs_bytes:
            raise _integrity(f"directory {ino}: size {size} not a multiple of DIRBLKSIZ or beyond the fs")
        entries: list[tuple[str, int, int]] = []
        bsize = self.sb.bsize
        for boff in range(0, size, bsize):
            if self.bmap(node, boff >> self._bshift) == 0:
                raise _integrity(f"directory {ino}: hole at offset {boff}")
            block = self._read_node(node, boff, bsize)
            for chunk in range(0, len(block), DIRBLKSIZ):
                self._parse_dirblock(ino, boff + chunk, block[chunk : chunk + DIRBLKSIZ], entries)
        return entries

    def _parse_dirblock(self, dino: int, where: int, blk: bytes, out: list[tuple[str, int, int]]) -> None:
        """Walk one DIRBLKSIZ chunk with ufs_dirbadentry's checks; d_reclen > 0 bounds the loop."""
        pos = 0
        while pos < DIRBLKSIZ:
            if pos + 8 > DIRBLKSIZ:
                raise _integrity(f"directory {dino}: entry header crosses DIRBLKSIZ at offset {where + pos}")
            d_ino, reclen, d_type, namlen = struct.unpack_from("<IHBB", blk, pos)
            if reclen < 8 or reclen & 3 or pos + reclen > DIRBLKSIZ:
                raise _integrity(f"directory {dino}: bad d_reclen {reclen} at offset {where + pos}")
            if d_ino:
                # DIRECTSIZ(namlen): 8-byte header plus the name and its NUL, rounded to 4.
                if 8 + ((namlen + 1 + 3) & ~3) > reclen:
                    raise _integrity(f"directory {dino}: bad d_namlen {namlen} at offset {where + pos}")
                name = blk[pos + 8 : pos + 8 + namlen]
                if b"\0" in name or b"/" in name or not name:
                    raise _integrity(f"directory {dino}: bad name at offset {where + pos}")
                if d_ino >= self.maxino:
                    raise _integrity(f"directory {dino}: entry inode {d_ino} beyond {self.maxino}")
                out.append((name.decode("utf-8", "surrogateescape"), d_ino, d_type))
            pos += reclen

    # --- symlinks and lookup --------------------------------------------------------------------

    def readlink(self, ino: int) -> str:
        """Symlink target: in the inode's block pointers when shorter than fs_maxsymlinklen, else in data."""
        node = self._inode(ino)
        if not node.stat.is_lnk():
            raise UfsError("EINVAL", f"inode {ino} is not a symbolic link")
        size = node.stat.size
        if size >= MAXPATHLEN:
            raise _integrity(f"symlink {ino}: length {size}")
        if size < self.sb.maxsymlinklen or (self.sb.maxsymlinklen > 0 and node.stat.blocks == 0):
            if size > len(node.raw_blocks):
                raise _integrity(f"symlink {ino}: length {size} beyond the inode")
            data = node.raw_blocks[:size]
        else:
            data = self._read_node(node, 0, size)
        return data.decode("utf-8", "surrogateescape")

    def lookup(self, path: str, follow: bool = True) -> int:
        """Resolve `path` from the root as namei does: symlinks followed (MAXSYMLINKS -> ELOOP)."""
        if not path:
            raise UfsError("ENOENT", "empty path")
        pending = [c for c in path.split("/") if c][::-1]  # a stack, next component last
        stack = [UFS_ROOTINO]  # directories from the root down, for ".."
        links = 0
        while pending:
            comp = pending.pop()
            cur = stack[-1]
            if not self.stat(cur).is_dir():
                raise UfsError("ENOTDIR", f"{path}: a component is not a directory")
            if comp == ".":
                continue
            if comp == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            child = self._dir_lookup(cur, comp)
            st = self.stat(child)
            if st.is_lnk() and (pending or follow):
                links += 1
                if links > MAXSYMLINKS:
                    raise UfsError("ELOOP", f"{path}: more than {MAXSYMLINKS} symbolic links")
                target = self.readlink(child)
                if not target:
                    raise UfsError("ENOENT", f"{path}: empty symbolic link")
                if target.startswith("/"):
                    stack = [UFS_ROOTINO]
                pending.extend(c for c in reversed(target.split("/")) if c)
                continue
            stack.append(child)
        return stack[-1]

    def _dir_lookup(self, dino: int, name: str) -> int:
        for entry_name, ino, _t in self.readdir(dino):
            if entry_name == name:
                return ino
        raise UfsError("ENOENT", f"{name}: no such entry in directory {dino}")

    @staticmethod
    def dtype_of_mode(mode: int) -> int:
        """IFTODT(mode) from sys/sys/dirent.h."""
        return _IFTODT.get(mode & IFMT, DT_UNKNOWN)


def mount_bytes(image: bytes | bytearray | memoryview) -> UfsMount:
    """Mount an in-memory image (tests, tools, a preloaded md image)."""
    view = memoryview(image)

    def read(off: int, n: int) -> bytes:
        return bytes(view[off : off + n])

    return UfsMount.open(read, len(view))


__all__ = [
    "ERRNOS",
    "FS_UFS1_MAGIC",
    "FS_UFS2_MAGIC",
    "MAXSYMLINKS",
    "SBLOCKSEARCH",
    "Superblock",
    "UfsError",
    "UfsMount",
    "UfsStat",
    "mount_bytes",
]
