"""Batches of points for the executors: points that share their guest boot go together.

A worker keeps the board at the hand-over of the points it last ran (warm.StageServer), so the points
that share one should reach the same worker one after the other. Which dimensions change the guest
boot is found by asking: for each dimension, do two points that differ only there have the same
hand-over key? The points are then ordered by the dimensions that do (the "early" ones) and cut into
batches along those groups. Only the order depends on this; every row is the same either way.
"""

from __future__ import annotations

import math

from kernel_sim.errors import InputError
from kernel_sim.sweep.grid import Point
from kernel_sim.sweep.spec import SweepSpec, request_for, worker_base

MAX_BATCH = 32


def late_dimensions(spec: SweepSpec, points: list[Point]) -> set[str]:
    """Names of the dimensions that leave the guest boot unchanged (checked on the first point)."""
    from kernel_sim import boot as boot_mod
    from kernel_sim.sweep.warm import handover_key

    if not points or not spec.warm:
        return set()
    try:
        base = worker_base(spec)
    except InputError:
        return set()

    def key(point: Point) -> str | None:
        try:
            return handover_key(boot_mod.prepare(request_for(base, point, timeout=spec.timeout)))
        except InputError:
            return None

    first = points[0]
    first_key = key(first)
    if first_key is None:
        return set()
    late = set()
    for name, value in first.settings:
        other = next((p for p in points if dict(p.settings)[name] != value
                      and all(v == w for (n, v), (_, w) in zip(p.settings, first.settings, strict=True) if n != name)),
                     None)
        if other is not None and other.physmem == first.physmem and key(other) == first_key:
            late.add(name)
    return late


def batches(spec: SweepSpec, points: list[Point], parallelism: int) -> list[list[Point]]:
    """The points in batches: each batch holds whole groups of points that share their early settings
    where it can, and there are enough batches to keep `parallelism` workers busy."""
    if not points:
        return []
    late = late_dimensions(spec, points)

    def early(p: Point) -> tuple:
        return (p.physmem or "", *(v for n, v in p.settings if n not in late))

    order: dict[tuple, int] = {}
    for p in points:
        order.setdefault(early(p), len(order))
    groups: dict[tuple, list[Point]] = {}
    for p in sorted(points, key=lambda p: (order[early(p)], p.index)):
        groups.setdefault(early(p), []).append(p)
    size = max(1, min(MAX_BATCH, math.ceil(len(points) / (max(parallelism, 1) * 4))))
    out: list[list[Point]] = []
    current: list[Point] = []
    for group in groups.values():
        if current and len(current) + len(group) > size:
            out.append(current)
            current = []
        for start in range(0, len(group), size):
            chunk = group[start:start + size]
            if len(chunk) == size:
                out.append(chunk)
            else:
                current.extend(chunk)
                if len(current) >= size:
                    out.append(current)
                    current = []
    if current:
        out.append(current)
    return out
