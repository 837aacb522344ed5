"""`armboard nbd memory SIZE [allocator=...]` and the `--nbd` options of `armboard boot`.

The parser is registered on every `armboard` run, so this module imports nothing of the server at
the top: the NBD modules load only when a command asks for them (a boot without --nbd imports none).

`armboard nbd memory` is `nbdkit memory` served by the board's own stores (board/storage, the ones
swap uses): the same parameters (`[size=]SIZE`, `allocator=sparse|malloc[,mlock=true]|zstd[,level=N]`,
nbdkit's size suffixes), the same answers to every request (a differential test holds it to
`nbdkit memory`), and like nbdkit it serves one disk under any export name.
"""

from __future__ import annotations

import argparse
from typing import Any

from kernel_sim.errors import InputError

MEMORY_USAGE = "[size=]SIZE [allocator=sparse|malloc[,mlock=true]|zstd[,level=N]]"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `armboard nbd` (and `nbd memory`) under the main parser's subcommands."""
    nbd = subparsers.add_parser("nbd", help="serve storage over the NBD protocol (as nbdkit does)")
    sub = nbd.add_subparsers(dest="nbd_command", required=True, metavar="{memory}")
    mem = sub.add_parser("memory", help="a RAM disk with nbdkit's memory plugin semantics",
                         usage=f"armboard nbd memory {MEMORY_USAGE} [--port P | --unix PATH]")
    mem.add_argument("params", nargs="+", metavar="PARAM",
                     help="[size=]SIZE (suffixes b k m g t p e, s for 512) and allocator=KIND[,key=value]")
    where = mem.add_mutually_exclusive_group()
    where.add_argument("--port", "-p", metavar="[HOST:]PORT", default=None,
                       help="TCP port to listen on (default 10809 on 127.0.0.1; 0 picks a free port)")
    where.add_argument("--unix", "-U", metavar="PATH", help="listen on a unix socket instead")
    mem.add_argument("--listen-any", action="store_true",
                     help="allow a non-loopback address (NBD has no access control here: no TLS)")
    mem.add_argument("--readonly", "-r", action="store_true", help="serve the disk read-only (nbdkit -r)")
    return nbd


def add_boot_arguments(boot: argparse.ArgumentParser) -> None:
    """`armboard boot --nbd ...`: serve the board's storage while it runs and after it stops."""
    boot.add_argument("--nbd", metavar="[HOST:]PORT|unix:PATH",
                      help="serve the board's flash banks, md units, GEOM providers and RAM over NBD")
    boot.add_argument("--nbd-listen-any", action="store_true",
                      help="let --nbd listen on a non-loopback address (there is no access control)")
    boot.add_argument("--nbd-mem-rw", action="store_true", help="make the NBD export 'mem' (physical RAM) writable")


# -- nbd memory ----------------------------------------------------------------------------------------------
def parse_memory_params(params: list[str]) -> tuple[int, str, dict[str, Any]]:
    """(size, allocator kind, allocator options) from nbdkit-style `key=value` words (the bare
    word is the size: `size` is the memory plugin's magic config key)."""
    from board.storage import SizeError, parse_size

    size_text: str | None = None
    allocator = "sparse"
    for word in params:
        key, sep, value = word.partition("=")
        if not sep:
            key, value = "size", word
        if key == "size":
            if size_text is not None:
                raise InputError("the size is given twice", f"nbd memory {word}")
            size_text = value
        elif key == "allocator":
            allocator = value
        else:
            raise InputError(f"unknown parameter {key!r} (the memory plugin takes size= and allocator=)",
                             f"nbd memory {word}")
    if size_text is None:
        raise InputError("a size is required, e.g. armboard nbd memory 1G", "nbd memory")
    try:
        size = parse_size(size_text)
    except SizeError as exc:
        raise InputError(exc.message, f"nbd memory size={size_text}") from None
    kind, *rest = allocator.split(",")
    options: dict[str, Any] = {}
    for item in rest:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not key:
            raise InputError("an allocator parameter has no name", f"nbd memory allocator={allocator}")
        options[key] = value if sep else "1"
    if kind not in ("sparse", "malloc", "zstd"):
        raise InputError(f"unknown allocator {kind!r} (sparse, malloc or zstd)", f"nbd memory allocator={allocator}")
    allowed = {"sparse": set(), "malloc": {"mlock"}, "zstd": {"level"}}[kind]
    for key in options:
        if key not in allowed:
            raise InputError(f"allocator={kind} takes no parameter {key!r}"
                             + (f" (it takes {', '.join(sorted(allowed))})" if allowed else ""),
                             f"nbd memory allocator={allocator}")
    if "level" in options:
        try:
            options["level"] = int(options["level"], 10)
        except ValueError:
            raise InputError(f"zstd level {options['level']!r} is not a number (1 to 22)",
                             f"nbd memory allocator={allocator}") from None
        if not 1 <= options["level"] <= 22:
            raise InputError(f"zstd level {options['level']} is outside 1 to 22", f"nbd memory allocator={allocator}")
    if "mlock" in options and options["mlock"].lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise InputError(f"mlock={options['mlock']} is not a boolean (true or false)",
                         f"nbd memory allocator={allocator}")
    return size, kind, options


def cmd_nbd(args: argparse.Namespace) -> int:
    if args.nbd_command == "memory":
        return _memory(args)
    raise InputError(f"unknown nbd command {args.nbd_command}", "nbd")


def _memory(args: argparse.Namespace) -> int:
    from board.storage import StorageError, open_allocator
    from tools.nbd.exports import memory_catalogue
    from tools.nbd.server import Address, AddressError, NbdServer, wait_for_signal

    size, kind, options = parse_memory_params(args.params)
    try:
        address = Address(path=args.unix) if args.unix else Address.parse(args.port or "10809")
    except AddressError as exc:
        raise InputError(str(exc), f"--port {args.port}") from None
    try:
        store = open_allocator(kind, size, **options)
    except StorageError as exc:
        raise InputError(exc.message, f"nbd memory allocator={kind}") from None
    catalogue = memory_catalogue(store)
    try:
        server = NbdServer(catalogue, address, listen_any=args.listen_any, readonly=args.readonly)
        server.start()
    except AddressError as exc:
        raise InputError(str(exc), "--unix" if args.unix else "--port") from None
    try:
        wait_for_signal(ready=lambda: print(server.url, flush=True))
    finally:
        server.stop()
        store.close()
    return 0


def start_boot_server(args: argparse.Namespace):
    """`armboard boot --nbd ADDRESS`: the board's NBD server, listening before the machine is built."""
    from tools.nbd.board_server import BoardServer
    from tools.nbd.server import AddressError

    srv = BoardServer(mem_rw=args.nbd_mem_rw, listen_any=args.nbd_listen_any)
    try:
        srv.start(args.nbd)
    except AddressError as exc:
        srv.close()
        raise InputError(str(exc), f"--nbd {args.nbd}") from None
    return srv
