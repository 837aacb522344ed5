"""Snapshot benchmarks (issue 12, item 6): save and restore a 2 GiB board holding 300 MiB of guest data.

The board: `virt` with 2 GiB of RAM; the guest's own shell fills 300 MiB of it. `-c` mounts a
400 MiB tmpfs on /mnt and dd's 300 MiB of mixed data (text from a vocabulary with random runs,
bench/mem.py's fill) into /mnt/fill, so the pages are tmpfs file pages in guest RAM, as a guest
writing a file makes them. Two ways to get there:

* unpack: the data is a compressed image (mkuzip, zlib) preloaded as md1; the guest reads it
  through GEOM UZIP, as an embedded board unpacks its firmware (the kernel config adds
  `device geom_uzip`);
* copy: the data is a plain host file attached as a vnode md; dd copies it, the cheapest way there
  is (one memory copy per byte).

The snapshot is taken at the end of mi_startup (`--save-at done`). Figures, each against a
reference, one line each (ratio, the two medians, pairs):

1. save, in-process (the board's pages found and compressed, the kernel's state pickled, the file
   written) against `zstd -3` of the same touched pages, read from a file and written to a file;
2. the snapshot's size against that `zstd -3` output;
3. restore, in-process (a new board built and loaded, the kernel's state loaded) against
   `zstd -d` of the reference file to /dev/null;
4. restore, the whole `armboard boot --restore FILE` process, against booting to the same point,
   the whole `armboard boot ... -c "mount ...; dd ..."` process, for each way there. Target: the
   restore is faster.

Without a `zstd` command, 1 to 3 are skipped with a message (Debian: apt-get install zstd).

Usage: python bench/snapshot.py [--pairs N] [--size MiB]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import armboard_command, pairs, report  # noqa: E402
from bench.mem import fill  # noqa: E402

MIB = 1 << 20


def guest_command(device: str, size_mib: int) -> str:
    return (f"mount -t tmpfs -o size={size_mib + 100}m tmpfs /mnt; "
            f"dd if=/dev/{device} of=/mnt/fill bs=1m count={size_mib}")


def copy_boot(data: Path, size_mib: int) -> list[str]:
    """Boot arguments of the copy way: a vnode md of the plain file."""
    return ["boot", "--physmem", "2G", "--md-vnode", str(data), "--console", "/dev/null",
            "-c", guest_command("md1", size_mib)]


def unpack_boot(kernconf: Path, image: Path, size_mib: int) -> list[str]:
    """Boot arguments of the unpack way: the uzip image preloaded as md1, the window and L2 pages
    to cover it (the LOCORE_MAP_MB and NKPT2PG armboard plan asks for)."""
    window = image.stat().st_size // MIB + 32
    return ["boot", "--kernconf", str(kernconf), "--physmem", "2G", "--md-image", str(image),
            "-o", f"LOCORE_MAP_MB={window}", "-o", f"NKPT2PG={window // 4 + 8}", "--console", "/dev/null",
            "-c", guest_command("md1.uzip", size_mib)]


def boot_in_process(argv: list[str]):
    from kernel_sim import boot as boot_mod
    from tools.cli import build_parser, request_from_args

    args = build_parser().parse_args(argv)
    request = request_from_args(args, console=None, command=args.guest_command)
    result = boot_mod.run(boot_mod.prepare(request))
    if result.exit_code != 0:
        raise SystemExit(f"the benchmark board did not boot: {result.message}")
    return result


def touched_pages(machine, out: Path) -> int:
    """The pages a snapshot saves (those that differ from a fresh board), into a file, in order."""
    from board.memory import PAGE, changed_pages

    size = 0
    with out.open("wb") as f:
        for region in machine.phys.regions:
            view = memoryview(region.host)
            for first, count in changed_pages(region.host, region.name if region.kind == "file" else None):
                f.write(view[first * PAGE:(first + count) * PAGE])
                size += count * PAGE
    return size


def _alternate(a: Callable[[], object], b: Callable[[], object], n: int,
               between: Callable[[], object] = lambda: None) -> tuple[list[float], list[float]]:
    """a and b in turn (after one warm-up each), `between` untimed after each a."""
    a()
    between()
    b()
    ra, rb = [], []
    for _ in range(n):
        t = time.perf_counter()
        a()
        ra.append(time.perf_counter() - t)
        between()
        t = time.perf_counter()
        b()
        rb.append(time.perf_counter() - t)
    return ra, rb


def in_process(tmp: Path, argv: list[str], size_mib: int, n: int) -> Path:
    """Lines 1 to 3 for the boot `argv`; returns its snapshot."""
    from kernel_sim import boot_snapshot
    from kernel_sim.boot import BootRequest

    result = boot_in_process(argv)
    where = boot_snapshot.position_of(result)
    snap = tmp / "unpack.snap"
    raw = tmp / "touched.bin"
    size = touched_pages(result.machine, raw)
    print(f"{'':<44} board: virt, 2 GiB RAM, {size / MIB:.1f} MiB of touched pages; snapshot at {where.point}")
    zstd = shutil.which("zstd")
    ref_zst = tmp / "touched.zst"

    def save() -> None:
        boot_snapshot.save_position(snap, where)

    def zstd_compress() -> None:
        subprocess.run([zstd, "-3", "-q", "-f", "-o", str(ref_zst), str(raw)], check=True)

    def restore() -> None:
        boot_snapshot.load(snap, BootRequest(console=None))

    def zstd_decompress() -> None:
        with open(os.devnull, "wb") as sink:
            subprocess.run([zstd, "-d", "-q", "-c", str(ref_zst)], stdout=sink, check=True)

    if zstd is None:
        print("zstd command not found (Debian: apt-get install zstd): skipping the lines against zstd -3")
        save()
        return snap
    a, b = _alternate(save, zstd_compress, n)
    report(f"save 2 GiB board, {size_mib} MiB touched (vs zstd -3)", a, b)
    ours, ref = snap.stat().st_size, ref_zst.stat().st_size
    print(f"{'snapshot size (vs zstd -3 of the pages)':<44} ratio {ours / ref:6.2f}   armboard "
          f"{ours / MIB:.1f} MiB   reference {ref / MIB:.1f} MiB   (pages {size / MIB:.1f} MiB)")
    a, b = _alternate(restore, zstd_decompress, n, between=gc.collect)   # each loaded board goes, untimed
    report("restore in-process (vs zstd -d to /dev/null)", a, b)
    return snap


def make_images(tmp: Path, size_mib: int) -> tuple[Path, Path, Path]:
    """The plain data, its uzip image and a kernel config with GEOM UZIP."""
    from kernel_sim.boot import DEFAULT_KERNCONF

    data = tmp / "mixed.img"
    fill(data, size_mib * MIB)
    image = tmp / "mixed.uzip"
    subprocess.run(armboard_command() + ["mkuzip", "-o", str(image), str(data)], check=True, stdout=subprocess.DEVNULL)
    kernconf = tmp / "UZIP-VIRT"
    kernconf.write_text(Path(DEFAULT_KERNCONF).read_text() + "device\t\tgeom_uzip\n")
    return data, image, kernconf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--size", type=int, default=300, help="MiB of guest data (default 300)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, image, kernconf = make_images(tmp, args.size)
        unpack = unpack_boot(kernconf, image, args.size)
        snap = in_process(tmp, unpack, args.size, args.pairs)
        gc.collect()
        cli = armboard_command()
        copy_snap = tmp / "copy.snap"
        subprocess.run(cli + copy_boot(data, args.size) + ["--save-at", "done", str(copy_snap)], check=True,
                       stderr=subprocess.DEVNULL)
        for way, boot_args, path in (("unpack", unpack, snap), ("copy", copy_boot(data, args.size), copy_snap)):
            ra, rb = pairs(cli + ["boot", "--restore", str(path), "--console", "/dev/null"], cli + boot_args,
                           args.pairs)
            report(f"restore vs boot to there ({way}), process", [w for w, _ in ra], [w for w, _ in rb])


if __name__ == "__main__":
    main()
