"""The reference scenarios of the kernel tuning model, booted for real (issue 3, md(4) ARM options).

The board is `virt` with 2 GiB of RAM, a ~9 MiB kernel and a 200 MiB md_image. The tests assert
what the formulas give and that each diagnosis's suggested value really boots; they do not wish for
an outcome the arithmetic does not produce.
"""

from __future__ import annotations

import pytest

from kernel_sim.guest.abi import MIB, PAGE_SIZE

FIT = ["LOCORE_MAP_MB=256", "NKPT2PG=64"]   # windows large enough for kernel + 200 MiB image


@pytest.fixture(scope="module")
def image200(tmp_path_factory):
    path = tmp_path_factory.mktemp("md") / "root-200M.img"
    with path.open("wb") as f:
        f.truncate(200 * MIB)
    return path


def boot2g(boot, image, loader_conf=None, overrides=(), **kw):
    return boot(physmem="2G", kernel_footprint="9M", mfsroot=image, loader_conf=loader_conf,
                overrides=[*FIT, *overrides], **kw)


def test_defaults_fail_at_the_locore_window(boot, image200):
    result = boot(physmem="2G", kernel_footprint="9M", mfsroot=image200)
    assert result.exit_code == 1 and result.diagnosis.option == "LOCORE_MAP_MB"
    assert result.diagnosis.suggested == 210


def test_scale_5_boots_to_userland(boot, image200, loader_conf):
    result = boot2g(boot, image200, loader_conf('debug.init_procs="100"\n'), ["VM_KMEM_SIZE_SCALE=5"])
    text = result.console.decode()
    assert result.exit_code == 0, result.message
    assert "start_init: trying /sbin/init (pid 1" in text and "init: started 100 of 100 processes" in text
    kmem = result.startup.kmem
    # v_page_count / 5 pages of KVA: the formula, computed here by hand
    assert kmem.vm_kmem_size == kmem.v_page_count // 5 * PAGE_SIZE
    assert len(result.startup.procs.procs) == 102        # proc0, init, 100 children
    # every kernel stack is real: mapped in the guest's tables below an unmapped guard page
    child = result.startup.procs.procs[2].threads[0]
    assert result.startup.pmap.kextract(child.kstack) == child.pages[0]
    assert result.startup.pmap.kextract(child.kstack - PAGE_SIZE) is None


def test_scale_3_against_5_figures(boot, image200):
    """The arithmetic: scale 3 asks for v_page_count/3 pages (~613 MiB), which VM_KMEM_SIZE_MAX caps to
    40% of the kernel map; scale 5 gives v_page_count/5 pages. Both layouts fit on this board, and
    scale 3 leaves far less KVA for kernel stacks."""
    three = boot2g(boot, image200, overrides=["VM_KMEM_SIZE_SCALE=3"]).startup
    five = boot2g(boot, image200, overrides=["VM_KMEM_SIZE_SCALE=5"]).startup
    kmap = 0xFFE00000 - 0xC0000000
    cap = ((kmap + 1) * 2 // 5 + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
    assert three.kmem.v_page_count // 3 * PAGE_SIZE > cap
    assert three.kmem.vm_kmem_size == cap
    assert five.kmem.vm_kmem_size == five.kmem.v_page_count // 5 * PAGE_SIZE
    assert three.kva.ok and five.kva.ok
    assert five.kva.kva_remaining - three.kva.kva_remaining == pytest.approx(
        cap - five.kmem.vm_kmem_size, abs=2 * MIB)


def test_overallocated_kmem_starves_kernel_stacks(boot, image200, loader_conf):
    over = boot2g(boot, image200, loader_conf('vm.kmem_size="420M"\ndebug.init_procs="2000"\n'))
    text = over.console.decode()
    assert over.exit_code == 1 and over.stage == "init"
    assert "vm_thread_new: kstack allocation failed" in text
    assert "init: cannot allocate kernel stack for process" in text
    assert "---<<BOOT>>---" in text                           # the kernel itself booted
    assert over.diagnosis.option == "vm.kmem_size"
    assert "kmem arena 420.0 MiB" in over.message
    fixed = boot2g(boot, image200, loader_conf(f'vm.kmem_size="{over.diagnosis.suggested // MIB}M"\n'
                                                'debug.init_procs="2000"\n'))
    assert fixed.exit_code == 0, fixed.message


def test_small_kmem_fails_only_under_load(boot, image200, loader_conf):
    quiet = boot2g(boot, image200, overrides=["VM_KMEM_SIZE_SCALE=8"])
    assert quiet.exit_code == 0
    loaded = boot2g(boot, image200, loader_conf('debug.kmem_stress="300M"\n'), ["VM_KMEM_SIZE_SCALE=8"])
    assert loaded.exit_code == 1 and loaded.stage == "kmem_stress"
    assert loaded.message.startswith("kmem arena exhausted: ")
    assert loaded.startup.virtual_seconds > 1.0              # after some virtual time, not at boot
    assert "of virtual time" in loaded.message and "temp" in loaded.message
    scale = loaded.diagnosis.suggested
    ok = boot2g(boot, image200, loader_conf('debug.kmem_stress="300M"\n'), [f"VM_KMEM_SIZE_SCALE={scale}"])
    assert ok.exit_code == 0, ok.message


def test_kmem_too_large_for_the_kernel_map_panics_in_vm_ksubmap_init(boot, image200, loader_conf):
    result = boot2g(boot, image200, loader_conf('vm.kmem_size="600M"\n'))
    assert result.exit_code == 1 and result.stage == "vm_ksubmap_init"
    assert "panic: kmem_suballoc: bad status return of 3" in result.console.decode()
    assert result.diagnosis.option == "vm.kmem_size"
    fixed = boot2g(boot, image200, loader_conf(f'vm.kmem_size="{result.diagnosis.suggested // MIB}M"\n'))
    assert fixed.exit_code == 0, fixed.message


def test_sysctls_from_the_monitor(capsys):
    from tools.cli import main

    code = main(["boot", "--console", "/dev/null", "-x",
                 "sysctl vm.kmem_size vm.kvm_size vm.kvm_free hw.physmem vm.stats.vm.v_page_count "
                 "vm.pmap.nkpt2pg vm.kmem_size_scale vm.kmem_map_size vm.kmem_map_free"])
    out = capsys.readouterr().out
    assert code == 0
    values = dict(line.split(": ") for line in out.strip().splitlines())
    assert int(values["vm.pmap.nkpt2pg"]) == 32 and int(values["vm.kmem_size_scale"]) == 3
    assert int(values["vm.kmem_size"]) == int(values["vm.stats.vm.v_page_count"]) // 3 * PAGE_SIZE
    assert int(values["vm.kvm_size"]) == 0xFFE00000 - 0xC0000000
