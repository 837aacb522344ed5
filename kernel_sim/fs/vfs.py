"""A minimal VFS: mounted file systems by path, lookups, reads and directory listings.

Only what the root mount and the monitor need today: read-only UFS over a GEOM provider. A mount
keeps its GEOM consumer open for reading, as ffs_mountfs holds its device.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_sim.fs.ufs import UfsError, UfsMount
from kernel_sim.geom.core import Consumer, GeomError, Mesh

EINVAL, ENXIO, EOPNOTSUPP = 22, 6, 45   # sys/sys/errno.h
FSTYPES = ("ufs",)


class VfsError(Exception):
    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


@dataclass
class Mount:
    fstype: str
    source: str          # "/dev/md0"
    path: str            # "/"
    readonly: bool
    fs: UfsMount
    consumer: Consumer


class Vfs:
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.mounts: dict[str, Mount] = {}

    def mount(self, fstype: str, source: str, path: str = "/", *, readonly: bool = True) -> Mount:
        """mount(2): VfsError with FreeBSD's errno when the device or the file system refuses."""
        if fstype not in FSTYPES:
            raise VfsError(EOPNOTSUPP if fstype in ("cd9660", "tmpfs", "msdosfs", "nfs") else EINVAL,
                           f"file system type {fstype} is not built yet")
        name = source.removeprefix("/dev/")
        try:
            cp = self.mesh.open(name, read=True, write=not readonly)
        except GeomError as exc:
            raise VfsError(exc.errno, str(exc)) from None
        try:
            fs = UfsMount.open(cp.read_bytes, cp.provider.mediasize)
        except UfsError as exc:
            self.mesh.close(cp)
            # ffs_mountfs: no superblock at any SBLOCKSEARCH location is EINVAL
            errno = EINVAL if "superblock" in exc.message else exc.errno
            raise VfsError(errno, str(exc)) from None
        except GeomError as exc:
            self.mesh.close(cp)
            raise VfsError(exc.errno, str(exc)) from None
        m = Mount(fstype, f"/dev/{name}", path, readonly, fs, cp)
        self.mounts[path] = m
        return m

    def root(self) -> Mount:
        if "/" not in self.mounts:
            raise VfsError(ENXIO, "no root file system is mounted")
        return self.mounts["/"]

    def read_file(self, path: str) -> bytes:
        fs = self.root().fs
        try:
            ino = fs.lookup(path)
            return fs.read(ino, 0, fs.stat(ino).size)
        except UfsError as exc:
            raise VfsError(exc.errno, f"{path}: {exc}") from None

    def listdir(self, path: str) -> list[tuple[str, int, int, int]]:
        """(name, inode, mode, size) of each entry, in directory order."""
        fs = self.root().fs
        try:
            out = []
            for name, ino, _dtype in fs.readdir(fs.lookup(path)):
                st = fs.stat(ino)
                out.append((name, ino, st.mode, st.size))
            return out
        except UfsError as exc:
            raise VfsError(exc.errno, f"{path}: {exc}") from None
