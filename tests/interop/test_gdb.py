"""gdb-multiarch against `armboard boot --gdb ... -S`, in batch mode, with the configured ELF's
symbols: from reset (MMU off) through locore's L1 table and the MMU switch into initarm."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from kernel_sim.guest.abi import KERNVIRTADDR
from kernel_sim.guest.build import guest_image

pytestmark = pytest.mark.interop
GDB = shutil.which("gdb-multiarch")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed (.ci/run installs it)")


class Board:
    """`armboard boot ... --gdb 127.0.0.1:0 -S` in a subprocess; the port is read from its stderr."""

    def __init__(self, tmp_path, *how: str) -> None:
        self.elf = tmp_path / "kernel.elf"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "boot", "--no-loader-conf", "--console", str(tmp_path / "console"),
             "--write-elf", str(self.elf), *(how or ("--gdb", "127.0.0.1:0", "-S"))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.fullmatch(r"armboard: gdb: listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        self.port = int(match.group(1))

    def gdb(self, *commands: str) -> str:
        argv = [GDB, "-nx", "-batch", "-ex", f"symbol-file {self.elf}", "-ex", f"target remote 127.0.0.1:{self.port}"]
        for command in commands:
            argv += ["-ex", command]
        # one pipe for both streams keeps gdb's errors ("Cannot access memory") in their place
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        return proc.stdout

    def wait(self) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, err


@needs_gdb
def test_gdb_from_reset_through_the_mmu_switch_into_initarm(tmp_path):
    image = guest_image()
    with open(image.elf_path, "rb") as f:
        first_word = int.from_bytes(f.read()[0x1000:0x1004], "little")      # _start's first instruction
    # locore's L1 entry for KERNVIRTADDR: boot_pt1 (by its physical address) + index * 4
    boot_pt1_pa = image.symbols["boot_pt1"] - KERNVIRTADDR + 0x40000000
    l1_entry = boot_pt1_pa + (KERNVIRTADDR >> 20) * 4
    board = Board(tmp_path)
    out = board.gdb(
        "info registers pc",
        "x/xw 0xc0000000",                                  # virtual, MMU off: nothing at that address
        "x/xw 0x40000000",
        f"watch *(unsigned int *){l1_entry:#x}",
        "continue",                                         # the identity map's entry
        "continue",                                         # the kernel window's entry
        "delete",
        "break initarm",
        "continue",
        "info registers pc",
        "stepi",
        "info registers pc",
        "x/4i $pc",
        "x/xw 0xc0000000",                                  # virtual, MMU on: the kernel's first word
        "maint packet Qqemu.PhyMemMode:1",
        "x/xw 0xc0000000",                                  # physical: no RAM there
        "x/xw 0x40000000",                                  # physical: the same word, at the load address
        "maint packet Qqemu.PhyMemMode:0",
        "monitor info mem",
        "monitor paddr 0xc0001000",
        "kill")
    code, err = board.wait()
    assert code == 0 and "ended by gdb's kill" in err, (out, err)
    # reset: the first locore instruction, MMU off
    assert re.search(r"^pc +0x40000000 ", out, re.M), out
    before, after = out.split("Breakpoint 2, ", 1)
    assert "0xc0000000 <_start>:\tCannot access memory at address 0xc0000000" in before
    assert f"0x40000000:\t{first_word:#010x}" in before
    # the watchpoint on the L1 entry: first the identity section (VA = PA), then the kernel window
    values = [int(v) for v in re.findall(r"New value = (\d+)", before)]
    assert len(values) == 2, before
    assert values[0] >> 20 == KERNVIRTADDR >> 20 and values[1] >> 20 == 0x400
    assert values[0] & 0xFFFFF == values[1] & 0xFFFFF == 0x402     # PTE1_KERN: valid section, AF
    assert before.count("Hardware watchpoint 1: ") == 3            # set, then two hits
    # initarm, one step, its disassembly
    assert after.startswith("0xc0001000 in initarm ()"), after
    assert re.search(r"^pc +0xc0001000 +0xc0001000 <initarm>$", after, re.M)
    assert re.search(r"^pc +0xc0001004 +0xc0001004 <initarm\+4>$", after, re.M)
    assert "=> 0xc0001004 <initarm+4>:\tmov\tr11, sp" in after
    assert "<initarm+12>:\tmovw\tr4, #12288" in after                  # gdb sees an ARMv7 CPU
    # virtual after the MMU switch, then physical
    virtual, physical = after.split("Qqemu.PhyMemMode:1", 1)
    assert f"0xc0000000 <_start>:\t{first_word:#010x}" in virtual
    assert "Cannot access memory at address 0xc0000000" in physical
    assert f"0x40000000:\t{first_word:#010x}" in physical
    # monitor commands
    assert re.search(r"^c0000000-c[0-9a-f]+ [0-9a-f]+ -> 40000000 ", after, re.M)
    assert "physical address 0x40001000" in after


@needs_gdb
def test_gdb_stops_at_a_python_kernel_stage_and_reads_its_sysctls(tmp_path):
    board = Board(tmp_path)
    out = board.gdb(
        "monitor break geom_taste",
        "continue",
        "monitor sysctl vm.kmem_size",
        "stepi",
        "continue")
    code, _ = board.wait()
    assert code == 0
    assert "Breakpoint 1 before the Python kernel's geom_taste step" in out
    assert "Breakpoint 1, before the Python kernel's geom_taste step" in out
    assert re.search(r"^vm\.kmem_size: \d+$", out, re.M), out
    assert "which runs no guest instructions; continue instead" in out
    assert "[Inferior 1 (Remote target) exited normally]" in out


@needs_gdb
def test_the_monitor_hands_a_stopped_board_to_gdb(tmp_path):
    board = Board(tmp_path, "--stop-at", "initarm", "-x", "info registers", "-x", "gdb 127.0.0.1:0")
    out = board.gdb("info registers pc", "break pmap_bootstrap", "continue", "delete", "continue")
    code, _ = board.wait()
    assert code == 0
    assert re.search(r"^pc +0xc0001000 +0xc0001000 <initarm>$", out, re.M), out
    assert re.search(r"^Breakpoint 1, 0xc00018[0-9a-f]{2} in pmap_bootstrap \(\)$", out, re.M), out  # past its prologue
    assert "[Inferior 1 (Remote target) exited normally]" in out


@needs_gdb
def test_gdb_looks_at_a_board_whose_boot_has_ended(tmp_path):
    board = Board(tmp_path, "-x", "gdb 127.0.0.1:0")
    out = board.gdb("info registers pc", "x/xw 0xc0000000", "monitor sysctl kern.ostype", "continue")
    code, _ = board.wait()
    assert code == 0
    assert re.search(r"^pc +0x[0-9a-f]+ +0x[0-9a-f]+ <hypercall\+\d+>$", out, re.M), out   # halted at the gate
    assert "kern.ostype: FreeBSD" in out
    assert "[Inferior 1 (Remote target) exited normally]" in out
