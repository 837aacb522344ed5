"""One gdb connection: a reader thread that frames, acks and queues what gdb sends, and replies.

Why a thread: while the guest runs, the main thread is inside Unicorn and cannot read the socket,
yet gdb's Ctrl-C (the 0x03 byte) must stop it. The reader hands that byte to `on_interrupt` at once
(the stub asks the board to stop: Machine.request_stop is safe from another thread) and queues every
packet for the main thread, which serves them while the guest is stopped.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable

from tools.gdbstub.packets import Event, Framer, frame


class Connection:
    def __init__(self, sock: socket.socket, on_interrupt: Callable[[], None]) -> None:
        self.sock = sock
        self.on_interrupt = on_interrupt
        self.ack_mode = True
        self.closed = False
        self._events: queue.Queue[Event] = queue.Queue()
        self._send_lock = threading.Lock()
        self._last = b""
        self._reader = threading.Thread(target=self._read, name="gdb-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        framer = Framer()
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            for event in framer.feed(data):
                if event.kind == "interrupt":
                    self.on_interrupt()
                elif event.kind == "packet" and self.ack_mode:
                    self._write(b"+")
                elif event.kind == "bad":
                    if self.ack_mode:
                        self._write(b"-")          # gdb sends it again
                    continue
                elif event.kind == "ack":
                    continue
                self._events.put(event)
        self._events.put(Event("closed"))

    def _write(self, data: bytes) -> None:
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def next_event(self) -> Event:
        """The next packet, interrupt, nack or "closed" (blocks)."""
        return self._events.get()

    def send(self, payload: bytes) -> None:
        self._last = frame(payload)
        self._write(self._last)

    def resend(self) -> None:
        if self._last:
            self._write(self._last)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):      # the other side may have gone already
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
