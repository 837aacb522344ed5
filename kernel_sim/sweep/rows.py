"""The row of one sweep point: what the boot and the plan said, and the headroom the boot left.

Every column but `wall_seconds` is a function of the point's inputs (virtual time, deterministic boots),
so a warm boot, a cold boot and a boot on another machine give the same row; `console_digest` holds the
console bytes to that standard too.
"""

from __future__ import annotations

import hashlib

from kernel_sim.sweep.grid import Point

COLUMNS = ("point", "physmem", "options", "exit_code", "outcome", "stage", "message", "plan_exit_code",
           "plan_stage", "plan_agrees", "vm_kmem_size", "kmem_cap", "kvm_free", "kva_remaining", "kstacks_started",
           "kva_free", "kmem_free", "kstacks_fit", "virtual_seconds", "console_digest", "wall_seconds")
# The columns a rerun must reproduce exactly (all but the host's wall time).
DETERMINISTIC = tuple(c for c in COLUMNS if c != "wall_seconds")

# The outcome of a point whose boot ran past the per-point time limit (exit status 3, as `boot --timeout`).
TIMEOUT = "timeout"


def kmem_cap(kmem) -> str:
    """The option or tunable that capped vm_kmem_size in kmeminit ("" when the scale's value stood)."""
    if kmem is None or not kmem.from_scale or not (kmem.capped_to_max or kmem.overflowed):
        return ""
    return "vm.kmem_size_max" if kmem.size_max.source.startswith("tunable") else "VM_KMEM_SIZE_MAX"


def base_row(point: Point) -> dict:
    return {"point": point.index, "physmem": point.physmem or "", "options": point.options_text}


def plan_fields(plan) -> dict:
    """What the row takes from the plan (kept apart: the plan is made where the point is prepared)."""
    kmem = plan.kmem
    return {"plan_exit_code": plan.exit_code, "plan_stage": plan.stage,
            "vm_kmem_size": kmem.vm_kmem_size if kmem else "", "kmem_cap": kmem_cap(kmem)}


def input_error_row(point: Point, message: str, wall: float) -> dict:
    """A point whose settings are refused before any boot (e.g. a tunable value the loader rejects)."""
    row = base_row(point)
    row.update(exit_code=2, outcome="input error", stage="loader", message=message, plan_exit_code=2,
               plan_stage="loader", plan_agrees=True, wall_seconds=round(wall, 4))
    return row


def timeout_row(point: Point, plan: dict, limit: float, wall: float) -> dict:
    """A point stopped at the per-point time limit: a result (exit 3), not a failure to run."""
    row = base_row(point)
    row.update(plan)
    row.update(exit_code=3, outcome=TIMEOUT, stage="",
               message=f"The boot ran past the per-point time limit of {limit:g} s (--timeout) and was stopped.",
               plan_agrees=False, kmem_cap=plan.get("kmem_cap", ""), wall_seconds=round(wall, 4))
    return row


def kstacks_fit(startup) -> int:
    """How many more kernel stacks vm_thread_new could still take at the end of the boot: the smaller of
    what the free KVA holds (best fit in kernel_arena, then 1 MiB imports from kernel_map, as kva_alloc
    does) and what the free pages hold (KSTACK_PAGES each)."""
    from kernel_sim.kern.proc import KSTACK_PAGES
    from kernel_sim.kern.startup import KSTACK_KVA
    from kernel_sim.vm.kva_layout import KVA_QUANTUM

    procs = startup.procs
    by_kva = sum((end - start) // KSTACK_KVA for start, end in procs.arena.free_segments())
    per_import = KVA_QUANTUM // KSTACK_KVA
    for start, end in procs.kernel_map.free_segments():
        aligned = -(-start // KVA_QUANTUM) * KVA_QUANTUM
        if end > aligned:
            by_kva += (end - aligned) // KVA_QUANTUM * per_import
    return min(by_kva, startup.pages.free_count // KSTACK_PAGES)


def boot_row(point: Point, plan: dict, result, wall: float) -> dict:
    """The row of a boot that ran (to its end, or to a failure the guest or the kernel diagnosed)."""
    startup = result.startup
    row = base_row(point)
    row.update(plan)
    row.update(
        exit_code=result.exit_code, outcome=result.status, stage=result.stage, message=result.message,
        plan_agrees=(plan["plan_exit_code"], plan["plan_stage"]) == (result.exit_code, result.stage),
        kvm_free=startup.kva.kvm_free if startup else "",
        kva_remaining=startup.kva.kva_remaining if startup else "",
        kstacks_started=len(startup.procs.procs) - 1 if startup and startup.procs else 0,
        kva_free="", kmem_free="", kstacks_fit="",
        virtual_seconds=startup.virtual_seconds if startup else 0.0,
        console_digest=hashlib.blake2b(result.console, digest_size=8).hexdigest(),
        wall_seconds=round(wall, 4),
    )
    if startup is not None:
        kmem = startup.kmem
        row["vm_kmem_size"], row["kmem_cap"] = kmem.vm_kmem_size, kmem_cap(kmem)
        if startup.procs is not None:
            row["kva_free"] = startup.procs.kernel_map.free_total + startup.procs.arena.free_total
            row["kstacks_fit"] = kstacks_fit(startup)
        if startup.malloc is not None:
            row["kmem_free"] = startup.malloc.arena.free_total
    return row
