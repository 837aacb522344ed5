"""The helper process of kernel_sim.sweep.helper: runs the batches its host thread sends."""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

from kernel_sim.sweep.runner import run_batch
from kernel_sim.sweep.warm import child_setup


def main(fd: int) -> None:
    child_setup()
    conn = Connection(fd)
    while True:
        try:
            spec, points, root = conn.recv()
        except (EOFError, OSError):
            return
        for item in run_batch(spec, points, root):
            conn.send(item)
        conn.send(None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
    os._exit(0)
