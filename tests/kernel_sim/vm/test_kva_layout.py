"""The boot KVA layout of FreeBSD 11.3 armv7: order, sizes, failures, and the fixes found by arithmetic.

Reference scenario (md(4), ARM KERNEL OPTIONS): the `virt` board with 2 GiB of RAM at 0x40000000, a
~9 MiB kernel and a 200 MiB md_image, NKPT2PG=60 (240 MiB >= 209 MiB) and LOCORE_MAP_MB large enough.

  kernend           = KERNBASE + 9 MiB + 200 MiB + 8 KiB of metadata = 0xCD102000
  NOALLOC range     = roundup(209 MiB + 8 KiB, 1 MiB) + (4 L1 + 1 PT2TAB + 60 PT2) pages = 210 MiB + 260 KiB
  hw.physmem        = 2048 MiB - 210 MiB - 260 KiB = 1927020544 bytes; v_page_count = 470463 pages
  maxusers          = min(470463 / 512, 384) = 384; maxproc = 20 + 16 * 384 = 6164
  nbuf              = 50 + min((1046528 - 4096) / 64, 1024) + (1046528 - 65536) * 2 / 320 = 7205
                      (physmem_est = min(470463, 0x3FE00000 / 4096 = 261632) pages = 1046528 KiB)
  transient bios    = min((43690 * 16384 - 7205 * 16384) / 131072, 1024) = 1024; nswbuf = 256
  clean map         = 7205 * 16384 + 256 * 131072 + 1024 * 131072 = 285818880 (-> 273 MiB import)
  pv chunks         = max(roundup(200 * 6164 + 470463, 336) / 336, 6164) = 6164 pages (-> 25 MiB import)
  sf_bufs           = 512 + 16 * 384 = 6656 pages = 26 MiB; pipe_map = 0x3FE00000 / 64 = 16744448
  exec_map          = 6 * round_page(1024 + 262144) + 64 pages = 1859584

With VM_KMEM_SIZE_SCALE=5 the kmem arena is 470463 / 5 * 4096 = 385400832 (a 368 MiB import at
0xD1100000) and the last boot reservation (sf_bufs) ends at 0xFC100000: vm.kvm_free = 0xFFE00000 -
0xFC100000 = 61 MiB. With the default scale 3 the arena is capped to 40% of the kernel map,
round_page(428657869) = 428658688 (a 409 MiB import), 41 MiB more, so everything after it ends at
0xFEA00000 and vm.kvm_free = 20 MiB. The formulas therefore say scale 3 still boots this board, with
20 MiB of KVA for kernel stacks and later allocations (about 1700 12-KiB kstacks); md(4) reports
empirically that 5 "works well", which these figures do not contradict. The largest kmem arena with
which every boot reservation fits is 429 MiB (0xFFE00000 - 0xE5100000, the top without the arena).
"""

from __future__ import annotations

import pytest

from kernel_sim.errors import InputError
from kernel_sim.vm.kmem import kmeminit
from kernel_sim.vm.kva_layout import (
    KERNBASE,
    KERNEL_ARENA,
    KERNEL_MAP,
    OUTSIDE,
    PV_CHUNK_PANIC,
    SUBALLOC_PANIC,
    fixes_for,
    layout_kva,
    max_kmem_size,
)

MIB = 1 << 20
PAGE = 4096
RAM_BASE = 0x4000_0000
VM_MAX = 0xFFE0_0000


def scenario(ram_mib: int, image_mib: int, nkpt2pg: int, *, kernel_kib: int = 9 * 1024 + 8, options=None,
             tunables=None):
    kernend = KERNBASE + kernel_kib * 1024 + image_mib * MIB
    noalloc = -(-(kernend - KERNBASE) // MIB) * MIB + (4 + 1 + nkpt2pg) * PAGE
    physmem = ram_mib * MIB - noalloc
    vpc = physmem // PAGE
    kmem = kmeminit(v_page_count=vpc, physmem=physmem, kernel_map_size=VM_MAX - KERNBASE, options=options,
                    tunables=tunables)
    return layout_kva(physmem=physmem, v_page_count=vpc, kernend=kernend, kmem=kmem, nkpt2pg=nkpt2pg,
                      tunables=tunables, ram_end=RAM_BASE + ram_mib * MIB)


def md_scenario(scale=None, tunables=None, options=None):
    opts = dict(options or {})
    if scale is not None:
        opts["VM_KMEM_SIZE_SCALE"] = scale
    return scenario(2048, 200, 60, options=opts, tunables=tunables)


def assert_well_formed(layout):
    inside = sorted((r.start, r.end) for r in layout.rows if r.map != OUTSIDE)
    for (_, e1), (s2, _) in zip(inside, inside[1:], strict=False):
        assert e1 <= s2, "two consumers overlap"
    assert all(s >= KERNBASE and e <= VM_MAX for s, e in inside)
    assert all(r.end <= KERNBASE or r.start >= VM_MAX for r in layout.rows if r.map == OUTSIDE)
    kmap, karena = layout.make_arenas()
    assert kmap.free_total + karena.free_total == layout.kva_remaining


def test_consumers_come_in_freebsd_order():
    layout = md_scenario(5)
    names = [r.consumer for r in layout.rows]
    expected = ["PT2MAP", "kernel, modules and metadata", "pad to 1 MiB", "L1 page table", "PT2TAB",
                "kernel L2 page-table pages", "dpcpu", "IRQ stacks", "abort stacks", "undefined-instruction",
                "thread0 kernel stack", "message buffer", "UMA boot pages", "minidump bitmap",
                "pad for section mapping", "vm_page array", "pv_table", "pv chunks", "kmem arena",
                "zero region", "buffer headers", "buffer arena", "swap buffers", "transient bio arena",
                "exec_map", "pipe_map", "unmapped_buf", "sf_bufs", "device mappings"]
    assert len(names) == len(expected)
    for name, prefix in zip(names, expected, strict=True):
        assert name.startswith(prefix), (name, prefix)
    maps = {r.consumer.split(" (")[0]: r.map for r in layout.rows}
    assert maps["PT2MAP"] == OUTSIDE and maps["device mappings"] == OUTSIDE
    assert maps["kmem arena"] == KERNEL_ARENA and maps["exec_map"] == KERNEL_MAP
    assert layout.row("PT2MAP (L2 tables seen through PT2TAB)").start == KERNBASE - 4 * MIB
    assert_well_formed(layout)


def test_reference_scenario_scale_5():
    layout = md_scenario(5)
    f = layout.figures
    assert layout.ok and layout.panic is None
    assert (f["maxusers"], f["maxproc"], f["nbuf"], f["nswbuf"], f["bio_transient_maxcnt"]) == (384, 6164, 7205,
                                                                                                256, 1024)
    assert f["pv_maxchunks"] == 6164 and f["nsfbufs"] == 6656 and f["maxpipekva"] == 16744448
    assert f["clean_map_size"] == 285818880 and f["exec_map_size"] == 1859584
    kmem = layout.row("kmem arena")
    assert kmem.size == 385400832 and kmem.start == 0xD110_0000
    assert layout.row("pv chunks").size == 6164 * PAGE
    assert layout.kernel_vm_end == 0xFC10_0000
    assert layout.kvm_free == 61 * MIB
    assert layout.kvm_size == VM_MAX - KERNBASE
    assert_well_formed(layout)


def test_reference_scenario_scale_3():
    layout = md_scenario(3)
    assert layout.ok
    assert layout.row("kmem arena").size == 428658688
    assert layout.kernel_vm_end == 0xFEA0_0000 == 0xFC10_0000 + 41 * MIB
    assert layout.kvm_free == 20 * MIB
    assert_well_formed(layout)


def test_largest_kmem_and_an_over_allocated_kmem():
    layout = md_scenario(5)
    assert max_kmem_size(layout) == 429 * MIB == VM_MAX - 0xE510_0000
    # vm.kmem_size = 429M: every boot reservation fits, but nothing is left above the last one, so kernel
    # stacks (3 pages of KVA each) only get the leftovers of kernel_arena's 1 MiB imports.
    full = md_scenario(5, tunables={"vm.kmem_size": "429M"})
    assert full.ok and full.kvm_free == 0 and full.kernel_vm_end == VM_MAX
    kmap, karena = full.make_arenas()
    assert kmap.largest_free_aligned(MIB) == 0
    # The leftovers: 1011712 (pv_table import), 901120 (pv chunk import, less the zero region), 458752
    # (buffer headers import) and 311296 bytes (clean map import, less unmapped_buf): 82 + 73 + 37 + 25 =
    # 217 kernel stacks of 12 KiB, for every kernel thread and process the system will ever run.
    kstacks = sum((e - s) // (3 * PAGE) for s, e in karena.free_segments())
    assert [e - s for s, e in karena.free_segments()] == [1011712, 901120, 458752, 311296]
    assert kstacks == 217
    # One MiB more and the last consumer, the sf_buf KVA, no longer fits: 1 MiB short.
    over = md_scenario(5, tunables={"vm.kmem_size": "430M"})
    assert not over.ok
    assert over.failure.consumer.startswith("sf_bufs") and over.panic == SUBALLOC_PANIC
    assert over.failure.shortfall == MIB
    assert_well_formed(over)


def test_fixes_for_a_kmem_max_too_large():
    # VM_KMEM_SIZE_MAX=500M lets scale 3 give 470463 / 3 * 4096 = 642338816 -> 524288000: the clean map fails.
    layout = md_scenario(3, options={"VM_KMEM_SIZE_MAX": 500 * MIB})
    assert not layout.ok and layout.failure.consumer == "clean map"
    fixes = {f.name: f.value for f in fixes_for(layout)}
    assert fixes["vm.kmem_size"] == 429 * MIB
    # Smallest scale: 470463 / 4 * 4096 = 481751040 > 429 MiB, 470463 / 5 * 4096 = 385400832 <= 429 MiB.
    assert fixes["vm.kmem_size_scale"] == 5 and fixes["options VM_KMEM_SIZE_SCALE"] == 5
    assert fixes["vm.kmem_size_max"] == 429 * MIB
    for name, value in (("vm.kmem_size", "429M"), ("vm.kmem_size_scale", "5"), ("vm.kmem_size_max", "429M")):
        assert md_scenario(3, options={"VM_KMEM_SIZE_MAX": 500 * MIB}, tunables={name: value}).ok
    t = fixes["kern.bio_transient_maxcnt"]
    assert md_scenario(3, options={"VM_KMEM_SIZE_MAX": 500 * MIB},
                       tunables={"kern.bio_transient_maxcnt": t}).ok


def test_clean_default_one_gib_no_modules():
    layout = scenario(1024, 0, 32)
    assert layout.ok
    vpc = layout.inputs.v_page_count
    assert layout.row("kmem arena").size == vpc // 3 * PAGE     # below the 40% cap, above 12 MiB
    assert layout.kvm_free > 300 * MIB
    assert fixes_for(layout) == ()
    assert_well_formed(layout)


def test_pv_chunk_panic_when_the_image_fills_the_kernel_map():
    layout = scenario(2048, 990 - 9, 248, kernel_kib=9 * 1024)
    assert not layout.ok
    assert layout.failure.consumer == "pv chunks" and layout.panic == PV_CHUNK_PANIC
    assert layout.failure.shortfall > 0
    # pv chunks come before the kmem arena and the clean map, which cannot fit either: no single tunable
    # helps, and the message says how far everything together runs past vm_max_kernel_address.
    fixes = {f.name: f for f in fixes_for(layout)}
    assert fixes["kern.maxproc"].value is None
    assert "past vm_max_kernel_address" in fixes["kernel and modules"].text


def test_kernel_and_vm_page_array_past_the_end():
    layout = scenario(2048, 1010 - 9, 254, kernel_kib=9 * 1024)
    assert not layout.ok and layout.panic is None
    assert layout.failure.consumer.startswith("vm_page array")


def test_tunables_change_the_consumers():
    base = md_scenario(5)
    smaller = md_scenario(5, tunables={"kern.nbuf": "1000", "kern.ipc.maxpipekva": "1M", "kern.ipc.nsfbufs": 100})
    assert smaller.figures["nbuf"] == 1000 and smaller.figures["maxpipekva"] == MIB
    assert smaller.row("sf_bufs (nsfbufs=100)").size == 100 * PAGE
    assert smaller.kvm_free > base.kvm_free


def test_bad_inputs():
    good = md_scenario(5)
    inp = good.inputs
    with pytest.raises(InputError):
        layout_kva(physmem=inp.physmem + 1, v_page_count=inp.v_page_count, kernend=inp.kernend, kmem=inp.kmem)
    with pytest.raises(InputError):
        layout_kva(physmem=inp.physmem, v_page_count=inp.v_page_count + 1, kernend=inp.kernend, kmem=inp.kmem)
    with pytest.raises(InputError) as e:
        layout_kva(physmem=inp.physmem, v_page_count=inp.v_page_count, kernend=inp.kernend, kmem=inp.kmem,
                   tunables={"kern.nbuf": "many"})
    assert e.value.where == "kern.nbuf"
