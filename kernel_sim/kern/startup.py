"""mi_startup: the Python kernel's start-up after the guest hands over, in FreeBSD 11.3's order.

The VM comes first: the physical page allocator and the kernel pmap over the guest's own tables,
kmeminit, and the boot KVA layout (vm_mem_init, kmeminit, vm_ksubmap_init), which panics as FreeBSD
does when a consumer does not fit. Then GEOM, md and the root mount (vfs_mountroot, with the
mountroot> prompt when the console can be read), init (pid 1) forked with a kernel stack of real
pages, the processes the `debug.init_procs` tunable asks for, `debug.kmem_stress`'s load on kernel
malloc, and init running /etc/rc from the root. A boot with no root specification and nothing on any
disk to mount (the tuning scenarios) halts when init's processes are started.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Callable

from board.machine import Machine
from kernel_sim.guest.abi import KERNBASE, MIB, PAGE_SIZE, PT2MAP, Handoff
from kernel_sim.kern.kmem_kva import kmem_and_kva
from kernel_sim.kern.malloc import M_WAITOK, KmemExhausted, Malloc
from kernel_sim.kern.proc import KSTACK_GUARD_PAGES, KSTACK_PAGES, KstackFailure, ProcTable
from kernel_sim.kern.sysctl import SysctlTree, publish_boot_figures
from kernel_sim.kern.tunables import tunable_value
from kernel_sim.kern.version import OSRELDATE, OSRELEASE, VERSION
from kernel_sim.loader.layout import BootLayout
from kernel_sim.record import Record
from kernel_sim.vm.kmem import KmemResult
from kernel_sim.vm.kva_layout import KvaLayout
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.pmap import KernelPmap
from kernel_sim.vm.vmem import Vmem

# How many forks in a row may fail before init stops starting debug.init_procs' processes. Nothing frees a
# kernel stack meanwhile (no started process exits, a failed fork gives back what it took), so once one
# fork fails every later one fails alike: a few more show that on the console, and then init stops, as
# FreeBSD's init stops at its first failed fork (sbin/init/init.c runcom: "can't fork", single-user).
# Without a stop, debug.init_procs=2147483647 on a small board prints two billion failures.
INIT_FORK_FAILURES = 8


class MemorySummary(namedtuple("MemorySummary", "real avail kva_in_use kernel_vm_end vm_max_kernel_address")):
    __slots__ = ()

    real: int
    avail: int
    kva_in_use: list[tuple[int, int, str]]
    kernel_vm_end: int
    vm_max_kernel_address: int


class Startup(Record):
    """What mi_startup built and how far it got."""

    __slots__ = (
        "memory", "kmem", "kva", "sysctl", "pages", "pmap", "procs", "malloc", "outcome", "panic", "failed_procs",
        "geom", "vfs", "root_specs", "root_candidates", "root_asked", "wanted_procs", "started_procs",
        "kstack_failure", "kmem_failure", "stress_bytes", "stress_target", "virtual_seconds", "kernel", "vm",
        "msgbuf", "mem_devices", "clock", "init", "__dict__",   # __dict__: an open bag, as before
    )

    def __init__(self, memory: MemorySummary, kmem: KmemResult, kva: KvaLayout, sysctl: SysctlTree,
                 pages: PhysAllocator, pmap: KernelPmap, procs: ProcTable | None = None,
                 malloc: Malloc | None = None, outcome: str = "halted", panic: str | None = None,
                 failed_procs: list[int] | None = None, geom: object = None, vfs: object = None,
                 root_specs: list[str] | None = None, root_candidates: list[str] | None = None,
                 root_asked: bool = False, wanted_procs: int = 0, started_procs: int = 0,
                 kstack_failure: KstackFailure | None = None, kmem_failure: KmemExhausted | None = None,
                 stress_bytes: int = 0, stress_target: int = 0, virtual_seconds: float = 0.0, kernel: object = None,
                 vm: object = None, msgbuf: object = None, mem_devices: object = None, clock: object = None,
                 init: object = None) -> None:
        self.memory = memory
        self.kmem = kmem
        self.kva = kva
        self.sysctl = sysctl
        self.pages = pages
        self.pmap = pmap
        self.procs = procs
        self.malloc = malloc
        self.outcome = outcome  # "halted", "panic", "userland", "kmem"
        self.panic = panic
        self.failed_procs = [] if failed_procs is None else failed_procs
        self.geom = geom  # the GEOM mesh (kernel_sim.geom.core.Mesh)
        self.vfs = vfs  # kernel_sim.fs.vfs.Vfs
        self.root_specs = [] if root_specs is None else root_specs
        # what would mount as root ("ufs:/dev/md0")
        self.root_candidates = [] if root_candidates is None else root_candidates
        self.root_asked = root_asked  # the mountroot> prompt was offered (console input)
        self.wanted_procs = wanted_procs
        self.started_procs = started_procs  # of wanted_procs; the rest failed or were never tried
        self.kstack_failure = kstack_failure
        self.kmem_failure = kmem_failure
        self.stress_bytes = stress_bytes
        self.stress_target = stress_target
        self.virtual_seconds = virtual_seconds
        self.kernel = kernel  # kernel_sim.kern.syscalls.Kernel, once init runs
        self.vm = vm  # kernel_sim.vm.pageout.VmSwap: swap devices and the pageout daemon
        self.msgbuf = msgbuf  # kernel_sim.kern.msgbuf.MsgBuf: the kernel's messages in guest pages
        self.mem_devices = mem_devices  # kernel_sim.dev.mem.MemDevices: /dev/mem, /dev/kmem
        self.clock = clock  # its VirtualClock
        self.init = init  # kernel_sim.userland.init.InitReport: rc's and the command's status


class Userland(namedtuple("Userland", "shell command read_line", defaults=(False, None, None))):
    """What the boot asks of init beyond /etc/rc."""

    __slots__ = ()

    shell: bool  # a shell on the console after rc
    command: str | None  # one command after rc (`armboard boot -c`)
    read_line: Callable[[], str] | None  # console input ("" at its end)


def _mb(n: int) -> int:
    return n // MIB


def vm_startup(machine: Machine, handoff: Handoff, layout: BootLayout, options: dict[str, object],
               env: dict[str, str]) -> Startup:
    """vm_mem_init, kmeminit and the KVA layout, over this boot's real pages and tables."""
    pages = PhysAllocator.for_machine(machine, handoff)
    pmap = KernelPmap.for_machine(machine, handoff, pages)
    kmem, kva = kmem_and_kva(v_page_count=pages.v_page_count, kernend=handoff.kernend, nkpt2pg=handoff.nkpt2pg,
                             boot_pt_pages=5 + handoff.nkpt2pg + handoff.extra_pt2pg, devmap_va=handoff.devmap_va,
                             ram_end=layout.ram_base + layout.ram_size, options=options, env=env)
    tree = SysctlTree()
    rows = [(PT2MAP, KERNBASE, "PT2MAP (the L2 tables, mapped by PT2TAB)"),
            (KERNBASE, handoff.mapped_end, "kernel, modules and metadata"),
            (handoff.devmap_va, handoff.devmap_va + MIB, "devmap (console UART)")]
    summary = MemorySummary(layout.ram_size, pages.free_count * PAGE_SIZE, rows, kva.kernel_vm_end,
                            handoff.devmap_va)
    return Startup(summary, kmem, kva, tree, pages, pmap)


def _print_banner(out, machine: Machine, ident: str, s: Startup, handoff: Handoff) -> None:
    out.write_text("---<<BOOT>>---\n")
    out.write_text(f"{VERSION} #0: {ident}\n")
    out.write_text(f"CPU: ARM Cortex-A15 (ARMv7), {machine.profile.name} board\n")
    out.write_text(f"real memory  = {s.memory.real} ({_mb(s.memory.real)} MB)\n")
    out.write_text(f"avail memory = {s.memory.avail} ({_mb(s.memory.avail)} MB)\n")
    for start, end, what in s.memory.kva_in_use:
        out.write_text(f"KVA in use: 0x{start:08x}-0x{end:08x} {(end - start) // 1024:>7} KB  {what}\n")
    out.write_text(f"kernel_vm_end 0x{handoff.kernel_vm_end:08x} (NKPT2PG={handoff.nkpt2pg}), "
                   f"vm_max_kernel_address 0x{handoff.devmap_va:08x}\n")


class StartupRun:
    """One mi_startup in progress: its inputs, the Startup it builds, and which step comes next.

    mi_startup is a list of named steps (STEPS, in FreeBSD's SYSINIT order). Between two steps the
    kernel holds no Python frame of its own, so whoever watches (`on_stage`) may stop there: the
    monitor's breakpoints on kernel stages, the boot timeline, a snapshot. `next_step` is the index
    of the step that runs next."""

    def __init__(self, machine: Machine, handoff: Handoff, layout: BootLayout, ident: str,
                 options: dict[str, object], env: dict[str, str], kernconf, hints, userland: Userland,
                 md_vnodes: list[tuple[str, bool]], on_stage: Callable[[str, StartupRun], None] | None) -> None:
        self.machine, self.handoff, self.layout, self.ident = machine, handoff, layout, ident
        self.options, self.env, self.kernconf, self.hints = options, env, kernconf, hints
        self.userland, self.md_vnodes, self.on_stage = userland, md_vnodes, on_stage
        self.s: Startup | None = None
        self.next_step = 0

    @property
    def out(self):
        return self.machine.console


def _step_kmeminit(run: StartupRun) -> bool:
    """vm_mem_init, kmeminit and vm_ksubmap_init's layout; the banner; the kmem arena."""
    out, handoff, layout = run.out, run.handoff, run.layout
    s = run.s = vm_startup(run.machine, handoff, layout, run.options, run.env)
    _print_banner(out, run.machine, run.ident, s, handoff)
    for m in layout.modules:
        out.write_text(f"preload: {m.type} \"{m.name}\" at 0x{m.va:08x}, {m.size} bytes\n")
    _publish_identity(s.sysctl, run.ident)
    publish_boot_figures(s.sysctl, s.kmem, s.kva, s.pages.v_page_count * PAGE_SIZE, s.pages.v_page_count,
                         handoff.nkpt2pg, kmem_in_use=lambda: s.malloc.in_use if s.malloc else 0)
    if not s.kva.ok:
        s.outcome, s.panic = "panic", s.kva.panic
        out.write_text(f"panic: {s.kva.panic}\ncpuid = 0\n")
        return False
    out.write_text(f"kmem arena: vm_kmem_size {s.kmem.vm_kmem_size} ({_mb(s.kmem.vm_kmem_size)} MB); "
                   f"KVA free after boot: {s.kva.kva_remaining // 1024} KB\n")
    kmem_row = next(r for r in s.kva.rows if r.consumer == "kmem arena")
    s.malloc = Malloc(Vmem("kmem arena", kmem_row.start, kmem_row.size), s.pmap, s.pages)
    return True


def _step_msgbuf(run: StartupRun) -> bool:
    """The message buffer in guest pages, /dev/mem and /dev/kmem."""
    _msgbuf_and_mem(run.s, run.machine)
    return True


def _step_swapon(run: StartupRun) -> bool:
    """swapon: the board's swap device and the pageout daemon's thresholds."""
    from kernel_sim.vm.pageout import vm_swap_init

    run.s.vm = vm_swap_init(run.machine, run.s.pages, run.s.sysctl, printf=run.out.write_text)
    return True


def _step_geom_taste(run: StartupRun) -> bool:
    """GEOM: the disks the drivers attach (md, cfi) and every class tasting them."""
    if run.kernconf is None:
        return True
    from kernel_sim.kern.geom_init import geom_start
    from kernel_sim.loader.hints import Hints

    s = run.s
    s.geom = geom_start(run.machine, run.layout, run.kernconf, run.hints or Hints([]), run.env, s.sysctl, s.malloc)
    if getattr(s.geom, "md", None) is not None:
        s.geom.md.swap_object = s.vm.md_swap_object         # md -t swap: pages in swap-backed objects
        _attach_host_vnodes(s.geom.md, run.md_vnodes, run.out.write_text)
    return True


def _step_mountroot(run: StartupRun) -> bool:
    """vfs_mountroot: the root file system, or the panic."""
    if run.kernconf is None:
        return True
    from kernel_sim.fs.vfs import Vfs

    s = run.s
    s.vfs = Vfs(s.geom)
    if not _mount_root(s, run.env, run.kernconf, run.userland, run.out.write_text):
        s.outcome, s.panic = "panic", "mountroot: unable to (re-)mount root."   # vfs_mountroot.c
        run.out.write_text(f"panic: {s.panic}\ncpuid = 0\n")
        return False
    return True


def _step_start_init(run: StartupRun) -> bool:
    """Fork init (pid 1) with a kernel stack, then the processes debug.init_procs asks for."""
    s, out = run.s, run.out
    kernel_map, kernel_arena = s.kva.make_arenas()
    thread0 = next((r.start for r in s.kva.rows if r.consumer == "thread0 kernel stack"), KERNBASE)
    s.procs = ProcTable(kernel_map, kernel_arena, s.pmap, s.pages, out.write_text, thread0)
    try:
        init = s.procs.fork(0, "init")
    except KstackFailure as exc:
        s.outcome, s.panic, s.kstack_failure = "panic", "cannot fork init: 12", exc   # sys/kern/init_main.c
        out.write_text(f"panic: {s.panic}\ncpuid = 0\n")
        return False
    out.write_text(f"start_init: trying /sbin/init (pid {init.pid}, kernel stack at 0x{init.threads[0].kstack:08x})\n")
    s.wanted_procs = tunable_value(run.env, "debug.init_procs")
    in_a_row = 0
    for n in range(1, s.wanted_procs + 1):
        try:
            s.procs.fork(init.pid, f"proc{n}")
            s.started_procs += 1
            in_a_row = 0
        except KstackFailure as exc:
            s.kstack_failure = exc
            s.failed_procs.append(n)
            in_a_row += 1
            out.write_text(f"init: cannot allocate kernel stack for process {n} of {s.wanted_procs}: "
                           "fork: Cannot allocate memory\n")
            if in_a_row == INIT_FORK_FAILURES and n < s.wanted_procs:
                out.write_text(f"init: {in_a_row} forks in a row failed; not starting the other "
                               f"{s.wanted_procs - n} processes\n")
                break
    if s.wanted_procs:
        out.write_text(f"init: started {s.started_procs} of {s.wanted_procs} processes\n")
    if s.failed_procs:
        s.outcome = "userland"
        return False
    return True


def _step_kmem_stress(run: StartupRun) -> bool:
    """debug.kmem_stress: kernel malloc under load, one chunk per tick of virtual time."""
    stress = tunable_value(run.env, "debug.kmem_stress")
    if stress:
        _kmem_stress(run.s, stress, run.env)
        if run.s.kmem_failure is not None:
            return False
    return True


def _step_init(run: StartupRun) -> bool:
    """init runs /etc/rc from the root (and -c, the console shell); then the kernel halts."""
    s, out = run.s, run.out
    if s.vfs is not None and "/" in s.vfs.mounts:
        _start_init(s, run.machine, run.env, run.userland)
    else:
        out.write_text("mi_startup: no root file system configured (vfs.root.mountfrom, ROOTDEVNAME or "
                       "MD_ROOT) and none on any disk; init is done, halting.\n")
    out.write_text("The operating system has halted.\n")
    return True


# mi_startup's steps in order, by the names the monitor, the timeline and snapshots use.
STEPS: tuple[tuple[str, Callable[[StartupRun], bool]], ...] = (
    ("kmeminit", _step_kmeminit),
    ("msgbuf", _step_msgbuf),
    ("swapon", _step_swapon),
    ("geom_taste", _step_geom_taste),
    ("mountroot", _step_mountroot),
    ("start_init", _step_start_init),
    ("kmem_stress", _step_kmem_stress),
    ("init", _step_init),
)
STAGE_NAMES = tuple(name for name, _ in STEPS)


def run_steps(run: StartupRun) -> Startup:
    """Run the steps from `run.next_step` to the end or to the first that ends the boot; `on_stage`
    hears each step's name before it runs, and "done" at the end."""
    while run.next_step < len(STEPS):
        name, step = STEPS[run.next_step]
        if run.on_stage is not None:
            run.on_stage(name, run)
        run.next_step += 1
        if not step(run):
            run.next_step = len(STEPS)
    if run.on_stage is not None:
        run.on_stage("done", run)
    return run.s


def mi_startup(machine: Machine, handoff: Handoff, layout: BootLayout, ident: str,
               options: dict[str, object] | None = None, env: dict[str, str] | None = None,
               kernconf=None, hints=None, userland: Userland | None = None,
               md_vnodes: list[tuple[str, bool]] = (),
               on_stage: Callable[[str, StartupRun], None] | None = None) -> Startup:
    """Start the kernel; the result says whether it halted cleanly or how it failed."""
    run = StartupRun(machine, handoff, layout, ident, options or {}, env or {}, kernconf, hints,
                     userland or Userland(), list(md_vnodes), on_stage)
    return run_steps(run)


def _publish_identity(tree, ident: str) -> None:
    """kern.ostype and friends (sys/kern/kern_mib.c), what uname(1) prints."""
    tree.publish("kern.ostype", "string", "FreeBSD", description="Operating system type")
    tree.publish("kern.osrelease", "string", OSRELEASE, description="Operating system release")
    tree.publish("kern.osreldate", "int", OSRELDATE, description="Kernel release date")
    tree.publish("kern.version", "string", f"{VERSION} #0: {ident}\n", description="Kernel version")
    tree.publish("kern.ident", "string", ident, description="Kernel identifier")
    tree.publish("kern.hostname", "string", "armboard", description="Hostname")
    tree.publish("hw.machine", "string", "arm", description="Machine class")
    tree.publish("hw.machine_arch", "string", "armv7", description="System architecture")


def _mount_root(s: Startup, env: dict[str, str], kernconf, userland: Userland,
                printf: Callable[[str], None]) -> bool:
    """vfs_mountroot over this boot's specifications, with the mountroot> prompt when the console can be
    read; False when no root mounted (the panic). A boot with no specification and no disk holding a
    root file system is a kernel-only boot: nothing is tried and it is no failure."""
    from kernel_sim.kern.mountroot import mountroot, root_candidates, root_specs

    s.root_specs = root_specs(env, kernconf)
    if not s.root_specs:
        s.root_candidates = root_candidates(s.vfs)
        if not s.root_candidates:
            return True
    s.root_asked = userland.read_line is not None
    if mountroot(s.vfs, s.root_specs, printf, ask=userland.read_line, env=env) is not None:
        return True
    if s.root_specs:
        s.root_candidates = root_candidates(s.vfs)
    return False


def _attach_host_vnodes(md, files: list[tuple[str, bool]], printf: Callable[[str], None]) -> None:
    """The board's host files as vnode md units (`--md-vnode`), before the root mount so root may come
    from one (e.g. "cd9660:md1" over an ISO), as `mdconfig -a -t vnode -f FILE` would attach them."""
    from kernel_sim.dev.md import MD_AUTOUNIT, MD_READONLY, MD_VNODE, MdError

    for path, writable in files:          # md's vnode opener is still the host's: init swaps in the guest's
        try:
            size = os.stat(path).st_size
            unit = md.attach(MD_VNODE, size, options=MD_AUTOUNIT | (0 if writable else MD_READONLY), file=path)
            printf(f"md{unit}: vnode {path}, {size} bytes{'' if writable else ', read-only'}\n")
        except (MdError, OSError) as exc:
            printf(f"md: cannot attach {path}: {exc}\n")


def _msgbuf_and_mem(s: Startup, machine: Machine) -> None:
    """msgbufinit: the message buffer in guest pages at its boot KVA, holding the console so far and every
    kernel printf from now on (what dmesg and dumps show); then mem(4)'s devices over this kernel."""
    from kernel_sim.dev.mem import MemDevices
    from kernel_sim.kern.msgbuf import MsgBuf

    s.msgbuf = MsgBuf.for_startup(s)
    s.msgbuf.append(machine.console.text)
    machine.console.tap = s.msgbuf.append
    s.mem_devices = MemDevices(machine, s, s.msgbuf, now=lambda: s.clock.now() if s.clock is not None else 0.0)


class SystemHalt(Exception):
    """reboot(2) from a process: unwinds init and its children to the kernel, which stops the board."""

    def __init__(self, howto: int) -> None:
        super().__init__(f"reboot howto 0x{howto:x}")
        self.howto = howto


def _start_init(s: Startup, machine: Machine, env: dict[str, str], userland: Userland) -> None:
    """start_init: pid 1 runs init(8) from the root file system: /etc/rc, then what was asked."""
    from kernel_sim.kern.syscalls import Syscalls, VirtualClock, make_kernel
    from kernel_sim.userland.init import InitReport, init_main

    console = machine.console
    read_line = userland.read_line

    pending = bytearray()                 # the rest of a console line a short read left

    def console_read(size: int) -> bytes:
        if not pending and read_line is not None:
            pending.extend((read_line() or "").encode())
        data = bytes(pending[:size])
        del pending[:size]
        return data

    def reboot(howto: int) -> None:
        raise SystemHalt(howto)

    s.clock = VirtualClock()
    s.kernel = make_kernel(s.geom, pages=s.pages, malloc=s.malloc, sysctl=s.sysctl, kenv=env, procs=s.procs,
                           clock=s.clock, printf=console.write_text, reboot=reboot, console_read=console_read,
                           console_write=console.write_tty, vfs=s.vfs, vm=s.vm)
    s.kernel.vfs.devfs.make_dev(s.mem_devices.mem)
    s.kernel.vfs.devfs.make_dev(s.mem_devices.kmem)
    if s.geom is not None and getattr(s.geom, "md", None) is not None:
        from kernel_sim.kern.md_glue import GuestVnode

        vfs = s.kernel.vfs
        s.geom.md.vnode_open = lambda path, writable: GuestVnode(vfs, path, writable)
    single = env.get("boot_single", "NO").lower() in ("yes", "1")      # stand/defaults/loader.conf
    s.init = InitReport()
    try:
        init_main(Syscalls.for_init(s.kernel), single_user=single, command=userland.command,
                  read_line=_lines(read_line) if (userland.shell or single) and read_line else None, report=s.init)
    except SystemHalt as halt:
        from kernel_sim.kern.sysapi import RB_POWEROFF

        # sys/kern/kern_shutdown.c: shutdown_halt / shutdown_final
        console.write_text(f"Uptime: {s.clock.now():.0f}s\n")
        if halt.howto & RB_POWEROFF:
            console.write_text("Powering off...\n")
    s.outcome = "halted"


def _lines(read_line: Callable[[], str]) -> Callable[[], str | None]:
    """The console's input as init wants it: None at the end of input."""
    def read() -> str | None:
        line = read_line()
        return line if line else None
    return read


def _kmem_stress(s: Startup, size: int, env: dict[str, str]) -> None:
    """debug.kmem_stress: page-sized M_WAITOK mallocs of one type, one per tick of virtual time."""
    mtype = env.get("debug.kmem_stress_type", "temp")
    hz = tunable_value(env, "kern.hz")
    assert s.malloc is not None
    s.stress_target = size
    count = 0
    try:
        while s.stress_bytes < size:
            s.malloc.malloc(PAGE_SIZE, mtype, M_WAITOK)
            s.stress_bytes += PAGE_SIZE
            count += 1
    except KmemExhausted as exc:
        s.kmem_failure, s.outcome = exc, "kmem"
    s.virtual_seconds = count / hz
    if s.kmem_failure is None:
        s.procs.printf(f"kmem_stress: {s.stress_bytes} bytes of malloc type {mtype} allocated in "
                       f"{s.virtual_seconds:.3f} s of virtual time\n")


KSTACK_KVA = (KSTACK_PAGES + KSTACK_GUARD_PAGES) * PAGE_SIZE
