"""devfs(5): /dev, the character devices the kernel made and every live GEOM provider.

Why query and not cache: in FreeBSD a disk's node appears when GEOM's DEV class tastes a provider
and goes when the provider is orphaned (md detached, a uzip torn down), so /dev is asked of the
mesh at each lookup and readdir. Nested provider names ("map/rootfs") make subdirectories, as
make_dev does for names with slashes. An open disk holds a GEOM consumer with its access counts
(g_dev_open), so GEOM's EPERM/EROFS/EBUSY reach the opener unchanged, and raw disk I/O must be
whole sectors (EINVAL otherwise, as physio and g_io_check give).

Built-in devices (sys/dev/null/null.c, sys/kern/tty_cons.c, sys/dev/md/md.c): null, zero, console,
mdctl. Drivers add their own with make_dev(cdev) (sysapi.CharDevice): /dev/mem and /dev/kmem.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kernel_sim.fs.fsapi import DeviceFile, FsFigures, ReadOnlyFs
from kernel_sim.geom.core import Consumer, GeomError, Mesh, report_io_error
from kernel_sim.kern.sysapi import (
    EEXIST,
    EINVAL,
    EIO,
    ENODEV,
    ENOENT,
    ENOTDIR,
    ENOTTY,
    ENXIO,
    EOPNOTSUPP,
    O_ACCMODE,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    S_IFCHR,
    S_IFDIR,
    Caller,
    CharDevice,
    Stat,
    SysError,
)

DEVFS_ROOTINO = 2        # sys/fs/devfs/devfs.h
UID_ROOT, GID_WHEEL, GID_OPERATOR = 0, 0, 5   # sys/sys/conf.h
DEV_BSIZE = 512          # sys/sys/param.h

# sys/sys/disk.h: _IOR('d', 128, u_int) and _IOR('d', 129, off_t)
DIOCGSECTORSIZE = 0x40046480
DIOCGMEDIASIZE = 0x40086481
# sys/sys/filio.h: _IOW('f', 126, int) / _IOW('f', 125, int), which every tty and null accept
FIONBIO, FIOASYNC = 0x8004667E, 0x8004667D


# ------------------------------------------------------------------------------ built-in devices
class NullDevice:
    """/dev/null: reads end at once, writes vanish (null.c null_write sets uio_resid to 0)."""

    name, mode, uid, gid = "null", 0o666, UID_ROOT, GID_WHEEL

    def d_open(self, caller: Caller, flags: int) -> None:
        pass

    def d_close(self, caller: Caller) -> None:
        pass

    def d_read(self, caller: Caller, offset: int, size: int) -> bytes:
        return b""

    def d_write(self, caller: Caller, offset: int, data: bytes) -> int:
        return len(data)

    def d_ioctl(self, caller: Caller, cmd: int, arg: bytes, user: dict[int, bytearray] | None = None) -> bytes:
        if cmd in (FIONBIO, FIOASYNC):
            return arg
        raise SysError(ENOTTY)


class ZeroDevice(NullDevice):
    """/dev/zero: as many zero bytes as asked (null.c zero_read)."""

    name = "zero"

    def d_read(self, caller: Caller, offset: int, size: int) -> bytes:
        return bytes(size)


class ConsoleDevice:
    """/dev/console: reads and writes go to the kernel's console; it is a tty, so not seekable."""

    name, mode, uid, gid = "console", 0o600, UID_ROOT, GID_WHEEL
    seekable = False

    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        self.read = read
        self.write = write

    def d_open(self, caller: Caller, flags: int) -> None:
        pass

    def d_close(self, caller: Caller) -> None:
        pass

    def d_read(self, caller: Caller, offset: int, size: int) -> bytes:
        return self.read(size)

    def d_write(self, caller: Caller, offset: int, data: bytes) -> int:
        self.write(bytes(data))
        return len(data)

    def d_ioctl(self, caller: Caller, cmd: int, arg: bytes, user: dict[int, bytearray] | None = None) -> bytes:
        if cmd in (FIONBIO, FIOASYNC):
            return arg
        raise SysError(ENOTTY)


class MdctlDevice:
    """/dev/mdctl: mdconfig's ioctls go to the md driver (md.c mdctlioctl)."""

    name, mode, uid, gid = "mdctl", 0o600, UID_ROOT, GID_WHEEL   # md.c: make_dev(... 0600, MDCTL_NAME)

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh

    def d_open(self, caller: Caller, flags: int) -> None:
        if self.mesh.md is None:
            raise SysError(ENXIO, "no md driver")

    def d_close(self, caller: Caller) -> None:
        pass

    def d_read(self, caller: Caller, offset: int, size: int) -> bytes:
        raise SysError(ENODEV)   # mdctl_cdevsw has no d_read: the default is nodev (ENODEV)

    def d_write(self, caller: Caller, offset: int, data: bytes) -> int:
        raise SysError(ENODEV)

    def d_ioctl(self, caller: Caller, cmd: int, arg: bytes, user: dict[int, bytearray] | None = None) -> bytes:
        errno, out = self.mesh.md.ioctl(cmd, arg, user=user)
        if errno:
            raise SysError(errno, f"mdctl: ioctl 0x{cmd:08x} failed")
        return out


# ------------------------------------------------------------------------------ open device files
class CdevFile:
    """An open cdev: every call carries the caller, as the cdevsw's d_* get the thread."""

    def __init__(self, cdev: CharDevice, caller: Caller, flags: int) -> None:
        self.cdev = cdev
        self.caller = caller
        self.seekable = getattr(cdev, "seekable", True)
        cdev.d_open(caller, flags)

    def read(self, offset: int, size: int) -> bytes:
        return self.cdev.d_read(self.caller, offset, size)

    def write(self, offset: int, data: bytes) -> int:
        return self.cdev.d_write(self.caller, offset, data)

    def ioctl(self, cmd: int, arg: bytes, user: dict[int, bytearray] | None) -> bytes:
        return self.cdev.d_ioctl(self.caller, cmd, arg, user)

    def close(self) -> None:
        self.cdev.d_close(self.caller)


class DiskFile:
    """An open GEOM provider (geom_dev.c): a consumer held r/w for as long as the file is open."""

    seekable = True

    def __init__(self, mesh: Mesh, name: str, flags: int) -> None:
        self.mesh = mesh
        acc = flags & O_ACCMODE
        try:
            self.cp: Consumer = mesh.open(name, read=acc in (O_RDONLY, O_RDWR), write=acc in (O_WRONLY, O_RDWR))
        except GeomError as exc:
            raise SysError(exc.errno, str(exc)) from None
        self.closed = False

    def _range(self, offset: int, size: int) -> int:
        pp = self.cp.provider
        if pp.error:
            raise SysError(ENXIO, f"{pp.name} is gone")
        if offset % pp.sectorsize or size % pp.sectorsize:
            raise SysError(EINVAL, f"{pp.name}: I/O of {size} bytes at {offset} is not in whole "
                                   f"{pp.sectorsize}-byte sectors")
        if offset > pp.mediasize:
            raise SysError(EIO, f"{pp.name}: offset {offset} past the end ({pp.mediasize})")
        return min(size, pp.mediasize - offset)

    def read(self, offset: int, size: int) -> bytes:
        n = self._range(offset, size)
        if n == 0:
            return b""
        try:
            return self.cp.read(offset, n)
        except GeomError as exc:
            raise SysError(report_io_error(self.mesh.printf, exc), str(exc)) from None

    def write(self, offset: int, data: bytes) -> int:
        n = self._range(offset, len(data))
        if n:
            try:
                self.cp.write(offset, bytes(data[:n]))
            except GeomError as exc:
                raise SysError(exc.errno, str(exc)) from None
        return n

    def ioctl(self, cmd: int, arg: bytes, user: dict[int, bytearray] | None) -> bytes:
        pp = self.cp.provider
        if cmd == DIOCGMEDIASIZE:
            return struct.pack("<q", pp.mediasize)
        if cmd == DIOCGSECTORSIZE:
            return struct.pack("<I", pp.sectorsize)
        raise SysError(ENOTTY)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.cp in self.cp.provider.consumers:
                self.mesh.close(self.cp)


# ------------------------------------------------------------------------------ devfs itself
class Devfs:
    """The device table every devfs mount shows: cdevs by name, providers from the mesh."""

    def __init__(self, mesh: Mesh, *, console_read: Callable[[int], bytes] | None = None,
                 console_write: Callable[[bytes], None] | None = None,
                 now: Callable[[], float] = lambda: 0.0) -> None:
        self.mesh = mesh
        self.now = now
        self.created = now()
        self.cdevs: dict[str, CharDevice] = {}
        self._inos: dict[str, int] = {"": DEVFS_ROOTINO}
        self._paths: dict[int, str] = {DEVFS_ROOTINO: ""}
        if console_write is None:
            def console_write(data: bytes) -> None:
                mesh.printf(data.decode("utf-8", "replace"))
        self.console = ConsoleDevice(console_read or (lambda _n: b""), console_write)
        self.mdctl = MdctlDevice(mesh)
        for cdev in (self.console, NullDevice(), ZeroDevice()):
            self.make_dev(cdev)

    # -------------------------------------------------------------- make_dev / destroy_dev
    def make_dev(self, cdev: CharDevice) -> None:
        """make_dev(9): /dev/NAME appears in every devfs mount; EEXIST for a name already used."""
        name = cdev.name
        if name in self.cdevs or self.mesh.provider(name) is not None or (name == "mdctl" and self.mesh.md):
            raise SysError(EEXIST, f"/dev/{name} exists")
        self.cdevs[cdev.name] = cdev
        self._ino(cdev.name)

    def destroy_dev(self, name: str) -> None:
        if self.cdevs.pop(name, None) is None:
            raise SysError(ENOENT, f"/dev/{name}: no such device")

    # -------------------------------------------------------------- the current table
    def _ino(self, path: str) -> int:
        ino = self._inos.get(path)
        if ino is None:
            ino = DEVFS_ROOTINO + len(self._inos)
            self._inos[path] = ino
            self._paths[ino] = path
        return ino

    def _entries(self) -> dict[str, tuple[str, object]]:
        """Every device now: path -> ("cdev", cdev) or ("disk", provider name)."""
        out: dict[str, tuple[str, object]] = {name: ("cdev", cdev) for name, cdev in self.cdevs.items()}
        if self.mesh.md is not None:
            out.setdefault(self.mdctl.name, ("cdev", self.mdctl))
        for gp in self.mesh.geoms:
            for pp in reversed(gp.providers):
                if not pp.error:
                    out.setdefault(pp.name, ("disk", pp.name))
        for path in out:                      # inodes in creation order, as devfs numbers its dirents
            parts = path.split("/")
            for i in range(1, len(parts)):
                self._ino("/".join(parts[:i]))
            self._ino(path)
        return out

    def _dirs(self, entries: dict[str, tuple[str, object]]) -> set[str]:
        dirs = {""}
        for path in entries:
            parts = path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return dirs

    def node(self, ino: int) -> tuple[str, tuple[str, object] | None]:
        """(path, entry) of a live inode (entry None for a directory); ENOENT for a vanished one."""
        path = self._paths.get(ino)
        entries = self._entries()
        if path is None:
            raise SysError(ENOENT, f"devfs: no inode {ino}")
        if path in entries:
            return path, entries[path]
        if path in self._dirs(entries):
            return path, None
        raise SysError(ENOENT, f"/dev/{path}: the device is gone")

    def mount_adapter(self, options: dict[str, str]) -> DevfsFs:
        bad = [k for k in options if k not in ("from", "fspath", "fstype", "errmsg", "export", "ruleset",
                                               "nosuid", "noexec", "nosymfollow")]
        if bad:
            raise SysError(EINVAL, f"devfs: unknown option(s) {', '.join(bad)}")
        return DevfsFs(self)


class DevfsFs(ReadOnlyFs):
    """One devfs mount: lookups and listings over Devfs's current table; no files can be created."""

    fstype = "devfs"
    source = "devfs"
    root_ino = DEVFS_ROOTINO
    local = True

    def __init__(self, devfs: Devfs) -> None:
        self.devfs = devfs

    def lookup(self, dir_ino: int, name: str) -> int:
        path, entry = self.devfs.node(dir_ino)
        if entry is not None:
            raise SysError(ENOTDIR)
        if name == ".":
            return dir_ino
        if name == "..":
            return self.devfs._inos[path.rpartition("/")[0]] if path else DEVFS_ROOTINO
        full = f"{path}/{name}" if path else name
        entries = self.devfs._entries()
        if full in entries or full in self.devfs._dirs(entries):
            return self.devfs._inos[full]
        raise SysError(ENOENT, f"/dev/{full}: no such device")

    def getattr(self, ino: int) -> Stat:
        _path, entry = self.devfs.node(ino)
        t = self.devfs.created
        if entry is None:
            return Stat(0, ino, S_IFDIR | 0o555, 2, UID_ROOT, GID_WHEEL, 0, DEV_BSIZE, 0, 4096, t, t, t)
        kind, obj = entry
        if kind == "cdev":
            mode, uid, gid = obj.mode, obj.uid, obj.gid           # type: ignore[attr-defined]
        else:
            mode, uid, gid = 0o640, UID_ROOT, GID_OPERATOR        # geom_dev.c g_dev_taste
        return Stat(0, ino, S_IFCHR | mode, 1, uid, gid, ino, 0, 0, 4096, t, t, t)

    def readdir(self, ino: int) -> list[tuple[str, int]]:
        path, entry = self.devfs.node(ino)
        if entry is not None:
            raise SysError(ENOTDIR)
        entries = self.devfs._entries()
        names: dict[str, int] = {}
        prefix = f"{path}/" if path else ""
        for full in list(entries) + sorted(self.devfs._dirs(entries) - {""}):
            if full.startswith(prefix) and full != path:
                first = full[len(prefix):].split("/", 1)[0]
                names.setdefault(first, self.devfs._inos[prefix + first])
        parent = self.devfs._inos[path.rpartition("/")[0]] if path else DEVFS_ROOTINO
        return [(".", ino), ("..", parent)] + sorted(names.items(), key=lambda kv: kv[1])

    def readlink(self, ino: int) -> str:
        raise SysError(EINVAL, "devfs: not a symbolic link")

    def create(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        raise SysError(EOPNOTSUPP, "devfs: files cannot be created in /dev")

    def mkdir(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        raise SysError(EOPNOTSUPP, "devfs: directories come from device names")

    def symlink(self, dir_ino: int, name: str, target: str, uid: int, gid: int) -> int:
        raise SysError(EOPNOTSUPP, "devfs: symbolic links are not modelled")

    def unlink(self, dir_ino: int, name: str) -> None:
        raise SysError(EOPNOTSUPP, "devfs: devices go when their driver destroys them")

    def rmdir(self, dir_ino: int, name: str) -> None:
        raise SysError(EOPNOTSUPP, "devfs: directories go with their devices")

    def rename(self, fdir: int, fname: str, tdir: int, tname: str) -> None:
        raise SysError(EOPNOTSUPP, "devfs: devices cannot be renamed")

    def read(self, ino: int, offset: int, size: int) -> bytes:
        raise SysError(EOPNOTSUPP, "devfs: read a device through an open descriptor")

    def statfs(self) -> FsFigures:
        return FsFigures(DEV_BSIZE, DEV_BSIZE, 0, 0, 0, 0, 0)   # devfs_statfs: all counts zero

    def update(self, options: dict[str, str], readonly: bool) -> None:
        pass

    def unmount(self) -> None:
        pass

    def open_device(self, ino: int, flags: int, caller: Caller) -> DeviceFile:
        path, entry = self.devfs.node(ino)
        if entry is None:
            raise SysError(EOPNOTSUPP)
        kind, obj = entry
        if kind == "cdev":
            return CdevFile(obj, caller, flags)                   # type: ignore[arg-type]
        return DiskFile(self.devfs.mesh, path, flags)


__all__ = ["Devfs", "DevfsFs", "NullDevice", "ZeroDevice", "ConsoleDevice", "MdctlDevice", "CdevFile",
           "DiskFile", "DIOCGMEDIASIZE", "DIOCGSECTORSIZE"]
