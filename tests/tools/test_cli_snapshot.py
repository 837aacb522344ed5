"""`armboard boot --save-at POINT FILE` / `--restore FILE` and the monitor's savevm, loadvm and
snapshots: exit statuses, one-line errors for damaged or foreign files, and no snapshot code on a
boot that does not ask for it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("armboard: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A snapshot at geom_taste and the console of the boot that saved it."""
    path = tmp_path_factory.mktemp("cli") / "geom.snap"
    code = main(["boot", "--physmem", "128M", "--json", "--save-at", "geom_taste", str(path)])
    assert code == 0 and path.exists()
    return path


def test_save_then_restore_gives_the_same_console(capsys, tmp_path):
    path = tmp_path / "h.snap"
    code, out, err = run_cli(capsys, "boot", "--physmem", "128M", "--json", "--save-at", "handover", str(path))
    assert code == 0 and path.exists()
    assert one_error_line(err).startswith(f"armboard: saved a snapshot at the hand-over to the Python kernel to "
                                          f"{path} (")
    first = json.loads(out)
    code, out, err = run_cli(capsys, "boot", "--json", "--restore", str(path))
    assert code == 0 and err == ""
    again = json.loads(out)
    assert again["console"] == first["console"] and again["message"] == first["message"] == "The kernel halted cleanly."


def test_the_terminal_shows_only_what_comes_after_the_snapshot(capsys, saved):
    code, out, err = run_cli(capsys, "boot", "--restore", str(saved))
    assert code == 0 and err == ""
    assert "GEOM" not in out.split("md0:")[0] and "---<<BOOT>>---" not in out     # printed before geom_taste
    assert "The operating system has halted." in out


def test_a_truncated_snapshot_is_one_line_exit_2(capsys, saved, tmp_path):
    data = saved.read_bytes()
    for cut in (0, 10, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / "cut.snap"
        bad.write_bytes(data[:cut])
        code, _, err = run_cli(capsys, "boot", "--restore", str(bad))
        assert code == 2
        line = one_error_line(err)
        assert line.startswith(f"armboard: {bad}: offset ") and ("truncated" in line or "not an armboard" in line)


def test_a_bit_flipped_snapshot_names_the_section_and_offset(capsys, saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[len(data) // 3] ^= 0x10
    bad = tmp_path / "flip.snap"
    bad.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "boot", "--restore", str(bad))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"armboard: {bad}: offset ")
    assert "fails its checksum" in line and "the file is damaged" in line


def test_a_foreign_or_missing_file_is_one_line_exit_2(capsys, tmp_path):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello\n")
    code, _, err = run_cli(capsys, "boot", "--restore", str(foreign))
    assert code == 2 and one_error_line(err) == (f"armboard: {foreign}: offset 0: not an armboard snapshot (it does "
                                                 "not start with b'\\x89ARMSNAP')")
    code, _, err = run_cli(capsys, "boot", "--restore", str(tmp_path / "none.snap"))
    assert code == 2 and "No such file or directory (ENOENT)" in one_error_line(err)


def test_configuration_comes_from_the_snapshot(capsys, saved):
    code, _, err = run_cli(capsys, "boot", "--restore", str(saved), "-o", "NKPT2PG=40")
    assert code == 2 and one_error_line(err) == (f"armboard: --restore {saved}: the board and kernel configuration "
                                                 "come from the snapshot; -o cannot be given with it")


def test_unknown_or_unreached_save_points(capsys, tmp_path):
    code, _, err = run_cli(capsys, "boot", "--save-at", "nowhere", str(tmp_path / "x.snap"))
    assert code == 2 and one_error_line(err).startswith("armboard: --save-at: unknown save point 'nowhere' (use "
                                                         "handover, a guest kernel symbol or 0xADDR, a stage")
    code, _, err = run_cli(capsys, "boot", "--save-at", "fake_preload_metadata", str(tmp_path / "x.snap"))
    assert code == 1 and "was never reached, so no snapshot was written" in err
    assert not (tmp_path / "x.snap").exists()


def test_monitor_savevm_loadvm_and_the_snapshot_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMBOARD_SNAPSHOT_DIR", str(tmp_path / "dir"))
    code, out, _ = run_cli(capsys, "boot", "--physmem", "128M", "--console", str(tmp_path / "c1"), "--stop-at",
                           "handover", "-x", "savevm at-handover", "-x", "snapshots")
    assert code == 0
    path = tmp_path / "dir" / "at-handover.snap"
    assert f"savevm: saved a snapshot at the hand-over to the Python kernel to {path} (" in out
    assert "snapshots in " + str(tmp_path / "dir") + ": 1" in out and "at-handover" in out
    code, out, _ = run_cli(capsys, "boot", "--physmem", "128M", "--console", str(tmp_path / "c2"),
                           "-x", f"savevm {tmp_path}/end.snap", "-x", "loadvm at-handover", "-x", "sysctl kern.ostype",
                           "-x", f"loadvm {tmp_path}/end.snap", "-x", "sysctl kern.ostype")
    assert code == 0
    assert f"loadvm: loaded {path}, a snapshot at the hand-over to the Python kernel (pc 0x" in out
    assert "sysctl: the Python kernel has not started" in out                 # the hand-over: no kernel yet
    assert f"loadvm: loaded {tmp_path}/end.snap, a snapshot at the end of mi_startup" in out
    assert out.rstrip().endswith("kern.ostype: FreeBSD")
    code, out, _ = run_cli(capsys, "boot", "--physmem", "256M", "--console", str(tmp_path / "c3"), "--stop-at",
                           "handover", "-x", "loadvm at-handover")
    assert code == 0 and "loadvm: " in out and "128 MiB of RAM; this is board virt with 256 MiB" in out
    code, out, _ = run_cli(capsys, "boot", "--console", str(tmp_path / "c4"), "--restore", str(path))
    c1, c2 = (tmp_path / "c1").read_bytes(), (tmp_path / "c2").read_bytes()
    assert code == 0 and c2.startswith(c1) and (tmp_path / "c4").read_bytes() == c2[len(c1):]


@pytest.mark.parametrize("stop", ["initarm", "geom_taste"])
def test_savevm_where_monitor_stepping_paused_the_boot(capsys, tmp_path, stop):
    """A breakpoint in guest code or before a Python kernel step pauses the boot; savevm there saves
    the paused boot, and a restore of it finishes with the console the uninterrupted boot prints."""
    plain, first, rest = (tmp_path / name for name in ("plain", "first", "rest"))
    assert run_cli(capsys, "boot", "--physmem", "128M", "--console", str(plain))[0] == 0
    snap = tmp_path / "paused.snap"
    code, out, _ = run_cli(capsys, "boot", "--physmem", "128M", "--console", str(first), "-S", "-x", f"break {stop}",
                           "-x", "continue", "-x", f"savevm {snap}", "-x", f"loadvm {snap}", "-x", "quit")
    assert code == 0 and "savevm: saved a snapshot " in out and snap.exists(), out
    assert "loadvm: the boot is paused, not ended" in out
    code, _, _ = run_cli(capsys, "boot", "--console", str(rest), "--restore", str(snap))
    assert code == 0
    assert first.read_bytes() + rest.read_bytes() == plain.read_bytes()


def test_restore_at_a_stage_keeps_the_monitors_stepping(capsys, saved, tmp_path):
    code, out, _ = run_cli(capsys, "boot", "--console", str(tmp_path / "c"), "--restore", str(saved),
                           "-x", "sysctl kern.ostype")
    assert code == 0 and "kern.ostype: FreeBSD" in out
    code, out, _ = run_cli(capsys, "boot", "--console", str(tmp_path / "c"), "--restore", str(saved), "-S",
                           "-x", "break mountroot", "-x", "continue")
    assert code == 0 and "before the Python kernel's mountroot step" in out, out


def test_a_plain_boot_imports_no_snapshot_code():
    probe = ("import sys; from tools.cli import main; "
             "main(['boot', '--console', '/dev/null', '--physmem', '128M']); "
             "print(sorted(m for m in sys.modules if 'snapshot' in m or m in ('zstandard', 'board.cpu_state')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
