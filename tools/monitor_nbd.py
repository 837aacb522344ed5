"""The monitor's `nbd` command: serve the board's storage over NBD from the monitor.

    nbd start [HOST:]PORT|unix:PATH [--listen-any] [--mem-rw]   start serving (if `--nbd` did not)
    nbd stop                                                     close the listener and every client
    nbd list                                                     the address, the exports, the clients
    nbd wait                                                     let clients work until one has come and
                                                                 all have gone (Ctrl-C ends it too)

The server is the one `armboard boot --nbd` started (`monitor.nbd`, a tools.nbd.board_server
BoardServer), or one made here over `monitor.machine` and `monitor.startup`. Nothing of the server is
imported until the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.monitor_errors import CommandRefused, MonitorError

__all__ = ["COMMANDS"]

USAGE = "usage: nbd start [HOST:]PORT|unix:PATH [--listen-any] [--mem-rw] | nbd stop | nbd list | nbd wait"


def board_server(monitor: Any, *, mem_rw: bool = False, listen_any: bool = False):
    """The monitor's BoardServer, made (over its machine and kernel) on first use."""
    srv = getattr(monitor, "nbd", None)
    if srv is None:
        from tools.nbd.board_server import BoardServer

        srv = BoardServer(mem_rw=mem_rw, listen_any=listen_any)
        srv.attach_machine(monitor.machine)
        srv.attach_kernel(getattr(monitor, "startup", None))
        monitor.nbd = srv
        monitor.waiting = srv.waiting
    return srv


def nbd_command(monitor: Any, args: list[str]) -> None:
    if not args or args[0] not in ("start", "stop", "list", "wait"):
        raise MonitorError(USAGE)
    verb, rest = args[0], args[1:]
    srv = getattr(monitor, "nbd", None)
    if verb == "start":
        flags = {a for a in rest if a.startswith("--")}
        where = [a for a in rest if not a.startswith("--")]
        if len(where) != 1 or flags - {"--listen-any", "--mem-rw"}:
            raise MonitorError(USAGE)
        from tools.nbd.server import Address, AddressError

        try:
            Address.parse(where[0])
        except AddressError as exc:
            raise MonitorError(f"nbd start: {exc}") from None
        if srv is not None and srv.running:
            raise CommandRefused(f"nbd start: already serving on {srv.server.url} (nbd stop first)")
        srv = board_server(monitor, mem_rw="--mem-rw" in flags, listen_any="--listen-any" in flags)
        srv.exports.mem_rw = srv.exports.mem_rw or "--mem-rw" in flags
        srv.listen_any = srv.listen_any or "--listen-any" in flags
        try:
            url = srv.start(where[0])
        except AddressError as exc:
            raise CommandRefused(f"nbd start: {exc}") from None
        names = ", ".join(name for name, _ in srv.exports.catalogue.listing())
        monitor.out.write(f"nbd: serving on {url} (exports: {names})\n")
    elif rest:
        raise MonitorError(USAGE)
    elif verb == "list":
        if srv is None:
            monitor.out.write("nbd: not serving (nbd start [HOST:]PORT|unix:PATH)\n")
        else:
            srv.describe(monitor.out)
    elif srv is None or not srv.running:
        raise CommandRefused(f"nbd {verb}: not serving (nbd start [HOST:]PORT|unix:PATH)")
    elif verb == "stop":
        srv.stop()
        monitor.out.write("nbd: stopped\n")
    else:
        monitor.out.write(f"nbd: waiting for clients on {srv.server.url}\n")
        monitor.out.flush()
        srv.wait_clients()
        monitor.out.write("nbd: the clients have gone\n")


COMMANDS: dict[str, Callable[[Any, list[str]], None]] = {"nbd": nbd_command}
