"""`armboard plan`: print the predicted boot, stage by stage, with the KVA layout and the kmem arithmetic."""

from __future__ import annotations

import sys

from kernel_sim.guest.abi import MIB

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    import argparse
    from pathlib import Path


def plan_json(prep, plan) -> dict:
    out = {
        "exit_code": plan.exit_code, "stage": plan.stage, "boots": plan.exit_code == 0,
        "stages": [{"stage": s.stage, "ok": s.ok, "detail": s.detail} for s in plan.stages],
        "min_locore_map_mb": plan.min_locore_map_mb, "min_nkpt2pg": plan.min_nkpt2pg,
        "physmem": prep.layout.ram_size, "kernend": prep.layout.kernend,
        "kernel_size": prep.layout.kernel_size,
    }
    embedded = prep.layout.embedded_md
    if embedded is not None:
        out["embedded_md"] = {"section": embedded.section, "va": embedded.va, "size": embedded.size,
                              "image": str(embedded.image) if embedded.image else None,
                              "image_size": embedded.image_size}
    if plan.kmem is not None:
        out["kmem"] = {"vm_kmem_size": plan.kmem.vm_kmem_size, "steps": list(plan.kmem.steps()),
                       "v_page_count": plan.v_page_count}
    if plan.kva is not None:
        out["kva"] = {"kvm_size": plan.kva.kvm_size, "kvm_free": plan.kva.kvm_free,
                      "kva_remaining": plan.kva.kva_remaining, "panic": plan.kva.panic,
                      "rows": [{"start": r.start, "end": r.end, "size": r.size, "consumer": r.consumer,
                                "map": r.map} for r in sorted(plan.kva.rows, key=lambda r: r.start)]}
    out["kstacks"] = {"wanted": plan.kstacks_wanted, "started": plan.kstacks_started}
    return out


def print_plan(prep, plan, out=None) -> None:
    out = out if out is not None else sys.stdout     # looked up now: tests swap sys.stdout
    layout = prep.layout
    mods = sum(m.size for m in layout.modules)
    e = layout.embedded_md
    embedded = f" ({e.size // 1024} KiB of it MD_ROOT's embedded image, section {e.section})" if e else ""
    out.write(f"{prep.profile.name} board, {layout.ram_size // MIB} MiB RAM; kernel {layout.kernel_size // 1024} KiB"
              f"{embedded}, "
              f"{len(layout.modules)} module(s) {mods // 1024} KiB; {prep.kernconf.ident or 'GENERIC'}\n\n")
    out.write(f"{'stage':<16} {'outcome':<8} detail\n")
    for s in plan.stages:
        out.write(f"{s.stage:<16} {'ok' if s.ok else 'FAILS':<8} {s.detail}\n")
    verdict = "boots" if plan.exit_code == 0 else f"fails in {plan.stage}"
    out.write(f"\nprediction: the board {verdict} (exit {plan.exit_code})\n")
    out.write(f"smallest LOCORE_MAP_MB that covers kernel, modules and metadata: {plan.min_locore_map_mb}\n")
    out.write(f"smallest NKPT2PG that maps them: {plan.min_nkpt2pg}\n")
    if plan.kmem is not None:
        out.write("\nvm_kmem_size (kmeminit):\n")
        for step in plan.kmem.steps():
            out.write(f"  {step}\n")
    if plan.kva is not None:
        out.write("\nKVA layout:\n")
        out.write(f"  {'start':<10} {'end':<10} {'size':>12}  consumer\n")
        for r in sorted(plan.kva.rows, key=lambda r: r.start):
            out.write(f"  0x{r.start:08x} 0x{r.end:08x} {r.size // 1024:>9} KiB  {r.consumer}\n")
        out.write(f"  vm.kvm_size {plan.kva.kvm_size}, vm.kvm_free {plan.kva.kvm_free}, "
                  f"KVA left for kernel stacks and later {plan.kva.kva_remaining}\n")


def cmd_plan(args: argparse.Namespace, request) -> int:
    from kernel_sim.boot import prepare
    from kernel_sim.plan import plan_boot

    prep = prepare(request)
    plan = plan_boot(prep)
    if args.picture is not None:
        from pathlib import Path

        _draw(Path(args.picture), prep, plan)
    if args.json:
        import json

        print(json.dumps(plan_json(prep, plan), indent=2))
    else:
        print_plan(prep, plan)
    return plan.exit_code


def _draw(path: Path, prep, plan) -> None:
    """The KVA layout, or, when the boot is predicted to fail before there is one, the boot layout."""
    from tools.pictures import plan_figure, save_figure

    if plan.kva is None:
        print(f"armboard: --picture: no KVA layout: the boot is predicted to fail in {plan.stage}, before "
              f"vm_ksubmap_init; {path} shows the boot layout (kernel, modules and metadata against "
              "LOCORE_MAP_MB and NKPT2PG)", file=sys.stderr)
    save_figure(plan_figure(prep, plan), path, "--picture")
