"""The physical page allocator: counts after a real boot, alloc/free/zero, exhaustion, and a property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from board.memory import PhysicalMemory
from kernel_sim.boot import BootRequest, prepare, run
from kernel_sim.vm.phys import PAGE_SIZE, OutOfPages, PhysAllocator

RAM = 0x4000_0000
MIB = 1 << 20


def booted(**kwargs):
    kwargs.setdefault("loader_conf", None)
    result = run(prepare(BootRequest(stop_at="handover", console=None, **kwargs)))
    assert result.status == "stopped" and result.handoff is not None, result.message
    return result


@pytest.fixture(scope="module")
def boot16():
    return booted(physmem="16M")


def small(size: int = MIB, excluded=((RAM + 64 * PAGE_SIZE, RAM + 80 * PAGE_SIZE),)) -> PhysAllocator:
    """An allocator over a stand-alone RAM region (no machine), pages 64..79 excluded."""
    phys = PhysicalMemory()
    phys.add_ram(RAM, size)
    return PhysAllocator(phys, RAM, RAM + size, excluded)


# ---------------------------------------------------------------------------------------------
# after a real boot


@pytest.mark.parametrize("physmem", [None, "16M"])
def test_counts_after_boot_match_the_handover(physmem):
    result = booted(physmem=physmem)
    h, layout = result.handoff, result.prepared.layout
    pages = PhysAllocator.for_machine(result.machine, h)
    ram_end = layout.ram_base + layout.ram_size
    # virt: the kernel loads at the start of RAM, so nothing below it is free or reserved.
    assert h.physaddr == layout.ram_base
    assert pages.v_page_count == (ram_end - h.first_free_pa) // PAGE_SIZE
    assert pages.free_count == pages.v_page_count
    full = run(prepare(BootRequest(console=None, loader_conf=None, physmem=f"{layout.ram_size >> 20}M")))
    assert pages.v_page_count * PAGE_SIZE == full.memory.avail     # what the banner prints
    assert pages.free_ranges() == [(h.first_free_pa, ram_end)]
    # The kernel, its metadata and the boot page tables are not free.
    for pa in (h.physaddr, h.kern_pt1, h.kern_pt2tab, h.pt2pg_pa, h.first_free_pa - PAGE_SIZE):
        assert not pages.is_free(pa)
    assert pages.is_free(h.first_free_pa)


def test_linux_abi_keeps_the_dtb_reserved():
    result = booted(physmem="64M", abi="linux")
    h = result.handoff
    pages = PhysAllocator.for_machine(result.machine, h)
    assert h.abi == 2 and h.dtbp
    assert not pages.is_free(h.dtbp)
    assert pages.v_page_count == (RAM + 64 * MIB - h.first_free_pa) // PAGE_SIZE - 1
    taken = set(pages.alloc(pages.free_count, zero=False))
    assert h.dtbp not in taken


def test_alloc_is_lowest_first_and_zeroes_guest_ram(boot16):
    h, machine = boot16.handoff, boot16.machine
    pages = PhysAllocator.for_machine(machine, h)
    first = pages.alloc_page()
    assert first == h.first_free_pa
    assert pages.alloc(3) == [first + PAGE_SIZE * i for i in (1, 2, 3)]
    assert pages.free_count == pages.v_page_count - 4 and pages.allocated_count == 4
    machine.phys.write(first, b"\xa5" * PAGE_SIZE)
    pages.free(first)
    assert pages.alloc_page(zero=False) == first
    assert machine.phys.read(first, PAGE_SIZE) == b"\xa5" * PAGE_SIZE     # zero=False leaves it
    pages.free(first)
    assert pages.alloc_page() == first
    assert machine.phys.read(first, PAGE_SIZE) == bytes(PAGE_SIZE)        # zero=True cleared it
    # What the CPU sees is what the allocator wrote (the same host memory).
    assert bytes(machine.uc.mem_read(first, 16)) == bytes(16)


def test_noncontiguous_alloc_fills_holes_in_address_order():
    pages = small()
    got = pages.alloc(10, zero=False)
    assert got == [RAM + PAGE_SIZE * i for i in range(10)]
    pages.free(RAM + 2 * PAGE_SIZE, 2)
    pages.free(RAM + 7 * PAGE_SIZE)
    assert pages.alloc(5, zero=False) == [RAM + PAGE_SIZE * i for i in (2, 3, 7, 10, 11)]
    # The excluded pages 64..79 are skipped.
    rest = pages.alloc(60, zero=False)
    assert rest[-8:] == [RAM + PAGE_SIZE * i for i in range(80, 88)]


def test_contiguous_alloc_skips_short_runs_and_honours_alignment():
    pages = small()
    pages.alloc(1, zero=False)                                  # page 0 taken
    assert pages.alloc(4, contiguous=True, zero=False)[0] == RAM + PAGE_SIZE
    l1 = pages.alloc(4, contiguous=True, zero=False, alignment=16 * 1024)
    assert l1 == [RAM + PAGE_SIZE * i for i in range(8, 12)]    # 16 KiB aligned, as an L1 table needs
    assert pages.is_free(RAM + 5 * PAGE_SIZE)                   # the gap below stays free
    # A run longer than any free stretch below the excluded range lands above it.
    big = pages.alloc(60, contiguous=True, zero=False)
    assert big[0] == RAM + 80 * PAGE_SIZE
    with pytest.raises(ValueError):
        pages.alloc(1, contiguous=True, alignment=3 * PAGE_SIZE)


def test_exhaustion_raises_and_takes_nothing():
    pages = small()
    total = pages.free_count
    assert total == 256 - 16
    with pytest.raises(OutOfPages):
        pages.alloc(total + 1)
    assert pages.free_count == total
    pages.alloc(total, zero=False)
    assert pages.free_count == 0
    with pytest.raises(OutOfPages, match="1 pages requested, 0 free"):
        pages.alloc_page()
    # Fragmented: enough pages free, but no run long enough.
    pages.free(RAM + PAGE_SIZE)
    pages.free(RAM + 3 * PAGE_SIZE)
    with pytest.raises(OutOfPages, match="2 contiguous pages"):
        pages.alloc(2, contiguous=True)
    assert pages.free_count == 2
    assert pages.alloc(2, zero=False) == [RAM + PAGE_SIZE, RAM + 3 * PAGE_SIZE]


def test_bad_frees_are_refused():
    pages = small()
    pa = pages.alloc_page(zero=False)
    pages.free(pa)
    with pytest.raises(ValueError, match="is free"):
        pages.free(pa)                                          # double free
    pages.alloc(64, zero=False)
    with pytest.raises(ValueError, match="reserved"):
        pages.free(RAM + 63 * PAGE_SIZE, 2)                     # runs into an excluded page
    assert not pages.is_free(RAM + 63 * PAGE_SIZE)              # and nothing was freed
    with pytest.raises(ValueError, match="outside RAM"):
        pages.free(RAM + MIB)
    with pytest.raises(ValueError, match="page-aligned"):
        pages.free(RAM + 1)


def test_ram_below_the_kernel_is_free_unless_reserved():
    phys = PhysicalMemory()
    phys.add_ram(RAM, 8 * MIB)
    pages = PhysAllocator(phys, RAM, RAM + 8 * MIB,
                          [(RAM + 2 * MIB, RAM + 4 * MIB), (RAM, RAM + 0x1800)])   # kernel; 1.5 pages reserved
    assert pages.v_page_count == (8 - 2) * MIB // PAGE_SIZE - 2
    assert pages.alloc_page(zero=False) == RAM + 2 * PAGE_SIZE


def test_a_million_pages_cost_no_python_object_each():
    phys = PhysicalMemory()
    phys.add_ram(RAM, 3 << 30)                                  # the largest virt board: 786432 pages
    pages = PhysAllocator(phys, RAM, RAM + (3 << 30), [(RAM, RAM + 2 * MIB)])
    assert pages.v_page_count == 786432 - 512
    got = pages.alloc(200_000, zero=False)
    for pa in got[::2]:
        pages.free(pa)
    run_pa = pages.alloc(100_000, contiguous=True, zero=False)[0]
    assert run_pa == got[-1] + PAGE_SIZE
    assert pages.alloc(100_000, zero=False) == got[::2]


# ---------------------------------------------------------------------------------------------
# property: no page is ever handed out twice

ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(1, 40), st.booleans()),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.integers(1, 8)),
), max_size=60)


@settings(max_examples=150, deadline=None, database=None)
@given(ops=ops)
def test_no_page_is_handed_out_twice(ops):
    pages = small(size=128 * PAGE_SIZE)
    usable = {RAM + PAGE_SIZE * i for i in range(128) if not 64 <= i < 80}
    held: set[int] = set()
    for op in ops:
        if op[0] == "alloc":
            _, n, contiguous = op
            free = sorted(usable - held)
            try:
                got = pages.alloc(n, contiguous=contiguous, zero=False)
            except OutOfPages:
                assert n > len(free) or contiguous
                continue
            assert len(got) == n and len(set(got)) == n
            assert not set(got) & held, "a page was handed out twice"
            assert set(got) <= usable
            if not contiguous:
                assert got == free[:n]                          # lowest addresses first
            else:
                assert got == list(range(got[0], got[0] + n * PAGE_SIZE, PAGE_SIZE))
            held |= set(got)
        elif held:
            _, k, n = op
            ordered = sorted(held)
            pa = ordered[k % len(ordered)]
            run_pages = [pa + PAGE_SIZE * i for i in range(n)]
            if all(p in held for p in run_pages):
                pages.free(pa, n)
                held -= set(run_pages)
            else:
                with pytest.raises(ValueError):
                    pages.free(pa, n)
        assert pages.free_count == len(usable) - len(held)
        assert pages.v_page_count == len(usable)
