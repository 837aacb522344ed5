"""The boot-time kernel virtual address layout of FreeBSD 11.3 armv7, consumer by consumer.

Why: md(4) users ask "which VM_KMEM_SIZE_SCALE lets my 200 MiB root image boot, and why do the others
fail?". The answer is arithmetic over one 1 GiB address space [KERNBASE, vm_max_kernel_address): the
kernel and its modules, then every reservation FreeBSD makes at boot, in FreeBSD's order, each placed by
the same allocator rules (vmem.py), so the first consumer that does not fit is the one that panics, and
what is left is what kernel stacks and later allocations draw from.

The order (each step cites where FreeBSD does it):
 1. initarm/pmap_bootstrap (sys/arm/arm/machdep.c, sys/arm/arm/pmap-v6.c): PT2MAP below KERNBASE (outside
    the kernel map), the kernel with modules and metadata, the pad to the next 1 MiB, the L1 table,
    PT2TAB and the PT2 pages, then pmap_preboot_get_vpages: dpcpu, IRQ/ABT/UND stacks, thread0's kstack,
    the message buffer. The board's device mappings sit above vm_max_kernel_address (outside).
 2. vm_mem_init -> vm_page_startup (sys/vm/vm_page.c): UMA boot pages, the minidump bitmap and the
    vm_page array are pmap_map()ed at virtual_avail. kmem_init then makes kernel_map
    [VM_MIN_KERNEL_ADDRESS, virtual_end) with everything so far as one used entry.
 3. pmap_init (pmap-v6.c): the section pv_table (kmem_malloc) and the pv chunk KVA (kva_alloc), panic
    "pmap_init: not enough kvm for pv chunks".
 4. kmeminit (sys/kern/kern_malloc.c, 11.3): kva_alloc(vm_kmem_size) for the kmem arena; then the 64 KiB
    zero region (sys/vm/vm_kern.c kmem_init_zero_region).
 5. cpu_startup -> vm_ksubmap_init (sys/vm/vm_init.c): the buffer headers (kmem_malloc, panic "startup: no
    room for tables"), the clean map (buffer arena + swap KVA + transient bio arena, one kva_alloc),
    exec_map and pipe_map (kmem_suballoc, panic "kmem_suballoc: bad status return of %d"); bufinit's
    unmapped_buf (sys/kern/vfs_bio.c).
 6. sf_buf_init (sys/kern/subr_sfbuf.c, SI_SUB_MBUF): the sendfile buffer KVA.

Allocation rules: kva_alloc/kmem_malloc take from kernel_arena best-fit; when it has no room, kernel_arena
imports roundup(size, KVA_QUANTUM) from kernel_map, superpage (1 MiB) aligned, lowest address first
(sys/vm/vm_init.c kva_import, vm_map_find VMFS_SUPER_SPACE). kmem_suballoc takes kernel_map first-fit.

UNCONFIRMED (chosen here, not read in an 11.3 tree): the order of the preboot pages; that 11.3 armv7
builds subr_sfbuf.c (SFBUF and SFBUF_MAP are in a later sys/arm/include/vmparam.h); that the zero region
comes after kmeminit; the first managed physical address for pv_table (taken as ram_end - physmem); the
struct sizes and page counts marked UNCONFIRMED below. pmap-v6 pmap_bootstrap's few CMAP/CADDR window
pages are not modelled.

Modelling choice (stated, not FreeBSD's): 11.3 does not check kva_alloc's result for the kmem arena, the
zero region, the clean map, unmapped_buf or the sf_bufs; a failure there leaves an arena at address 0 and
the kernel faults later. armboard ends the boot at the reservation instead, with the panic FreeBSD up to
10.x gave when these were kmem_suballoc()ed submaps: "kmem_suballoc: bad status return of 3".
"""

from __future__ import annotations

from collections import namedtuple
from types import MappingProxyType

from kernel_sim.errors import InputError
from kernel_sim.vm.kmem import KmemResult, kmem_size_for_scale, parse_tunable
from kernel_sim.vm.vmem import Vmem, VmemExhausted

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Mapping

MIB = 1 << 20
PAGE_SIZE = 4096                   # sys/arm/include/param.h
KERNBASE = 0xC000_0000             # sys/arm/include/vmparam.h (VM_MIN_KERNEL_ADDRESS = KERNBASE)
PTE1_SIZE = MIB                    # sys/arm/include/pte-v6.h: one L1 section
PT2MAP_SIZE = 4 * MIB              # sys/arm/include/pmap_var.h: PT2MAP = KERNBASE - PT2MAP_SIZE
PT2MAP = KERNBASE - PT2MAP_SIZE
L1_PAGES = 4                       # sys/arm/include/pmap_var.h NB_IN_PT1 = 16 KiB
PT2TAB_PAGES = 1                   # sys/arm/include/pmap_var.h NPG_IN_PT2TAB
PT2PG_SPAN = 4 * MIB               # sys/arm/include/pmap_var.h NPT2_IN_PG = 4 L2 tables of 1 MiB each
ARM_VECTORS_HIGH = 0xFFFF_0000     # sys/arm/include/armreg.h; DEVMAP_MAX_VADDR in sys/arm/include/vmparam.h
DEFAULT_VM_MAX_KERNEL_ADDRESS = 0xFFE0_0000  # the default board's lowest device mapping (platform_lastaddr)
KVA_QUANTUM = MIB                  # sys/vm/vm_init.c: 1 << (VM_LEVEL_0_ORDER + PAGE_SHIFT), VM_LEVEL_0_ORDER 8
KERN_NO_SPACE = 3                  # sys/vm/vm_param.h
U32 = 0xFFFF_FFFF

# initarm's preboot pages (sys/arm/arm/machdep.c, pmap_preboot_get_vpages).
KSTACK_PAGES = 2                   # sys/arm/include/param.h
IRQ_STACK_PAGES = 1                # sys/arm/arm/machdep.c IRQ_STACK_SIZE (pages per CPU); UNCONFIRMED
ABT_STACK_PAGES = 1                # sys/arm/arm/machdep.c ABT_STACK_SIZE; UNCONFIRMED
UND_STACK_PAGES = 1                # sys/arm/arm/machdep.c UND_STACK_SIZE; UNCONFIRMED
DPCPU_PAGES = 2                    # sys/sys/pcpu.h DPCPU_SIZE depends on the kernel's set_pcpu; UNCONFIRMED: 8 KiB
MSGBUF_SIZE = 32768 * 3            # sys/sys/msgbuf.h; UNCONFIRMED for 11.3 (older trees: 32768 + 4096)
MAXCPU_SMP, MAXCPU_UP = 4, 1       # sys/arm/include/param.h: MAXCPU 4 with options SMP, else 1

# vm_page_startup (sys/vm/vm_page.c).
UMA_BOOT_PAGES = 64                # sys/vm/uma_int.h (11.x); UNCONFIRMED
SIZEOF_VM_PAGE = 80                # sizeof(struct vm_page) on armv7 11.3; UNCONFIRMED: counted from sys/vm/vm_page.h
SIZEOF_MD_PAGE = 20                # sizeof(struct md_page), pmap-v6 (pv_list, pt2_wirecount[4], pat_mode); UNCONFIRMED

# pmap_init (sys/arm/arm/pmap-v6.c).
PMAP_SHPGPERPROC = 200             # sys/arm/arm/pmap-v6.c: shpgperproc default
NPCPV = 336                        # sys/arm/include/pmap-v6.h _NPCPV: pv entries per pv chunk page

# init_param1/2 (sys/kern/subr_param.c).
VM_MAX_AUTOTUNE_MAXUSERS = 384     # sys/arm/include/vmparam.h
PID_MAX = 99999                    # sys/sys/proc.h
MAXUSERS_PAGES = 2 * MIB // PAGE_SIZE  # subr_param.c: maxusers = physpages / (2 MiB / PAGE_SIZE)

# Buffer cache (sys/kern/vfs_bio.c kern_vfs_bio_buffer_alloc, sys/sys/param.h).
BKVASIZE = 16384                   # sys/sys/param.h
MAXPHYS = 128 * 1024               # sys/sys/param.h (11.x: 128 KiB on every platform)
NSWBUF_MIN = 16                    # sys/kern/vfs_bio.c
TRANSIENT_DENOM = 10               # sys/kern/vfs_bio.c (5 on i386 only)
LONG_MAX = 0x7FFF_FFFF             # long is 32 bits on arm
SIZEOF_BUF = 360                   # sizeof(struct buf) on armv7 11.3; UNCONFIRMED estimate (b_pages[32] + header)

# exec_map and pipe_map (sys/vm/vm_init.c, sys/kern/subr_param.c).
PATH_MAX = 1024                    # sys/sys/syslimits.h
ARG_MAX = 256 * 1024               # sys/sys/syslimits.h (32-bit)
EXEC_MAP_EXTRA_PAGES = 64          # sys/vm/vm_init.c: "+ 64 * PAGE_SIZE"
MAXPIPEKVA_MIN = 512 * 1024        # sys/kern/subr_param.c init_param2
ZERO_REGION_SIZE = 64 * 1024       # sys/arm/include/vmparam.h
NSFBUFS_BASE, NSFBUFS_PER_USER = 512, 16  # sys/kern/subr_sfbuf.c: NSFBUFS (512 + maxusers * 16)

NO_TABLES_PANIC = "startup: no room for tables"                   # sys/vm/vm_init.c
SUBALLOC_PANIC = f"kmem_suballoc: bad status return of {KERN_NO_SPACE}"  # sys/vm/vm_kern.c
PV_CHUNK_PANIC = "pmap_init: not enough kvm for pv chunks"        # sys/arm/arm/pmap-v6.c
UNCHECKED_NOTE = ("FreeBSD 11.3 does not check this kva_alloc; armboard stops here with the panic the "
                  "kmem_suballoc()ed submaps of FreeBSD 10 gave, instead of a fault at address 0 later")

OUTSIDE, KERNEL_MAP, KERNEL_ARENA = "outside", "kernel_map", "kernel_arena"


class KvaRow(namedtuple("KvaRow", "start end consumer source map")):
    """One range of the layout table, in FreeBSD's order."""

    __slots__ = ()

    start: int
    end: int
    consumer: str
    source: str
    map: str  # OUTSIDE (listed only), KERNEL_MAP, or KERNEL_ARENA (through kva_alloc/kmem_malloc)

    @property
    def size(self) -> int:
        return self.end - self.start


class KvaFailure(namedtuple("KvaFailure", "consumer source panic requested available note", defaults=("",))):
    """The first consumer that did not fit, and by how much."""

    __slots__ = ()

    consumer: str
    source: str
    panic: str | None  # FreeBSD's panic string (None: FreeBSD has none for this case)
    requested: int  # bytes the failing step asked kernel_map for (an import is rounded to 1 MiB)
    available: int  # the largest suitably aligned free range it could have had
    note: str

    @property
    def shortfall(self) -> int:
        return max(0, self.requested - self.available)


class KvaInputs(namedtuple("KvaInputs",
                           "physmem v_page_count kernend nkpt2pg vm_max_kernel_address kmem tunables maxusers "
                           "smp ncpu ram_end boot_pt_pages kmem_size", defaults=(None,))):
    """Everything the layout is computed from (kept so fixes can recompute it)."""

    __slots__ = ()

    physmem: int
    v_page_count: int
    kernend: int
    nkpt2pg: int
    vm_max_kernel_address: int
    kmem: KmemResult
    tunables: Mapping[str, int | str]
    maxusers: int
    smp: bool
    ncpu: int
    ram_end: int
    boot_pt_pages: int
    kmem_size: int | None  # None: kmem.vm_kmem_size; otherwise an override (0: no arena), for fixes


class KvaLayout(namedtuple("KvaLayout",
                           "rows kvm_size kernel_vm_end kvm_free kva_remaining largest_free failure figures "
                           "inputs")):
    """The computed layout: rows, KVA figures, and success or the failure."""

    __slots__ = ()

    rows: tuple[KvaRow, ...]
    kvm_size: int  # vm.kvm_size: vm_max_kernel_address - KERNBASE
    kernel_vm_end: int  # end of KVA covered by L2 tables after the boot reservations
    kvm_free: int  # vm.kvm_free: vm_max_kernel_address - kernel_vm_end (pmap-v6.c kvm_free)
    kva_remaining: int  # free bytes kernel_arena can still hand out (its spans + kernel_map)
    largest_free: int  # the largest free range in kernel_map
    failure: KvaFailure | None
    figures: Mapping[str, int]
    inputs: KvaInputs

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def panic(self) -> str | None:
        return self.failure.panic if self.failure else None

    def row(self, consumer: str) -> KvaRow:
        for r in self.rows:
            if r.consumer == consumer:
                return r
        raise KeyError(consumer)

    def make_arenas(self) -> tuple[Vmem, Vmem]:
        """Fresh kernel_map and kernel_arena in the state this layout leaves them, for the boot to go on
        allocating from (kernel stacks)."""
        return _Builder(self.inputs).run()[1:3]


class Fix(namedtuple("Fix", "name value text")):
    """A change that makes a failed layout fit, found by arithmetic."""

    __slots__ = ()

    name: str  # what to set: "vm.kmem_size", "options VM_KMEM_SIZE_SCALE", ...
    value: int | None  # the limit value (None: no value of this knob helps)
    text: str


def _roundup(x: int, m: int) -> int:
    return -(-x // m) * m


def round_page(x: int) -> int:
    return _roundup(x, PAGE_SIZE)


class _Failed(Exception):
    def __init__(self, failure: KvaFailure) -> None:
        super().__init__(failure.consumer)
        self.failure = failure


def _tunable(tunables: Mapping[str, int | str], name: str, default: int) -> int:
    """TUNABLE_*_FETCH: the loader's value if set, else the compiled default."""
    return parse_tunable(tunables[name], name) if name in tunables else default


def boot_figures(inp: KvaInputs) -> dict[str, int]:
    """The sizes FreeBSD derives at boot (subr_param.c, vfs_bio.c, pmap-v6.c, vm_page.c), before placing."""
    t = inp.tunables
    f: dict[str, int] = {}
    physpages = inp.physmem // PAGE_SIZE
    kmap_size = inp.vm_max_kernel_address - KERNBASE
    f["physpages"] = physpages
    # init_param2: maxusers, maxproc (sys/kern/subr_param.c).
    maxusers = _tunable(t, "kern.maxusers", inp.maxusers)
    if maxusers == 0:
        # At least 32, at most VM_MAX_AUTOTUNE_MAXUSERS; the source's slower slope above 384 never
        # applies on arm, whose cap is 384.
        maxusers = min(max(physpages // MAXUSERS_PAGES, 32), VM_MAX_AUTOTUNE_MAXUSERS)
    f["maxusers"] = maxusers
    maxproc = _tunable(t, "kern.maxproc", 20 + 16 * maxusers)   # NPROC
    maxproc = min(maxproc, physpages // 12, PID_MAX)
    f["maxproc"] = maxproc
    # init_param2: maxpipekva = (physpages / 64) * PAGE_SIZE, at least 512 KiB, at most KVA / 64.
    maxpipekva = _tunable(t, "kern.ipc.maxpipekva", physpages // 64 * PAGE_SIZE)
    maxpipekva = min(max(maxpipekva, MAXPIPEKVA_MIN), kmap_size // 64)
    f["maxpipekva"] = maxpipekva
    # kern_vfs_bio_buffer_alloc (sys/kern/vfs_bio.c), physmem_est from vm_ksubmap_init.
    physmem_est = min(physpages, kmap_size // PAGE_SIZE) * (PAGE_SIZE // 1024)
    maxbcache = _tunable(t, "kern.maxbcache", 0)      # arm defines no VM_BCACHE_SIZE_MAX
    nbuf = _tunable(t, "kern.nbuf", 0)
    tuned = nbuf == 0
    if tuned:
        factor = 4 * BKVASIZE // 1024
        nbuf = 50
        if physmem_est > 4096:
            nbuf += min((physmem_est - 4096) // factor, 65536 // factor)
        if physmem_est > 65536:
            nbuf += min((physmem_est - 65536) * 2 // (factor * 5), 32 * MIB // (factor * 5))
        if maxbcache and nbuf > maxbcache // BKVASIZE:
            nbuf = maxbcache // BKVASIZE
    maxbuf = (LONG_MAX // 3) // BKVASIZE
    nbuf = min(nbuf, maxbuf)
    transient = _tunable(t, "kern.bio_transient_maxcnt", 0)
    unmapped_allowed = _tunable(t, "vfs.unmapped_buf_allowed", 1)
    if transient == 0 and unmapped_allowed:
        maxbuf_sz = maxbcache if maxbcache else maxbuf * BKVASIZE
        buf_sz = nbuf * BKVASIZE
        if buf_sz < maxbuf_sz // TRANSIENT_DENOM * (TRANSIENT_DENOM - 1):
            biotmap_sz = maxbuf_sz - buf_sz
        else:
            biotmap_sz = buf_sz // TRANSIENT_DENOM
            buf_sz -= biotmap_sz
        transient = min(biotmap_sz // MAXPHYS, 1024)
        if tuned:
            nbuf = buf_sz // BKVASIZE
    f["nbuf"] = nbuf
    f["bio_transient_maxcnt"] = transient
    nswbuf = _tunable(t, "kern.nswbuf", min(nbuf // 4, 256))
    f["nswbuf"] = max(nswbuf, NSWBUF_MIN)
    # pmap_init (pmap-v6.c).
    shpg = _tunable(t, "vm.pmap.shpgperproc", PMAP_SHPGPERPROC)
    pv_entry_max = _tunable(t, "vm.pmap.pv_entries", shpg * maxproc + inp.v_page_count)
    pv_entry_max = _roundup(pv_entry_max, NPCPV)
    f["pv_entry_max"] = pv_entry_max
    f["pv_maxchunks"] = max(pv_entry_max // NPCPV, maxproc)
    seg_start = inp.ram_end - inp.physmem
    f["pv_npg"] = ((inp.ram_end - PAGE_SIZE) // PTE1_SIZE - seg_start // PTE1_SIZE) + 1
    # vm_page_startup (sys/vm/vm_page.c): boot pages and the minidump bitmap come off the top of RAM,
    # then page_range = size / (PAGE_SIZE + sizeof(struct vm_page)) for VM_PHYSSEG_SPARSE.
    dump = round_page(_roundup(inp.ram_end // PAGE_SIZE, 8) // 8)
    f["vm_page_dump_size"] = dump
    f["page_range"] = (inp.physmem - UMA_BOOT_PAGES * PAGE_SIZE - dump) // (PAGE_SIZE + SIZEOF_VM_PAGE)
    nsfbufs = _tunable(t, "kern.ipc.nsfbufs", NSFBUFS_BASE + NSFBUFS_PER_USER * maxusers)
    f["nsfbufs"] = nsfbufs
    f["exec_map_entries"] = 2 * inp.ncpu + 4
    f["exec_map_size"] = f["exec_map_entries"] * round_page(PATH_MAX + ARG_MAX) + EXEC_MAP_EXTRA_PAGES * PAGE_SIZE
    f["clean_map_size"] = nbuf * BKVASIZE + f["nswbuf"] * MAXPHYS + transient * MAXPHYS
    f["maxcpu"] = MAXCPU_SMP if inp.smp else MAXCPU_UP
    return f


def kernel_arena_alloc(kmap: Vmem, karena: Vmem, size: int, name: str) -> int:
    """kva_alloc: best fit in kernel_arena, which imports 1 MiB-aligned chunks of kernel_map when it
    runs short (sys/vm/vm_kern.c kva_import); VmemExhausted when kernel_map has no such chunk left."""
    try:
        return karena.alloc(size, policy="best-fit", name=name)
    except VmemExhausted:
        imp = _roundup(size, KVA_QUANTUM)
        base = kmap.alloc(imp, align=KVA_QUANTUM, name="kernel_arena import")
        karena.add(base, imp)
        return karena.alloc(size, policy="best-fit", name=name)


class _Builder:
    """Runs the boot reservations in order over a kernel_map and a kernel_arena."""

    def __init__(self, inp: KvaInputs, map_end: int | None = None) -> None:
        self.inp = inp
        self.f = boot_figures(inp)
        # map_end other than vm_max_kernel_address only to measure how far a failed layout overflows.
        self.map_end = inp.vm_max_kernel_address if map_end is None else map_end
        self.kmap = Vmem(KERNEL_MAP, KERNBASE, self.map_end - KERNBASE)
        self.karena = Vmem("kernel arena")
        self.rows: list[KvaRow] = []
        self.cursor = KERNBASE

    # -- the three ways FreeBSD takes KVA ----------------------------------------------------------
    def boot(self, size: int, consumer: str, source: str) -> None:
        """Below virtual_avail: consecutive pages set up before kernel_map exists."""
        if size <= 0:
            return
        end = self.cursor + size
        if end > self.map_end:
            raise _Failed(KvaFailure(consumer, source, None, size, max(0, self.map_end - self.cursor),
                                     "the kernel and its boot-time pages run past vm_max_kernel_address"))
        self.kmap.xalloc(self.cursor, size, name=consumer)
        self.rows.append(KvaRow(self.cursor, end, consumer, source, KERNEL_MAP))
        self.cursor = end

    def kva_alloc(self, size: int, consumer: str, source: str, panic: str | None, note: str = "") -> int:
        """kva_alloc/kmem_malloc: kernel_arena best-fit, importing 1 MiB-aligned chunks from kernel_map."""
        size = round_page(size)
        try:
            addr = kernel_arena_alloc(self.kmap, self.karena, size, consumer)
        except VmemExhausted:
            avail = max(self.kmap.largest_free_aligned(KVA_QUANTUM), self.karena.largest_free)
            raise _Failed(KvaFailure(consumer, source, panic, _roundup(size, KVA_QUANTUM), avail, note)) from None
        self.rows.append(KvaRow(addr, addr + size, consumer, source, KERNEL_ARENA))
        return addr

    def suballoc(self, size: int, consumer: str, source: str) -> None:
        """kmem_suballoc: a submap straight out of kernel_map, first fit (vm_map_find VMFS_ANY_SPACE)."""
        size = round_page(size)
        try:
            addr = self.kmap.alloc(size, name=consumer)
        except VmemExhausted:
            raise _Failed(KvaFailure(consumer, source, SUBALLOC_PANIC, size, self.kmap.largest_free)) from None
        self.rows.append(KvaRow(addr, addr + size, consumer, source, KERNEL_MAP))

    def outside(self, start: int, end: int, consumer: str, source: str) -> None:
        if end > start:
            self.rows.append(KvaRow(start, end, consumer, source, OUTSIDE))

    # -- the boot, in order -----------------------------------------------------------------------
    def steps(self) -> None:
        inp, f = self.inp, self.f
        machdep = "sys/arm/arm/machdep.c initarm (pmap_preboot_get_vpages)"
        prepare = "sys/arm/arm/pmap-v6.c pmap_bootstrap_prepare"
        self.outside(PT2MAP, KERNBASE, "PT2MAP (L2 tables seen through PT2TAB)", "sys/arm/include/pmap_var.h")
        self.boot(round_page(inp.kernend) - KERNBASE, "kernel, modules and metadata",
                  "loader(8) MODINFOMD_KERNEND; sys/arm/arm/machdep.c initarm")
        self.boot(_roundup(self.cursor, PTE1_SIZE) - self.cursor, "pad to 1 MiB before the page tables",
                  f"{prepare} (pte1_roundup of last_paddr)")
        self.boot(L1_PAGES * PAGE_SIZE, "L1 page table (kern_pt1)", prepare)
        self.boot(PT2TAB_PAGES * PAGE_SIZE, "PT2TAB (kern_pt2tab)", prepare)
        self.boot((inp.boot_pt_pages - L1_PAGES - PT2TAB_PAGES) * PAGE_SIZE,
                  f"kernel L2 page-table pages (NKPT2PG={inp.nkpt2pg})", prepare)
        maxcpu = f["maxcpu"]
        self.boot(DPCPU_PAGES * PAGE_SIZE, "dpcpu (CPU 0)", machdep)
        self.boot(IRQ_STACK_PAGES * maxcpu * PAGE_SIZE, "IRQ stacks", machdep)
        self.boot(ABT_STACK_PAGES * maxcpu * PAGE_SIZE, "abort stacks", machdep)
        self.boot(UND_STACK_PAGES * maxcpu * PAGE_SIZE, "undefined-instruction stacks", machdep)
        self.boot(KSTACK_PAGES * PAGE_SIZE, "thread0 kernel stack", machdep)
        self.boot(round_page(MSGBUF_SIZE), "message buffer (msgbuf)", machdep)
        self.vm_page_startup()
        pmap_init = "sys/arm/arm/pmap-v6.c pmap_init"
        self.kva_alloc(round_page(f["pv_npg"] * SIZEOF_MD_PAGE), "pv_table (section pv heads)", pmap_init,
                       None, "kmem_malloc(M_WAITOK): FreeBSD would sleep, not panic")
        self.kva_alloc(f["pv_maxchunks"] * PAGE_SIZE, "pv chunks", pmap_init, PV_CHUNK_PANIC)
        kmeminit = "sys/kern/kern_malloc.c kmeminit (11.3: kva_alloc + vmem_init)"
        if inp.kmem_size is None and inp.kmem.panic:
            raise _Failed(KvaFailure("kmem arena", kmeminit, inp.kmem.panic, 0, 0, "vm_kmem_size came out 0"))
        kmem_size = inp.kmem.vm_kmem_size if inp.kmem_size is None else inp.kmem_size
        if kmem_size:
            self.kva_alloc(kmem_size, "kmem arena", kmeminit, SUBALLOC_PANIC, UNCHECKED_NOTE)
        self.kva_alloc(ZERO_REGION_SIZE, "zero region", "sys/vm/vm_kern.c kmem_init_zero_region",
                       SUBALLOC_PANIC, UNCHECKED_NOTE)
        ksubmap = "sys/vm/vm_init.c vm_ksubmap_init"
        self.kva_alloc((f["nswbuf"] + f["nbuf"]) * SIZEOF_BUF, "buffer headers (swbuf + buf)",
                       f"{ksubmap}; sys/kern/vfs_bio.c kern_vfs_bio_buffer_alloc", NO_TABLES_PANIC)
        clean = self.kva_alloc(f["clean_map_size"], "clean map", ksubmap, SUBALLOC_PANIC, UNCHECKED_NOTE)
        self.rows.pop()   # shown as its three parts
        for size, part in ((f["nbuf"] * BKVASIZE, f"buffer arena (nbuf={f['nbuf']} x BKVASIZE)"),
                           (f["nswbuf"] * MAXPHYS, f"swap buffers (nswbuf={f['nswbuf']} x MAXPHYS)"),
                           (f["bio_transient_maxcnt"] * MAXPHYS,
                            f"transient bio arena ({f['bio_transient_maxcnt']} x MAXPHYS)")):
            if size:
                self.rows.append(KvaRow(clean, clean + size, part, f"{ksubmap} (clean map)", KERNEL_ARENA))
                clean += size
        self.suballoc(f["exec_map_size"], f"exec_map ({f['exec_map_entries']} entries)", ksubmap)
        self.suballoc(f["maxpipekva"], "pipe_map (maxpipekva)", f"{ksubmap}; sys/kern/subr_param.c")
        self.kva_alloc(MAXPHYS, "unmapped_buf", "sys/kern/vfs_bio.c bufinit", SUBALLOC_PANIC, UNCHECKED_NOTE)
        self.kva_alloc(f["nsfbufs"] * PAGE_SIZE, f"sf_bufs (nsfbufs={f['nsfbufs']})",
                       "sys/kern/subr_sfbuf.c sf_buf_init", SUBALLOC_PANIC, UNCHECKED_NOTE)

    def vm_page_startup(self) -> None:
        """UMA boot pages, the minidump bitmap and the vm_page array, pmap_map()ed at virtual_avail."""
        f, src = self.f, "sys/vm/vm_page.c vm_page_startup"
        self.boot(UMA_BOOT_PAGES * PAGE_SIZE, "UMA boot pages", src)
        self.boot(f["vm_page_dump_size"], "minidump bitmap (vm_page_dump)", src)
        array = round_page(f["page_range"] * SIZEOF_VM_PAGE)
        # pmap_map (pmap-v6.c) moves the VA so that VA == PA modulo 1 MiB when a section mapping fits; the
        # array's PA is taken from the top of RAM, below the boot pages and the bitmap.
        pa = self.inp.ram_end - UMA_BOOT_PAGES * PAGE_SIZE - f["vm_page_dump_size"] - array
        off = pa % PTE1_SIZE
        if array - ((PTE1_SIZE - off) % PTE1_SIZE) >= PTE1_SIZE:
            va = self.cursor
            target = va - va % PTE1_SIZE + off
            if target < va:
                target += PTE1_SIZE
            self.boot(target - va, "pad for section mapping of the vm_page array", "sys/arm/arm/pmap-v6.c pmap_map")
        self.boot(array, f"vm_page array ({f['page_range']} pages)", src)

    def run(self) -> tuple[KvaFailure | None, Vmem, Vmem]:
        try:
            self.steps()
        except _Failed as e:
            return e.failure, self.kmap, self.karena
        return None, self.kmap, self.karena


def _inputs(*, physmem: int, v_page_count: int, kernend: int, nkpt2pg: int, vm_max_kernel_address: int,
            kmem: KmemResult, tunables: Mapping[str, int | str] | None, maxusers: int, smp: bool, ncpu: int,
            ram_end: int | None, boot_pt_pages: int | None) -> KvaInputs:
    if physmem <= 0 or physmem % PAGE_SIZE or physmem > U32 + 1:
        raise InputError(f"physical memory {physmem} must be a positive multiple of {PAGE_SIZE}, at most 4 GiB",
                         "hw.physmem")
    if not KERNBASE < vm_max_kernel_address <= ARM_VECTORS_HIGH or vm_max_kernel_address % PAGE_SIZE:
        raise InputError(f"vm_max_kernel_address 0x{vm_max_kernel_address:x} must be a page address above "
                         f"KERNBASE 0x{KERNBASE:08x} and at most 0x{ARM_VECTORS_HIGH:08x}", "vm_max_kernel_address")
    if not KERNBASE < kernend < vm_max_kernel_address:
        raise InputError(f"the kernel end 0x{kernend:x} must lie between KERNBASE and vm_max_kernel_address",
                         "kernend")
    if not 1 <= nkpt2pg <= 256:
        raise InputError(f"NKPT2PG={nkpt2pg} must be between 1 and 256", "options NKPT2PG")
    pt_pages = L1_PAGES + PT2TAB_PAGES + nkpt2pg if boot_pt_pages is None else boot_pt_pages
    if pt_pages < L1_PAGES + PT2TAB_PAGES + nkpt2pg:
        raise InputError(f"{pt_pages} boot page-table pages cannot hold L1, PT2TAB and {nkpt2pg} PT2 pages",
                         "boot_pt_pages")
    if v_page_count != kmem.v_page_count:
        raise InputError("the kmem result was computed for another page count", "vm.stats.vm.v_page_count")
    if ncpu < 1 or maxusers < 0:
        raise InputError("ncpu must be at least 1 and maxusers not negative", "maxusers")
    end = physmem if ram_end is None else ram_end
    if end < physmem or end % PAGE_SIZE:
        raise InputError(f"RAM end 0x{end:x} must be a page address at or above the available memory", "ram_end")
    return KvaInputs(physmem, v_page_count, kernend, nkpt2pg, vm_max_kernel_address, kmem,
                     MappingProxyType(dict(tunables or {})), maxusers, smp, ncpu, end, pt_pages)


def _layout(inp: KvaInputs) -> KvaLayout:
    b = _Builder(inp)
    failure, kmap, karena = b.run()
    used_end = max((a.end for a in kmap.allocations()), default=KERNBASE)
    boot_end = KERNBASE + (inp.boot_pt_pages - L1_PAGES - PT2TAB_PAGES) * PT2PG_SPAN
    kernel_vm_end = min(max(boot_end, _roundup(used_end, PTE1_SIZE)), inp.vm_max_kernel_address)
    rows = list(b.rows)
    rows.append(KvaRow(inp.vm_max_kernel_address, ARM_VECTORS_HIGH, "device mappings (devmap)",
                       "sys/arm/arm/machdep.c initarm: devmap_bootstrap, vm_max_kernel_address = "
                       "platform_lastaddr()", OUTSIDE))
    return KvaLayout(
        rows=tuple(r for r in rows if r.size > 0), kvm_size=inp.vm_max_kernel_address - KERNBASE,
        kernel_vm_end=kernel_vm_end, kvm_free=inp.vm_max_kernel_address - kernel_vm_end,
        kva_remaining=kmap.free_total + karena.free_total, largest_free=kmap.largest_free, failure=failure,
        figures=MappingProxyType(dict(b.f)), inputs=inp,
    )


def layout_kva(*, physmem: int, v_page_count: int, kernend: int, kmem: KmemResult, nkpt2pg: int = 32,
               vm_max_kernel_address: int = DEFAULT_VM_MAX_KERNEL_ADDRESS,
               tunables: Mapping[str, int | str] | None = None, maxusers: int = 0, smp: bool = False,
               ncpu: int = 1, ram_end: int | None = None, boot_pt_pages: int | None = None) -> KvaLayout:
    """Lay out the boot KVA consumers of FreeBSD 11.3 armv7.

    physmem: hw.physmem in bytes (RAM the VM may use, the kernel's range excluded); kernend: the virtual
    end of kernel, modules and metadata; kmem: kmeminit's result for the same v_page_count; maxusers: the
    config's `maxusers` (0 autosizes); smp: options SMP (MAXCPU 4); ncpu: CPUs running (exec_map);
    ram_end: the physical end of RAM (minidump bitmap, pv_table and the vm_page array's alignment; default
    physmem, i.e. RAM from address 0); boot_pt_pages: L1 + PT2TAB + PT2 pages if the guest allocated more
    than NKPT2PG.
    """
    return _layout(_inputs(physmem=physmem, v_page_count=v_page_count, kernend=kernend, nkpt2pg=nkpt2pg,
                           vm_max_kernel_address=vm_max_kernel_address, kmem=kmem, tunables=tunables,
                           maxusers=maxusers, smp=smp, ncpu=ncpu, ram_end=ram_end, boot_pt_pages=boot_pt_pages))


# -- what would make a failed layout fit --------------------------------------------------------------

_AFTER_KMEM = ("zero region", "buffer headers", "clean map", "exec_map", "pipe_map", "unmapped_buf", "sf_bufs")


def excess(layout: KvaLayout) -> int:
    """How far the boot reservations would run past vm_max_kernel_address if kernel_map had no end."""
    b = _Builder(layout.inputs, map_end=1 << 40)   # no limit: past 4 GiB if need be
    b.run()
    top = max(a.end for a in b.kmap.allocations())
    return max(0, top - layout.inputs.vm_max_kernel_address)


def max_kmem_size(layout: KvaLayout) -> int | None:
    """The largest kmem arena with which every boot reservation fits (None: none fits).

    Arithmetic: lay out once without the kmem arena; the arena is a 1 MiB-aligned import at the start of
    the free tail, so everything above it moves up by its size rounded to 1 MiB, and it fits while the
    highest reservation stays below vm_max_kernel_address. The answer is checked by one more layout.
    """
    probe = _layout(layout.inputs._replace(kmem_size=0))
    if not probe.ok:
        return None
    kmap, _ = probe.make_arenas()
    top = max(a.end for a in kmap.allocations())
    room = (probe.inputs.vm_max_kernel_address - top) // KVA_QUANTUM * KVA_QUANTUM
    if room <= 0:
        return None
    return room if _layout(layout.inputs._replace(kmem_size=room)).ok else None


def _scale_fix(layout: KvaLayout, limit: int) -> list[Fix]:
    kmem = layout.inputs.kmem
    if not kmem.from_scale:
        return [Fix("vm.kmem_size_scale", None, f"the scale is not used: vm_kmem_size is fixed by "
                                                f"{kmem.fixed.source}")]
    v = kmem.v_page_count
    scale = v // (limit // PAGE_SIZE + 1) + 1
    if kmem_size_for_scale(kmem, scale) > limit:
        return [Fix("vm.kmem_size_scale", None,
                    f"no scale fits: the minimum {kmem.size_min.value} ({kmem.size_min.source}) is above "
                    f"{limit}; lower vm.kmem_size_min too")]
    text = f"v_page_count / {scale} * PAGE_SIZE = {kmem_size_for_scale(kmem, scale)} <= {limit}"
    if scale > 1:
        text += f"; scale {scale - 1} gives {kmem_size_for_scale(kmem, scale - 1)}"
    fixes = [Fix("vm.kmem_size_scale", scale, f"the smallest scale that fits: {text}")]
    if kmem.scale.source != "tunable vm.kmem_size_scale":
        fixes.append(Fix("options VM_KMEM_SIZE_SCALE", scale, "the same, compiled into the kernel"))
    return fixes


def _own_fix(layout: KvaLayout) -> list[Fix]:
    """Shrinking the failing consumer itself, when a tunable sizes it, by the whole excess.

    Everything after the failing consumer moves down by what it gives up; imports are whole 1 MiB
    quanta, so the excess is taken in whole MiB. Each value is checked with one more layout.
    """
    fl, f = layout.failure, layout.figures
    assert fl is not None
    cut = _roundup(excess(layout), KVA_QUANTUM)
    candidates: list[tuple[str, int, str]] = []
    if fl.consumer.startswith("pipe_map"):
        v = (f["maxpipekva"] - cut) // PAGE_SIZE * PAGE_SIZE
        candidates.append(("kern.ipc.maxpipekva", v if v >= MAXPIPEKVA_MIN else 0,
                           f"pipe_map takes maxpipekva = {f['maxpipekva']} bytes"))
    elif fl.consumer.startswith("sf_bufs"):
        n = (_roundup(f["nsfbufs"] * PAGE_SIZE, KVA_QUANTUM) - cut) // PAGE_SIZE
        candidates.append(("kern.ipc.nsfbufs", n, f"sf_bufs take nsfbufs = {f['nsfbufs']} pages of KVA"))
    elif fl.consumer == "clean map":
        room = _roundup(f["clean_map_size"], KVA_QUANTUM) - cut
        t = (room - f["nbuf"] * BKVASIZE - f["nswbuf"] * MAXPHYS) // MAXPHYS
        candidates.append(("kern.bio_transient_maxcnt", t,
                           f"the transient bio arena takes {f['bio_transient_maxcnt']} x MAXPHYS of the clean map"))
    elif fl.consumer == "pv chunks":
        pages = (_roundup(f["pv_maxchunks"] * PAGE_SIZE, KVA_QUANTUM) - cut) // PAGE_SIZE
        if pages < f["maxproc"]:
            candidates.append(("kern.maxproc", pages, "pv_maxchunks is at least maxproc pages"))
        else:
            candidates.append(("vm.pmap.pv_entries", pages * NPCPV, f"pv chunks take pv_entry_max / {NPCPV} pages"))
    fixes = []
    for name, value, why in candidates:
        tunables = dict(layout.inputs.tunables, **{name: value})
        ok = value >= 1 and _layout(layout.inputs._replace(tunables=MappingProxyType(tunables))).ok
        fixes.append(Fix(name, value if ok else None, why if ok else f"{why}; no value of {name} is enough"))
    return fixes


def fixes_for(layout: KvaLayout) -> tuple[Fix, ...]:
    """For a failed layout, the options and tunables that would make it fit, computed, not searched."""
    fl = layout.failure
    if fl is None:
        return ()
    fixes: list[Fix] = []
    if fl.consumer == "kmem arena" or fl.consumer.startswith(_AFTER_KMEM):
        limit = max_kmem_size(layout)
        if limit is None:
            fixes.append(Fix("vm.kmem_size", None, f"{fl.consumer} does not fit even without a kmem arena"))
        else:
            fixes.append(Fix("vm.kmem_size", limit, "the largest kmem arena with which every boot reservation "
                                                     "fits (kernel stacks then get what is left)"))
            fixes.extend(_scale_fix(layout, limit))
            if layout.inputs.kmem.from_scale:
                fixes.append(Fix("vm.kmem_size_max", limit, "caps the scaled size to the same limit"))
    fixes.extend(_own_fix(layout))
    if not any(f.value for f in fixes):
        over = excess(layout)
        fixes.append(Fix("kernel and modules", None,
                         f"{fl.consumer} is {fl.shortfall} bytes short and all boot reservations together "
                         f"run {over} bytes past vm_max_kernel_address: the kernel and its preloaded modules "
                         f"(or these reservations) must shrink by that much"))
    return tuple(fixes)
