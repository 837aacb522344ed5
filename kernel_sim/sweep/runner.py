"""The point runner: turns points into rows in a worker process, knowing nothing of who called it.

`run_batch(spec, points, root)` is the one function an executor calls, in any process: a local pool's
worker or a Dask worker thread. Per process, the runner does the per-process work once (imports, the
guest ELF, the board profile, the generated root image, one warm-up boot so that every lazily imported
module is loaded) and forks each boot from that warm state, so a boot pays only for itself. Points of
a batch that share their guest boot start from one board at the hand-over (`warm.StageServer`);
`spec.warm = False` boots every point from reset (the same rows, slower).

Forking needs a process with one thread. A multi-threaded host (a Dask worker) gets a helper process
per thread (`python -m kernel_sim.sweep.helper`) that runs the same code.

Each yielded item is (point index, "row", row) or (point index, "failed", why) for a point that could
not run (its process crashed): a failed point has no row, so a resumed sweep runs it again.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path

from kernel_sim.errors import InputError
from kernel_sim.sweep import warm
from kernel_sim.sweep.grid import Point
from kernel_sim.sweep.rows import boot_row, input_error_row, plan_fields, timeout_row
from kernel_sim.sweep.spec import SweepSpec, request_for, worker_base

Item = tuple[int, str, object]
MAX_STAGE_SERVERS = 2          # boards kept at the hand-over per worker (points arrive sorted by them)


def run_batch(spec: SweepSpec, points: Iterable[Point], root: Path = Path("/")) -> Iterator[Item]:
    """Rows of `points`, one item per point as it finishes (the executor's task function)."""
    points = list(points)
    if threading.active_count() > 1:
        from kernel_sim.sweep.helper import helper_for_this_thread

        yield from helper_for_this_thread().run(spec, points, root)
        return
    yield from runner_for(spec, root).run(points)


_RUNNERS: dict[tuple[str, Path], PointRunner] = {}


def runner_for(spec: SweepSpec, root: Path) -> PointRunner:
    key = (spec.digest(), root)
    runner = _RUNNERS.get(key)
    if runner is None:
        for old in _RUNNERS.values():
            old.close()
        _RUNNERS.clear()
        runner = _RUNNERS[key] = PointRunner(spec.rebased(root))
    return runner


class PointRunner:
    """The warm state of one process for one sweep, and its stage servers."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.base: dict | None = None
        self.base_error: str | None = None
        self.warmed = False
        self.servers: OrderedDict[str, warm.StageServer] = OrderedDict()

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()

    def _base(self) -> dict | None:
        if self.base is None and self.base_error is None:
            try:
                self.base = worker_base(self.spec)
            except InputError as exc:
                self.base_error = str(exc)
        return self.base

    def run(self, points: list[Point]) -> Iterator[Item]:
        from kernel_sim import boot as boot_mod
        from kernel_sim.plan import plan_boot

        base = self._base()
        ready = []
        for point in points:
            start = time.monotonic()
            if base is None:
                yield point.index, "row", input_error_row(point, self.base_error or "", 0.0)
                continue
            try:
                prep = boot_mod.prepare(request_for(base, point, timeout=self.spec.timeout))
                plan = plan_fields(plan_boot(prep))
            except InputError as exc:
                yield point.index, "row", input_error_row(point, str(exc), time.monotonic() - start)
                continue
            key = warm.handover_key(prep) if self.spec.warm else None
            ready.append((point, prep, plan, key, time.monotonic() - start))
        if not ready:
            return
        if not self.warmed:
            self._warm_up(ready[0][1])
        uses = Counter(key for *_, key, _ in ready if key is not None)
        limit = self.spec.timeout
        for point, prep, plan, key, prep_seconds in ready:
            start = time.monotonic()
            if key is not None and (key in self.servers or uses[key] > 1):
                outcome = self._server(key, prep).run(point, prep, plan, prep_seconds, limit)
            else:
                outcome = warm.run_in_child(partial(cold_point, point, prep, plan, prep_seconds),
                                            time.monotonic() + limit)
            kind, value = outcome
            if kind == "row":
                yield point.index, "row", value
            elif kind == "timeout":
                yield point.index, "row", timeout_row(point, plan, limit, prep_seconds + time.monotonic() - start)
            else:
                yield point.index, "failed", f"the boot process {value}" if kind == "crashed" else str(value)

    def _warm_up(self, prep) -> None:
        """One boot in this process, thrown away: it imports what a boot imports lazily and fills the
        caches, so that no forked boot pays for them (their imports would die with them)."""
        from kernel_sim import boot as boot_mod

        with suppress(Exception):                      # the real boot reports it
            boot_mod.run(prep, boot_mod.build_machine(prep, private_flash=True))
        gc.collect()
        gc.freeze()
        self.warmed = True

    def _server(self, key: str, prep) -> warm.StageServer:
        server = self.servers.get(key)
        if server is not None and server.pid:
            self.servers.move_to_end(key)
            return server
        if server is not None:
            del self.servers[key]
        while len(self.servers) >= MAX_STAGE_SERVERS:
            _, old = self.servers.popitem(last=False)
            old.close()
        server = self.servers[key] = warm.StageServer(key, prep, warm_point, limit=self.spec.timeout,
                                                            others=list(self.servers.values()))
        return server


def warm_point(started, point: Point, prep, plan: dict, prep_seconds: float) -> dict:
    """In a child of a stage server: finish the shared boot with this point's inputs."""
    from kernel_sim import boot as boot_mod

    start = time.monotonic()
    result = boot_mod.finish(started, prep)
    return boot_row(point, plan, result, prep_seconds + time.monotonic() - start)


def cold_point(point: Point, prep, plan: dict, prep_seconds: float) -> dict:
    """In a child of the worker: boot this point from reset."""
    from kernel_sim import boot as boot_mod

    start = time.monotonic()
    result = boot_mod.run(prep, boot_mod.build_machine(prep, private_flash=True))
    return boot_row(point, plan, result, prep_seconds + time.monotonic() - start)


def run_point(base: dict, point: Point) -> dict:
    """Boot one point in this process, from reset (no fork, no time limit beyond the guest's own)."""
    from kernel_sim import boot as boot_mod
    from kernel_sim.plan import plan_boot

    start = time.monotonic()
    try:
        prep = boot_mod.prepare(request_for(base, point))
    except InputError as exc:
        return input_error_row(point, str(exc), time.monotonic() - start)
    plan = plan_fields(plan_boot(prep))
    result = boot_mod.run(prep, boot_mod.build_machine(prep, private_flash=True))
    return boot_row(point, plan, result, time.monotonic() - start)
