"""The same guest ELF on qemu-system-arm prints the same early console lines as on armboard."""

from __future__ import annotations

import subprocess

import pytest

from kernel_sim import boot as boot_mod
from kernel_sim.guest.qemu import qemu_binary, qemu_virt_command
from kernel_sim.loader.load import write_configured_elf

pytestmark = pytest.mark.interop
QEMU = qemu_binary()


def run_qemu(elf) -> subprocess.CompletedProcess:
    """The guest on QEMU's virt board, as its -kernel loads an ELF, with semihosting for the exit."""
    return subprocess.run(qemu_virt_command(elf, mem_mb=256), capture_output=True, timeout=60)


def early_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("initarm: hand-over"))
    return lines[:end + 1]


@pytest.mark.skipif(QEMU is None, reason="qemu-system-arm is not installed (.ci/run installs it)")
@pytest.mark.parametrize("overrides", [[], ["LOCORE_MAP_MB=128", "NKPT2PG=40"]])
def test_qemu_prints_the_same_early_lines(tmp_path, overrides):
    # QEMU's -kernel enters an ELF with no boot registers (hw/arm/boot.c): armboard's --abi none.
    prep = boot_mod.prepare(boot_mod.BootRequest(abi="none", loader_conf=None, overrides=overrides,
                                                 physmem="256M"))
    ours = boot_mod.run(prep)
    assert ours.exit_code == 0
    elf = tmp_path / "kernel.elf"
    write_configured_elf(prep.image, prep.config, elf)
    proc = run_qemu(elf)
    text = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert early_lines(text) == early_lines(ours.console.decode())
    assert "no Python kernel behind the gate" in text


@pytest.mark.skipif(QEMU is None, reason="qemu-system-arm is not installed (.ci/run installs it)")
def test_qemu_shows_the_same_nkpt2pg_panic(tmp_path):
    prep = boot_mod.prepare(boot_mod.BootRequest(abi="none", loader_conf=None, overrides=["NKPT2PG=1"],
                                                 kernel_footprint="5M", physmem="256M"))
    ours = boot_mod.run(prep)
    assert ours.exit_code == 1
    elf = tmp_path / "kernel.elf"
    write_configured_elf(prep.image, prep.config, elf)
    proc = run_qemu(elf)
    assert proc.returncode == 1
    assert "panic: pmap_preboot_pt2pg_setup: NKPT2PG too small" in proc.stdout.decode()
    ours_lines = ours.console.decode().splitlines()
    assert proc.stdout.decode().replace("\r\n", "\n").splitlines()[:len(ours_lines)] == ours_lines
