"""`armboard plan`: predict a boot without running the CPU, from the same model code the boot uses.

Each stage is decided by the arithmetic its code embodies: locore's window (LOCORE_MAP_MB), the
boot page tables pmap_bootstrap allocates (NKPT2PG, RAM), kmeminit and the KVA layout (the same
functions mi_startup calls), then the kernel stacks and kmem load, allocated from the same vmem
arenas. A test over a grid of configurations holds the prediction to the real boot's outcome.
"""

from __future__ import annotations

from collections import namedtuple

from kernel_sim.guest.abi import KERNBASE, KERNVIRTADDR, KSTACK_GUARD_PAGES, KSTACK_PAGES, MIB, PAGE_SIZE, PT2PG_SPAN
from kernel_sim.kern.diagnose import min_locore_map_mb, min_nkpt2pg
from kernel_sim.kern.kmem_kva import kmem_and_kva
from kernel_sim.kern.tunables import tunable_value, wild_access_address
from kernel_sim.loader.layout import round_page
from kernel_sim.vm.kmem import KmemResult
from kernel_sim.vm.kva_layout import KvaLayout, kernel_arena_alloc
from kernel_sim.vm.vmem import Vmem, VmemExhausted

BOOT_TABLE_PAGES = 4 + 1   # kern_pt1 (16 KiB) and PT2TAB, before the NKPT2PG pages (guest pmap.c)


class StageResult(namedtuple("StageResult", "stage ok detail")):
    __slots__ = ()

    stage: str
    ok: bool
    detail: str


class Plan:
    """The predicted boot: stages in order, the first failure ends it."""

    __slots__ = (
        "stages", "exit_code", "stage", "min_locore_map_mb", "min_nkpt2pg", "kmem", "kva", "v_page_count",
        "kstacks_started", "kstacks_wanted",
    )

    def __init__(self, stages: list[StageResult] | None = None, exit_code: int = 0, stage: str = "mi_startup",
                 min_locore_map_mb: int = 0, min_nkpt2pg: int = 0, kmem: KmemResult | None = None,
                 kva: KvaLayout | None = None, v_page_count: int = 0, kstacks_started: int = 0,
                 kstacks_wanted: int = 0) -> None:
        self.stages = [] if stages is None else stages
        self.exit_code = exit_code
        self.stage = stage
        self.min_locore_map_mb = min_locore_map_mb
        self.min_nkpt2pg = min_nkpt2pg
        self.kmem = kmem
        self.kva = kva
        self.v_page_count = v_page_count
        self.kstacks_started = kstacks_started
        self.kstacks_wanted = kstacks_wanted

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def add(self, stage: str, ok: bool, detail: str) -> bool:
        self.stages.append(StageResult(stage, ok, detail))
        if not ok:
            self.exit_code, self.stage = 1, stage
        return ok


class _Pages:
    """A free-page counter with the PT2 pages pmap_growkernel takes as KVA use spreads out."""

    def __init__(self, free: int, kernel_vm_end: int) -> None:
        self.free = free
        self.linked = set(range(KERNBASE >> 22, kernel_vm_end >> 22))   # 4 MiB regions with a PT2 page

    def take(self, va: int, npages: int) -> str:
        """Pages for [va, va + npages pages), then the PT2 pages pmap_growkernel links for them.

        "ok"; "pages" when the pages themselves are missing (the allocation fails cleanly); "grow" when
        they were taken but growing the tables ran out (panic "pmap_growkernel: no memory to grow kernel")."""
        if npages > self.free:
            return "pages"
        grow = {r for r in range((va >> 22), ((va + npages * PAGE_SIZE - 1) >> 22) + 1) if r not in self.linked}
        self.free -= npages
        if len(grow) > self.free:
            return "grow"
        self.free -= len(grow)
        self.linked |= grow
        return "ok"


def plan_boot(prep) -> Plan:
    """Predict the boot of a PreparedBoot (kernel_sim.boot.prepare) stage by stage."""
    layout, options, env = prep.layout, prep.options, prep.loader.env
    p = Plan(min_locore_map_mb=min_locore_map_mb(layout), min_nkpt2pg=min_nkpt2pg(layout))
    window = options["LOCORE_MAP_MB"]
    ram_end = layout.ram_base + layout.ram_size
    if prep.request.abi == "freebsd" and not p.add(
            "initarm", window >= p.min_locore_map_mb,
            f"metadata ends at 0x{layout.kernend:08x}; LOCORE_MAP_MB={window} maps up to "
            f"0x{KERNVIRTADDR + window * MIB:08x} (needs {p.min_locore_map_mb})"):
        return p
    nkpt2pg = options["NKPT2PG"]
    extra = max(0, p.min_nkpt2pg - nkpt2pg)
    tables = -(-layout.pa(layout.kernend) // MIB) * MIB
    first_free = tables + (BOOT_TABLE_PAGES + nkpt2pg + extra) * PAGE_SIZE
    if not p.add("pmap_bootstrap", first_free <= ram_end,
                 f"boot page tables at 0x{tables:08x}-0x{first_free:08x}, RAM ends at 0x{ram_end:08x}"):
        return p
    if extra and options["INVARIANTS"]:
        p.add("pmap_bootstrap", False, f"NKPT2PG={nkpt2pg} covers {nkpt2pg * 4} MiB, the mapping needs "
                                       f"{p.min_nkpt2pg} pages: panic \"pmap_preboot_pt2pg_setup: NKPT2PG too small\"")
        return p
    p.add("pmap_bootstrap", True, f"NKPT2PG={nkpt2pg} (+{extra} allocated) maps "
                                  f"0x{KERNBASE:08x}-0x{round_page(layout.kernend):08x}")
    if not _wild_access_ok(p, prep, env):
        return p
    v_page_count = (ram_end - first_free) // PAGE_SIZE
    v_page_count += max(0, (layout.kernel_pa & ~(MIB - 1)) - layout.ram_base) // PAGE_SIZE
    p.v_page_count = v_page_count
    devmap = prep.profile.console_devmap_va
    p.kmem, p.kva = kmem_and_kva(v_page_count=v_page_count, kernend=layout.kernend, nkpt2pg=nkpt2pg,
                                 boot_pt_pages=BOOT_TABLE_PAGES + nkpt2pg + extra, devmap_va=devmap,
                                 ram_end=ram_end, options=dict(prep.kernconf.options), env=env)
    if not p.add("vm_ksubmap_init", p.kva.ok,
                 f"vm_kmem_size {p.kmem.vm_kmem_size // MIB} MiB; " +
                 (f"KVA left {p.kva.kva_remaining // 1024} KiB" if p.kva.ok else f"panic \"{p.kva.panic}\"")):
        return p
    kernel_vm_end = KERNBASE + (nkpt2pg + extra) * PT2PG_SPAN
    pages = _Pages(v_page_count, kernel_vm_end)
    kmap, karena = p.kva.make_arenas()
    p.kstacks_wanted = 1 + tunable_value(env, "debug.init_procs")
    for n in range(p.kstacks_wanted):
        size = (KSTACK_PAGES + KSTACK_GUARD_PAGES) * PAGE_SIZE
        try:
            va = kernel_arena_alloc(kmap, karena, size, "kstack")
        except VmemExhausted:
            break
        taken = pages.take(va + KSTACK_GUARD_PAGES * PAGE_SIZE, KSTACK_PAGES)
        if taken == "grow":
            p.add("mi_startup", False, "panic \"pmap_growkernel: no memory to grow kernel\"")
            return p
        if taken == "pages":
            break
        p.kstacks_started = n + 1
    if not p.add("init", p.kstacks_started == p.kstacks_wanted,
                 f"{p.kstacks_started} of {p.kstacks_wanted} kernel stacks (init and debug.init_procs)"):
        return p
    stress = tunable_value(env, "debug.kmem_stress")
    if stress:
        row = next(r for r in p.kva.rows if r.consumer == "kmem arena")
        arena = Vmem("kmem arena", row.start, row.size)
        done = 0
        while done < stress:
            try:
                va = arena.alloc(PAGE_SIZE)
            except VmemExhausted:
                break
            taken = pages.take(va, 1)
            if taken == "grow":
                p.add("mi_startup", False, "panic \"pmap_growkernel: no memory to grow kernel\"")
                return p
            if taken == "pages":
                break
            done += PAGE_SIZE
        p.add("kmem_stress", done >= stress, f"{done} of {stress} bytes allocated from the kmem arena")
    return p


def _wild_access_ok(p: Plan, prep, env: dict[str, str]) -> bool:
    """debug.wild_access reads one address after pmap_bootstrap: only the kernel's pages and the devmap."""
    va = wild_access_address(env, prep.loader.origin)
    if va is None:
        return True
    mapped = KERNBASE <= va < round_page(prep.layout.kernend) or \
        prep.profile.console_devmap_va <= va < prep.profile.console_devmap_va + MIB
    return p.add("initarm", mapped, f"debug.wild_access reads 0x{va:08x}")
