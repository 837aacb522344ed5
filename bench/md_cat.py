"""Reading a 100 MiB file from the md root with the guest's cat, against the host's cat of the same file.

The guest side boots a root image made by makefs holding the file, then runs the guest's own cat
(kernel_sim/userland/commands/cat.py) in a process of the booted kernel with its output on /dev/null:
read(2) through the VFS, the UFS reader, GEOM and md's preload over guest RAM. The host side is
`cat FILE > /dev/null` with the file in the page cache (one warm-up read first). The figure is the
guest's throughput over the host's (issue 5's target: 0.25 or better).

    python bench/md_cat.py [--size-mib 100] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel_sim.boot import BootRequest, prepare, run  # noqa: E402
from kernel_sim.kern.sysapi import O_WRONLY  # noqa: E402
from kernel_sim.userland.commands import load  # noqa: E402


def build_image(tmp: Path, size: int) -> Path:
    tree = tmp / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "dev").mkdir()
    (tree / "etc" / "rc").write_text("true\n")
    with (tree / "big").open("wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(block)
    image = tmp / "root.img"
    subprocess.run(["makefs", "-t", "ffs", "-o", "version=2", "-s", f"{(size >> 20) + 16}m", str(image), str(tree)],
                   check=True, capture_output=True)
    return image


def guest_cat_seconds(image: Path, pairs: int) -> list[float]:
    result = run(prepare(BootRequest(mfsroot=image, physmem="512M", loader_conf=None, console=None,
                                     overrides=["LOCORE_MAP_MB=128"],
                                     tunables=[("vfs.root.mountfrom", "ufs:/dev/md0")])))
    assert result.exit_code == 0, result.message
    from kernel_sim.kern.syscalls import Syscalls

    init = Syscalls.for_init(result.startup.kernel)
    cat = load("cat")
    times = []
    for _ in range(pairs + 1):                      # the first run warms the UFS reader's caches
        proc = init.spawn_kstack("cat")
        proc.dup2(proc.open("/dev/null", O_WRONLY), 1)
        start = time.perf_counter()
        status = cat(proc, ["cat", "/big"])
        times.append(time.perf_counter() - start)
        proc.exit(status)
        assert status == 0
    return times[1:]


def host_cat_seconds(path: Path, pairs: int) -> list[float]:
    times = []
    with open(os.devnull, "wb") as null:
        for _ in range(pairs + 1):
            start = time.perf_counter()
            subprocess.run(["cat", str(path)], stdout=null, check=True)
            times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("makefs") is None:
        raise SystemExit("makefs is not installed (Debian package makefs)")
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="armboard-bench-") as tmp:
        image = build_image(Path(tmp), size)
        guest = guest_cat_seconds(image, args.pairs)
        host = host_cat_seconds(Path(tmp) / "tree" / "big", args.pairs)
    mg, mh = statistics.median(guest), statistics.median(host)
    mib = size / 2**20
    print(f"{'md root cat ' + str(args.size_mib) + ' MiB (guest/host throughput)':<44} ratio {mh / mg:6.2f}   "
          f"armboard {mib / mg:.0f} MiB/s ({mg:.3f} s)   host cat {mib / mh:.0f} MiB/s ({mh:.3f} s)   "
          f"pairs {args.pairs}")


if __name__ == "__main__":
    main()
