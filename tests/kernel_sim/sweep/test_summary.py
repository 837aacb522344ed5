"""Answers from rows: smallest booting values with their headroom, and the frontier of minimal boots."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from kernel_sim.sweep import Dimension
from kernel_sim.sweep.summary import best_values, frontier, summary

DIMS = [Dimension("LOCORE_MAP_MB", ("64", "70", "128")), Dimension("NKPT2PG", ("16", "32")),
        Dimension("VM_KMEM_SIZE_SCALE", ("3", "5"))]


def _row(n: int, boots: bool, settings: dict, physmem: str = "", **figures) -> dict:
    return {"point": n, "physmem": physmem, "options": " ".join(f"{k}={v}" for k, v in settings.items()),
            "exit_code": 0 if boots else 1, "plan_agrees": True, **figures}


def test_smallest_values_headroom_and_frontier():
    rows = []
    for n, (lm, nk, sc) in enumerate(itertools.product(*(d.values for d in DIMS))):
        boots = int(lm) >= 70 and int(nk) >= 32 or (lm == "128" and nk == "16")
        rows.append(_row(n, boots, {"LOCORE_MAP_MB": lm, "NKPT2PG": nk, "VM_KMEM_SIZE_SCALE": sc},
                         kva_free=(100 + int(sc)) << 20, kmem_free=(50 - int(sc)) << 20, kstacks_fit=1000 * int(sc)))
    best = {b["name"]: b for b in best_values(rows, DIMS, ("",))}
    assert "VM_KMEM_SIZE_SCALE" not in best                      # no better end: see scale_summary
    assert best["LOCORE_MAP_MB"]["value"] == "70" and best["NKPT2PG"]["value"] == "16"
    assert best["LOCORE_MAP_MB"]["headroom"] == {"kva_free": [103 << 20, 105 << 20],
                                                 "kmem_free": [45 << 20, 47 << 20], "kstacks_fit": [3000, 5000]}
    front = frontier(rows, DIMS, ("",))
    assert [f["settings"] for f in front] == [{"LOCORE_MAP_MB": "70", "NKPT2PG": "32"},
                                              {"LOCORE_MAP_MB": "128", "NKPT2PG": "16"}]
    assert front[0]["booting"] == {"VM_KMEM_SIZE_SCALE": ["3", "5"]}
    assert summary(rows, DIMS, ("",))["frontier"] == front


def test_a_load_tunable_is_maximised():
    dims = [Dimension("debug.init_procs", ("100", "1000", "2000")), Dimension("NKPT2PG", ("32", "64"))]
    rows = [_row(n, not (p == "2000" or (p == "1000" and k == "32")), {"debug.init_procs": p, "NKPT2PG": k})
            for n, (p, k) in enumerate(itertools.product(*(d.values for d in dims)))]
    best = {b["name"]: b for b in best_values(rows, dims, ("",))}
    assert (best["debug.init_procs"]["kind"], best["debug.init_procs"]["value"]) == ("largest", "1000")
    assert [f["settings"] for f in frontier(rows, dims, ("",))] == [
        {"debug.init_procs": "1000", "NKPT2PG": "64"}, {"debug.init_procs": "100", "NKPT2PG": "32"}]


@given(st.lists(st.booleans(), min_size=12, max_size=12))
def test_the_frontier_is_minimal_and_covers_every_boot(boots):
    dims = [Dimension("LOCORE_MAP_MB", ("64", "70", "96", "128")), Dimension("NKPT2PG", ("16", "32", "48"))]
    combos = list(itertools.product(*(d.values for d in dims)))
    rows = [_row(n, b, {"LOCORE_MAP_MB": a, "NKPT2PG": k}) for n, ((a, k), b)
            in enumerate(zip(combos, boots, strict=True))]
    front = [(int(f["settings"]["LOCORE_MAP_MB"]), int(f["settings"]["NKPT2PG"])) for f in frontier(rows, dims, ("",))]
    booting = [(int(a), int(k)) for (a, k), b in zip(combos, boots, strict=True) if b]
    for f in front:                                   # nothing that boots is smaller in both
        assert not any(g != f and g[0] <= f[0] and g[1] <= f[1] for g in booting)
    for g in booting:                                 # everything that boots is at or above the frontier
        assert any(f[0] <= g[0] and f[1] <= g[1] for f in front)
