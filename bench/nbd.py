"""NBD benchmark (issue 14): `armboard nbd memory` against `nbdkit memory`, through nbdcopy.

512 MiB of mixed data (a quarter random, a quarter text, half zeros, in that order) is written into a
fresh memory disk with nbdcopy, then read back to null:, for each allocator, against `nbdkit memory`
with the same allocator. Each round is a whole process: the server starts, both copies run, the
server stops; its peak RSS comes from wait4. Rounds alternate between the two servers. Figures:
write and read throughput (MiB/s, the ratio is ours / nbdkit's: target 0.8 or better) and peak RSS
(ours / nbdkit's: target 1.2 or less), medians of the rounds.

Usage: python bench/nbd.py [--pairs N] [--allocators sparse,malloc,zstd] [--size MiB]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import armboard_command  # noqa: E402

MIB = 1 << 20


def mixed(path: Path, size: int) -> None:
    """A quarter random, a quarter text, half zeros."""
    quarter = size // 4
    line = b"%010d the quick brown fox jumps over the lazy dog\n"
    with path.open("wb") as f:
        f.write(os.urandom(quarter))
        done = 0
        while done < quarter:
            chunk = b"".join(line % (done + i) for i in range(20000))[:quarter - done]
            f.write(chunk)
            done += len(chunk)
        f.write(bytes(size - 2 * quarter))


def _wait_socket(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {proc.args}")
        time.sleep(0.01)


def one_round(server: list[str], sock: Path, source: Path) -> tuple[float, float, int]:
    """(write seconds, read seconds, server peak RSS in bytes) of one whole server process."""
    if sock.exists():
        sock.unlink()
    proc = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_socket(sock, proc)
        uri = f"nbd+unix:///?socket={sock}"
        t0 = time.perf_counter()
        subprocess.run(["nbdcopy", str(source), uri], check=True)
        t1 = time.perf_counter()
        subprocess.run(["nbdcopy", uri, "null:"], check=True)
        t2 = time.perf_counter()
    finally:
        proc.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(proc.pid, 0)
    return t1 - t0, t2 - t1, usage.ru_maxrss * 1024


def _line(name: str, ratio: float, ours: str, ref: str, pairs: int) -> None:
    print(f"{name:<44} ratio {ratio:6.2f}   armboard {ours:>12}   reference {ref:>12}   pairs {pairs}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--allocators", default="sparse,malloc,zstd")
    parser.add_argument("--size", type=int, default=512, help="MiB of data (default 512)")
    args = parser.parse_args()
    for name in ("nbdkit", "nbdcopy"):
        if shutil.which(name) is None:
            raise SystemExit(f"bench/nbd.py needs {name} (Debian packages nbdkit, libnbd-bin)")
    size = args.size * MIB
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        source = tmpdir / "mixed.img"
        mixed(source, size)
        sock = tmpdir / "nbd.sock"
        for allocator in args.allocators.split(","):
            ours_cmd = [*armboard_command(), "nbd", "memory", str(size), f"allocator={allocator}", "--unix", str(sock)]
            ref_cmd = ["nbdkit", "--foreground", "-U", str(sock), "memory", str(size), f"allocator={allocator}"]
            one_round(ours_cmd, sock, source)          # warm-up: the page cache, the interpreter's files
            one_round(ref_cmd, sock, source)
            ours, ref = [], []
            for _ in range(args.pairs):
                ours.append(one_round(ours_cmd, sock, source))
                ref.append(one_round(ref_cmd, sock, source))
            for what, k in (("write", 0), ("read", 1)):
                mo = statistics.median(r[k] for r in ours)
                mr = statistics.median(r[k] for r in ref)
                ro, rr = args.size / mo, args.size / mr
                _line(f"nbdcopy {what} {args.size} MiB, {allocator} (MiB/s)", ro / rr, f"{ro:.0f} MiB/s",
                      f"{rr:.0f} MiB/s", args.pairs)
            mo = statistics.median(r[2] for r in ours)
            mr = statistics.median(r[2] for r in ref)
            _line(f"peak RSS, {allocator}", mo / mr, f"{mo / MIB:.1f} MiB", f"{mr / MIB:.1f} MiB", args.pairs)


if __name__ == "__main__":
    main()
