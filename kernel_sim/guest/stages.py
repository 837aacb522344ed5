"""The guest's boot stages and the first instruction of each, by the kernel's own symbols.

locore (locore.S) runs at the kernel's physical addresses with the MMU off, so its stages begin at the
physical alias of their symbol; initarm and pmap_bootstrap run at virtual addresses. The hand-over
begins where pmap_bootstrap returns into initarm: the rest of initarm, then the hypercall gate. A
kernel without one of these symbols (another `--kernel ELF`) simply has fewer stages.
"""

from __future__ import annotations

from collections import namedtuple

from kernel_sim.guest.code import call_return

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kernel_sim.guest.build import GuestImage


class GuestStage(namedtuple("GuestStage", "name title symbol mmu_off")):
    """`name` as --trace-stage and the timeline call it, `symbol` where it begins (None: computed)."""

    __slots__ = ()


GUEST_STAGES = (
    GuestStage("reset", "reset: locore's first instructions (MMU off)", "_start", True),
    GuestStage("locore", "locore: L1 table, 4096 identity sections and the LOCORE_MAP_MB window",
               "build_pagetables", True),
    GuestStage("mmu_on", "MMU on: TTBR0, DACR, SCTLR, the jump to KERNVIRTADDR, stacks, .bss", "init_mmu", True),
    GuestStage("initarm", "initarm: console and the preload metadata walk", "initarm", False),
    GuestStage("pmap_bootstrap", "pmap_bootstrap: kern_pt1, PT2TAB, NKPT2PG L2 pages, 4 KiB mappings",
               "pmap_bootstrap", False),
    GuestStage("handover", "hand-over: the rest of initarm and the hypercall gate", None, False),
)
GUEST_STAGE_NAMES = tuple(s.name for s in GUEST_STAGES)


def stage_starts(image: GuestImage) -> list[tuple[str, int]]:
    """(stage name, address as the CPU runs it) for each stage this kernel has, in boot order."""
    out = []
    for stage in GUEST_STAGES:
        va = image.symbols.get(stage.symbol) if stage.symbol else call_return(image, "initarm", "pmap_bootstrap")
        if va is None:
            continue
        address = image.physical_alias(va) if stage.mmu_off else va
        if address is not None:
            out.append((stage.name, address))
    return out
