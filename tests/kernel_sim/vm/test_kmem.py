"""kmeminit's arithmetic (sys/kern/kern_malloc.c, arm defaults from sys/arm/include/vmparam.h).

Expected values are worked out here from FreeBSD's formula, not taken from the code under test:
  vm_kmem_size = min(max(v_page_count / scale * PAGE_SIZE, MIN), MAX), then at most
  2 * v_page_count * PAGE_SIZE, then round_page; MAX on arm = (kernel map size + 1) * 2 / 5.
"""

from __future__ import annotations

import pytest

from kernel_sim.errors import InputError
from kernel_sim.vm.kmem import TUNE_PANIC, kmem_size_for_scale, kmeminit, parse_tunable

MIB = 1 << 20
KMAP = 0xFFE0_0000 - 0xC000_0000          # default board: vm_max_kernel_address 0xFFE00000
MAX_DEFAULT = (KMAP + 1) * 2 // 5           # = 2143289346 // 5 = 428657869 (not page aligned)
VPC_2G = 470463                             # pages left of 2 GiB after a ~210 MiB kernel + image
PHYS_2G = VPC_2G * 4096


def run(**kw):
    args = {"v_page_count": VPC_2G, "physmem": PHYS_2G, "kernel_map_size": KMAP}
    args.update(kw)
    return kmeminit(**args)


def test_default_scale_3_is_capped_to_40_percent_of_the_kernel_map():
    # 470463 / 3 = 156821 pages; 156821 * 4096 = 642338816 > MAX 428657869 -> MAX;
    # round_page(428657869) = 428658688 (0x198CD000).
    r = run()
    assert MAX_DEFAULT == 428657869
    assert r.scaled_pages == 156821 and r.scaled == 642338816
    assert r.capped_to_max and not r.raised_to_min and not r.capped_to_2x and not r.overflowed
    assert r.before_round == 428657869
    assert r.vm_kmem_size == 428658688
    assert r.scale.value == 3 and r.scale.source.startswith("default")
    assert r.size_min.value == 12 * MIB and r.size_max.value == MAX_DEFAULT
    steps = "\n".join(r.steps())
    assert "470463 / 3 * 4096 = 156821 * 4096 = 642338816" in steps
    assert "capped to MAX 428657869" in steps and "round_page(428657869) = 428658688" in steps


def test_scale_5_from_the_option_is_not_capped():
    # 470463 / 5 = 94092 pages; 94092 * 4096 = 385400832 (367.5 MiB) < MAX, > MIN, page aligned.
    r = run(options={"VM_KMEM_SIZE_SCALE": 5})
    assert r.vm_kmem_size == 94092 * 4096 == 385400832
    assert not r.capped_to_max
    assert r.scale.source == "options VM_KMEM_SIZE_SCALE"


def test_tunable_scale_overrides_the_option():
    # 470463 / 6 = 78410 pages -> 321167360.
    r = run(options={"VM_KMEM_SIZE_SCALE": 5}, tunables={"vm.kmem_size_scale": "6"})
    assert r.vm_kmem_size == 78410 * 4096
    assert r.scale.source == "tunable vm.kmem_size_scale" and r.scale.where == "vm.kmem_size_scale"


def test_fixed_size_precedence_tunable_over_option():
    r = run(options={"VM_KMEM_SIZE": 200 * MIB})
    assert r.vm_kmem_size == 200 * MIB and r.fixed.source == "options VM_KMEM_SIZE" and not r.from_scale
    r = run(options={"VM_KMEM_SIZE": 200 * MIB}, tunables={"vm.kmem_size": "300M"})
    assert r.vm_kmem_size == 300 * MIB and r.fixed.source == "tunable vm.kmem_size"
    assert r.scaled is None
    # A fixed size skips MIN and MAX: 500M stays above the 40% cap.
    assert run(tunables={"vm.kmem_size": "500m"}).vm_kmem_size == 500 * MIB


def test_zero_tunables_mean_unset():
    r = run(options={"VM_KMEM_SIZE_MIN": 16 * MIB}, tunables={"vm.kmem_size": "0", "vm.kmem_size_min": 0})
    assert r.size_min.value == 16 * MIB and r.size_min.source == "options VM_KMEM_SIZE_MIN"
    assert r.from_scale


def test_max_tunable_over_option_over_default():
    assert run(options={"VM_KMEM_SIZE_MAX": 300 * MIB}).vm_kmem_size == 300 * MIB
    r = run(options={"VM_KMEM_SIZE_MAX": 300 * MIB}, tunables={"vm.kmem_size_max": "0x10000000"})
    assert r.vm_kmem_size == 256 * MIB and r.size_max.source == "tunable vm.kmem_size_max"


def test_small_memory_is_raised_to_min():
    # 32 MiB: 8192 / 3 = 2730 pages = 11182080 < 12 MiB -> 12582912; 12582912/2/4096 = 1536 <= 8192.
    r = kmeminit(v_page_count=8192, physmem=32 * MIB, kernel_map_size=KMAP)
    assert r.raised_to_min and r.vm_kmem_size == 12 * MIB
    assert r.kmem_zmax_page       # 8192 <= 32768 pages: kmem_zmax = PAGE_SIZE


def test_twice_the_page_count_cap():
    # vm.kmem_size 100M on 8192 pages: 104857600 / 2 / 4096 = 12800 > 8192 -> 2 * 8192 * 4096 = 64 MiB.
    r = kmeminit(v_page_count=8192, physmem=32 * MIB, kernel_map_size=KMAP, tunables={"vm.kmem_size": "100M"})
    assert r.capped_to_2x and r.cap2x == 64 * MIB and r.vm_kmem_size == 64 * MIB


def test_32_bit_overflow_takes_max():
    # 4 GiB of pages with scale 1: 1048576 * 4096 wraps to 0 < 1048576, so the source takes MAX.
    r = kmeminit(v_page_count=1 << 20, physmem=1 << 32, kernel_map_size=KMAP, tunables={"vm.kmem_size_scale": 1})
    assert r.overflowed and r.vm_kmem_size == 428658688


def test_size_zero_panics_as_freebsd():
    # No minimum and a scale larger than the page count: 8192 / 10000 = 0 -> "Tune VM_KMEM_SIZE_*".
    r = kmeminit(v_page_count=8192, physmem=32 * MIB, kernel_map_size=KMAP,
                 options={"VM_KMEM_SIZE_MIN": 0}, tunables={"vm.kmem_size_scale": 10000})
    assert r.panic == TUNE_PANIC and r.vm_kmem_size == 0


def test_scale_below_one_tunable_is_an_error_or_the_freebsd_fallback():
    with pytest.raises(InputError) as e:
        run(tunables={"vm.kmem_size_scale": "0"})
    assert e.value.where == "vm.kmem_size_scale"
    r = run(options={"VM_KMEM_SIZE_SCALE": 5}, tunables={"vm.kmem_size_scale": "0"}, strict=False)
    assert r.scale.value == 5 and r.notes


@pytest.mark.parametrize(("options", "tunables", "where"), [
    ({"VM_KMEM_SIZE_SCALE": 0}, {}, "options VM_KMEM_SIZE_SCALE"),
    ({"VM_KMEM_SIZE_MIN": 500 * MIB}, {"vm.kmem_size_max": "400M"}, "options VM_KMEM_SIZE_MIN"),
    ({}, {"vm.kmem_size_min": "500M"}, "vm.kmem_size_min"),
    ({}, {"vm.kmem_size": "5G"}, "vm.kmem_size"),
    ({}, {"vm.kmem_size_max": "lots"}, "vm.kmem_size_max"),
    ({}, {"vm.kmem_size": "-1"}, "vm.kmem_size"),
    ({"VM_KMEM_SIZE_MAX": 1 << 32}, {}, "options VM_KMEM_SIZE_MAX"),
])
def test_bad_input_names_where(options, tunables, where):
    with pytest.raises(InputError) as e:
        run(options=options, tunables=tunables)
    assert e.value.where == where


def test_bad_machine_inputs():
    with pytest.raises(InputError) as e:
        run(physmem=PHYS_2G + 1)
    assert e.value.where == "hw.physmem"
    with pytest.raises(InputError):
        run(v_page_count=0)


def test_parse_tunable_suffixes():
    assert parse_tunable("12k", "x") == 12 * 1024
    assert parse_tunable("0x10M", "x") == 16 * MIB
    assert parse_tunable("1g", "x") == 1 << 30
    with pytest.raises(InputError):
        parse_tunable("4G", "x")


def test_kmem_size_for_scale_matches_kmeminit():
    base = run()
    for scale in range(1, 12):
        assert kmem_size_for_scale(base, scale) == run(tunables={"vm.kmem_size_scale": scale}).vm_kmem_size
