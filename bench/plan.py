"""`armboard plan` throughput (issue 3): configurations planned per second in one process.

There is no reference tool to race; the figure is printed against the issue's target of 1,000
configurations per second, as a ratio (above 1.0 meets it). Each configuration is prepared (config
files parsed, layout planned) and planned, as `armboard plan` does, without starting a CPU.

Usage: python bench/plan.py [--configs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 1000.0


def main() -> None:
    from kernel_sim import boot as boot_mod
    from kernel_sim.plan import plan_boot

    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "root.img"
        with image.open("wb") as f:
            f.truncate(200 << 20)
        grid = [(scale, locore, nkpt2pg) for scale in range(1, 9) for locore in (64, 128, 256)
                for nkpt2pg in (32, 64)]
        rates = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for i in range(args.configs):
                scale, locore, nkpt2pg = grid[i % len(grid)]
                request = boot_mod.BootRequest(
                    physmem="2G", kernel_footprint="9M", mfsroot=image, console=None,
                    overrides=[f"VM_KMEM_SIZE_SCALE={scale}", f"LOCORE_MAP_MB={locore}", f"NKPT2PG={nkpt2pg}"])
                plan_boot(boot_mod.prepare(request))
            rates.append(args.configs / (time.perf_counter() - start))
    rate = statistics.median(rates)
    print(f"{'plan: configurations per second':<44} ratio {rate / TARGET:6.2f}   armboard {rate:.0f}/s   "
          f"target {TARGET:.0f}/s   rounds {args.rounds}")


if __name__ == "__main__":
    main()
