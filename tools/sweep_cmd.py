"""`armboard sweep`: real boots over a grid, in parallel workers, to CSV and JSON, resumable.

Rows already in the output file are kept and their points skipped, so an interrupted sweep resumes
where it stopped. A generated root image (`--mfsroot-size`) takes the root image's place, as
`--mfsroot` does: one sparse file that every boot maps copy-on-write, so no boot copies it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from kernel_sim.errors import InputError, check_input_file
from kernel_sim.loader.sizes import parse_size
from kernel_sim.sweep import (
    COLUMNS,
    Dimension,
    Point,
    generated_root,
    grid_points,
    parse_dimension,
    parse_physmem,
    run_point,
)

_BASE: dict = {}


def _init_worker(base: dict) -> None:
    global _BASE
    _BASE = base


def _work(point: Point) -> dict:
    return run_point(_BASE, point)


def read_done(path: Path, points: list[Point]) -> dict[int, dict]:
    """Rows of an earlier run of the same grid (matched by point number and settings)."""
    if not path.exists():
        return {}
    check_input_file(path, what="earlier sweep CSV", where="--out")   # a device or FIFO is never replaced
    by_key = {p.index: p for p in points}
    done = {}
    try:
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    index = int(row["point"])
                except (KeyError, ValueError):
                    raise InputError("not an armboard sweep CSV (no point column)", f"{path}:{line}") from None
                point = by_key.get(index)
                expected = " ".join(f"{n}={v}" for n, v in point.settings) if point else None
                if point is None or row.get("options") != expected or row.get("physmem", "") != (point.physmem or ""):
                    raise InputError("the output file holds another grid: remove it or choose another --out",
                                     f"{path}:{line}")
                done[index] = row
    except UnicodeDecodeError:
        raise InputError("not a CSV file", str(path)) from None
    return done


def progress(done: int, total: int, start: float) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.perf_counter() - start, 1e-9)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} boots, {rate:.1f}/s ")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


SCALE_DIMENSIONS = ("VM_KMEM_SIZE_SCALE", "vm.kmem_size_scale")


def _settings(row: dict) -> dict[str, str]:
    return dict(part.split("=", 1) for part in row["options"].split()) if row["options"] else {}


def _mib(values: list[int]) -> str:
    lo, hi = min(values) // (1 << 20), max(values) // (1 << 20)
    return f"{lo} MiB" if lo == hi else f"{lo}-{hi} MiB"


def scale_summary(rows: list[dict], dim: Dimension) -> list[str]:
    """What the rows say about a kmem scale dimension: which scales boot, which ones VM_KMEM_SIZE_MAX caps
    (they all give the same arena), and what a larger scale buys (free KVA) for what it costs (arena).

    Not "the smallest scale that boots": the smallest is not the best, the scale sizes the kmem arena
    and the rest of the kernel's address space gets what the arena leaves."""
    by_value: dict[str, list[dict]] = {v: [] for v in dim.values}
    for row in rows:
        by_value.setdefault(_settings(row)[dim.name], []).append(row)
    values = [v for v in dim.values if by_value[v]]
    booting = [v for v in values if any(str(r["exit_code"]) == "0" for r in by_value[v])]
    some = " at some point" if any(len(by_value[v]) > 1 for v in values) else ""
    if len(booting) == len(values):
        lines = [f"every {dim.name} in the grid boots{some} ({', '.join(values)})"]
    elif booting:
        lines = [f"{dim.name} boots{some} with {', '.join(booting)} ({len(booting)} of {len(values)} values)"]
    else:
        lines = [f"no {dim.name} in the grid boots"]
    sized = {v: [r for r in by_value[v] if str(r.get("vm_kmem_size", "")).isdigit()] for v in values}
    capped = [v for v in values if sized[v] and all(r.get("kmem_cap") for r in sized[v])]
    if capped:
        caps = sorted({r["kmem_cap"] for v in capped for r in sized[v]})
        sizes = [int(r["vm_kmem_size"]) for v in capped for r in sized[v]]
        lines.append(f"{dim.name} {', '.join(capped)}: vm_kmem_size is capped by {' / '.join(caps)} at "
                     f"{_mib(sizes)} instead of v_page_count / scale pages")
    measured = {v: [r for r in sized[v] if str(r.get("kva_remaining", "")).isdigit()] for v in values}
    with_layout = [v for v in values if measured[v]]        # the rows that got as far as a KVA layout
    ends = [with_layout[0], with_layout[-1]] if with_layout else []
    if len(ends) == 2 and ends[0] != ends[1]:
        lo, hi = (measured[v] for v in ends)
        lines.append(f"{dim.name} trades the kmem arena's size against free KVA: at {ends[0]} the arena is "
                     f"{_mib([int(r['vm_kmem_size']) for r in lo])} and "
                     f"{_mib([int(r['kva_remaining']) for r in lo])} of KVA is left, at {ends[1]} the arena is "
                     f"{_mib([int(r['vm_kmem_size']) for r in hi])} and "
                     f"{_mib([int(r['kva_remaining']) for r in hi])} is left")
    return lines


def minimal_values(rows: list[dict], dims: list[Dimension]) -> dict[str, str]:
    """For each numeric dimension (but the kmem scale, see scale_summary), the smallest value with which
    some point booted."""
    out = {}
    for d in dims:
        if d.name in SCALE_DIMENSIONS:
            continue
        values = []
        for row in rows:
            if str(row["exit_code"]) != "0":
                continue
            values.append(_settings(row)[d.name])
        try:
            out[d.name] = min(values, key=lambda v: parse_size(v))
        except (ValueError, InputError):
            continue
    return out


def heatmap_cells(rows: list[dict], dims: list[Dimension], physmem: tuple) -> tuple:
    """Outcome per pair of the first two varying dimensions: 'all', 'some' or 'none' of the points boot."""
    axes = [d for d in dims if len(d.values) > 1][:2]
    if len(physmem) > 1:
        axes = [Dimension("physmem", tuple(physmem)), *axes][:2]
    if not axes:
        axes = dims[:1] or [Dimension("physmem", tuple(str(p) for p in physmem))]
    x = axes[0]
    y = axes[1] if len(axes) > 1 else Dimension("", ("",))
    results: dict[tuple[str, str], list[bool]] = {}
    for row in rows:
        settings = dict(part.split("=", 1) for part in row["options"].split()) if row["options"] else {}
        settings["physmem"] = row["physmem"]
        key = (settings.get(x.name, ""), settings.get(y.name, ""))
        results.setdefault(key, []).append(str(row["exit_code"]) == "0")
    cells = {k: "all" if all(v) else "some" if any(v) else "none" for k, v in results.items()}
    return cells, x.values, y.values, x.name, y.name


def write_outputs(rows: list[dict], out: Path, json_out: Path | None) -> None:
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows, key=lambda r: int(r["point"])):
            writer.writerow(row)
    os.replace(tmp, out)
    if json_out is not None:
        json_out.write_text(json.dumps(sorted(rows, key=lambda r: int(r["point"])), indent=1, default=str))


def cmd_sweep(args: argparse.Namespace, base_request) -> int:
    dims = [parse_dimension(spec) for spec in args.grid]
    physmem = parse_physmem(args.physmem)
    points = grid_points(physmem, dims)
    if args.jobs is not None and args.jobs < 1:
        raise InputError("needs at least one worker", "-j")
    jobs = args.jobs or os.cpu_count() or 1
    out = args.out
    done = read_done(out, points)
    base = {k: v for k, v in base_request.as_dict().items() if k not in ("console", "physmem")}
    with tempfile.TemporaryDirectory(prefix="armboard-sweep-") as tmp:
        if args.mfsroot_size is not None:
            size = parse_size(args.mfsroot_size, where="--mfsroot-size")
            image = Path(tmp) / f"mfsroot-{args.mfsroot_size}.img"
            base["mfsroot"] = generated_root(base, size, image, f"--mfsroot-size {args.mfsroot_size}")
        todo = [p for p in points if p.index not in done]
        rows = list(done.values())
        start = time.perf_counter()
        if todo:
            if jobs == 1:
                _init_worker(base)
                results = map(_work, todo)
            else:
                import multiprocessing

                pool = multiprocessing.get_context("fork").Pool(jobs, _init_worker, (base,))
                results = pool.imap_unordered(_work, todo)
            try:
                for n, row in enumerate(results, start=1):
                    rows.append(row)
                    progress(n, len(todo), start)
                    if n % 50 == 0:
                        write_outputs(rows, out, None)     # an interrupted sweep keeps what it did
            finally:
                if jobs > 1:
                    pool.terminate()
        wall = time.perf_counter() - start
    write_outputs(rows, out, args.json_out)
    if args.plot is not None:
        from tools.pictures import heatmap_figure, save_figure

        save_figure(heatmap_figure(*heatmap_cells(rows, dims, physmem)), args.plot, "--plot")
    booted = sum(1 for r in rows if str(r["exit_code"]) == "0")
    disagree = [r for r in rows if str(r["plan_agrees"]) not in ("True", "true", "1")]
    print(f"{len(rows)} points ({len(todo)} booted now in {wall:.1f} s with {jobs} worker(s), "
          f"{len(done)} from {out}); {booted} boot, {len(rows) - booted} fail")
    for name, value in minimal_values(rows, dims).items():
        print(f"smallest {name} that boots: {value}")
    for d in dims:
        if d.name in SCALE_DIMENSIONS:
            print("\n".join(scale_summary(rows, d)))
    for row in disagree:
        print(f"plan and boot disagree at point {row['point']} ({row['physmem']} {row['options']}): "
              f"plan {row['plan_stage']} exit {row['plan_exit_code']}, boot {row['stage']} exit {row['exit_code']}")
    return 1 if disagree else 0
