"""The NBD server of a running board: `armboard boot --nbd`, and the monitor's `nbd start|stop|list|wait`.

It owns the Giant of the process (the main thread holds it from the start; see giant.py), the
board's export catalogue (board_exports.py), and the server. The boot calls it at three points:
before the machine exists (so a bad address is refused before anything boots), once the machine is
built (flash banks, RAM and swap become exports), and once the Python kernel has started (md units
and GEOM providers become exports). The waits of the board (the monitor prompt, the console shell,
the serve wait after -x) release Giant through it.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from tools.nbd.board_exports import BoardExports
from tools.nbd.giant import Giant
from tools.nbd.server import Address, NbdServer, wait_for_signal


class BoardServer:
    def __init__(self, *, mem_rw: bool = False, listen_any: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.giant = Giant()
        self.giant.hold()                     # the main thread: the kernel may run from now on
        self.exports = BoardExports(self.giant, mem_rw=mem_rw)
        self.listen_any = listen_any
        self.log = log
        self.server: NbdServer | None = None

    @property
    def running(self) -> bool:
        return self.server is not None

    def start(self, address: str) -> str:
        """Listen (AddressError for a bad or refused address); the URI clients use."""
        if self.server is not None:
            raise RuntimeError(f"the NBD server already listens on {self.server.bound}")
        kwargs: dict[str, Any] = {"listen_any": self.listen_any, "giant": self.giant}
        if self.log is not None:
            kwargs["log"] = self.log
        server = NbdServer(self.exports.catalogue, Address.parse(address), **kwargs)
        server.start()
        self.server = server
        atexit.register(self.stop)            # a socket file is not left behind by any way out
        return server.url

    def stop(self) -> None:
        if self.server is not None:
            atexit.unregister(self.stop)
            self.server.stop()
            self.server = None

    def close(self) -> None:
        """Stop serving and give Giant up for good (the process ends its boot)."""
        self.stop()
        self.giant.drop()

    def attach_machine(self, machine) -> None:
        self.exports.attach_machine(machine)

    def attach_kernel(self, startup) -> None:
        self.exports.attach_kernel(startup)

    def waiting(self):
        """A context in which the main thread waits and the server's threads may call into the kernel."""
        return self.giant.released()

    def wait_clients(self) -> None:
        """`nbd wait`: until a client has come and all clients have gone (or Ctrl-C)."""
        if self.server is None:
            return
        with contextlib.suppress(KeyboardInterrupt):
            self.server.wait_clients()

    def serve_until_signal(self, out: TextIO | None = None) -> None:
        """After the boot and its -x commands: serve until SIGINT or SIGTERM, then stop."""
        if self.server is None:
            return
        out = out or sys.stderr
        url = self.server.url

        def ready() -> None:
            out.write(f"armboard: nbd: serving on {url} until interrupted (Ctrl-C or SIGTERM)\n")
            out.flush()

        with self.giant.released():
            wait_for_signal(threading.Event(), ready)
        self.stop()

    def describe(self, out: TextIO) -> None:
        """`nbd list`: where it listens, the exports, the connected clients."""
        if self.server is None:
            out.write("nbd: not serving (nbd start [HOST:]PORT|unix:PATH)\n")
        else:
            out.write(f"nbd: listening on {self.server.bound} ({self.server.url})\n")
        for name, description in self.exports.catalogue.listing():
            out.write(f"  export {name:<20} {description}\n")
        for c in self.server.clients() if self.server is not None else []:
            s = c.stats
            out.write(f"  client {c.number} {c.peer} {c.export or '-'} {c.phase}: {s.requests} requests, "
                      f"{s.bytes_read} bytes read, {s.bytes_written} written, {s.errors} errors\n")
