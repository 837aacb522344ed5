"""Sweeps: real boots over a grid of kernel options, tunables and RAM sizes, one row per boot.

The model (grid and points, rows, the row store and resume, the summary) is separate from who runs
the points: `runner.run_batch` turns points into rows in any worker process, and the executors in
tools/sweep_executors/ (a local process pool, dask.distributed) only move points and rows about.

Modules: grid (dimensions, points), spec (what points share, input files), rows (one row per point),
runner and warm (warm worker processes, boots forked at the hand-over), helper (for threaded hosts),
store (the append-only row journal, resume), summary (smallest values, headroom, frontier).
"""

from __future__ import annotations

from kernel_sim.sweep.grid import (
           MAX_POINTS,
           Dimension,
           Point,
           grid_points,
           parse_dimension,
           parse_physmem,
           parse_values,
)
from kernel_sim.sweep.rows import COLUMNS, DETERMINISTIC, kmem_cap
from kernel_sim.sweep.spec import SweepSpec, generated_root, request_for, root_image

__all__ = ["COLUMNS", "DETERMINISTIC", "MAX_POINTS", "Dimension", "Point", "SweepSpec", "generated_root",
           "grid_points", "kmem_cap", "parse_dimension", "parse_physmem", "parse_values", "request_for",
           "root_image"]
