"""Warm boots: points whose guest boot is the same share one board at the hand-over, by fork.

The guest's part of a boot (reset, locore, initarm, pmap_bootstrap) reads only what `handover_key`
hashes: the board, RAM size, kernel image, its configuration block, module placement, the bytes of
the environment and the metadata, the boot ABI and the stop point. Points with the same key get the
same machine at the hand-over; only mi_startup reads the rest (kmem options, tunables through the
kernel environment the guest handed over, userland). So a stage server, forked from the warm worker,
boots the first such point to the hand-over once (`boot.start`), and then forks one child per point
that finishes the boot with the point's own inputs (`boot.finish`) and sends its row back.

What a child may touch: guest RAM is anonymous or a private file mapping, flash images are mapped
copy-on-write (`build_machine(private_flash=True)`), the swap store is process memory, and the Unicorn
instance is the child's copy: nothing a child writes reaches the stage server, the worker or a file.
Children leave with os._exit, so no buffered output of the parent is written twice.

Every child runs under the per-point time limit: past it, the child is killed and the point's row
says `timeout`. A child that dies without a row (a crash) is reported, not retried: the same inputs
would crash the same way.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe

Outcome = tuple[str, object]     # ("row", row) | ("timeout", None) | ("crashed", why) | ("error", why)

_PR_SET_PDEATHSIG = 1


def handover_key(prep) -> str:
    """A digest of every input the machine at the hand-over depends on (see the module docstring):
    what build_machine, boot.start and its diagnoses read from `prep`, and the files they map."""
    layout, request = prep.layout, prep.request
    files = [prep.image.elf_path, *(m.path for m in layout.modules), *(p for _, p in layout.overlays),
             *prep.flash.values()]
    if layout.embedded_md is not None and layout.embedded_md.image is not None:
        files.append(layout.embedded_md.image)
    parts = (
        repr(prep.profile), repr(layout), repr(prep.config), repr(sorted(prep.options.items())),
        repr((prep.image.elf_path, prep.image.entry, prep.image.segments)),
        repr(sorted(prep.flash.items())), repr(prep.swap),
        repr((request.mmu, request.abi, request.stop_at, request.timeout, request.console)),
        repr([_identity(f) for f in files]),
    )
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def _identity(path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


# ---------------------------------------------------------------------------------------------- processes
def child_setup() -> None:
    """In a forked sweep process: die with the parent, leave Ctrl-C to the sweep's main process, and
    let a crash be the one line the parent writes (no traceback dump inherited from the parent)."""
    import faulthandler

    faulthandler.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):      # not Linux: the pipes' end-of-file still stops the children
        pass


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"died of signal {sig} ({name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)} without a row"


def _one_line(exc: BaseException) -> str:
    import traceback

    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def run_in_child(work: Callable[[], dict], deadline: float | None) -> Outcome:
    """Fork; the child runs work() and sends its row back through a pipe; the parent waits for it,
    killing the child at `deadline` (time.monotonic)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # the child
        os.close(r)
        code = 0
        try:
            child_setup()
            gc.disable()                              # a short life: no collector walks, fewer pages copied
            data = pickle.dumps(("row", work()), protocol=5)
        except BaseException as exc:                  # noqa: BLE001 - reported to the parent as one line
            data, code = pickle.dumps(("error", _one_line(exc))), 1
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    timed_out = False
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return ("timeout", None)
    data = b"".join(chunks)
    if data:
        try:
            return pickle.loads(data)
        except Exception:                             # noqa: BLE001 - a child killed mid-write
            pass
    return ("crashed", describe_status(status))


class StageServer:
    """A process holding one board at the hand-over (or at the end of a boot that never got there),
    forking a child per point to finish it."""

    def __init__(self, key: str, prep, finish_point: Callable, *, limit: float,
                 others: list[StageServer] = ()) -> None:
        """`others`: the worker's other servers, whose pipes this process must not keep open."""
        self.key = key
        self.limit = limit
        ours, theirs = Pipe(duplex=True)
        pid = os.fork()
        if pid == 0:
            ours.close()
            for other in others:
                other.conn.close()
            code = 0
            try:
                child_setup()
                _serve(theirs, prep, finish_point)
            except BaseException:                     # noqa: BLE001 - the worker sees the pipe close
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self.conn = pid, ours

    def run(self, *args) -> Outcome:
        """Finish one point (args go to finish_point) in a child of the server."""
        try:
            self.conn.send(args)
            # The server's own boot (the first point) and the point each get the time limit.
            if not self.conn.poll(2 * self.limit + 10):
                os.kill(self.pid, signal.SIGKILL)
                return ("crashed", f"its stage process did not answer within {2 * self.limit + 10:g} s")
            return self.conn.recv()
        except (EOFError, OSError):
            return ("crashed", f"its stage process {self._reap()}")

    def _reap(self) -> str:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return "died"
        self.pid = 0
        return describe_status(status)

    def close(self) -> None:
        """Stop the server (it holds nothing worth keeping: the board at the hand-over)."""
        self.conn.close()
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
            self.pid = 0


def _serve(conn: Connection, prep, finish_point: Callable) -> None:
    from kernel_sim import boot as boot_mod

    started: object
    try:
        started = boot_mod.start(prep, boot_mod.build_machine(prep, private_flash=True))
    except Exception as exc:                          # noqa: BLE001 - every point of this key says it
        started = exc
    gc.freeze()                                       # the children's collector leaves our pages alone
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        limit = args[-1]
        if isinstance(started, Exception):
            outcome: Outcome = ("error", _one_line(started))
        else:
            outcome = run_in_child(lambda a=args: finish_point(started, *a[:-1]), time.monotonic() + limit)
        conn.send(outcome)
