"""md(4) swap disks over the kernel's swap objects: guest pages, paging, MD_RESERVE and md.c's errnos."""

from __future__ import annotations

import os

import pytest

from board.memory import PhysicalMemory
from board.storage import open_allocator
from kernel_sim.dev.md import (
    EBUSY,
    EDOM,
    EINVAL,
    ENOSPC,
    MD_AUTOUNIT,
    MD_RESERVE,
    MD_SWAP,
    MD_VERIFY,
    MDIOCATTACH,
    MDIOCQUERY,
    MDIOCRESIZE,
    MdDriver,
    MdError,
    MdIoctl,
)
from kernel_sim.geom.core import GeomError, Mesh
from kernel_sim.vm.pageout import PageoutDaemon, PageoutThresholds, VmSwap
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.swap_pager import PAGE_SIZE, SwapDevice, SwapPager

RAM = 0x4000_0000
PS = PAGE_SIZE
MIB = 1 << 20


def kernel(ram_pages: int = 2048, swap_pages: int | None = 4096) -> tuple[MdDriver, VmSwap]:
    """An md driver given the VM's swap objects, over real guest RAM and a sparse swap store."""
    phys = PhysicalMemory()
    phys.add_ram(RAM, ram_pages * PS)
    pages = PhysAllocator(phys, RAM, RAM + ram_pages * PS)
    pager = SwapPager()
    if swap_pages:
        pager.swapon(SwapDevice(open_allocator("sparse", swap_pages * PS)))
    vm = VmSwap(pages, pager, PageoutDaemon(pages, pager, thresholds=PageoutThresholds.for_page_count(ram_pages)))
    drv = MdDriver(Mesh(), sector_alloc=lambda _n, _z: None, sector_free=lambda _h: None,
                   swap_object=vm.md_swap_object)
    return drv, vm


def test_swap_md_lives_in_guest_pages_and_pages_out():
    drv, vm = kernel()
    free = vm.pages.free_count
    unit = drv.attach(MD_SWAP, 12 * MIB, options=MD_AUTOUNIT)      # 3072 pages on a 2048-page board
    assert vm.pages.free_count == free                              # nothing until written
    data = os.urandom(12 * MIB)
    for off in range(0, len(data), 128 << 10):
        drv.write(unit, off, data[off:off + (128 << 10)])
    assert vm.pager.v_swappgsout > 0 and free - vm.pages.free_count > 1024
    assert drv.read(unit, 0, len(data)) == data
    obj = drv.units[unit].object
    assert obj is not None and obj.type == "swap"
    drv.detach(unit)
    assert vm.pages.free_count == free and vm.pager.swap_pages_used == 0


def test_delete_frees_pages_and_blocks_and_reads_zeros():
    drv, vm = kernel()
    unit = drv.attach(MD_SWAP, 10 * MIB, options=MD_AUTOUNIT)
    drv.write(unit, 0, os.urandom(10 * MIB))
    obj = drv.units[unit].object
    held = len(obj.resident.keys() | obj.swblk.keys())
    drv.delete(unit, 512, 10 * MIB - 1024)
    assert len(obj.resident.keys() | obj.swblk.keys()) == 2          # the first and last pages, in part
    assert drv.read(unit, 512, 1024) == bytes(1024) and held == 2560


def test_write_enospc_without_swap_and_nothing_of_it_written():
    drv, vm = kernel(swap_pages=None)
    unit = drv.attach(MD_SWAP, 16 * MIB, options=MD_AUTOUNIT)
    chunk = os.urandom(1 * MIB)
    written = 0
    with pytest.raises(GeomError) as err:
        while written < 16 * MIB:
            drv.write(unit, written, chunk)
            written += len(chunk)
    assert err.value.errno == ENOSPC
    assert 6 * MIB <= written < 8 * MIB                              # 8 MiB of RAM less the reserve
    assert drv.read(unit, written, MIB) == bytes(MIB)               # the failed request left nothing
    assert drv.read(unit, written - MIB, MIB) == chunk
    assert vm.pages.free_count >= vm.daemon.t.v_free_reserved


def test_reserve_takes_swap_up_front_or_is_edom():
    drv, vm = kernel(swap_pages=1024)                               # 1022 usable blocks
    unit = drv.attach(MD_SWAP, 1000 * PS, options=MD_AUTOUNIT | MD_RESERVE)
    assert vm.pager.swap_pages_free == 22 and drv.query(unit)["options"] & MD_RESERVE
    assert drv.read(unit, 0, 8 * PS) == bytes(8 * PS)
    with pytest.raises(MdError) as err:
        drv.attach(MD_SWAP, 23 * PS, options=MD_AUTOUNIT | MD_RESERVE)
    assert err.value.errno == EDOM and drv.list() == [unit] and vm.pager.swap_pages_free == 22
    drv.detach(unit)
    assert vm.pager.swap_pages_free == 1022


def test_reserve_without_any_swap_is_edom():
    drv, _ = kernel(swap_pages=None)
    with pytest.raises(MdError) as err:
        drv.attach(MD_SWAP, 64 * PS, options=MD_AUTOUNIT | MD_RESERVE)
    assert err.value.errno == EDOM and drv.list() == []
    drv.attach(MD_SWAP, 64 * PS, options=MD_AUTOUNIT)               # without reserve it attaches


def test_resize_shrinks_the_object_and_grows_with_reserve():
    drv, vm = kernel(swap_pages=1024)
    unit = drv.attach(MD_SWAP, 100 * PS, options=MD_AUTOUNIT | MD_RESERVE)
    drv.write(unit, 0, b"\xaa" * (100 * PS))
    with pytest.raises(MdError) as err:
        drv.resize(unit, 100 * PS + 512)
    assert err.value.errno == EDOM
    with pytest.raises(MdError) as err:
        drv.resize(unit, 50 * PS)
    assert err.value.errno == EBUSY                                  # shrinking needs force
    drv.resize(unit, 50 * PS, force=True)
    obj = drv.units[unit].object
    assert max(obj.resident.keys() | obj.swblk.keys()) == 49
    before = vm.pager.swap_pages_free
    drv.resize(unit, 150 * PS)                                       # MD_RESERVE on the unit: 100 new blocks
    assert vm.pager.swap_pages_free == before - 100
    assert drv.read(unit, 49 * PS, 2 * PS) == b"\xaa" * PS + bytes(PS)
    with pytest.raises(MdError) as err:
        drv.resize(unit, 2000 * PS)
    assert err.value.errno == EDOM and drv.query(unit)["mediasize"] == 150 * PS


def test_ioctl_errnos():
    drv, vm = kernel(swap_pages=64)

    def attach(size: int, options: int) -> tuple[int, MdIoctl]:
        err, out = drv.ioctl(MDIOCATTACH, MdIoctl(md_type=MD_SWAP, md_mediasize=size, md_options=options).pack())
        return err, MdIoctl.unpack(out)

    assert attach(8192 + 512, MD_AUTOUNIT)[0] == EDOM
    assert attach(8192, MD_AUTOUNIT | MD_VERIFY)[0] == EINVAL
    assert attach(0, MD_AUTOUNIT)[0] == EINVAL                      # smaller than a sector
    assert attach(100 * PS, MD_AUTOUNIT | MD_RESERVE)[0] == EDOM    # 62 blocks of swap
    err, md = attach(32 * PS, MD_AUTOUNIT | MD_RESERVE)
    assert err == 0 and vm.pager.swap_pages_free == 30
    err, _ = drv.ioctl(MDIOCRESIZE, MdIoctl(md_unit=md.md_unit, md_mediasize=63 * PS).pack())
    assert err == EDOM and vm.pager.swap_pages_free == 30            # the unit's reserve cannot grow by 31
    err, _ = drv.ioctl(MDIOCRESIZE, MdIoctl(md_unit=md.md_unit, md_mediasize=62 * PS).pack())
    assert err == 0 and vm.pager.swap_pages_free == 0
    err, out = drv.ioctl(MDIOCQUERY, MdIoctl(md_unit=md.md_unit).pack())
    q = MdIoctl.unpack(out)
    assert err == 0 and (q.md_type, q.md_mediasize, q.md_options & MD_RESERVE) == (MD_SWAP, 62 * PS, MD_RESERVE)


def test_standalone_driver_still_has_working_swap_units():
    """Without the kernel's VM (unit tests, offline tools) swap units draw from a private pool."""
    drv = MdDriver(Mesh(), sector_alloc=lambda _n, _z: None, sector_free=lambda _h: None)
    unit = drv.attach(MD_SWAP, 1 * MIB, options=MD_AUTOUNIT)
    drv.write(unit, 4096 - 512, b"x" * 1024)
    assert drv.read(unit, 4096 - 1024, 2048) == bytes(512) + b"x" * 1024 + bytes(512)
    with pytest.raises(MdError) as err:
        drv.attach(MD_SWAP, 1 * MIB, options=MD_AUTOUNIT | MD_RESERVE)   # no swap at all
    assert err.value.errno == EDOM
