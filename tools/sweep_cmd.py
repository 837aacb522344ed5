"""`armboard sweep`: real boots over a grid, on a local process pool or a Dask cluster, resumable.

The rows go to the journal (--out) as points finish; a sweep that is killed resumes from it without
running a finished point again. The summary answers the tuning question: for each swept option the
smallest value that boots and the headroom it leaves, the frontier of minimal configurations that
boot, what the kmem scale trades. --json carries the rows and the same answers.

Exit status: 0 every point ran (a guest failure is a result); 1 some points could not run (their
worker died past its retries, or their boot process crashed), or plan and boot disagreed; 2 bad
usage or input (bad grid, unreachable scheduler), before any point ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import parse_size
from kernel_sim.sweep import Dimension, SweepSpec, grid_points, parse_dimension, parse_physmem
from kernel_sim.sweep.store import RowStore
from kernel_sim.sweep.summary import (
    SCALE_DIMENSIONS,
    booted,
    frontier_text,
    headroom_text,
    scale_summary,
    settings_of,
    summary,
)

FSYNC_EVERY = 0.2       # seconds: each row is written at once; the journal is fsynced at least this often


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
        settings = settings_of(row)
        key = (settings.get(x.name, ""), settings.get(y.name, ""))
        results.setdefault(key, []).append(booted(row))
    cells = {k: "all" if all(v) else "some" if any(v) else "none" for k, v in results.items()}
    return cells, x.values, y.values, x.name, y.name


def draw(path: Path, rows: list[dict], dims: list[Dimension], physmem: tuple) -> None:
    """The heatmap, written to a new file renamed over the old one: a viewer never sees half a picture."""
    from tools.pictures import heatmap_figure, save_figure

    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    save_figure(heatmap_figure(*heatmap_cells(rows, dims, physmem)), tmp, "--plot")
    os.replace(tmp, path)


def _check_args(args: argparse.Namespace) -> None:
    if args.plot is not None and args.plot.suffix.lower() not in (".svg", ".png"):
        raise InputError(f"{args.plot.name}: a picture is .svg or .png", "--plot")
    if args.plot_every is not None and (args.plot_every < 1 or args.plot is None):
        raise InputError("needs --plot FILE and a count of at least 1", "--plot-every")
    if not args.timeout > 0:
        raise InputError("the per-point time limit must be more than 0 seconds", "--timeout")
    if args.retries < 0:
        raise InputError("cannot be negative", "--retries")


def cmd_sweep(args: argparse.Namespace, base_request) -> int:
    _check_args(args)
    dims = [parse_dimension(spec) for spec in args.grid]
    physmem = parse_physmem(args.physmem)
    points = grid_points(physmem, dims)
    size = None
    if args.mfsroot_size is not None:
        size = parse_size(args.mfsroot_size, where="--mfsroot-size")
    spec = SweepSpec.from_request(base_request, mfsroot_size=size, mfsroot_size_text=args.mfsroot_size or "",
                                  timeout=args.timeout, warm=not args.cold)
    if size is not None:
        from kernel_sim.sweep.spec import check_generated_root

        check_generated_root(spec.base_dict(), size, f"--mfsroot-size {args.mfsroot_size}")
    store = RowStore(args.out, points)
    done = store.load()
    rows: dict[int, dict] = dict(done)
    todo = [p for p in points if p.index not in done]
    failed: dict[int, str] = {}
    run = {"scheduler": args.scheduler, "workers": 0, "booted_now": 0, "seconds": 0.0, "resumed": len(done)}
    if todo:
        run.update(_run(args, spec, store, todo, points, rows, failed, dims, physmem))
        store.compact(list(rows.values()))
    ordered = sorted(rows.values(), key=lambda r: int(r["point"]))
    answers = summary(ordered, dims, physmem)
    if args.plot is not None:
        draw(args.plot, ordered, dims, physmem)
    by_index = {p.index: p for p in points}
    failures = [{"point": i, "physmem": by_index[i].physmem or "", "options": by_index[i].options_text, "why": why}
                for i, why in sorted(failed.items())]
    if args.json_out is not None:
        document = json.dumps({"rows": ordered, "summary": answers, "failed_to_run": failures, "run": run},
                              indent=1, default=str)
        if args.json_out == "-":
            print(document)
        else:
            try:
                Path(args.json_out).write_text(document + "\n")
            except OSError as exc:
                raise InputError(f"cannot write it: {describe_host(exc)}", f"--json {args.json_out}") from None
    if args.json_out != "-":
        _print_summary(ordered, answers, run, failures, dims, args.out)
    return 1 if failures or answers["plan_disagrees"] else 0


def _run(args, spec: SweepSpec, store: RowStore, todo: list, points: list, rows: dict, failed: dict,
         dims: list[Dimension], physmem: tuple) -> dict:
    from kernel_sim.sweep.batching import batches
    from kernel_sim.sweep.runner import run_batch
    from kernel_sim.sweep.spec import input_files
    from tools.sweep_executors import Item, Note, open_executor
    from tools.sweep_progress import Progress

    executor = open_executor(args.scheduler, args.jobs, args.retries)
    store.open()
    progress = None
    try:
        plan = batches(spec, todo, executor.parallelism)
        files = input_files(spec, todo) if executor.name != "local" else []
        progress = Progress(len(points), len(points) - len(todo), args.progress)
        by_index = {p.index: p for p in points}
        start = time.monotonic()
        synced = start
        booted_now = 0
        for event in executor.run(run_batch, spec, plan, files):
            if isinstance(event, Note):
                progress.write(f"armboard: {event.text}")
                continue
            if isinstance(event, Item) and event.kind == "row":
                row = event.value
                rows[event.index] = row
                store.append([row])                 # at once: a kill loses no finished row
                booted_now += 1
                if time.monotonic() - synced >= FSYNC_EVERY:
                    store.sync()
                    synced = time.monotonic()
            else:
                why = event.value if isinstance(event, Item) else event.why
                failed[event.index] = str(why)
                point = by_index[event.index]
                progress.write(f"armboard: point {point.index} ({point.key}): did not run: {why}")
            progress.update()
            if args.plot_every and (booted_now + len(failed)) % args.plot_every == 0:
                draw(args.plot, list(rows.values()), dims, physmem)
        store.sync()
        return {"workers": executor.parallelism, "booted_now": booted_now,
                "seconds": round(time.monotonic() - start, 3)}
    finally:
        if progress is not None:
            progress.close()
        executor.close()
        store.close()


def _print_summary(rows: list[dict], answers: dict, run: dict, failures: list[dict], dims: list[Dimension],
                   out: Path) -> None:
    seconds = run["seconds"]
    rate = f", {run['booted_now'] / seconds:.1f} boots/s" if seconds else ""
    workers = f" with {run['workers']} {run['scheduler']} worker(s)" if run["workers"] else ""
    failed = f", {len(failures)} did not run" if failures else ""
    print(f"{len(rows)} points ({run['booted_now']} booted now in {seconds:.1f} s{workers}{rate}, "
          f"{run['resumed']} from {out}); {answers['boot']} boot, {answers['fail']} fail{failed}")
    for best in answers["best"]:
        room = headroom_text(best["headroom"])
        print(f"{best['kind']} {best['name']} that boots: {best['value']}" + (f" ({room})" if room else ""))
    for d in dims:
        if d.name in SCALE_DIMENSIONS:
            print("\n".join(scale_summary(rows, d)))
    if answers["frontier"]:
        print(f"frontier, the minimal configurations that boot ({len(answers['frontier'])}):")
        for entry in answers["frontier"]:
            print(f"  {frontier_text(entry)}")
    by_point = {int(r["point"]): r for r in rows}
    for index in answers["plan_disagrees"]:
        row = by_point[index]
        print(f"plan and boot disagree at point {index} ({row['physmem']} {row['options']}): "
              f"plan {row['plan_stage']} exit {row['plan_exit_code']}, boot {row['stage']} exit {row['exit_code']}")
    if failures:
        print(f"{len(failures)} point(s) did not run (see above); a rerun with the same --out runs them",
              file=sys.stderr)
