"""The pageout daemon: FreeBSD's free-page thresholds, an LRU of swap-object pages, and VM_WAIT.

Why this exists: with swap configured, tmpfs files and md swap disks may hold more than RAM; what
makes that work is the page daemon pushing the least recently used pages to swap when free memory
runs low (tmpfs(4): "the system can transfer file data to swap space"). Without swap, or with swap
full, it is what turns memory exhaustion into ENOSPC instead of a guest page handed out twice.

What follows FreeBSD 12 (sys/vm/vm_pageout.c vm_pageout_init / vm_pageout_init_domain, sys/vm/vm_page.c
vm_domain_allocate), with the board's v_page_count:
* v_free_min = 4 + (pages - 1024) / 200 (4 on 1024 pages or fewer), v_pageout_free_min = 2 * MAXBSIZE /
  PAGE_SIZE + 2, v_free_reserved = vm_pageout_page_count + v_pageout_free_min + pages / 768,
  v_free_severe = v_free_min / 2 + reserved, v_free_target = 4 * v_free_min + reserved, and v_free_min
  then gains the reserve too; vm_pageout_page_count is 32, or 8 below 2000 pages;
* an ordinary (VM_ALLOC_NORMAL) allocation may not take the free count below v_free_reserved;
* when an allocation would take free pages below v_free_min the daemon runs -- here synchronously, in
  the allocating thread (the VM_WAIT path; virtual time does not move) -- and frees pages until
  v_free_target (plus the request) is reached: clean pages are dropped, dirty ones written to swap.

Simplified, and said so: one LRU queue (least recently used first) stands for FreeBSD's active,
inactive and laundry queues and their reference bits; only pages of swap objects (tmpfs, md swap) are
pageable, as kernel memory (kmem, stacks, page tables) is wired anyway. `vm_swap_init` builds the whole
thing for a booted kernel.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernel_sim.vm.swap_pager import (
    PAGE_SIZE,
    SwapDevice,
    SwapObject,
    SwapPager,
    VmNoMemory,
    free_runs,
)

if TYPE_CHECKING:
    from kernel_sim.kern.sysctl import SysctlTree
    from kernel_sim.vm.phys import PhysAllocator

__all__ = ["PageoutThresholds", "PageoutDaemon", "VmSwap", "vm_swap_init", "publish_vm_swap_sysctls"]

MAXBSIZE = 65536               # sys/sys/param.h
VM_PAGEOUT_PAGE_COUNT = 32     # sys/vm/vm_pageout.c: vm_pageout_page_count
INTERRUPT_FREE_MIN = 2         # sys/vm/vm_pageout.c vm_pageout_init_domain: vmd_interrupt_free_min
MAX_CHUNK = 256                # pages an operation takes at once (1 MiB): batches allocation and I/O


class PageoutThresholds(namedtuple("PageoutThresholds",
                                   "v_page_count v_free_min v_free_target v_free_reserved v_free_severe "
                                   "v_pageout_free_min pageout_wakeup_thresh")):
    """The free-page thresholds (vm.stats.vm.v_free_*) for a page count."""

    __slots__ = ()

    v_page_count: int
    v_free_min: int
    v_free_target: int
    v_free_reserved: int
    v_free_severe: int
    v_pageout_free_min: int
    pageout_wakeup_thresh: int

    @classmethod
    def for_page_count(cls, pages: int) -> PageoutThresholds:
        """vm_pageout_init + vm_pageout_init_domain (sys/vm/vm_pageout.c, FreeBSD 12), one domain."""
        page_count = 8 if pages < 2000 else VM_PAGEOUT_PAGE_COUNT
        free_min = 4 + (pages - 1024) // 200 if pages > 1024 else 4
        pageout_free_min = 2 * MAXBSIZE // PAGE_SIZE + INTERRUPT_FREE_MIN
        reserved = page_count + pageout_free_min + pages // 768
        severe = free_min // 2
        target = 4 * free_min + reserved
        free_min += reserved
        severe += reserved
        # "the default wakeup threshold to be 10% below the paging target"
        return cls(pages, free_min, target, reserved, severe, pageout_free_min, target // 10 * 9)


class PageoutDaemon:
    """The page daemon and the allocation path of swap objects (a VmBackend for SwapObject)."""

    def __init__(self, pages: PhysAllocator, pager: SwapPager | None = None, *,
                 thresholds: PageoutThresholds | None = None) -> None:
        self.pages = pages
        self.phys = pages.phys
        self.pager = pager
        self.t = thresholds or PageoutThresholds.for_page_count(pages.v_page_count)
        self.lru: OrderedDict[tuple[SwapObject, int], None] = OrderedDict()   # oldest first
        self.clean_pages = 0
        self.v_pdwakeups = 0       # vm.stats.vm.v_pdwakeups: daemon runs
        self.v_pdpages = 0         # pages the daemon looked at
        self.v_dfree = 0           # pages it freed
        self.v_pdshortfalls = 0    # runs that could not reach the target

    # -- VmBackend ------------------------------------------------------------------------------------
    def headroom(self) -> tuple[int, int, int, int]:
        free = max(self.pages.free_count - self.t.v_free_reserved, 0)
        swap = self.pager.swap_pages_free if self.pager is not None else 0
        resident = len(self.lru)
        return free, self.clean_pages, resident - self.clean_pages, swap

    def chunk_pages(self, remaining: int) -> int:
        """How many pages an operation takes at once: never more than are free above the reserve."""
        return max(1, min(remaining, MAX_CHUNK, self.pages.free_count - self.t.v_free_reserved))

    def page_alloc(self, n: int) -> list[int]:
        """vm_page_alloc(VM_ALLOC_NORMAL) for swap objects, with VM_WAIT's synchronous daemon run.

        The caller fills every byte of the pages, so they are not zeroed here."""
        t = self.t
        free = self.pages.free_count
        if free - n < t.v_free_min:
            self.run(t.v_free_target + n - free)
        free = self.pages.free_count
        if free - n < t.v_free_reserved:
            raise VmNoMemory(n, f"{n} pages needed, {free} free, {t.v_free_reserved} reserved "
                                "(v_free_reserved), and nothing more can be paged out")
        return self.pages.alloc(n, zero=False)

    def page_free(self, pas: list[int]) -> None:
        free_runs(self.pages, pas)

    def page_inserted(self, obj: SwapObject, pindex: int) -> None:
        self.lru[(obj, pindex)] = None

    def page_removed(self, obj: SwapObject, pindex: int) -> None:
        del self.lru[(obj, pindex)]

    def page_touched(self, obj: SwapObject, pindex: int) -> None:
        self.lru.move_to_end((obj, pindex))

    # -- the daemon -----------------------------------------------------------------------------------
    def run(self, shortage: int) -> int:
        """vm_pageout_scan: free up to `shortage` pages, least recently used first; the pages freed.

        Busy pages (an operation in progress holds them) are skipped; dirty pages are only taken
        while swap has room for them."""
        self.v_pdwakeups += 1
        if shortage <= 0:
            return 0
        room = self.pager.swap_pages_free if self.pager is not None else 0
        clean: dict[SwapObject, list[int]] = {}
        dirty: dict[SwapObject, list[int]] = {}
        found = 0
        for obj, i in self.lru:
            if found >= shortage:
                break
            self.v_pdpages += 1
            if i in obj.busy:
                continue
            if i in obj.swblk:
                clean.setdefault(obj, []).append(i)
            elif room > 0:
                dirty.setdefault(obj, []).append(i)
                room -= 1
            else:
                continue
            found += 1
        freed: list[int] = []
        for obj, idx in clean.items():
            freed += obj.drop_clean(idx)
        for obj, idx in dirty.items():
            released, _ = obj.launder(idx)
            freed += released
        if freed:
            self.page_free(freed)
        self.v_dfree += len(freed)
        if len(freed) < shortage:
            self.v_pdshortfalls += 1
        return len(freed)

    @property
    def resident_pages(self) -> int:
        """Pages of swap objects in RAM."""
        return len(self.lru)


class VmSwap:
    """The kernel's swap and pageout: what tmpfs mounts and the md driver are given."""

    def __init__(self, pages: PhysAllocator, pager: SwapPager, daemon: PageoutDaemon) -> None:
        self.pages = pages
        self.pager = pager
        self.daemon = daemon

    def new_object(self, size: int = 0, objtype: str = "swap") -> SwapObject:
        """vm_pager_allocate(OBJT_SWAP, ...) (or OBJT_DEFAULT): an empty object of `size` pages."""
        return SwapObject(self.daemon, size, objtype=objtype)

    def md_swap_object(self, npages: int) -> SwapObject:
        """The factory MdDriver takes for MD_SWAP units."""
        return self.new_object(npages, "swap")

    def swap_pages_free(self) -> int:
        """What tmpfs_mem_avail adds to the free pages (swap_pager_avail)."""
        return self.pager.swap_pages_free

    @property
    def swap_total(self) -> int:
        """vm.swap_total: bytes of swap configured."""
        return self.pager.swap_total * PAGE_SIZE

    def swapinfo(self) -> str:
        """`swapinfo -k`'s table (Device 1K-blocks Used Avail Capacity)."""
        return self.pager.swapinfo()


def publish_vm_swap_sysctls(tree: SysctlTree, vm: VmSwap) -> None:
    """vm.swap_total and the vm.stats.vm counters of swap and pageout, read live.

    FreeBSD's types are 64-bit (vm.swap_total is a quad, the counters QU); the tree has no 64-bit kind
    yet, so they are published as unsigned long, which holds every value this board can reach."""
    pager, daemon, t = vm.pager, vm.daemon, vm.daemon.t
    stats = "vm.stats.vm."
    # sys/vm/swap_pager.c
    tree.publish("vm.swap_total", "ulong", handler=lambda: vm.swap_total,
                 description="Total amount of available swap storage.")
    # sys/vm/vm_meter.c
    rows: list[tuple[str, str, Callable[[], Any]]] = [
        ("v_swappgsin", "Swap pages swapped in", lambda: pager.v_swappgsin),
        ("v_swappgsout", "Swap pages swapped out", lambda: pager.v_swappgsout),
        ("v_swapin", "Swap pager pageins", lambda: pager.v_swapin),
        ("v_swapout", "Swap pager pageouts", lambda: pager.v_swapout),
        ("v_pdwakeups", "Pagedaemon wakeups", lambda: daemon.v_pdwakeups),
        ("v_pdpages", "Pages analyzed by pagedaemon", lambda: daemon.v_pdpages),
        ("v_dfree", "Pages freed by pagedaemon", lambda: daemon.v_dfree),
        ("v_free_count", "Free pages", lambda: vm.pages.free_count),
        ("v_free_min", "Minimum low-free-pages threshold", lambda: t.v_free_min),
        ("v_free_target", "Pages desired free", lambda: t.v_free_target),
        ("v_free_reserved", "Pages reserved for deadlock", lambda: t.v_free_reserved),
        ("v_free_severe", "Severe page depletion point", lambda: t.v_free_severe),
    ]
    for name, descr, fn in rows:
        tree.publish(stats + name, "ulong" if name.startswith(("v_swap", "v_pd", "v_dfree")) else "uint",
                     handler=fn, description=descr)


def vm_swap_init(machine: Any, pages: PhysAllocator, sysctl: SysctlTree | None = None, *,
                 printf: Callable[[str], None] | None = None, devname: str = "swap0",
                 thresholds: PageoutThresholds | None = None) -> VmSwap:
    """Swap and pageout for a booted kernel: `machine.swap` (the board's swap store, or None) becomes
    the swap device `devname`, the daemon gets FreeBSD's thresholds for this RAM, and the sysctls are
    published when a tree is given. Swap pager messages go to `printf` (default: the console)."""
    if printf is None:
        console = getattr(machine, "console", None)
        printf = console.write_text if console is not None else (lambda _s: None)
    pager = SwapPager(printf)
    store = getattr(machine, "swap", None)
    if store is not None:
        pager.swapon(SwapDevice(store, devname))
    daemon = PageoutDaemon(pages, pager, thresholds=thresholds)
    vm = VmSwap(pages, pager, daemon)
    if sysctl is not None:
        publish_vm_swap_sysctls(sysctl, vm)
    return vm
