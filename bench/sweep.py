"""`armboard sweep` throughput (issue 3).

1. Boots per second per core on the default board (one worker).
2. Speed-up from 1 to 2 workers on the same grid (target 1.8 or more).
3. A point with a 200 MiB md_image against one with a 2 MiB image (target 1.2 or better).

Each figure runs the real command in a child process, alternately, and prints the medians.
Usage: python bench/sweep.py [--pairs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import armboard_command, run_measured  # noqa: E402

GRID = ["-g", "VM_KMEM_SIZE_SCALE=1..8", "-g", "NKPT2PG=32..47"]   # 128 boots
# For the image comparison every point must boot with both images (NKPT2PG >= 53 maps 200 MiB).
GRID_IMAGE = ["-g", "VM_KMEM_SIZE_SCALE=1..8", "-g", "NKPT2PG=64..79"]


def sweep(tmp: Path, jobs: int, extra: list[str], name: str, grid: list[str] = GRID) -> float:
    out = tmp / f"{name}.csv"
    out.unlink(missing_ok=True)
    wall, _ = run_measured([*armboard_command(), "sweep", *grid, "-j", str(jobs), "--out", str(out), *extra])
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    points = 128
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        one, two = [], []
        big, small = [], []
        common = ["--physmem", "1G", "--kernel-footprint", "9M", "-o", "LOCORE_MAP_MB=256"]
        for _ in range(args.pairs):
            one.append(sweep(tmp, 1, [*common, "--mfsroot-size", "2M"], "one"))
            two.append(sweep(tmp, 2, [*common, "--mfsroot-size", "2M"], "two"))
            big.append(sweep(tmp, 1, [*common, "--mfsroot-size", "200M"], "big", GRID_IMAGE))
            small.append(sweep(tmp, 1, [*common, "--mfsroot-size", "2M"], "small", GRID_IMAGE))
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"{'sweep: boots per second per core (1 worker)':<44} {points / m1:6.1f}/s   "
          f"({points} boots in {m1:.2f} s, median of {args.pairs})")
    print(f"{'sweep: speed-up 1 -> 2 workers':<44} ratio {m1 / m2:6.2f}   1 worker {m1:.2f} s   "
          f"2 workers {m2:.2f} s   pairs {args.pairs}")
    mb, ms = statistics.median(big), statistics.median(small)
    print(f"{'sweep: 200 MiB image point vs 2 MiB':<44} ratio {mb / ms:6.2f}   200M {mb:.2f} s   "
          f"2M {ms:.2f} s   pairs {args.pairs}")


if __name__ == "__main__":
    main()
