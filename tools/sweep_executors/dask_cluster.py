"""The Dask executor: batches run as dask.distributed tasks on an existing scheduler or a LocalCluster.

Workers need only the installed package: each task calls the task function by reference. Before the
first task, every worker is asked whether it can import the task function's package; one that cannot
is named in one line and gets no task.

Input files travel by content, once per worker, not per task: the client scatters each file's bytes
once under a key made of its SHA-256 to each worker (broadcast: one dead worker loses no file), and
every task depends on those keys, so a worker holds them for all its tasks and a worker that joins
later gets them from a peer the first time it runs one. On the worker the
bytes go into a content-addressed cache (`stage`), laid out under a root that mirrors the client's
absolute paths, so relative references between files (a loader.conf naming its modules) still
resolve. A worker that has the very same files at the same paths (this machine, a shared file
system) boots them in place, so its rows name the same paths as a local sweep.

A worker that dies during a task: the scheduler runs the task again elsewhere (up to its
allowed-failures, --retries for dask-local), then the task's items are reported as failed. Results
stream back batch by batch as tasks finish.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from kernel_sim.errors import InputError
from tools.sweep_executors.events import Event, Failed, Item, Note, TaskFn

CONNECT_TIMEOUT = float(os.environ.get("ARMBOARD_DASK_CONNECT_TIMEOUT", "10"))
PACKAGE = "armboard"

# Worker side: the files this process staged from bytes Dask delivered (sha -> count), and where the
# staged files go (a test may give each worker its own).
FETCHES: Counter[str] = Counter()
CACHE_DIR: Path | None = None
_LOCK = threading.Lock()
_LOCAL_SHA: dict[tuple, str] = {}


def _need_dask(label: str):
    try:
        import distributed
    except ImportError:
        raise InputError("needs dask.distributed: pip install 'armboard[dask]'", f"--scheduler {label}") from None
    return distributed


class DaskExecutor:
    name = "dask"

    def __init__(self, client, cluster, label: str, *, reuse_local_files: bool = True) -> None:
        self.client = client
        self.cluster = cluster
        self.label = label
        self.reuse_local_files = reuse_local_files
        self.usable, self.notes = _usable_workers(client)
        self.parallelism = sum(n for addr, n in client.nthreads().items() if addr in self.usable) or 1

    @classmethod
    def local(cls, workers: int, *, retries: int = 2) -> DaskExecutor:
        """A LocalCluster of `workers` processes (one thread each) for this sweep."""
        distributed = _need_dask(f"dask-local:{workers}")
        import dask

        with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                              "distributed.worker.daemon": False}):
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=logging.ERROR)
            client = distributed.Client(cluster)
        return cls(client, cluster, f"dask-local:{workers}")

    @classmethod
    def connect(cls, address: str, label: str, **kwargs) -> DaskExecutor:
        """An existing scheduler; InputError when nothing answers there."""
        distributed = _need_dask(label)
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT:g} s ({reason})",
                             f"--scheduler {label}") from None
        return cls(client, None, label, **kwargs)

    def run(self, fn: TaskFn, common: object, batches: list[list], files: list[Path]) -> Iterator[Event]:
        import distributed

        for note in self.notes:
            yield Note(f"--scheduler {self.label}: {note}")
        if not self.usable:
            for batch in batches:
                for item in batch:
                    yield Failed(item.index, f"no worker of {self.label} can run points")
            return
        manifest, data = _manifest(files)
        # On every usable worker at once: a worker that dies must not take the only copy with it.
        scattered = self.client.scatter(data, hash=False, broadcast=True, workers=sorted(self.usable)) if data else {}
        inputs = [scattered[key] for key in data]
        futures = {}
        for n, batch in enumerate(batches):
            future = self.client.submit(_task, fn, common, batch, manifest, self.reuse_local_files, *inputs,
                                        key=f"armboard-sweep-{os.getpid()}-{id(batches):x}-{n}", pure=False,
                                        workers=sorted(self.usable), allow_other_workers=False)
            futures[future] = batch
        try:
            for future in distributed.as_completed(futures):
                batch = futures[future]
                try:
                    items = future.result()
                except Exception as exc:                 # noqa: BLE001 - KilledWorker, a task's error
                    why = _task_failure(exc)
                    for item in batch:
                        yield Failed(item.index, why)
                    continue
                for index, kind, value in items:
                    yield Item(index, kind, value)
        finally:
            self.client.cancel(list(futures))
            del scattered

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _usable_workers(client) -> tuple[set[str], list[str]]:
    """The workers that can import the task function's package, and a line for each that cannot."""
    found = client.run(importlib.util.find_spec, "kernel_sim.sweep.runner", on_error="return")
    ours = importlib.metadata.version(PACKAGE)
    versions = client.run(importlib.metadata.version, PACKAGE, on_error="return")
    usable, notes = set(), []
    for address in sorted(found):
        if isinstance(found[address], BaseException) or found[address] is None:
            notes.append(f"worker {address} cannot run points: {PACKAGE} is not installed there "
                         f"(pip install '{PACKAGE}[dask]' on the workers)")
            continue
        usable.add(address)
        theirs = versions.get(address)
        if isinstance(theirs, str) and theirs != ours:
            notes.append(f"worker {address} has {PACKAGE} {theirs}, this machine {ours}: rows may differ")
    if not found:
        notes.append("the scheduler has no workers")
    return usable, notes


def _task_failure(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return "its worker died each time it ran (the scheduler's allowed-failures was reached)"
    return f"its task failed on the worker: {name}: {exc}"


# ---------------------------------------------------------------------------------------------- files
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _manifest(files: list[Path]) -> tuple[list[tuple[str, str, int, str]], dict[str, bytes]]:
    """(client path, sha256, size, data key) per file, and the bytes to scatter by key (once each)."""
    manifest, data = [], {}
    for path in files:
        sha = _sha256(path)
        key = f"armboard-file-{sha}"
        manifest.append((str(path), sha, path.stat().st_size, key))
        if key not in data:
            data[key] = path.read_bytes()
    return manifest, data


def _cache_dir() -> Path:
    if CACHE_DIR is not None:
        return CACHE_DIR
    from kernel_sim.guest.build import cache_root

    return Path(cache_root()) / "dask-files"


def _local_sha(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    ident = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if ident not in _LOCAL_SHA:
        _LOCAL_SHA[ident] = _sha256(path)
    return _LOCAL_SHA[ident]


def stage(manifest: list[tuple[str, str, int, str]], reuse_local: bool, data: dict[str, bytes]) -> Path:
    """The root under which this worker finds every file of `manifest` at its client path: "/" when they
    are all here already, else a tree of links into the content cache (filled from `data`, by key)."""
    with _LOCK:
        if reuse_local and all(_local_sha(Path(p)) == sha for p, sha, _, _ in manifest):
            return Path("/")
        cache = _cache_dir()
        objects = cache / "objects"
        objects.mkdir(parents=True, exist_ok=True)
        tree = cache / "trees" / hashlib.sha256(repr(manifest).encode()).hexdigest()[:24]
        for path, sha, size, key in manifest:
            obj = objects / sha
            if not (obj.exists() and obj.stat().st_size == size):
                tmp = objects / f".{sha}.{os.getpid()}"
                if reuse_local and _local_sha(Path(path)) == sha:
                    import shutil

                    shutil.copyfile(path, tmp)
                else:
                    tmp.write_bytes(data[key])
                    FETCHES[sha] += 1
                os.replace(tmp, obj)
            place = tree / Path(path).relative_to("/")
            if not place.exists():
                place.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(obj, place)
                except OSError:
                    import shutil

                    shutil.copyfile(obj, place)
        return tree


def _task(fn: TaskFn, common: object, batch: list, manifest: list, reuse_local: bool, *inputs: bytes) -> list:
    """What runs on a worker: stage the files (their bytes are this task's dependencies), then the task
    function over the batch."""
    keys = list(dict.fromkeys(key for *_, key in manifest))
    root = stage(manifest, reuse_local, dict(zip(keys, inputs, strict=True))) if manifest else Path("/")
    return list(fn(common, batch, root))
