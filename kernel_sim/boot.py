"""The public facade of a boot: configure, load, run the guest, hand over, diagnose.

`prepare()` does everything that can fail because of the user's input (raising InputError, exit
status 2) before a machine exists; `run()` boots and returns a BootResult whose exit_code follows
the conventions: 0 clean halt or stop point reached, 1 the guest failed, 3 time limit.
"""

from __future__ import annotations

import os
import struct
from collections import namedtuple

from board.profile import BoardProfile, ProfileError, load_profile
from kernel_sim.errors import TEXT_LIMIT, InputError, check_input_file
from kernel_sim.guest.abi import MIB, GuestConfig, Handoff
from kernel_sim.guest.build import GuestImage, guest_image
from kernel_sim.kern.tunables import check_inputs
from kernel_sim.loader import layout as layout_mod
from kernel_sim.loader.hints import hints_from_env, parse_hints
from kernel_sim.loader.kernconf import KernelConfig, parse_kernconf
from kernel_sim.loader.kernel_elf import footprint_of, read_kernel_elf
from kernel_sim.loader.load import load_kernel, load_modules, write_config
from kernel_sim.loader.loaderconf import ROOT_MODULE, LoaderConf, parse_loader_conf
from kernel_sim.loader.sizes import parse_size

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from board.machine import Machine, Stop
    from kernel_sim.errors import StrPath
    from kernel_sim.kern.hypercalls import GateEvent

IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images")
DEFAULT_KERNCONF = os.path.join(IMAGES, "GENERIC-VIRT")
DEFAULT_LOADER_CONF = os.path.join(IMAGES, "loader.conf")
ABIS = ("freebsd", "linux", "none")


class BootRequest:
    """Everything `armboard boot` takes; paths and sizes still as the user wrote them."""

    __slots__ = (
        "board", "kernconf", "overrides", "loader_conf", "hints", "mfsroot", "physmem", "kernel", "kernel_footprint",
        "console", "timeout", "stop_at", "mmu", "abi", "tunables", "flash", "md_images", "md_vnodes", "shell",
        "command", "read_line", "swap", "on_stage", "pause_at", "on_pause", "debugger",
    )

    def __init__(self, board: str = "virt", kernconf: StrPath = DEFAULT_KERNCONF, overrides: list[str] | None = None,
                 loader_conf: StrPath | None = DEFAULT_LOADER_CONF, hints: StrPath | None = None,
                 mfsroot: StrPath | None = None, physmem: str | None = None, kernel: StrPath | None = None,
                 kernel_footprint: str | None = None, console: BinaryIO | None = None, timeout: float | None = 60.0,
                 stop_at: str = "halt", mmu: str = "unicorn", abi: str = "freebsd",
                 tunables: list[tuple[str, str]] | None = None, flash: list[tuple[str | None, StrPath]] | None = None,
                 md_images: list[StrPath] | None = None, md_vnodes: list[str] | None = None, shell: bool = False,
                 command: str | None = None, read_line: Callable[[], str] | None = None, swap: str | None = None,
                 on_stage: Callable[[str, object], None] | None = None, pause_at: str | None = None,
                 on_pause: Callable[[Paused], None] | None = None, debugger: Debugger | None = None) -> None:
        self.board = board
        self.kernconf = kernconf
        self.overrides = [] if overrides is None else overrides
        self.loader_conf = loader_conf
        self.hints = hints
        self.mfsroot = mfsroot
        self.physmem = physmem
        self.kernel = kernel
        self.kernel_footprint = kernel_footprint
        self.console = console
        self.timeout = timeout
        self.stop_at = stop_at
        self.mmu = mmu
        self.abi = abi
        self.tunables = [] if tunables is None else tunables  # (name, value) into the kernel env
        # --flash [BANK=]FILE in order: a bank name, or None for the first bank still free (QEMU's -pflash)
        self.flash = [] if flash is None else flash
        self.md_images = [] if md_images is None else md_images  # more md_image modules after the root's
        self.md_vnodes = [] if md_vnodes is None else md_vnodes  # "FILE[:rw]": host files as vnode md units
        self.shell = shell  # after /etc/rc, a shell on the console instead of halting
        self.command = command  # one guest shell command after /etc/rc (`armboard boot -c`)
        self.read_line = read_line  # the console's input for the shell ("" at end of input)
        self.swap = swap  # "SIZE[:ALLOCATOR]": a swap device beyond the profile's
        # Called before each step of mi_startup (kernel_sim.kern.startup.STEPS) with its name and the run,
        # and with "done" at the end: stop points, timelines and snapshots in the Python kernel.
        self.on_stage = on_stage
        # A pause point: at its first arrival the boot calls on_pause(Paused) and goes on (`--save-at`).
        # A guest kernel symbol or 0xADDR, as stop_at takes them, or "handover" (before mi_startup).
        self.pause_at = pause_at
        self.on_pause = on_pause
        # Who decides at a guest stop (breakpoint, watchpoint, step, interrupt) and at each mi_startup
        # step: the monitor's stepping commands or the gdb stub (see Debugger). None: a stop ends the boot.
        self.debugger = debugger

    def as_dict(self) -> dict[str, object]:
        """The fields by name, as BootRequest(**d) takes them back (sweeps ship requests to workers)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class Paused(namedtuple("Paused", "name prepared machine handoff", defaults=(None,))):
    """Where a boot paused: `name` the pause point, with the PreparedBoot, its Machine and, from the
    hand-over on, the Handoff."""

    __slots__ = ()


DEBUG_STOPS = ("breakpoint", "watchpoint", "step", "interrupt")


class Resume:
    """A debugger's answer at a guest stop: continue (steps None) or run `steps` instructions."""

    __slots__ = ("steps",)

    def __init__(self, steps: int | None = None) -> None:
        self.steps = steps


class EndBoot(Exception):  # noqa: N818 - a request, not an error
    """Raised by a debugger's on_stage to end the boot before that mi_startup step (the user quit,
    or the commands ran out); `startup` is the kernel's state so far, for the monitor and --json."""

    def __init__(self, stage: str, startup: object = None) -> None:
        super().__init__(stage)
        self.stage, self.startup = stage, startup


class Debugger:
    """What run() asks of a debugger (tools/ implements it: the monitor session, the gdb stub).

    attach: the machine is built, no instruction has run (set breakpoints; `machine.request_stop()`
    stops before the first one). stopped: the guest stopped at a debug event; answer a Resume, or
    None to end the boot there. on_stage: before each mi_startup step, as BootRequest.on_stage;
    raise EndBoot to end the boot there."""

    def attach(self, machine: Machine, prep: PreparedBoot) -> None:
        pass

    def stopped(self, stop: Stop) -> Resume | None:
        return None

    def on_stage(self, name: str, run: object) -> None:
        pass


class PreparedBoot:
    __slots__ = (
        "request", "profile", "kernconf", "loader", "image", "layout", "config", "options", "swap", "md_vnodes",
        "flash",
    )

    def __init__(self, request: BootRequest, profile: BoardProfile, kernconf: KernelConfig, loader: LoaderConf,
                 image: GuestImage, layout: layout_mod.BootLayout, config: GuestConfig, options: dict[str, int],
                 swap: object = None, md_vnodes: list[tuple[str, bool]] | None = None,
                 flash: dict[str, StrPath] | None = None) -> None:
        self.request = request
        self.profile = profile
        self.kernconf = kernconf
        self.loader = loader
        self.image = image
        self.layout = layout
        self.config = config
        self.options = options
        self.swap = swap  # board.profile.SwapSpec from --swap, over the profile's
        self.md_vnodes = [] if md_vnodes is None else md_vnodes  # (host path, writable)
        self.flash = {} if flash is None else flash  # flash bank name -> image file

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class BootResult:
    __slots__ = (
        "exit_code", "status", "stage", "message", "machine", "prepared", "handoff", "diagnosis", "memory", "stop",
        "event", "startup", "run",
    )

    def __init__(self, exit_code: int, status: str, stage: str, message: str, machine: Machine,
                 prepared: PreparedBoot, handoff: Handoff | None = None, diagnosis: object = None,
                 memory: object = None, stop: Stop | None = None, event: GateEvent | None = None,
                 startup: object = None, run: object = None) -> None:
        self.exit_code = exit_code
        self.status = status  # "halted", "stopped", "failed", "timeout", "unreached" (--stop-at)
        self.stage = stage
        self.message = message
        self.machine = machine
        self.prepared = prepared
        self.handoff = handoff
        self.diagnosis = diagnosis  # kernel_sim.kern.diagnose.Diagnosis
        self.memory = memory  # kernel_sim.kern.startup.MemorySummary
        self.stop = stop
        self.event = event
        self.startup = startup  # kernel_sim.kern.startup.Startup
        self.run = run  # kernel_sim.kern.startup.StartupRun, once mi_startup began

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def console(self) -> bytes:
        return bytes(self.machine.console.data)


def _physmem(request: BootRequest, profile: BoardProfile) -> int:
    if request.physmem is None:
        return profile.ram_default
    size = parse_size(request.physmem, where="--physmem")
    if size % 4096:
        raise InputError(f"{request.physmem} is not a multiple of the 4 KiB page size", "--physmem")
    if not profile.ram_min <= size <= profile.ram_max:
        raise InputError(f"{request.physmem} is outside the {profile.name} board's RAM range "
                         f"({profile.ram_min >> 20} MiB to {profile.ram_max >> 20} MiB)", "--physmem")
    return size


def _md_vnode(spec: str) -> tuple[str, bool]:
    """--md-vnode FILE[:rw]: a host file the kernel attaches as a vnode md at boot, read-only unless
    `:rw` asks for writes to reach the file."""
    path, writable = spec, False
    if spec.endswith((":rw", ":ro")):
        path, writable = spec[:-3], spec.endswith(":rw")
    p = os.fspath(path)
    if check_input_file(p, what="vnode file", where=f"--md-vnode {spec}", writable=writable).st_size < 512:
        raise InputError("smaller than one 512-byte sector", f"--md-vnode {spec}")
    return os.path.realpath(p), writable


def _flash_banks(specs: list[tuple[str | None, StrPath]], profile: BoardProfile) -> dict[str, StrPath]:
    """--flash [BANK=]FILE: each image on its bank. A bare FILE takes the first bank, in the profile's
    order, that no other --flash names, as QEMU's -pflash fills pflash units in order."""
    banks = {f.name: f for f in profile.flash}
    named = {name for name, _ in specs if name is not None}
    free = [name for name in banks if name not in named]
    out: dict[str, StrPath] = {}
    for name, path in specs:
        where = f"--flash {name}={path}" if name is not None else f"--flash {path}"
        if name is None:
            if not free:
                raise InputError(f"board {profile.name} has no free flash bank left for this image (its banks: "
                                 f"{', '.join(banks) or 'none'})", where)
            name = free.pop(0)
        elif name not in banks:
            raise InputError(f"board {profile.name} has no flash bank {name} (it has: "
                             f"{', '.join(banks) or 'none'})", where)
        elif name in out:
            raise InputError(f"flash bank {name} is given twice", where)
        size = check_input_file(path, what="flash image", where=where, writable=True).st_size
        if size != banks[name].size:
            raise InputError(f"the image is {size} bytes; flash bank {name} is exactly {banks[name].size} bytes",
                             where)
        out[name] = path
    return out


def _footprint(request: BootRequest) -> int | None:
    """--kernel-footprint: a size (9M), or a real kernel ELF whose PT_LOAD segments give the size."""
    text = request.kernel_footprint
    if text is None:
        return None
    try:
        return parse_size(text, where="--kernel-footprint")
    except InputError:
        if not os.path.exists(text):
            raise InputError(f"{text!r} is neither a size (e.g. 9M) nor an existing kernel ELF",
                             "--kernel-footprint") from None
    return footprint_of(read_kernel_elf(text, what="footprint kernel", where="--kernel-footprint"))


def prepare(request: BootRequest) -> PreparedBoot:
    """Parse and check every input, and plan the memory layout. Raises InputError."""
    if os.path.splitext(request.board)[1]:      # a profile file, not a name: checked before board/ reads it
        check_input_file(request.board, what="board profile", where="--board", limit=TEXT_LIMIT)
    try:
        profile = load_profile(request.board)
    except ProfileError as exc:
        raise InputError(str(exc), "--board") from None
    if request.mmu not in ("unicorn", "python"):
        raise InputError(f"unknown MMU '{request.mmu}' (unicorn or python)", "--mmu")
    if request.abi not in ABIS:
        raise InputError(f"unknown boot ABI '{request.abi}' (known: {', '.join(ABIS)})", "--abi")
    physmem = _physmem(request, profile)
    swap = None
    if request.swap is not None:
        from board.profile import parse_swap_spec

        try:
            swap = parse_swap_spec(request.swap)
        except ProfileError as exc:
            raise InputError(str(exc).removeprefix(f"--swap '{request.swap}': "), f"--swap {request.swap}") from None
    flash = _flash_banks(request.flash, profile)
    md_vnodes = [_md_vnode(spec) for spec in request.md_vnodes]
    kernconf = parse_kernconf(request.kernconf)
    for spec in request.overrides:
        kernconf.apply_override(spec)
    loader = parse_loader_conf(request.loader_conf) if request.loader_conf else LoaderConf()
    for name, value in request.tunables:
        loader.set_env(name, value, where=f"-g {name}={value}")
    hints_path = request.hints or kernconf.hints_file
    if hints_path is not None:
        for key, value in parse_hints(hints_path).to_env().items():
            loader.env.setdefault(key, value)
    if request.mfsroot is not None:
        loader.add_module(ROOT_MODULE, request.mfsroot, type="md_image", where="--mfsroot",
                          name=str(request.mfsroot))
    for n, path in enumerate(request.md_images):
        loader.add_module(f"md_image{n}", path, type="md_image", where="--md-image", name=str(path))
    image = read_kernel_elf(request.kernel, where="--kernel") if request.kernel else guest_image()
    options = {name: int(kernconf.value(name) or 0)
               for name in ("LOCORE_MAP_MB", "NKPT2PG", "INVARIANTS", "MD_ROOT", "MD_ROOT_SIZE")}
    embedded_md = layout_mod.mfs_root(kernconf)
    if request.abi != "freebsd" and loader.modules:
        raise InputError("modules can only be preloaded with the FreeBSD boot ABI", "--abi")
    requests = [layout_mod.ModuleRequest(m.name or str(m.path), m.type or "elf module", m.path, m.where)
                for m in loader.modules]
    plan = layout_mod.plan(image, ram_base=profile.ram_base, ram_size=physmem, footprint=_footprint(request),
                           embedded_md=embedded_md, modules=requests, env=loader.env)
    check_inputs(physmem, profile.console_devmap_va, dict(kernconf.options), loader.env, loader.origin)
    console = profile.console
    config = GuestConfig(
        locore_map_mb=options["LOCORE_MAP_MB"], nkpt2pg=options["NKPT2PG"],
        invariants=bool(options["INVARIANTS"]), kernel_end=plan.kernel_end_va,
        uart_pa=console.base, uart_devmap_va=profile.console_devmap_va)
    return PreparedBoot(request, profile, kernconf, loader, image, plan, config, options, swap, md_vnodes, flash)


def build_machine(prep: PreparedBoot, *, private_flash: bool = False, load: bool = True) -> Machine:
    """The board of `prep` with the kernel, its configuration and modules in RAM, at reset.

    `private_flash` maps each flash image copy-on-write: programs and erases work but never reach the
    file (a sweep: every point starts from the same image, and no point changes the user's file).
    `load=False` leaves RAM empty (a restore fills it from the snapshot)."""
    # The board (and libunicorn with it) loads here, not at import: `plan` prepares a boot without one.
    from board.devices.flash_image import FlashImage
    from board.machine import Machine
    from board.memory import FileOverlay
    from kernel_sim.vm.cpu_mmu import classify_fault, tlb_fill

    layout = prep.layout
    overlays = tuple(FileOverlay(pa, path) for pa, path in layout.overlays)

    if private_flash:
        images = {name: _private_flash(path) for name, path in prep.flash.items()}
    else:
        # MAP_SHARED: every completed program or erase is in the file even if armboard is killed.
        images = {name: FlashImage.open(path, durable=False) for name, path in prep.flash.items()}
    machine = Machine(prep.profile, layout.ram_size, console=prep.request.console, overlays=overlays,
                      flash_images=images, swap=prep.swap,
                      fault_classifier=classify_fault,
                      tlb_fill=tlb_fill if prep.request.mmu == "python" else None)
    if not load:
        return machine
    load_kernel(machine.phys, prep.image)
    write_config(machine.phys, prep.image, prep.config)
    load_modules(machine.phys, layout)
    return machine


def _private_flash(path: StrPath):
    """A writable flash image over a copy-on-write mapping of the file: writes stay in this process."""
    import mmap

    from board.devices.flash_image import FlashImage

    with open(path, "rb") as f:
        size = f.seek(0, 2)
        host = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    return FlashImage(host, size, path=str(path), writable=True, durable=False)


def _minimal_fdt(model: str) -> bytes:
    """A flattened device tree with an empty root node and a model: enough for r2 to point at."""
    strings = b"model\0"
    value = model.encode() + b"\0"
    body = struct.pack(">I", 1) + b"\0\0\0\0"                      # FDT_BEGIN_NODE ""
    body += struct.pack(">III", 3, len(value), 0) + value + b"\0" * (-len(value) % 4)
    body += struct.pack(">II", 2, 9)                                # FDT_END_NODE, FDT_END
    off_rsv = 40
    off_struct = off_rsv + 16
    off_strings = off_struct + len(body)
    total = off_strings + len(strings)
    header = struct.pack(">10I", 0xD00DFEED, total, off_struct, off_strings, off_rsv, 17, 16, 0,
                         len(strings), len(body))
    return header + b"\0" * 16 + body + strings


def boot_registers(prep: PreparedBoot, machine: Machine) -> tuple[int, int, int]:
    """r0, r1, r2 at entry for the chosen ABI."""
    if prep.request.abi == "freebsd":
        return prep.layout.metadata_va, 0, 0
    if prep.request.abi == "linux":
        # Where QEMU puts a DTB after an initrd: RAM base + min(RAM/2, 128 MiB) (hw/arm/boot.c).
        dtb = prep.layout.ram_base + min(prep.layout.ram_size // 2, 128 * MIB)
        machine.phys.write(dtb, _minimal_fdt(f"armboard {prep.profile.name}"))
        return 0, 0xFFFFFFFF, dtb
    return 0, 0, 0


class StopPoint(namedtuple("StopPoint", "name addresses")):
    """Where `--stop-at SYMBOL|0xADDR` stops: the first execution of any of its addresses."""

    __slots__ = ()

    name: str
    addresses: tuple[int, ...]  # a kernel symbol: its VA and, before the MMU is on, its PA alias

    def describe(self) -> str:
        if self.name.startswith("0x"):
            return self.name
        where = " or ".join(f"0x{a:08x}" for a in self.addresses)
        return f"{self.name} ({where})"


def physical_alias(image: GuestImage, va: int) -> int | None:
    """The physical address of a kernel VA, through the PT_LOAD segment holding it (None outside)."""
    return image.physical_alias(va)


def describe_pc(image: GuestImage, pc: int) -> str:
    """`initarm+0x8 (pc 0xc0001008)`, or for locore before the MMU is on `_start (pc 0x40000000,
    the physical address of 0xc0000000)`: where a stop is, by the guest's symbols."""
    from kernel_sim.guest.symbols import SymbolTable  # only when a debugger ended the boot at a stop

    table = SymbolTable(image)
    name, va = table.describe(pc), table.virtual(pc)
    if name is not None and va != pc:
        return f"{name} (pc 0x{pc:08x}, the physical address of 0x{va:08x})"
    return f"{name or f'0x{pc:08x}'} (pc 0x{pc:08x})"


def stop_point(image: GuestImage, spec: str) -> StopPoint | None:
    """None for halt and handover; a symbol stops at its VA and at its PA (locore runs with the MMU off)."""
    if spec in ("halt", "handover"):
        return None
    if spec.lower().startswith("0x"):
        try:
            address = int(spec, 16)
        except ValueError:
            address = -1
        if not 0 <= address <= 0xFFFFFFFF:
            raise InputError(f"'{spec}' is not a 32-bit hexadecimal address", "--stop-at")
        return StopPoint(f"0x{address:08x}", (address,))
    va = image.symbols.get(spec)
    if va is None:
        raise InputError(f"unknown stop point '{spec}' (use handover, halt, a guest kernel symbol such as "
                         "_start, initarm or pmap_bootstrap, or an address 0xADDR)", "--stop-at")
    pa = physical_alias(image, va)
    return StopPoint(spec, (va,) if pa is None or pa == va else (va, pa))


def run(prep: PreparedBoot, machine: Machine | None = None, *, resume: bool = False) -> BootResult:
    """Boot to the hand-over, then mi_startup (unless stopping earlier).

    A `--stop-at` symbol or address the CPU never executes makes the boot end with exit status 1 and
    says so (after the hand-over only Python runs: no guest instruction can reach it any more).
    `resume`: the machine is a restored one, stopped in guest code; the boot goes on from its pc."""
    return finish(start(prep, machine, resume=resume))


def start(prep: PreparedBoot, machine: Machine | None = None, *, resume: bool = False) -> BootResult:
    """The guest's part of run(): from reset (or, `resume`, from where a restored machine stopped)
    until the guest hands over (status "handover", to be finished) or ends the boot itself. Nothing
    after the hand-over has run, so a sweep can fork here and finish the copies with points whose
    pre-hand-over inputs are the same."""
    machine = machine or build_machine(prep)
    point = stop_point(prep.image, prep.request.stop_at)
    for address in point.addresses if point else ():
        machine.add_breakpoint(address)
    pause, pause_ids = None, []
    if prep.request.pause_at not in (None, "handover") and prep.request.on_pause is not None:
        pause = stop_point(prep.image, prep.request.pause_at)
        pause_ids = [machine.add_breakpoint(address) for address in pause.addresses]
    if prep.request.debugger is not None:
        prep.request.debugger.attach(machine, prep)
    return _boot(prep, machine, point, pause, resume, pause_ids)


def finish(result: BootResult, prep: PreparedBoot | None = None) -> BootResult:
    """The rest of run() after start(): the Python kernel from the hand-over, then the stop point's
    verdict. `prep` replaces the start's for the Python kernel (its options, environment, userland)."""
    if prep is not None:
        result.prepared = prep
    prep = result.prepared
    if result.status == "handover":
        result.status = "failed"
        assert result.handoff is not None
        result = _after_handover(result, result.handoff)
    point = stop_point(prep.image, prep.request.stop_at)
    reached = point is not None and any(result.machine.breakpoint_hits.get(a) for a in point.addresses)
    if point is not None and result.status != "stopped" and not reached:
        result.message = (f"The stop point {point.describe()} was never reached; the boot ended in "
                          f"{result.stage}: {result.message}")
        if result.exit_code == 0:
            result.exit_code, result.status = 1, "unreached"
    return result


def _boot(prep: PreparedBoot, machine: Machine, point: StopPoint | None, pause: StopPoint | None = None,
          resume: bool = False, pause_ids: tuple[int, ...] | list[int] = ()) -> BootResult:
    from board.ucapi import UC_ARM_REG_R0
    from kernel_sim.kern.hypercalls import GateEvent, handle_hypercall

    events: list[GateEvent] = []

    def gate(m: Machine, nr: int) -> object:
        event = handle_hypercall(m, nr)
        events.append(event)
        return event

    machine.hypercall_handler = gate
    image = prep.image
    if resume:
        start_pc = machine.pc
    else:
        r0, r1, r2 = boot_registers(prep, machine)
        for reg, value in ((UC_ARM_REG_R0, r0), (UC_ARM_REG_R0 + 1, r1), (UC_ARM_REG_R0 + 2, r2)):
            machine.uc.reg_write(reg, value)
        start_pc = physical_alias(image, image.entry)
        if start_pc is None:
            raise InputError(f"the entry point 0x{image.entry:08x} is in no PT_LOAD segment", str(image.elf_path))
    timeout, debugger = prep.request.timeout, prep.request.debugger
    own = pause.addresses if pause is not None else ()
    stop = run_guest(machine, start_pc, debugger, timeout, own=own)
    while pause is not None and stop.kind == "breakpoint" and machine.pc in pause.addresses:
        for bp_id in pause_ids:              # once: the boot goes on past it (a stop point there stays)
            machine.remove_breakpoint(bp_id)
        prep.request.on_pause(Paused(pause.name, prep, machine))
        pause = None
        left = None if timeout is None else max(0.001, timeout - machine.wall_seconds)
        stop = run_guest(machine, machine.pc, debugger, left)
    result = BootResult(1, "failed", "early boot", "", machine, prep, stop=stop)
    if stop.kind == "timeout":
        result.exit_code, result.status = 3, "timeout"
        result.message = f"Boot stopped: the {stop.detail}, before the guest halted."
        return result
    pc = machine.pc
    if stop.kind == "breakpoint" and point is not None and pc in point.addresses:
        result.exit_code, result.status, result.stage = 0, "stopped", point.name
        alias = f", the physical address of 0x{point.addresses[0]:08x}" if pc != point.addresses[0] else ""
        result.message = f"Stopped at {point.name} (pc 0x{pc:08x}{alias})."
        return result
    if stop.kind in DEBUG_STOPS:                 # the debugger ended the boot at one of its stops
        result.exit_code, result.status = 0, "stopped"
        where = describe_pc(image, pc)
        result.stage, result.message = where.split(" (")[0], f"Stopped at {where}."
        return result
    if stop.kind != "hypercall":
        result.message = f"Boot failed: the guest stopped unexpectedly: {stop.detail}."
        return result

    event = stop.value
    assert isinstance(event, GateEvent)
    result.event = event
    if event.kind == "handover" and event.handoff is not None:
        result.handoff, result.status, result.stage = event.handoff, "handover", "handover"
        return result                            # finish() goes on from here
    # The diagnoses load only when the guest failed: a boot to the hand-over never pays for them.
    if event.kind == "panic":
        from kernel_sim.kern.diagnose import diagnose_panic

        result.diagnosis = diagnose_panic(event.panic or "", image, prep.layout, prep.options)
    elif event.kind == "fatal" and event.fatal is not None:
        from kernel_sim.kern.diagnose import diagnose_fatal

        result.diagnosis = diagnose_fatal(event.fatal, image, prep.layout, prep.options)
    else:
        result.message = f"Boot failed: {event.panic or 'unknown hypercall'}."
        return result
    result.stage = result.diagnosis.stage
    result.message = result.diagnosis.text
    return result


def run_guest(machine: Machine, pc: int, debugger: Debugger | None, timeout: float | None,
              own: tuple[int, ...] = ()) -> Stop:
    """Run the guest from pc. At each debug stop the debugger decides: resume (from the current pc,
    which it may have changed) or end. A breakpoint at one of `own` (the boot's own pause point) is
    the caller's, not the debugger's. The time limit counts the guest's running time only, not the
    time spent paused in the debugger."""
    used = machine.wall_seconds
    stop = machine.run(pc, timeout=timeout)
    used = machine.wall_seconds - used
    while debugger is not None and stop.kind in DEBUG_STOPS and not (
            stop.kind == "breakpoint" and machine.pc in own):
        resume = debugger.stopped(stop)
        if resume is None:
            break
        left = None if timeout is None else max(0.0, timeout - used)
        before = machine.wall_seconds
        stop = machine.run(machine.pc, timeout=left, steps=resume.steps, resume=True)
        used += machine.wall_seconds - before
    return stop


def stage_listener(req: BootRequest) -> Callable[[str, object], None] | None:
    """on_stage for mi_startup: the request's own listener, then the debugger (which may pause there)."""
    debugger, listener = req.debugger, req.on_stage
    if debugger is None:
        return listener

    def both(name: str, run: object) -> None:
        if listener is not None:
            listener(name, run)
        debugger.on_stage(name, run)

    return both


def _after_handover(result: BootResult, handoff: Handoff, run=None) -> BootResult:
    """From the hand-over: mi_startup, and what its outcome means. `run` (a StartupRun restored from a
    snapshot) goes on from its next step instead of starting mi_startup."""
    prep = result.prepared
    req = prep.request
    result.handoff = handoff
    result.stage = "handover"
    if run is None:
        expected = len(prep.layout.modules) + 1
        if req.abi == "freebsd" and handoff.nmodules < expected:
            from kernel_sim.kern.diagnose import diagnose_lost_metadata

            result.diagnosis = diagnose_lost_metadata(prep.layout, prep.options, prep.layout.metadata_va)
            result.stage, result.message = "initarm", result.diagnosis.text
            return result
        if req.pause_at == "handover" and req.on_pause is not None:
            req.on_pause(Paused("handover", prep, result.machine, handoff))
        if req.stop_at == "handover":
            result.exit_code, result.status = 0, "stopped"
            result.message = "Stopped at the hand-over to the Python kernel."
            return result
    # Imported here: a boot that stops at the hand-over never pays for the Python kernel's modules.
    from kernel_sim.kern.diagnose import (
        Diagnosis,
        diagnose_kmem,
        diagnose_kva_panic,
        diagnose_mountroot,
        diagnose_userland,
    )
    from kernel_sim.kern.panic import KernelPanic
    from kernel_sim.kern.startup import StartupRun, Userland, run_steps

    if run is None:
        run = StartupRun(result.machine, handoff, prep.layout, prep.kernconf.ident or "GENERIC",
                         dict(prep.kernconf.options), prep.loader.env, prep.kernconf,
                         hints_from_env(prep.loader.env, prep.loader.origin),
                         Userland(req.shell, req.command, req.read_line), list(prep.md_vnodes),
                         stage_listener(req))
    result.run = run
    try:
        startup = run_steps(run)
    except EndBoot as end:
        result.exit_code, result.status, result.stage = 0, "stopped", end.stage
        result.startup = end.startup
        result.memory = getattr(end.startup, "memory", None)
        result.message = f"Stopped before the Python kernel's {end.stage} step."
        return result
    except KernelPanic as panic:
        result.run = None                 # stopped inside a step: no state between two steps to go on from
        result.machine.console.write_text(panic.console_line + "cpuid = 0\n")
        result.stage, result.message = "mi_startup", f"Boot failed in mi_startup: panic \"{panic.message}\"."
        return result
    result.startup = startup
    result.memory = startup.memory
    if startup.outcome == "halted":
        result.exit_code, result.status, result.stage = 0, "halted", "mi_startup"
        result.message = "The kernel halted cleanly."
        init = startup.init
        if init is not None and init.rc:
            where = f" at line {init.rc_line}" if init.rc_line else ""
            result.exit_code, result.status, result.stage = 1, "failed", "rc"
            result.message = (f"/etc/rc exited with status {init.rc}{where}; the console shows the failing "
                              "command and its error.")
        elif init is not None and init.command:
            result.exit_code, result.status, result.stage = 1, "failed", "command"
            result.message = f"The command given with -c exited with status {init.command}."
        return result
    if startup.outcome == "panic" and startup.panic and startup.panic.startswith("mountroot"):
        result.diagnosis = diagnose_mountroot(startup)
    elif startup.outcome == "panic" and startup.kstack_failure is None:
        result.diagnosis = diagnose_kva_panic(startup)
    elif startup.outcome == "panic":
        result.diagnosis = diagnose_userland(startup)
        result.diagnosis = Diagnosis("init", f"Boot failed: panic \"{startup.panic}\". " + result.diagnosis.text,
                                     result.diagnosis.option, result.diagnosis.suggested)
    elif startup.outcome == "userland":
        result.diagnosis = diagnose_userland(startup)
    else:
        result.diagnosis = diagnose_kmem(startup)
    result.stage, result.message = result.diagnosis.stage, result.diagnosis.text
    return result
