"""Progress of a sweep on stderr: a tqdm bar on a terminal, plain lines otherwise.

Both show points done of the total, boots per second (of this run) and the time left. Plain lines come
every tenth of the points still to run and at the end, so a log gets a dozen lines, not thousands.
tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, done: int, mode: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.done, self.start_done = total, done, done
        self.start = time.monotonic()
        if mode == "auto":
            mode = "bar" if _isatty(self.stream) else "plain"
        self.mode = mode
        self.every = max(1, (total - done) // 10)
        self.bar = None
        if mode == "bar":
            import tqdm

            tqdm.tqdm.monitor_interval = 0          # no monitor thread: workers may fork later
            sized = _columns(self.stream) > 0         # a terminal that says its width (a bare pty may not)
            self.bar = tqdm.tqdm(total=total, initial=done, unit="boot", file=self.stream, dynamic_ncols=sized,
                                 ncols=None if sized else 80, smoothing=0.1, desc="sweep")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "plain":
            ran = self.done - self.start_done
            if ran % self.every == 0 or self.done == self.total:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self) -> str:
        ran = self.done - self.start_done
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = ran / elapsed
        left = self.total - self.done
        eta = f"ETA {_duration(left / rate)}" if rate > 0 and left else "done" if not left else "ETA ?"
        return (f"sweep: {self.done}/{self.total} points ({100 * self.done // max(self.total, 1)}%), "
                f"{rate:.1f} boots/s, {eta}")

    def write(self, text: str) -> None:
        """A message line that must not be torn by the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
