"""The system calls of one process (sysapi.Sys): credentials, working directory, descriptor table.

Why a per-process object: FreeBSD keeps the credentials (td_ucred), the working directory
(fd_cdir) and the descriptor table (struct filedesc) in the process, and every call resolves paths
and checks access against them. The kernel's shared services come in one `Kernel` object; the
file work is the VFS's (kernel_sim/fs/vfs.py), this layer maps descriptors to open files and adds
the checks that belong to the calls themselves (EBADF, EMFILE, ESPIPE, root-only calls).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from kernel_sim.fs.tmpfs import TmpfsError, TmpfsTunables
from kernel_sim.fs.vfs import Cred, OpenFile, Vfs, Vnode
from kernel_sim.geom.core import Mesh
from kernel_sim.kern.proc import KstackFailure, ProcTable
from kernel_sim.kern.sysapi import (
    EBADF,
    EINVAL,
    EMFILE,
    ENAMETOOLONG,
    ENOENT,
    ENOMEM,
    ENOTDIR,
    ENOTTY,
    EPERM,
    ESPIPE,
    ESRCH,
    O_RDWR,
    S_IFDIR,
    S_IFMT,
    SEEK_SET,
    Stat,
    StatFs,
    SysError,
)
from kernel_sim.kern.sysctl import SysctlError, SysctlTree
from kernel_sim.record import Record

NOFILE = 64              # the descriptor limit of a process here (RLIMIT_NOFILE); EMFILE beyond it
KENV_MNAMELEN = 128      # sys/sys/kenv.h
KENV_MVALLEN = 128       # sys/sys/kenv.h
_PATH_CONSOLE = "/dev/console"   # include/paths.h


class VirtualClock:
    """The kernel's virtual time: seconds since boot; only sleeping (or the kernel) moves it."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def now(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class Kernel(Record):
    """The kernel services every process's system calls share."""

    __slots__ = ("vfs", "sysctl", "kenv", "mesh", "procs", "clock", "printf", "reboot", "securelevel")

    def __init__(self, vfs: Vfs, sysctl: SysctlTree, kenv: dict[str, str], mesh: Mesh,
                 procs: ProcTable | None = None, clock: VirtualClock | None = None,
                 printf: Callable[[str], None] = lambda _s: None,
                 reboot: Callable[[int], None] = lambda _howto: None, securelevel: int = -1) -> None:
        self.vfs = vfs
        self.sysctl = sysctl
        self.kenv = kenv
        self.mesh = mesh
        self.procs = procs
        self.clock = VirtualClock() if clock is None else clock
        self.printf = printf
        self.reboot = reboot
        self.securelevel = securelevel


# ------------------------------------------------------------------------------ writable sysctls
_WRITERS: weakref.WeakKeyDictionary[SysctlTree, dict[str, Callable[[str], None]]] = weakref.WeakKeyDictionary()


def register_sysctl_writer(tree: SysctlTree, name: str, write: Callable[[str], None]) -> None:
    """A SYSCTL_PROC's write side: `write(text)` validates and applies (SysctlError on refusal).
    The OID is registered with a read handler; sysctl(2) here calls the writer instead of tree.set."""
    _WRITERS.setdefault(tree, {})[name] = write


def install_vfs_sysctls(tree: SysctlTree, tunables: TmpfsTunables) -> None:
    """vfs.tmpfs.memory_percent and vfs.tmpfs.memory_reserved (sys/fs/tmpfs/tmpfs_subr.c
    sysctl_mem_percent / sysctl_mem_reserved): read live from `tunables`, written through them."""
    tree.add_node("vfs.tmpfs", "tmpfs file system")
    tree.publish("vfs.tmpfs.memory_percent", "int", handler=lambda: tunables.memory_percent, readonly=False,
                 tunable=True, description="Percent of available memory that can be used if no size limit")
    tree.publish("vfs.tmpfs.memory_reserved", "long", handler=lambda: tunables.memory_reserved, readonly=False,
                 description="Amount of available memory and swap below which tmpfs growth stops")

    def setter(name: str, attr: str) -> Callable[[str], None]:
        def write(text: str) -> None:
            value = _parse_sysctl_int(name, text)
            try:
                setattr(tunables, attr, value)
            except TmpfsError as exc:
                raise SysctlError("EINVAL", name, exc.message) from None
        return write

    register_sysctl_writer(tree, "vfs.tmpfs.memory_percent", setter("vfs.tmpfs.memory_percent", "memory_percent"))
    register_sysctl_writer(tree, "vfs.tmpfs.memory_reserved",
                           setter("vfs.tmpfs.memory_reserved", "memory_reserved"))


def _parse_sysctl_int(name: str, text: str) -> int:
    from kernel_sim.errors import InputError
    from kernel_sim.loader.sizes import parse_int

    try:
        return parse_int(text)
    except InputError:
        raise SysctlError("EINVAL", name, f"sysctl: invalid integer '{text}'") from None


# ------------------------------------------------------------------------------ the process
class _Sink:
    """A driver's handle on a caller's descriptor (sysapi.FileSink)."""

    def __init__(self, vfs: Vfs, of: OpenFile) -> None:
        self.vfs = vfs
        self.of = of

    def write(self, data: bytes) -> int:
        return self.vfs.write(self.of, data)


class Syscalls:
    """sysapi.Sys for one process."""

    def __init__(self, kernel: Kernel, pid: int, *, uid: int = 0, gid: int = 0, cwd: Vnode | None = None) -> None:
        self.kernel = kernel
        self.vfs = kernel.vfs
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.cwd = cwd if cwd is not None else self.vfs.rootvnode()
        self.fds: dict[int, OpenFile] = {}
        self.exited: int | None = None
        self.vfs.cwd_holders.add(self)      # a working directory keeps its mount busy (vref)

    @property
    def cred(self) -> Cred:
        return Cred(self.uid, self.gid, (self.gid,))

    # -------------------------------------------------------------- construction
    @classmethod
    def for_init(cls, kernel: Kernel) -> Syscalls:
        """init's context (pid 1, root, cwd /) with the console on descriptors 0, 1 and 2."""
        if kernel.procs is not None and 1 not in kernel.procs.procs:
            raise SysError(ESRCH, "init (pid 1) has not been forked")
        self = cls(kernel, 1)
        self._open_console()
        return self

    def _open_console(self) -> None:
        """open(_PATH_CONSOLE, O_RDWR) then dup2 to 0, 1, 2; without devfs on /dev, the console of the
        kernel's devfs directly (what init gets when /dev is missing from the root image)."""
        try:
            of = self.vfs.open(_PATH_CONSOLE, O_RDWR, cred=self.cred, cwd=self.cwd, caller=self)
        except SysError:
            of = self.vfs.open_vnode(self.vfs.device_vnode("console"), O_RDWR, self.cred, self)
        self.fds[0] = of
        for fd in (1, 2):
            of.refs += 1
            self.fds[fd] = of

    # -------------------------------------------------------------- descriptors
    def _file(self, fd: int) -> OpenFile:
        of = self.fds.get(fd)
        if of is None:
            raise SysError(EBADF, f"descriptor {fd} is not open")
        return of

    def _alloc_fd(self) -> int:
        for fd in range(NOFILE):
            if fd not in self.fds:
                return fd
        raise SysError(EMFILE, f"{NOFILE} descriptors open")

    def open(self, path: str, flags: int = 0, mode: int = 0o666) -> int:
        if len(self.fds) >= NOFILE:
            raise SysError(EMFILE, f"{NOFILE} descriptors open")
        of = self.vfs.open(path, flags, mode, self.cred, self.cwd, caller=self)
        fd = self._alloc_fd()
        self.fds[fd] = of
        return fd

    def close(self, fd: int) -> None:
        of = self._file(fd)
        del self.fds[fd]
        self.vfs.close(of)

    def read(self, fd: int, size: int) -> bytes:
        return self.vfs.read(self._file(fd), size)

    def write(self, fd: int, data: bytes) -> int:
        return self.vfs.write(self._file(fd), data)

    def _positional(self, fd: int) -> OpenFile:
        of = self._file(fd)
        if of.device is not None and not of.device.seekable:
            raise SysError(ESPIPE)
        return of

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self.vfs.read(self._positional(fd), size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return self.vfs.write(self._positional(fd), data, offset)

    def lseek(self, fd: int, offset: int, whence: int = SEEK_SET) -> int:
        return self.vfs.lseek(self._file(fd), offset, whence)

    def ftruncate(self, fd: int, size: int) -> None:
        self.vfs.ftruncate(self._file(fd), size)

    def fstat(self, fd: int) -> Stat:
        return self.vfs.getattr(self._file(fd).vnode)

    def ioctl(self, fd: int, cmd: int, arg: bytes = b"", user: dict[int, bytearray] | None = None) -> bytes:
        of = self._file(fd)
        if of.device is None:
            raise SysError(ENOTTY)
        return of.device.ioctl(cmd, bytes(arg), user)

    def dup2(self, fd: int, newfd: int) -> int:
        of = self._file(fd)
        if not 0 <= newfd < NOFILE:
            raise SysError(EBADF, f"descriptor {newfd} is out of range")
        if newfd == fd:
            return newfd
        if newfd in self.fds:
            self.close(newfd)
        of.refs += 1
        self.fds[newfd] = of
        return newfd

    def file_sink(self, fd: int) -> _Sink:
        of = self._file(fd)
        if not of.writable:
            raise SysError(EBADF, f"descriptor {fd} is not open for writing")
        return _Sink(self.vfs, of)

    # -------------------------------------------------------------- names
    def stat(self, path: str) -> Stat:
        return self.vfs.getattr(self.vfs.lookup(path, self.cred, self.cwd))

    def lstat(self, path: str) -> Stat:
        return self.vfs.getattr(self.vfs.lookup(path, self.cred, self.cwd, follow=False))

    def readdir(self, path: str) -> list[str]:
        return [name for name, _vp in self.vfs.readdir(path, self.cred, self.cwd)]

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self.vfs.mkdir(path, mode, self.cred, self.cwd)

    def rmdir(self, path: str) -> None:
        self.vfs.rmdir(path, self.cred, self.cwd)

    def unlink(self, path: str) -> None:
        self.vfs.unlink(path, self.cred, self.cwd)

    def rename(self, old: str, new: str) -> None:
        self.vfs.rename(old, new, self.cred, self.cwd)

    def symlink(self, target: str, path: str) -> None:
        self.vfs.symlink(target, path, self.cred, self.cwd)

    def readlink(self, path: str) -> str:
        return self.vfs.readlink(path, self.cred, self.cwd)

    def truncate(self, path: str, size: int) -> None:
        self.vfs.truncate(path, size, self.cred, self.cwd)

    def chdir(self, path: str) -> None:
        vp = self.vfs.lookup(path, self.cred, self.cwd)
        st = self.vfs.getattr(vp)
        if st.mode & S_IFMT != S_IFDIR:
            raise SysError(ENOTDIR)
        self.vfs.access(st, self.cred, 1)
        self.cwd = vp

    def getcwd(self) -> str:
        return self.vfs.getcwd(self.cwd)

    # -------------------------------------------------------------- mounts
    def mount(self, fstype: str, path: str, options: dict[str, str]) -> None:
        self.vfs.mount(fstype, path, options, self.cred, self.cwd)

    def unmount(self, path: str, force: bool = False) -> None:
        self.vfs.unmount(path, force, self.cred, self.cwd)

    def getfsstat(self) -> list[StatFs]:
        return self.vfs.getfsstat()

    def statfs(self, path: str) -> StatFs:
        return self.vfs.statfs(path, self.cred, self.cwd)

    # -------------------------------------------------------------- kernel state
    def sysctl(self, name: str, new: str | None = None) -> list[tuple[str, str]]:
        tree = self.kernel.sysctl
        try:
            if new is None:
                return [(leaf, str(tree.get(leaf))) for leaf in tree.list(name)]
            if self.uid != 0:
                tree.oid(name)                            # ENOENT before EPERM, as sysctl(3)
                raise SysError(EPERM, f"sysctl: {name}: only root may set it")
            writer = _WRITERS.get(tree, {}).get(name)
            if writer is not None:
                old = tree.get(name)
                writer(new)
            else:
                old = tree.set(name, new)
            return [(name, str(old))]
        except SysctlError as exc:
            raise SysError(exc.errno, exc.message) from None

    def kenv(self, name: str | None = None, value: str | None = None, unset: bool = False) -> list[tuple[str, str]]:
        """kenv(2): KENV_DUMP, KENV_GET (ENOENT), KENV_SET and KENV_UNSET (root only)."""
        env = self.kernel.kenv
        if name is None:
            return list(env.items())
        if len(name) + 1 > KENV_MNAMELEN + 1:
            raise SysError(ENAMETOOLONG, f"kenv: name of {len(name)} bytes")
        if unset or value is not None:
            if self.uid != 0:
                raise SysError(EPERM, "kenv: only root may change the kernel environment")
            if unset:
                if name not in env:
                    raise SysError(ENOENT, f"kenv: {name} is not set")
                return [(name, env.pop(name))]
            assert value is not None
            if len(value) + 1 > KENV_MVALLEN + 1:
                raise SysError(EINVAL, f"kenv: value of {len(value)} bytes")
            env[name] = value
            return [(name, value)]
        if name not in env:
            raise SysError(ENOENT, f"kenv: {name} is not set")
        return [(name, env[name])]

    def geom_conf(self, what: str = "conftxt") -> str:
        mesh = self.kernel.mesh
        dumps = {"conftxt": mesh.conftxt, "confxml": mesh.confxml, "confdot": mesh.confdot}
        if what not in dumps:
            raise SysError(ENOENT, f"sysctl: unknown oid 'kern.geom.{what}'")
        return dumps[what]()

    def geom_list(self, cls: str | None = None) -> str:
        from kernel_sim.geom.listing import GeomClassNotFound, geom_list

        try:
            return geom_list(self.kernel.mesh, cls)
        except GeomClassNotFound as exc:
            raise SysError(ENOENT, str(exc)) from None

    # -------------------------------------------------------------- processes and time
    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise SysError(EINVAL)
        self.kernel.clock.advance(seconds)

    def time(self) -> float:
        return self.kernel.clock.now()

    def spawn_kstack(self, comm: str, uid: int | None = None) -> Syscalls:
        """fork + exec of a command: a child with its own kernel stack, the parent's cwd and 0-2."""
        if uid is not None and uid != self.uid and self.uid != 0:
            raise SysError(EPERM, "only root may run a command as another user")
        procs = self.kernel.procs
        if procs is None:
            raise SysError(ENOMEM, "the kernel has no process table yet")
        try:
            proc = procs.fork(self.pid, comm)
        except KstackFailure as exc:
            raise SysError(ENOMEM, f"fork: no kernel stack ({exc.reason})") from None
        child_uid = self.uid if uid is None else uid
        proc.uid = child_uid
        # No group database: another user's primary group has the user's number (adduser's default).
        child_gid = self.gid if uid is None else (0 if uid == 0 else uid)
        child = Syscalls(self.kernel, proc.pid, uid=child_uid, gid=child_gid, cwd=self.cwd)
        for fd in (0, 1, 2):
            of = self.fds.get(fd)
            if of is not None:
                of.refs += 1
                child.fds[fd] = of
        return child

    def exit(self, status: int) -> None:
        """exit(2): every descriptor closed, the kernel stack's pages and KVA given back."""
        if self.exited is not None:
            return
        for fd in list(self.fds):
            self.close(fd)
        self.exited = status
        procs = self.kernel.procs
        if procs is not None and self.pid in procs.procs:
            procs.exit(self.pid)

    def reboot(self, howto: int) -> None:
        if self.uid != 0:
            raise SysError(EPERM, "reboot: only root may halt the system")
        self.kernel.reboot(howto)



def make_kernel(mesh: Mesh, *, pages=None, malloc=None, kmem=None, sysctl: SysctlTree | None = None,
                kenv: dict[str, str] | None = None, procs: ProcTable | None = None,
                clock: VirtualClock | None = None, printf: Callable[[str], None] = lambda _s: None,
                reboot: Callable[[int], None] = lambda _howto: None,
                console_read: Callable[[int], bytes] | None = None,
                console_write: Callable[[bytes], None] | None = None,
                swap_pages_free: Callable[[], int] = lambda: 0, vfs: Vfs | None = None, vm=None) -> Kernel:
    """Wire the VFS, devfs, tmpfs's services and the vfs.tmpfs sysctls into one Kernel.

    `pages` is the PhysAllocator; tmpfs's kmem charges go to `kmem`, or to malloc(9) through
    MallocCharges when `malloc` is given. An existing `vfs` (the one the root was mounted on) gets
    these services and the console callables."""
    from kernel_sim.fs.devfs import Devfs
    from kernel_sim.fs.vfs import MallocCharges, VfsServices

    clock = clock or VirtualClock()
    if kmem is None and malloc is not None:
        kmem = MallocCharges(malloc)
    tunables = TmpfsTunables.at_init(pages, swap_pages_free) if pages is not None else None
    if vm is not None:
        swap_pages_free = vm.swap_pages_free
    services = VfsServices(pages, kmem, swap_pages_free, clock.now, tunables, printf, vm)
    if vfs is None:
        vfs = Vfs(mesh, services, Devfs(mesh, console_read=console_read, console_write=console_write, now=clock.now))
    else:
        vfs.services = services
        if console_read is not None:
            vfs.devfs.console.read = console_read
        if console_write is not None:
            vfs.devfs.console.write = console_write
    sysctl = sysctl if sysctl is not None else SysctlTree()
    if tunables is not None:
        install_vfs_sysctls(sysctl, tunables)
    kernel = Kernel(vfs, sysctl, kenv if kenv is not None else {}, mesh, procs, clock, printf, reboot)
    install_securelevel(kernel)
    return kernel


def install_securelevel(kernel: Kernel) -> None:
    """kern.securelevel (sys/kern/kern_mib.c sysctl_kern_securelvl): root may raise it, never lower it
    (EPERM), as init alone may in FreeBSD."""
    tree = kernel.sysctl
    try:
        tree.oid("kern.securelevel")
        return                                    # the kernel registered its own
    except SysctlError:
        pass
    tree.add("kern.securelevel", "int", handler=lambda: kernel.securelevel, readonly=False,
             description="Current secure level")

    def write(text: str) -> None:
        level = _parse_sysctl_int("kern.securelevel", text)
        if level < kernel.securelevel:
            raise SysctlError("EPERM", "kern.securelevel", "sysctl: kern.securelevel may only be raised")
        kernel.securelevel = level

    register_sysctl_writer(tree, "kern.securelevel", write)


__all__ = ["Kernel", "Syscalls", "VirtualClock", "install_securelevel", "install_vfs_sysctls", "make_kernel",
           "register_sysctl_writer",
           "NOFILE"]
