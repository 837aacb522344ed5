"""`armboard`: the command line. Results on stdout, errors on stderr as one `armboard: ` line.

Exit status: 0 success, 1 the guest or the checked thing failed, 2 bad usage or input, 3 time limit.

build_parser() is the one definition of the command line. The common path does not run it: the
options it defines are read from a cache by tools/cli_fast.py, and argparse is imported only for
`--help`, for errors and for what the fast reader leaves to it (see that module).
"""

from __future__ import annotations

import sys

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.kern.version import ARMBOARD_VERSION

TYPE_CHECKING = False   # argparse and typing cost imports on every start; annotations are strings here
if TYPE_CHECKING:
    import argparse

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


class UsageError(Exception):
    pass


_parser_classes: list[type] = []


def _parser_class() -> type:
    """argparse.ArgumentParser whose errors raise UsageError (argparse would print usage and exit 2
    by itself); made on first use, when argparse is imported."""
    if not _parser_classes:
        import argparse

        class _Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:
                raise UsageError(message)

        _parser_classes.append(_Parser)
    return _parser_classes[0]


def __getattr__(name: str):
    if name == "_Parser":        # tests and the subcommand modules build parsers of the same class
        return _parser_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_config_arguments(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """What describes a board and its kernel: shared by boot and plan (and later sweep). Paths stay
    strings, as the fast reader gives them too."""
    p.add_argument("--board", default="virt", help="board profile name or TOML file (default virt)")
    p.add_argument("--kernconf", help="kernel configuration file (default images/GENERIC-VIRT)")
    p.add_argument("-o", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a kernel option (repeatable)")
    p.add_argument("--loader-conf", help="loader.conf (default images/loader.conf)")
    p.add_argument("--no-loader-conf", action="store_true", help="boot without a loader.conf")
    p.add_argument("--hints", help="device.hints file")
    p.add_argument("--mfsroot",
                   help="preload FILE as the root md_image (replaces loader.conf's mfsroot, the default root)")
    p.add_argument("--md-image", dest="md_images", action="append", default=[], metavar="FILE",
                   help="preload FILE as one more md_image (md1, md2, ...)")
    p.add_argument("--md-vnode", dest="md_vnodes", action="append", default=[], metavar="FILE[:rw]",
                   help="attach a host file as a vnode md at boot (read-only unless :rw), e.g. an ISO")
    p.add_argument("--physmem", help="RAM size, e.g. 512M or 2G (default: the board's)")
    p.add_argument("--kernel", help="boot this kernel ELF instead of the built-in one")
    p.add_argument("--kernel-footprint", metavar="SIZE|ELF",
                   help="memory the kernel occupies: a size (9M) or a real kernel ELF to match")
    p.add_argument("--flash", action="append", default=[], metavar="[BANK=]FILE",
                   help="attach an image file to a flash bank, e.g. flash0=flash.img; a bare FILE takes the first "
                        "free bank, as QEMU's -pflash (programs reach the file)")
    p.add_argument("-v", dest="bootverbose", action="store_true", help="boot verbose (boot_verbose=YES)")
    p.add_argument("--abi", default="freebsd", choices=("freebsd", "linux", "none"),
                   help="boot registers: FreeBSD loader (r0=metadata), Linux (r2=DTB) or none")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print the outcome as JSON")


def build_parser() -> argparse.ArgumentParser:
    from pathlib import Path

    _Parser = _parser_class()
    parser = _Parser(prog="armboard", description="Emulate an armv7 board booting a synthetic FreeBSD kernel.")
    parser.add_argument("--version", action="version", version=f"armboard {ARMBOARD_VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    boot = sub.add_parser("boot", help="boot the board (default: the virt board with images/GENERIC-VIRT)")
    add_config_arguments(boot)
    boot.add_argument("--console", help="write the console to FILE instead of the terminal")
    boot.add_argument("--timeout", type=float, default=60.0, help="wall-clock limit in seconds (exit 3)")
    boot.add_argument("--stop-at", default="halt", metavar="handover|halt|SYMBOL|0xADDR",
                      help="stop at the hand-over, at the end (default), at a guest kernel symbol (at its "
                           "physical address too, before the MMU is on) or at an address; exit 1 if never reached")
    boot.add_argument("--mmu", default="unicorn", choices=("unicorn", "python"),
                      help="who answers the CPU's TLB fills (python: the MMU simulator)")
    boot.add_argument("--shell", action="store_true",
                      help="after /etc/rc, start a shell on the console (reads the terminal) instead of halting")
    boot.add_argument("-c", dest="guest_command", metavar="CMD", help="run one guest shell command after /etc/rc")
    boot.add_argument("--swap", metavar="SIZE[:ALLOCATOR]",
                      help="give the board a swap device of SIZE (allocator sparse, malloc or zstd; default sparse)")
    boot.add_argument("--monitor", action="store_true", help="open the monitor prompt when the boot stops")
    boot.add_argument("-x", dest="monitor_commands", action="append", default=[], metavar="CMD",
                      help="monitor command to run when the boot stops (repeatable); continue, step and until "
                           "resume the boot and the next commands run at its next stop")
    boot.add_argument("-S", dest="freeze", action="store_true",
                      help="stop before the first instruction (reset; with --restore, where the snapshot goes on), "
                           "as QEMU's -S: for --gdb, -x or --monitor")
    boot.add_argument("--gdb", metavar="[HOST:]PORT",
                      help="serve gdb's remote protocol on PORT (HOST defaults to localhost; 0 picks a free port), "
                           "as QEMU's -gdb tcp::PORT")
    boot.add_argument("--write-elf", metavar="FILE",
                      help="write the configured kernel ELF (with its symbols) to FILE, for gdb's symbol-file "
                           "or qemu-system-arm -kernel")
    from tools.nbd_cmd import add_boot_arguments as add_nbd_boot_arguments

    add_nbd_boot_arguments(boot)
    boot.add_argument("--trace", metavar="KINDS",
                      help="trace as QEMU's -d: in_asm,exec,insn,cpu,int,mmu,mmio,hypercall (comma-separated)")
    boot.add_argument("--trace-file", metavar="FILE", help="write the trace to FILE (default stderr)")
    boot.add_argument("--trace-range", metavar="START-END|START+LEN",
                      help="trace only code (and events at a pc) in this address range")
    boot.add_argument("--trace-stage", metavar="STAGE[,STAGE]",
                      help="trace only while these boot stages run (reset, locore, mmu_on, initarm, pmap_bootstrap, "
                           "handover, kmeminit, geom_taste, mountroot, init, ...)")
    boot.add_argument("--timeline", metavar="FILE.json|FILE.svg",
                      help="record the boot timeline: stages with instruction counts, virtual and wall time")
    boot.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML boot report")
    boot.add_argument("--save-at", nargs=2, metavar=("POINT", "FILE"),
                      help="save a snapshot in FILE when the boot reaches POINT (handover, a guest kernel symbol "
                           "or 0xADDR as --stop-at takes them, a stage of mi_startup such as geom_taste, or done), "
                           "then go on")
    boot.add_argument("--restore", metavar="FILE",
                      help="boot on from a snapshot (the board and kernel configuration come from it)")
    plan = sub.add_parser("plan", help="predict a boot without running the CPU: stages, KVA layout, kmem")
    add_config_arguments(plan)
    plan.add_argument("--picture", type=Path, metavar="FILE.svg", help="draw the KVA layout as SVG")
    sweep = sub.add_parser("sweep", help="real boots over a grid of options, tunables and RAM sizes")
    add_config_arguments(sweep, json_flag=False)
    sweep.add_argument("-g", dest="grid", action="append", default=[], metavar="NAME=VALUES",
                       help="a grid dimension: an OPTION or a loader.tunable, values 1..8 or a,b,c (repeatable)")
    sweep.add_argument("--mfsroot-size", metavar="SIZE",
                       help="replace the root image with a generated one of SIZE, as --mfsroot FILE does: the "
                            "root image's bytes, then a sparse hole")
    sweep.add_argument("-j", dest="jobs", type=int, help="worker processes (default: the core count)")
    sweep.add_argument("--scheduler", default="local", metavar="local|dask://HOST:PORT|dask-local[:N]",
                       help="where points run: a process pool here (default), an existing Dask scheduler, or a "
                            "Dask LocalCluster of N workers started for the sweep (pip install armboard[dask])")
    sweep.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="per-point wall-clock limit; a point past it is stopped and its outcome is timeout")
    sweep.add_argument("--retries", type=int, default=2, metavar="N",
                       help="run the points of a worker that died again, up to N times (default 2)")
    sweep.add_argument("--cold", action="store_true",
                       help="boot every point from reset (default: points that share the guest boot start from "
                            "one board at the hand-over; the rows are the same)")
    sweep.add_argument("--out", type=Path, default=Path("sweep.csv"),
                       help="the rows, appended as points finish (CSV, or JSON Lines if .jsonl); an interrupted "
                            "sweep resumes from it (default sweep.csv)")
    sweep.add_argument("--json", dest="json_out", metavar="FILE",
                       help="write rows, summary and frontier as one JSON document (- for stdout)")
    sweep.add_argument("--plot", type=Path, metavar="FILE.svg", help="draw a heatmap of the outcomes at the end")
    sweep.add_argument("--plot-every", type=int, metavar="N", help="also redraw the heatmap every N points")
    sweep.add_argument("--progress", default="auto", choices=("auto", "bar", "plain", "none"),
                       help="progress on stderr: a bar on a terminal, plain lines otherwise (auto)")
    from tools.flash_args import add_parser as add_flash_parser
    from tools.mkroot_cmd import add_parser as add_mkroot_parser
    from tools.mkuzip_args import add_parser as add_mkuzip_parser

    add_flash_parser(sub)
    add_mkuzip_parser(sub)
    add_mkroot_parser(sub)
    from tools.dump_cmd import add_parser as add_dump_parser

    add_dump_parser(sub)
    from tools.nbd_cmd import add_parser as add_nbd_parser

    add_nbd_parser(sub)
    return parser


def request_from_args(args: argparse.Namespace, **extra):
    """A BootRequest from the shared configuration arguments."""
    from kernel_sim import boot as boot_mod

    return boot_mod.BootRequest(
        board=args.board,
        kernconf=args.kernconf or boot_mod.DEFAULT_KERNCONF,
        overrides=args.overrides,
        loader_conf=None if args.no_loader_conf else (args.loader_conf or boot_mod.DEFAULT_LOADER_CONF),
        hints=args.hints, mfsroot=args.mfsroot, physmem=args.physmem, kernel=args.kernel,
        kernel_footprint=args.kernel_footprint, abi=args.abi, flash=_flash_args(args.flash), md_images=args.md_images,
        md_vnodes=args.md_vnodes,
        tunables=[("boot_verbose", "YES")] if args.bootverbose else [], **extra)


def _flash_args(specs: list[str]) -> list[tuple[str | None, str]]:
    """--flash BANK=FILE or FILE. BANK is a bank name (letters, digits, _); anything else, e.g.
    ./a=b.img, is a file name, so a file whose name holds '=' can still be given."""
    out: list[tuple[str | None, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and name.isidentifier():
            if not path:
                raise InputError("expected BANK=FILE or FILE, e.g. --flash flash0=flash.img", f"--flash {spec}")
            out.append((name, path))
        elif spec:
            out.append((None, spec))
        else:
            raise InputError("expected BANK=FILE or FILE, e.g. --flash flash.img", "--flash")
    return out


def cmd_boot(args: argparse.Namespace) -> int:
    from kernel_sim import boot as boot_mod

    console_file = None
    if args.console is not None:
        try:
            console_file = open(args.console, "wb")  # noqa: SIM115 - closed after the monitor, below
        except OSError as exc:
            raise InputError(f"cannot write the console file: {describe_host(exc)}", str(args.console)) from None
    nbd = None
    if args.nbd:                    # listening before the boot: a bad address is exit 2, nothing booted
        from tools.nbd_cmd import start_boot_server

        nbd = start_boot_server(args)
    stub, session = _debuggers(args, nbd)
    read_line = sys.stdin.readline if args.shell else None
    request = request_from_args(
        args, console=console_file if console_file else (None if args.json else sys.stdout.buffer),
        timeout=args.timeout, stop_at=args.stop_at, mmu=args.mmu, shell=args.shell, command=args.guest_command,
        swap=args.swap, read_line=nbd.giant.releasing(read_line) if nbd and read_line else read_line,
        debugger=stub if stub is not None else session)
    try:
        if args.restore:                 # only a boot that saves or restores imports the snapshot code
            from tools import snapshot_cli

            defaults = vars(build_parser().parse_args(["boot"]))
            restored = snapshot_cli.load(args, request, defaults)
            if stub is not None:
                stub.listen()
            return _boot_and_monitor(args, None, nbd, stub, session, restored=restored)
        prepared = boot_mod.prepare(request)
        if args.write_elf is not None:
            _write_elf(prepared, args.write_elf)
        if stub is not None:
            stub.listen()
        return _boot_and_monitor(args, prepared, nbd, stub, session)
    finally:
        if nbd is not None:
            nbd.close()
        if console_file:            # after the monitor: its commands may make the kernel print
            console_file.close()


def _records(args: argparse.Namespace) -> bool:
    """Whether this boot asks for a trace, a timeline or a report (tools/boot_observers.py); checked here
    so that a boot that asks for none imports nothing of them."""
    return bool(args.trace or args.trace_file or args.trace_range or args.trace_stage or args.timeline
                or args.report or any(c.split()[:1] == ["timeline"] for c in args.monitor_commands))


def _debuggers(args: argparse.Namespace, nbd=None):
    """The gdb stub (--gdb) and the monitor session (-x, --monitor, -S without --gdb). The stub is the
    boot's debugger when asked for; the monitor's commands then run when the boot has ended."""
    stub = session = None
    waiting = nbd.waiting if nbd is not None else None      # waits let the NBD server into the kernel
    if args.gdb is not None:
        from tools.gdbstub import GdbStub, parse_address

        host, port = parse_address(args.gdb)
        stub = GdbStub(host, port, wait=args.freeze)
        if waiting is not None:
            stub.waiting = waiting
    if args.monitor_commands or args.monitor or (args.freeze and stub is None):
        from tools.monitor_session import MonitorSession

        session = MonitorSession(args.monitor_commands, prompt=args.monitor, stop_at_reset=args.freeze, nbd=nbd)
    return stub, session


def _write_elf(prepared, path: str) -> None:
    from kernel_sim.loader.load import write_configured_elf

    try:
        write_configured_elf(prepared.image, prepared.config, path)
    except OSError as exc:
        raise InputError(f"cannot write the kernel ELF: {describe_host(exc)}", f"--write-elf {path}") from None


def _boot_and_monitor(args: argparse.Namespace, prepared, nbd=None, stub=None, session=None, restored=None) -> int:
    """Boot `prepared` (or go on from `restored`, a loaded snapshot: tools/snapshot_cli.py) with its
    debuggers, then the monitor."""
    from kernel_sim import boot as boot_mod

    observers = None
    machine = None
    if restored is not None and (_records(args) or nbd is not None):
        raise InputError("traces, timelines, reports and --nbd follow a boot from its start; they cannot be "
                         "given with --restore", f"--restore {args.restore}")
    if _records(args):       # traces, timelines and reports load only when asked for
        from tools.boot_observers import BootObservers

        observers = BootObservers(args)
        machine = observers.attach(prepared)
    if session is not None:                  # the monitor's `timeline`, at every stop and after the end
        from tools.monitor_timeline import add_timeline_commands

        session.extend = lambda monitor: add_timeline_commands(
            monitor, observers.timeline if observers is not None else None)
    if nbd is not None:             # the machine first, so its flash banks and RAM are served while it runs
        machine = machine or boot_mod.build_machine(prepared)
        nbd.attach_machine(machine)
    if restored is not None or args.save_at:
        from tools import snapshot_cli

        result = snapshot_cli.run(args, prepared, machine, restored)
    else:
        result = boot_mod.run(prepared, machine)
    if nbd is not None:
        nbd.attach_kernel(result.startup)
    if observers is not None:
        observers.finish(result)
    if stub is not None:
        stub.after_boot(result)
    if args.json:
        import json

        print(json.dumps(result_json(result), indent=2))
    elif result.exit_code != EXIT_OK:
        sys.stdout.flush()
        print(f"\narmboard: {result.message}", file=sys.stderr)
    if session is not None:
        monitor = session.after_boot(result)
        nbd = monitor.nbd                     # --nbd's, or one that -x "nbd start ..." started
        if monitor.done or args.monitor:
            if nbd is not None:
                nbd.close()
            return result.exit_code
    if nbd is not None:
        nbd.serve_until_signal()              # the boot is over: serve until told to stop, then stop
        nbd.close()
    return result.exit_code


def result_json(result) -> dict:
    out = {"exit_code": result.exit_code, "status": result.status, "stage": result.stage,
           "message": result.message, "console": result.console.decode("utf-8", "replace")}
    if result.diagnosis is not None:
        out["diagnosis"] = {"option": result.diagnosis.option, "suggested": result.diagnosis.suggested}
    if result.memory is not None:
        out["memory"] = {"real": result.memory.real, "avail": result.memory.avail}
    if result.handoff is not None:
        out["handoff"] = dict(result.handoff.fields)
    return out


def parse_args(argv: list[str]):
    """The namespace of `argv`: from the cached option table when it can, else from argparse."""
    if argv == ["--version"]:
        print(f"armboard {ARMBOARD_VERSION}")
        raise SystemExit(0)
    from tools.cli_fast import help_text, load_table, parse

    text = help_text(argv, build_parser)
    if text is not None:          # what argparse's help action prints, then its exit
        sys.stdout.write(text)
        raise SystemExit(0)
    args = parse(argv, load_table(build_parser))
    return args if args is not None else build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.command == "boot":
            return cmd_boot(args)
        if args.command == "dump":
            from tools.dump_cmd import run as run_dump

            return run_dump(args)
        if args.command == "nbd":
            from tools.nbd_cmd import cmd_nbd

            return cmd_nbd(args)
        if args.command == "mkroot":
            from tools.mkroot_cmd import cmd_mkroot

            return cmd_mkroot(args)
        if args.command == "mkuzip":
            from tools.mkuzip_cmd import cmd_mkuzip

            return cmd_mkuzip(args)
        if args.command == "flash":
            from tools.flash_cmd import cmd_flash

            return cmd_flash(args)
        if args.command == "sweep":
            from tools.sweep_cmd import cmd_sweep

            return cmd_sweep(args, request_from_args(args, console=None))
        if args.command == "plan":
            from tools.plan_cmd import cmd_plan

            return cmd_plan(args, request_from_args(args, console=None))
        raise UsageError(f"unknown command {args.command}")
    except UsageError as exc:
        print(f"armboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"armboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("armboard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `armboard ... | head`: the reader left; say nothing more
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
