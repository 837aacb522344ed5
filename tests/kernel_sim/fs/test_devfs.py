"""devfs: GEOM providers come and go in /dev, disks hold GEOM access while open, built-in devices."""

from __future__ import annotations

import struct

import pytest

from kernel_sim.dev.md import MD_AUTOUNIT, MD_MALLOC, MDIOCATTACH, MDIOCDETACH, MdDriver, MdIoctl
from kernel_sim.fs.devfs import DIOCGMEDIASIZE, DIOCGSECTORSIZE
from kernel_sim.geom.core import Mesh, StorageClass
from kernel_sim.kern.sysapi import (
    EACCES,
    EBADF,
    EEXIST,
    EINVAL,
    ENOENT,
    ENOTTY,
    ENXIO,
    EOPNOTSUPP,
    EPERM,
    EROFS,
    ESPIPE,
    O_CREAT,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    S_IFCHR,
    S_IFDIR,
    S_IFMT,
    SEEK_END,
    SysError,
)
from kernel_sim.kern.syscalls import Syscalls, make_kernel


class Flash:
    """A softc for StorageClass: a byte array disk."""

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.mediasize, self.sectorsize = size, 512

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.buf[offset:offset + length])

    def write(self, offset: int, data: bytes) -> None:
        self.buf[offset:offset + len(data)] = data


def devfs_root():
    """A kernel whose root is devfs itself (no disk image needed): /dev's view is then "/"."""
    mesh = Mesh()
    mesh.md = MdDriver(mesh, sector_alloc=lambda _n, _z: object(), sector_free=lambda _h: None)
    image = bytearray(b"".join(bytes([i]) * 512 for i in range(8)))
    mesh.md.preload(len(image), image=image)
    console: list[bytes] = []
    typed = [b"ls\n"]
    k = make_kernel(mesh, console_write=console.append, console_read=lambda n: typed.pop(0)[:n] if typed else b"")
    k.vfs.mount("devfs", "/", {})
    return k, Syscalls.for_init(k), mesh, console, image


def errno_of(fn, *args) -> int:
    with pytest.raises(SysError) as exc:
        fn(*args)
    return exc.value.errno


def test_providers_appear_and_disappear_with_geom():
    k, p, mesh, _, _ = devfs_root()
    assert p.readdir("/") == [".", "..", "console", "null", "zero", "mdctl", "md0"]
    unit = mesh.md.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT)
    assert "md1" in p.readdir("/") and p.stat("/md1").mode & S_IFMT == S_IFCHR
    st = p.stat("/md1")
    assert (st.mode & 0o7777, st.uid, st.gid) == (0o640, 0, 5)     # root:operator 0640 (geom_dev.c)
    mesh.md.detach(unit)
    assert "md1" not in p.readdir("/")
    assert errno_of(p.stat, "/md1") == ENOENT


def test_nested_provider_names_make_directories():
    _k, p, mesh, _, _ = devfs_root()
    pp = StorageClass().publish(mesh, "map/rootfs", Flash(64 * 1024))
    assert "map" in p.readdir("/")
    assert p.stat("/map").mode & S_IFMT == S_IFDIR
    assert p.readdir("/map") == [".", "..", "rootfs"]
    assert p.stat("/map/..").ino == p.stat("/").ino
    mesh.orphan(pp)
    assert "map" not in p.readdir("/")
    assert errno_of(p.readdir, "/map") == ENOENT


def test_disk_io_in_whole_sectors_through_a_consumer():
    _k, p, mesh, _, image = devfs_root()
    fd = p.open("/md0", O_RDWR)
    assert mesh.provider("md0").acr == 1 and mesh.provider("md0").acw == 1
    assert p.read(fd, 1024) == bytes([0]) * 512 + bytes([1]) * 512
    assert p.pread(fd, 512, 7 * 512) == bytes([7]) * 512
    assert errno_of(p.pread, fd, 100, 0) == EINVAL          # not whole sectors
    assert errno_of(p.pread, fd, 512, 100) == EINVAL
    assert p.pread(fd, 1024, 7 * 512) == bytes([7]) * 512   # clipped at the end of the media
    assert p.pread(fd, 512, 8 * 512) == b""
    assert p.pwrite(fd, b"\xee" * 512, 512) == 512 and image[512:1024] == b"\xee" * 512
    assert struct.unpack("<q", p.ioctl(fd, DIOCGMEDIASIZE))[0] == 4096
    assert struct.unpack("<I", p.ioctl(fd, DIOCGSECTORSIZE))[0] == 512
    assert errno_of(p.ioctl, fd, 0x20006400) == ENOTTY
    assert p.lseek(fd, 0, SEEK_END) == 0                    # a device's st_size is 0, as devfs says
    p.close(fd)
    assert mesh.provider("md0").acr == 0 and mesh.provider("md0").acw == 0


def test_geom_refusals_reach_the_opener():
    _k, p, mesh, _, _ = devfs_root()
    holder = mesh.open("md0")
    assert holder.access(0, 0, 1) == 0                        # someone holds md0 exclusively
    assert errno_of(p.open, "/md0", O_WRONLY) == EPERM
    fd = p.open("/md0", O_RDONLY)                             # reading is still allowed
    p.close(fd)
    mesh.close(holder)
    ro = mesh.md.preload(4096, image=bytearray(4096), readonly=True)
    assert errno_of(p.open, f"/md{ro}", O_RDWR) == EROFS
    assert mesh.provider(f"md{ro}").acr == 0                 # the refused open left no access behind


def test_detached_disk_while_open_is_enxio():
    _k, p, mesh, _, _ = devfs_root()
    unit = mesh.md.attach(MD_MALLOC, 1 << 20, options=MD_AUTOUNIT)
    fd = p.open(f"/md{unit}", O_RDONLY)
    mesh.md.detach(unit, force=True)
    assert errno_of(p.read, fd, 512) == ENXIO
    p.close(fd)


def test_null_zero_and_console():
    _k, p, _, console, _ = devfs_root()
    null = p.open("/null", O_RDWR)
    assert p.read(null, 100) == b"" and p.write(null, b"gone") == 4
    zero = p.open("/zero", O_RDONLY)
    assert p.read(zero, 5) == bytes(5) and p.lseek(zero, 1000) == 1000
    assert errno_of(p.write, zero, b"x") == EBADF            # opened read-only
    p.write(1, b"hello\n")
    assert console == [b"hello\n"]
    assert p.read(0, 10) == b"ls\n"
    assert errno_of(p.lseek, 0, 0) == ESPIPE
    assert errno_of(p.pread, 0, 1, 0) == ESPIPE
    st = p.fstat(2)
    assert st.mode == S_IFCHR | 0o600 and st.rdev == p.stat("/console").ino
    assert errno_of(p.open, "/newfile", O_CREAT | O_WRONLY) == EOPNOTSUPP
    assert errno_of(p.truncate, "/null", 0) == EINVAL


def test_mdctl_ioctl_goes_to_the_md_driver_and_is_root_only():
    k, p, mesh, _, _ = devfs_root()
    fd = p.open("/mdctl", O_RDWR)
    req = MdIoctl(md_type=MD_MALLOC, md_mediasize=1 << 20, md_options=MD_AUTOUNIT)
    out = MdIoctl.unpack(p.ioctl(fd, MDIOCATTACH, req.pack()))
    assert f"md{out.md_unit}" in p.readdir("/")
    p.ioctl(fd, MDIOCDETACH, MdIoctl(md_unit=out.md_unit).pack())
    assert f"md{out.md_unit}" not in p.readdir("/")
    assert errno_of(p.ioctl, fd, MDIOCDETACH, MdIoctl(md_unit=42).pack()) == ENOENT
    user = Syscalls(k, 50, uid=1001, gid=1001)
    assert errno_of(user.open, "/mdctl", O_RDWR) == EACCES    # 0600 root:wheel
    assert errno_of(user.open, "/md0", O_RDONLY) == EACCES    # 0640 root:operator


def test_make_dev_gives_the_driver_its_caller():
    k, p, _, _, _ = devfs_root()
    seen = []

    class Probe:
        name, mode, uid, gid = "probe", 0o664, 0, 2

        def d_open(self, caller, flags):
            seen.append(("open", caller.uid, caller.pid))

        def d_close(self, caller):
            seen.append(("close", caller.pid))

        def d_read(self, caller, offset, size):
            return offset.to_bytes(4, "little")[:size]

        def d_write(self, caller, offset, data):
            return caller.file_sink(1).write(b"echo:" + data) - 5

        def d_ioctl(self, caller, cmd, arg, user=None):
            return arg[::-1]

    k.vfs.devfs.make_dev(Probe())
    assert errno_of(k.vfs.devfs.make_dev, Probe()) == EEXIST
    user = Syscalls(k, 7, uid=1001, gid=2)
    fd = user.open("/probe", O_RDWR)
    assert fd == 0 and seen == [("open", 1001, 7)]
    assert user.pread(fd, 4, 0x1234) == b"\x34\x12\x00\x00"
    assert user.ioctl(fd, 1, b"abc") == b"cba"
    assert errno_of(user.write, fd, b"hi") == EBADF          # the driver's file_sink(1): not open
    user.dup2(user.open("/null", O_WRONLY), 1)
    assert user.write(fd, b"hi") == 2
    assert errno_of(Syscalls(k, 8, uid=1002, gid=1002).open, "/probe", O_WRONLY) == EACCES
    user.close(fd)
    assert seen[-1] == ("close", 7)
    k.vfs.devfs.destroy_dev("probe")
    assert errno_of(p.stat, "/probe") == ENOENT
