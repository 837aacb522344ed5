"""The system-call interface the guest userland is written against.

Why a protocol: the shell and the commands (kernel_sim/userland) only ever talk to the kernel through
these calls, as real programs talk through syscalls. The kernel's implementation is
kernel_sim/kern/syscalls.py (one `Syscalls` per process: credentials, working directory, descriptor
table) over the VFS; tests may use it directly. Errors are `SysError` with FreeBSD's errno, and the
commands print them as FreeBSD's tools do ("ls: /x: No such file or directory").
"""

from __future__ import annotations

from collections import namedtuple
from typing import Protocol

from kernel_sim.errnos import strerror as strerror  # the guest's strerror(3), from the one errno table

# sys/sys/fcntl.h
O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE = 0x0000, 0x0001, 0x0002, 0x0003
O_NONBLOCK, O_APPEND, O_CREAT, O_TRUNC, O_EXCL = 0x0004, 0x0008, 0x0200, 0x0400, 0x0800
O_NOFOLLOW, O_DIRECTORY = 0x0100, 0x00020000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

# sys/sys/stat.h
S_IFMT, S_IFIFO, S_IFCHR, S_IFDIR, S_IFBLK, S_IFREG, S_IFLNK = (0o170000, 0o010000, 0o020000, 0o040000,
                                                                 0o060000, 0o100000, 0o120000)

# sys/sys/reboot.h
RB_AUTOBOOT, RB_HALT, RB_POWEROFF = 0, 0x008, 0x4000

# sys/sys/errno.h
EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF = 1, 2, 3, 4, 5, 6, 7, 8, 9
ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR, EINVAL = 12, 13, 14, 16, 17, 18, 19, 20, 21, 22
EMFILE, ENOTTY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK, EDOM, ERANGE = 24, 25, 27, 28, 29, 30, 31, 33, 34
EOPNOTSUPP, ELOOP, ENAMETOOLONG, ENOTEMPTY, EINTEGRITY = 45, 62, 63, 66, 97

class SysError(Exception):
    """A failed system call: `errno` is FreeBSD's number; str() is the kernel's detail for logs."""

    def __init__(self, errno: int, detail: str = "") -> None:
        super().__init__(detail or strerror(errno))
        self.errno = errno


class Stat(namedtuple("Stat", "dev ino mode nlink uid gid rdev size blocks blksize atime mtime ctime")):
    """struct stat, the fields the tools print."""

    __slots__ = ()

    dev: int
    ino: int
    mode: int  # S_IF* | permissions
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int  # 512-byte blocks
    blksize: int
    atime: float
    mtime: float
    ctime: float


class StatFs(namedtuple("StatFs",
                        "fstypename mntfromname mntonname flags bsize iosize blocks bfree bavail files ffree")):
    """struct statfs: what df(1) and mount(8) print."""

    __slots__ = ()

    fstypename: str  # "ufs", "tmpfs", "devfs", "cd9660"
    mntfromname: str  # "/dev/md0", "tmpfs", "devfs"
    mntonname: str  # "/", "/tmp"
    flags: tuple[str, ...]  # mount(8)'s words: "read-only", "local", "nosuid", ...
    bsize: int
    iosize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int


class Sys(Protocol):
    """One process's view of the kernel. Every call may raise SysError."""

    uid: int           # the effective uid (0 is root)
    pid: int

    # descriptors: 0, 1, 2 are the console when a process starts
    def open(self, path: str, flags: int = O_RDONLY, mode: int = 0o666) -> int: ...
    def close(self, fd: int) -> None: ...
    def read(self, fd: int, size: int) -> bytes: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def pread(self, fd: int, size: int, offset: int) -> bytes: ...
    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...
    def lseek(self, fd: int, offset: int, whence: int = SEEK_SET) -> int: ...
    def ftruncate(self, fd: int, size: int) -> None: ...
    def fstat(self, fd: int) -> Stat: ...
    def ioctl(self, fd: int, cmd: int, arg: bytes = b"", user: dict[int, bytearray] | None = None) -> bytes: ...
    # ^ `arg` is the ioctl's struct; `user` holds the caller's buffers that pointers inside it name
    #   (md_ioctl's md_file and md_label), as copyin/copyout would reach them.
    def dup2(self, fd: int, newfd: int) -> int: ...

    # names
    def stat(self, path: str) -> Stat: ...
    def lstat(self, path: str) -> Stat: ...
    def readdir(self, path: str) -> list[str]: ...        # names in directory order, "." and ".." included
    def mkdir(self, path: str, mode: int = 0o777) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def symlink(self, target: str, path: str) -> None: ...
    def readlink(self, path: str) -> str: ...
    def truncate(self, path: str, size: int) -> None: ...
    def chdir(self, path: str) -> None: ...
    def getcwd(self) -> str: ...

    # mounts
    def mount(self, fstype: str, path: str, options: dict[str, str]) -> None: ...   # nmount(2): "from", "ro", ...
    def unmount(self, path: str, force: bool = False) -> None: ...
    def getfsstat(self) -> list[StatFs]: ...
    def statfs(self, path: str) -> StatFs: ...

    # kernel state
    def sysctl(self, name: str, new: str | None = None) -> list[tuple[str, str]]: ...
    # ^ the (name, value) rows at or under `name` (a leaf gives one row); `new` sets a leaf's value
    #   (EPERM when not root, EINVAL/ENOENT as sysctl(3)) and returns the row with the old value.
    def kenv(self, name: str | None = None, value: str | None = None, unset: bool = False) -> list[tuple[str, str]]: ...
    def geom_conf(self, what: str = "conftxt") -> str: ...   # kern.geom.conftxt / confxml / confdot
    def geom_list(self, cls: str | None = None) -> str: ...  # geom(8) CLASS list output

    # processes and time; a spawned child starts with the parent's cwd and descriptors 0-2
    def sleep(self, seconds: float) -> None: ...   # virtual time
    def time(self) -> float: ...                   # virtual seconds since boot
    def spawn_kstack(self, comm: str, uid: int | None = None) -> Sys: ...
    # ^ fork+exec for a command: a child process with its own kernel stack from the tuning model
    #   (SysError(ENOMEM) when none can be had); call exit() on it when the command is done.
    def exit(self, status: int) -> None: ...
    def reboot(self, howto: int) -> None: ...      # halt/poweroff; init then stops the board


class Caller(Protocol):
    """What a device driver sees of the process calling it (a `Syscalls` is one)."""

    uid: int
    pid: int

    def file_sink(self, fd: int) -> FileSink: ...   # SysError(EBADF) unless fd is open for writing


class FileSink(Protocol):
    def write(self, data: bytes) -> int: ...


class CharDevice(Protocol):
    """A cdevsw: devfs calls these for /dev/NAME. Offsets are the file offset of the descriptor
    (for /dev/mem a physical address, for /dev/kmem a kernel virtual address)."""

    name: str          # "mem", "kmem", "null", "mdctl"
    mode: int          # permissions, e.g. 0o640
    uid: int
    gid: int           # 2 is kmem (etc/group)

    def d_open(self, caller: Caller, flags: int) -> None: ...
    def d_close(self, caller: Caller) -> None: ...
    def d_read(self, caller: Caller, offset: int, size: int) -> bytes: ...
    def d_write(self, caller: Caller, offset: int, data: bytes) -> int: ...
    def d_ioctl(self, caller: Caller, cmd: int, arg: bytes, user: dict[int, bytearray] | None = None) -> bytes: ...
