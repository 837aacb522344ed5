"""tmpfs(4): an in-memory file system whose file data lives in swap-backed VM objects of guest pages.

Why this exists: tmpfs on /tmp is the realistic memory load of an embedded board. "Guest memory is
the truth" (DESIGN.md): each regular file's data is a swap object (kernel_sim/vm/swap_pager.py)
whose resident pages are pages taken from the physical allocator (so free-page figures, /dev/mem and
dumps show them), and nodes, directory entries and names are charged to kmem. With the kernel's VM
(`vm`, a kernel_sim.vm.pageout.VmSwap) the page daemon may push file pages to swap when memory runs
low and they come back on access, so with swap configured a file may be larger than free RAM
(tmpfs(4): "the system can transfer file data to swap space"); metadata is never swapped. Without
`vm` the objects take pages straight from `pages` and nothing is paged out. The kernel services are
injected (`pages`, `kmem`, `vm`, `swap_pages_free`, `now`) so the file system can be tested alone.

Semantics follow sys/fs/tmpfs (tmpfs_vfsops.c, tmpfs_subr.c, tmpfs_vnops.c) of the FreeBSD 11/12
era the board models (../shared/reference/freebsd.md section 8):

* accounting is tmpfs_reg_resize's: tm_pages_used grows and shrinks with howmany(size, PAGE_SIZE) of
  every regular file, holes included; tmpfs_pages_used() adds the metadata pages
  howmany(nodes_inuse * (sizeof(node) + sizeof(dirent)), PAGE_SIZE);
* tmpfs_mem_avail is swap_pager_avail + free pages - the reserve, so with swap the limit grows;
* physical pages are taken lazily, on the first write to a page (the swap object's behaviour), so a
  hole costs accounting but no RAM and reads as zeros;
* a write is all or nothing, as in tmpfs_write: EFBIG when offset + length passes maxfilesize, ENOSPC
  when the size extension fails tmpfs_pages_check_avail; and ENOSPC when the pages the write touches
  cannot be backed even after paging out (no swap, or swap full; FreeBSD would sleep in VM_WAIT,
  here nothing else runs that could free memory). Nothing is half-written in any of these cases.
"""

from __future__ import annotations

import stat as _stat
from collections import namedtuple
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from kernel_sim.record import Record
from kernel_sim.vm.swap_pager import DirectPages, SwapObject, VmBackend, VmNoMemory

if TYPE_CHECKING:
    from kernel_sim.vm.pageout import VmSwap

__all__ = [
    "TmpfsError", "TmpfsMount", "TmpfsTunables", "TmpfsStat", "TmpfsStatfs",
    "PAGE_SIZE", "TMPFS_PAGES_MINRESERVED", "TMPFS_NODE_SIZE", "TMPFS_DIRENT_SIZE", "NODES_PER_PAGE",
    "OFF_MAX", "INT_MAX", "SIZE_MAX", "ROOT_INO", "parse_size",
]

# ---------------------------------------------------------------------------------------- constants
PAGE_SIZE = 4096                       # sys/arm/include/param.h
OFF_MAX = (1 << 63) - 1                # sys/sys/limits.h (off_t is 64-bit on every FreeBSD arch)
INT_MAX = (1 << 31) - 1                # sys/arm/include/_limits.h
SIZE_MAX = (1 << 32) - 1               # sys/arm/include/_stdint.h: size_t / u_long are 32-bit on armv7
MAXNAMLEN = 255                        # sys/sys/dirent.h
MAXPATHLEN = 1024                      # sys/sys/param.h (PATH_MAX, sys/sys/syslimits.h)
ALLPERMS = 0o7777                      # sys/sys/stat.h
ROOT_INO = 2                           # tmpfs_vfsops.c: tm_ino_unr starts at 2, KASSERT(root->tn_id == 2)
# sys/fs/tmpfs/tmpfs.h: 4 MiB of pages never given to tmpfs.
TMPFS_PAGES_MINRESERVED = 4 * 1024 * 1024 // PAGE_SIZE
TMPFS_EA_MEMORY_RESERVED = 16 * 1024 * 1024   # sys/fs/tmpfs/tmpfs.h; tmpfs(4): easize default 16 MiB
# vfs.tmpfs.memory_percent: tmpfs(4) says the default is 95%; tmpfs_subr.c initialises
# tmpfs_mem_percent to TMPFS_MEM_PERCENT (100). The reference says follow the man page: 95.
TMPFS_MEM_PERCENT_DEFAULT = 95

# ILP32 (armv7 EABI: 4-byte pointers/long, 8-byte aligned int64/off_t/ino_t/dev_t, 64-bit time_t,
# so struct timespec is 16 bytes) sizes derived by hand from sys/fs/tmpfs/tmpfs.h of the 12 era;
# DERIVED, not checked with a compiler:
# struct tmpfs_node: LIST_ENTRY 8, bool 1 (+3), enum vtype 4, ino_t 8 @16, int 4 (+4), off_t 8 @32,
#   uid 4, gid 4, mode_t 2 (+2), int 4, u_long 4 (+4), 4 x timespec 64 @64, u_long 4, vnode * 4,
#   struct mtx 20 (lock_object 16 + mtx_lock 4), int 4, u_int 4 (+4), union tn_spec 32 @168
#   (tn_dir: 3 pointers + off_t @16 + pointer) -> 200.
TMPFS_NODE_SIZE = 200
# struct tmpfs_dirent: RB_ENTRY 16 (left, right, parent, int color: sys/sys/tree.h before 13),
#   td_cookie 4, td_hash 4, td_namelen 4, td_node 4, union ud 4 -> 36.
TMPFS_DIRENT_SIZE = 36
# tmpfs_vfsops.c tmpfs_mount: nodes_per_page = howmany(PAGE_SIZE, sizeof(dirent) + sizeof(node)).
NODES_PER_PAGE = -(-PAGE_SIZE // (TMPFS_DIRENT_SIZE + TMPFS_NODE_SIZE))

# Kernel memory types (tmpfs.h / tmpfs_vfsops.c): the node zone, directory entries, names.
MT_NODE = "TMPFS node"
MT_DIRENT = "M_TMPFSDIR"
MT_NAME = "M_TMPFSNAME"

# sys/sys/errno.h
ERRNO = {
    "EPERM": 1, "ENOENT": 2, "EIO": 5, "EBUSY": 16, "EEXIST": 17, "ENOTDIR": 20, "EISDIR": 21,
    "EINVAL": 22, "EFBIG": 27, "ENOSPC": 28, "EOPNOTSUPP": 45, "ENAMETOOLONG": 63, "ENOTEMPTY": 66,
}

# sys/sys/dirent.h
DT_DIR, DT_REG, DT_LNK = 4, 8, 10

# tmpfs_vfsops.c tmpfs_opts / tmpfs_updateopts, plus vfs_mount.c global_opts that vfs_filteropt
# always accepts.
TMPFS_OPTS = ("from", "easize", "size", "maxfilesize", "inodes", "uid", "gid", "mode", "export",
              "union", "nonc", "nomtime", "nosymfollow", "pgread")
TMPFS_UPDATEOPTS = ("from", "easize", "export", "nomtime", "size", "nosymfollow")
GLOBAL_OPTS = ("errmsg", "fstype", "fspath", "ro", "rw", "nosuid", "noexec")


class TmpfsError(Exception):
    """A tmpfs failure with FreeBSD's errno name and number (`.errno`)."""

    def __init__(self, errno_name: str, message: str) -> None:
        super().__init__(f"{errno_name}: {message}")
        self.errno_name = errno_name
        self.errno = ERRNO[errno_name]
        self.message = message


class PagePool(Protocol):
    """The physical page allocator's shape (kernel_sim/vm/phys.py PhysAllocator)."""

    @property
    def free_count(self) -> int: ...
    def alloc(self, npages: int) -> list[int]: ...
    def free(self, pa: int, npages: int) -> None: ...


class Kmem(Protocol):
    def charge(self, mtype: str, nbytes: int) -> bool: ...
    def uncharge(self, mtype: str, nbytes: int) -> None: ...


class GuestMemory(Protocol):
    def read(self, pa: int, size: int) -> bytes: ...
    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None: ...


def _howmany(x: int, y: int) -> int:
    return -(-x // y)


def parse_size(value: str) -> int:
    """vfs_getopt_size (sys/kern/vfs_mount.c): strtoq base 0, then one k/m/g/t/p/e suffix (x1024 each).

    The man page lists k/m/g/t/p; the code also takes e. Raises ValueError on anything else."""
    s = value.strip()
    if not s:
        raise ValueError("empty size")
    mult = 1
    suffixes = "kmgtpe"
    if s[-1].lower() in suffixes:
        mult = 1024 ** (suffixes.index(s[-1].lower()) + 1)
        s = s[:-1]
    neg = s.startswith("-")
    if s[:1] in "+-":
        s = s[1:]
    if s[:2].lower() == "0x":
        base, digits = 16, s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, digits = 8, s[1:]
    else:
        base, digits = 10, s
    if not digits or not all(c in "0123456789abcdef"[:base] for c in digits.lower()):
        raise ValueError(f"bad size {value!r}")
    n = int(digits, base) * mult
    if neg:
        raise ValueError(f"negative size {value!r}")
    return n


# ---------------------------------------------------------------------------------------- tunables
class TmpfsTunables:
    """vfs.tmpfs.memory_percent and vfs.tmpfs.memory_reserved (tmpfs_subr.c), one set per kernel.

    `avail_at_init` is swap + free pages when tmpfs initialised (tmpfs_subr_init): the reserve is
    max(avail_at_init * (100 - percent) / 100, TMPFS_PAGES_MINRESERVED) pages."""

    def __init__(self, avail_at_init: int, memory_percent: int = TMPFS_MEM_PERCENT_DEFAULT) -> None:
        self.avail_at_init = avail_at_init
        self._percent = 0
        self.pages_reserved = TMPFS_PAGES_MINRESERVED
        self.memory_percent = memory_percent

    @classmethod
    def at_init(cls, pages: PagePool, swap_pages_free: Callable[[], int]) -> TmpfsTunables:
        return cls(pages.free_count + swap_pages_free())

    @property
    def memory_percent(self) -> int:
        return self._percent

    @memory_percent.setter
    def memory_percent(self, percent: int) -> None:
        """sysctl_mem_percent: 1..100, and it recomputes the reserve."""
        if percent <= 0 or percent > 100:
            raise TmpfsError("EINVAL", f"vfs.tmpfs.memory_percent {percent} not in 1..100")
        self._percent = percent
        self.pages_reserved = max(self.avail_at_init * (100 - percent) // 100, TMPFS_PAGES_MINRESERVED)

    @property
    def memory_reserved(self) -> int:
        """vfs.tmpfs.memory_reserved in bytes."""
        return self.pages_reserved * PAGE_SIZE

    @memory_reserved.setter
    def memory_reserved(self, nbytes: int) -> None:
        """sysctl_mem_reserved: below TMPFS_PAGES_MINRESERVED pages is EINVAL."""
        pages = nbytes // PAGE_SIZE
        if pages < TMPFS_PAGES_MINRESERVED:
            raise TmpfsError("EINVAL", f"vfs.tmpfs.memory_reserved {nbytes} below the minimum "
                                       f"{TMPFS_PAGES_MINRESERVED * PAGE_SIZE}")
        self.pages_reserved = pages


# ---------------------------------------------------------------------------------------- nodes
class _Node(Record):
    __slots__ = (
        "ino", "kind", "uid", "gid", "mode", "atime", "mtime", "ctime", "birthtime", "links", "size", "parent",
        "entries", "obj", "target",
    )

    def __init__(self, ino: int, kind: str, uid: int, gid: int, mode: int, atime: float, mtime: float, ctime: float,
                 birthtime: float, links: int = 1, size: int = 0, parent: int = 0,
                 entries: dict[str, int] | None = None, obj: SwapObject | None = None, target: str = "") -> None:
        self.ino = ino
        self.kind = kind  # "dir", "reg", "lnk"
        self.uid = uid
        self.gid = gid
        self.mode = mode  # permission bits only
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.birthtime = birthtime
        self.links = links
        self.size = size
        self.parent = parent  # directories: the parent's ino (root: itself)
        self.entries = {} if entries is None else entries  # directories: name -> ino
        self.obj = obj  # regular files: the data's swap object (tn_reg.tn_aobj)
        self.target = target  # symlinks


class TmpfsStat(namedtuple("TmpfsStat",
                           "st_ino st_mode st_nlink st_uid st_gid st_size st_blocks st_blksize st_atime "
                           "st_mtime st_ctime st_birthtime")):
    __slots__ = ()

    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_blocks: int  # 512-byte blocks of va_bytes
    st_blksize: int
    st_atime: float
    st_mtime: float
    st_ctime: float
    st_birthtime: float


class TmpfsStatfs(namedtuple("TmpfsStatfs", "f_bsize f_iosize f_blocks f_bfree f_bavail f_files f_ffree")):
    """tmpfs_statfs: blocks are pages."""

    __slots__ = ()

    f_bsize: int
    f_iosize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int


_IFMT = {"dir": _stat.S_IFDIR, "reg": _stat.S_IFREG, "lnk": _stat.S_IFLNK}
_DTYPE = {"dir": DT_DIR, "reg": DT_REG, "lnk": DT_LNK}


def _filteropt(options: dict[str, str], legal: tuple[str, ...]) -> list[str]:
    """vfs_filteropt (vfs_mount.c): the options not in `legal`; "noX" and "X" match each other."""
    ok = set(legal) | set(GLOBAL_OPTS)
    bad = []
    for name in options:
        if name in ok or ("no" + name) in ok or (name.startswith("no") and name[2:] in ok):
            continue
        bad.append(name)
    return bad


def _getopt_size(options: dict[str, str], name: str) -> int | None:
    """vfs_getopt_size: None when absent or unparsable (tmpfs_mount then uses its default)."""
    if name not in options:
        return None
    try:
        return parse_size(options[name])
    except ValueError:
        return None


def _scan_int(options: dict[str, str], name: str, base: int) -> int | None:
    """vfs_scanopt("%d" / "%ho"): None when absent or unparsable (the covered vnode's value is used)."""
    if name not in options:
        return None
    try:
        return int(options[name].strip(), base)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------- mount
class TmpfsMount:
    """One mounted tmpfs: tmpfs_mount's limits, the node table and the VFS operations."""

    def __init__(self) -> None:  # use TmpfsMount.mount()
        self.nodes: dict[int, _Node] = {}
        self.mounted = False

    # ------------------------------------------------------------------ mount / update / unmount
    @classmethod
    def mount(cls, options: dict[str, str], *, pages: PagePool, kmem: Kmem,
              swap_pages_free: Callable[[], int] | None = None, now: Callable[[], float],
              covered: tuple[int, int, int] | None, update_of: TmpfsMount | None = None,
              tunables: TmpfsTunables | None = None, memory: GuestMemory | None = None,
              vm: VmSwap | None = None) -> TmpfsMount:
        """tmpfs_mount. `covered` is the mount point's (uid, gid, mode); `memory` defaults to
        `pages.phys` (PhysAllocator's bus to guest RAM); `tunables` to a fresh set taken now.

        `vm` is the kernel's swap and pageout: file data goes in its swap objects and
        `swap_pages_free` defaults to its free swap. Without it, pages come straight from `pages`."""
        if update_of is not None:
            update_of._update(options)
            return update_of
        if _filteropt(options, TMPFS_OPTS):
            raise TmpfsError("EINVAL", f"unknown tmpfs option(s): {', '.join(_filteropt(options, TMPFS_OPTS))}")
        self = cls()
        self.pages = pages
        self.kmem = kmem
        if swap_pages_free is None:
            swap_pages_free = vm.swap_pages_free if vm is not None else (lambda: 0)
        self.swap_pages_free = swap_pages_free
        self.now = now
        self.tunables = tunables if tunables is not None else TmpfsTunables.at_init(pages, swap_pages_free)
        self.memory = memory if memory is not None else pages.phys  # type: ignore[attr-defined]
        self.vm = vm
        self.backend: VmBackend = vm.daemon if vm is not None else DirectPages(pages, self.memory)

        cuid, cgid, cmode = covered if covered is not None else (0, 0, 0o755)
        uid = _scan_int(options, "uid", 10)
        gid = _scan_int(options, "gid", 10)
        mode = _scan_int(options, "mode", 8)
        root_uid = cuid if uid is None else uid
        root_gid = cgid if gid is None else gid
        root_mode = (cmode if mode is None else mode) & ALLPERMS
        nodes_max = _getopt_size(options, "inodes") or 0
        size_max = _getopt_size(options, "size") or 0
        maxfilesize = _getopt_size(options, "maxfilesize") or 0
        easize = _getopt_size(options, "easize")

        # Not enough memory to keep the minimum reserve: refuse the mount.
        if self.mem_avail() < TMPFS_PAGES_MINRESERVED:
            raise TmpfsError("ENOSPC", f"tmpfs: {self.mem_avail()} pages available, "
                                       f"fewer than the {TMPFS_PAGES_MINRESERVED} reserved")
        # size 0 (or too large for the counters) means "as much as memory allows"; else rounded up.
        if size_max == 0 or size_max > OFF_MAX - PAGE_SIZE or size_max // PAGE_SIZE >= SIZE_MAX:
            pages_max = SIZE_MAX
        else:
            pages_max = _howmany(size_max, PAGE_SIZE)
        if nodes_max <= 3:
            nodes_max = pages_max * NODES_PER_PAGE if pages_max < INT_MAX // NODES_PER_PAGE else INT_MAX
        nodes_max = min(nodes_max, INT_MAX)

        self.size_max = size_max                  # tm_size_max: the raw option, for update
        self.pages_max = pages_max
        self.nodes_max = nodes_max
        self.maxfilesize = maxfilesize if maxfilesize > 0 else OFF_MAX
        self.ea_max = TMPFS_EA_MEMORY_RESERVED if easize is None else easize
        self.data_pages = 0                       # tm_pages_used (file sizes in pages)
        self.nodes_inuse = 0
        self.source = options.get("from", "tmpfs")
        self.export = "export" in options
        self.union = "union" in options
        self.nonc = "nonc" in options
        self.nomtime = "nomtime" in options
        self.nosymfollow = "nosymfollow" in options
        self.pgread = "pgread" in options
        self._next_ino = ROOT_INO                 # unrhdr64: increasing, never reused
        self.mounted = True
        root = self._alloc_node("dir", root_uid, root_gid, root_mode)
        root.parent = root.ino
        root.links = 2
        self.root_ino = root.ino
        return self

    def _update(self, options: dict[str, str]) -> None:
        """MNT_UPDATE: only tmpfs_updateopts; anything else is EOPNOTSUPP, and so is a size change
        (the 11/12 code: "On-the-fly resizing is not supported (yet)")."""
        self._live()
        bad = _filteropt(options, TMPFS_UPDATEOPTS)
        if bad:
            raise TmpfsError("EOPNOTSUPP", f"tmpfs: option(s) {', '.join(bad)} cannot be changed on update")
        size = _getopt_size(options, "size")
        if size is not None and size != self.size_max:
            raise TmpfsError("EOPNOTSUPP", "tmpfs: on-the-fly resizing is not supported")
        easize = _getopt_size(options, "easize")
        if easize is not None:
            self.ea_max = easize
        if "from" in options:
            self.source = options["from"]
        self.export = "export" in options
        self.nomtime = "nomtime" in options
        self.nosymfollow = "nosymfollow" in options

    def unmount(self) -> None:
        """tmpfs_unmount: every node freed, every page and kmem charge given back."""
        self._live()
        for node in list(self.nodes.values()):
            if node.kind == "dir":
                for name in list(node.entries):
                    self._free_dirent(node, name)
        for node in list(self.nodes.values()):
            self._free_node(node)
        assert self.data_pages == 0 and self.nodes_inuse == 0
        self.mounted = False

    # ------------------------------------------------------------------ accounting
    def mem_avail(self) -> int:
        """tmpfs_mem_avail: swap + free pages - the reserve, never negative."""
        avail = self.swap_pages_free() + self.pages.free_count
        return max(avail - self.tunables.pages_reserved, 0)

    @property
    def meta_pages(self) -> int:
        return _howmany(self.nodes_inuse * (TMPFS_NODE_SIZE + TMPFS_DIRENT_SIZE), PAGE_SIZE)

    @property
    def pages_used(self) -> int:
        """tmpfs_pages_used: metadata pages + tm_pages_used."""
        return self.meta_pages + self.data_pages

    @property
    def resident_pages(self) -> int:
        """Guest pages actually holding file data now."""
        return sum(n.obj.resident_count for n in self.nodes.values() if n.obj is not None)

    @property
    def swapped_pages(self) -> int:
        """File pages that are in swap only (paged out)."""
        return sum(len(n.obj.swblk.keys() - n.obj.resident.keys()) for n in self.nodes.values()
                   if n.obj is not None)

    def _pages_check_avail(self, req: int) -> bool:
        """tmpfs_pages_check_avail."""
        if self.mem_avail() < req:
            return False
        return not (self.pages_max != SIZE_MAX and self.pages_max < req + self.pages_used)

    # ------------------------------------------------------------------ node and dirent life
    def _live(self) -> None:
        if not self.mounted:
            raise TmpfsError("EIO", "tmpfs: not mounted")

    def _alloc_node(self, kind: str, uid: int, gid: int, mode: int) -> _Node:
        """tmpfs_alloc_node: the node limit, one page of room, then the node zone."""
        if self.nodes_inuse >= self.nodes_max:
            raise TmpfsError("ENOSPC", f"tmpfs: node limit {self.nodes_max} reached")
        if not self._pages_check_avail(1):
            raise TmpfsError("ENOSPC", "tmpfs: no page available for a new node")
        if not self.kmem.charge(MT_NODE, TMPFS_NODE_SIZE):
            raise TmpfsError("ENOSPC", "tmpfs: kernel memory exhausted (TMPFS node)")
        t = self.now()
        node = _Node(self._next_ino, kind, uid, gid, mode & ALLPERMS, t, t, t, t)
        if kind == "reg":      # tmpfs_alloc_node: vm_pager_allocate(OBJT_SWAP, ...)
            node.obj = self.vm.new_object() if self.vm is not None else SwapObject(self.backend, objtype="swap")
        self._next_ino += 1
        self.nodes[node.ino] = node
        self.nodes_inuse += 1
        return node

    def _free_node(self, node: _Node) -> None:
        if node.kind == "reg":
            assert node.obj is not None
            node.obj.deallocate()
            self.data_pages -= _howmany(node.size, PAGE_SIZE)
        elif node.kind == "lnk":
            self.kmem.uncharge(MT_NAME, len(node.target.encode()))
        self.kmem.uncharge(MT_NODE, TMPFS_NODE_SIZE)
        del self.nodes[node.ino]
        self.nodes_inuse -= 1

    def _charge_dirent(self, name: str) -> None:
        if not self.kmem.charge(MT_DIRENT, TMPFS_DIRENT_SIZE):
            raise TmpfsError("ENOSPC", "tmpfs: kernel memory exhausted (M_TMPFSDIR)")
        if not self.kmem.charge(MT_NAME, len(name.encode())):
            self.kmem.uncharge(MT_DIRENT, TMPFS_DIRENT_SIZE)
            raise TmpfsError("ENOSPC", "tmpfs: kernel memory exhausted (M_TMPFSNAME)")

    def _free_dirent(self, dnode: _Node, name: str) -> int:
        ino = dnode.entries.pop(name)
        dnode.size -= TMPFS_DIRENT_SIZE
        self.kmem.uncharge(MT_DIRENT, TMPFS_DIRENT_SIZE)
        self.kmem.uncharge(MT_NAME, len(name.encode()))
        return ino

    # ------------------------------------------------------------------ lookups
    def _node(self, ino: int) -> _Node:
        self._live()
        node = self.nodes.get(ino)
        if node is None:
            raise TmpfsError("ENOENT", f"tmpfs: no inode {ino}")
        return node

    def _dir(self, ino: int) -> _Node:
        node = self._node(ino)
        if node.kind != "dir":
            raise TmpfsError("ENOTDIR", f"tmpfs: inode {ino} is not a directory")
        return node

    @staticmethod
    def _check_name(name: str) -> None:
        if len(name.encode()) > MAXNAMLEN:
            raise TmpfsError("ENAMETOOLONG", f"tmpfs: name longer than {MAXNAMLEN} bytes")
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise TmpfsError("EINVAL", f"tmpfs: bad name {name!r}")

    def lookup(self, dir_ino: int, name: str) -> int:
        """tmpfs_lookup: the inode number of `name` in the directory ("." and ".." included)."""
        d = self._dir(dir_ino)
        if name == ".":
            return d.ino
        if name == "..":
            return d.parent
        if len(name.encode()) > MAXNAMLEN:
            raise TmpfsError("ENAMETOOLONG", f"tmpfs: name longer than {MAXNAMLEN} bytes")
        try:
            return d.entries[name]
        except KeyError:
            raise TmpfsError("ENOENT", f"tmpfs: {name!r} not found") from None

    def _new_entry(self, dir_ino: int, name: str, kind: str, mode: int, uid: int, gid: int) -> _Node:
        """tmpfs_alloc_file: node first, then the directory entry; undo the node if that fails."""
        d = self._dir(dir_ino)
        self._check_name(name)
        if name in d.entries:
            raise TmpfsError("EEXIST", f"tmpfs: {name!r} exists")
        node = self._alloc_node(kind, uid, gid, mode)
        try:
            self._charge_dirent(name)
        except TmpfsError:
            self._free_node(node)
            raise
        d.entries[name] = node.ino
        d.size += TMPFS_DIRENT_SIZE
        d.mtime = d.ctime = node.ctime
        return node

    def create(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        """tmpfs_create: a regular file; its inode number."""
        return self._new_entry(dir_ino, name, "reg", mode, uid, gid).ino

    def mkdir(self, dir_ino: int, name: str, mode: int, uid: int, gid: int) -> int:
        """tmpfs_mkdir: a directory ("." and ".." are implicit, as in tmpfs)."""
        node = self._new_entry(dir_ino, name, "dir", mode, uid, gid)
        node.parent = dir_ino
        node.links = 2
        self.nodes[dir_ino].links += 1
        return node.ino

    def symlink(self, dir_ino: int, name: str, target: str, uid: int = 0, gid: int = 0) -> int:
        """tmpfs_symlink: the target is kept in an M_TMPFSNAME allocation (no data pages)."""
        n = len(target.encode())
        if n >= MAXPATHLEN:
            raise TmpfsError("ENAMETOOLONG", f"tmpfs: symlink target of {n} bytes")
        self._dir(dir_ino)
        self._check_name(name)
        if name in self.nodes[dir_ino].entries:
            raise TmpfsError("EEXIST", f"tmpfs: {name!r} exists")
        if not self.kmem.charge(MT_NAME, n):
            raise TmpfsError("ENOSPC", "tmpfs: kernel memory exhausted (M_TMPFSNAME)")
        try:
            node = self._new_entry(dir_ino, name, "lnk", 0o777, uid, gid)
        except TmpfsError:
            self.kmem.uncharge(MT_NAME, n)
            raise
        node.target = target
        node.size = n
        return node.ino

    def readlink(self, ino: int) -> str:
        node = self._node(ino)
        if node.kind != "lnk":
            raise TmpfsError("EINVAL", f"tmpfs: inode {ino} is not a symbolic link")
        return node.target

    def unlink(self, dir_ino: int, name: str) -> None:
        """tmpfs_remove: directories are EISDIR; the node goes with its last link."""
        ino = self.lookup(dir_ino, name)
        node = self.nodes[ino]
        if node.kind == "dir":
            raise TmpfsError("EISDIR", f"tmpfs: {name!r} is a directory")
        d = self.nodes[dir_ino]
        self._free_dirent(d, name)
        d.mtime = d.ctime = self.now()
        node.links -= 1
        if node.links == 0:
            self._free_node(node)

    def rmdir(self, dir_ino: int, name: str) -> None:
        """tmpfs_rmdir: ENOTDIR, ENOTEMPTY, EINVAL for "."."""
        if name == ".":
            raise TmpfsError("EINVAL", "tmpfs: cannot remove '.'")
        if name == "..":
            raise TmpfsError("ENOTEMPTY", "tmpfs: cannot remove '..'")
        ino = self.lookup(dir_ino, name)
        node = self.nodes[ino]
        if node.kind != "dir":
            raise TmpfsError("ENOTDIR", f"tmpfs: {name!r} is not a directory")
        if node.entries:
            raise TmpfsError("ENOTEMPTY", f"tmpfs: {name!r} is not empty")
        d = self.nodes[dir_ino]
        self._free_dirent(d, name)
        d.links -= 1
        d.mtime = d.ctime = self.now()
        self._free_node(node)

    def rename(self, fdir_ino: int, fname: str, tdir_ino: int, tname: str) -> None:
        """tmpfs_rename: replaces a compatible target; a directory may not move under itself."""
        src_ino = self.lookup(fdir_ino, fname)
        if fname in (".", ".."):
            raise TmpfsError("EINVAL", "tmpfs: cannot rename '.' or '..'")
        td = self._dir(tdir_ino)
        self._check_name(tname)
        src = self.nodes[src_ino]
        dst_ino = td.entries.get(tname)
        if dst_ino == src_ino:
            return
        if src.kind == "dir":
            p = tdir_ino
            while True:                       # tdir must not be src or below it
                if p == src_ino:
                    raise TmpfsError("EINVAL", "tmpfs: cannot move a directory under itself")
                if p == self.nodes[p].parent:
                    break
                p = self.nodes[p].parent
        if dst_ino is not None:
            dst = self.nodes[dst_ino]
            if src.kind == "dir" and dst.kind != "dir":
                raise TmpfsError("ENOTDIR", f"tmpfs: {tname!r} is not a directory")
            if src.kind != "dir" and dst.kind == "dir":
                raise TmpfsError("EISDIR", f"tmpfs: {tname!r} is a directory")
            if dst.kind == "dir" and dst.entries:
                raise TmpfsError("ENOTEMPTY", f"tmpfs: {tname!r} is not empty")
        # The entry keeps its dirent; a new name is a new M_TMPFSNAME allocation.
        if not self.kmem.charge(MT_NAME, len(tname.encode())):
            raise TmpfsError("ENOSPC", "tmpfs: kernel memory exhausted (M_TMPFSNAME)")
        if dst_ino is not None:
            dst = self.nodes[dst_ino]
            if dst.kind == "dir":
                self.rmdir(tdir_ino, tname)
            else:
                self.unlink(tdir_ino, tname)
        fd = self.nodes[fdir_ino]
        del fd.entries[fname]
        fd.size -= TMPFS_DIRENT_SIZE
        self.kmem.uncharge(MT_NAME, len(fname.encode()))
        td.entries[tname] = src_ino
        td.size += TMPFS_DIRENT_SIZE
        if src.kind == "dir" and fdir_ino != tdir_ino:
            src.parent = tdir_ino
            fd.links -= 1
            td.links += 1
        t = self.now()
        fd.mtime = fd.ctime = td.mtime = td.ctime = src.ctime = t

    def readdir(self, ino: int) -> list[tuple[str, int, int]]:
        """tmpfs_readdir: (name, ino, DT_*) for ".", ".." and every entry."""
        d = self._dir(ino)
        d.atime = self.now()
        out = [(".", d.ino, DT_DIR), ("..", d.parent, DT_DIR)]
        out += [(name, i, _DTYPE[self.nodes[i].kind]) for name, i in d.entries.items()]
        return out

    # ------------------------------------------------------------------ regular file data
    def _reg(self, ino: int) -> _Node:
        node = self._node(ino)
        if node.kind == "dir":
            raise TmpfsError("EISDIR", f"tmpfs: inode {ino} is a directory")
        if node.kind != "reg":
            raise TmpfsError("EINVAL", f"tmpfs: inode {ino} is not a regular file")
        return node

    def _resize(self, node: _Node, newsize: int) -> None:
        """tmpfs_reg_resize: growth must pass tmpfs_pages_check_avail; shrinking frees whole pages
        past the end and zeroes the tail of the last page (so a later extension reads zeros)."""
        oldpages = _howmany(node.size, PAGE_SIZE)
        newpages = _howmany(newsize, PAGE_SIZE)
        if newpages > oldpages and not self._pages_check_avail(newpages - oldpages):
            raise TmpfsError("ENOSPC", f"tmpfs: no room to grow inode {node.ino} to {newsize} bytes")
        if newsize < node.size:
            assert node.obj is not None
            node.obj.truncate(newsize)          # frees whole pages past the end, zeroes the tail
        self.data_pages += newpages - oldpages
        node.size = newsize
        if node.obj is not None:
            node.obj.size = newpages

    def truncate(self, ino: int, size: int) -> None:
        """tmpfs_truncate: EINVAL below 0, EFBIG past maxfilesize, ENOSPC when growth does not fit."""
        node = self._reg(ino)
        if size < 0:
            raise TmpfsError("EINVAL", f"tmpfs: negative length {size}")
        if size > self.maxfilesize:
            raise TmpfsError("EFBIG", f"tmpfs: length {size} past maxfilesize {self.maxfilesize}")
        if size != node.size:
            self._resize(node, size)
        node.mtime = node.ctime = self.now()

    def read(self, ino: int, offset: int, length: int) -> bytes:
        """tmpfs_read: up to `length` bytes from `offset`; holes read as zeros."""
        node = self._reg(ino)
        if offset < 0 or length < 0:
            raise TmpfsError("EINVAL", "tmpfs: negative offset or length")
        end = min(node.size, offset + length)
        assert node.obj is not None
        out = node.obj.read(offset, end - offset) if end > offset else b""
        node.atime = self.now()
        return out

    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview, *, mapped: bool = False) -> int:
        """tmpfs_write: all of `data` at `offset`, or nothing (EFBIG / ENOSPC). `mapped` models a
        store through a shared mapping: its mtime update is skipped under nomtime."""
        node = self._reg(ino)
        if offset < 0:
            raise TmpfsError("EINVAL", f"tmpfs: negative offset {offset}")
        view = memoryview(data).cast("B")
        if not len(view):
            return 0
        end = offset + len(view)
        if end > self.maxfilesize:
            raise TmpfsError("EFBIG", f"tmpfs: write to {end} past maxfilesize {self.maxfilesize}")
        oldsize = node.size
        if end > oldsize:
            self._resize(node, end)
        assert node.obj is not None
        try:
            node.obj.write(offset, view)        # uiomove_object: all pages backed, or nothing written
        except VmNoMemory as exc:
            if end > oldsize:
                self._resize(node, oldsize)
            raise TmpfsError("ENOSPC", f"tmpfs: {exc}") from None
        t = self.now()
        if not (mapped and self.nomtime):
            node.mtime = t
        node.ctime = t
        return len(view)

    # ------------------------------------------------------------------ attributes
    def stat(self, ino: int) -> TmpfsStat:
        """tmpfs_getattr: va_bytes is the size rounded to pages (st_blocks in 512-byte units)."""
        node = self._node(ino)
        nbytes = _howmany(node.size, PAGE_SIZE) * PAGE_SIZE
        return TmpfsStat(node.ino, _IFMT[node.kind] | node.mode, node.links, node.uid, node.gid, node.size,
                         nbytes // 512, PAGE_SIZE, node.atime, node.mtime, node.ctime, node.birthtime)

    def statfs(self) -> TmpfsStatfs:
        """tmpfs_statfs: f_blocks is pages_max, or used + available when unlimited."""
        self._live()
        used = self.pages_used
        blocks = self.pages_max if self.pages_max != SIZE_MAX else used + self.mem_avail()
        bavail = max(blocks - used, 0)
        files = self.nodes_max
        return TmpfsStatfs(PAGE_SIZE, PAGE_SIZE, blocks, bavail, bavail, files, max(files - self.nodes_inuse, 0))
