"""Swap pager: swap devices over board storage, and swap objects that page to them and back intact."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from board.memory import PhysicalMemory
from board.storage import open_allocator
from board.storage.sparse import L1_ENTRY_BYTES, L2_DIR_BYTES
from kernel_sim.vm.pageout import PageoutDaemon, PageoutThresholds, VmSwap
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.swap_pager import (
    NSW_CLUSTER_MAX,
    PAGE_SIZE,
    SWAP_LABEL_BLOCKS,
    DirectPages,
    SwapDevice,
    SwapObject,
    SwapPager,
    VmNoMemory,
)

RAM = 0x4000_0000
PS = PAGE_SIZE


def small_thresholds(npages: int, reserved: int = 2, free_min: int = 4, target: int = 8) -> PageoutThresholds:
    """Thresholds for a pool of a few dozen pages (FreeBSD's formulas reserve 42 pages below 1024)."""
    return PageoutThresholds(npages, free_min, target, reserved, reserved + 1, 0, target)


def make_vm(ram_pages: int, swap_pages: int | None, *, allocator: str = "sparse",
            thresholds: PageoutThresholds | None = None) -> tuple[VmSwap, list[str]]:
    """A kernel-like VM over real guest RAM: PhysAllocator, swap device on a board store, daemon."""
    phys = PhysicalMemory()
    phys.add_ram(RAM, ram_pages * PS)
    pages = PhysAllocator(phys, RAM, RAM + ram_pages * PS)
    said: list[str] = []
    pager = SwapPager(said.append)
    if swap_pages is not None:
        pager.swapon(SwapDevice(open_allocator(allocator, swap_pages * PS), "swap0"))
    daemon = PageoutDaemon(pages, pager, thresholds=thresholds or small_thresholds(ram_pages))
    return VmSwap(pages, pager, daemon), said


# ------------------------------------------------------------------ the device
def test_device_keeps_the_label_blocks_and_counts_what_it_hands_out():
    dev = SwapDevice(open_allocator("sparse", 10 * PS + 100))      # truncated to 10 pages
    pager = SwapPager()
    pager.swapon(dev)
    assert (dev.nblks, pager.swap_total, pager.swap_pages_free) == (10, 10, 10 - SWAP_LABEL_BLOCKS)
    blk = pager.getswapspace(8)
    assert blk == SWAP_LABEL_BLOCKS                                   # blocks 0 and 1 are never given out
    assert pager.swap_pages_free == 0 and pager.getswapspace(1) is None
    pager.free_blocks([blk + 3, blk + 4])
    assert pager.swap_pages_free == 2 and pager.getswapspace(2) == blk + 3
    with pytest.raises(ValueError):
        pager.free_blocks([0])                                        # a label block is not in use


def test_a_device_past_the_blist_limit_is_cut_to_256_gib():
    said: list[str] = []
    pager = SwapPager(said.append)
    pager.swapon(SwapDevice(open_allocator("sparse", 1 << 40)))       # sparse: costs nothing
    assert pager.swap_total * PS == 256 << 30
    assert said == ["WARNING: reducing swap size to maximum of 262144MB per unit\n"]


def test_device_too_small_for_its_label():
    with pytest.raises(ValueError, match="at least 12288 bytes"):
        SwapDevice(open_allocator("sparse", 2 * PS))


def test_allocation_failure_and_low_swap_are_reported_once_each():
    said: list[str] = []
    pager = SwapPager(said.append)
    pager.swapon(SwapDevice(open_allocator("sparse", 200 * PS)))
    assert said == []                                                 # 198 free: above nswap_lowat (128)
    blk = pager.getswapspace(100)
    assert said == ["swap_pager: out of swap space\n"]
    assert pager.getswapspace(99) is None and pager.getswapspace(99) is None
    assert said[1:] == ["swp_pager_getswapspace(99): failed\n"]
    pager.free_blocks(range(blk, blk + 100))
    assert pager.getswapspace(99) is not None and len(said) == 2


def test_freed_blocks_give_host_memory_back():
    store = open_allocator("sparse", 1024 * PS)
    pager = SwapPager()
    pager.swapon(SwapDevice(store))
    blk = pager.getswapspace(64)
    pager.write(blk, os.urandom(64 * PS))
    assert store.resident_bytes >= 64 * PS
    pager.free_blocks(range(blk, blk + 64))
    assert store.resident_bytes == 0


def test_swapinfo_table():
    pager = SwapPager()
    pager.swapon(SwapDevice(open_allocator("sparse", 64 << 20), "vtbd1"))
    blk = pager.getswapspace(2048)
    assert blk is not None
    total = (64 << 20) // PS - NSW_CLUSTER_MAX                        # libkvm subtracts vm.dmmax
    assert pager.swapinfo().splitlines() == [
        "Device          1K-blocks     Used    Avail Capacity",
        f"/dev/vtbd1          {total * 4}     8192    {(total - 2048) * 4}    13%",
    ]
    pager.swapon(SwapDevice(open_allocator("sparse", 16 << 20), "vtbd2"))
    lines = pager.swapinfo().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("Total ")
    assert pager.devices[1].first == pager.devices[0].nblks + 1       # one uncovered block between devices


# ------------------------------------------------------------------ objects
def test_write_larger_than_ram_comes_back_identical_from_swap():
    vm, _ = make_vm(32, 256)
    obj = vm.new_object()
    data = os.urandom(100 * PS + 123)
    obj.write(77, data)
    assert vm.pager.v_swappgsout > 0 and obj.resident_count < 32
    # every paged-out page is in the store, byte for byte, before its guest page went away
    padded = bytes(PS) + data + bytes(PS)
    for i, blk in obj.swblk.items():
        if i not in obj.resident:
            assert vm.pager.read(blk, 1) == padded[i * PS - 77 + PS:(i + 1) * PS - 77 + PS]
    assert obj.read(0, 77 + len(data) + 50) == bytes(77) + data + bytes(50)
    assert vm.pager.v_swappgsin > 0


def test_holes_cost_nothing():
    vm, _ = make_vm(32, 64)
    obj = vm.new_object()
    free = vm.pages.free_count
    assert obj.read(1 << 40, 4 << 20) == bytes(4 << 20)
    assert (vm.pages.free_count, vm.pager.swap_pages_free, obj.resident_count) == (free, 62, 0)
    obj.write((1 << 40) + 5, b"x")
    assert vm.pages.free_count == free - 1 and obj.read((1 << 40) + 4, 3) == b"\0x\0"


def test_clean_pages_are_dropped_without_writing_them_again():
    vm, _ = make_vm(32, 256)
    a, b = vm.new_object(), vm.new_object()
    a.write(0, os.urandom(40 * PS))
    first = a.read(0, 8 * PS)                      # pages 0..7 come back in, clean
    assert vm.daemon.clean_pages >= 8
    homes = {(o, i, blk) for o in (a, b) for i, blk in o.swblk.items()}
    out = vm.pager.v_swappgsout
    b.write(0, os.urandom(30 * PS))                # pressure again: clean pages go without I/O
    assert any(i not in a.resident for i in range(8))
    new_homes = {(o, i, blk) for o in (a, b) for i, blk in o.swblk.items()} - homes
    assert vm.pager.v_swappgsout - out == len(new_homes)     # only dirty pages were written
    assert all(o is b or i >= 8 for o, i, _ in new_homes)
    assert a.read(0, 8 * PS) == first


def test_dirtying_a_paged_in_page_frees_its_swap_copy():
    vm, _ = make_vm(32, 256)
    obj = vm.new_object()
    obj.write(0, os.urandom(60 * PS))
    assert 0 in obj.swblk and 0 not in obj.resident
    obj.read(0, 1)
    assert 0 in obj.resident and 0 in obj.swblk                    # clean: both
    free = vm.pager.swap_pages_free
    obj.write(10, b"new")
    assert 0 not in obj.swblk and vm.pager.swap_pages_free == free + 1
    assert obj.read(10, 3) == b"new"


def test_no_swap_is_vm_no_memory_and_nothing_is_written():
    vm, _ = make_vm(32, None)
    obj = vm.new_object()
    obj.write(0, b"a" * (20 * PS))
    free, before = vm.pages.free_count, obj.read(0, 40 * PS)
    with pytest.raises(VmNoMemory):
        obj.write(10 * PS - 3, b"b" * (22 * PS))    # overlaps written pages, needs 12 new: 10 can be had
    assert vm.pages.free_count == free and obj.read(0, 40 * PS) == before
    assert vm.pages.free_count >= vm.daemon.t.v_free_reserved   # never below the reserve


def test_swap_full_fails_before_writing_and_keeps_everything():
    vm, said = make_vm(32, 40)                      # 38 usable blocks
    obj = vm.new_object()
    data = os.urandom(50 * PS)
    obj.write(0, data)
    with pytest.raises(VmNoMemory):
        obj.write(50 * PS, os.urandom(30 * PS))
    assert obj.read(0, 80 * PS) == data + bytes(30 * PS)


def test_zero_range_frees_whole_pages_and_zeroes_parts():
    vm, _ = make_vm(32, 256)
    obj = vm.new_object()
    data = bytearray(os.urandom(60 * PS))
    obj.write(0, data)
    assert len(obj.resident.keys() | obj.swblk.keys()) == 60
    obj.zero_range(PS + 100, 50 * PS)                  # pages 2..50 whole, 1 and 51 in part
    assert sorted(obj.resident.keys() | obj.swblk.keys()) == [0, 1, *range(51, 60)]
    data[PS + 100:51 * PS + 100] = bytes(50 * PS)
    assert obj.read(0, 60 * PS) == data


def test_truncate_frees_the_tail_and_zeroes_the_last_page():
    vm, _ = make_vm(32, 256)
    obj = vm.new_object()
    obj.write(0, b"\xff" * (60 * PS))
    obj.truncate(5 * PS + 7)
    assert max((*obj.resident, *obj.swblk)) == 5
    assert obj.read(5 * PS, PS) == b"\xff" * 7 + bytes(PS - 7)
    obj.deallocate()
    assert vm.pages.free_count == 32 and vm.pager.swap_pages_used == 0 and not vm.daemon.lru


def test_reserve_is_all_or_nothing_and_reads_zeros():
    vm, said = make_vm(32, 20)                      # 18 usable blocks
    obj = vm.new_object(10)
    assert obj.reserve(0, 10) and vm.pager.swap_pages_free == 8
    assert obj.read(0, 10 * PS) == bytes(10 * PS) and obj.type == "swap"
    other = vm.new_object(10)
    assert not other.reserve(0, 9) and vm.pager.swap_pages_free == 8 and not other.swblk
    assert said[-1] == "swp_pager_getswapspace(9): failed\n"


def test_object_type_becomes_swap_with_its_first_block():
    vm, _ = make_vm(32, 256)
    obj = vm.new_object(objtype="default")
    obj.write(0, os.urandom(10 * PS))
    assert obj.type == "default"
    vm.new_object().write(0, os.urandom(40 * PS))   # pushes obj's pages out
    assert obj.swblk and obj.type == "swap"


@pytest.mark.parametrize("kind", ["sparse", "zstd"])
def test_store_memory_grows_with_what_is_paged_out(kind):
    """The sparse and zstd stores hold memory in proportion to the data in swap, and give it back."""
    figures = []
    for npages in (256, 512):
        vm, _ = make_vm(32, 2048, allocator=kind)
        store = vm.pager.devices[0].store
        obj = vm.new_object()
        text = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % n for n in range(60000))
        data = text[:npages * PS] if kind == "zstd" else os.urandom(npages * PS)
        obj.write(0, data)
        swapped = sum(1 for i in obj.swblk if i not in obj.resident)
        figures.append((swapped, store.resident_bytes - L2_DIR_BYTES - L1_ENTRY_BYTES))   # less the table
        assert obj.read(0, len(data)) == data
        obj.deallocate()
        assert store.resident_bytes == 0
    (s1, m1), (s2, m2) = figures
    per_page = [m1 / s1, m2 / s2]
    if kind == "sparse":
        assert all(PS <= p <= PS * 1.3 for p in per_page)        # pages plus the L2 directory
    else:
        assert all(p < PS / 8 for p in per_page)                  # repetitive text compresses
    assert 1.7 < m2 / m1 < 2.3                                        # twice the pages, twice the memory


def test_direct_pages_without_a_kernel_use_the_pool_until_it_is_empty():
    phys = PhysicalMemory()
    phys.add_ram(RAM, 8 * PS)
    pool = PhysAllocator(phys, RAM, RAM + 8 * PS)
    obj = SwapObject(DirectPages(pool))
    obj.write(0, b"z" * (8 * PS))
    with pytest.raises(VmNoMemory):
        obj.write(8 * PS, b"!")
    assert obj.read(8 * PS - 2, 4) == b"zz\0\0"
    obj.deallocate()
    assert pool.free_count == 8


# ------------------------------------------------------------------ model
PAGES = 16
SWAP_BLOCKS = 40
offsets = st.builds(lambda page, sub: page * PS + sub, st.integers(0, 24), st.sampled_from([0, 1, 100, PS - 1]))
lengths = st.builds(lambda pages, extra: pages * PS + extra, st.integers(0, 8), st.sampled_from([0, 1, 7, PS - 1]))


class SwapObjectModel(RuleBasedStateMachine):
    """Two objects under random writes, reads, deletes, truncates and reserves, against bytearrays,
    in a 16-page pool with 38 swap blocks so that paging and ENOSPC both happen."""

    def __init__(self) -> None:
        super().__init__()
        self.vm, _ = make_vm(PAGES, SWAP_BLOCKS + SWAP_LABEL_BLOCKS)
        self.objs = [self.vm.new_object(), self.vm.new_object()]
        self.models = [bytearray(), bytearray()]
        self.failed = 0

    which = st.integers(0, 1)

    @staticmethod
    def _at(model: bytearray, end: int) -> None:
        if len(model) < end:
            model.extend(bytes(end - len(model)))

    @rule(k=which, offset=offsets, n=lengths.filter(bool),
          kind=st.sampled_from(["random", "zeros", "byte"]), byte=st.integers(1, 255))
    def write(self, k, offset, n, kind, byte):
        data = os.urandom(n) if kind == "random" else bytes(n) if kind == "zeros" else bytes([byte]) * n
        obj, model = self.objs[k], self.models[k]
        before = obj.read(0, len(model) + 4 * PS)
        try:
            obj.write(offset, data)
        except VmNoMemory:
            self.failed += 1
            assert obj.read(0, len(model) + 4 * PS) == before        # nothing half-written
            return
        self._at(model, offset + n)
        model[offset:offset + n] = data

    @rule(k=which, offset=offsets, n=lengths)
    def read(self, k, offset, n):
        model = self.models[k]
        want = bytes(model[offset:offset + n])
        assert self.objs[k].read(offset, n) == want + bytes(n - len(want))

    @rule(k=which, offset=offsets, n=st.integers(1, 6 * PS))
    def delete(self, k, offset, n):
        self.objs[k].zero_range(offset, n)
        model = self.models[k]
        end = min(len(model), offset + n)
        if offset < end:
            model[offset:end] = bytes(end - offset)

    @rule(k=which, size=offsets)
    def truncate(self, k, size):
        self.objs[k].truncate(size)
        del self.models[k][size:]

    @rule(k=which, first=st.integers(20, 30), count=st.integers(1, 4))
    def reserve(self, k, first, count):
        obj = self.objs[k]
        holes = [i for i in range(first, first + count) if i not in obj.resident and i not in obj.swblk]
        free = self.vm.pager.swap_pages_free
        ok = obj.reserve(first, count)
        assert ok == (len(holes) <= free)
        assert self.vm.pager.swap_pages_free == free - (len(holes) if ok else 0)

    @precondition(lambda self: any(self.models))
    @rule()
    def read_everything(self):
        for obj, model in zip(self.objs, self.models, strict=True):
            assert obj.read(0, len(model)) == model

    @invariant()
    def bookkeeping(self):
        vm = self.vm
        resident = sum(o.resident_count for o in self.objs)
        assert vm.pages.free_count + resident == PAGES                   # no page lost or doubled
        assert len(vm.daemon.lru) == resident
        assert vm.daemon.clean_pages == sum(len(o.resident.keys() & o.swblk.keys()) for o in self.objs)
        assert vm.pager.swap_pages_used == sum(o.swap_count for o in self.objs)
        blocks = [b for o in self.objs for b in o.swblk.values()]
        assert len(blocks) == len(set(blocks))                          # no block shared


TestSwapObjectModel = SwapObjectModel.TestCase
TestSwapObjectModel.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
