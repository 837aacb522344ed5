"""Giant: the one lock between the Python kernel and the NBD server's threads.

The board and the Python kernel run in the main thread, and the kernel's objects (the GEOM mesh, the
md driver, a CFI chip's command state) are not safe to touch from two threads at once. So, as
FreeBSD's Giant once did: the main thread holds the lock whenever the kernel may run, the server's
threads take it around each call into a kernel object, and the main thread lets go only where the
board waits for someone (the monitor prompt, the console shell reading a line, the serve wait after
`-x`, `nbd wait`). Board memory (RAM, a flash bank's array, a store) is read without it.

The main thread's hold is not counted: `with giant:` in the thread that owns the lock does nothing,
so code that runs in either thread can always say it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Giant:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._nesting = threading.local()     # per thread: was the lock already ours at each `with`

    @property
    def owned(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def hold(self) -> None:
        """Take the lock for as long as the kernel may run (the main thread, once)."""
        if not self.owned:
            self._lock.acquire()
            self._owner = threading.get_ident()

    def drop(self) -> None:
        """Let go of a hold() for good (the server stops)."""
        if self.owned:
            self._owner = None
            self._lock.release()

    def __enter__(self) -> Giant:
        """`with giant:` around one call into a kernel object (a no-op in the thread that holds it)."""
        mine = self.owned
        if not mine:
            self._lock.acquire()
            self._owner = threading.get_ident()
        self._nesting.stack = [*getattr(self._nesting, "stack", []), mine]
        return self

    def __exit__(self, *exc: object) -> None:
        stack = self._nesting.stack
        mine = stack.pop()
        if not mine:
            self._owner = None
            self._lock.release()

    def held(self) -> Giant:
        """The same as `with giant:`, for readers who want the word."""
        return self

    @contextmanager
    def released(self) -> Iterator[None]:
        """Around a wait of the main thread: the server's threads may call into the kernel meanwhile."""
        if not self.owned:
            yield
            return
        self._owner = None
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._owner = threading.get_ident()

    def releasing(self, fn: Callable[[], T]) -> Callable[[], T]:
        """`fn` wrapped to run with the lock released (a console's readline)."""
        def wait() -> T:
            with self.released():
                return fn()
        return wait
