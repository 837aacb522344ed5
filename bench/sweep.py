"""`armboard sweep` throughput (issues 3 and 13).

1. Boots per second per core for a 256-point sweep through /etc/rc, one worker pinned to one core:
   warm (the default), --cold, and the code before warm boots (--baseline DIR, target 3x).
2. The same for tuning-only points (--no-loader-conf: no root, no userland), target 5x.
3. Speed-up from 1 to 2 local workers (target 1.8), and dask-local:2 against local -j 2 (target 0.9),
   both as whole commands and as the sweep's own boot phase (the cluster's start-up left out).
4. A point with a 200 MiB root image against one with the 8 MiB default root (target 1.2 or better).
5. Scaling beyond one machine on paper: the per-point cost and the bytes a Dask task moves per point.

Each figure runs the real command in a child process, alternately, and prints the medians.
Usage: python bench/sweep.py [--pairs N] [--baseline DIR]   (DIR: e.g. `git archive main | tar -x -C DIR`)
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT  # noqa: E402

COMMON = ["--physmem", "1G", "--kernel-footprint", "9M", "-o", "LOCORE_MAP_MB=256"]
GRID = ["-g", "VM_KMEM_SIZE_SCALE=1..8", "-g", "NKPT2PG=32..63"]            # 256 points
# For the image comparison every point must boot with both images (NKPT2PG >= 53 maps 200 MiB).
GRID_IMAGE = ["-g", "VM_KMEM_SIZE_SCALE=1..8", "-g", "NKPT2PG=64..79"]    # 128 points
POINTS, POINTS_IMAGE = 256, 128


def sweep(tmp: Path, args: list[str], *, code: Path = ROOT, one_core: bool = False) -> tuple[float, dict]:
    """(wall seconds of the whole command, its --json run figures) of one sweep from scratch."""
    out, js = tmp / "bench.csv", tmp / "bench.json"
    out.unlink(missing_ok=True)
    js.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1")
    argv = [sys.executable, "-m", "tools.cli", "sweep", *args, "--out", str(out), "--json", str(js)]
    if code == ROOT:
        argv += ["--progress", "none"]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True,
                          preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if one_core else None)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"sweep {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    document = json.loads(js.read_text())
    return wall, document.get("run", {}) if isinstance(document, dict) else {}


def medians(tmp: Path, runs: dict[str, tuple[list[str], dict]], pairs: int) -> dict[str, tuple[float, float]]:
    """Run each variant in turn, `pairs` rounds (after one warm-up round): median wall and boot phase."""
    walls: dict[str, list[float]] = {k: [] for k in runs}
    phases: dict[str, list[float]] = {k: [] for k in runs}
    for round_ in range(pairs + 1):
        for name, (args, kw) in runs.items():
            wall, run = sweep(tmp, args, **kw)
            if round_:
                walls[name].append(wall)
                phases[name].append(run.get("seconds", wall))
    return {k: (statistics.median(walls[k]), statistics.median(phases[k])) for k in runs}


def per_point_bytes() -> tuple[int, int]:
    """What one Dask task moves per point: its share of the task (spec + points) and its row back."""
    from kernel_sim import boot as boot_mod
    from kernel_sim.sweep import Dimension, SweepSpec, grid_points
    from kernel_sim.sweep.runner import run_point

    spec = SweepSpec.from_request(boot_mod.BootRequest(kernel_footprint="9M"))
    points = grid_points(("1G",), [Dimension("VM_KMEM_SIZE_SCALE", tuple(map(str, range(1, 9)))),
                                   Dimension("NKPT2PG", tuple(map(str, range(32, 40))))])
    batch = points[:32]
    task = len(pickle.dumps((spec, batch), protocol=5)) // len(batch)
    row = len(pickle.dumps(run_point(spec.base_dict(), points[0]), protocol=5))
    return task, row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before warm boots")
    args = parser.parse_args()
    n = args.pairs
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for label, extra in (("through /etc/rc", []), ("tuning only (--no-loader-conf)", ["--no-loader-conf"])):
            runs = {"warm": ([*COMMON, *extra, *GRID, "-j", "1"], {"one_core": True}),
                    "cold": ([*COMMON, *extra, *GRID, "-j", "1", "--cold"], {"one_core": True})}
            if args.baseline:
                runs["before"] = ([*COMMON, *extra, *GRID, "-j", "1"], {"one_core": True, "code": args.baseline})
            m = medians(tmp, runs, n)
            for name, (wall, _) in m.items():
                print(f"{'sweep ' + label + ': ' + name:<56} {POINTS / wall:6.1f} boots/s per core   "
                      f"({POINTS} boots in {wall:.2f} s, median of {n})")
            if "before" in m:
                print(f"{'sweep ' + label + ': warm vs before':<56} ratio {m['before'][0] / m['warm'][0]:6.2f}")
            print(f"{'sweep ' + label + ': warm vs cold':<56} ratio {m['cold'][0] / m['warm'][0]:6.2f}")
        m = medians(tmp, {"1": ([*COMMON, *GRID, "-j", "1"], {}), "2": ([*COMMON, *GRID, "-j", "2"], {}),
                          "dask": ([*COMMON, *GRID, "--scheduler", "dask-local:2"], {})}, n)
        print(f"{'sweep: speed-up 1 -> 2 workers':<56} ratio {m['1'][0] / m['2'][0]:6.2f}   1 worker {m['1'][0]:.2f} s"
              f"   2 workers {m['2'][0]:.2f} s   (boot phase {m['1'][1] / m['2'][1]:.2f})   pairs {n}")
        print(f"{'sweep: dask-local:2 vs local -j 2 (throughput)':<56} ratio {m['2'][0] / m['dask'][0]:6.2f}   "
              f"local {m['2'][0]:.2f} s   dask {m['dask'][0]:.2f} s   (boot phase {m['2'][1] / m['dask'][1]:.2f}: "
              f"{m['2'][1]:.2f} s vs {m['dask'][1]:.2f} s)   pairs {n}")
        m = medians(tmp, {"200M": ([*COMMON, "--mfsroot-size", "200M", *GRID_IMAGE, "-j", "1"], {"one_core": True}),
                          "8M": ([*COMMON, "--mfsroot-size", "8M", *GRID_IMAGE, "-j", "1"], {"one_core": True})}, n)
        print(f"{'sweep: 200 MiB image point vs 8 MiB (default root)':<56} ratio {m['200M'][0] / m['8M'][0]:6.2f}   "
              f"200M {m['200M'][0]:.2f} s   8M {m['8M'][0]:.2f} s   pairs {n}")
    task, row = per_point_bytes()
    print(f"{'sweep: bytes per point on a Dask link':<56} {task} B of task, {row} B of row back "
          f"(input files once per worker)")


if __name__ == "__main__":
    main()
