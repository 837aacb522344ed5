"""`armboard boot` from the command line: exit statuses and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kernel_sim.guest.build import guest_image
from tools.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_input_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("armboard: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_console_script_boots_the_default_board():
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "boot"], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"---<<BOOT>>---" in proc.stdout
    assert proc.stderr == b""


def test_failed_boot_exits_1_with_one_diagnosis_paragraph(capsys, sparse_image):
    image = sparse_image(60 << 20)
    code, out, err = run_cli(capsys, "boot", "--kernel-footprint", "9M", "--mfsroot", str(image))
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith("\narmboard: Boot failed in initarm")
    assert "LOCORE_MAP_MB=70" in err


def test_json_outcome(capsys):
    import json

    code, out, _ = run_cli(capsys, "boot", "--json", "--stop-at", "handover")
    data = json.loads(out)
    assert code == 0 and data["status"] == "stopped" and data["handoff"]["nkpt2pg"] == 32


def test_monitor_commands_run_when_the_boot_stops(capsys):
    code, out, _ = run_cli(capsys, "boot", "--no-loader-conf", "--console", "/dev/null", "-x", "info registers",
                           "-x", "info mem",
                           "-x", "x/4 0xc0000000", "-x", "xp/2 0x40000000")
    assert code == 0
    assert "PSR=" in out and "SCTLR=" in out
    assert "c0000000-c0010000" in out                 # the kernel's small pages, coalesced
    first_word = Path(guest_image().elf_path).read_bytes()[0x1000:0x1004]
    assert f"c0000000: 0x{int.from_bytes(first_word, 'little'):08x}" in out
    assert f"40000000: 0x{int.from_bytes(first_word, 'little'):08x}" in out


def test_monitor_refusal_is_a_result_and_the_next_commands_run(capsys):
    # an address nothing answers at, then a sysctl that does not exist: both refused, both reported,
    # and the command after them still runs; the boot's own exit status stands
    code, out, err = run_cli(capsys, "boot", "--console", "/dev/null", "-x", "x/1 0x10000000",
                             "-x", "sysctl no.such.oid", "-x", "sysctl hw.physmem")
    assert code == 0 and err == ""
    assert "cannot access virtual address 0x10000000" in out
    assert "sysctl: unknown oid 'no.such.oid'" in out
    assert "hw.physmem: " in out


def test_malformed_monitor_command_is_an_input_error_and_stops_the_list(capsys):
    code, out, err = run_cli(capsys, "boot", "--console", "/dev/null", "-x", "x/1 0xzz", "-x", "sysctl hw.physmem")
    assert_input_error(code, err, "-x x/1 0xzz")
    assert "hw.physmem" not in out


@pytest.mark.parametrize("argv, needles", [
    (["--kernel", "/nonexistent/kernel"], ["--kernel", "/nonexistent/kernel", "No such file or directory"]),
    (["--mfsroot", "/nonexistent/root.img"], ["--mfsroot", "No such file or directory"]),
    (["--physmem", "8M"], ["--physmem", "16 MiB to 3072 MiB"]),
    (["--physmem", "4G"], ["--physmem"]),
    (["--physmem", "100000001b"], ["--physmem", "multiple"]),
    (["--physmem", "lots"], ["--physmem"]),
    (["--board", "nosuchboard"], ["--board", "virt"]),
    (["-o", "LOCORE_MAP_MB=0"], ["-o LOCORE_MAP_MB=0"]),
    (["-o", "NO_SUCH_OPTION=1"], ["NO_SUCH_OPTION"]),
    (["--stop-at", "no_such_symbol"], ["--stop-at"]),
    (["--stop-at", "0xnothex"], ["--stop-at", "hexadecimal address"]),
    (["--frobnicate"], ["unrecognized"]),
])
def test_bad_arguments(capsys, argv, needles):
    code, _, err = run_cli(capsys, "boot", *argv)
    assert_input_error(code, err, *needles)


def test_non_elf_truncated_and_foreign_kernels(capsys, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a kernel\n")
    code, _, err = run_cli(capsys, "boot", "--kernel", str(text))
    assert_input_error(code, err, str(text), "not an ELF")

    truncated = tmp_path / "kernel.trunc"
    truncated.write_bytes(Path(guest_image().elf_path).read_bytes()[:300])
    code, _, err = run_cli(capsys, "boot", "--kernel", str(truncated))
    assert_input_error(code, err, str(truncated), "truncated")

    code, _, err = run_cli(capsys, "boot", "--kernel", sys.executable)
    assert_input_error(code, err, "not 32-bit ARM")


def test_module_bigger_than_ram(capsys, sparse_image):
    image = sparse_image(32 << 20)
    code, _, err = run_cli(capsys, "boot", "--physmem", "16M", "--mfsroot", str(image))
    assert_input_error(code, err, "--mfsroot", "does not fit in RAM")


def test_malformed_loader_conf_hints_and_config(capsys, tmp_path):
    conf = tmp_path / "loader.conf"
    conf.write_text('kern.hz="100"\nthis line is wrong\n')
    code, _, err = run_cli(capsys, "boot", "--loader-conf", str(conf))
    assert_input_error(code, err, f"{conf}:2")

    hints = tmp_path / "device.hints"
    hints.write_text('hint.uart.0.at="simplebus0"\nhint.uart.zero.flags=1\n')
    code, _, err = run_cli(capsys, "boot", "--hints", str(hints))
    assert_input_error(code, err, f"{hints}:2")

    kernconf = tmp_path / "KERNCONF"
    kernconf.write_text("ident TEST\noptions NKPT2PG=lots\n")
    code, _, err = run_cli(capsys, "boot", "--kernconf", str(kernconf))
    assert_input_error(code, err, f"{kernconf}:2")

    kernconf.write_text("ident TEST\noptions\tNKPT2PG=4096\n")
    code, _, err = run_cli(capsys, "boot", "--kernconf", str(kernconf))
    assert_input_error(code, err, f"{kernconf}:2", "NKPT2PG")

    kernconf.write_text("ident TEST\nfrobnicate yes\n")
    code, _, err = run_cli(capsys, "boot", "--kernconf", str(kernconf))
    assert_input_error(code, err, f"{kernconf}:2")


def test_inputs_are_not_modified(capsys, tmp_path, sparse_image):
    import hashlib

    image = sparse_image(3 << 20)
    with image.open("r+b") as f:
        f.write(b"user data")
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    code, _, _ = run_cli(capsys, "boot", "--console", "/dev/null", "--md-image", str(image))
    assert code == 0
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


def test_interactive_monitor_reads_commands_until_quit(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "boot", "--console", str(tmp_path / "con"),
                           "--stop-at", "handover", "--monitor"],
                          input=b"info registers\nx/2 0xc0000000\nbogus\nquit\ninfo mem\n",
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.count("(armboard) ") == 4          # stops reading at quit
    assert "SCTLR=" in out and "c0000000: 0x" in out and "unknown command 'bogus'" in out


def test_kernel_footprint_neither_size_nor_file(capsys):
    code, _, err = run_cli(capsys, "boot", "--kernel-footprint", "nine-megs")
    assert_input_error(code, err, "--kernel-footprint", "neither a size")


@pytest.mark.parametrize("conf, argv, needles", [
    ("", ["-o", "VM_KMEM_SIZE_MIN=400000000", "-o", "VM_KMEM_SIZE_MAX=300000000"], ["VM_KMEM_SIZE_MIN", "larger"]),
    ('vm.kmem_size_scale="0"\n', [], ["vm.kmem_size_scale"]),
    ("", ["-o", "VM_KMEM_SIZE=0x100000000"], ["VM_KMEM_SIZE", "out of range"]),
    ('vm.kmem_size="5G"\n', [], ["vm.kmem_size"]),
    ('debug.init_procs="many"\n', [], ["debug.init_procs", "not a number"]),
])
def test_bad_kmem_inputs_stop_before_the_guest_runs(capsys, tmp_path, conf, argv, needles):
    path = tmp_path / "loader.conf"
    path.write_text(conf)
    code, out, err = run_cli(capsys, "boot", "--loader-conf", str(path), *argv)
    assert_input_error(code, err, *needles)
    assert out == ""                      # refused before locore printed anything


def test_stop_at_a_point_never_reached_exits_1_with_one_line(capsys):
    code, out, err = run_cli(capsys, "boot", "--stop-at", "0x12345678")
    assert code == 1 and "The operating system has halted." in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("armboard: The stop point 0x12345678 was never reached; "
                                                   "the boot ended in mi_startup")


def test_stop_at_start_stops_before_locore_runs(capsys):
    code, out, err = run_cli(capsys, "boot", "--stop-at", "_start", "--json")
    import json

    data = json.loads(out)
    assert code == 0 and data["status"] == "stopped" and data["stage"] == "_start"
    assert data["message"] == "Stopped at _start (pc 0x40000000, the physical address of 0xc0000000)."
