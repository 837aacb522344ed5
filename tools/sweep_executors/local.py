"""The local executor: a pool of worker processes on this machine, forked from the sweep.

Each worker runs one batch at a time and sends every item as it finishes, so rows stream back one by
one. A worker that dies (killed, out of memory) is replaced; the items of its batch that had not
come back run again on a fresh worker, up to `retries` more times, and are then reported as failed.
Files need no staging: every worker sees the client's files where they are.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tools.sweep_executors.events import Event, Failed, Item, Note, TaskFn

_PR_SET_PDEATHSIG = 1


def _worker(conn: Connection, fn: TaskFn, common: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is the sweep's to handle
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)   # die with the sweep
    except (OSError, AttributeError):
        pass
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task, batch = message
        try:
            for index, kind, value in fn(common, batch, Path("/")):
                conn.send(("item", task, index, kind, value))
            conn.send(("done", task, None, None, None))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:                        # noqa: BLE001 - a bug: its items fail, the sweep goes on
            conn.send(("error", task, None, None, f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, ctx, fn: TaskFn, common: object) -> None:
        ours, theirs = multiprocessing.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker, args=(theirs, fn, common), daemon=True)
        self.process.start()
        theirs.close()
        self.conn = ours
        self.task: int | None = None
        self.gone = False               # its pipe reached end-of-file: the process died


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int, *, retries: int = 2) -> None:
        self.parallelism = workers
        self.retries = retries

    def run(self, fn: TaskFn, common: object, batches: list[list], files: list[Path]) -> Iterator[Event]:
        ctx = multiprocessing.get_context("fork")
        sys.stdout.flush()
        sys.stderr.flush()                              # a forked worker must not print our buffers again
        queue: deque[tuple[int, list]] = deque(enumerate(batches))
        left: dict[int, dict[int, object]] = {}          # task -> index -> item, not yet back
        attempts: dict[int, int] = {}
        count = min(self.parallelism, len(batches)) or 1
        workers = [_Worker(ctx, fn, common) for _ in range(count)]
        next_task = len(batches)
        try:
            while queue or any(w.task is not None for w in workers):
                for w in workers:
                    if w.task is None and queue:
                        task, batch = queue.popleft()
                        left[task] = {item.index: item for item in batch}
                        attempts.setdefault(task, 0)
                        w.task = task
                        w.conn.send((task, batch))
                busy = [w for w in workers if w.task is not None]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for w in busy:
                    if w.conn in ready or w.process.sentinel in ready:
                        yield from self._drain(w, left)
                    if w.task is not None and w.process.sentinel in ready and not w.conn.poll():
                        w.gone = True           # dead, and nothing of it left to read
                    if w.task is not None and w.gone:
                        task = w.task
                        w.task = None
                        w.conn.close()
                        w.process.join()
                        why = _death(w.process.exitcode)
                        items = list(left.pop(task).values())
                        workers[workers.index(w)] = _Worker(ctx, fn, common)
                        if not items:
                            continue
                        if attempts[task] < self.retries:
                            attempts[next_task] = attempts[task] + 1
                            queue.appendleft((next_task, items))
                            next_task += 1
                            yield Note(f"a worker process {why} during a batch; its {len(items)} unfinished "
                                       f"point(s) run again")
                        else:
                            for item in items:
                                yield Failed(item.index, f"its worker process {why} ({attempts[task] + 1} attempts)")
        finally:
            for w in workers:
                try:
                    w.conn.send(None)
                    w.conn.close()
                except OSError:
                    pass
            for w in workers:
                w.process.join(timeout=5)
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join()

    def _drain(self, w: _Worker, left: dict[int, dict[int, object]]) -> Iterator[Event]:
        while w.task is not None and w.conn.poll():
            try:
                what, task, index, kind, value = w.conn.recv()
            except (EOFError, OSError):
                w.gone = True
                return
            if what == "item":
                left[task].pop(index, None)
                yield Item(index, kind, value)
            elif what == "done":
                left.pop(task, None)
                w.task = None
            else:                                       # the task function raised: a bug, reported per item
                for item in left.pop(task, {}).values():
                    yield Failed(item.index, f"the worker's task failed: {value}")
                w.task = None

    def close(self) -> None:
        pass


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
