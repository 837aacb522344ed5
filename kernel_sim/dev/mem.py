"""mem(4): /dev/mem and /dev/kmem with arm's semantics, their ioctls, and the memory range table.

Why this shape: FreeBSD splits the device into sys/dev/mem/memdev.c (open, MEM_EXTRACT_PADDR,
MEM_KERNELDUMP) and sys/arm/arm/mem.c (memrw, memmmap, and memioctl_md, which answers ENOTTY to
everything else). Here both devices share one `MemDevices` that holds the machine, the kernel and
the memory range table; `mem` and `kmem` are the two cdevs devfs registers.

* /dev/mem: the file offset is a physical address; every page the transfer touches must lie in a
  dump_avail range (all RAM on the bus) or the call fails with EINVAL, as memrw() does. Flash and
  device registers are not in dump_avail on arm, so they are EINVAL too.
* /dev/kmem: the offset is a kernel virtual address, resolved by the MMU simulator
  (kernel_sim/vm/mmu.py) over the guest's own page tables; a page that does not translate for the
  access (pmap_extract() == 0 or kernacc() failing) is EFAULT. Nothing is transferred on an error.
* open: PRIV_KMEM_READ for reading, PRIV_KMEM_WRITE and kern.securelevel <= 0 for writing (EPERM).
  FreeBSD's kern_priv.c grants PRIV_KMEM_READ to every credential and leaves the gate to devfs's
  0640 root:kmem mode; armboard has no group credentials, so both privileges mean root, as the
  issue asks (a non-root open is EPERM, not devfs's EACCES).
* MEM_EXTRACT_PADDR: armboard's userland processes run in the kernel's address space (they have
  no vm_map of their own), so "the caller's address space" is the kernel's. me_state follows
  memioctl(): MAPPED when the page tables map the page (me_paddr, me_domain 0: one NUMA domain);
  VALID when they do not but the address lies inside a kernel_map entry (vm_map_lookup_entry
  succeeds: reserved KVA whose pages are not entered, such as a kernel stack's guard page, the
  unused part of the kmem arena or the buffer arena); INVALID otherwise.
* MEMRANGE_GET/SET: FreeBSD arm answers ENOTTY (memioctl_md). armboard answers with the board's
  memory map, `hw.mem.strict_arm=1` restores ENOTTY. See `MemRanges` for what SET can change.
* MEM_KERNELDUMP: a live minidump (kernel_sim/kern/minidump.py) to a descriptor of the caller,
  with livedump_start()'s checks in its order (sys/kern/kern_vnodedumper.c).
"""

from __future__ import annotations

import bisect
import struct
from collections import namedtuple
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernel_sim.guest.abi import PAGE_SIZE
from kernel_sim.kern.sysapi import (
    EBUSY,
    EFAULT,
    EINVAL,
    ENOENT,
    ENOSPC,
    ENOTTY,
    ENXIO,
    EOPNOTSUPP,
    EPERM,
    O_ACCMODE,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    Caller,
    SysError,
)
from kernel_sim.kern.version import VERSION
from kernel_sim.vm.phys import dump_avail_of

if TYPE_CHECKING:
    from board.machine import Machine
    from kernel_sim.kern.msgbuf import MsgBuf
    from kernel_sim.kern.sysctl import SysctlTree

CDEV_MINOR_MEM, CDEV_MINOR_KMEM = 0, 1       # sys/arm/include/memdev.h
UID_ROOT, GID_KMEM = 0, 2                    # sys/sys/conf.h
MEM_MODE = 0o640                             # sys/dev/mem/memdev.c make_dev(..., 0640, "mem")
PAGE_MASK = PAGE_SIZE - 1

# sys/sys/ioccom.h
IOCPARM_SHIFT, IOCPARM_MASK = 13, (1 << 13) - 1
IOC_OUT, IOC_IN = 0x40000000, 0x80000000
IOC_INOUT = IOC_IN | IOC_OUT


def _ioc(inout: int, group: str, num: int, size: int) -> int:
    return inout | ((size & IOCPARM_MASK) << 16) | (ord(group) << 8) | num


def iocparm_len(cmd: int) -> int:
    return (cmd >> 16) & IOCPARM_MASK


# sys/sys/memrange.h, armv7 ILP32 layouts: a pointer is 4 bytes, a uint64_t is 8-byte aligned.
MEM_RANGE_DESC = struct.Struct("<QQi8s4x")     # mr_base, mr_len, mr_flags, mr_owner[8] (+4 padding) = 32
MEM_RANGE_OP = struct.Struct("<Iii")           # mo_desc (pointer), mo_arg[2] = 12
MEM_EXTRACT = struct.Struct("<QQii40x")        # me_vaddr, me_paddr, me_domain, me_state, pad1[5] = 64
MEM_LIVEDUMP_ARG = struct.Struct("<iiB7x16x")  # fd, flags, compression, pad1[7], pad2[2] = 32
MEMRANGE_GET = _ioc(IOC_INOUT, "m", 50, MEM_RANGE_OP.size)      # 0xc00c6d32
MEMRANGE_SET = _ioc(IOC_IN, "m", 51, MEM_RANGE_OP.size)         # 0x800c6d33
MEM_EXTRACT_PADDR = _ioc(IOC_INOUT, "m", 52, MEM_EXTRACT.size)  # 0xc0406d34
MEM_KERNELDUMP = _ioc(IOC_IN, "m", 53, MEM_LIVEDUMP_ARG.size)   # 0x80206d35
ME_STATE_INVALID, ME_STATE_VALID, ME_STATE_MAPPED = 0, 1, 2
MEMRANGE_SET_UPDATE, MEMRANGE_SET_REMOVE = 0, 1

# sys/sys/memrange.h mr_flags
MDF_UNCACHEABLE, MDF_WRITECOMBINE, MDF_WRITETHROUGH = 1 << 0, 1 << 1, 1 << 2
MDF_WRITEBACK, MDF_WRITEPROTECT, MDF_UNKNOWN = 1 << 3, 1 << 4, 1 << 5
MDF_ATTRMASK = 0x00FFFFFF
MDF_FIXBASE, MDF_FIXLEN, MDF_FIRMWARE, MDF_ACTIVE = 1 << 24, 1 << 25, 1 << 26, 1 << 27
MDF_BOGUS, MDF_FIXACTIVE, MDF_BUSY, MDF_FORCE = 1 << 28, 1 << 29, 1 << 30, 1 << 31
# usr.sbin/memcontrol/memcontrol.c attrnames[], then the two flags it does not name.
ATTR_NAMES = (("uncacheable", MDF_UNCACHEABLE), ("write-combine", MDF_WRITECOMBINE),
              ("write-through", MDF_WRITETHROUGH), ("write-back", MDF_WRITEBACK),
              ("write-protect", MDF_WRITEPROTECT), ("force", MDF_FORCE), ("unknown", MDF_UNKNOWN),
              ("fixed-base", MDF_FIXBASE), ("fixed-length", MDF_FIXLEN), ("set-by-firmware", MDF_FIRMWARE),
              ("active", MDF_ACTIVE), ("bogus", MDF_BOGUS), ("fixed-active", MDF_FIXACTIVE), ("busy", MDF_BUSY))
SETTABLE_ATTRS = {name: flag for name, flag in ATTR_NAMES[:5]}
MEMRANGE_NDESC = 16                    # descriptor slots: armboard's choice (x86 has its MTRR count)
ATTRS_BY_KIND = {                      # what each kind of board region can be given (else EOPNOTSUPP)
    "ram": MDF_UNCACHEABLE | MDF_WRITECOMBINE | MDF_WRITETHROUGH | MDF_WRITEBACK | MDF_WRITEPROTECT,
    "flash": MDF_UNCACHEABLE | MDF_WRITEPROTECT,     # read-array mode; stores are flash commands
    "device": MDF_UNCACHEABLE,                        # ARM Device memory is never cached
}

SECURELEVEL = "kern.securelevel"
STRICT_ARM = "hw.mem.strict_arm"
GZLEVEL = "kern.kerneldump_gzlevel"


def flag_names(flags: int) -> list[str]:
    """The attribute words memcontrol(8) prints for mr_flags."""
    return [name for name, bit in ATTR_NAMES if flags & bit]


# ---------------------------------------------------------------------------------------------- ranges
class RangeDesc(namedtuple("RangeDesc", "base length flags owner")):
    """struct mem_range_desc."""

    __slots__ = ()

    base: int
    length: int
    flags: int
    owner: str

    def pack(self) -> bytes:
        flags = self.flags & 0xFFFFFFFF
        return MEM_RANGE_DESC.pack(self.base, self.length, flags - (1 << 32) if flags >> 31 else flags,
                                   self.owner.encode()[:7])

    @classmethod
    def unpack(cls, raw: bytes) -> RangeDesc:
        base, length, flags, owner = MEM_RANGE_DESC.unpack(raw[:MEM_RANGE_DESC.size])
        flags &= 0xFFFFFFFF
        owner = owner[:7].split(b"\0", 1)[0]          # memioctl_md clamps mr_owner[7] to NUL
        return cls(base, length, flags, owner.decode("utf-8", "replace"))

    @property
    def end(self) -> int:
        return self.base + self.length

    def overlaps(self, other: RangeDesc) -> bool:
        return self.base < other.end and other.base < self.end


class BoardRegion(namedtuple("BoardRegion", "name base size kind")):
    __slots__ = ()

    name: str
    base: int
    size: int
    kind: str  # "ram", "flash", "device"

    @property
    def end(self) -> int:
        return self.base + self.size


def board_regions(machine: Machine) -> list[BoardRegion]:
    """The board's physical memory map: RAM, flash banks, device registers."""
    regions = [BoardRegion("ram", machine.profile.ram_base, machine.ram_size, "ram")]
    regions += [BoardRegion(name, bank.base, bank.size, "flash") for name, bank in machine.flash.items()]
    regions += [BoardRegion(name, dev.base, dev.size, "device") for name, dev in machine.devices.items()]
    return sorted(regions, key=lambda r: r.base)


_DEFAULT_ATTR = {"ram": MDF_WRITEBACK, "flash": MDF_WRITEPROTECT, "device": MDF_UNCACHEABLE}
_BOARD_FLAGS = MDF_FIRMWARE | MDF_FIXBASE | MDF_FIXLEN | MDF_FIXACTIVE | MDF_ACTIVE


def _conflicts(a: int, b: int) -> bool:
    """x86_mtrrconflict(): uncacheable overlaps anything, write-through may overlap write-back."""
    a, b = a & MDF_ATTRMASK, b & MDF_ATTRMASK
    if a == MDF_UNCACHEABLE or b == MDF_UNCACHEABLE:
        return False
    return not ({a, b} <= {MDF_WRITETHROUGH, MDF_WRITEBACK})


class MemRanges:
    """The memory range descriptors: the board's regions, then what MEMRANGE_SET added.

    Why a table at all on arm: it is the kernel's record of the attributes each physical range is
    meant to have, which memcontrol-style tools list and change. Unicorn models no caches, so an
    attribute changes no timing or coherency here; requests the board's hardware could not honour
    (caching device registers, making flash writable by stores) are refused with EOPNOTSUPP, and
    everything else follows sys/x86/x86/x86_mem.c's rules with mem(4)'s errors:

    * UPDATE of a range not inside one board region, not page-aligned, empty, beyond 32 bits, or
      with not exactly one of the five attributes: EINVAL. An exact match of an active range takes
      it over (EBUSY when it is busy; a board range keeps its fixed flags and loses
      set-by-firmware). A partial overlap with a busy range: EBUSY; with a conflicting attribute
      (x86_mtrrconflict: uncacheable overlaps anything, write-through write-back): EINVAL. No free
      slot: ENOSPC.
    * REMOVE of a range that matches no active descriptor exactly: ENOENT; of a board range
      (fixed-active): EPERM, as x86_mrset() answers; of a busy one: EBUSY.
    * Any other operation: EOPNOTSUPP. No slots at all: ENXIO (no board has none).
    The console's UART is busy: the console driver owns its registers (mapped in the devmap).
    """

    def __init__(self, regions: list[BoardRegion], busy: set[str] = frozenset(), ndesc: int = MEMRANGE_NDESC) -> None:
        self.regions = regions
        self.slots: list[RangeDesc] = []
        for r in regions[:ndesc]:
            flags = _DEFAULT_ATTR[r.kind] | _BOARD_FLAGS | (MDF_BUSY if r.name in busy else 0)
            self.slots.append(RangeDesc(r.base, r.size, flags, r.name[:7]))
        self.slots += [RangeDesc(0, 0, 0, "")] * (ndesc - len(self.slots))

    @classmethod
    def for_machine(cls, machine: Machine) -> MemRanges:
        return cls(board_regions(machine), busy={machine.profile.console_device})

    @property
    def ndesc(self) -> int:
        return len(self.slots)

    def active(self) -> list[RangeDesc]:
        return [d for d in self.slots if d.flags & MDF_ACTIVE]

    def get(self) -> list[RangeDesc]:
        """mem_range_attr_get(): every slot, inactive ones included."""
        if not self.slots:
            raise SysError(ENXIO, "no memory range descriptors")
        return list(self.slots)

    def _region_of(self, d: RangeDesc) -> BoardRegion | None:
        for r in self.regions:
            if r.base <= d.base and d.end <= r.end:
                return r
        return None

    def set(self, d: RangeDesc, op: int) -> None:
        """mem_range_attr_set(); SysError with mem(4)'s errno when refused."""
        if not self.slots:
            raise SysError(ENXIO, "no memory range descriptors")
        if op == MEMRANGE_SET_UPDATE:
            self._update(d)
        elif op == MEMRANGE_SET_REMOVE:
            self._remove(d)
        else:
            raise SysError(EOPNOTSUPP, f"memory range operation {op} is not supported")

    def _update(self, d: RangeDesc) -> None:
        attr = d.flags & MDF_ATTRMASK
        if (d.length <= 0 or d.base & PAGE_MASK or d.length & PAGE_MASK or d.end > 1 << 32
                or attr not in SETTABLE_ATTRS.values()):
            raise SysError(EINVAL, f"invalid memory range 0x{d.base:x}/0x{d.length:x} flags 0x{d.flags & 0xFFFFFFFF:x}")
        region = self._region_of(d)
        if region is None:
            raise SysError(EINVAL, f"0x{d.base:x}/0x{d.length:x} is not inside one region of the board's memory map")
        if not attr & ATTRS_BY_KIND[region.kind]:
            raise SysError(EOPNOTSUPP, f"{region.name} ({region.kind}) cannot be made {flag_names(attr)[0]}")
        target = None
        for i, cur in enumerate(self.slots):
            if not cur.flags & MDF_ACTIVE:
                continue
            if cur.base == d.base and cur.length == d.length:
                if cur.flags & MDF_BUSY:
                    raise SysError(EBUSY, f"0x{cur.base:x}/0x{cur.length:x} is busy ({cur.owner})")
                target = i
                break
            if cur.overlaps(d):
                if cur.flags & MDF_BUSY:
                    raise SysError(EBUSY, f"0x{d.base:x}/0x{d.length:x} overlaps busy range {cur.owner}")
                if _conflicts(cur.flags, attr):
                    raise SysError(EINVAL, f"0x{d.base:x}/0x{d.length:x} {flag_names(attr)[0]} overlaps "
                                           f"{cur.owner} ({flag_names(cur.flags)[0]})")
        if target is not None:
            cur = self.slots[target]
            flags = (cur.flags & ~MDF_ATTRMASK & ~MDF_FIRMWARE) | attr
            self.slots[target] = cur._replace(flags=flags, owner=d.owner or cur.owner)
            return
        free = next((i for i, cur in enumerate(self.slots) if not cur.flags & MDF_ACTIVE), None)
        if free is None:
            raise SysError(ENOSPC, f"all {self.ndesc} memory range descriptors are in use")
        self.slots[free] = RangeDesc(d.base, d.length, MDF_ACTIVE | attr, d.owner)

    def _remove(self, d: RangeDesc) -> None:
        for i, cur in enumerate(self.slots):
            if cur.flags & MDF_ACTIVE and cur.base == d.base and cur.length == d.length:
                if cur.flags & MDF_FIXACTIVE:
                    raise SysError(EPERM, f"0x{cur.base:x}/0x{cur.length:x} ({cur.owner}) cannot be disabled")
                if cur.flags & MDF_BUSY:
                    raise SysError(EBUSY, f"0x{cur.base:x}/0x{cur.length:x} is busy ({cur.owner})")
                self.slots[i] = RangeDesc(cur.base, cur.length, cur.flags & ~MDF_ACTIVE, "")
                return
        raise SysError(ENOENT, f"no memory range 0x{d.base:x}/0x{d.length:x}")


# ---------------------------------------------------------------------------------------------- devices
def _sysctl_default(tree: SysctlTree, name: str, value: int, description: str) -> None:
    """Register an int OID unless the kernel already has it (another subsystem may own it)."""
    from kernel_sim.kern.sysctl import SysctlError

    try:
        tree.get(name)
    except SysctlError:
        tree.add(name, "int", value, description=description, readonly=False)


class MemDevices:
    """The state /dev/mem and /dev/kmem share: the machine, the kernel, the range table, the dump lock."""

    def __init__(self, machine: Machine, startup=None, msgbuf: MsgBuf | None = None,
                 sysctl: SysctlTree | None = None, printf: Callable[[str], None] | None = None,
                 securelevel: Callable[[], int] | None = None, now: Callable[[], float] | None = None) -> None:
        from kernel_sim.kern.sysctl import SysctlTree

        self.machine = machine
        self.startup = startup
        self.msgbuf = msgbuf if msgbuf is not None else getattr(startup, "msgbuf", None)
        self.sysctl = sysctl or (startup.sysctl if startup is not None else SysctlTree())
        self.printf = printf or machine.console.write_text
        self.dump_avail = dump_avail_of(machine.phys)
        self.ranges = MemRanges.for_machine(machine)
        self.dumping = False
        self.securelevel = securelevel or self._securelevel_sysctl
        self.now = now or (lambda: float(getattr(startup, "virtual_seconds", 0.0)))   # the dump's dumptime
        _sysctl_default(self.sysctl, STRICT_ARM, 0,
                        "MEMRANGE_GET/SET answer ENOTTY as FreeBSD arm's mem(4) does (armboard)")
        _sysctl_default(self.sysctl, GZLEVEL, 6, "Kernel crash dump compression level")  # kern_shutdown.c
        self.mem = MemDevice(self)
        self.kmem = KmemDevice(self)

    def _securelevel_sysctl(self) -> int:
        """kern.securelevel when the kernel publishes it, else -1 (FreeBSD's default: insecure mode)."""
        from kernel_sim.kern.sysctl import SysctlError

        try:
            return int(self.sysctl.get(SECURELEVEL))
        except (SysctlError, ValueError):
            return -1

    # ------------------------------------------------------------------ checks
    def check_open(self, caller: Caller, flags: int) -> None:
        """memopen(): PRIV_KMEM_READ to read, PRIV_KMEM_WRITE and securelevel <= 0 to write."""
        acc = flags & O_ACCMODE
        if acc in (O_RDONLY, O_RDWR) and caller.uid != 0:
            raise SysError(EPERM, "PRIV_KMEM_READ: only root may read /dev/mem and /dev/kmem")
        if acc in (O_WRONLY, O_RDWR):
            if caller.uid != 0:
                raise SysError(EPERM, "PRIV_KMEM_WRITE: only root may write /dev/mem and /dev/kmem")
            level = self.securelevel()
            if level > 0:                   # securelevel_gt(cred, 0)
                raise SysError(EPERM, f"kern.securelevel is {level}: memory cannot be written")

    def check_phys(self, offset: int, size: int) -> None:
        """memrw() for /dev/mem: every page touched must be in a dump_avail range, else EINVAL."""
        if offset < 0 or size < 0:
            raise SysError(EINVAL, f"offset {offset} is not a physical address")
        if size == 0:
            return                          # no transfer, no check (memrw's loop never runs)
        page, end = offset & ~PAGE_MASK, offset + size
        while page < end:
            rng = next(((s, e) for s, e in self.dump_avail if s <= page < e), None)
            if rng is None:
                raise SysError(EINVAL, f"physical address 0x{page:x} is not in dump_avail (RAM)")
            page = max(page + PAGE_SIZE, rng[1] & ~PAGE_MASK)   # the rest of this range is fine

    def phys_read(self, offset: int, size: int) -> bytes:
        self.check_phys(offset, size)
        return self._copy(offset, size) if size else b""

    def _copy(self, pa: int, size: int) -> bytes:
        """One copy out of the host mapping behind guest RAM."""
        phys = self.machine.phys
        region = phys.find(pa)
        if region is not None and pa + size <= region.end:
            return region.host[pa - region.base:pa - region.base + size]
        return phys.read(pa, size)

    def phys_write(self, offset: int, data: bytes) -> int:
        self.check_phys(offset, len(data))
        self.machine.phys.write(offset, data)
        self.machine.flush_tlb()          # the bytes may be page tables: the CPU must walk them again
        return len(data)

    def _translate_all(self, va: int, size: int, access: str) -> list[tuple[int, int]]:
        """Every page of [va, va + size) through the MMU simulator: (pa, length) runs, or EFAULT."""
        from kernel_sim.vm.cpu_mmu import mmu_for
        from kernel_sim.vm.mmu import MMUFault

        if va < 0 or size < 0:
            raise SysError(EINVAL, f"offset {va} is not a kernel virtual address")
        mmu = mmu_for(self.machine)
        out: list[tuple[int, int]] = []
        cur, end = va, va + size
        while cur < end:
            if cur > 0xFFFFFFFF:
                raise SysError(EFAULT, f"0x{cur:x} is beyond the 32-bit address space")
            try:
                t = mmu.translate(cur, access, True)
            except MMUFault as fault:
                raise SysError(EFAULT, f"kernel address 0x{cur:08x}: {fault.description}") from None
            n = min(end - cur, t.base_va + t.page_size - cur)
            if out and out[-1][0] + out[-1][1] == t.pa:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((t.pa, n))
            cur += n
        return out

    def _memory_only(self, va: int, runs: list[tuple[int, int]]) -> None:
        """A mapping of device registers (the console's devmap) is not memory to copy: EFAULT.
        FreeBSD would uiomove() from the registers; here a read must not drain the UART."""
        for pa, n in runs:
            cur = pa
            while cur < pa + n:
                region = self.machine.phys.find(cur)
                if region is None:
                    raise SysError(EFAULT, f"kernel address 0x{va:08x} maps 0x{cur:08x}, which is not RAM")
                cur = region.end

    def kmem_read(self, va: int, size: int) -> bytes:
        runs = self._translate_all(va, size, "read")
        self._memory_only(va, runs)
        return b"".join(self._copy(pa, n) for pa, n in runs)

    def kmem_write(self, va: int, data: bytes) -> int:
        runs = self._translate_all(va, len(data), "write")
        self._memory_only(va, runs)
        done = 0
        for pa, n in runs:
            self.machine.phys.write(pa, data[done:done + n])
            done += n
        self.machine.flush_tlb()
        return done

    # ------------------------------------------------------------------ MEM_EXTRACT_PADDR
    def _kernel_map(self):
        procs = getattr(self.startup, "procs", None)
        if procs is not None:
            return procs.kernel_map
        kva = getattr(self.startup, "kva", None)
        return kva.make_arenas()[0] if kva is not None and kva.ok else None

    def in_kernel_map(self, va: int) -> bool:
        """vm_map_lookup_entry(kernel_map, va): inside an allocated range of kernel_map."""
        kmap = self._kernel_map()
        if kmap is None:
            return False
        allocs = kmap.allocations()
        i = bisect.bisect_right([a.start for a in allocs], va) - 1
        return i >= 0 and va < allocs[i].end

    def extract(self, va: int) -> tuple[int, int]:
        """(me_state, me_paddr) for a virtual address of the caller's (= the kernel's) address space."""
        from kernel_sim.vm.cpu_mmu import mmu_for

        va &= 0xFFFFFFFFFFFFFFFF
        if va <= 0xFFFFFFFF:
            pa = mmu_for(self.machine).try_translate(va, "read", True)
            if pa is not None:
                return ME_STATE_MAPPED, pa
            if self.in_kernel_map(va):
                return ME_STATE_VALID, 0
        return ME_STATE_INVALID, 0

    # ------------------------------------------------------------------ MEM_KERNELDUMP
    def kerneldump(self, caller: Caller, fd: int, flags: int, compression: int) -> None:
        """livedump_start(): the checks in FreeBSD's order, then minidumpsys() to the descriptor."""
        from kernel_sim.kern.minidump import COMPRESSIONS

        if caller.uid != 0:
            raise SysError(EPERM, "PRIV_KMEM_READ: only root may take a kernel dump")
        if flags != 0:
            raise SysError(EINVAL, f"mem_livedump_arg flags must be 0, not {flags}")
        sink = caller.file_sink(fd)                 # SysError(EBADF) unless fd is open for writing
        if compression not in COMPRESSIONS:
            raise SysError(EINVAL, f"unknown kernel dump compression {compression}")
        self.dump_to(sink, compression)

    def dump_to(self, sink, compression: int):
        """One live dump at a time (livedump_sx): EBUSY while another is being written."""
        from kernel_sim.kern.minidump import minidumpsys

        if self.dumping:
            raise SysError(EBUSY, "a kernel dump is already in progress")
        self.dumping = True
        try:
            return minidumpsys(sink, self.dump_source(), compression, level=int(self.sysctl.get(GZLEVEL)),
                               printf=self.printf)
        finally:
            self.dumping = False

    def dump_source(self):
        """What the running kernel looks like to minidumpsys()."""
        from kernel_sim.kern.minidump import DumpSource
        from kernel_sim.kern.sysctl import SysctlError

        s = self.startup
        if s is None:
            raise SysError(ENXIO, "the Python kernel has not started: there is no kernel to dump")
        if self.msgbuf is None:
            from kernel_sim.kern.msgbuf import MsgBuf

            self.msgbuf = MsgBuf.for_startup(s)     # initarm always has one; a kernel built without the hook
        try:
            hostname = str(self.sysctl.get("kern.hostname"))
        except SysctlError:   # no hostname OID: prison0's name is empty then
            hostname = ""
        pmap = s.pmap
        return DumpSource(self.machine.phys, pmap.kern_pt1, pmap.kern_pt2tab, pmap.kernel_vm_end, self.dump_avail,
                          self.msgbuf.area(), self.msgbuf.msg_size, s.memory.real, f"{VERSION}\n", hostname,
                          getattr(s, "panic", None) or "", int(self.now()))

    # ------------------------------------------------------------------ ioctl
    def ioctl(self, caller: Caller, cmd: int, arg: bytes, user: dict[int, bytearray] | None) -> bytes:
        size = iocparm_len(cmd)
        if cmd in (MEM_EXTRACT_PADDR, MEM_KERNELDUMP, MEMRANGE_GET, MEMRANGE_SET) and len(arg) < size:
            raise SysError(EFAULT, f"ioctl 0x{cmd:08x} needs a {size}-byte argument, got {len(arg)}")
        if cmd == MEM_EXTRACT_PADDR:
            vaddr = MEM_EXTRACT.unpack_from(arg)[0]
            state, pa = self.extract(vaddr)
            return MEM_EXTRACT.pack(vaddr, pa, 0, state)
        if cmd == MEM_KERNELDUMP:
            fd, flags, compression = MEM_LIVEDUMP_ARG.unpack_from(arg)
            self.kerneldump(caller, fd, flags, compression)
            return bytes(arg[:size])
        if cmd in (MEMRANGE_GET, MEMRANGE_SET):
            return self._memrange(cmd, arg, user or {})
        raise SysError(ENOTTY, f"ioctl 0x{cmd:08x} is not a mem(4) ioctl")

    def _memrange(self, cmd: int, arg: bytes, user: dict[int, bytearray]) -> bytes:
        """memioctl_md(): ENOTTY under hw.mem.strict_arm, else the range table."""
        if int(self.sysctl.get(STRICT_ARM)):
            raise SysError(ENOTTY, "hw.mem.strict_arm=1: FreeBSD arm has no memory range ioctls")
        desc_ptr, arg0, arg1 = MEM_RANGE_OP.unpack_from(arg)
        if cmd == MEMRANGE_GET:
            slots = self.ranges.get()
            nd = min(arg0, len(slots))
            if nd > 0:
                raw = b"".join(d.pack() for d in slots[:nd])
                buf = user.get(desc_ptr)
                if buf is None or len(buf) < len(raw):
                    raise SysError(EFAULT, f"mo_desc 0x{desc_ptr:x} cannot hold {nd} descriptors")
                buf[:len(raw)] = raw
            else:
                nd = len(slots)
            return MEM_RANGE_OP.pack(desc_ptr, nd, arg1)
        buf = user.get(desc_ptr)
        if buf is None or len(buf) < MEM_RANGE_DESC.size:
            raise SysError(EFAULT, f"mo_desc 0x{desc_ptr:x} is not a struct mem_range_desc")
        self.ranges.set(RangeDesc.unpack(bytes(buf)), arg0)
        return bytes(arg[:MEM_RANGE_OP.size])


class _MemCdev:
    """What both cdevs share: open and ioctl (sys/dev/mem/memdev.c)."""

    name = ""
    mode = MEM_MODE
    uid = UID_ROOT
    gid = GID_KMEM
    minor = -1

    def __init__(self, state: MemDevices) -> None:
        self.state = state

    def d_open(self, caller: Caller, flags: int) -> None:
        self.state.check_open(caller, flags)

    def d_close(self, caller: Caller) -> None:
        return None

    def d_ioctl(self, caller: Caller, cmd: int, arg: bytes, user: dict[int, bytearray] | None = None) -> bytes:
        return self.state.ioctl(caller, cmd, arg, user)


class MemDevice(_MemCdev):
    """/dev/mem: physical memory, offsets in dump_avail."""

    name = "mem"
    minor = CDEV_MINOR_MEM

    def d_read(self, caller: Caller, offset: int, size: int) -> bytes:
        return self.state.phys_read(offset, size)

    def d_write(self, caller: Caller, offset: int, data: bytes) -> int:
        return self.state.phys_write(offset, data)

    def d_mmap(self, caller: Caller, offset: int, prot: int = 0) -> int:
        """memmmap(): the physical address that page of the mapping is (the offset itself)."""
        self.state.check_phys(offset, PAGE_SIZE)
        return offset


class KmemDevice(_MemCdev):
    """/dev/kmem: kernel virtual memory, through the guest's page tables."""

    name = "kmem"
    minor = CDEV_MINOR_KMEM

    def d_read(self, caller: Caller, offset: int, size: int) -> bytes:
        return self.state.kmem_read(offset, size)

    def d_write(self, caller: Caller, offset: int, data: bytes) -> int:
        return self.state.kmem_write(offset, data)

    def d_mmap(self, caller: Caller, offset: int, prot: int = 0) -> int:
        """memmmap() refuses /dev/kmem: mmap(2) fails with EINVAL."""
        raise SysError(EINVAL, "/dev/kmem cannot be mapped")
