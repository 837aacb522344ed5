"""Monitor stepping from the command line: stops in locore before the MMU switch and in initarm after
it, several stops in one boot, step N, until STAGE, x/Ni with symbol+offset, and the boot ending at
a stop when the commands run out."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from kernel_sim.guest.build import guest_image
from tools.cli import main

BOOT = ("boot", "--no-loader-conf", "--console", "/dev/null")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*BOOT, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def register(out: str, name: str, which: int = -1) -> int:
    return int(re.findall(rf"{name}=([0-9a-f]{{8}})", out)[which], 16)


def test_s_stops_at_reset_with_the_mmu_off(capsys):
    code, out, _ = run_cli(capsys, "-S", "-x", "info registers", "--json")
    assert out.startswith("Stopped at _start (pc 0x40000000, the physical address of 0xc0000000), "
                          "before the first instruction\n")
    assert register(out, "R15") == 0x40000000 and not register(out, "SCTLR") & 1
    data = json.loads(out[out.index("{"):])
    assert code == 0 and data["status"] == "stopped" and data["stage"] == "_start" and data["console"] == ""


def test_break_in_locore_before_the_mmu_switch_stops_there_on_every_pass(capsys):
    # build_pagetables+0xc is the store of locore's identity-map loop: one stop per L1 entry, at its PA;
    # init_mmu, a plain symbol, runs once, still with the MMU off
    code, out, _ = run_cli(capsys, "-S", "-x", "break build_pagetables+0xc", "-x", "break init_mmu",
                           "-x", "continue", "-x", "info registers", "-x", "continue", "-x", "info registers",
                           "-x", "delete 1", "-x", "continue", "-x", "info registers", "-x", "info break")
    assert code == 0
    assert "Breakpoint 1 at build_pagetables+0xc (0xc000005c or 0x4000005c)" in out
    where = "build_pagetables+0xc (pc 0x4000005c, the physical address of 0xc000005c)"
    assert out.count(f"Breakpoint 1, {where}") == 2
    assert register(out, "R01", 0) == 0 and register(out, "R01", 1) == 1   # the loop's index, one pass apart
    assert "Breakpoint 2, init_mmu (pc 0x4000009c, the physical address of 0xc000009c)" in out
    assert register(out, "R15", 2) == 0x4000009c and not register(out, "SCTLR", 2) & 1   # MMU still off
    assert "2    init_mmu (0xc000009c or 0x4000009c); stopped the boot 1 time" in out


def test_break_after_the_mmu_switch_then_step_and_disassemble(capsys):
    image = guest_image()
    initarm = image.symbols["initarm"]
    code, out, _ = run_cli(capsys, "--stop-at", "_start", "-x", "break initarm", "-x", "continue",
                           "-x", "info registers", "-x", "step 3", "-x", "info registers", "-x", "x/4i $pc")
    assert code == 0
    assert f"Breakpoint 1, initarm (pc 0x{initarm:08x})" in out
    assert register(out, "R15", 0) == initarm and register(out, "SCTLR", 0) & 1      # MMU on
    assert f"Stepped to initarm+0xc (pc 0x{initarm + 12:08x})" in out
    assert register(out, "R15", 1) == initarm + 12
    lines = [line for line in out.splitlines() if re.match(r"[0-9a-f]{8} <", line)]
    assert [line.split(":")[0] for line in lines] == [
        f"{initarm + 12:08x} <initarm+0xc>", f"{initarm + 16:08x} <initarm+0x10>",
        f"{initarm + 20:08x} <initarm+0x14>", f"{initarm + 24:08x} <initarm+0x18>"]
    assert re.fullmatch(rf"{initarm + 12:08x} <initarm\+0xc>: e3034000  movw r4, #0x3000", lines[0])


def test_x_i_disassembles_a_symbol_and_a_physical_address(capsys):
    code, out, _ = run_cli(capsys, "-S", "-x", "x/1i initarm")       # the MMU is off: no such VA yet
    assert "cannot access virtual address 0xc0001000" in out
    code, out, _ = run_cli(capsys, "--stop-at", "initarm", "-x", "x/2i initarm", "-x", "xp/1i 0x40000000")
    assert code == 0
    assert "c0001000 <initarm>: e92d4800  push {fp, lr}" in out
    assert "c0001004 <initarm+0x4>: e1a0b00d  mov fp, sp" in out
    assert "40000000 <_start>: e1a08000  mov r8, r0" in out


def test_until_a_stage_stops_in_the_python_kernel_where_step_is_not_meaningful(capsys):
    code, out, _ = run_cli(capsys, "-S", "-x", "until geom_taste", "-x", "step", "-x", "sysctl vm.kmem_size",
                           "-x", "geom list", "-x", "continue", "-x", "sysctl kern.ostype")
    assert code == 0
    assert "Stopped before the Python kernel's geom_taste step" in out
    assert ("step: the boot is paused before the Python kernel's geom_taste step, which runs no guest "
            "instructions; use continue, or until STAGE") in out
    assert re.search(r"^vm\.kmem_size: \d+$", out, re.M)
    assert "kern.ostype: FreeBSD" in out                       # after the boot halted


def test_several_stops_in_one_boot_guest_then_stages(capsys):
    code, out, _ = run_cli(capsys, "-S", "-x", "break initarm", "-x", "break pmap_bootstrap", "-x", "break kmeminit",
                           "-x", "break mountroot", "-x", "continue", "-x", "continue", "-x", "continue",
                           "-x", "continue", "-x", "info break", "-x", "continue")
    assert code == 0
    stops = re.findall(r"^Breakpoint (\d), ", out, re.M)
    assert stops == ["1", "2", "3", "4"]
    assert out.count("stopped the boot 1 time") == 4


def test_the_boot_ends_at_a_stop_when_the_commands_run_out(capsys):
    code, out, _ = run_cli(capsys, "-S", "-x", "break mountroot", "-x", "continue", "--json")
    data = json.loads(out[out.index("{"):])
    assert code == 0 and data["status"] == "stopped" and data["stage"] == "mountroot"
    assert data["message"] == "Stopped before the Python kernel's mountroot step."
    assert "kmem arena" in data["console"] and "start_init" not in data["console"]
    assert data["memory"]["real"] > 0


def test_quit_at_a_guest_stop_ends_the_boot_there(capsys):
    code, out, _ = run_cli(capsys, "-S", "-x", "break pmap_bootstrap", "-x", "continue", "-x", "quit",
                           "-x", "info registers", "--json")
    data = json.loads(out[out.index("{"):])
    assert code == 0 and data["stage"] == "pmap_bootstrap" and "PSR=" not in out


def test_refusals_are_results_and_malformed_commands_end_the_list(capsys):
    code, out, err = run_cli(capsys, "-S", "-x", "until kmeminit", "-x", "break initarm", "-x", "until kmeminit",
                             "-x", "delete 7", "-x", "step zero")
    assert code == 2
    assert "break initarm: the boot is past the hand-over" in out
    assert "until kmeminit: the Python kernel's kmeminit step has already begun" in out
    assert "delete: no breakpoint number 7" in out
    assert err.strip() == "armboard: -x step zero: usage: step [N] (N instructions, at least 1)"


def test_stepping_commands_after_the_boot_ended_are_refused(capsys):
    code, out, _ = run_cli(capsys, "-x", "continue", "-x", "step", "-x", "info registers")
    assert code == 0
    assert "continue: the boot has ended (halted); nothing more runs" in out
    assert "step: the boot has ended (halted); nothing more runs" in out and "PSR=" in out


def test_the_prompt_opens_at_each_stop_and_continue_leaves_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.cli", *BOOT, "-S", "--monitor"],
                          input=b"break initarm\ncontinue\nstep 2\ninfo break\ncontinue\ninfo registers\nquit\n",
                          capture_output=True, timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert out.count("(armboard) ") == 7
    assert "Breakpoint 1, initarm (pc 0xc0001000)" in out and "Stepped to initarm+0x8 (pc 0xc0001008)" in out
    assert "PSR=" in out                                       # after the halt, the same prompt


def test_write_elf_is_the_configured_elf(capsys, tmp_path):
    from kernel_sim import boot as boot_mod
    from kernel_sim.loader.load import write_configured_elf

    code, _, _ = run_cli(capsys, "--stop-at", "handover", "-o", "LOCORE_MAP_MB=70", "--write-elf", str(tmp_path / "k"))
    prep = boot_mod.prepare(boot_mod.BootRequest(loader_conf=None, overrides=["LOCORE_MAP_MB=70"]))
    write_configured_elf(prep.image, prep.config, tmp_path / "ref")
    assert code == 0 and (tmp_path / "k").read_bytes() == (tmp_path / "ref").read_bytes()
    code, _, err = run_cli(capsys, "--write-elf", str(tmp_path / "no" / "such" / "dir"))
    assert code == 2 and err.startswith("armboard: --write-elf ") and "(ENOENT)" in err


def test_a_boot_that_asks_for_no_debugging_imports_none_of_it():
    probe = ("import sys; from tools.cli import main; main(['boot', '--no-loader-conf', '--console', '/dev/null']);"
             "print(sorted(m for m in sys.modules if m.startswith(('tools.gdbstub', 'tools.monitor', 'tools.disasm',"
             "'capstone')) or m in ('socket', 'queue')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
