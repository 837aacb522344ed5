"""Pageout daemon: FreeBSD's thresholds, VM_WAIT's synchronous run, LRU order, the sysctls."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from board.memory import PhysicalMemory
from board.storage import open_allocator
from kernel_sim.kern.sysctl import SysctlTree
from kernel_sim.vm.pageout import PageoutThresholds, vm_swap_init
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.swap_pager import PAGE_SIZE, VmNoMemory

RAM = 0x4000_0000
PS = PAGE_SIZE


def booted_like(ram_pages: int, swap_bytes: int | None, thresholds: PageoutThresholds | None = None):
    """vm_swap_init over real guest RAM and a board-style machine (a swap store and a console)."""
    phys = PhysicalMemory()
    phys.add_ram(RAM, ram_pages * PS)
    pages = PhysAllocator(phys, RAM, RAM + ram_pages * PS)
    said: list[str] = []
    machine = SimpleNamespace(swap=open_allocator("sparse", swap_bytes) if swap_bytes else None,
                              console=SimpleNamespace(write_text=said.append))
    tree = SysctlTree()
    return vm_swap_init(machine, pages, tree, thresholds=thresholds), tree, said


# ------------------------------------------------------------------ thresholds
@pytest.mark.parametrize("pages,free_min,target,reserved,severe", [
    # 256 MiB: 4 + 64512/200 = 326; reserved 32 + 34 + 85 = 151; target 4*326 + 151; min 326 + 151;
    # severe 326/2 + 151 (sys/vm/vm_pageout.c vm_pageout_init_domain, worked by hand)
    (65536, 477, 1455, 151, 314),
    # 1 GiB: 4 + 261120/200 = 1309; reserved 32 + 34 + 341 = 407
    (262144, 1716, 5643, 407, 1061),
    # under 2000 pages vm_pageout_page_count is 8: reserved 8 + 34 + 1 = 43, free_min 4
    (1000, 47, 59, 43, 45),
])
def test_thresholds_follow_vm_pageout_init(pages, free_min, target, reserved, severe):
    t = PageoutThresholds.for_page_count(pages)
    assert (t.v_free_min, t.v_free_target, t.v_free_reserved, t.v_free_severe) == (free_min, target, reserved, severe)
    assert t.pageout_wakeup_thresh == target // 10 * 9


@given(st.integers(64, 1 << 20))
def test_thresholds_are_ordered(pages):
    t = PageoutThresholds.for_page_count(pages)
    assert t.v_free_reserved < t.v_free_severe <= t.v_free_min < t.v_free_target


# ------------------------------------------------------------------ the daemon
def test_allocation_below_free_min_pages_out_to_the_target():
    vm, _, _ = booted_like(4096, 64 << 20)
    t = vm.daemon.t
    obj = vm.new_object()
    obj.write(0, os.urandom((4096 - t.v_free_min) * PS))       # just above v_free_min: nobody woke up
    assert vm.daemon.v_pdwakeups == 0 and vm.pager.v_swappgsout == 0
    obj.write(1 << 30, os.urandom(PS))                          # one more page crosses it
    assert vm.daemon.v_pdwakeups == 1
    assert vm.pages.free_count == t.v_free_target               # target + the one page, less that page
    assert vm.pager.v_swappgsout == t.v_free_target - t.v_free_min + 1


def test_without_swap_the_reserve_is_never_taken():
    vm, _, _ = booted_like(4096, None)
    t = vm.daemon.t
    obj = vm.new_object()
    with pytest.raises(VmNoMemory):
        obj.write(0, bytes(4096 * PS))
    obj.write(0, b"\1" * ((4096 - t.v_free_reserved) * PS))     # everything above the reserve
    assert vm.pages.free_count == t.v_free_reserved
    with pytest.raises(VmNoMemory):
        obj.write(1 << 30, b"x")
    assert vm.pages.free_count == t.v_free_reserved and vm.daemon.v_pdshortfalls >= 1


def test_least_recently_used_pages_go_first():
    vm, _, _ = booted_like(4096, 64 << 20)
    a, b = vm.new_object(), vm.new_object()
    a.write(0, os.urandom(2000 * PS))
    a.read(0, 100 * PS)                                         # a's first 100 pages used again
    b.write(0, os.urandom(2500 * PS))                           # 4500 pages do not fit in 4096
    gone = [i for i in range(2000) if i not in a.resident]
    assert gone and all(i >= 100 for i in gone)
    assert gone == sorted(gone) and gone[0] == 100              # oldest first: a's pages after 100


def test_busy_pages_of_a_write_stay_while_it_pages_out_others():
    vm, _, _ = booted_like(4096, 64 << 20)
    obj = vm.new_object()
    data = bytearray(os.urandom(3000 * PS))
    obj.write(0, data)
    # one write over 3000 old pages (the oldest in the LRU) and 2000 new ones: the old ones stay put
    # for the whole write, the new ones page each other out
    patch = os.urandom(5000 * PS)
    obj.write(PS // 2, patch)
    data[PS // 2:] = patch
    assert obj.read(0, len(data)) == data


def test_sysctls_read_live():
    vm, tree, _ = booted_like(4096, 64 << 20)
    t = vm.daemon.t
    assert tree.get("vm.swap_total") == 64 << 20
    assert tree.get("vm.stats.vm.v_free_min") == t.v_free_min
    assert tree.get("vm.stats.vm.v_free_target") == t.v_free_target
    assert tree.get("vm.stats.vm.v_free_count") == 4096
    assert tree.get("vm.stats.vm.v_swappgsout") == 0 == tree.get("vm.stats.vm.v_swappgsin")
    obj = vm.new_object()
    obj.write(0, os.urandom(5000 * PS))
    obj.read(0, 5000 * PS)
    assert tree.get("vm.stats.vm.v_swappgsout") == vm.pager.v_swappgsout > 0
    assert tree.get("vm.stats.vm.v_swappgsin") == vm.pager.v_swappgsin > 0
    assert tree.get("vm.stats.vm.v_free_count") == vm.pages.free_count
    assert tree.describe("vm.stats.vm.v_swappgsout").endswith("Swap pages swapped out")
    with pytest.raises(Exception, match="read only"):
        tree.set("vm.swap_total", 1)


def test_swapinfo_and_messages_go_to_the_console():
    vm, _, said = booted_like(1024, 200 * PS)
    assert vm.swapinfo().splitlines()[1].split() == ["/dev/swap0", str((200 - 16) * 4), "0", str((200 - 16) * 4),
                                                     "0%"]
    obj = vm.new_object()
    with pytest.raises(VmNoMemory):
        obj.write(0, os.urandom(1400 * PS))                   # more than RAM and swap together
    obj.write(0, os.urandom(1150 * PS))                       # fits, leaving under 128 swap pages
    assert said == ["swap_pager: out of swap space\n"] and vm.pager.swap_pages_free < 128


def test_no_swap_device_without_a_swap_store():
    vm, tree, _ = booted_like(1024, None)
    assert vm.pager.devices == [] and tree.get("vm.swap_total") == 0 and vm.swap_pages_free() == 0
    assert vm.swapinfo() == "Device          1K-blocks     Used    Avail Capacity\n"
