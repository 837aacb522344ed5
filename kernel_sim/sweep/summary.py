"""Answers from the rows: the smallest value of each swept option that boots and the headroom it
leaves, the frontier of minimal configurations that boot, and what the kmem scale trades.

Each numeric dimension is a cost to minimise (LOCORE_MAP_MB, NKPT2PG, RAM, a kmem size), except the
load tunables, where the answer is the largest load that still boots, and the kmem scale, which has
no better end: it sizes the kmem arena and the rest of the KVA gets what the arena leaves (see
scale_summary). Headroom is what a booted point had left at the end: free KVA (kernel_map and
kernel_arena), free kmem (the kmem arena), and how many more kernel stacks would still fit.
"""

from __future__ import annotations

from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import parse_size
from kernel_sim.sweep.grid import Dimension

SCALE_DIMENSIONS = ("VM_KMEM_SIZE_SCALE", "vm.kmem_size_scale")
LOAD_DIMENSIONS = ("debug.init_procs", "debug.kmem_stress")     # more is harder: the answer is the largest
HEADROOM = ("kva_free", "kmem_free", "kstacks_fit")


def settings_of(row: dict) -> dict[str, str]:
    out = dict(part.split("=", 1) for part in str(row["options"]).split()) if row["options"] else {}
    if row.get("physmem"):
        out["physmem"] = str(row["physmem"])
    return out


def booted(row: dict) -> bool:
    return str(row["exit_code"]) == "0"


def number(value: str) -> int | None:
    try:
        return parse_size(value)
    except (InputError, ValueError):
        return None


def _mib(values: list[int]) -> str:
    lo, hi = min(values) // (1 << 20), max(values) // (1 << 20)
    return f"{lo} MiB" if lo == hi else f"{lo}-{hi} MiB"


def headroom(rows: list[dict]) -> dict[str, list[int]]:
    """[least, most] of each headroom figure over rows that measured it."""
    out = {}
    for name in HEADROOM:
        values = [int(r[name]) for r in rows if str(r.get(name, "")).isdigit()]
        if values:
            out[name] = [min(values), max(values)]
    return out


def headroom_text(room: dict[str, list[int]]) -> str:
    parts = []
    if "kva_free" in room:
        parts.append(f"KVA free {_mib(room['kva_free'])}")
    if "kmem_free" in room:
        parts.append(f"kmem free {_mib(room['kmem_free'])}")
    if "kstacks_fit" in room:
        lo, hi = room["kstacks_fit"]
        count = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
        parts.append(f"room for {count} more kernel stacks")
    return ", ".join(parts)


def _ordered(dims: list[Dimension], physmem: tuple) -> list[tuple[str, tuple[str, ...], int]]:
    """(name, values, sign) of the dimensions with an order: +1 minimise, -1 maximise (load)."""
    out = []
    if len(physmem) > 1:
        out.append(("physmem", tuple(str(p) for p in physmem), 1))
    for d in dims:
        if d.name in SCALE_DIMENSIONS or len(d.values) < 2 or any(number(v) is None for v in d.values):
            continue
        out.append((d.name, d.values, -1 if d.name in LOAD_DIMENSIONS else 1))
    return out


def best_values(rows: list[dict], dims: list[Dimension], physmem: tuple) -> list[dict]:
    """For each ordered dimension, the smallest (load: largest) value with which some point booted, and
    the headroom the booting points at that value had."""
    out = []
    ok = [r for r in rows if booted(r)]
    for name, values, sign in _ordered(dims, physmem):
        seen = [settings_of(r).get(name) for r in ok]
        candidates = [v for v in values if v in seen]
        if not candidates:
            continue
        best = min(candidates, key=lambda v: sign * number(v))
        at = [r for r in ok if settings_of(r).get(name) == best]
        out.append({"name": name, "value": best, "kind": "largest" if sign < 0 else "smallest",
                    "headroom": headroom(at)})
    return out


def frontier(rows: list[dict], dims: list[Dimension], physmem: tuple) -> list[dict]:
    """The minimal configurations that boot: over the ordered dimensions, the booting combinations no
    other booting combination beats in every dimension (Pareto-minimal; load dimensions count higher as
    better). The other dimensions are listed with the values that boot there."""
    ordered = _ordered(dims, physmem)
    if not ordered:
        return []
    names = [n for n, _, _ in ordered]
    signs = [s for _, _, s in ordered]
    groups: dict[tuple[str, ...], list[dict]] = {}
    for r in rows:
        if booted(r):
            s = settings_of(r)
            groups.setdefault(tuple(s.get(n, "") for n in names), []).append(r)
    vectors = {k: tuple(sign * number(v) for sign, v in zip(signs, k, strict=True)) for k in groups}

    def beaten(k: tuple[str, ...]) -> bool:
        v = vectors[k]
        return any(w != v and all(a <= b for a, b in zip(w, v, strict=True)) for w in vectors.values())

    others = [d for d in dims if d.name not in names and len(d.values) > 1]
    out = []
    for k in sorted((k for k in groups if not beaten(k)), key=lambda k: vectors[k]):
        at = groups[k]
        entry = {"settings": dict(zip(names, k, strict=True)), "headroom": headroom(at)}
        if others:
            entry["booting"] = {d.name: [v for v in d.values if any(settings_of(r).get(d.name) == v for r in at)]
                                for d in others}
        out.append(entry)
    return out


def frontier_text(entry: dict) -> str:
    text = " ".join(f"{n}={v}" for n, v in entry["settings"].items())
    for name, values in entry.get("booting", {}).items():
        text += f" (with {name} {', '.join(values)})"
    room = headroom_text(entry["headroom"])
    return f"{text}: {room}" if room else text


def scale_summary(rows: list[dict], dim: Dimension) -> list[str]:
    """What the rows say about a kmem scale dimension: which scales boot, which ones VM_KMEM_SIZE_MAX caps
    (they all give the same arena), and what a larger scale buys (free KVA) for what it costs (arena).

    Not "the smallest scale that boots": the smallest is not the best, the scale sizes the kmem arena
    and the rest of the kernel's address space gets what the arena leaves."""
    by_value: dict[str, list[dict]] = {v: [] for v in dim.values}
    for row in rows:
        by_value.setdefault(settings_of(row)[dim.name], []).append(row)
    values = [v for v in dim.values if by_value[v]]
    ok = [v for v in values if any(booted(r) for r in by_value[v])]
    some = " at some point" if any(len(by_value[v]) > 1 for v in values) else ""
    if len(ok) == len(values):
        lines = [f"every {dim.name} in the grid boots{some} ({', '.join(values)})"]
    elif ok:
        lines = [f"{dim.name} boots{some} with {', '.join(ok)} ({len(ok)} of {len(values)} values)"]
    else:
        lines = [f"no {dim.name} in the grid boots"]
    sized = {v: [r for r in by_value[v] if str(r.get("vm_kmem_size", "")).isdigit()] for v in values}
    capped = [v for v in values if sized[v] and all(r.get("kmem_cap") for r in sized[v])]
    if capped:
        caps = sorted({r["kmem_cap"] for v in capped for r in sized[v]})
        sizes = [int(r["vm_kmem_size"]) for v in capped for r in sized[v]]
        lines.append(f"{dim.name} {', '.join(capped)}: vm_kmem_size is capped by {' / '.join(caps)} at "
                     f"{_mib(sizes)} instead of v_page_count / scale pages")
    measured = {v: [r for r in sized[v] if str(r.get("kva_remaining", "")).isdigit()] for v in values}
    with_layout = [v for v in values if measured[v]]        # the rows that got as far as a KVA layout
    ends = [with_layout[0], with_layout[-1]] if with_layout else []
    if len(ends) == 2 and ends[0] != ends[1]:
        lo, hi = (measured[v] for v in ends)
        lines.append(f"{dim.name} trades the kmem arena's size against free KVA: at {ends[0]} the arena is "
                     f"{_mib([int(r['vm_kmem_size']) for r in lo])} and "
                     f"{_mib([int(r['kva_remaining']) for r in lo])} of KVA is left, at {ends[1]} the arena is "
                     f"{_mib([int(r['vm_kmem_size']) for r in hi])} and "
                     f"{_mib([int(r['kva_remaining']) for r in hi])} is left")
    return lines


def summary(rows: list[dict], dims: list[Dimension], physmem: tuple) -> dict:
    """Everything the text summary says, as data (the `summary` of --json)."""
    return {
        "points": len(rows),
        "boot": sum(1 for r in rows if booted(r)),
        "fail": sum(1 for r in rows if not booted(r)),
        "best": best_values(rows, dims, physmem),
        "frontier": frontier(rows, dims, physmem),
        "kmem_scale": {d.name: scale_summary(rows, d) for d in dims if d.name in SCALE_DIMENSIONS},
        "plan_disagrees": [int(r["point"]) for r in rows if str(r["plan_agrees"]) not in ("True", "true", "1")
                           and r.get("outcome") != "timeout"],
    }
