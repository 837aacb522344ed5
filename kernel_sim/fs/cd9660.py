"""cd9660: read-only ISO 9660 with Rock Ridge, over a GEOM consumer (sys/fs/cd9660).

Why pycdlib: the volume descriptors, directory records and SUSP/Rock Ridge entries are parsed by a
maintained library instead of a second hand-written parser; this module maps what it parsed onto
the VFS adapter the way FreeBSD's cd9660 presents it:

* inode numbers as cd9660_lookup gives them: a directory's is its extent's byte address
  (isodirino), any other file's is the byte address of its directory record;
* with Rock Ridge (unless "norrip"): the NM name, PX mode/links/uid/gid and SL symbolic links;
* without it: the ISO name lowercased with its ";1" version and a trailing "." dropped (isofntrans),
  and mode 0555 for everything (cd9660_defattr: r-x for all);
* the mount is always read-only (cd9660_mount: EROFS unless MNT_RDONLY); a device without a primary
  volume descriptor is EINVAL, as iso_mountfs gives.
"""

from __future__ import annotations

import calendar
import io
import struct
from collections.abc import Callable

from kernel_sim.fs.fsapi import FsFigures, ReadOnlyFs, open_provider
from kernel_sim.geom.core import Consumer, GeomError, Mesh, report_io_error
from kernel_sim.kern.sysapi import (
    EINVAL,
    EIO,
    EISDIR,
    ENOENT,
    ENOTDIR,
    EROFS,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    Stat,
    SysError,
)

ISO_DEFAULT_BLOCK_SIZE = 2048     # sys/fs/cd9660/iso.h
ISO_STANDARD_ID = b"CD001"        # sys/fs/cd9660/iso.h
ISO_VD_PRIMARY, ISO_VD_END = 1, 255   # sys/fs/cd9660/iso.h: volume descriptor types
ISO_VD_FIRST, ISO_VD_LIMIT = 16, 100  # cd9660_vfsops.c iso_mountfs: the blocks searched for descriptors
# cd9660_vfsops.c cd9660_opts, plus the global options vfs_filteropt always accepts.
CD9660_OPTS = {"from", "export", "fspath", "fstype", "errmsg", "ro", "rw", "nosuid", "noexec", "nosymfollow",
               "norrip", "nojoliet", "nostrictjoliet", "brokenjoliet", "ssector", "extatt", "gens", "cs_disk",
               "cs_local", "mask", "dirmask"}


class _ConsumerFile(io.RawIOBase):
    """A read-only file over a GEOM consumer, for pycdlib's open_fp."""

    def __init__(self, cp: Consumer) -> None:
        self.cp = cp
        self.size = cp.provider.mediasize
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self.size - self.pos))
        if n:
            data = self.cp.read_bytes(self.pos, n)
            buf[:len(data)] = data
            n = len(data)
        self.pos += n
        return n


def _record_time(rec) -> float:
    """A directory record's 7-byte date (ECMA-119 9.1.5): local time, GMT offset in 15-minute units."""
    d = rec.date
    # A damaged month (0, 13..255) is clamped, not refused: a bad date is not worth failing a stat over,
    # and the kernel's own conversion (cd9660_tstamp_conv7) does arithmetic on whatever is there.
    t = calendar.timegm((d.years_since_1900 + 1900, min(max(d.month, 1), 12), max(d.day_of_month, 1),
                         d.hour, d.minute, d.second))
    return float(t - d.gmtoffset * 15 * 60)


def _iso_name(ident: bytes) -> str:
    """isofntrans: drop the ";version" and a trailing ".", lowercase."""
    name = ident.decode("latin-1").split(";", 1)[0]
    if name.endswith("."):
        name = name[:-1]
    return name.lower()


class Cd9660Fs(ReadOnlyFs):
    """One mounted ISO image."""

    fstype = "cd9660"

    def __init__(self, mesh: Mesh, cp: Consumer, source: str, rrip: bool) -> None:
        import pycdlib
        from pycdlib.pycdlibexception import PyCdlibException

        self.mesh = mesh
        self.consumer = cp
        self.source = source
        self._fp = _ConsumerFile(cp)
        self.iso = pycdlib.PyCdlib()
        try:
            self.iso.open_fp(self._fp)
        except PyCdlibException as exc:
            raise SysError(EINVAL, f"cd9660: {source}: not an ISO 9660 image ({exc})") from None
        except GeomError as exc:
            raise SysError(exc.errno, str(exc)) from None
        except (ValueError, IndexError, KeyError, TypeError, struct.error, UnicodeError, OverflowError,
                AttributeError, ZeroDivisionError, RecursionError) as exc:
            # pycdlib checks what the standard requires, but a damaged volume can also trip its own
            # conversions (int(b"\0"), a short struct, an index past a record); to the kernel that is a
            # volume it cannot mount: EINVAL, as iso_mountfs gives for a bad volume descriptor
            raise SysError(EINVAL, f"cd9660: {source}: damaged ISO 9660 volume ({type(exc).__name__}: {exc})") from None
        self.block = self.iso.pvd.logical_block_size()
        root = self.iso.pvd.root_directory_record()
        self.rrip = rrip and root.children[0].rock_ridge is not None
        self._recs: dict[int, object] = {}          # ino -> directory record
        self._entries: dict[int, list[tuple[str, int]]] = {}
        self._parent: dict[int, int] = {}
        self.root_ino = self._dir_ino(root)
        self._recs[self.root_ino] = root
        self._parent[self.root_ino] = self.root_ino

    # -------------------------------------------------------------- numbering
    def _dir_ino(self, rec) -> int:
        return rec.extent_location() * self.block          # isodirino: extent << im_bshift

    def _children(self, ino: int) -> list[tuple[str, int]]:
        """The entries of directory `ino` with their inode numbers, records laid out as on the disc
        (a record never crosses a logical block)."""
        if ino in self._entries:
            return self._entries[ino]
        rec = self._recs[ino]
        out: list[tuple[str, int]] = [(".", ino), ("..", self._parent[ino])]
        pos = 0
        for child in rec.children:
            if pos % self.block + child.dr_len > self.block:
                pos += self.block - pos % self.block
            where = rec.extent_location() * self.block + pos
            pos += child.dr_len
            if child.is_dot() or child.is_dotdot():
                continue
            rr = child.rock_ridge if self.rrip else None
            if rr is not None and rr.relocated_record():
                continue          # RE: a deep directory's real place, shown where its CL entry is
            name = self._name(child)
            if rr is not None and rr.child_link_record_exists() and rr.cl_to_moved_dr is not None:
                child = rr.cl_to_moved_dr     # CL: this entry stands for a directory moved to rr_moved
            if child.is_dir():
                cino = self._dir_ino(child)
                self._parent[cino] = ino
            else:
                cino = where
            self._recs[cino] = child
            out.append((name, cino))
        self._entries[ino] = out
        return out

    def _name(self, rec) -> str:
        if self.rrip and rec.rock_ridge is not None and rec.rock_ridge.name():
            return rec.rock_ridge.name().decode("utf-8", "surrogateescape")
        return _iso_name(rec.file_identifier())

    def _rec(self, ino: int):
        rec = self._recs.get(ino)
        if rec is None:
            raise SysError(ENOENT, f"cd9660: no inode {ino}")
        return rec

    # -------------------------------------------------------------- VFS operations
    def lookup(self, dir_ino: int, name: str) -> int:
        if self._mode(self._rec(dir_ino)) & S_IFMT != S_IFDIR:
            raise SysError(ENOTDIR)
        for n, ino in self._children(dir_ino):
            if n == name:
                return ino
        raise SysError(ENOENT, f"{name}: not found")

    def _mode(self, rec) -> int:
        rr = rec.rock_ridge if self.rrip else None
        if rr is not None and rr.dr_entries.px_record is not None:
            return rr.get_file_mode()
        return (S_IFDIR if rec.is_dir() else S_IFREG) | 0o555

    def getattr(self, ino: int) -> Stat:
        rec = self._rec(ino)
        mode = self._mode(rec)
        rr = rec.rock_ridge if self.rrip else None
        px = rr.dr_entries.px_record if rr is not None else None
        nlink = px.posix_file_links if px is not None else (2 if rec.is_dir() else 1)
        uid = px.posix_user_id if px is not None else 0
        gid = px.posix_group_id if px is not None else 0
        if mode & S_IFMT == S_IFLNK:
            size = len(self.readlink(ino).encode("utf-8", "surrogateescape"))
        else:
            size = rec.data_length
        t = _record_time(rec)
        blocks = -(-size // self.block) * (self.block // 512) if mode & S_IFMT != S_IFLNK else 0
        return Stat(0, ino, mode, nlink, uid, gid, 0, size, blocks, self.block, t, t, t)

    def readdir(self, ino: int) -> list[tuple[str, int]]:
        if self._mode(self._rec(ino)) & S_IFMT != S_IFDIR:
            raise SysError(ENOTDIR)
        return list(self._children(ino))

    def readlink(self, ino: int) -> str:
        rec = self._rec(ino)
        rr = rec.rock_ridge if self.rrip else None
        if rr is None or not rr.is_symlink():
            raise SysError(EINVAL, "cd9660: not a symbolic link")
        return rr.symlink_path().decode("utf-8", "surrogateescape")

    def read(self, ino: int, offset: int, size: int) -> bytes:
        rec = self._rec(ino)
        if rec.is_dir():
            raise SysError(EISDIR)
        if offset < 0 or size < 0:
            raise SysError(EINVAL)
        end = min(rec.data_length, offset + size)
        if offset >= end:
            return b""
        start = rec.extent_location() * self.block
        try:
            return self.consumer.read_bytes(start + offset, end - offset)
        except GeomError as exc:
            raise SysError(report_io_error(self.mesh.printf, exc) or EIO, str(exc)) from None

    def statfs(self) -> FsFigures:
        """cd9660_statfs: the volume's size in logical blocks, nothing free."""
        blocks = self.iso.pvd.space_size
        return FsFigures(self.block, self.block, blocks, 0, 0, 0, 0)

    def update(self, options: dict[str, str], readonly: bool) -> None:
        if not readonly:
            raise SysError(EROFS, "cd9660 is read-only")

    def unmount(self) -> None:
        try:
            self.iso.close()
        finally:
            self.mesh.close(self.consumer)


def has_primary_volume(read: Callable[[int, int], bytes], mediasize: int) -> bool:
    """iso_mountfs's search without mounting: the volume descriptors from block 16, each with the
    "CD001" id, until a primary one (True) or the terminator, a foreign block or the media end (False)."""
    for block in range(ISO_VD_FIRST, ISO_VD_LIMIT):
        offset = block * ISO_DEFAULT_BLOCK_SIZE
        if offset + ISO_DEFAULT_BLOCK_SIZE > mediasize:
            return False
        head = read(offset, 1 + len(ISO_STANDARD_ID))
        if head[1:] != ISO_STANDARD_ID or head[0] == ISO_VD_END:
            return False
        if head[0] == ISO_VD_PRIMARY:
            return True
    return False


def mount_cd9660(mesh: Mesh, options: dict[str, str], readonly: bool) -> Cd9660Fs:
    """cd9660_mount: read-only only, "from" names the device."""
    bad = [k for k in options if k not in CD9660_OPTS]
    if bad:
        raise SysError(EINVAL, f"cd9660: unknown option(s) {', '.join(bad)}")
    if not readonly:
        raise SysError(EROFS, "cd9660 mounts read-only (mount -o ro, as mount_cd9660 does)")
    if "from" not in options:
        raise SysError(EINVAL, 'cd9660: no "from" device')
    name, cp = open_provider(mesh, options["from"], write=False)
    try:
        return Cd9660Fs(mesh, cp, f"/dev/{name}", rrip="norrip" not in options)
    except BaseException:
        mesh.close(cp)
        raise
