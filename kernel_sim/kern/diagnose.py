"""Turn a failed early boot into one paragraph: the stage, the fault, and the option to change."""

from __future__ import annotations

from dataclasses import dataclass

from kernel_sim.guest.abi import KERNBASE, KERNVIRTADDR, MIB, PT2PG_SPAN
from kernel_sim.guest.build import GuestImage
from kernel_sim.kern.hypercalls import FatalReport
from kernel_sim.loader.layout import BootLayout, round_page
from kernel_sim.vm.mmu import decode_fsr

STAGE_OF_SYMBOL = {
    "_start": "locore", "virtdone": "locore",
    "initarm": "initarm", "parse_metadata": "initarm", "fake_preload_metadata": "initarm",
    "fake_record": "initarm", "streq": "initarm", "kern_getenv": "initarm", "debug_wild_access": "initarm",
    "pmap_bootstrap": "pmap_bootstrap", "preboot_get_pages": "pmap_bootstrap", "link_pt2pg": "pmap_bootstrap",
    "preboot_pt2pg_setup": "pmap_bootstrap",
}


@dataclass(frozen=True)
class Diagnosis:
    stage: str
    text: str
    option: str | None = None
    suggested: int | None = None


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


def _extent(layout: BootLayout) -> str:
    mods = sum(m.size for m in layout.modules)
    return (f"The kernel ({layout.kernel_size // 1024} KiB), its modules ({mods // 1024} KiB) and the "
            f"metadata end at 0x{layout.kernend:08x}, {(layout.kernend - KERNVIRTADDR) / MIB:.1f} MiB past "
            f"KERNVIRTADDR")


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
        text = (f"Boot failed in pmap_bootstrap: panic \"{message}\". pmap_bootstrap maps the kernel, its "
                f"modules and the metadata (0x{KERNBASE:08x}-0x{end:08x}, {(end - KERNBASE) / MIB:.1f} MiB) "
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
