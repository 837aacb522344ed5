"""`armboard sweep` on dask.distributed: the same rows as the local pool, files sent once per worker,
a killed worker's batch run again elsewhere, clear lines for a scheduler that is not there."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed (pip install .[dask])")

from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

from kernel_sim.sweep import DETERMINISTIC  # noqa: E402
from tools.cli import main  # noqa: E402

GRID64 = ["--physmem", "128M,256M", "--kernel-footprint", "9M", "--mfsroot-size", "60M",
          "-g", "LOCORE_MAP_MB=64,70", "-g", "NKPT2PG=16,32", "-g", "VM_KMEM_SIZE_SCALE=1,3,5,8",
          "-g", "debug.init_procs=0,50"]


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(path: Path) -> list[dict]:
    return [{c: r[c] for c in DETERMINISTIC} for r in csv.DictReader(path.open())]


def test_the_same_64_points_give_the_same_rows_locally_on_dask_and_cold(tmp_path, capsys):
    runs = {"local": ["-j", "2"], "dask-local:2": ["--scheduler", "dask-local:2"], "cold": ["-j", "2", "--cold"]}
    rows = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.csv"
        assert main(["sweep", *GRID64, *extra, "--out", str(out), "--progress", "none"]) == 0, name
        rows[name] = _rows(out)
    capsys.readouterr()
    assert len(rows["local"]) == 64
    assert {r["outcome"] for r in rows["local"]} >= {"failed", "halted"}
    assert rows["dask-local:2"] == rows["local"]
    assert rows["cold"] == rows["local"]


class _SlowLink(WorkerPlugin):
    """Every message a worker writes waits `delay` seconds first (a slow link), and each worker keeps
    the files it stages in a directory of its own (so "once per worker" is visible)."""

    def __init__(self, delay: float, cache: str) -> None:
        self.delay, self.cache = delay, cache

    def setup(self, worker) -> None:
        import asyncio

        from distributed.comm.tcp import TCP

        from tools.sweep_executors import dask_cluster

        dask_cluster.CACHE_DIR = Path(self.cache) / worker.address.replace("/", "_").replace(":", "_")
        if getattr(TCP, "_armboard_slow", False):
            return
        write, delay = TCP.write, self.delay

        async def slow_write(comm, msg, serializers=None, on_error="message"):
            await asyncio.sleep(delay)
            return await write(comm, msg, serializers=serializers, on_error=on_error)

        TCP.write, TCP._armboard_slow = slow_write, True


@pytest.fixture
def cluster(tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as c, distributed.Client(c) as client:
        yield c, client


def test_images_travel_once_per_worker_over_a_slow_link(tmp_path, cluster):
    from kernel_sim import boot as boot_mod
    from kernel_sim.sweep import Dimension, SweepSpec, grid_points
    from kernel_sim.sweep.batching import batches
    from kernel_sim.sweep.runner import run_batch
    from kernel_sim.sweep.spec import input_files
    from tools.sweep_executors import Item
    from tools.sweep_executors.dask_cluster import DaskExecutor

    c, client = cluster
    client.register_plugin(_SlowLink(0.02, str(tmp_path / "staged")))
    image = tmp_path / "root.img"
    shutil.copyfile(Path(boot_mod.IMAGES) / "rootfs.img", image)
    spec = SweepSpec.from_request(boot_mod.BootRequest(mfsroot=image, kernel_footprint="9M"))
    points = grid_points(("256M",), [Dimension("VM_KMEM_SIZE_SCALE", tuple(map(str, range(1, 9)))),
                                     Dimension("NKPT2PG", ("32", "33", "34", "35"))])
    files = input_files(spec, points)
    assert image in files and Path(boot_mod.DEFAULT_LOADER_CONF).resolve() in files
    executor = DaskExecutor.connect(c.scheduler_address, "test", reuse_local_files=False)
    try:
        plan = batches(spec, points, executor.parallelism)
        events = list(executor.run(run_batch, spec, plan, files))
    finally:
        executor.client.close()
    assert len(plan) >= 8
    rows = {e.index: e.value for e in events if isinstance(e, Item) and e.kind == "row"}
    assert sorted(rows) == list(range(32)) and all(r["outcome"] == "halted" for r in rows.values())
    from tools.sweep_executors import dask_cluster

    keys = {f"armboard-file-{sha}" for sha in {_sha(f) for f in files}}

    def received(dask_worker) -> dict:
        counts: dict[str, int] = {}
        for transfer in dask_worker.transfer_incoming_log:
            for key in transfer["keys"]:
                counts[str(key)] = counts.get(str(key), 0) + 1
        return {"staged": dict(dask_cluster.FETCHES), "received": counts}

    seen = client.run(received)
    ran = [w for w in seen.values() if w["staged"]]
    assert ran, seen
    for worker in ran:                       # each file once on each worker that ran batches, not per batch
        assert len(worker["staged"]) == len(keys) and set(worker["staged"].values()) == {1}, worker
        assert all(worker["received"].get(k, 0) <= 1 for k in keys), worker
    assert sum(w["received"].get(k, 0) for w in seen.values() for k in keys) <= len(keys) * len(seen)


class _KillOnce(WorkerPlugin):
    """The first sweep task to start executing writes its worker's pid to `marker` and waits there:
    the test then kills that worker process."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and str(key).startswith("armboard-sweep-"):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            time.sleep(60)


def test_a_worker_killed_during_a_point_has_its_point_run_again_elsewhere(tmp_path, cluster, capsys):
    c, client = cluster
    marker = tmp_path / "killed"
    client.register_plugin(_KillOnce(str(marker)))

    def kill() -> None:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        os.kill(int(marker.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    out = tmp_path / "s.csv"
    code = main(["sweep", "--no-loader-conf", "--physmem", "256M", "-g", "NKPT2PG=30..45",
                 "--scheduler", f"dask://{c.scheduler_address.removeprefix('tcp://')}", "--out", str(out),
                 "--progress", "none"])
    killer.join()
    text = capsys.readouterr().out
    assert marker.exists() and code == 0, text
    assert [int(r["point"]) for r in csv.DictReader(out.open())] == list(range(16))


def test_a_scheduler_that_is_not_there_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from tools.sweep_executors import dask_cluster

    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "s.csv"
    assert main(["sweep", "-g", "NKPT2PG=32", "--scheduler", "dask://127.0.0.1:9", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("armboard: --scheduler dask://127.0.0.1:9: no Dask scheduler answers at "
                          "tcp://127.0.0.1:9 within 1 s") and err.count("\n") == 1
    for bad, needle in (("dask://nohost", "expected dask://HOST:PORT"), ("dask-local:0", "positive number"),
                        ("yarn", "unknown scheduler")):
        assert main(["sweep", "-g", "NKPT2PG=32", "--scheduler", bad, "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
    assert not out.exists() or out.read_text().count("\n") <= 1


@pytest.mark.slow
def test_a_worker_without_armboard_is_named_and_gets_no_point(tmp_path, capsys):
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    hide = (f"import sys; sys.path = [p for p in sys.path if p not in ({root!r}, '')]; "
            "sys.modules.pop('kernel_sim', None); "
            "from distributed.cli.dask_worker import main; sys.argv[0] = 'dask-worker'; main()")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as c, distributed.Client(c) as client:
        outsider = subprocess.Popen([sys.executable, "-c", hide, c.scheduler_address, "--nthreads", "1",
                                     "--no-dashboard"], cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(2, timeout=60)
            out = tmp_path / "s.csv"
            code = main(["sweep", "--no-loader-conf", "--physmem", "256M", "-g", "NKPT2PG=30..37",
                         "--scheduler", f"dask://{c.scheduler_address.removeprefix('tcp://')}", "--out", str(out),
                         "--progress", "none"])
        finally:
            outsider.kill()
            outsider.wait()
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if "cannot run points" in line]
    assert len(lines) == 1 and "armboard is not installed there" in lines[0]
    assert len(list(csv.DictReader(out.open()))) == 8
