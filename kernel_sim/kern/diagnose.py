"""Turn a failed early boot into one paragraph: the stage, the fault, and the option to change."""

from __future__ import annotations

from collections import namedtuple

from kernel_sim.guest.abi import KERNBASE, KERNVIRTADDR, MIB, PT2PG_SPAN
from kernel_sim.loader.layout import BootLayout, round_page
from kernel_sim.vm.mmu import decode_fsr

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from kernel_sim.guest.build import GuestImage
    from kernel_sim.kern.hypercalls import FatalReport

STAGE_OF_SYMBOL = {
    "_start": "locore", "virtdone": "locore",
    "initarm": "initarm", "parse_metadata": "initarm", "fake_preload_metadata": "initarm",
    "fake_record": "initarm", "streq": "initarm", "kern_getenv": "initarm", "debug_wild_access": "initarm",
    "pmap_bootstrap": "pmap_bootstrap", "preboot_get_pages": "pmap_bootstrap", "link_pt2pg": "pmap_bootstrap",
    "preboot_pt2pg_setup": "pmap_bootstrap",
}


class Diagnosis(namedtuple("Diagnosis", "stage text option suggested", defaults=(None, None))):
    __slots__ = ()

    stage: str
    text: str
    option: str | None
    suggested: int | str | None  # a number, or a loader variable's value ("ufs:/dev/md0")


def min_locore_map_mb(layout: BootLayout) -> int:
    """Sections locore must map from KERNVIRTADDR so kernel, modules and metadata are inside."""
    return -(-(layout.kernend - KERNVIRTADDR) // MIB)


def min_nkpt2pg(layout: BootLayout) -> int:
    """L2-table pages pmap_bootstrap needs to map [KERNBASE, kernel end) with 4 KiB pages."""
    return -(-(round_page(layout.kernend) - KERNBASE) // PT2PG_SPAN)


def stage_of(image: GuestImage, *pcs: int) -> str:
    for pc in pcs:
        sym = image.symbol_at(pc)
        if sym:
            stage = STAGE_OF_SYMBOL.get(sym.split("+")[0])
            if stage:
                return stage
    return "early boot"


def _where(image: GuestImage, pc: int) -> str:
    sym = image.symbol_at(pc)
    return f"pc 0x{pc:08x} ({sym})" if sym else f"pc 0x{pc:08x}"


def embedded_reason(layout: BootLayout) -> str:
    """'The kernel is N KiB, M KiB of it the embedded root image ... .' for MD_ROOT's mfs_root, or ''."""
    e = layout.embedded_md
    if e is None:
        return ""
    if e.section == "mfs":
        what = (f"the embedded root image MFS_IMAGE {e.image} ({e.size} bytes): makeoptions MFS_IMAGE "
                f"({e.where}) without MD_ROOT_SIZE links the image itself into the kernel, section mfs")
    else:
        held = f", holding MFS_IMAGE {e.image} ({e.image_size} bytes)" if e.image is not None else ""
        what = (f"the embedded root image area of MD_ROOT_SIZE={e.size // 1024} ({e.where}): md.c's "
                f"mfs_root array in section oldmfs{held}")
    return f"The kernel is {layout.kernel_size // 1024} KiB, {e.size // 1024} KiB of it {what}. "


def _extent(layout: BootLayout) -> str:
    mods = sum(m.size for m in layout.modules)
    kernel = "kernel" if layout.embedded_md else f"kernel ({layout.kernel_size // 1024} KiB)"
    return (f"{embedded_reason(layout)}The {kernel}, its modules ({mods // 1024} KiB) and the metadata end "
            f"at 0x{layout.kernend:08x}, {(layout.kernend - KERNVIRTADDR) / MIB:.1f} MiB past KERNVIRTADDR")


def locore_window(layout: BootLayout, locore_map_mb: int, *, prefix: str) -> Diagnosis:
    need = min_locore_map_mb(layout)
    end = KERNVIRTADDR + locore_map_mb * MIB
    text = (f"{prefix} locore maps only the LOCORE_MAP_MB={locore_map_mb} window "
            f"(0x{KERNVIRTADDR:08x}-0x{end:08x}) to the kernel's physical memory; past it a virtual address "
            f"falls through to the identity map, where the metadata is not. {_extent(layout)}. "
            f"Set options LOCORE_MAP_MB={need} or larger: the smallest value that covers kernel, modules "
            f"and metadata.")
    return Diagnosis("initarm", text, "LOCORE_MAP_MB", need)


def diagnose_fatal(report: FatalReport, image: GuestImage, layout: BootLayout, options: dict) -> Diagnosis:
    svc_lr = report.registers[-1] if report.registers else 0
    stage = stage_of(image, report.pc, svc_lr)
    status = decode_fsr(report.fsr) if report.kind in ("data abort", "prefetch abort") else ""
    access = "write" if report.fsr & (1 << 11) else "read"
    fault = (f"a fatal {report.kind} ('{status}' on {access}, FSR 0x{report.fsr:03x}) at virtual address "
             f"0x{report.far:08x}, {_where(image, report.pc)}" if status else
             f"a fatal {report.kind} at {_where(image, report.pc)}")
    ram_end = layout.ram_base + layout.ram_size
    if stage == "pmap_bootstrap" and report.far >= ram_end and report.far < KERNVIRTADDR:
        tables = (4 + 1 + options["NKPT2PG"]) * 4096
        need_end = -(-layout.pa(layout.kernend) // MIB) * MIB + tables
        need = need_end - layout.ram_base
        return Diagnosis(stage, f"Boot failed in pmap_bootstrap: {fault}. pmap_bootstrap allocates its page "
                                f"tables (L1, PT2TAB and NKPT2PG={options['NKPT2PG']} pages, {tables // 1024} KiB) "
                                f"after the kernel end rounded up to 1 MiB, at physical 0x{report.far & ~0xFFF:08x}, "
                                f"but RAM ends at 0x{ram_end:08x}. Boot with --physmem "
                                f"{-(-need // MIB)}M or more (or shrink the kernel and its modules).",
                         "physmem", -(-need // MIB))
    window_end = KERNVIRTADDR + options["LOCORE_MAP_MB"] * MIB
    if stage == "initarm" and window_end <= report.far < layout.kernend + 64 * 1024:
        return locore_window(layout, options["LOCORE_MAP_MB"],
                             prefix=f"Boot failed in initarm: {fault}. initarm read the preload metadata "
                                    f"at 0x{report.far:08x}, beyond the window:")
    return Diagnosis(stage, f"Boot failed in {stage}: {fault}. No kernel option governs this access; "
                            f"the guest's own trap report above shows the registers.")


def diagnose_panic(message: str, image: GuestImage, layout: BootLayout, options: dict) -> Diagnosis:
    if "NKPT2PG too small" in message:
        need = min_nkpt2pg(layout)
        have = options["NKPT2PG"]
        end = round_page(layout.kernend)
        text = (f"Boot failed in pmap_bootstrap: panic \"{message}\". {embedded_reason(layout)}pmap_bootstrap "
                f"maps the kernel, its modules and the metadata (0x{KERNBASE:08x}-0x{end:08x}, "
                f"{(end - KERNBASE) / MIB:.1f} MiB) "
                f"with 4 KiB pages through the L2-table pages preallocated at boot; NKPT2PG={have} pages "
                f"cover {have * PT2PG_SPAN // MIB} MiB (4 MiB each, up to 0x{KERNBASE + have * PT2PG_SPAN:08x}). "
                f"Set options NKPT2PG={need} or larger: the smallest value that covers the mapping "
                f"(a kernel without options INVARIANTS allocates the missing pages without this check).")
        return Diagnosis("pmap_bootstrap", text, "NKPT2PG", need)
    return Diagnosis("early boot", f"Boot failed: the guest kernel panicked: \"{message}\".")


def diagnose_lost_metadata(layout: BootLayout, options: dict, metadata_va: int) -> Diagnosis:
    return locore_window(layout, options["LOCORE_MAP_MB"],
                         prefix=f"Boot failed in initarm: the loader's metadata at 0x{metadata_va:08x} "
                                f"read back as no metadata, so the kernel booted with fake metadata and "
                                f"without its {len(layout.modules)} preloaded module(s).")


def _consumers(kva) -> str:
    """The biggest boot KVA consumers, largest first, as 'name N MiB'."""
    rows = sorted((r for r in kva.rows if r.map != "outside"), key=lambda r: -r.size)[:5]
    return ", ".join(f"{r.consumer} {r.size / MIB:.1f} MiB" for r in rows)


def _kmem_source(kmem) -> str:
    if kmem.fixed.value:
        return f"vm_kmem_size {kmem.vm_kmem_size // MIB} MiB set by {kmem.fixed.source}"
    return (f"vm_kmem_size {kmem.vm_kmem_size // MIB} MiB = v_page_count {kmem.v_page_count} / "
            f"VM_KMEM_SIZE_SCALE {kmem.scale.value} pages ({kmem.scale.source})")


def _fix_sentence(fix) -> str:
    """'Set NAME=VALUE: why.' with byte values in MiB as loader.conf takes them."""
    value = f"{fix.value // MIB}M" if fix.value >= MIB and fix.value % MIB == 0 else str(fix.value)
    if fix.name.startswith("vm.kmem_size") and fix.value >= MIB:
        value = f"{fix.value // MIB}M or less" if fix.name == "vm.kmem_size" else value
    return f"Set {fix.name}={value}: {fix.text}."


def diagnose_kva_panic(startup) -> Diagnosis:
    from kernel_sim.vm.kva_layout import fixes_for

    kva = startup.kva
    failure = kva.failure
    fixes = [f for f in fixes_for(kva) if f.value is not None]
    advice = " ".join(_fix_sentence(f) for f in fixes[:3]) or "No kernel option or tunable makes it fit."
    text = (f"Boot failed in vm_ksubmap_init: panic \"{kva.panic}\". {failure.consumer} needs "
            f"{failure.requested // 1024} KiB of kernel address space but only {failure.available // 1024} KiB "
            f"are left after the boot consumers before it ({_consumers(kva)}); the kmem arena is "
            f"{_kmem_source(startup.kmem)}. {advice}")
    first = fixes[0] if fixes else None
    return Diagnosis("vm_ksubmap_init", text, first.name if first else None, first.value if first else None)


def _kmem_for_room(kmem, extra: int) -> tuple[int | None, int]:
    """The smallest VM_KMEM_SIZE_SCALE, and the vm.kmem_size, that free `extra` bytes of KVA."""
    from kernel_sim.vm.kmem import kmem_size_for_scale

    target = kmem.vm_kmem_size - extra - MIB   # kernel_arena imports whole MiB
    size = max(0, target // MIB * MIB)
    if kmem.fixed.value:
        return None, size                        # vm.kmem_size / VM_KMEM_SIZE override any scale
    for scale in range(kmem.scale.value + 1, 65):
        if kmem_size_for_scale(kmem, scale) <= target:
            return scale, size
    return None, size


def diagnose_userland(startup) -> Diagnosis:
    from kernel_sim.kern.startup import KSTACK_KVA

    # Every process init did not start: those whose fork failed and those it stopped before trying.
    failed = max(len(startup.failed_procs), startup.wanted_procs - startup.started_procs)
    exc = startup.kstack_failure
    kmap = startup.kmem.kernel_map_size
    if failed and (startup.wanted_procs + 1) * KSTACK_KVA > kmap:
        most = kmap // KSTACK_KVA
        return Diagnosis("init", f"Userland could not start: debug.init_procs={startup.wanted_procs} asks for that "
                                 f"many kernel stacks of {KSTACK_KVA // 1024} KiB of KVA each, more than the whole "
                                 f"kernel address space holds ({kmap // MIB} MiB: {most} stacks, with nothing else in "
                                 f"it), whatever the RAM and the kmem settings. init started {startup.started_procs} "
                                 f"of them and stopped after {len(startup.failed_procs)} failed forks in a row. "
                                 f"Lower debug.init_procs well below {startup.started_procs}, the stacks this board "
                                 "had room for: /etc/rc's processes and the file systems it mounts need kernel "
                                 "memory too.", "debug.init_procs", None)
    if exc is not None and exc.reason == "pages":
        return Diagnosis("init", f"Userland could not start: {failed} of {startup.wanted_procs} processes found "
                                 f"no free physical pages for their kernel stacks. Give the board more RAM "
                                 f"(--physmem).", "physmem", None)
    extra = failed * KSTACK_KVA
    scale, size = _kmem_for_room(startup.kmem, extra)
    scale_text = (f"set options VM_KMEM_SIZE_SCALE={scale} (or the tunable vm.kmem_size_scale) or "
                  if scale else "")
    text = (f"Userland could not start: {failed} of {startup.wanted_procs} processes found no kernel stack "
            f"(\"vm_thread_new: kstack allocation failed\"; each needs {KSTACK_KVA // 1024} KiB of KVA: "
            f"2 pages and a guard page). After the boot consumers ({_consumers(startup.kva)}) kernel_arena had "
            f"{startup.kva.kva_remaining // 1024} KiB left; the kmem arena is {_kmem_source(startup.kmem)}. "
            f"The {failed} missing stacks need {extra // 1024} KiB more: {scale_text}set vm.kmem_size={size // MIB}M "
            f"or less in loader.conf, so that the kmem arena reserves less of the address space.")
    return Diagnosis("init", text, "VM_KMEM_SIZE_SCALE" if scale else "vm.kmem_size", scale or size)


def diagnose_kmem(startup) -> Diagnosis:
    from kernel_sim.vm.kmem import kmem_size_for_scale

    exc = startup.kmem_failure
    malloc = startup.malloc
    types = ", ".join(f"{t} {b // 1024} KiB" for t, b in malloc.top_types()) or "nothing"
    size = startup.kmem.vm_kmem_size
    head = (f"kmem arena exhausted: {malloc.in_use} of {size} bytes in use by {types} after "
            f"{startup.virtual_seconds:.3f} s of virtual time")
    if exc.what != "kmem arena":
        return Diagnosis("kmem_stress", f"{head}: free physical memory ran out first. A malloc(M_WAITOK) would "
                                        "wait for pages forever. Give the board more RAM (--physmem).",
                         "physmem", None)
    need = malloc.in_use + max(exc.size, startup.stress_target - startup.stress_bytes)
    kmem = startup.kmem
    scale = next((s for s in range(kmem.scale.value - 1, 0, -1) if kmem_size_for_scale(kmem, s) >= need), None)
    advice = (f"Set options VM_KMEM_SIZE_SCALE={scale} (vm_kmem_size {kmem_size_for_scale(kmem, scale) // MIB} "
              f"MiB) or raise vm.kmem_size" if scale else "Raise vm.kmem_size (and vm.kmem_size_max)")
    return Diagnosis("kmem_stress", f"{head}. A malloc(M_WAITOK) would now sleep forever on the arena "
                                    f"(the kernel hangs on real hardware); the arena is {_kmem_source(startup.kmem)}. "
                                    f"{advice} to at least {-(-need // MIB)} MiB, if the KVA layout still fits.",
                     "VM_KMEM_SIZE_SCALE" if scale else "vm.kmem_size", scale)


def diagnose_mountroot(startup) -> Diagnosis:
    """No root mounted: what was tried (or that nothing was specified), whether the prompt was left,
    and the vfs.root.mountfrom that names a disk holding a file system."""
    from kernel_sim.kern.mountroot import normal_spec

    head = f"Boot failed in vfs_mountroot: panic \"{startup.panic}\"."
    if startup.root_specs:
        why = (f" No root file system could be mounted from {', '.join(startup.root_specs)}; the console "
               "shows each attempt's error (22: no UFS superblock on the device, 6: no such GEOM provider).")
    else:
        why = (" The kernel has no root specification: vfs.root.mountfrom is not in the kernel environment "
               "and the kernel has neither options ROOTDEVNAME nor options MD_ROOT.")
    if startup.root_asked:
        why += " The mountroot> prompt was left with an empty line (or the console input ended)."
    elif not startup.root_specs:
        why += (" FreeBSD then waits at the mountroot> prompt for a root to be typed; without console input "
                "(armboard boot --shell gives it) armboard ends the boot in this panic.")
    tried = {normal_spec(spec) for spec in startup.root_specs}
    fits = [c for c in startup.root_candidates if c not in tried]
    if not fits:
        return Diagnosis("mountroot", head + why, "vfs.root.mountfrom")
    names = {"ufs": "UFS", "cd9660": "ISO 9660"}
    disks = [(c.partition(":")[2].removeprefix("/dev/"), names.get(c.partition(":")[0], c)) for c in fits]
    found = (f"{disks[0][0]} holds a {disks[0][1]} file system" if len(disks) == 1 else
             ", ".join(f"{d} ({kind})" for d, kind in disks) + " hold file systems the kernel can mount as root")
    advice = f" {found}: set vfs.root.mountfrom=\"{fits[0]}\" in loader.conf."
    return Diagnosis("mountroot", head + why + advice, "vfs.root.mountfrom", fits[0])
