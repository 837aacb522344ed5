"""Executors: run a task function over batches of items somewhere, and stream the items back.

An executor knows nothing about kernels or boots. It is given a task function
`fn(common, batch, root) -> iterator of (item id, kind, value)`, the value every task shares
(`common`), the batches (lists of picklable items that carry an `index`), and the input files the
function reads (absolute paths). It makes the files available where the function runs (`root`: the
directory the client's absolute paths are found under, "/" when they are where they were), calls the
function, and yields events as items finish:

- Item(index, kind, value): what the function yielded for one item;
- Failed(index, why): an item that could not run after its retries (its worker kept dying);
- Note(text): something the user should know (a worker that cannot run points, a retry).

`open_executor(scheduler, jobs, retries)` picks one: "local" (a process pool on this machine),
"dask://HOST:PORT" (an existing dask.distributed scheduler), "dask-local[:N]" (a LocalCluster started
for the run). Dask is imported only for the last two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from kernel_sim.errors import InputError
from tools.sweep_executors.events import Event, Failed, Item, Note, TaskFn

__all__ = ["Event", "Executor", "Failed", "Item", "Note", "TaskFn", "open_executor"]

class Executor(Protocol):
    name: str
    parallelism: int

    def run(self, fn: TaskFn, common: object, batches: list[list], files: list[Path]) -> Iterator[Event]: ...

    def close(self) -> None: ...


DEFAULT_RETRIES = 2        # a batch whose worker died runs again up to twice (3 attempts, as Dask's default)


def open_executor(scheduler: str, jobs: int | None, retries: int = DEFAULT_RETRIES) -> Executor:
    """The executor --scheduler names; InputError (exit 2) for a malformed or unreachable one."""
    import os

    if jobs is not None and jobs < 1:
        raise InputError("needs at least one worker", "-j")
    if scheduler == "local":
        from tools.sweep_executors.local import LocalExecutor

        return LocalExecutor(jobs or os.cpu_count() or 1, retries=retries)
    if scheduler == "dask-local" or scheduler.startswith("dask-local:"):
        count_text = scheduler.partition(":")[2]
        if count_text and not (count_text.isdigit() and int(count_text) > 0):
            raise InputError(f"dask-local:{count_text}: the worker count is a positive number, e.g. dask-local:2",
                             "--scheduler")
        count = int(count_text) if count_text else (jobs or os.cpu_count() or 1)
        from tools.sweep_executors.dask_cluster import DaskExecutor

        return DaskExecutor.local(count, retries=retries)
    if scheduler.startswith("dask://"):
        address = scheduler.removeprefix("dask://")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InputError(f"{scheduler}: expected dask://HOST:PORT, e.g. dask://127.0.0.1:8786", "--scheduler")
        from tools.sweep_executors.dask_cluster import DaskExecutor

        return DaskExecutor.connect(f"tcp://{address}", scheduler)
    raise InputError(f"unknown scheduler {scheduler!r} (local, dask://HOST:PORT or dask-local[:N])", "--scheduler")
