"""The VFS: one namespace of mounts, namei, open files, nmount/unmount and statfs.

Why one module: namei, the mount table and struct file are what every file system shares, and the
system-call layer (kernel_sim/kern/syscalls.py) and the root mount only ever talk to this facade.
A file system plugs in through the small `FileSystem` adapter (fsapi.py: inode numbers in, sysapi.Stat
out, SysError with FreeBSD's errno on failure); the UFS and tmpfs adapters live at the end of this
module, devfs and cd9660 in their own. A vnode is (mount, ino).

Semantics follow sys/kern/vfs_lookup.c (namei: mount points crossed both ways, MAXSYMLINKS, "." and
"..", trailing slashes, nosymfollow), vfs_mount.c (nmount options, MNT_* flags, unmount's EBUSY) and
vfs_syscalls.c / vfs_vnops.c (EROFS, EISDIR, EEXIST, the access checks: root bypasses the mode bits).
"""

from __future__ import annotations

import struct
import weakref
from collections import namedtuple
from collections.abc import Callable

from kernel_sim.fs.devfs import Devfs
from kernel_sim.fs.fsapi import DeviceFile, FileSystem, FsFigures, ReadOnlyFs, open_provider
from kernel_sim.fs.tmpfs import TmpfsError, TmpfsMount, TmpfsTunables
from kernel_sim.fs.ufs import UfsError, UfsMount
from kernel_sim.geom.core import Consumer, GeomError, Mesh, report_io_error
from kernel_sim.kern.sysapi import (
    EACCES,
    EBADF,
    EBUSY,
    EEXIST,
    EINVAL,
    EIO,
    EISDIR,
    ELOOP,
    ENAMETOOLONG,
    ENODEV,
    ENOENT,
    ENOTDIR,
    ENOTEMPTY,
    ENXIO,
    EOPNOTSUPP,
    EPERM,
    EROFS,
    ESPIPE,
    O_ACCMODE,
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    Caller,
    Stat,
    StatFs,
    SysError,
)
from kernel_sim.record import Record

MAXSYMLINKS = 32        # sys/sys/param.h
MAXPATHLEN = 1024       # sys/sys/param.h (PATH_MAX, sys/sys/syslimits.h)
NAME_MAX = 255          # sys/sys/syslimits.h
ALLPERMS = 0o7777       # sys/sys/stat.h
S_ISVTX = 0o1000        # sys/sys/stat.h
VREAD, VWRITE, VEXEC = 4, 2, 1   # the rwx bits of one class of the mode (sys/sys/vnode.h VREAD >> 6)

# sbin/mount/mount.c optnames[]: the words mount(8) prints, in its order, and the MNT_* they stand for.
MNT_FLAG_WORDS = ("asynchronous", "NFS exported", "local", "noatime", "noexec", "nosuid", "nosymfollow",
                  "with quotas", "read-only", "synchronous", "union")
# vfs_mount.c vfs_donmount: options it turns into mount flags itself (the file system never sees them).
_VFS_FLAG_OPTS = {"update", "ro", "rw", "rdonly", "noro", "force", "noatime", "async", "noasync", "sync",
                  "suid", "exec"}

VfsError = SysError   # the old name: callers catching VfsError keep working


# ------------------------------------------------------------------------------ credentials
class Cred(namedtuple("Cred", "uid gid groups", defaults=(0, 0, ()))):
    """struct ucred: the ids the access checks use."""

    __slots__ = ()

    uid: int
    gid: int
    groups: tuple[int, ...]

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


ROOT = Cred(0, 0, (0,))


class _KernelCaller:
    """The kernel itself as a device's caller (root, pid 0): the root mount, the monitor."""

    uid = 0
    pid = 0

    def file_sink(self, fd: int):
        raise SysError(EBADF, "the kernel has no descriptors")


KERNEL_CALLER = _KernelCaller()


# ------------------------------------------------------------------------------ mounts and vnodes
class Mount(Record):
    """struct mount: one mounted file system and where it sits in the namespace."""

    __slots__ = (
        "fstype", "source", "path", "readonly", "fs", "covered", "fsid", "nosuid", "noexec", "nosymfollow",
        "noatime", "opencount", "consumer",
    )

    __eq__ = object.__eq__      # eq=False: compared by identity
    __hash__ = object.__hash__

    def __init__(self, fstype: str, source: str, path: str, readonly: bool, fs: FileSystem, covered: Vnode | None,
                 fsid: int, nosuid: bool = False, noexec: bool = False, nosymfollow: bool = False,
                 noatime: bool = False, opencount: int = 0, consumer: Consumer | None = None) -> None:
        self.fstype = fstype
        self.source = source  # f_mntfromname: "/dev/md0", "tmpfs", "devfs"
        self.path = path  # f_mntonname: "/", "/tmp"
        self.readonly = readonly
        self.fs = fs
        self.covered = covered  # the vnode this mount hides (None for the root)
        self.fsid = fsid
        self.nosuid = nosuid
        self.noexec = noexec
        self.nosymfollow = nosymfollow
        self.noatime = noatime
        self.opencount = opencount  # open files on this mount (unmount's EBUSY)
        self.consumer = consumer

    @property
    def root(self) -> Vnode:
        return Vnode(self, self.fs.root_ino)

    def flag_words(self) -> tuple[str, ...]:
        on = {"local": self.fs.local, "noatime": self.noatime, "noexec": self.noexec, "nosuid": self.nosuid,
              "nosymfollow": self.nosymfollow, "read-only": self.readonly}
        return tuple(w for w in MNT_FLAG_WORDS if on.get(w))


class Vnode(namedtuple("Vnode", "mount ino")):
    __slots__ = ()

    mount: Mount
    ino: int


class Lookup(namedtuple("Lookup", "dvp name vp")):
    """namei's answer: the directory searched last, the last name, and the vnode (None: absent)."""

    __slots__ = ()

    dvp: Vnode
    name: str
    vp: Vnode | None


# ------------------------------------------------------------------------------ open files
class OpenFile(Record):
    """struct file: a vnode, the open mode, the shared offset; dup'd descriptors share one."""

    __slots__ = ("vnode", "flags", "device", "offset", "refs", "dead", "is_dir")

    __eq__ = object.__eq__      # eq=False: compared by identity
    __hash__ = object.__hash__

    def __init__(self, vnode: Vnode, flags: int, device: DeviceFile | None = None, offset: int = 0, refs: int = 1,
                 dead: bool = False, is_dir: bool = False) -> None:
        self.vnode = vnode
        self.flags = flags
        self.device = device
        self.offset = offset
        self.refs = refs
        self.dead = dead  # its mount was forcibly unmounted (deadfs)
        self.is_dir = is_dir  # fixed at open: a vnode's type never changes

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE in (O_WRONLY, O_RDWR)


# ------------------------------------------------------------------------------ services
class VfsServices(Record):
    """The kernel services file systems need: tmpfs's pages and kmem, the clock."""

    __slots__ = ("pages", "kmem", "swap_pages_free", "now", "tmpfs_tunables", "printf", "vm")

    def __init__(self, pages: object = None, kmem: object = None, swap_pages_free: Callable[[], int] = lambda: 0,
                 now: Callable[[], float] = lambda: 0.0, tmpfs_tunables: TmpfsTunables | None = None,
                 printf: Callable[[str], None] = lambda _s: None, vm: object = None) -> None:
        self.pages = pages  # PhysAllocator
        self.kmem = kmem  # charge(mtype, n) -> bool / uncharge
        self.swap_pages_free = swap_pages_free
        self.now = now
        self.tmpfs_tunables = tmpfs_tunables
        self.printf = printf  # the kernel's console (file systems' complaints)
        self.vm = vm  # kernel_sim.vm.pageout.VmSwap: tmpfs's pages, swap


FsFactory = Callable[["Vfs", dict[str, str], bool, Stat | None], FileSystem]


# ------------------------------------------------------------------------------ the VFS
class Vfs:
    """The mount table and every path operation; `cred` and `cwd` come from the calling process."""

    def __init__(self, mesh: Mesh, services: VfsServices | None = None, devfs=None) -> None:
        self.mesh = mesh
        self.services = services or VfsServices()
        self.devfs = devfs if devfs is not None else Devfs(mesh, now=self.services.now)
        self.mount_list: list[Mount] = []                 # mount order (getfsstat's order)
        self._covered: dict[tuple[int, int], Mount] = {}  # (id(covered mount), ino) -> mount on top
        self._next_fsid = 1
        self.open_files: set[OpenFile] = set()
        self.cwd_holders: weakref.WeakSet = weakref.WeakSet()   # processes: `.cwd` (a Vnode), `.exited`
        self._detached_devfs: Mount | None = None
        self.factories: dict[str, FsFactory] = {"ufs": _mount_ufs, "tmpfs": _mount_tmpfs,
                                                 "devfs": _mount_devfs, "cd9660": _mount_cd9660}

    def __getstate__(self) -> dict:
        """A snapshot keeps the covered-vnode table by its mounts: its keys are id()s, which a
        loaded state has new ones of."""
        state = dict(self.__dict__)
        state["_covered"] = [(m.covered.mount, m.covered.ino, m) for m in self._covered.values()]
        return state

    def __setstate__(self, state: dict) -> None:
        covered = state.pop("_covered")
        self.__dict__.update(state)
        self._covered = {(id(mount), ino): m for mount, ino, m in covered}

    # -------------------------------------------------------------- the mount table
    @property
    def mounts(self) -> dict[str, Mount]:
        """Mounted file systems by mount point; the newest one where several share a path."""
        return {m.path: m for m in self.mount_list}

    def root(self) -> Mount:
        mounts = self.mounts
        if "/" not in mounts:
            raise SysError(ENXIO, "no root file system is mounted")
        return mounts["/"]

    def rootvnode(self) -> Vnode:
        if not self.mount_list or self.mount_list[0].covered is not None:
            raise SysError(ENOENT, "no root file system is mounted")
        return self._cross_down(self.mount_list[0].root)

    def device_vnode(self, name: str) -> Vnode:
        """/dev/NAME of the kernel's devfs even when no devfs is mounted (init's console)."""
        if self._detached_devfs is None:
            fs = self.devfs.mount_adapter({})
            self._detached_devfs = Mount("devfs", "devfs", "/dev", False, fs, None, 0)
        fs = self._detached_devfs.fs
        return Vnode(self._detached_devfs, fs.lookup(fs.root_ino, name))

    def _cross_down(self, vp: Vnode) -> Vnode:
        while (top := self._covered.get((id(vp.mount), vp.ino))) is not None:
            vp = top.root
        return vp

    def _is_root_of_mount(self, vp: Vnode) -> bool:
        return vp.ino == vp.mount.fs.root_ino

    # -------------------------------------------------------------- attributes and access
    def getattr(self, vp: Vnode) -> Stat:
        st = vp.mount.fs.getattr(vp.ino)
        return st._replace(dev=vp.mount.fsid)

    @staticmethod
    def access(st: Stat, cred: Cred, want: int) -> None:
        """vaccess(): root passes (execute needs one x bit on a non-directory); others need the bits."""
        if cred.uid == 0:
            if want & VEXEC and st.mode & S_IFMT != S_IFDIR and not st.mode & 0o111:
                raise SysError(EACCES)
            return
        if st.uid == cred.uid:
            bits = (st.mode >> 6) & 7
        elif cred.in_group(st.gid):
            bits = (st.mode >> 3) & 7
        else:
            bits = st.mode & 7
        if want & ~bits:
            raise SysError(EACCES)

    # -------------------------------------------------------------- namei
    def namei(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None, *, follow: bool = True,
              parent: bool = False, willbedir: bool = False) -> Lookup:
        """vfs_lookup over the whole namespace. With `parent` the last component may be absent (vp None);
        without it a missing name is ENOENT."""
        if len(path.encode("utf-8", "surrogateescape")) >= MAXPATHLEN:
            raise SysError(ENAMETOOLONG, f"{path[:32]}...: path of {len(path)} bytes")
        if not path:
            raise SysError(ENOENT, "empty path")
        root = self.rootvnode()
        cur = root if path.startswith("/") or cwd is None else cwd
        if parent and not path.strip("/"):
            raise SysError(EISDIR, f"{path}: the root directory")   # vfs_lookup: a degenerate name
        pending = path.split("/")
        trailing = path.endswith("/") and path.strip("/") != ""
        links = 0
        name = "."
        dvp: Vnode = cur
        vp: Vnode | None = cur
        while pending:
            comp = pending.pop(0)
            if comp == "":
                continue
            last = not any(pending)
            st = self.getattr(cur)
            if st.mode & S_IFMT != S_IFDIR:
                raise SysError(ENOTDIR, f"{path}: a component is not a directory")
            self.access(st, cred, VEXEC)
            if len(comp.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise SysError(ENAMETOOLONG, f"{comp[:32]}...: name longer than {NAME_MAX} bytes")
            dvp, name = cur, comp
            if comp == ".":
                vp = cur
            elif comp == "..":
                up = cur
                while up != root and self._is_root_of_mount(up) and up.mount.covered is not None:
                    up = up.mount.covered
                vp = up if up == root else Vnode(up.mount, up.mount.fs.lookup(up.ino, ".."))
                dvp = up
            else:
                try:
                    ino = cur.mount.fs.lookup(cur.ino, comp)
                except SysError as exc:
                    if exc.errno == ENOENT and last and parent:
                        if trailing and not willbedir:
                            raise SysError(ENOENT, f"{path}: trailing slash on a file to create") from None
                        return Lookup(cur, comp, None)
                    raise
                vp = self._cross_down(Vnode(cur.mount, ino))
                vst = self.getattr(vp)
                if vst.mode & S_IFMT == S_IFLNK and (not last or follow or trailing):
                    if vp.mount.nosymfollow:
                        raise SysError(EACCES, f"{path}: symbolic link on a nosymfollow mount")
                    links += 1
                    if links > MAXSYMLINKS:
                        raise SysError(ELOOP, f"{path}: more than {MAXSYMLINKS} symbolic links")
                    target = vp.mount.fs.readlink(vp.ino)
                    if not target:
                        raise SysError(ENOENT, f"{path}: empty symbolic link")
                    rest = "/".join(pending)
                    if len(target) + len(rest) + 1 >= MAXPATHLEN:
                        raise SysError(ENAMETOOLONG, f"{path}: symbolic link expansion too long")
                    pending = target.split("/") + pending
                    if target.startswith("/"):
                        cur = root
                    continue
            if not last:
                cur = vp
        if trailing and vp is not None and self.getattr(vp).mode & S_IFMT != S_IFDIR:
            raise SysError(ENOTDIR, f"{path}: not a directory")
        return Lookup(dvp, name, vp)

    def lookup(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None, *, follow: bool = True) -> Vnode:
        vp = self.namei(path, cred, cwd, follow=follow).vp
        assert vp is not None
        return vp

    # -------------------------------------------------------------- names
    def _writable_dir(self, dvp: Vnode, cred: Cred) -> None:
        """The checks a CREATE/DELETE/RENAME makes on the directory: EROFS, then VWRITE|VEXEC."""
        if dvp.mount.readonly:
            raise SysError(EROFS)
        self.access(self.getattr(dvp), cred, VWRITE | VEXEC)

    def _sticky_check(self, dvp: Vnode, vp: Vnode, cred: Cred) -> None:
        """A sticky directory (/tmp) lets only the owner of the file or of the directory remove it."""
        if cred.uid == 0:
            return
        dst = self.getattr(dvp)
        if dst.mode & S_ISVTX and self.getattr(vp).uid != cred.uid and dst.uid != cred.uid:
            raise SysError(EPERM)

    def mkdir(self, path: str, mode: int, cred: Cred = ROOT, cwd: Vnode | None = None) -> Vnode:
        nd = self.namei(path, cred, cwd, follow=False, parent=True, willbedir=True)
        if nd.vp is not None:
            raise SysError(EEXIST)
        self._writable_dir(nd.dvp, cred)
        st = self.getattr(nd.dvp)
        ino = nd.dvp.mount.fs.mkdir(nd.dvp.ino, nd.name, mode & ALLPERMS, cred.uid, st.gid)
        return Vnode(nd.dvp.mount, ino)

    def rmdir(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> None:
        nd = self.namei(path, cred, cwd, follow=False, parent=True)
        if nd.vp is None:
            raise SysError(ENOENT)
        if nd.name == ".":
            raise SysError(EINVAL)
        if nd.name == "..":
            raise SysError(ENOTEMPTY)
        if self.getattr(nd.vp).mode & S_IFMT != S_IFDIR:
            raise SysError(ENOTDIR)
        if nd.vp.mount is not nd.dvp.mount:
            raise SysError(EBUSY, f"{path}: a file system is mounted here")
        self._writable_dir(nd.dvp, cred)
        self._sticky_check(nd.dvp, nd.vp, cred)
        nd.dvp.mount.fs.rmdir(nd.dvp.ino, nd.name)

    def unlink(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> None:
        nd = self.namei(path, cred, cwd, follow=False, parent=True)
        if nd.vp is None:
            raise SysError(ENOENT)
        if self.getattr(nd.vp).mode & S_IFMT == S_IFDIR:
            raise SysError(EPERM, f"{path}: is a directory (unlink(2) gives EPERM)")
        self._writable_dir(nd.dvp, cred)
        self._sticky_check(nd.dvp, nd.vp, cred)
        nd.dvp.mount.fs.unlink(nd.dvp.ino, nd.name)

    def symlink(self, target: str, path: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> Vnode:
        if len(target.encode("utf-8", "surrogateescape")) >= MAXPATHLEN:
            raise SysError(ENAMETOOLONG)
        nd = self.namei(path, cred, cwd, follow=False, parent=True)
        if nd.vp is not None:
            raise SysError(EEXIST)
        self._writable_dir(nd.dvp, cred)
        gid = self.getattr(nd.dvp).gid
        return Vnode(nd.dvp.mount, nd.dvp.mount.fs.symlink(nd.dvp.ino, nd.name, target, cred.uid, gid))

    def readlink(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> str:
        vp = self.lookup(path, cred, cwd, follow=False)
        if self.getattr(vp).mode & S_IFMT != S_IFLNK:
            raise SysError(EINVAL, f"{path}: not a symbolic link")
        return vp.mount.fs.readlink(vp.ino)

    def rename(self, old: str, new: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> None:
        src = self.namei(old, cred, cwd, follow=False, parent=True)
        if src.vp is None:
            raise SysError(ENOENT)
        if src.name in (".", ".."):
            raise SysError(EINVAL)
        dst = self.namei(new, cred, cwd, follow=False, parent=True,
                         willbedir=self.getattr(src.vp).mode & S_IFMT == S_IFDIR)
        if dst.name in (".", ".."):
            raise SysError(EINVAL)
        if src.vp.mount is not src.dvp.mount or (dst.vp is not None and dst.vp.mount is not dst.dvp.mount):
            raise SysError(EBUSY, "a mount point cannot be renamed")
        if src.dvp.mount is not dst.dvp.mount:
            raise SysError(EXDEV_ERRNO)
        self._writable_dir(src.dvp, cred)
        self._writable_dir(dst.dvp, cred)
        self._sticky_check(src.dvp, src.vp, cred)
        if dst.vp is not None:
            self._sticky_check(dst.dvp, dst.vp, cred)
        src.dvp.mount.fs.rename(src.dvp.ino, src.name, dst.dvp.ino, dst.name)

    def readdir(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> list[tuple[str, Vnode]]:
        """(name, vnode) in directory order; entries that are mount points name the mounted root, and
        ".." of a mount's root names the covered directory's parent."""
        vp = self.lookup(path, cred, cwd)
        return self.readdir_vnode(vp, cred)

    def readdir_vnode(self, vp: Vnode, cred: Cred = ROOT) -> list[tuple[str, Vnode]]:
        st = self.getattr(vp)
        if st.mode & S_IFMT != S_IFDIR:
            raise SysError(ENOTDIR)
        self.access(st, cred, VREAD)
        out = []
        for name, ino in vp.mount.fs.readdir(vp.ino):
            child = Vnode(vp.mount, ino)
            if name == ".." and self._is_root_of_mount(vp) and vp.mount.covered is not None:
                up = vp.mount.covered           # ".." of a mount's root is the covered directory's parent
                child = Vnode(up.mount, up.mount.fs.lookup(up.ino, ".."))
            out.append((name, child))
        return out

    def getcwd(self, vp: Vnode) -> str:
        """vn_fullpath by walking up: each directory's name found in its parent's entries."""
        root = self.rootvnode()
        parts: list[str] = []
        seen = 0
        while vp != root:
            seen += 1
            if seen > MAXPATHLEN:
                raise SysError(ENOENT, "directory no longer reachable from /")
            if self._is_root_of_mount(vp) and vp.mount.covered is not None:
                vp = vp.mount.covered
                continue
            parent = Vnode(vp.mount, vp.mount.fs.lookup(vp.ino, ".."))
            if parent == vp:
                raise SysError(ENOENT, "directory no longer reachable from /")
            name = next((n for n, ino in vp.mount.fs.readdir(parent.ino)
                         if ino == vp.ino and n not in (".", "..")), None)
            if name is None:
                raise SysError(ENOENT, "directory was removed")
            parts.append(name)
            vp = self._cross_down(parent) if self._is_root_of_mount(parent) else parent
        return "/" + "/".join(reversed(parts))

    # -------------------------------------------------------------- open files
    def open(self, path: str, flags: int, mode: int = 0o666, cred: Cred = ROOT, cwd: Vnode | None = None,
             caller: Caller = KERNEL_CALLER) -> OpenFile:
        """vn_open: O_CREAT/O_EXCL/O_TRUNC/O_DIRECTORY/O_NOFOLLOW, EISDIR, EROFS, EACCES."""
        accmode = flags & O_ACCMODE
        if accmode == O_ACCMODE:
            raise SysError(EINVAL, "O_ACCMODE is not an access mode")
        follow = not (flags & O_NOFOLLOW) and not (flags & O_CREAT and flags & O_EXCL)
        if flags & O_CREAT:
            nd = self.namei(path, cred, cwd, follow=follow, parent=True)
            if nd.vp is None:
                self._writable_dir(nd.dvp, cred)
                gid = self.getattr(nd.dvp).gid
                ino = nd.dvp.mount.fs.create(nd.dvp.ino, nd.name, mode & ALLPERMS, cred.uid, gid)
                vp = Vnode(nd.dvp.mount, ino)
                return self._open_vnode(vp, flags & ~O_TRUNC, cred, caller, created=True)
            if flags & O_EXCL:
                raise SysError(EEXIST)
            vp = nd.vp
        else:
            vp = self.lookup(path, cred, cwd, follow=not flags & O_NOFOLLOW)
        return self._open_vnode(vp, flags, cred, caller)

    def _open_vnode(self, vp: Vnode, flags: int, cred: Cred, caller: Caller, created: bool = False) -> OpenFile:
        st = self.getattr(vp)
        kind = st.mode & S_IFMT
        if kind == S_IFLNK:
            raise SysError(ELOOP, "O_NOFOLLOW on a symbolic link")   # vn_open_cred (EMLINK from FreeBSD 13)
        if flags & O_DIRECTORY and kind != S_IFDIR:
            raise SysError(ENOTDIR)
        writing = flags & O_ACCMODE in (O_WRONLY, O_RDWR) or bool(flags & O_TRUNC)
        if kind == S_IFDIR and writing:
            raise SysError(EISDIR)
        if not created:
            if writing and kind in (S_IFREG, S_IFDIR) and vp.mount.readonly:
                raise SysError(EROFS)
            want = (VREAD if flags & O_ACCMODE in (O_RDONLY, O_RDWR) else 0) | (VWRITE if writing else 0)
            self.access(st, cred, want)
        device = None
        if kind == S_IFCHR:
            device = vp.mount.fs.open_device(vp.ino, flags, caller)
        elif flags & O_TRUNC and kind == S_IFREG and st.size:
            vp.mount.fs.truncate(vp.ino, 0)
        of = OpenFile(vp, flags, device, is_dir=kind == S_IFDIR)
        vp.mount.opencount += 1
        self.open_files.add(of)
        return of

    def open_vnode(self, vp: Vnode, flags: int, cred: Cred = ROOT, caller: Caller = KERNEL_CALLER) -> OpenFile:
        """Open a vnode found without a path (the console before devfs is on /dev)."""
        return self._open_vnode(vp, flags, cred, caller)

    def close(self, of: OpenFile) -> None:
        """Drop one reference; the last one closes the device and releases the mount."""
        of.refs -= 1
        if of.refs > 0:
            return
        self.open_files.discard(of)
        if not of.dead:
            of.vnode.mount.opencount -= 1
            if of.device is not None:
                of.device.close()

    def _live(self, of: OpenFile) -> None:
        if of.dead:
            raise SysError(EIO, "the file system this file was on was forcibly unmounted")

    def read(self, of: OpenFile, size: int, offset: int | None = None) -> bytes:
        """read(2) at the file offset, or pread(2) at `offset` (the file offset then stays)."""
        if not of.readable:
            raise SysError(EBADF, "not open for reading")
        if size < 0:
            raise SysError(EINVAL)
        self._live(of)
        pos = of.offset if offset is None else offset
        if pos < 0:
            raise SysError(EINVAL)
        vp = of.vnode
        if of.device is not None:
            data = of.device.read(pos, size)
        else:
            if of.is_dir:
                raise SysError(EISDIR)
            data = vp.mount.fs.read(vp.ino, pos, size)
        if offset is None:
            of.offset = pos + len(data)
        return data

    def write(self, of: OpenFile, data: bytes, offset: int | None = None) -> int:
        """write(2) (O_APPEND: at the end) or pwrite(2) at `offset`."""
        if not of.writable:
            raise SysError(EBADF, "not open for writing")
        self._live(of)
        vp = of.vnode
        if of.device is not None:
            pos = of.offset if offset is None else offset
            n = of.device.write(pos, bytes(data))
        else:
            if vp.mount.readonly:
                raise SysError(EROFS)
            if offset is not None:
                pos = offset
            elif of.flags & O_APPEND:
                pos = self.getattr(vp).size
            else:
                pos = of.offset
            if pos < 0:
                raise SysError(EINVAL)
            n = vp.mount.fs.write(vp.ino, pos, bytes(data))
        if offset is None:
            of.offset = pos + n
        return n

    def lseek(self, of: OpenFile, offset: int, whence: int) -> int:
        self._live(of)
        if of.device is not None and not of.device.seekable:
            raise SysError(ESPIPE)
        if whence == 0:
            new = offset
        elif whence == 1:
            new = of.offset + offset
        elif whence == 2:
            new = self.getattr(of.vnode).size + offset
        else:
            raise SysError(EINVAL, f"whence {whence}")
        if new < 0 and of.device is None:
            raise SysError(EINVAL)
        of.offset = new
        return new

    def ftruncate(self, of: OpenFile, size: int) -> None:
        if not of.writable:
            raise SysError(EINVAL, "not open for writing")   # kern_ftruncate: EINVAL, as FreeBSD
        self._live(of)
        self._truncate_vnode(of.vnode, size)

    def truncate(self, path: str, size: int, cred: Cred = ROOT, cwd: Vnode | None = None) -> None:
        vp = self.lookup(path, cred, cwd)
        st = self.getattr(vp)
        if st.mode & S_IFMT == S_IFDIR:
            raise SysError(EISDIR)
        if vp.mount.readonly:
            raise SysError(EROFS)
        self.access(st, cred, VWRITE)
        self._truncate_vnode(vp, size)

    def _truncate_vnode(self, vp: Vnode, size: int) -> None:
        if size < 0:
            raise SysError(EINVAL)
        kind = self.getattr(vp).mode & S_IFMT
        if kind == S_IFDIR:
            raise SysError(EISDIR)
        if kind != S_IFREG:
            raise SysError(EINVAL)
        if vp.mount.readonly:
            raise SysError(EROFS)
        vp.mount.fs.truncate(vp.ino, size)

    # -------------------------------------------------------------- mount / unmount / statfs
    def mount(self, fstype: str, path: str, options: dict[str, str] | None = None, cred: Cred = ROOT,
              cwd: Vnode | None = None) -> Mount:
        """nmount(2): "from", "ro"/"rw", "update", "nosuid", "noexec", "nosymfollow" and the file
        system's own options. Only root mounts (vfs.usermount is 0)."""
        options = dict(options or {})
        if cred.uid != 0:
            raise SysError(EPERM, "only root may mount")
        if len(fstype) >= 16:                           # MFSNAMELEN, sys/sys/mount.h
            raise SysError(ENAMETOOLONG)
        readonly = "ro" in options or "rdonly" in options
        if "rw" in options or "noro" in options:
            readonly = False
        if "update" in options:
            return self._update(path, options, readonly, cred, cwd)
        factory = self.factories.get(fstype)
        if factory is None:
            raise SysError(ENODEV, f"no file system type {fstype}")   # vfs_domount_first: vfs_byname_kld
        covered: Vnode | None = None
        covered_st: Stat | None = None
        if self.mount_list:
            covered = self.lookup(path, cred, cwd)
            covered_st = self.getattr(covered)
            if covered_st.mode & S_IFMT != S_IFDIR:
                raise SysError(ENOTDIR)
            path = self._canonical(covered)
        elif path != "/":
            raise SysError(ENOENT, "the root file system is not mounted yet")
        fs_options = {k: v for k, v in options.items() if k not in _VFS_FLAG_OPTS}
        fs = factory(self, fs_options, readonly, covered_st)
        if hasattr(fs, "mnton"):
            fs.mnton = path
        m = Mount(fstype, fs.source, path, readonly, fs, covered, self._next_fsid,
                  nosuid="nosuid" in options, noexec="noexec" in options,
                  nosymfollow="nosymfollow" in options, noatime="noatime" in options,
                  consumer=getattr(fs, "consumer", None))
        self._next_fsid += 1
        self.mount_list.append(m)
        if covered is not None:
            self._covered[(id(covered.mount), covered.ino)] = m
        return m

    def _update(self, path: str, options: dict[str, str], readonly: bool, cred: Cred, cwd: Vnode | None) -> Mount:
        vp = self.lookup(path, cred, cwd)
        if not self._is_root_of_mount(vp):
            raise SysError(EINVAL, f"{path} is not a mount point")
        m = vp.mount
        if "ro" not in options and "rw" not in options and "rdonly" not in options and "noro" not in options:
            readonly = m.readonly
        writers = any(of.writable for of in self.open_files if of.vnode.mount is m and not of.dead)
        if readonly and not m.readonly and writers and "force" not in options:
            raise SysError(EBUSY, "files are open for writing")
        fs_options = {k: v for k, v in options.items() if k not in _VFS_FLAG_OPTS}
        m.fs.update(fs_options, readonly)
        m.readonly = readonly
        m.nosymfollow = "nosymfollow" in options
        m.nosuid = "nosuid" in options
        m.noexec = "noexec" in options
        m.source = m.fs.source
        return m

    def _canonical(self, vp: Vnode) -> str:
        try:
            return self.getcwd(vp)
        except SysError:
            return "?"

    def unmount(self, path: str, force: bool = False, cred: Cred = ROOT, cwd: Vnode | None = None) -> None:
        """unmount(2): EINVAL unless `path` is a mount point, EBUSY with a mount below it or (unless
        forced) open files or a process's working directory in it; a forced unmount leaves those
        files dead (EIO)."""
        if cred.uid != 0:
            raise SysError(EPERM, "only root may unmount")
        vp = self.lookup(path, cred, cwd)
        if not self._is_root_of_mount(vp):
            raise SysError(EINVAL, f"{path} is not a mount point")
        m = vp.mount
        if any(other.covered is not None and other.covered.mount is m for other in self.mount_list):
            raise SysError(EBUSY, f"{m.path}: a file system is mounted below it")
        users = [of for of in self.open_files if of.vnode.mount is m and not of.dead]
        if users and not force:
            raise SysError(EBUSY, f"{m.path}: {len(users)} open file(s)")
        cwds = [h for h in self.cwd_holders if h.exited is None and h.cwd.mount is m]
        if cwds and not force:
            raise SysError(EBUSY, f"{m.path}: the working directory of {len(cwds)} process(es)")
        for of in users:
            if of.device is not None:
                of.device.close()
            of.dead = True
        m.opencount = 0
        m.fs.unmount()
        self.mount_list.remove(m)
        if m.covered is not None:
            self._covered.pop((id(m.covered.mount), m.covered.ino), None)

    def statfs_mount(self, m: Mount) -> StatFs:
        f = m.fs.statfs()
        return StatFs(m.fstype, m.source, m.path, m.flag_words(), f.bsize, f.iosize, f.blocks, f.bfree,
                      f.bavail, f.files, f.ffree)

    def statfs(self, path: str, cred: Cred = ROOT, cwd: Vnode | None = None) -> StatFs:
        return self.statfs_mount(self.lookup(path, cred, cwd).mount)

    def getfsstat(self) -> list[StatFs]:
        return [self.statfs_mount(m) for m in self.mount_list]

    # -------------------------------------------------------------- the monitor's helpers
    def read_file(self, path: str) -> bytes:
        """The whole file, as root (the monitor's `cat`)."""
        of = self.open(path, O_RDONLY)
        try:
            out = bytearray()
            while chunk := self.read(of, 1 << 20):
                out += chunk
            return bytes(out)
        finally:
            self.close(of)

    def listdir(self, path: str) -> list[tuple[str, int, int, int]]:
        """(name, inode, mode, size) of each entry, in directory order (the monitor's `ls`)."""
        out = []
        for name, vp in self.readdir(path):
            st = self.getattr(self._cross_down(vp))
            out.append((name, st.ino, st.mode, st.size))
        return out


EXDEV_ERRNO = 18   # sys/sys/errno.h EXDEV


# ------------------------------------------------------------------------------ UFS (read-only)
_UFS_OPTS = {"acls", "async", "noatime", "noclusterr", "noclusterw", "noexec", "export", "force", "from",
             "multilabel", "nfsv4acls", "nosuid", "suiddir", "nosymfollow", "sync", "union", "errmsg",
             "fstype", "fspath", "snapshot", "userquota", "groupquota", "untrusted"}   # ffs_vfsops.c ffs_opts


def _ufs_errno(exc: UfsError, fs: UfsFs | None = None) -> SysError:
    """The reader's error as the caller's errno. A damaged file system (EIO, EINTEGRITY) is also
    reported on the console, as ffs does ("ufs_dirbad: ...", "bad block ..."), naming the mount."""
    if fs is not None and exc.errno_name in ("EIO", "EINTEGRITY"):
        fs.vfs.services.printf(f"UFS {fs.source} ({fs.mnton}): {exc.message}: error {exc.errno}\n")
    return SysError(exc.errno, exc.message)


def _filter(options: dict[str, str], legal: set[str], fstype: str) -> None:
    bad = [k for k in options if k not in legal and not (k.startswith("no") and k[2:] in legal)
           and ("no" + k) not in legal]
    if bad:
        raise SysError(EINVAL, f"{fstype}: unknown option(s) {', '.join(bad)}")


class UfsFs(ReadOnlyFs):
    """ffs over a GEOM consumer, through the read-only reader (kernel_sim/fs/ufs.py)."""

    fstype = "ufs"

    def __init__(self, vfs: Vfs, cp: Consumer, source: str, reader: UfsMount) -> None:
        self.vfs = vfs
        self.consumer = cp
        self.source = source
        self.reader = reader
        self.root_ino = 2                             # UFS_ROOTINO, sys/ufs/ufs/dinode.h
        self.mnton = "?"                              # where it is mounted, for console messages
        self._dirs: dict[int, list[tuple[str, int]]] = {}

    def _entries(self, ino: int) -> list[tuple[str, int]]:
        if ino not in self._dirs:
            try:
                self._dirs[ino] = [(n, i) for n, i, _t in self.reader.readdir(ino)]
            except UfsError as exc:
                raise _ufs_errno(exc, self) from None
        return self._dirs[ino]

    def lookup(self, dir_ino: int, name: str) -> int:
        for n, i in self._entries(dir_ino):
            if n == name:
                return i
        if name == ".":
            return dir_ino
        raise SysError(ENOENT, f"{name}: not found")

    def getattr(self, ino: int) -> Stat:
        try:
            st = self.reader.stat(ino)
        except UfsError as exc:
            raise _ufs_errno(exc, self) from None
        return Stat(0, ino, st.mode, st.nlink, st.uid, st.gid, 0, st.size, st.blocks, self.reader.sb.bsize,
                    float(st.atime), float(st.mtime), float(st.ctime))

    def readdir(self, ino: int) -> list[tuple[str, int]]:
        return list(self._entries(ino))

    def readlink(self, ino: int) -> str:
        try:
            return self.reader.readlink(ino)
        except UfsError as exc:
            raise _ufs_errno(exc, self) from None

    def read(self, ino: int, offset: int, size: int) -> bytes:
        try:
            return self.reader.read(ino, offset, size)
        except UfsError as exc:
            raise _ufs_errno(exc, self) from None
        except GeomError as exc:
            raise SysError(report_io_error(self.vfs.services.printf, exc), str(exc)) from None

    def statfs(self) -> FsFigures:
        """ffs_statfs: fragments as blocks; free = whole free blocks as fragments + free fragments,
        less the minfree reserve for bavail (freespace(), sys/ufs/ffs/fs.h)."""
        sb = self.reader.sb
        raw = self.consumer.read_bytes(sb.location, 1376)
        minfree = struct.unpack_from("<i", raw, 60)[0]               # fs_minfree
        if sb.ufs2:
            _ndir, nbfree, nifree, nffree = struct.unpack_from("<4q", raw, 1008)   # fs_cstotal
        else:
            _ndir, nbfree, nifree, nffree = struct.unpack_from("<4i", raw, 192)    # fs_old_cstotal
        bfree = nbfree * sb.frag + nffree
        bavail = bfree - sb.dsize * minfree // 100
        return FsFigures(sb.fsize, sb.bsize, sb.dsize, bfree, bavail, sb.ncg * sb.ipg - 2, nifree)

    def unmount(self) -> None:
        self.vfs.mesh.close(self.consumer)


def _mount_ufs(vfs: Vfs, options: dict[str, str], readonly: bool, covered: Stat | None) -> FileSystem:
    _filter(options, _UFS_OPTS, "ufs")
    if "from" not in options:
        raise SysError(EINVAL, "ufs: no \"from\" device")
    if not readonly:
        raise SysError(EOPNOTSUPP, "ufs: the UFS reader is read-only (mount with -o ro)")
    name, cp = open_provider(vfs.mesh, options["from"], write=False)
    try:
        reader = UfsMount.open(cp.read_bytes, cp.provider.mediasize)
    except UfsError as exc:
        vfs.mesh.close(cp)
        # ffs_mountfs: no superblock at any SBLOCKSEARCH location is EINVAL
        raise SysError(EINVAL if "superblock" in exc.message else exc.errno, str(exc)) from None
    except GeomError as exc:
        vfs.mesh.close(cp)
        raise SysError(exc.errno, str(exc)) from None
    return UfsFs(vfs, cp, f"/dev/{name}", reader)


# ------------------------------------------------------------------------------ tmpfs
def _tmpfs_errno(exc: TmpfsError) -> SysError:
    return SysError(exc.errno, exc.message)


class TmpfsFs:
    """tmpfs through TmpfsMount's public operations."""

    fstype = "tmpfs"
    local = True

    def __init__(self, tm: TmpfsMount) -> None:
        self.tm = tm
        self.root_ino = tm.root_ino

    @property
    def source(self) -> str:
        return self.tm.source

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except TmpfsError as exc:
            raise _tmpfs_errno(exc) from None

    def lookup(self, dir_ino: int, name: str) -> int:
        return self._call(self.tm.lookup, dir_ino, name)

    def getattr(self, ino: int) -> Stat:
        st = self._call(self.tm.stat, ino)
        return Stat(0, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, 0, st.st_size, st.st_blocks,
                    st.st_blksize, st.st_atime, st.st_mtime, st.st_ctime)

    def readdir(self, ino: int) -> list[tuple[str, int]]:
        return [(n, i) for n, i, _t in self._call(self.tm.readdir, ino)]

    def readlink(self, ino: int) -> str:
        return self._call(self.tm.readlink, ino)

    def read(self, ino: int, offset: int, size: int) -> bytes:
        return self._call(self.tm.read, ino, offset, size)

    def write(self, ino: int, offset: int, data: bytes) -> int:
        return self._call(self.tm.write, ino, offset, data)

    def truncate(self, ino: int, size: int) -> None:
        self._call(self.tm.truncate, ino, size)

    def create(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        return self._call(self.tm.create, dir_ino, name, mode, uid, gid)

    def mkdir(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        return self._call(self.tm.mkdir, dir_ino, name, mode, uid, gid)

    def symlink(self, dir_ino: int, name: str, target: str, uid: int, gid: int) -> int:
        return self._call(self.tm.symlink, dir_ino, name, target, uid, gid)

    def unlink(self, dir_ino: int, name: str) -> None:
        self._call(self.tm.unlink, dir_ino, name)

    def rmdir(self, dir_ino: int, name: str) -> None:
        self._call(self.tm.rmdir, dir_ino, name)

    def rename(self, fdir: int, fname: str, tdir: int, tname: str) -> None:
        self._call(self.tm.rename, fdir, fname, tdir, tname)

    def statfs(self) -> FsFigures:
        f = self._call(self.tm.statfs)
        return FsFigures(f.f_bsize, f.f_iosize, f.f_blocks, f.f_bfree, f.f_bavail, f.f_files, f.f_ffree)

    def update(self, options: dict[str, str], readonly: bool) -> None:
        self._call(lambda: TmpfsMount.mount(options, pages=None, kmem=None, swap_pages_free=None,  # type: ignore[arg-type]
                                            now=None, covered=None, update_of=self.tm))   # type: ignore[arg-type]

    def unmount(self) -> None:
        self._call(self.tm.unmount)

    def open_device(self, ino: int, flags: int, caller: Caller) -> DeviceFile:
        raise SysError(EOPNOTSUPP, "tmpfs has no device nodes")


def _mount_tmpfs(vfs: Vfs, options: dict[str, str], readonly: bool, covered: Stat | None) -> FileSystem:
    s = vfs.services
    if s.pages is None or s.kmem is None:
        raise SysError(ENODEV, "tmpfs needs the kernel's page allocator and kmem (VfsServices)")
    cov = (covered.uid, covered.gid, covered.mode & ALLPERMS) if covered is not None else None
    try:
        tm = TmpfsMount.mount(options, pages=s.pages, kmem=s.kmem, swap_pages_free=s.swap_pages_free,
                              now=s.now, covered=cov, tunables=s.tmpfs_tunables, vm=s.vm)
    except TmpfsError as exc:
        raise _tmpfs_errno(exc) from None
    return TmpfsFs(tm)


def _mount_devfs(vfs: Vfs, options: dict[str, str], readonly: bool, covered: Stat | None) -> FileSystem:
    return vfs.devfs.mount_adapter(options)


def _mount_cd9660(vfs: Vfs, options: dict[str, str], readonly: bool, covered: Stat | None) -> FileSystem:
    from kernel_sim.fs.cd9660 import mount_cd9660  # loaded by the first cd9660 mount, as its module would be

    return mount_cd9660(vfs.mesh, options, readonly)


# ------------------------------------------------------------------------------ kmem charges
class MallocCharges:
    """tmpfs's `kmem` service over malloc(9): byte charges per malloc type, backed by whole pages.

    Why pages: the kernel's Malloc is page-granular, as UMA's slabs are; each type keeps the pages its
    bytes need (a new page when the bytes outgrow them, M_NOWAIT, so an exhausted kmem is a refusal,
    which tmpfs turns into ENOSPC), and gives a page back when its bytes fit in one page fewer. The
    per-type InUse/MemUse/Requests counters are what `vmstat -m` prints."""

    def __init__(self, malloc) -> None:
        self.malloc = malloc
        self.bytes: dict[str, int] = {}
        self.pages: dict[str, list[int]] = {}
        self.inuse: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    def charge(self, mtype: str, nbytes: int) -> bool:
        from kernel_sim.kern.malloc import M_NOWAIT

        page = 4096   # sys/arm/include/param.h PAGE_SIZE
        used = self.bytes.get(mtype, 0) + nbytes
        held = self.pages.setdefault(mtype, [])
        new: list[int] = []
        while (len(held) + len(new)) * page < used:
            va = self.malloc.malloc(page, mtype, M_NOWAIT)
            if va is None:
                for v in new:
                    self.malloc.free(v)
                return False
            new.append(va)
        held.extend(new)
        self.bytes[mtype] = used
        self.inuse[mtype] = self.inuse.get(mtype, 0) + 1
        self.requests[mtype] = self.requests.get(mtype, 0) + 1
        return True

    def uncharge(self, mtype: str, nbytes: int) -> None:
        page = 4096
        used = self.bytes.get(mtype, 0) - nbytes
        if used < 0:
            raise ValueError(f"{mtype}: uncharging {nbytes} bytes, only {self.bytes.get(mtype, 0)} charged")
        self.bytes[mtype] = used
        self.inuse[mtype] = self.inuse.get(mtype, 0) - 1
        held = self.pages.get(mtype, [])
        while held and (len(held) - 1) * page >= used:
            self.malloc.free(held.pop())

    def stats(self) -> list[tuple[str, int, int, int]]:
        """(type, InUse, MemUse bytes, Requests) per type, as vmstat -m lists them."""
        return [(t, self.inuse.get(t, 0), len(self.pages.get(t, [])) * 4096, self.requests[t])
                for t in sorted(self.requests)]


__all__ = ["Cred", "ROOT", "Vfs", "VfsServices", "VfsError", "Mount", "Vnode", "OpenFile", "FileSystem",
           "FsFigures", "DeviceFile", "ReadOnlyFs", "MallocCharges", "Lookup", "MAXSYMLINKS", "KERNEL_CALLER"]
