"""mi_startup: where the Python kernel takes over from the guest's early boot.

For now it checks what the guest found against what the loader passed, prints a FreeBSD-like
banner with the real and available memory and the KVA in use, and halts. Later work (VM,
GEOM, root mount, init) continues from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from board.machine import Machine
from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE, PT2MAP, Handoff
from kernel_sim.loader.layout import BootLayout

VERSION = "armboard 0.1.0 (synthetic FreeBSD 12 armv7 kernel)"


@dataclass(frozen=True)
class MemorySummary:
    real: int
    avail: int
    kva_in_use: list[tuple[int, int, str]]
    kernel_vm_end: int
    vm_max_kernel_address: int


def memory_summary(handoff: Handoff, layout: BootLayout) -> MemorySummary:
    ram_end = layout.ram_base + layout.ram_size
    below_kernel = max(0, layout.kernel_pa - layout.ram_base) // PAGE_SIZE * PAGE_SIZE
    avail = (ram_end - handoff.first_free_pa) + below_kernel
    kva = [
        (PT2MAP, KERNBASE, "PT2MAP (the L2 tables, mapped by PT2TAB)"),
        (KERNBASE, handoff.mapped_end, "kernel, modules and metadata"),
        (handoff.devmap_va, handoff.devmap_va + (1 << 20), "devmap (console UART)"),
    ]
    return MemorySummary(layout.ram_size, avail, kva, handoff.kernel_vm_end, handoff.devmap_va)


def _mb(n: int) -> int:
    return n // (1 << 20)


def mi_startup(machine: Machine, handoff: Handoff, layout: BootLayout, ident: str) -> MemorySummary:
    """Print the banner and memory figures; the boot ends in a clean halt."""
    s = memory_summary(handoff, layout)
    out = machine.console
    out.write_text("---<<BOOT>>---\n")
    out.write_text(f"{VERSION} #0: {ident}\n")
    out.write_text(f"CPU: ARM Cortex-A15 (ARMv7), {machine.profile.name} board\n")
    out.write_text(f"real memory  = {s.real} ({_mb(s.real)} MB)\n")
    out.write_text(f"avail memory = {s.avail} ({_mb(s.avail)} MB)\n")
    for start, end, what in s.kva_in_use:
        out.write_text(f"KVA in use: 0x{start:08x}-0x{end:08x} {(end - start) // 1024:>7} KB  {what}\n")
    out.write_text(f"kernel_vm_end 0x{s.kernel_vm_end:08x} (NKPT2PG={handoff.nkpt2pg}), "
                   f"vm_max_kernel_address 0x{s.vm_max_kernel_address:08x}\n")
    for m in layout.modules:
        out.write_text(f"preload: {m.type} \"{m.name}\" at 0x{m.va:08x}, {m.size} bytes\n")
    out.write_text("mi_startup: no further SYSINITs in this kernel yet (VM, GEOM, root mount and init "
                   "are not built); halting.\n")
    out.write_text("The operating system has halted.\n")
    return s
