"""A helper process that runs points for a multi-threaded host (a Dask worker): forking is only safe
from a process with one thread, so the host's thread hands its batches to this process instead.

The helper is `python -m kernel_sim.sweep.helper_main FD`: FD is one end of a socket pair. Requests are
(spec, points, root); the answer is one message per item, then None.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from kernel_sim.sweep.grid import Point
from kernel_sim.sweep.spec import SweepSpec

_LOCAL = threading.local()


class Helper:
    """The host's side: one helper process, started on first use and again after it died."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None

    def _start(self) -> None:
        import socket

        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen([sys.executable, "-m", "kernel_sim.sweep.helper_main", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())

    def run(self, spec: SweepSpec, points: list[Point], root: Path) -> Iterator[tuple[int, str, object]]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.conn is not None and self.proc is not None
        left = {p.index for p in points}
        try:
            self.conn.send((spec, points, root))
            while (item := self.conn.recv()) is not None:
                left.discard(item[0])
                yield item
        except (EOFError, OSError):
            code = self.proc.wait()
            self.proc = None
            for index in sorted(left):
                yield index, "failed", f"the sweep helper process exited with status {code}"


def helper_for_this_thread() -> Helper:
    helper = getattr(_LOCAL, "helper", None)
    if helper is None:
        helper = _LOCAL.helper = Helper()
    return helper
