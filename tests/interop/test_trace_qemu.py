"""armboard's in_asm trace against qemu-system-arm's `-d in_asm,nochain` on the same ELF, up to the MMU
switch: the same guest instruction addresses executed and the same disassembly for each, modulo
formatting. Translation blocks may be split differently by the two QEMUs and are not compared."""

from __future__ import annotations

import re
import subprocess

import pytest

from kernel_sim import boot as boot_mod
from kernel_sim.guest.abi import KERNVIRTADDR
from kernel_sim.guest.qemu import qemu_binary, qemu_virt_command
from kernel_sim.loader.load import write_configured_elf
from tools.cli import main

pytestmark = pytest.mark.interop
QEMU = qemu_binary()
INSN = re.compile(r"^0x([0-9a-f]{8}):\s+([0-9a-f]{8})\s+(\S+)\s*(.*?)\s*(?:<[^>]*>)?$")


def before_the_mmu_switch(log: str) -> dict[int, tuple[str, str]]:
    """address -> (word, normalised text) of each instruction the log shows before the first block at a
    kernel virtual address (with the MMU on, the CPU leaves locore's physical addresses there)."""
    out: dict[int, tuple[str, str]] = {}
    for line in log.splitlines():
        m = INSN.match(line)
        if not m:
            continue
        address = int(m.group(1), 16)
        if address >= KERNVIRTADDR:
            break
        text = " ".join(f"{m.group(3)} {m.group(4)}".lower().replace(", ", ",").split())
        out[address] = (m.group(2), text)
    return out


@pytest.mark.skipif(QEMU is None, reason="qemu-system-arm is not installed (.ci/run installs it)")
def test_the_trace_up_to_the_mmu_switch_matches_qemus(tmp_path, capsys):
    # QEMU's -kernel enters an ELF with no boot registers: armboard's --abi none, as tests/interop/test_qemu.py.
    prep = boot_mod.prepare(boot_mod.BootRequest(abi="none", loader_conf=None, physmem="256M"))
    elf = tmp_path / "kernel.elf"
    write_configured_elf(prep.image, prep.config, elf)
    qemu_log = tmp_path / "qemu.log"
    proc = subprocess.run(qemu_virt_command(elf, mem_mb=256, serial="null",
                                            extra=("-d", "in_asm,nochain", "-D", str(qemu_log))),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ours_log = tmp_path / "armboard.log"
    code = main(["boot", "--abi", "none", "--no-loader-conf", "--physmem", "256M", "--stop-at", "handover",
                 "--console", str(tmp_path / "console.txt"), "--trace", "in_asm,nochain",
                 "--trace-file", str(ours_log)])
    capsys.readouterr()
    assert code == 0
    qemu = before_the_mmu_switch(qemu_log.read_text())
    ours = before_the_mmu_switch(ours_log.read_text())
    assert len(qemu) > 40                                   # locore: _start through the jump to virtdone
    assert sorted(ours) == sorted(qemu)
    differ = {hex(a): (ours[a], qemu[a]) for a in qemu if ours[a] != qemu[a]}
    assert differ == {}
