"""Shared fixtures: boots run in-process with the console captured, not printed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kernel_sim import boot as boot_mod

# A test still running after this long is hung, not slow (the slowest, the plan/boot grids, take about
# a minute on a loaded 2-core machine). Tests bound their work, not their time: hypothesis runs without
# deadlines, and this guard turns a hang (a parser looping on hostile input) into a failure with a traceback.
HANG_SECONDS = 600


@pytest.fixture(autouse=True)
def _hang_guard():
    def expire(signum, frame):
        raise TimeoutError(f"the test was still running after {HANG_SECONDS} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def do_boot(**kwargs) -> boot_mod.BootResult:
    """A boot without the default loader.conf (so without the default root image and rc) unless the
    test passes one: the tuning scenarios measure the kernel and the images they name, nothing else."""
    kwargs.setdefault("loader_conf", None)
    request = boot_mod.BootRequest(**kwargs)
    return boot_mod.run(boot_mod.prepare(request))


@pytest.fixture
def boot():
    return do_boot


@pytest.fixture
def sparse_image(tmp_path: Path):
    """A sparse file of the given size (costs no disk): a stand-in md_image."""
    def make(size: int, name: str = "root.img") -> Path:
        path = tmp_path / name
        with path.open("wb") as f:
            f.truncate(size)
        return path
    return make


@pytest.fixture
def loader_conf(tmp_path: Path):
    def make(text: str) -> Path:
        path = tmp_path / "loader.conf"
        path.write_text(text)
        return path
    return make
