"""The NBD server: a listening socket, one thread per client, start and stop, and the log.

One thread accepts; each client gets a thread that runs the handshake (negotiate.py) and then the
request loop (connection.py). Nothing a client sends can end the server or the board: a broken
handshake or request ends that client's connection with a log line. Listening is on loopback or a
unix socket unless the caller allows other addresses (TLS is out of scope, so an NBD port is only
as private as the network it is on). `stop()` closes the listener and every connection (a request
being served finishes first) and waits for the threads; it releases Giant meanwhile, since a
connection may be waiting for it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from tools.nbd.connection import Connection, Stats
from tools.nbd.exports import Catalogue
from tools.nbd.giant import Giant
from tools.nbd.negotiate import Negotiation, NegotiationEnded
from tools.nbd.wire import PeerGone, Wire

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10809               # the IANA port for NBD


class AddressError(ValueError):
    """An address the server cannot or may not listen on, said in one sentence."""


@dataclass(frozen=True)
class Address:
    """Where to listen: TCP host and port, or a unix socket path."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        """`[HOST:]PORT`, `[IPV6]:PORT` or `unix:PATH`."""
        if text.startswith("unix:"):
            path = text[5:]
            if not path:
                raise AddressError("unix: needs a socket path, e.g. unix:/tmp/board.sock")
            return cls(path=path)
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = DEFAULT_HOST, text
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise AddressError(f"{text!r} has no host before the ':' (give HOST:PORT or just PORT)")
        try:
            port = int(port_text, 10)
        except ValueError:
            raise AddressError(f"{port_text!r} is not a port number (0 to 65535; 0 picks a free one)") from None
        if not 0 <= port <= 65535:
            raise AddressError(f"port {port} is outside 0 to 65535 (0 picks a free one)")
        return cls(host=host, port=port)

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def is_loopback(self) -> bool:
        if self.path is not None:
            return True
        try:
            infos = socket.getaddrinfo(self.host, None, proto=socket.IPPROTO_TCP)
        except socket.gaierror:
            return False
        return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


@dataclass
class ClientInfo:
    """One connection, for `nbd list`."""

    number: int
    peer: str
    export: str = ""
    phase: str = "handshake"
    stats: Stats = field(default_factory=Stats)
    wire: Wire | None = None


def _stderr_log(line: str) -> None:
    sys.stderr.write(f"armboard: {line}\n")
    sys.stderr.flush()


class NbdServer:
    """Serves a Catalogue on one address."""

    def __init__(self, catalogue: Catalogue, address: Address, *, listen_any: bool = False,
                 log: Callable[[str], None] = _stderr_log, giant: Giant | None = None,
                 readonly: bool = False) -> None:
        if not listen_any and not address.is_loopback():
            raise AddressError(f"{address} is not a loopback address: an NBD export has no access control, "
                               "so listening there needs --nbd-listen-any (or listen on 127.0.0.1 or a unix: socket)")
        self.catalogue = catalogue
        self.address = address
        self.giant = giant if giant is not None else Giant()
        self.readonly = readonly
        self._log_sink = log
        self._log_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._clients: dict[int, ClientInfo] = {}
        self._next = 1
        self._cond = threading.Condition()
        self._accepted = 0
        self.stopping = False
        self.bound: Address | None = None
        self._socket_file: tuple[int, int] | None = None

    # -- log ---------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        with self._log_lock:
            self._log_sink(f"nbd: {message}")

    # -- start and stop -------------------------------------------------------------------------------------
    def start(self) -> Address:
        """Bind and listen (AddressError if that fails), then accept in a thread. Returns the address
        actually bound (the port chosen for port 0)."""
        self._sock = self._listen()
        self._sock.listen(16)
        thread = threading.Thread(target=self._accept_loop, name="nbd-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        names = [name or repr(name) for name, _ in self.catalogue.listing()]
        self.log(f"listening on {self.bound} ({self.url}), exports: {', '.join(names) or 'none yet'}")
        return self.bound  # type: ignore[return-value]

    def _listen(self) -> socket.socket:
        a = self.address
        if a.path is not None:
            self._clear_stale_socket(a.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Bound and listening under a temporary name, then renamed: once the path exists, a
            # client that connects is accepted (never ECONNREFUSED from a bound, not yet listening socket).
            staging = f"{a.path}.{os.getpid()}.tmp"
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staging)
                sock.bind(staging)
                sock.listen(16)
                os.rename(staging, a.path)
                st = os.stat(a.path)
            except OSError as exc:
                sock.close()
                with contextlib.suppress(OSError):
                    os.unlink(staging)
                raise AddressError(f"cannot listen on {a}: {exc.strerror}") from None
            self._socket_file = (st.st_dev, st.st_ino)
            self.bound = a
            return sock
        try:
            infos = socket.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise AddressError(f"cannot resolve {a.host!r}: {exc.strerror}") from None
        family, type_, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            raise AddressError(f"cannot listen on {a}: {exc.strerror}") from None
        host, port = sock.getsockname()[:2]
        self.bound = Address(host=host, port=port)
        return sock

    @staticmethod
    def _clear_stale_socket(path: str) -> None:
        """A socket file nobody listens on is left over from an earlier run: remove it. Anything else
        at the path is the user's and is not touched."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AddressError(f"cannot listen on unix:{path}: the path exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError:
            return
        finally:
            probe.close()
        raise AddressError(f"cannot listen on unix:{path}: another server is listening there")

    @property
    def url(self) -> str:
        """The NBD URI clients (qemu-img, nbdinfo, nbdcopy) take, without an export name."""
        a = self.bound or self.address
        if a.path is not None:
            return f"nbd+unix:///?socket={a.path}"
        host = f"[{a.host}]" if ":" in a.host else a.host
        return f"nbd://{host}:{a.port}"

    def stop(self) -> None:
        """Close the listener and every connection and wait for their threads."""
        self.stopping = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with self._cond:
            wires = [c.wire for c in self._clients.values() if c.wire is not None]
        for wire in wires:
            with contextlib.suppress(OSError):
                wire.sock.shutdown(socket.SHUT_RDWR)
        with self.giant.released():
            for thread in self._threads:
                thread.join(timeout=10)
        if self.address.path is not None and self._socket_file is not None:
            with contextlib.suppress(OSError):      # only our own: another server may listen there now
                st = os.stat(self.address.path)
                if (st.st_dev, st.st_ino) == self._socket_file:
                    os.unlink(self.address.path)
            self._socket_file = None
        self.log(f"stopped listening on {self.bound or self.address}")

    # -- clients ---------------------------------------------------------------------------------------------
    def clients(self) -> list[ClientInfo]:
        with self._cond:
            return list(self._clients.values())

    def wait_clients(self, stop: threading.Event | None = None) -> None:
        """Until a client has come (since the call) and every client has gone; Giant released meanwhile."""
        with self.giant.released(), self._cond:
            start = self._accepted
            while not (self._accepted > start and not self._clients) and not self.stopping:
                if stop is not None and stop.is_set():
                    return
                self._cond.wait(0.5)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self.stopping:
            try:
                sock, peer = self._sock.accept()
            except OSError:
                return
            if self.stopping:
                sock.close()
                return
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                number = self._next
                self._next += 1
                self._accepted += 1
                label = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
                info = ClientInfo(number, label, wire=Wire(sock))
                self._clients[number] = info
                self._cond.notify_all()
            thread = threading.Thread(target=self._serve, args=(info,), name=f"nbd-client-{number}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, info: ClientInfo) -> None:
        wire = info.wire
        assert wire is not None

        def log(message: str) -> None:
            self.log(f"client {info.number} ({info.peer}{', ' + info.export if info.export else ''}): {message}")

        try:
            negotiation = Negotiation(wire, self.catalogue, readonly=self.readonly, log=log,
                                      shutting_down=lambda: self.stopping)
            try:
                session = negotiation.run()
            except NegotiationEnded as exc:
                if exc.error:
                    log(f"handshake failed: {exc}")
                return
            info.export, info.phase = session.name, "transmission"
            connection = Connection(wire, session, log=log, shutting_down=lambda: self.stopping)
            info.stats = connection.stats
            connection.run()
        except PeerGone as exc:
            log(f"connection lost: {exc}")
        except Exception as exc:  # noqa: BLE001 - one client's failure is not the board's
            log(f"internal error, closing the connection: {type(exc).__name__}: {exc}")
        finally:
            wire.close()
            with self._cond:
                self._clients.pop(info.number, None)
                self._cond.notify_all()


def wait_for_signal(stop: threading.Event | None = None, ready: Callable[[], None] | None = None) -> None:
    """Block until SIGINT or SIGTERM (or `stop` is set): how a foreground server runs until it is told.
    `ready` runs once the handler is in place (what it prints may make someone send the signal)."""
    stop = stop or threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if ready is not None:
            ready()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.stdout.flush()
