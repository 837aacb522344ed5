"""Shared helpers for the benchmarks: timed child processes with their peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def armboard_command() -> list[str]:
    script = Path(sys.executable).parent / "armboard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]


def ensure_bytecode() -> None:
    """Byte-compile the project first: with PYTHONDONTWRITEBYTECODE set (as here), a source edited since
    the set-up would be compiled again on every start and the figures would time the compiler."""
    import compileall

    for package in ("board", "kernel_sim", "tools"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def run_measured(argv: list[str], *, expect: int | None = 0) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if expect is not None and code != expect:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv[0]} exited {code}, expected {expect}: {err.strip()}")
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_maxrss * 1024


def pairs(a: list[str], b: list[str], n: int) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """Run a and b alternately n times (after one warm-up each) so drift hits both alike."""
    run_measured(a)
    run_measured(b)
    ra, rb = [], []
    for _ in range(n):
        ra.append(run_measured(a))
        rb.append(run_measured(b))
    return ra, rb


def report(name: str, ours: list[float], reference: list[float], unit: str = "s") -> float:
    """One line: name, ratio ours/reference, the two medians and the number of pairs."""
    mo, mr = statistics.median(ours), statistics.median(reference)
    ratio = mo / mr if mr else float("inf")
    fmt = (lambda v: f"{v:.3f} s") if unit == "s" else (lambda v: f"{v / 2**20:.1f} MiB")
    print(f"{name:<44} ratio {ratio:6.2f}   armboard {fmt(mo)}   reference {fmt(mr)}   pairs {len(ours)}")
    return ratio
