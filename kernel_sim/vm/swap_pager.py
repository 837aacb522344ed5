"""The swap pager: swap devices over board storage, and swap-backed VM objects of guest pages.

Why this exists: tmpfs file data and md(4) swap disks live "in swap-backed VM objects" (tmpfs(4),
md(4)), and "guest memory is the truth" (DESIGN.md). A `SwapObject` is a page-indexed object whose
resident pages are real guest physical pages from the page allocator; when memory runs short the
pageout daemon (pageout.py) writes pages to a swap device and gives the guest pages back, and an
access pages them in again. The swap device is the board's swap store (board/storage: sparse,
malloc or zstd, nbdkit's memory plugin allocators), cut into page-sized swap blocks.

Modelled on sys/vm/swap_pager.c and sys/vm/vm_swap.c of FreeBSD 11/12:
* swaponsomething: a device of nblks = size / PAGE_SIZE blocks whose first two are never handed
  out (they may hold a disk label), swap_pager_avail counts the rest, vm.swap_total is nblks pages;
* blocks come from a first-fit allocator over a map of the device (blist's job), in runs of up to
  nsw_cluster_max pages per write (swap_pager_putpages); a shorter run is tried when a long one is
  not free (fragmentation) -- FreeBSD 12 fails the cluster instead, newer code shrinks it too;
* swp_sizecheck's warning with nswap_lowat/nswap_hiwat hysteresis, and "swp_pager_getswapspace(%d):
  failed" once until space is freed again;
* a page that is resident and has a swap block is clean: the block holds the same bytes. Dirtying
  it frees the block (vm_pager_page_unswapped), so a written page never has a stale copy;
* swap_pager_reserve (md's MD_RESERVE) gives pages a block without data: they read as zeros.

Nothing written is ever lost: a page is released only after its bytes are in the store, and a block
is released only when its page is dirtied, freed, or the object is destroyed. Freed blocks are
trimmed in the store (swapon -E's BIO_DELETE in later FreeBSD), which is what gives host memory back
for the sparse and zstd stores. Holes (never written pages) read as zeros and cost nothing, neither a
guest page nor a swap block (md.c's mdstart_swap would zero-fill a page on a read; here a read of a
hole allocates nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from kernel_sim.guest.abi import PAGE_SIZE

if TYPE_CHECKING:
    from board.storage import Allocator

__all__ = [
    "PAGE_SIZE", "NSW_CLUSTER_MAX", "SWAP_LABEL_BLOCKS", "SwapDevice", "SwapPager", "SwapObject", "VmNoMemory",
    "DirectPages", "VmBackend", "standalone_backend",
]

# sys/vm/vm_swap.c swaponsomething: "Do not free the first two block in order to avoid overwriting
# any bsd label at the front of the partition" -- blist_free(sp->sw_blist, 2, nblks - 2).
SWAP_LABEL_BLOCKS = 2
# sys/vm/swap_pager.c swp_sizecheck: warn below nswap_lowat free pages, re-arm above nswap_hiwat.
NSWAP_LOWAT = 128
NSWAP_HIWAT = 512
# sys/vm/swap_pager.c swap_pager_swap_init: nsw_cluster_max = min(MAXPHYS / PAGE_SIZE,
# MAX_PAGEOUT_CLUSTER) with MAXPHYS 128 KiB on ILP32 (sys/sys/param.h) and MAX_PAGEOUT_CLUSTER 16
# (sys/vm/swap_pager.h): at most 16 pages per swap write. It is also vm.dmmax, which libkvm's
# kvm_getswapinfo subtracts from each device's size (lib/libkvm/kvm_swap.c).
NSW_CLUSTER_MAX = 16
# sys/vm/vm_swap.c swaponsomething: "If we go beyond this, we get overflows in the radix tree bitmap
# code": mblocks = 0x40000000 / BLIST_META_RADIX, with BLIST_META_RADIX 16 (sys/sys/blist.h, 12.x),
# i.e. 256 GiB of 4 KiB blocks per device; a larger device is cut down with a warning.
SWAP_MAX_BLOCKS = 0x40000000 // 16
_FREE, _USED, _LABEL = 0, 1, 2
ZERO_PAGE = bytes(PAGE_SIZE)


class VmNoMemory(Exception):
    """No page can be had: memory is short and nothing can be paged out (no swap, or swap full).

    Raised before an operation changes anything; tmpfs and md turn it into ENOSPC."""

    def __init__(self, needed: int, message: str) -> None:
        super().__init__(message)
        self.needed = needed


# ---------------------------------------------------------------------------------------- devices
class SwapDevice:
    """One swap device (swaponsomething): `store` cut into PAGE_SIZE blocks, a block map, use counts."""

    def __init__(self, store: Allocator, name: str = "swap0") -> None:
        nblks = store.size // PAGE_SIZE          # swaponsomething: the size truncated to pages
        if nblks <= SWAP_LABEL_BLOCKS:
            raise ValueError(f"swap device {name}: {store.size} bytes is too small: the first "
                             f"{SWAP_LABEL_BLOCKS} pages are kept for a label, so at least "
                             f"{(SWAP_LABEL_BLOCKS + 1) * PAGE_SIZE} bytes are needed")
        self.reduced = nblks > SWAP_MAX_BLOCKS
        nblks = min(nblks, SWAP_MAX_BLOCKS)
        self.store = store
        self.name = name
        self.nblks = nblks
        self.used = 0                            # sw_used
        self.first = 0                           # sw_first: set by SwapPager.swapon
        self._map = bytearray(nblks)
        self._map[:SWAP_LABEL_BLOCKS] = bytes([_LABEL]) * SWAP_LABEL_BLOCKS
        self._hint = SWAP_LABEL_BLOCKS           # no free block below this index

    @property
    def avail(self) -> int:
        """Blocks that can still be handed out."""
        return self.nblks - SWAP_LABEL_BLOCKS - self.used

    def alloc(self, n: int) -> int | None:
        """blist_alloc: the first run of `n` free blocks (device-relative), or None."""
        if n > self.avail:
            return None
        start = self._map.find(bytes(n), self._hint)
        if start < 0:
            return None
        self._map[start:start + n] = bytes([_USED]) * n
        self.used += n
        if start == self._hint:
            nxt = self._map.find(b"\x00", start + n)
            self._hint = nxt if nxt >= 0 else self.nblks
        return start

    def free(self, blk: int, n: int) -> None:
        """blist_free, then trim the blocks in the store so the host memory comes back."""
        if self._map.count(_USED, blk, blk + n) != n:
            raise ValueError(f"swap device {self.name}: freeing blocks {blk}..{blk + n - 1}, not all in use")
        self._map[blk:blk + n] = bytes(n)
        self.used -= n
        self._hint = min(self._hint, blk)
        self.store.trim(blk * PAGE_SIZE, n * PAGE_SIZE)


class SwapPager:
    """The swap devices of a kernel (swtailq), their block allocation and the swap counters."""

    def __init__(self, printf: Callable[[str], None] | None = None) -> None:
        self.devices: list[SwapDevice] = []
        self.printf = printf or (lambda _s: None)
        self.v_swappgsin = 0       # vm.stats.vm.v_swappgsin: pages read from swap
        self.v_swappgsout = 0      # vm.stats.vm.v_swappgsout: pages written to swap
        self.v_swapin = 0          # pagein operations
        self.v_swapout = 0         # pageout operations
        self.full = 0              # swap_pager_full (2: an allocation failed)
        self.almost_full = False   # swap_pager_almost_full
        self._next = 0             # swdevhd: the device to try first (round robin)

    def swapon(self, device: SwapDevice) -> None:
        """Add a device; one uncovered block separates devices so no run spans two (vm_swap.c)."""
        if device.reduced:
            self.printf(f"WARNING: reducing swap size to maximum of {SWAP_MAX_BLOCKS // 1024 // 1024 * PAGE_SIZE}MB "
                        "per unit\n")
        device.first = max((d.first + d.nblks + 1 for d in self.devices), default=0)
        self.devices.append(device)
        self._sizecheck()

    # -- figures ------------------------------------------------------------------------------------
    @property
    def swap_total(self) -> int:
        """swap_total in pages (vm.swap_total is this times PAGE_SIZE)."""
        return sum(d.nblks for d in self.devices)

    @property
    def swap_pages_free(self) -> int:
        """swap_pager_avail: blocks that can still be allocated."""
        return sum(d.avail for d in self.devices)

    @property
    def swap_pages_used(self) -> int:
        return sum(d.used for d in self.devices)

    # -- blocks -------------------------------------------------------------------------------------
    def getswapspace(self, n: int) -> int | None:
        """swp_pager_getswapspace: a run of `n` contiguous blocks (global numbers) or None."""
        ndev = len(self.devices)
        for k in range(ndev):
            dev = self.devices[(self._next + k) % ndev]
            blk = dev.alloc(n)
            if blk is not None:
                self._next = (self._next + k + 1) % ndev
                self._sizecheck()
                return dev.first + blk
        self.failed(n)
        return None

    def failed(self, n: int) -> None:
        """An allocation of `n` blocks failed: say so once, until space is freed again."""
        if self.full != 2:
            self.printf(f"swp_pager_getswapspace({n}): failed\n")
            self.full = 2
            self.almost_full = True

    def free_blocks(self, blocks: Iterable[int]) -> None:
        """swp_pager_freeswapspace over any set of blocks, coalesced into runs."""
        blks = sorted(blocks)
        i = 0
        while i < len(blks):
            j = i + 1
            while j < len(blks) and blks[j] == blks[j - 1] + 1:
                j += 1
            dev, rel = self._device(blks[i])
            dev.free(rel, j - i)
            i = j
        if blks:
            self._sizecheck()

    def _sizecheck(self) -> None:
        """swp_sizecheck: warn once when swap runs low, clear the flags when it recovers."""
        avail = self.swap_pages_free
        if avail < NSWAP_LOWAT:
            if not self.almost_full:
                self.printf("swap_pager: out of swap space\n")
                self.almost_full = True
        else:
            self.full = 0
            if avail > NSWAP_HIWAT:
                self.almost_full = False

    def _device(self, blk: int) -> tuple[SwapDevice, int]:
        for dev in self.devices:
            if dev.first <= blk < dev.first + dev.nblks:
                return dev, blk - dev.first
        raise ValueError(f"swap block {blk} is on no device")

    # -- I/O ------------------------------------------------------------------------------------------
    def write(self, blk: int, data: bytes | bytearray | memoryview) -> None:
        """Write whole pages starting at block `blk` (one run on one device)."""
        dev, rel = self._device(blk)
        dev.store.write(rel * PAGE_SIZE, data)

    def read(self, blk: int, npages: int) -> bytes:
        dev, rel = self._device(blk)
        return dev.store.read(rel * PAGE_SIZE, npages * PAGE_SIZE)

    def read_pages(self, blocks: list[int]) -> list[bytes]:
        """The contents of the given blocks, one read per run of consecutive blocks."""
        out: list[bytes] = []
        i = 0
        while i < len(blocks):
            j = i + 1
            while j < len(blocks) and blocks[j] == blocks[j - 1] + 1 and j - i < 256:
                j += 1
            data = self.read(blocks[i], j - i)
            out.extend(data[k * PAGE_SIZE:(k + 1) * PAGE_SIZE] for k in range(j - i))
            i = j
        return out

    # -- swapinfo -------------------------------------------------------------------------------------
    def swapinfo(self, blocksize: int = 1024) -> str:
        """What `swapinfo -k` prints (usr.sbin/pstat/pstat.c print_swap_header/print_swap_line).

        libkvm reports each device's size less vm.dmmax (nsw_cluster_max) blocks; with more than one
        device a Total line follows."""
        header = "1K-blocks" if blocksize == 1024 else f"{blocksize}-blocks"
        hlen = len(header)
        lines = [f"{'Device':<15} {header:>{hlen}} {'Used':>8} {'Avail':>8} {'Capacity':>8}"]
        tot_n = tot_u = 0

        def row(name: str, nblks: int, used: int) -> str:
            conv = PAGE_SIZE // blocksize if blocksize <= PAGE_SIZE else 0
            pct = used * 100.0 / nblks if nblks else 0.0
            return (f"{name:<15} {nblks * conv:>{hlen}d} {used * conv:>8d} {(nblks - used) * conv:>8d} "
                    f"{pct:5.0f}%")

        for dev in self.devices:
            total = dev.nblks - NSW_CLUSTER_MAX
            lines.append(row(f"/dev/{dev.name}", total, dev.used))
            tot_n += total
            tot_u += dev.used
        if len(self.devices) > 1:
            lines.append(row("Total", tot_n, tot_u))
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- backends
class GuestMemory(Protocol):
    def read(self, pa: int, size: int) -> bytes: ...
    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None: ...


class VmBackend(Protocol):
    """Where a SwapObject gets its pages: the pageout daemon in the kernel, DirectPages without one."""

    phys: GuestMemory
    pager: SwapPager | None
    clean_pages: int          # resident pages that also have a valid swap copy

    def headroom(self) -> tuple[int, int, int, int]:
        """(free pages above the reserve, clean resident, dirty resident, swap blocks free)."""
        ...

    def chunk_pages(self, remaining: int) -> int: ...
    def page_alloc(self, n: int) -> list[int]: ...
    def page_free(self, pas: list[int]) -> None: ...
    def page_inserted(self, obj: SwapObject, pindex: int) -> None: ...
    def page_removed(self, obj: SwapObject, pindex: int) -> None: ...
    def page_touched(self, obj: SwapObject, pindex: int) -> None: ...


class PagePool(Protocol):
    """PhysAllocator's shape (kernel_sim/vm/phys.py)."""

    @property
    def free_count(self) -> int: ...
    def alloc(self, npages: int) -> list[int]: ...
    def free(self, pa: int, npages: int) -> None: ...


class DirectPages:
    """Pages straight from a pool, with no pageout and no reserve: what a SwapObject uses when no
    kernel VM is given (a tmpfs or md driver exercised on its own). A page is had while the pool has
    one; then VmNoMemory."""

    pager: SwapPager | None = None

    def __init__(self, pool: PagePool, phys: GuestMemory | None = None) -> None:
        self.pool = pool
        self.phys = phys if phys is not None else pool.phys  # type: ignore[attr-defined]
        self.clean_pages = 0

    def headroom(self) -> tuple[int, int, int, int]:
        return self.pool.free_count, 0, 0, 0

    def chunk_pages(self, remaining: int) -> int:
        return min(remaining, 256)

    def page_alloc(self, n: int) -> list[int]:
        if n > self.pool.free_count:
            raise VmNoMemory(n, f"{n} pages needed, {self.pool.free_count} free")
        return self.pool.alloc(n)

    def page_free(self, pas: list[int]) -> None:
        free_runs(self.pool, pas)

    def page_inserted(self, obj: SwapObject, pindex: int) -> None:
        pass

    def page_removed(self, obj: SwapObject, pindex: int) -> None:
        pass

    def page_touched(self, obj: SwapObject, pindex: int) -> None:
        pass


def free_runs(pool: PagePool, pas: list[int]) -> None:
    """Give pages back to the pool, one free() per physically contiguous run."""
    pas = sorted(pas)
    i = 0
    while i < len(pas):
        j = i + 1
        while j < len(pas) and pas[j] == pas[j - 1] + PAGE_SIZE:
            j += 1
        pool.free(pas[i], j - i)
        i = j


def standalone_backend(ram: int = 1 << 30) -> DirectPages:
    """A page pool of its own (sparse host memory, so untouched pages cost nothing) for a driver used
    without a kernel: md(4) in unit tests and offline tools. The booted kernel passes its own VM."""
    from board.memory import PhysicalMemory
    from kernel_sim.vm.phys import PhysAllocator

    phys = PhysicalMemory()
    phys.add_ram(0, ram)
    return DirectPages(PhysAllocator(phys, 0, ram))


# ---------------------------------------------------------------------------------------- objects
def _coalesced_write(phys: GuestMemory, writes: list[tuple[int, bytes | bytearray | memoryview]]) -> None:
    """phys.write every (pa, data), joining pieces that continue each other into one write."""
    i = 0
    while i < len(writes):
        pa, data = writes[i]
        end = pa + len(data)
        j = i + 1
        while j < len(writes) and writes[j][0] == end:
            end += len(writes[j][1])
            j += 1
        phys.write(pa, data if j == i + 1 else b"".join(w[1] for w in writes[i:j]))
        i = j


def _joined_read(phys: GuestMemory, pas: list[int]) -> bytes:
    """The pages at `pas` back to back, one phys.read per physically contiguous run."""
    runs: list[bytes] = []
    i = 0
    while i < len(pas):
        j = i + 1
        while j < len(pas) and pas[j] == pas[j - 1] + PAGE_SIZE:
            j += 1
        runs.append(phys.read(pas[i], (j - i) * PAGE_SIZE))
        i = j
    return runs[0] if len(runs) == 1 else b"".join(runs)


class SwapObject:
    """A swap-backed VM object (OBJT_DEFAULT until it first has swap, then OBJT_SWAP).

    `resident` maps page index -> guest physical address, `swblk` page index -> swap block. A page
    in both is clean (the block holds its bytes); in `swblk` only it is paged out; in neither it is a
    hole. Offsets are bytes; `size` (pages) is the owner's business (md's mediasize, a file's size).
    """

    def __init__(self, vm: VmBackend, size: int = 0, *, objtype: str = "default") -> None:
        self.vm = vm
        self.size = size
        self.resident: dict[int, int] = {}
        self.swblk: dict[int, int] = {}
        self._objtype = objtype
        self.busy: set[int] = set()              # pages an operation holds: never paged out meanwhile
        self.dead = False

    # -- figures ------------------------------------------------------------------------------------
    @property
    def type(self) -> str:
        """OBJT_SWAP once swap metadata exists (swp_pager_meta_build converts OBJT_DEFAULT)."""
        return "swap" if self._objtype == "swap" or self.swblk else "default"

    @property
    def resident_count(self) -> int:
        return len(self.resident)

    @property
    def swap_count(self) -> int:
        return len(self.swblk)

    # -- page state (the only places that touch resident/swblk, so clean_pages stays exact) ----------
    def _insert(self, i: int, pa: int) -> None:
        self.resident[i] = pa
        if i in self.swblk:
            self.vm.clean_pages += 1
        self.vm.page_inserted(self, i)

    def _remove(self, i: int) -> int:
        pa = self.resident.pop(i)
        if i in self.swblk:
            self.vm.clean_pages -= 1
        self.vm.page_removed(self, i)
        return pa

    def _set_blk(self, i: int, blk: int) -> None:
        self.swblk[i] = blk
        self._objtype = "swap"
        if i in self.resident:
            self.vm.clean_pages += 1

    def _unswap(self, i: int) -> int | None:
        """vm_pager_page_unswapped / swp_pager_meta_ctl(SWM_FREE): drop the page's block, return it."""
        blk = self.swblk.pop(i, None)
        if blk is not None and i in self.resident:
            self.vm.clean_pages -= 1
        return blk

    def _free_blocks(self, blocks: list[int]) -> None:
        if blocks:
            assert self.vm.pager is not None
            self.vm.pager.free_blocks(blocks)

    # -- read -----------------------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset`: resident pages from guest RAM, paged-out pages paged in, holes
        zeros. Never fails: when no page can be had for a page-in the bytes come from the swap block
        directly (VM_WAIT would sleep until one is free)."""
        if offset < 0 or length < 0:
            raise ValueError(f"read at {offset}+{length}")
        out = bytearray(length)
        if not length or not (self.resident or self.swblk):
            return bytes(out)
        end = offset + length
        first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
        resident, swblk = self.resident, self.swblk
        if len(resident) + len(swblk) < last - first + 1:      # mostly holes: visit only what exists
            present = sorted({i for i in (*resident, *swblk) if first <= i <= last})
            for k in range(0, len(present), 256):
                self._read_pages(present[k:k + 256], offset, end, out)
        else:
            for lo in range(first, last + 1, 256):
                idx = [i for i in range(lo, min(lo + 256, last + 1)) if i in resident or i in swblk]
                if idx:
                    self._read_pages(idx, offset, end, out)
        return bytes(out)

    def _read_pages(self, idx: list[int], offset: int, end: int, out: bytearray) -> None:
        """Copy pages `idx` (ascending, all resident or paged out) into `out`, paging in as needed."""
        resident, phys = self.resident, self.vm.phys
        pagein = [i for i in idx if i not in resident]
        res = [i for i in idx if i in resident]
        if pagein:
            self.busy.update(res)
            try:
                for i, data in zip(pagein, self._pagein(pagein), strict=True):
                    base = i * PAGE_SIZE
                    a, b = max(offset, base), min(end, base + PAGE_SIZE)
                    out[a - offset:b - offset] = data[a - base:b - base]
            finally:
                self.busy.clear()
        # Resident pages: one guest-memory read per run of consecutive pages at consecutive addresses.
        k = 0
        while k < len(res):
            j = k + 1
            while j < len(res) and res[j] == res[j - 1] + 1 and resident[res[j]] == resident[res[j - 1]] + PAGE_SIZE:
                j += 1
            base = res[k] * PAGE_SIZE
            a, b = max(offset, base), min(end, (res[j - 1] + 1) * PAGE_SIZE)
            pa = resident[res[k]] + (a - base)
            out[a - offset:b - offset] = phys.read(pa, b - a)
            for i in res[k:j]:
                self.vm.page_touched(self, i)
            k = j

    def _pagein(self, pindexes: list[int]) -> list[bytes]:
        """swap_pager_getpages: the pages' bytes from their blocks, and pages for them that keep the
        blocks (clean). When no page can be had they stay paged out (the bytes are still returned)."""
        pager = self.vm.pager
        assert pager is not None
        datas = pager.read_pages([self.swblk[i] for i in pindexes])
        pager.v_swappgsin += len(pindexes)
        pager.v_swapin += 1
        try:
            pas = self.vm.page_alloc(len(pindexes))
        except VmNoMemory:
            return datas
        _coalesced_write(self.vm.phys, list(zip(pas, datas, strict=True)))
        for i, pa in zip(pindexes, pas, strict=True):
            self._insert(i, pa)
        return datas

    # -- write ----------------------------------------------------------------------------------------
    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store `data` at `offset`: all of it, or nothing and VmNoMemory when the pages it needs
        cannot be backed (decided before anything changes)."""
        view = memoryview(data).cast("B")
        if offset < 0:
            raise ValueError(f"write at negative offset {offset}")
        if not len(view):
            return
        end = offset + len(view)
        first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
        npages = last - first + 1
        if npages <= len(self.resident):
            busy = {i for i in range(first, last + 1) if i in self.resident}
        else:
            busy = {i for i in self.resident if first <= i <= last}
        if len(busy) < npages:
            self._check_backing(first, last, busy, npages - len(busy))
        self.busy = busy
        try:
            i = first
            while i <= last:
                hi = min(last + 1, i + max(1, self.vm.chunk_pages(last + 1 - i)))
                self._write_chunk(i, hi, offset, end, view)
                i = hi
        finally:
            self.busy = set()

    def _check_backing(self, first: int, last: int, busy: set[int], allocs: int) -> None:
        """Can every page the write needs be had, paging out others as the daemon would?

        Free pages above the reserve come first, then clean pages (dropped without I/O), then dirty
        pages while swap has blocks. A page this write fills becomes a dirty page that later pages of
        the same write may push out; a paged-out page it overwrites gives its block back. `busy`
        pages (resident in the range) stay put."""
        free, clean, dirty, swap = self.vm.headroom()
        if allocs <= free:
            return
        said = (f"{allocs} pages needed for a write at page {first}: {free} free above the reserve, "
                f"{clean} clean and {dirty} dirty pages resident, {swap} swap blocks free")
        c_busy = sum(1 for i in busy if i in self.swblk)
        clean -= c_busy
        dirty -= len(busy) - c_busy
        swblk = self.swblk
        for i in range(first, last + 1):
            if i in busy:
                if i in swblk:
                    swap += 1
                continue
            if free > 0:
                free -= 1
            elif clean > 0:
                clean -= 1
            elif dirty > 0 and swap > 0:
                dirty -= 1
                swap -= 1
            else:
                raise VmNoMemory(allocs, said)
            dirty += 1
            if i in swblk:
                swap += 1

    def _write_chunk(self, lo: int, hi: int, offset: int, end: int, view: memoryview) -> None:
        resident, swblk, vm = self.resident, self.swblk, self.vm
        missing = [i for i in range(lo, hi) if i not in resident]
        fresh: dict[int, bytes | None] = {}
        if missing:
            partial = [i for i in missing if i in swblk and (offset > i * PAGE_SIZE or end < (i + 1) * PAGE_SIZE)]
            pas = vm.page_alloc(len(missing))           # may page out others (never busy ones)
            if partial:                                  # md.c: a whole-page write skips the pagein
                assert vm.pager is not None
                for i, data in zip(partial, vm.pager.read_pages([swblk[i] for i in partial]), strict=True):
                    fresh[i] = data
                vm.pager.v_swappgsin += len(partial)
                vm.pager.v_swapin += 1
            for i, pa in zip(missing, pas, strict=True):
                fresh.setdefault(i, None)
                self._insert(i, pa)
        # Straight from `view` in runs of consecutive guest addresses; a new page the write covers
        # only in part is composed whole first (its other bytes from swap, or zeros), never garbage.
        phys = vm.phys
        run_pa, run_a, run_b = -1, 0, 0
        for i in range(lo, hi):
            pa, base = resident[i], i * PAGE_SIZE
            a, b = max(offset, base), min(end, base + PAGE_SIZE)
            if i in fresh and (a != base or b != base + PAGE_SIZE):
                page = bytearray(fresh[i] or ZERO_PAGE)
                page[a - base:b - base] = view[a - offset:b - offset]
                phys.write(pa, page)
                continue
            if run_pa >= 0 and pa + a - base == run_pa + run_b - run_a and a == run_b:
                run_b = b
                continue
            if run_pa >= 0:
                phys.write(run_pa, view[run_a - offset:run_b - offset])
            run_pa, run_a, run_b = pa + a - base, a, b
        if run_pa >= 0:
            phys.write(run_pa, view[run_a - offset:run_b - offset])
        freed = [blk for i in range(lo, hi) if (blk := self._unswap(i)) is not None]
        self._free_blocks(freed)
        for i in range(lo, hi):
            if i not in fresh:
                vm.page_touched(self, i)

    # -- freeing ----------------------------------------------------------------------------------------
    def _indexes(self, d: dict[int, int], lo: int, hi: int) -> list[int]:
        if hi - lo <= len(d):
            return [i for i in range(lo, hi) if i in d]
        return sorted(i for i in d if lo <= i < hi)

    def free_range(self, first: int, count: int) -> None:
        """vm_object_page_remove + swap_pager_freespace: pages [first, first+count) become holes."""
        hi = first + count
        pas = [self._remove(i) for i in self._indexes(self.resident, first, hi)]
        blocks = [blk for i in self._indexes(self.swblk, first, hi) if (blk := self._unswap(i)) is not None]
        if pas:
            self.vm.page_free(pas)
        self._free_blocks(blocks)

    def free_from(self, first: int) -> None:
        """Every page at index `first` and above becomes a hole."""
        top = max(max(self.resident, default=-1), max(self.swblk, default=-1)) + 1
        if top > first:
            self.free_range(first, top - first)

    def zero_range(self, offset: int, length: int) -> None:
        """Zero bytes: whole pages are freed (BIO_DELETE), partial ones zeroed where they hold data."""
        if length <= 0:
            return
        end = offset + length
        first_whole = -(-offset // PAGE_SIZE)
        last_whole = end // PAGE_SIZE                       # exclusive
        if first_whole < last_whole:
            self.free_range(first_whole, last_whole - first_whole)
        edges = {offset // PAGE_SIZE, (end - 1) // PAGE_SIZE} - set(range(first_whole, last_whole))
        for i in sorted(edges):
            base = i * PAGE_SIZE
            a, b = max(offset, base), min(end, base + PAGE_SIZE)
            self._zero_in_page(i, a - base, b - a)

    def _zero_in_page(self, i: int, off: int, n: int) -> None:
        if i in self.resident:
            self.vm.phys.write(self.resident[i] + off, bytes(n))
            blk = self._unswap(i)                           # dirtied: its swap copy is stale
            self._free_blocks([] if blk is None else [blk])
        elif i in self.swblk:                               # paged out: patch the block in place
            pager = self.vm.pager
            assert pager is not None
            page = bytearray(pager.read(self.swblk[i], 1))
            page[off:off + n] = bytes(n)
            pager.write(self.swblk[i], page)

    def truncate(self, nbytes: int) -> None:
        """tmpfs_reg_resize / shm_dotruncate shrinking: pages past the end freed, the last page's
        tail zeroed so growing again reads zeros."""
        tail = nbytes % PAGE_SIZE
        if tail:
            self._zero_in_page(nbytes // PAGE_SIZE, tail, PAGE_SIZE - tail)
        self.free_from(-(-nbytes // PAGE_SIZE))

    def reserve(self, start: int, count: int) -> bool:
        """swap_pager_reserve: a block for every hole in [start, start+count); all or none.

        False (md's EDOM) when swap cannot hold them, with nothing kept."""
        pager = self.vm.pager
        holes = [i for i in range(start, start + count) if i not in self.resident and i not in self.swblk]
        if not holes:
            return True
        if pager is None or pager.swap_pages_free < len(holes):
            if pager is not None:
                pager.failed(len(holes))
            return False
        got: list[int] = []
        pos = 0
        while pos < len(holes):
            n = min(len(holes) - pos, 1 << 16)
            blk = None
            while n and blk is None:
                blk = pager.getswapspace(n)
                if blk is None:
                    n >>= 1
            if blk is None:
                pager.free_blocks([b for i in got if (b := self._unswap(i)) is not None])
                return False
            for k in range(n):
                self._set_blk(holes[pos + k], blk + k)
                got.append(holes[pos + k])
            pos += n
        return True

    def deallocate(self) -> None:
        """vm_object_deallocate of the last reference: every page and every block goes back."""
        if self.resident:
            pas = [self._remove(i) for i in list(self.resident)]
            self.vm.page_free(pas)
        self._free_blocks([blk for i in list(self.swblk) if (blk := self._unswap(i)) is not None])
        self.dead = True

    # -- pageout (called by the daemon) ----------------------------------------------------------------
    def drop_clean(self, pindexes: list[int]) -> list[int]:
        """Release clean resident pages (their blocks hold the bytes): their physical addresses."""
        return [self._remove(i) for i in pindexes]

    def launder(self, pindexes: list[int]) -> tuple[list[int], int]:
        """swap_pager_putpages: write dirty resident pages to swap in clusters of consecutive
        indexes, then release them. Returns (physical addresses released, pages written); pages that
        got no block stay resident."""
        pager = self.vm.pager
        released: list[int] = []
        written = 0
        if pager is None:
            return released, written
        idx = sorted(pindexes)
        pos = 0
        while pos < len(idx):
            end = pos + 1
            while end < len(idx) and idx[end] == idx[end - 1] + 1 and end - pos < NSW_CLUSTER_MAX:
                end += 1
            n = end - pos
            blk = None
            while n and blk is None:
                blk = pager.getswapspace(n)
                if blk is None:
                    n >>= 1
            if blk is None:
                break                                        # swap is full: the rest stay dirty
            run = idx[pos:pos + n]
            data = _joined_read(self.vm.phys, [self.resident[i] for i in run])
            pager.write(blk, data)                           # the bytes are in the store first
            for k, i in enumerate(run):
                self._set_blk(i, blk + k)
                released.append(self._remove(i))
            pager.v_swappgsout += n
            pager.v_swapout += 1
            written += n
            pos += n
        return released, written

    def __repr__(self) -> str:
        return (f"<SwapObject {self.type} size={self.size} resident={len(self.resident)} "
                f"swapped={len(self.swblk)}>")
