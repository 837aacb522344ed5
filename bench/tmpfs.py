"""tmpfs in a booted kernel (issue 5 part 6): writing and reading a file, against a memory copy.

The kernel is booted for real (virt board, no preloaded image) and tmpfs is mounted over its page
allocator, kmem and swap (kernel_sim.vm.pageout.vm_swap_init), as the kernel mounts it. Each pair
writes one file of mixed data (1 MiB stretches of random bytes, text and zeros, in turn) in 1 MiB
writes, reads it back in 1 MiB reads (checked), and unlinks it; the reference slices the same data
into and out of a preallocated bytearray. Variants:

* RAM only: 512 MiB of RAM, so the file fits;
* with swap: 128 MiB of RAM and a 512 MiB swap device (sparse, then zstd), so the file is about
  twice the free RAM and the page daemon pages it out while it is written and in while it is read.

The ratio is reference speed / ours (how many times slower). Usage:
python bench/tmpfs.py [--size MiB] [--pairs N]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.swap import MIB, line, mixed  # noqa: E402

REQUEST = MIB


def boot_tmpfs(physmem: str, swap: str | None, tmp: Path):
    """A booted kernel's tmpfs mount and VM; `swap` is "SIZE:ALLOCATOR" or None."""
    from board.profile import PROFILE_DIR
    from kernel_sim import boot as boot_mod
    from kernel_sim.fs.tmpfs import TmpfsMount
    from kernel_sim.fs.vfs import MallocCharges
    from kernel_sim.vm.pageout import vm_swap_init

    board = "virt"
    if swap is not None:
        size, _, kind = swap.partition(":")
        path = tmp / f"virt-swap-{kind}.toml"
        base = Path(PROFILE_DIR, "virt.toml").read_text()
        path.write_text(base + f'\n[swap]\nsize = "{size}"\nallocator = "{kind}"\n')
        board = str(path)
    result = boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(board=board, physmem=physmem, loader_conf=None)))
    if result.exit_code != 0:
        raise SystemExit(f"boot failed: {result.message}")
    s = result.startup
    vm = vm_swap_init(result.machine, s.pages, s.sysctl, printf=lambda _s: None)
    clock = itertools.count(1)
    mount = TmpfsMount.mount({}, pages=s.pages, kmem=MallocCharges(s.malloc), now=lambda: float(next(clock)),
                             covered=None, vm=vm)
    return mount, vm


def through_tmpfs(m, data: bytes) -> tuple[float, float]:
    ino = m.create(2, "file", 0o644, 0, 0)
    view = memoryview(data)
    start = time.perf_counter()
    for off in range(0, len(data), REQUEST):
        m.write(ino, off, view[off:off + REQUEST])
    wrote = time.perf_counter() - start
    start = time.perf_counter()
    back = [m.read(ino, off, REQUEST) for off in range(0, len(data), REQUEST)]
    read = time.perf_counter() - start
    assert b"".join(back) == data, "tmpfs: data did not come back"
    m.unlink(2, "file")
    return wrote, read


def through_copy(data: bytes) -> tuple[float, float]:
    buf = bytearray(len(data))
    view, src = memoryview(buf), memoryview(data)
    start = time.perf_counter()
    for off in range(0, len(data), REQUEST):
        view[off:off + REQUEST] = src[off:off + REQUEST]
    wrote = time.perf_counter() - start
    start = time.perf_counter()
    back = [bytes(view[off:off + REQUEST]) for off in range(0, len(data), REQUEST)]
    read = time.perf_counter() - start
    assert b"".join(back) == data
    return wrote, read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256, help="MiB in the file (default 256)")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    data = mixed(args.size * MIB)
    variants = [("RAM only", "512M", None), ("swap sparse", "128M", "512m:sparse"), ("swap zstd", "128M", "512m:zstd")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, physmem, swap in variants:
            m, vm = boot_tmpfs(physmem, swap, Path(tmp))
            free = vm.pages.free_count * 4096 // MIB
            ours, ref = [], []
            for _ in range(args.pairs):
                ours.append(through_tmpfs(m, data))
                ref.append(through_copy(data))
            w, r = (statistics.median(x) for x in zip(*ours, strict=True))
            rw, rr = (statistics.median(x) for x in zip(*ref, strict=True))
            line(f"tmpfs write {args.size} MiB, {name}", args.size / w, args.size / rw, "MiB/s", args.pairs, True)
            line(f"tmpfs read {args.size} MiB, {name}", args.size / r, args.size / rr, "MiB/s", args.pairs, True)
            print(f"  ({free} MiB of RAM free at mount; paged out {vm.pager.v_swappgsout} pages, in "
                  f"{vm.pager.v_swappgsin}, page daemon runs {vm.daemon.v_pdwakeups})")


if __name__ == "__main__":
    main()
