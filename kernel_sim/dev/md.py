"""md(4): memory disks (sys/dev/md/md.c) and their control ioctls (sys/sys/mdioctl.h).

Why a model and not a byte array: md's memory use is the point. malloc-backed sectors come from an
injected allocator (in the kernel: Malloc with M_NOWAIT and the per-device type "md%d", as md.c uses a
per-device UMA zone) so every malloc md shares the one kmem quota and a write that cannot get memory
fails with ENOSPC (vm.md_malloc_wait 0), while MD_COMPRESS keeps never-written and uniform sectors in
the radix tree itself (leaf 0 = zeros, 1..255 = a sector of that byte).

MD_SWAP units keep their data in a swap object (kernel_sim/vm/swap_pager.py) from the factory the
kernel gives (`swap_object`, its VmSwap.md_swap_object): resident pages are guest pages, the page
daemon may push them to swap, a write that cannot be backed fails with ENOSPC (mdstart_swap's
VM_PAGER_ERROR), MD_RESERVE gives every page a swap block up front (swap_pager_reserve; EDOM when swap
cannot hold them) -- and, as in md.c, writing a page dirties it and releases its block
(vm_pager_page_unswapped), so the reservation holds for pages not yet written. Without a factory (the
driver used on its own) the objects draw from a private pool of host memory and there is no swap.

Not done yet: the radix tree's indirect blocks are only charged when ``node_alloc`` is given; devstat
and BIO_FLUSH/GETATTR are not modelled beyond ``ident``; swap accounting (swap_reserve_by_cred,
vm.overcommit) is not modelled, as with the default vm.overcommit=0 it never refuses.
"""

from __future__ import annotations

import errno as errno_mod
import os
import stat as statmod
import struct
from collections.abc import Callable
from typing import Any, Protocol

from kernel_sim.geom.core import GeomError, Mesh, Provider
from kernel_sim.geom.md import MdClass, MdUnit
from kernel_sim.record import Record
from kernel_sim.vm.swap_pager import DirectPages, SwapObject, VmNoMemory, standalone_backend

# sys/sys/errno.h (FreeBSD numbering)
EPERM, ENOENT, EIO, ENOMEM, EACCES, EFAULT, EBUSY, EISDIR, EINVAL = 1, 2, 5, 12, 13, 14, 16, 21, 22
ENOTTY, ENOSPC, EROFS, EDOM, EOPNOTSUPP = 25, 28, 30, 33, 45

# sys/sys/mdioctl.h
MD_MALLOC, MD_PRELOAD, MD_VNODE, MD_SWAP, MD_NULL = 0, 1, 2, 3, 4
MD_CLUSTER, MD_RESERVE, MD_AUTOUNIT, MD_READONLY, MD_COMPRESS = 0x01, 0x02, 0x04, 0x08, 0x10
MD_FORCE, MD_ASYNC, MD_VERIFY, MD_CACHE = 0x20, 0x40, 0x80, 0x100
MDNPAD = 96
MDIOVERSION = 0
MD_NAME, MDCTL_NAME = "md", "mdctl"

# sys/sys/ioccom.h
IOCPARM_SHIFT = 13
IOCPARM_MASK = (1 << IOCPARM_SHIFT) - 1
IOC_VOID, IOC_OUT, IOC_IN = 0x20000000, 0x40000000, 0x80000000
IOC_INOUT = IOC_IN | IOC_OUT


def _ioc(inout: int, group: str, num: int, length: int) -> int:
    """_IOC() of sys/sys/ioccom.h: direction | size << 16 | group << 8 | number."""
    return inout | ((length & IOCPARM_MASK) << 16) | (ord(group) << 8) | num


# struct md_ioctl on armv7 (EABI, ILP32, little endian): pointers and enums are 4 bytes, off_t and
# u_int64_t are 8 bytes *and 8-byte aligned*, so md_mediasize sits at 16 and md_base at 32, md_pad ends
# at 436 and the struct is padded to 440 (i386 packs it to 436; md.c's md_ioctl32 is that layout).
MD_IOCTL = struct.Struct("<IIII q II Q ii I 96i 4x")
MD_IOCTL_SIZE = MD_IOCTL.size   # 440
MDIOCATTACH = _ioc(IOC_INOUT, "m", 0, MD_IOCTL_SIZE)   # _IOWR('m', 0, struct md_ioctl) = 0xc1b86d00
MDIOCDETACH = _ioc(IOC_INOUT, "m", 1, MD_IOCTL_SIZE)
MDIOCQUERY = _ioc(IOC_INOUT, "m", 2, MD_IOCTL_SIZE)
MDIOCLIST = _ioc(IOC_INOUT, "m", 3, MD_IOCTL_SIZE)     # older md.c; unit list in md_pad
MDIOCRESIZE = _ioc(IOC_INOUT, "m", 4, MD_IOCTL_SIZE)

DEV_BSIZE = 512        # sys/sys/param.h
PAGE_SIZE = 4096       # arm
MAXPHYS = 128 * 1024   # sys/sys/param.h: MAXPHYS on ILP32
NINDIR = PAGE_SIZE // 4   # md.c: PAGE_SIZE / sizeof(uintptr_t) = 1024 on arm
NSHIFT = 10               # ffs(NINDIR) - 1
INT_MAX = 0x7FFFFFFF


class MdError(Exception):
    """A refused md request, with md.c's errno."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class MdIoctl(Record):
    """struct md_ioctl; md_file and md_label are user addresses (0 = NULL) into the caller's memory."""

    __slots__ = (
        "md_version", "md_unit", "md_type", "md_file", "md_mediasize", "md_sectorsize", "md_options", "md_base",
        "md_fwheads", "md_fwsectors", "md_label", "md_pad",
    )

    def __init__(self, md_version: int = MDIOVERSION, md_unit: int = 0, md_type: int = 0, md_file: int = 0,
                 md_mediasize: int = 0, md_sectorsize: int = 0, md_options: int = 0, md_base: int = 0,
                 md_fwheads: int = 0, md_fwsectors: int = 0, md_label: int = 0,
                 md_pad: list[int] | None = None) -> None:
        self.md_version = md_version
        self.md_unit = md_unit
        self.md_type = md_type
        self.md_file = md_file
        self.md_mediasize = md_mediasize
        self.md_sectorsize = md_sectorsize
        self.md_options = md_options
        self.md_base = md_base
        self.md_fwheads = md_fwheads
        self.md_fwsectors = md_fwsectors
        self.md_label = md_label
        self.md_pad = [0] * MDNPAD if md_pad is None else md_pad

    def pack(self) -> bytes:
        return MD_IOCTL.pack(self.md_version, self.md_unit, self.md_type, self.md_file, self.md_mediasize,
                             self.md_sectorsize, self.md_options, self.md_base, self.md_fwheads,
                             self.md_fwsectors, self.md_label, *self.md_pad)

    @classmethod
    def unpack(cls, data: bytes) -> MdIoctl:
        v = MD_IOCTL.unpack(data)
        return cls(*v[:11], md_pad=list(v[11:]))


class Vnode(Protocol):
    """What MD_VNODE needs of an open file (a host file in tests, a VFS vnode in the guest later)."""

    def stat(self) -> Any: ...          # st_mode, st_dev, st_ino, st_size
    def pread(self, length: int, offset: int) -> bytes: ...
    def pwrite(self, data: bytes, offset: int) -> None: ...
    def close(self) -> None: ...


class HostVnode:
    """A host file opened like vn_open: O_RDWR for a writable md, else O_RDONLY (a directory then opens)."""

    def __init__(self, path: str, writable: bool) -> None:
        self.path, self.writable = path, writable
        self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)

    def __reduce__(self):
        """A snapshot keeps the file's name, not its descriptor: loading opens it again."""
        return HostVnode, (self.path, self.writable)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def pwrite(self, data: bytes, offset: int) -> None:
        os.pwrite(self.fd, data, offset)

    def close(self) -> None:
        os.close(self.fd)


def host_vnode_open(path: str, writable: bool) -> Vnode:
    return HostVnode(path, writable)


class _Indir:
    """md.c struct indir: NINDIR slots; `shift` 0 is a leaf level holding sector values."""

    __slots__ = ("array", "used", "shift", "handle")

    def __init__(self, shift: int, handle: object = None) -> None:
        self.array: list[Any] = [0] * NINDIR
        self.used = 0
        self.shift = shift
        self.handle = handle


class _Sector:
    """One malloc'd sector buffer and the allocator's handle for it."""

    __slots__ = ("handle", "data")

    def __init__(self, handle: object, data: bytearray) -> None:
        self.handle = handle
        self.data = data


class MdSoftc(Record):
    """md.c struct md_s: one memory disk."""

    __slots__ = (
        "unit", "type", "mediasize", "sectorsize", "flags", "fwheads", "fwsectors", "ident", "file", "label",
        "indir", "pl_read", "pl_write", "vnode", "object", "pp",
    )

    def __init__(self, unit: int, type: int, mediasize: int = 0, sectorsize: int = DEV_BSIZE, flags: int = 0,
                 fwheads: int = 0, fwsectors: int = 0, ident: str = "", file: str = "", label: str = "",
                 indir: _Indir | None = None, pl_read: Callable[[int, int], bytes] | None = None,
                 pl_write: Callable[[int, bytes], None] | None = None, vnode: Vnode | None = None,
                 object: SwapObject | None = None, pp: Provider | None = None) -> None:
        self.unit = unit
        self.type = type
        self.mediasize = mediasize
        self.sectorsize = sectorsize
        self.flags = flags
        self.fwheads = fwheads
        self.fwsectors = fwsectors
        self.ident = ident
        self.file = file
        self.label = label
        self.indir = indir
        self.pl_read = pl_read
        self.pl_write = pl_write
        self.vnode = vnode
        self.object = object  # MD_SWAP: sc->object
        self.pp = pp

    @property
    def name(self) -> str:
        return f"md{self.unit}"


class MdDriver:
    """The md driver: /dev/mdctl's ioctls and the I/O of each unit, published through GEOM's MD class."""

    def __init__(self, mesh: Mesh, *, sector_alloc: Callable[[int, str], object | None],
                 sector_free: Callable[[object], None],
                 vnode_open: Callable[[str, bool], Vnode] = host_vnode_open,
                 printf: Callable[[str], None] = lambda _s: None,
                 node_alloc: Callable[[int], object | None] | None = None,
                 node_free: Callable[[object], None] | None = None, maxphys: int = MAXPHYS,
                 swap_object: Callable[[int], SwapObject | None] | None = None) -> None:
        """`sector_alloc(nbytes, zone)` returns a handle or None when kmem is exhausted (M_NOWAIT); zone is
        "md%d". `node_alloc`/`node_free`, when given, charge the radix tree's indirect blocks (M_MDSECT).
        `swap_object(npages)` makes an MD_SWAP unit's object (vm_pager_allocate(OBJT_SWAP); None is
        ENOMEM); without it the units draw from a private host-memory pool with no swap."""
        self.mesh = mesh
        self.sector_alloc = sector_alloc
        self.sector_free = sector_free
        self.vnode_open = vnode_open
        self.printf = printf
        self.node_alloc = node_alloc
        self.node_free = node_free
        self.maxphys = maxphys
        self.swap_object = swap_object
        self._standalone: DirectPages | None = None
        self.units: dict[int, MdSoftc] = {}     # insertion order = attach order (devstat order)
        self.cls = next((c for c in mesh.classes if isinstance(c, MdClass)), None) or MdClass()
        if self.cls not in mesh.classes:
            mesh.add_class(self.cls)

    # ------------------------------------------------------------------ radix tree (md.c)
    def _new_indir(self, shift: int) -> _Indir | None:
        handle = None
        if self.node_alloc is not None:
            handle = self.node_alloc(NINDIR * 4)
            if handle is None:
                return None
        return _Indir(shift, handle)

    def _del_indir(self, ip: _Indir) -> None:
        if self.node_free is not None and ip.handle is not None:
            self.node_free(ip.handle)

    @staticmethod
    def _dimension(nsectors: int) -> _Indir:
        rcnt, layer = nsectors, 0
        while rcnt > NINDIR:
            rcnt //= NINDIR
            layer += 1
        return _Indir(layer * NSHIFT)

    @staticmethod
    def _s_read(ip: _Indir, secno: int) -> Any:
        cip: Any = ip
        while cip:
            if cip.shift:
                cip = cip.array[(secno >> cip.shift) & (NINDIR - 1)]
                continue
            return cip.array[secno & (NINDIR - 1)]
        return 0

    def _s_write(self, ip: _Indir, secno: int, value: Any) -> int:
        """s_write(): store a leaf value, growing branches (ENOSPC when one cannot be had) and pruning
        branches that become empty."""
        path: list[_Indir] = []
        cip = ip
        while True:
            path.append(cip)
            if cip.shift:
                idx = (secno >> cip.shift) & (NINDIR - 1)
                if not cip.array[idx]:
                    child = self._new_indir(cip.shift - NSHIFT)
                    if child is None:
                        return ENOSPC
                    cip.array[idx] = child
                    cip.used += 1
                cip = cip.array[idx]
                continue
            idx = secno & (NINDIR - 1)
            if cip.array[idx]:
                cip.used -= 1
            cip.array[idx] = value
            if value:
                cip.used += 1
            break
        while cip.used == 0 and cip is not ip:
            path.pop()
            parent = path[-1]
            parent.array[(secno >> parent.shift) & (NINDIR - 1)] = 0
            parent.used -= 1
            self._del_indir(cip)
            cip = parent
        return 0

    def _destroy_indir(self, ip: _Indir) -> None:
        for v in ip.array:
            if not v:
                continue
            if ip.shift:
                self._destroy_indir(v)
            elif isinstance(v, _Sector):
                self.sector_free(v.handle)
        self._del_indir(ip)

    def _zalloc(self, sc: MdSoftc) -> _Sector | None:
        handle = self.sector_alloc(sc.sectorsize, sc.name)
        return None if handle is None else _Sector(handle, bytearray(sc.sectorsize))

    # ------------------------------------------------------------------ I/O (mdstart_*)
    def _softc(self, unit: int) -> MdSoftc:
        sc = self.units.get(unit)
        if sc is None:
            raise MdError(ENOENT, f"md{unit}: no such unit")
        return sc

    @staticmethod
    def _check(sc: MdSoftc, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > sc.mediasize:
            raise GeomError(EIO, f"{sc.name}: I/O at {offset}+{length} is past the end ({sc.mediasize})")
        if offset % sc.sectorsize or length % sc.sectorsize:
            raise GeomError(EINVAL, f"{sc.name}: I/O at {offset}+{length} is not sector aligned")

    def read(self, unit: int, offset: int, length: int) -> bytes:
        """BIO_READ."""
        sc = self._softc(unit)
        self._check(sc, offset, length)
        if sc.type == MD_MALLOC:
            out = bytearray()
            ss = sc.sectorsize
            assert sc.indir is not None
            for secno in range(offset // ss, (offset + length) // ss):
                v = self._s_read(sc.indir, secno)
                out += v.data if isinstance(v, _Sector) else bytes([v]) * ss
            return bytes(out)
        if sc.type == MD_PRELOAD:
            assert sc.pl_read is not None
            return sc.pl_read(offset, length)
        if sc.type == MD_VNODE:
            assert sc.vnode is not None
            data = sc.vnode.pread(length, offset)
            return data + bytes(length - len(data))     # past EOF reads as zeros
        if sc.type == MD_SWAP:
            return self._swap_read(sc, offset, length)
        return bytes(length)                             # MD_NULL

    def write(self, unit: int, offset: int, data: bytes) -> None:
        """BIO_WRITE: GeomError(ENOSPC) when a malloc sector cannot be allocated (earlier sectors stay)."""
        sc = self._softc(unit)
        self._check(sc, offset, len(data))
        if sc.flags & MD_READONLY:
            raise GeomError(EROFS, f"{sc.name}: read-only")
        if sc.type == MD_MALLOC:
            self._malloc_write(sc, offset, bytes(data))
        elif sc.type == MD_PRELOAD:
            assert sc.pl_write is not None
            sc.pl_write(offset, bytes(data))
        elif sc.type == MD_VNODE:
            assert sc.vnode is not None
            sc.vnode.pwrite(bytes(data), offset)
            sc.flags &= ~MD_VERIFY
        elif sc.type == MD_SWAP:
            self._swap_write(sc, offset, bytes(data))

    def delete(self, unit: int, offset: int, length: int) -> None:
        """BIO_DELETE: malloc frees the sectors, swap frees whole pages, vnode writes zeros."""
        sc = self._softc(unit)
        self._check(sc, offset, length)
        if sc.type == MD_MALLOC:
            assert sc.indir is not None
            ss = sc.sectorsize
            for secno in range(offset // ss, (offset + length) // ss):
                v = self._s_read(sc.indir, secno)
                if v:
                    self._s_write(sc.indir, secno, 0)
                    if isinstance(v, _Sector):
                        self.sector_free(v.handle)
        elif sc.type == MD_VNODE:
            assert sc.vnode is not None
            sc.vnode.pwrite(bytes(length), offset)
        elif sc.type == MD_SWAP:
            assert sc.object is not None
            sc.object.zero_range(offset, length)   # whole pages and their blocks freed, parts zeroed

    def allocation(self, unit: int, offset: int, length: int) -> list[tuple[int, int, str]]:
        """Runs (offset, length, kind) covering [offset, offset+length): "hole" where the unit keeps
        nothing (an unwritten or deleted malloc sector, a swap page never written, a hole of a vnode's
        host file, all of a null disk; it reads as zeros), "zero" for stored sectors of zeros, "data"
        for the rest. What an NBD server reports as base:allocation (`nbdinfo --map`)."""
        sc = self._softc(unit)
        self._check(sc, offset, length)
        end = offset + length
        runs: list[tuple[int, int, str]] = []

        def add(lo: int, hi: int, kind: str) -> None:
            lo, hi = max(lo, offset), min(hi, end)
            if hi <= lo:
                return
            if runs and runs[-1][2] == kind and runs[-1][0] + runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], runs[-1][1] + hi - lo, kind)
            else:
                runs.append((lo, hi - lo, kind))

        if sc.type == MD_MALLOC and sc.indir is not None:
            self._malloc_runs(sc, sc.indir, 0, offset // sc.sectorsize, -(-end // sc.sectorsize), add)
        elif sc.type == MD_SWAP and sc.object is not None:
            first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
            stored = sorted(i for i in {*sc.object.resident, *sc.object.swblk} if first <= i <= last)
            pos = offset
            for i in stored:
                add(pos, i * PAGE_SIZE, "hole")
                add(i * PAGE_SIZE, (i + 1) * PAGE_SIZE, "data")
                pos = (i + 1) * PAGE_SIZE
            add(pos, end, "hole")
        elif sc.type == MD_VNODE and isinstance(sc.vnode, HostVnode):
            _file_runs(sc.vnode.fd, offset, end, add)
        elif sc.type == MD_NULL:
            add(offset, end, "hole")
        else:
            add(offset, end, "data")
        return runs

    def _malloc_runs(self, sc: MdSoftc, ip: _Indir, base: int, s0: int, s1: int,
                     add: Callable[[int, int, str], None]) -> None:
        """The radix tree over sectors [s0, s1), skipping empty branches whole."""
        ss = sc.sectorsize
        span = 1 << ip.shift                      # sectors under one slot of this level
        lo = max(0, (s0 - base) // span)
        hi = min(NINDIR, -(-(s1 - base) // span))
        for idx in range(lo, hi):
            v = ip.array[idx]
            first = base + idx * span
            if ip.shift:
                if v:
                    self._malloc_runs(sc, v, first, s0, s1, add)
                else:
                    add(first * ss, (first + span) * ss, "hole")
            elif isinstance(v, _Sector):
                add(first * ss, (first + 1) * ss, "data" if any(v.data) else "zero")
            else:                                 # 0: never written; 1..255: a sector of that byte
                add(first * ss, (first + 1) * ss, "data" if v else "hole")

    def _malloc_write(self, sc: MdSoftc, offset: int, data: bytes) -> None:
        ss = sc.sectorsize
        assert sc.indir is not None
        for i in range(len(data) // ss):
            secno = offset // ss + i
            chunk = data[i * ss:(i + 1) * ss]
            osp = self._s_read(sc.indir, secno)
            error = 0
            if sc.flags & MD_COMPRESS and chunk.count(chunk[0]) == ss:
                if osp != chunk[0]:
                    error = self._s_write(sc.indir, secno, chunk[0])
                    if isinstance(osp, _Sector):
                        self.sector_free(osp.handle)
            elif isinstance(osp, _Sector):
                osp.data[:] = chunk
            else:
                sp = self._zalloc(sc)
                if sp is None:
                    raise GeomError(ENOSPC, f"{sc.name}: no memory for sector {secno}")
                sp.data[:] = chunk
                error = self._s_write(sc.indir, secno, sp)
                if error:
                    self.sector_free(sp.handle)
            if error:
                raise GeomError(error, f"{sc.name}: no memory for the radix tree at sector {secno}")

    @staticmethod
    def _swap_read(sc: MdSoftc, offset: int, length: int) -> bytes:
        """mdstart_swap BIO_READ: resident pages, paged-out pages paged in, holes zeros."""
        assert sc.object is not None
        return sc.object.read(offset, length)

    @staticmethod
    def _swap_write(sc: MdSoftc, offset: int, data: bytes) -> None:
        """mdstart_swap BIO_WRITE: ENOSPC (its VM_PAGER_ERROR) when the pages cannot be backed even
        after paging out; then nothing of this request was written."""
        assert sc.object is not None
        try:
            sc.object.write(offset, data)
        except VmNoMemory as exc:
            raise GeomError(ENOSPC, f"{sc.name}: {exc}") from None

    def _new_swap_object(self, npages: int) -> SwapObject | None:
        if self.swap_object is None:
            if self._standalone is None:
                self._standalone = standalone_backend()
            return SwapObject(self._standalone, npages, objtype="swap")
        return self.swap_object(npages)

    # ------------------------------------------------------------------ control (kern_md*_locked)
    def _new_unit(self, unit: int | None, type_: int) -> MdSoftc:
        """mdnew(): the lowest free unit (alloc_unr) or the one asked for (EBUSY when taken)."""
        if unit is None:
            unit = 0
            while unit in self.units:
                unit += 1
        elif unit in self.units:
            raise MdError(EBUSY, f"md{unit} exists")
        sc = MdSoftc(unit, type_)
        self.units[unit] = sc
        return sc

    def attach(self, type_: int, mediasize: int = 0, *, unit: int | None = None, sectorsize: int = 0,
               options: int = MD_AUTOUNIT, file: str | None = None, label: str = "", fwheads: int = 0,
               fwsectors: int = 0) -> int:
        """kern_mdattach_locked(): the new unit number, or MdError with md.c's errno.

        `unit` is honoured only without MD_AUTOUNIT in `options`, as the ioctl does."""
        if type_ not in (MD_MALLOC, MD_PRELOAD, MD_VNODE, MD_SWAP, MD_NULL):
            raise MdError(EINVAL, f"unknown md type {type_}")
        sectsize = sectorsize or DEV_BSIZE
        if sectsize > self.maxphys or mediasize < sectsize:
            raise MdError(EINVAL, f"sector size {sectsize} / media size {mediasize} out of range")
        if options & MD_AUTOUNIT:
            sc = self._new_unit(None, type_)
        else:
            if unit is None or unit > INT_MAX or unit < 0:
                raise MdError(EINVAL, f"bad unit {unit}")
            sc = self._new_unit(unit, type_)
        sc.label = label
        sc.mediasize = mediasize
        sc.sectorsize = sectsize
        try:
            if type_ == MD_MALLOC:
                self._create_malloc(sc, options, sectorsize, fwheads, fwsectors)
            elif type_ == MD_PRELOAD:
                raise MdError(EOPNOTSUPP, "preloaded disks attach only at boot")
            elif type_ == MD_VNODE:
                self._create_vnode(sc, options, file or "", fwheads, fwsectors)
            elif type_ == MD_SWAP:
                self._create_swap(sc, options, fwheads, fwsectors)
            elif sc.mediasize <= 0 or sc.mediasize % PAGE_SIZE:
                raise MdError(EDOM, "null md size must be a multiple of the page size")
        except MdError:
            self._destroy(sc)
            raise
        sc.mediasize -= sc.mediasize % sc.sectorsize      # prune a fractional sector
        self._publish(sc)
        return sc.unit

    def _create_malloc(self, sc: MdSoftc, options: int, sectorsize: int, fwheads: int, fwsectors: int) -> None:
        if options & ~(MD_AUTOUNIT | MD_COMPRESS | MD_RESERVE):
            raise MdError(EINVAL, "malloc md takes only autounit, compress and reserve")
        if sectorsize & (sectorsize - 1):
            raise MdError(EINVAL, "malloc md sector size must be a power of 2")
        if options & MD_RESERVE:
            options &= ~MD_COMPRESS        # compression makes no sense with reserved space
        sc.fwheads, sc.fwsectors = fwheads, fwsectors
        sc.flags = options & (MD_COMPRESS | MD_FORCE)
        sc.indir = self._dimension(sc.mediasize // sc.sectorsize)
        if options & MD_RESERVE:
            for secno in range(sc.mediasize // sc.sectorsize):
                sp = self._zalloc(sc)
                if sp is None:
                    raise MdError(ENOMEM, f"{sc.name}: cannot reserve sector {secno}")
                if self._s_write(sc.indir, secno, sp):
                    self.sector_free(sp.handle)
                    raise MdError(ENOMEM, f"{sc.name}: cannot reserve the radix tree")

    def _create_vnode(self, sc: MdSoftc, options: int, path: str, fwheads: int, fwsectors: int) -> None:
        sc.file = path
        writable = not options & MD_READONLY
        try:
            vp = self.vnode_open(path, writable)
        except OSError as exc:
            raise MdError(host_errno(exc.errno or EIO), f"{path}: {exc.strerror}") from None
        st = vp.stat()
        if not statmod.S_ISREG(st.st_mode):
            vp.close()
            raise MdError(EINVAL, f"{path} is not a regular file")
        sc.fwheads, sc.fwsectors = fwheads, fwsectors
        sc.ident = f"MD-DEV{st.st_dev}-INO{st.st_ino}"
        sc.flags = options & (MD_ASYNC | MD_CACHE | MD_FORCE | MD_VERIFY)
        if not writable:
            sc.flags |= MD_READONLY
        sc.vnode = vp

    def _create_swap(self, sc: MdSoftc, options: int, fwheads: int, fwsectors: int) -> None:
        """mdcreate_swap: EDOM for a size that is not whole pages or a reserve swap cannot hold."""
        if sc.mediasize <= 0 or sc.mediasize % PAGE_SIZE:
            raise MdError(EDOM, "swap md size must be a multiple of the page size")
        if options & MD_VERIFY:
            raise MdError(EINVAL, "verify is for vnode md only")
        npage = sc.mediasize // PAGE_SIZE
        sc.fwheads, sc.fwsectors = fwheads, fwsectors
        sc.object = self._new_swap_object(npage)
        if sc.object is None:
            raise MdError(ENOMEM, f"{sc.name}: no swap object")
        sc.flags = options & (MD_FORCE | MD_RESERVE)
        if options & MD_RESERVE and not sc.object.reserve(0, npage):
            raise MdError(EDOM, f"{sc.name}: swap cannot reserve {npage} pages")

    def preload(self, length: int, read: Callable[[int, int], bytes] | None = None,
                write: Callable[[int, bytes], None] | None = None, *, image: bytearray | None = None,
                name: str | None = None, readonly: bool = False) -> int:
        """md_preloaded(): a boot-time MD_PRELOAD disk over a loader image (direct copy), sector size 512."""
        if image is not None:
            buf = image

            def read(offset: int, n: int) -> bytes:
                return bytes(buf[offset:offset + n])

            def write(offset: int, data: bytes) -> None:
                buf[offset:offset + len(data)] = data
        sc = self._new_unit(None, MD_PRELOAD)
        sc.mediasize, sc.sectorsize = length, DEV_BSIZE
        sc.pl_read, sc.pl_write, sc.file = read, write, name or ""
        if readonly:
            sc.flags |= MD_READONLY
        self._publish(sc)
        return sc.unit

    def _publish(self, sc: MdSoftc) -> None:
        """mdinit(): the md<N> provider goes live in GEOM (kern.geom.conftxt shows it)."""
        unit = sc.unit
        writer = None if sc.flags & MD_READONLY else (lambda off, data: self.write(unit, off, data))
        md = MdUnit(unit, sc.type, sc.mediasize, sc.sectorsize, lambda off, n: self.read(unit, off, n), writer,
                    sc.fwheads, sc.fwsectors, sc.file or None)
        sc.pp = self.cls.create(self.mesh, md)

    def _destroy(self, sc: MdSoftc) -> None:
        """mddestroy(): wither the geom, close the vnode, free every sector."""
        if sc.pp is not None:
            gp = sc.pp.geom
            self.mesh.orphan(sc.pp)
            if gp in self.mesh.geoms:
                self.mesh.geoms.remove(gp)
            sc.pp = None
        if sc.vnode is not None:
            sc.vnode.close()
        if sc.indir is not None:
            self._destroy_indir(sc.indir)
            sc.indir = None
        if sc.object is not None:                  # vm_object_deallocate: pages and swap blocks back
            sc.object.deallocate()
            sc.object = None
        self.units.pop(sc.unit, None)

    def opencount(self, unit: int) -> int:
        pp = self._softc(unit).pp
        return int(pp is not None and (pp.acr + pp.acw + pp.ace) > 0)

    def detach(self, unit: int, force: bool = False, *, options: int | None = None, mediasize: int = 0) -> None:
        """kern_mddetach_locked(): EINVAL for options beyond FORCE or a size, ENOENT, EBUSY when open."""
        opts = (MD_FORCE if force else 0) if options is None else options
        if mediasize != 0 or opts & ~MD_FORCE:
            raise MdError(EINVAL, "detach takes only the force option")
        sc = self._softc(unit)
        if self.opencount(unit) and not sc.flags & MD_FORCE and not opts & MD_FORCE:
            raise MdError(EBUSY, f"{sc.name} is open")
        self._destroy(sc)

    def query(self, unit: int) -> dict[str, Any]:
        """kern_mdquery_locked(): type, options (the softc flags), sizes, file and label."""
        sc = self._softc(unit)
        return {"unit": sc.unit, "type": sc.type, "options": sc.flags, "mediasize": sc.mediasize,
                "sectorsize": sc.sectorsize, "fwheads": sc.fwheads, "fwsectors": sc.fwsectors,
                "file": sc.file, "label": sc.label, "ident": sc.ident}

    def list(self) -> list[int]:
        """Units in attach order (the devstat list order mdconfig -l walks)."""
        return list(self.units)

    def resize(self, unit: int, size: int, force: bool = False, *, options: int | None = None) -> None:
        """kern_mdresize_locked() and mdresize(): only vnode, null and swap disks change size."""
        opts = (MD_FORCE if force else 0) if options is None else options
        if opts & ~(MD_FORCE | MD_RESERVE):
            raise MdError(EINVAL, "resize takes only force and reserve")
        sc = self._softc(unit)
        if size < sc.sectorsize:
            raise MdError(EINVAL, "new size is smaller than a sector")
        if size < sc.mediasize and not sc.flags & MD_FORCE and not opts & MD_FORCE:
            raise MdError(EBUSY, "shrinking needs force")
        if sc.type == MD_SWAP:
            if size <= 0 or size % PAGE_SIZE:
                raise MdError(EDOM, "swap md size must be a multiple of the page size")
            assert sc.object is not None
            oldpages, newpages = -(-sc.mediasize // PAGE_SIZE), size // PAGE_SIZE
            if newpages < oldpages:
                sc.object.free_range(newpages, oldpages - newpages)
            elif (newpages > oldpages and (opts & MD_RESERVE or sc.flags & MD_RESERVE)
                  and not sc.object.reserve(oldpages, newpages - oldpages)):
                raise MdError(EDOM, f"{sc.name}: swap cannot reserve {newpages - oldpages} more pages")
            sc.object.size = newpages
        elif sc.type not in (MD_VNODE, MD_NULL):
            raise MdError(EOPNOTSUPP, f"{sc.name}: this md type cannot be resized")
        sc.mediasize = size
        if sc.pp is not None:                               # g_resize_provider
            sc.pp.mediasize = size
            sc.pp.geom.softc.mediasize = size

    def malloc_sectors(self, unit: int) -> int:
        """Live sector buffers of a malloc md (what its zone holds)."""
        sc = self._softc(unit)

        def count(ip: _Indir) -> int:
            if ip.shift:
                return sum(count(v) for v in ip.array if v)
            return sum(isinstance(v, _Sector) for v in ip.array)

        return count(sc.indir) if sc.indir is not None else 0

    # ------------------------------------------------------------------ /dev/mdctl
    def ioctl(self, cmd: int, data: bytes, user: dict[int, bytearray] | None = None) -> tuple[int, bytes]:
        """mdctlioctl(): (errno, the struct as copied back out).

        md_file and md_label are char pointers in the caller's address space: `user` maps each such
        address to its buffer (a NUL-terminated string to copy in; room to copy the answer out on
        MDIOCQUERY). A pointer not in `user` is EFAULT, as copyinstr/copyout would return."""
        if cmd not in (MDIOCATTACH, MDIOCDETACH, MDIOCQUERY, MDIOCLIST, MDIOCRESIZE):
            return ENOTTY, bytes(data)                      # ENOIOCTL, which the caller sees as ENOTTY
        if len(data) != MD_IOCTL_SIZE:
            return EFAULT, bytes(data)
        mdio = MdIoctl.unpack(bytes(data))
        if mdio.md_version != MDIOVERSION:
            return EINVAL, bytes(data)
        user = user if user is not None else {}
        try:
            if cmd == MDIOCATTACH:
                file = _copyinstr(user, mdio.md_file) if mdio.md_type == MD_VNODE else None
                label = _copyinstr(user, mdio.md_label) if mdio.md_label else ""
                mdio.md_unit = self.attach(mdio.md_type, mdio.md_mediasize, unit=mdio.md_unit,
                                           sectorsize=mdio.md_sectorsize, options=mdio.md_options, file=file,
                                           label=label, fwheads=mdio.md_fwheads, fwsectors=mdio.md_fwsectors)
                sc = self.units[mdio.md_unit]
                mdio.md_mediasize, mdio.md_sectorsize = sc.mediasize, sc.sectorsize
                if sc.type == MD_MALLOC and mdio.md_options & MD_RESERVE:
                    mdio.md_options &= ~MD_COMPRESS          # mdcreate_malloc() clears it in the request
            elif cmd == MDIOCDETACH:
                self.detach(mdio.md_unit, options=mdio.md_options, mediasize=mdio.md_mediasize)
            elif cmd == MDIOCRESIZE:
                self.resize(mdio.md_unit, mdio.md_mediasize, options=mdio.md_options)
            elif cmd == MDIOCQUERY:
                q = self.query(mdio.md_unit)
                mdio.md_type, mdio.md_options = q["type"], q["options"]
                mdio.md_mediasize, mdio.md_sectorsize = q["mediasize"], q["sectorsize"]
                if mdio.md_label:
                    _copyout(user, mdio.md_label, q["label"])
                if q["type"] == MD_VNODE or (q["type"] == MD_PRELOAD and mdio.md_file):
                    _copyout(user, mdio.md_file, q["file"])
            else:                                           # MDIOCLIST: md_pad[0] = count, then units
                units = self.list()
                shown = units[:MDNPAD - 2]
                mdio.md_pad = [len(shown)] + shown + ([-1] if len(units) > len(shown) else [])
                mdio.md_pad += [0] * (MDNPAD - len(mdio.md_pad))
        except MdError as exc:
            return exc.errno, (mdio.pack() if cmd == MDIOCATTACH else bytes(data))
        return 0, mdio.pack()


def _copyinstr(user: dict[int, bytearray], addr: int) -> str:
    if addr not in user:
        raise MdError(EFAULT, f"bad user address 0x{addr:x}")
    return bytes(user[addr]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _copyout(user: dict[int, bytearray], addr: int, text: str) -> None:
    raw = text.encode("utf-8", "surrogateescape") + b"\0"
    buf = user.get(addr)
    if buf is None or len(buf) < len(raw):
        raise MdError(EFAULT, f"bad user address 0x{addr:x}")
    buf[:len(raw)] = raw


def _file_runs(fd: int, offset: int, end: int, add: Callable[[int, int, str], None]) -> None:
    """Data and holes of a host file by lseek(SEEK_DATA/SEEK_HOLE); past its end it reads as zeros."""
    pos = offset
    try:
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno_mod.ENXIO:
                    raise
                break                            # ENXIO: no data from pos to the end of the file
            add(pos, min(data, end), "hole")
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            add(data, min(hole, end), "data")
            pos = hole
    except (OSError, AttributeError):            # no SEEK_DATA here: all of it is data
        add(pos, end, "data")
        return
    add(pos, end, "hole")


# Host errno (by name) to FreeBSD's number, for vnode_open failures on the host.
_FREEBSD_ERRNO = {"EPERM": 1, "ENOENT": 2, "EIO": 5, "ENXIO": 6, "EACCES": 13, "EBUSY": 16, "ENOTDIR": 20,
                  "EISDIR": 21, "EINVAL": 22, "ETXTBSY": 26, "EROFS": 30, "ELOOP": 62, "ENAMETOOLONG": 63}


def host_errno(num: int) -> int:
    return _FREEBSD_ERRNO.get(errno_mod.errorcode.get(num, ""), EIO)
