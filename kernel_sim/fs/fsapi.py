"""The adapter a file system implements for the VFS, and what file systems share below it.

Why apart from vfs.py: devfs, cd9660 and the VFS's own UFS and tmpfs adapters all build on these
names, and the VFS mounts every one of them; with the shared names here the imports run one way
(vfs -> devfs, cd9660 -> fsapi). A file system plugs in through `FileSystem` (inode numbers in,
sysapi.Stat out, SysError with FreeBSD's errno on failure); `ReadOnlyFs` gives the EROFS defaults.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Protocol

from kernel_sim.geom.core import Consumer, GeomError, Mesh
from kernel_sim.kern.sysapi import EOPNOTSUPP, EROFS, Caller, Stat, SysError


class FsFigures(namedtuple("FsFigures", "bsize iosize blocks bfree bavail files ffree")):
    """What a file system's statfs gives: sizes in f_bsize blocks, inode counts."""

    __slots__ = ()

    bsize: int
    iosize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int


class DeviceFile(Protocol):
    """An open character device: what devfs hands the VFS for an open of a VCHR vnode."""

    seekable: bool

    def read(self, offset: int, size: int) -> bytes: ...
    def write(self, offset: int, data: bytes) -> int: ...
    def ioctl(self, cmd: int, arg: bytes, user: dict[int, bytearray] | None) -> bytes: ...
    def close(self) -> None: ...


class FileSystem(Protocol):
    """One mounted file system as the VFS sees it. Every method may raise SysError."""

    fstype: str
    root_ino: int
    source: str                # f_mntfromname
    local: bool                # MNT_LOCAL

    def lookup(self, dir_ino: int, name: str) -> int: ...          # "." and ".." included
    def getattr(self, ino: int) -> Stat: ...
    def readdir(self, ino: int) -> list[tuple[str, int]]: ...       # "." and ".." first
    def readlink(self, ino: int) -> str: ...
    def read(self, ino: int, offset: int, size: int) -> bytes: ...
    def write(self, ino: int, offset: int, data: bytes) -> int: ...
    def truncate(self, ino: int, size: int) -> None: ...
    def create(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int: ...
    def mkdir(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int: ...
    def symlink(self, dir_ino: int, name: str, target: str, uid: int, gid: int) -> int: ...
    def unlink(self, dir_ino: int, name: str) -> None: ...
    def rmdir(self, dir_ino: int, name: str) -> None: ...
    def rename(self, fdir: int, fname: str, tdir: int, tname: str) -> None: ...
    def statfs(self) -> FsFigures: ...
    def update(self, options: dict[str, str], readonly: bool) -> None: ...
    def unmount(self) -> None: ...
    def open_device(self, ino: int, flags: int, caller: Caller) -> DeviceFile: ...


class ReadOnlyFs:
    """Defaults for a file system that cannot change: EROFS for every modification, no devices."""

    local = True

    def write(self, ino: int, offset: int, data: bytes) -> int:
        raise SysError(EROFS)

    def truncate(self, ino: int, size: int) -> None:
        raise SysError(EROFS)

    def create(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        raise SysError(EROFS)

    def mkdir(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        raise SysError(EROFS)

    def symlink(self, dir_ino: int, name: str, target: str, uid: int, gid: int) -> int:
        raise SysError(EROFS)

    def unlink(self, dir_ino: int, name: str) -> None:
        raise SysError(EROFS)

    def rmdir(self, dir_ino: int, name: str) -> None:
        raise SysError(EROFS)

    def rename(self, fdir: int, fname: str, tdir: int, tname: str) -> None:
        raise SysError(EROFS)

    def open_device(self, ino: int, flags: int, caller: Caller) -> DeviceFile:
        raise SysError(EOPNOTSUPP, "device nodes are served by devfs only")

    def update(self, options: dict[str, str], readonly: bool) -> None:
        if not readonly:
            raise SysError(EROFS, f"{self.fstype} is read-only")   # type: ignore[attr-defined]



def open_provider(mesh: Mesh, source: str, *, write: bool) -> tuple[str, Consumer]:
    """g_vfs_open: the provider named by "/dev/NAME", held r1 (w1e1 for a read-write mount)."""
    name = source.removeprefix("/dev/")
    try:
        cp = mesh.open(name, read=True, write=write)
    except GeomError as exc:
        raise SysError(exc.errno, str(exc)) from None
    if write:
        error = cp.access(0, 0, 1)
        if error:
            mesh.close(cp)
            raise SysError(error, f"{name}: exclusive access refused")
    return name, cp
