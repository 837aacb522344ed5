"""The boot path end to end: the default boot, and each tuning option failing and passing."""

from __future__ import annotations

from pathlib import Path

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

    data = bytearray(Path(guest_image().elf_path).read_bytes())
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
    embedded = result.prepared.layout.embedded_md
    va, size = embedded.va, embedded.size
    assert embedded.section == "oldmfs" and Path(embedded.image) == image and embedded.image_size == 4096
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
    with pytest.raises(InputError) as err:
        boot_mod.prepare(boot_mod.BootRequest(kernconf=conf))
    # embed_mfs.sh's failure, at the MD_ROOT_SIZE line, with both sizes and the size that fits
    assert err.value.where == f"{conf}:3"
    assert err.value.message.startswith("MFS image too large: ")
    assert "8192 bytes" in err.value.message and "MD_ROOT_SIZE=4 reserves 4096 bytes" in err.value.message
    assert "MD_ROOT_SIZE=8 or more" in err.value.message


def _padded_root(tmp_path, size: int):
    """The default UFS root image, grown (sparse) to `size`: a root md0 mounts, of a size that matters."""
    import shutil

    from kernel_sim.boot import IMAGES

    path = tmp_path / f"root-{size >> 20}M.img"
    shutil.copyfile(Path(IMAGES, "rootfs.img"), path)
    with path.open("r+b") as f:
        f.truncate(size)
    return path


def _embedding_kernconf(tmp_path, image, md_root_size_kb: int | None = None):
    from kernel_sim.boot import DEFAULT_KERNCONF

    conf = tmp_path / "MDROOT"
    size_line = f"options MD_ROOT_SIZE={md_root_size_kb}\n" if md_root_size_kb else ""
    conf.write_text(f'include "{DEFAULT_KERNCONF}"\nident MDROOT\noptions MD_ROOT\n{size_line}'
                    f"makeoptions MFS_IMAGE={image}\n")
    return conf


def test_mfs_image_without_md_root_size_grows_the_kernel_past_the_locore_window(boot, tmp_path):
    """The forum report "Kernel fails to boot when kernel size greater than 64Mbytes": MD_ROOT with an
    MFS_IMAGE and no MD_ROOT_SIZE links the image into the kernel, which outgrows LOCORE_MAP_MB=64."""
    from kernel_sim import boot as boot_mod
    from kernel_sim.plan import plan_boot

    image = _padded_root(tmp_path, 60 * M + 4096 * 3 + 100)
    conf = _embedding_kernconf(tmp_path, image)
    failed = boot(kernconf=conf, kernel_footprint="9M")
    layout = failed.prepared.layout
    assert layout.kernel_size == 9 * M + image.stat().st_size      # the image itself, no rounding
    assert failed.exit_code == 1 and failed.stage == "initarm"
    text = failed.message
    assert f"MFS_IMAGE {image} ({image.stat().st_size} bytes)" in text and "section mfs" in text
    assert f"{conf}:4" in text
    need = failed.diagnosis.suggested
    assert failed.diagnosis.option == "LOCORE_MAP_MB" and need == 70 and "LOCORE_MAP_MB=70 or larger" in text
    plan = plan_boot(boot_mod.prepare(boot_mod.BootRequest(kernconf=conf, kernel_footprint="9M", loader_conf=None)))
    assert (plan.exit_code, plan.stage, plan.min_locore_map_mb) == (1, "initarm", need)

    ok = boot(kernconf=conf, kernel_footprint="9M", overrides=[f"LOCORE_MAP_MB={need}"])
    console = ok.console.decode()
    embedded = ok.prepared.layout.embedded_md
    assert f"md0: Embedded image {image.stat().st_size} bytes at 0x{embedded.va:08x}" in console
    assert "Trying to mount root from ufs:/dev/md0" in console
    assert ok.exit_code == 0, ok.message
    assert ok.machine.phys.read(ok.prepared.layout.pa(embedded.va), 4096) == image.read_bytes()[:4096]
    plan = plan_boot(ok.prepared)
    assert (plan.exit_code, plan.stage) == (0, "mi_startup")
    tables = boot(kernconf=conf, kernel_footprint="9M", overrides=[f"LOCORE_MAP_MB={need}", "NKPT2PG=16"])
    assert tables.stage == "pmap_bootstrap" and f"MFS_IMAGE {image}" in tables.message
    assert "NKPT2PG=18 or larger" in tables.message


def test_md_root_size_embeds_the_whole_array_and_names_it(boot, tmp_path):
    from kernel_sim.plan import plan_boot

    image = _padded_root(tmp_path, 20 * M)
    conf = _embedding_kernconf(tmp_path, image, md_root_size_kb=60 * 1024)
    failed = boot(kernconf=conf, kernel_footprint="9M")
    assert failed.prepared.layout.kernel_size == 9 * M + 60 * M     # the array, not the 20 MiB image
    assert failed.exit_code == 1 and failed.stage == "initarm"
    assert "MD_ROOT_SIZE=61440" in failed.message and "section oldmfs" in failed.message
    assert f"holding MFS_IMAGE {image} ({20 * M} bytes)" in failed.message
    assert failed.diagnosis.suggested == plan_boot(failed.prepared).min_locore_map_mb == 70
    ok = boot(kernconf=conf, kernel_footprint="9M", overrides=["LOCORE_MAP_MB=70"])
    assert f"md0: Embedded image {60 * M} bytes at" in ok.console.decode()
    assert ok.exit_code == 0, ok.message
