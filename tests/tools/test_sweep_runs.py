"""A sweep under stress: killed half-way and resumed, a crashing point, a worker that dies, progress."""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tools.cli import main
from tools.sweep_executors import Failed, Item, Note
from tools.sweep_executors.local import LocalExecutor

ROOT = Path(__file__).resolve().parents[2]
GRID = ["--no-loader-conf", "--physmem", "256M", "--kernel-footprint", "9M",
        "-g", "VM_KMEM_SIZE_SCALE=1..8", "-g", "NKPT2PG=32..36"]          # 40 points

# Run `armboard sweep` with boot.finish patched: every call notes itself in COUNT, and the call for
# NKPT2PG=34 VM_KMEM_SIZE_SCALE=5 writes how many came before it to MARK and then hangs.
HARNESS = """
import os, sys, time
from kernel_sim import boot
count, mark = sys.argv[1], sys.argv[2]
finish = boot.finish
def hanging(result, prep=None):
    options = dict(prep.kernconf.options)
    with open(count, "a") as f:
        f.write("x")
    if (options.get("NKPT2PG"), options.get("VM_KMEM_SIZE_SCALE")) == (34, 5):
        with open(mark + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {len(open(count).read()) - 1}")
        os.replace(mark + ".tmp", mark)
        time.sleep(3600)
    return finish(result, prep)
boot.finish = hanging
from tools.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _wait_for(condition, what: str, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
    return value


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open())) if path.exists() else []


def test_a_sweep_killed_half_way_resumes_and_runs_every_point_once(tmp_path):
    out, count, mark = tmp_path / "s.csv", tmp_path / "count", tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, str(count), str(mark), "sweep", *GRID, "-j", "1",
                             "--out", str(out), "--progress", "none"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        leaf, before = map(int, _wait_for(lambda: mark.exists() and mark.read_text(), "the hanging point").split())
        assert 0 < before < 39                                  # half-way: some points done, most not
        _wait_for(lambda: len(_rows(out)) == before, "the finished rows in the journal")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.stderr.close()
    _wait_for(lambda: not Path(f"/proc/{leaf}").exists(), "the killed sweep's boot process to go")
    kept = _rows(out)
    assert len(kept) == before
    code = subprocess.run([sys.executable, "-m", "tools.cli", "sweep", *GRID, "-j", "2", "--out", str(out),
                           "--progress", "none"], cwd=ROOT, capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    assert f"({40 - before} booted now" in code.stdout and f"{before} from {out}" in code.stdout
    rows = _rows(out)
    assert [int(r["point"]) for r in rows] == list(range(40))   # each point exactly once, in order
    by_point = {r["point"]: r for r in rows}
    assert all(by_point[r["point"]] == r for r in kept)         # the rows kept were not run again


def test_a_point_whose_boot_crashes_is_one_line_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    from kernel_sim import boot

    finish = boot.finish

    def crash(result, prep=None):
        if dict(prep.kernconf.options).get("NKPT2PG") == 33:
            os.kill(os.getpid(), signal.SIGSEGV)
        return finish(result, prep)

    monkeypatch.setattr(boot, "finish", crash)
    out = tmp_path / "s.csv"
    grid = [*GRID[:-1], "NKPT2PG=32,33"]                       # 16 points, 8 of them crash
    assert main(["sweep", *grid, "-j", "2", "--out", str(out), "--progress", "none"]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("armboard: point ")]
    assert len(lines) == 8 and all("did not run" in line for line in lines)
    assert "NKPT2PG=33): did not run: the boot process died of signal 11 (SIGSEGV)" in lines[0]
    assert "Traceback" not in captured.err
    assert "8 booted now" in captured.out and "8 did not run" in captured.out
    assert len(_rows(out)) == 8
    monkeypatch.setattr(boot, "finish", finish)
    assert main(["sweep", *grid, "-j", "2", "--out", str(out), "--progress", "none"]) == 0
    assert "8 booted now" in capsys.readouterr().out
    assert [int(r["point"]) for r in _rows(out)] == list(range(16))


class _Job:
    def __init__(self, index: int) -> None:
        self.index = index


def _die_once(marker: str, batch: list, root: Path):
    """A task function that kills its own worker on the first attempt at item 5."""
    for job in batch:
        if job.index == 5 and not os.path.exists(marker):
            Path(marker).write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        yield job.index, "row", {"point": job.index, "worker": os.getpid()}


def test_the_local_pool_runs_the_items_of_a_dead_worker_again(tmp_path):
    executor = LocalExecutor(2, retries=1)
    batches = [[_Job(i) for i in range(k, k + 4)] for k in range(0, 12, 4)]
    events = list(executor.run(_die_once, str(tmp_path / "marker"), batches, []))
    items = [e for e in events if isinstance(e, Item)]
    assert sorted(e.index for e in items) == list(range(12))   # each once: 4 came back before 5 killed it
    assert [e.text for e in events if isinstance(e, Note)] == [
        "a worker process was killed by SIGKILL during a batch; its 3 unfinished point(s) run again"]
    assert not any(isinstance(e, Failed) for e in events)


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path):
    argv = [sys.executable, "-m", "tools.cli", "sweep", "--no-loader-conf", "--physmem", "64M",
            "-g", "NKPT2PG=30..39", "-j", "2"]
    plain = subprocess.run([*argv, "--out", str(tmp_path / "a.csv")], cwd=ROOT, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert lines[-1].startswith("sweep: 10/10 points (100%), ") and lines[-1].endswith("boots/s, done")
    assert "\r" not in plain.stderr and len(lines) == 10              # every tenth of the points
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))     # a terminal of 100 columns
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "b.csv")], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:                                              # EIO: the sweep closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(parent)
    assert proc.wait() == 0
    text = seen.decode()
    assert "\r" in text and "10/10" in text and "boot/s" in text     # tqdm redraws one line in place
    assert "sweep: 10/10 points" not in text


def test_plot_every_redraws_and_json_to_stdout_carries_the_answers(tmp_path, capsys, monkeypatch):
    import json

    import tools.sweep_cmd as sweep_cmd

    drawn = []
    draw = sweep_cmd.draw
    monkeypatch.setattr(sweep_cmd, "draw", lambda path, rows, *a: (drawn.append(len(rows)), draw(path, rows, *a)))
    plot, out = tmp_path / "heat.svg", tmp_path / "s.csv"
    code = main(["sweep", "--no-loader-conf", "--physmem", "64M,128M", "-g", "NKPT2PG=1,32", "-j", "1",
                 "--out", str(out), "--plot", str(plot), "--plot-every", "2", "--json", "-", "--progress", "none"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and drawn == [2, 4, 4] and plot.exists()           # during the run, then at the end
    assert len(document["rows"]) == 4 and document["failed_to_run"] == []
    booting = [r for r in document["rows"] if r["exit_code"] == 0]
    smallest = min((r["options"].split("=")[1] for r in booting), key=int)
    best = {b["name"]: b["value"] for b in document["summary"]["best"]}
    assert best == {"physmem": "64M", "NKPT2PG": smallest}
    assert document["summary"]["frontier"][0]["settings"] == {"physmem": "64M", "NKPT2PG": smallest}
    assert set(document["summary"]["best"][0]["headroom"]) == {"kva_free", "kmem_free", "kstacks_fit"}
    for bad in (["--plot-every", "2"], ["--plot", str(plot), "--plot-every", "0"], ["--timeout", "0"]):
        assert main(["sweep", "-g", "NKPT2PG=32", "--out", str(tmp_path / "x.csv"), *bad]) == 2
        assert capsys.readouterr().err.startswith("armboard: ")
