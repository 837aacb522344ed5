"""Swap stores (issue 5 part 6): the board's sparse, malloc and zstd allocators against a memory copy.

Each pair writes the same mixed data (1 MiB stretches of random bytes, text and zeros, in turn) into
a fresh store in 64 KiB requests -- nsw_cluster_max pages, the largest write the swap pager makes --
and reads it back in the same requests, checked against the input; the reference does the same
slicing into and out of a preallocated bytearray (a plain memory copy, the limit). Figures:

* write and read speed in MiB/s; the ratio is reference speed / ours (how many times slower, as the
  time ratio of bench.common.report);
* memory the store holds after the write: the allocator's own accounting (`resident_bytes`: data
  pages and table directories) against the copy's size; and the growth of this process's resident
  set (/proc/self/statm) from before the store was made (after malloc_trim) to the end of the write,
  against the same for the copy (the rougher figure: it includes the allocator's own overheads).

Usage: python bench/swap.py [--size MiB] [--pairs N] [--allocators sparse,malloc,zstd]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REQUEST = 16 * 4096        # sys/vm/swap_pager.c nsw_cluster_max pages of 4 KiB
MIB = 1 << 20


def mixed(size: int) -> bytes:
    parts = []
    for k in range(0, size, MIB):
        n = min(MIB, size - k)
        kind = (k // MIB) % 3
        if kind == 0:
            parts.append(os.urandom(n))
        elif kind == 1:
            parts.append((b"%010d the quick brown fox jumps over the lazy dog\n" % k * (n // 50 + 1))[:n])
        else:
            parts.append(bytes(n))
    return b"".join(parts)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settle() -> None:
    """Free what earlier rounds left and hand it back to the OS, so RSS growth is this round's."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):   # not glibc: the figure is only rougher
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def through_store(kind: str, data: bytes) -> tuple[float, float, int, int]:
    """(write s, read s, resident_bytes, RSS growth) for one fresh store."""
    from board.storage import open_allocator

    settle()
    base = rss()
    store = open_allocator(kind, len(data))
    view = memoryview(data)
    start = time.perf_counter()
    for off in range(0, len(data), REQUEST):
        store.write(off, view[off:off + REQUEST])
    wrote = time.perf_counter() - start
    held, grown = store.resident_bytes, rss() - base
    start = time.perf_counter()
    back = [store.read(off, REQUEST) for off in range(0, len(data), REQUEST)]
    read = time.perf_counter() - start
    assert b"".join(back) == data, f"{kind}: data did not come back"
    del back
    store.close()
    return wrote, read, held, grown


def through_copy(data: bytes) -> tuple[float, float, int, int]:
    settle()
    base = rss()
    buf = bytearray(len(data))
    view, src = memoryview(buf), memoryview(data)
    start = time.perf_counter()
    for off in range(0, len(data), REQUEST):
        view[off:off + REQUEST] = src[off:off + REQUEST]
    wrote = time.perf_counter() - start
    grown = rss() - base
    start = time.perf_counter()
    back = [bytes(view[off:off + REQUEST]) for off in range(0, len(data), REQUEST)]
    read = time.perf_counter() - start
    assert b"".join(back) == data
    return wrote, read, len(buf), grown


def line(name: str, ours: float, ref: float, unit: str, pairs: int, higher_is_better: bool) -> None:
    ratio = (ref / ours if higher_is_better else ours / ref) if ours and ref else float("inf")
    print(f"{name:<44} ratio {ratio:6.2f}   armboard {ours:8.1f} {unit}   reference {ref:8.1f} {unit}   "
          f"pairs {pairs}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="MiB of data (default 512)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--allocators", default="sparse,malloc,zstd")
    args = parser.parse_args()
    size = args.size * MIB
    data = mixed(size)
    for kind in args.allocators.split(","):
        ours, ref = [], []
        for _ in range(args.pairs):
            ours.append(through_store(kind, data))
            ref.append(through_copy(data))
        med = [statistics.median(x) for x in zip(*ours, strict=True)]
        rmed = [statistics.median(x) for x in zip(*ref, strict=True)]
        mib = size / MIB
        line(f"swap write {args.size} MiB, {kind} vs memory copy", mib / med[0], mib / rmed[0], "MiB/s",
             args.pairs, True)
        line(f"swap read {args.size} MiB, {kind} vs memory copy", mib / med[1], mib / rmed[1], "MiB/s",
             args.pairs, True)
        line(f"swap held, {kind} (resident_bytes) vs copy", med[2] / MIB, rmed[2] / MIB, "MiB", args.pairs, False)
        line(f"swap RSS growth, {kind} vs copy", med[3] / MIB, rmed[3] / MIB, "MiB", args.pairs, False)


if __name__ == "__main__":
    main()
