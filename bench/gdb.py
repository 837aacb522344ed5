"""The gdb stub's cost (issue 12): `armboard boot --gdb` with no breakpoint set, continued to halt,
against a plain `armboard boot` (target: within 1.2x). The stub adds no hook to the guest until gdb
sets a breakpoint, watchpoint or step, so what it costs is its listening socket, its threads, its
imports and the round trip of gdb's `continue`.

1. --gdb with nobody connecting: the boot runs to halt while the stub listens.
2. --gdb -S with a client that connects and continues at once (a minimal raw-protocol client, so
   gdb's own start-up, 0.2-0.3 s, is not counted against the stub).
3. The same with gdb-multiarch as the client (its start-up included), for scale.

Usage: python bench/gdb.py [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, armboard_command, report, run_measured  # noqa: E402

BOOT = ["boot", "--console", "/dev/null"]


def _listening_port(proc: subprocess.Popen) -> int:
    line = proc.stderr.readline().decode()
    match = re.search(r"listening on [^:]+:(\d+)", line)
    if match is None:
        raise SystemExit(f"armboard did not start its gdb stub: {line.strip()}")
    return int(match.group(1))


def _raw_continue(port: int) -> None:
    """What gdb does at the least: connect, `c`, wait for the exit status (W)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"$c#63")
        data = b""
        while not re.search(rb"\$W[0-9a-f]{2}#", data):
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit("the stub closed the connection before the boot's exit status")
            data += chunk


def _gdb_continue(port: int, elf: Path) -> None:
    proc = subprocess.run([shutil.which("gdb-multiarch"), "-nx", "-batch", "-ex", f"symbol-file {elf}",
                           "-ex", f"target remote 127.0.0.1:{port}", "-ex", "continue"],
                          capture_output=True, text=True, timeout=120)
    if "exited normally" not in proc.stdout:
        raise SystemExit(f"gdb-multiarch did not see the boot halt: {proc.stdout[-300:]}{proc.stderr[-300:]}")


def run_with_client(argv: list[str], client) -> float:
    """Wall seconds of armboard from its start to its exit, a client continuing it as soon as it listens."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    client(_listening_port(proc))
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"armboard under gdb exited {os.waitstatus_to_exitcode(status)}")
    return wall


def alternate(plain: list[str], measure, n: int) -> tuple[list[float], list[float]]:
    """The stubbed boot and the plain one alternately, after one warm-up each."""
    measure()
    run_measured(plain)
    ours, ref = [], []
    for _ in range(n):
        ours.append(measure())
        ref.append(run_measured(plain)[0])
    return ours, ref


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    ab = armboard_command()
    plain = [*ab, *BOOT]
    ours, ref = alternate(plain, lambda: run_measured([*ab, *BOOT, "--gdb", "127.0.0.1:0"])[0], args.pairs)
    report("--gdb, no client, to halt (vs plain boot)", ours, ref)
    stubbed = [*ab, *BOOT, "--gdb", "127.0.0.1:0", "-S"]
    ours, ref = alternate(plain, lambda: run_with_client(stubbed, _raw_continue), args.pairs)
    report("--gdb -S, client continues to halt (vs plain)", ours, ref)
    if shutil.which("gdb-multiarch") is None:
        print("gdb-multiarch is not installed: the gdb-multiarch figure is skipped")
        return
    elf = Path(os.environ.get("TMPDIR", "/tmp")) / f"armboard-bench-gdb-{os.getpid()}.elf"
    try:
        subprocess.run([*ab, *BOOT, "--stop-at", "handover", "--write-elf", str(elf)], check=True,
                       capture_output=True)
        ours, ref = alternate(plain, lambda: run_with_client(stubbed, lambda port: _gdb_continue(port, elf)),
                              args.pairs)
        report("--gdb -S, gdb-multiarch continues (vs plain)", ours, ref)
    finally:
        elf.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
