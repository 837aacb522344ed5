"""Flash benchmarks (issue 4).

1. Guest reads of a CFI flash bank in read-array mode against guest reads of RAM: the same loop of
   loads over 64 MiB, timed around Machine.run (target ratio 1.2 or better: read-array flash is
   plain memory to the CPU).
2. A geom_map `search:` hint over 64 MiB of flash contents (the probes g_map_parse_part makes, key
   at the last step), against a plain Python scan of the same bytes for the same key at the same step.

Usage: python bench/flash.py [--pairs N]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report  # noqa: E402

RAM = 0x40000000
LOOP = (0xE4912004,   # ldr r2, [r1], #4
        0xE2533001,   # subs r3, r3, #1
        0x1AFFFFFC,   # bne loop
        0xE3A00018,   # mov r0, #0x18      SYS_EXIT
        0xE59F1000,   # ldr r1, [pc]
        0xEF123456,   # svc 0x123456
        0x00020026)   # ADP_Stopped_ApplicationExit


def guest_read_seconds(base: int, size: int) -> float:
    from board.machine import Machine
    from board.profile import load_profile
    from board.ucapi import UC_ARM_REG_R1, UC_ARM_REG_R3

    machine = Machine(load_profile("virt"), 256 << 20)
    machine.phys.write(RAM, struct.pack(f"<{len(LOOP)}I", *LOOP))
    machine.uc.reg_write(UC_ARM_REG_R1, base)
    machine.uc.reg_write(UC_ARM_REG_R3, size // 4)
    start = time.perf_counter()
    stop = machine.run(RAM, timeout=60)
    elapsed = time.perf_counter() - start
    assert stop.kind == "exit", stop
    return elapsed


def search_seconds(image: bytes, key: bytes) -> tuple[float, float]:
    from kernel_sim.geom.map_hints import parse_map_hints, read_from
    from kernel_sim.loader.hints import parse_hints_text

    hints = parse_hints_text('hint.map.0.at="cfid0"\nhint.map.0.name="tail"\n'
                             'hint.map.0.start="search:0x0:0x10000:.!/bin/sh"\nhint.map.0.end=0x4000000\n', "bench")
    reader = read_from(image)
    start = time.perf_counter()
    parts = parse_map_hints(hints, "cfid0", len(image), 512, reader, bootverbose=False, printf=lambda s: None)
    ours = time.perf_counter() - start
    assert parts and parts[0].start == len(image) - 0x10000
    start = time.perf_counter()
    found = next(off for off in range(0, len(image), 0x10000) if image[off + 1:off + len(key)] == key[1:])
    plain = time.perf_counter() - start
    assert found == parts[0].start
    return ours, plain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    size = 64 << 20
    flash, ram = [], []
    for _ in range(args.pairs):
        flash.append(guest_read_seconds(0x00000000, size))      # flash bank 0, read-array mode
        ram.append(guest_read_seconds(RAM + (64 << 20), size))
    report("guest reads, flash (read-array) vs RAM", flash, ram)
    image = bytearray(b"\xff") * size
    key = b"#!/bin/sh"
    image[size - 0x10000:size - 0x10000 + len(key)] = key
    pairs = [search_seconds(bytes(image), key) for _ in range(args.pairs)]
    report("geom_map search over 64 MiB vs memory scan", [p[0] for p in pairs], [p[1] for p in pairs])


if __name__ == "__main__":
    main()
