"""The boot path end to end: the default boot, and each tuning option failing and passing."""

from __future__ import annotations

from kernel_sim.guest.abi import KERNBASE, MIB

M = MIB


def test_default_boot_prints_banner_and_halts(boot):
    result = boot()
    text = result.console.decode()
    assert result.exit_code == 0 and result.status == "halted"
    assert "---<<BOOT>>---" in text
    assert "real memory  = 1073741824 (1024 MB)" in text
    assert "avail memory = " in text
    assert "The operating system has halted." in text
    # the early lines come from the guest's own ARM code
    assert text.index("locore: boot_pt1") < text.index("pmap_bootstrap:") < text.index("---<<BOOT>>---")


def test_console_bytes_identical_across_runs(boot, sparse_image):
    image = sparse_image(3 * M)
    first = boot(mfsroot=image, physmem="256M").console
    second = boot(mfsroot=image, physmem="256M").console
    assert first == second


def test_avail_memory_excludes_kernel_modules_and_tables(boot, sparse_image):
    result = boot(mfsroot=sparse_image(20 * M), physmem="512M")
    h = result.handoff
    assert result.memory.real == 512 * M
    assert result.memory.avail == 0x40000000 + 512 * M - h.first_free_pa
    # the boot tables sit after the kernel end rounded up to 1 MiB: L1 (4 pages), PT2TAB, NKPT2PG pages
    first_table = h.kern_pt1
    assert first_table % M == 0 and first_table >= h.kernend - 0x80000000
    assert h.first_free_pa == first_table + (4 + 1 + 32) * 4096


def test_locore_window_too_small_fails_in_initarm_with_diagnosis(boot, sparse_image):
    result = boot(kernel_footprint="9M", mfsroot=sparse_image(60 * M))
    assert result.exit_code == 1
    assert result.stage == "initarm"
    assert result.diagnosis.option == "LOCORE_MAP_MB"
    need = result.diagnosis.suggested
    assert need == -(-(result.prepared.layout.kernend - KERNBASE) // M) == 70
    assert "Fatal kernel mode data abort" in result.console.decode()
    assert "LOCORE_MAP_MB=64" in result.message and f"LOCORE_MAP_MB={need}" in result.message
    assert "parse_metadata" in result.message          # the PC's symbol from the ELF


def test_locore_window_just_large_enough_boots(boot, sparse_image):
    image = sparse_image(60 * M)
    assert boot(kernel_footprint="9M", mfsroot=image, overrides=["LOCORE_MAP_MB=70"]).exit_code == 0
    assert boot(kernel_footprint="9M", mfsroot=image, overrides=["LOCORE_MAP_MB=69"]).exit_code == 1


def test_locore_window_over_ram_reads_zeros_and_is_diagnosed(boot, sparse_image):
    """With 3 GiB the identity map lands in RAM: no abort, but the metadata reads back empty."""
    result = boot(kernel_footprint="9M", mfsroot=sparse_image(60 * M), physmem="3G")
    assert result.exit_code == 1 and result.stage == "initarm"
    assert result.diagnosis.option == "LOCORE_MAP_MB" and result.diagnosis.suggested == 70
    assert "using fake metadata" in result.console.decode()


def test_nkpt2pg_too_small_panics_and_enough_boots(boot, sparse_image):
    image = sparse_image(60 * M)
    small = boot(kernel_footprint="9M", mfsroot=image, overrides=["LOCORE_MAP_MB=70", "NKPT2PG=17"])
    assert small.exit_code == 1 and small.stage == "pmap_bootstrap"
    assert "panic: pmap_preboot_pt2pg_setup: NKPT2PG too small" in small.console.decode()
    assert small.diagnosis.option == "NKPT2PG" and small.diagnosis.suggested == 18
    enough = boot(kernel_footprint="9M", mfsroot=image, overrides=["LOCORE_MAP_MB=70", "NKPT2PG=18"])
    assert enough.exit_code == 0


def test_without_invariants_missing_pt2_pages_are_allocated(boot, sparse_image):
    result = boot(kernel_footprint="9M", mfsroot=sparse_image(60 * M),
                  overrides=["LOCORE_MAP_MB=70", "NKPT2PG=17", "INVARIANTS=0"])
    assert result.exit_code == 0
    assert result.handoff.extra_pt2pg == 1


def test_32_pt2_pages_cover_exactly_128_mib(boot):
    # No modules: the environment and the metadata take one page each after the footprint.
    exact = boot(kernel_footprint=str(128 * M - 8192), overrides=["LOCORE_MAP_MB=129"])
    assert exact.prepared.layout.kernend == KERNBASE + 128 * M
    assert exact.exit_code == 0 and exact.handoff.nkpt2pg == 32
    over = boot(kernel_footprint=str(128 * M - 8192 + 1), overrides=["LOCORE_MAP_MB=129"])
    assert over.prepared.layout.kernend == KERNBASE + 128 * M + 4096
    assert over.exit_code == 1 and over.diagnosis.option == "NKPT2PG" and over.diagnosis.suggested == 33


def test_wild_access_is_reported_by_the_guests_own_vector(boot, loader_conf):
    result = boot(loader_conf=loader_conf('debug.wild_access="0x12345678"\n'))
    text = result.console.decode()
    assert result.exit_code == 1
    assert "Fatal kernel mode data abort: 'Translation Fault (L1)' on read" in text
    assert "FSR=00000005, FAR=12345678" in text
    assert result.stage == "initarm"
    fault = result.machine.faults[-1]
    assert fault.vector == "data abort" and fault.address == 0x12345678


def test_stop_at_handover_and_at_a_symbol(boot):
    handover = boot(stop_at="handover")
    assert handover.exit_code == 0 and handover.status == "stopped"
    assert "---<<BOOT>>---" not in handover.console.decode()
    at_pmap = boot(stop_at="pmap_bootstrap")
    assert at_pmap.status == "stopped" and at_pmap.machine.pc == at_pmap.prepared.image.symbols["pmap_bootstrap"]
    assert "pmap_bootstrap:" not in at_pmap.console.decode()


def test_linux_abi_uses_fake_metadata_with_the_dtb(boot):
    result = boot(abi="linux", loader_conf=None)
    text = result.console.decode()
    assert result.exit_code == 0
    assert "initarm: Linux boot ABI, DTB at 0x48000000; using fake metadata" in text
    assert result.handoff.dtbp == 0x48000000


def test_python_mmu_gives_the_same_console_bytes(boot, sparse_image, loader_conf):
    """Unicorn's TLB fills answered by the MMU simulator: the same boot, fill by fill."""
    image = sparse_image(60 * M)
    cases = [
        {},
        {"kernel_footprint": "9M", "mfsroot": image},                                  # external abort
        {"kernel_footprint": "9M", "mfsroot": image, "physmem": "3G"},                 # zeros via identity
        {"kernel_footprint": "9M", "mfsroot": image, "overrides": ["LOCORE_MAP_MB=70", "NKPT2PG=17"]},
        {"loader_conf": loader_conf('debug.wild_access="0x12345678"\n')},              # translation fault
    ]
    for case in cases:
        ours = boot(mmu="python", **case)
        reference = boot(**case)
        assert ours.console == reference.console, case
        assert ours.exit_code == reference.exit_code
        assert ours.machine.tlb_fills > 0 and reference.machine.tlb_fills == 0


def test_boot_tables_beyond_ram_name_the_physmem_that_fits(boot):
    small = boot(physmem="16M", kernel_footprint="15M")
    assert small.exit_code == 1 and small.stage == "pmap_bootstrap"
    assert small.diagnosis.option == "physmem" and small.diagnosis.suggested == 17
    assert boot(physmem="17M", kernel_footprint="15M").exit_code == 0


def test_footprint_from_a_real_kernel_elf(boot, tmp_path):
    """The PT_LOAD segments of an ELF give the footprint: here the guest's own, grown by a big .bss."""
    import struct

    from kernel_sim.guest.build import guest_image

    data = bytearray(guest_image().elf_path.read_bytes())
    phoff, phentsize, phnum = struct.unpack_from("<I", data, 28)[0], *struct.unpack_from("<HH", data, 42)
    last = max(i for i in range(phnum) if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 1)
    off = phoff + last * phentsize
    vaddr = struct.unpack_from("<I", data, off + 8)[0]
    struct.pack_into("<I", data, off + 20, 0xC0000000 + 12 * M - vaddr)   # memsz up to 12 MiB
    real = tmp_path / "kernel.real"
    real.write_bytes(bytes(data))
    result = boot(kernel_footprint=str(real))
    assert result.prepared.layout.kernel_size == 12 * M
    assert result.exit_code == 0


def test_md_root_embedded_image_is_written_into_the_kernel(boot, tmp_path):
    image = tmp_path / "mfs.img"
    image.write_bytes(b"UFS!" + bytes(4092))
    conf = tmp_path / "KERNCONF"
    conf.write_text(f"ident MDROOT\noptions MD_ROOT\noptions MD_ROOT_SIZE=64\nmakeoptions MFS_IMAGE={image}\n")
    result = boot(kernconf=conf)
    va, size = result.prepared.layout.embedded_md
    text = result.console.decode()
    assert f"md0: Embedded image 65536 bytes at 0x{va:08x}" in text
    # MD_ROOT mounts ufs:/dev/md0, and "UFS!" is no file system: the mountroot panic, as FreeBSD
    assert "Mounting from ufs:/dev/md0 failed with error 22." in text
    assert result.exit_code == 1 and result.stage == "mountroot"
    assert size == 64 * 1024
    assert result.machine.phys.read(result.prepared.layout.pa(va), 4) == b"UFS!"
    assert result.prepared.layout.kernel_end_va == va + size


def test_mfs_image_larger_than_md_root_size_is_an_input_error(tmp_path):
    import pytest

    from kernel_sim import boot as boot_mod
    from kernel_sim.errors import InputError

    image = tmp_path / "mfs.img"
    image.write_bytes(bytes(8192))
    conf = tmp_path / "KERNCONF"
    conf.write_text(f"ident MDROOT\noptions MD_ROOT\noptions MD_ROOT_SIZE=4\nmakeoptions MFS_IMAGE={image}\n")
    with pytest.raises(InputError, match="larger than MD_ROOT_SIZE"):
        boot_mod.prepare(boot_mod.BootRequest(kernconf=conf))
