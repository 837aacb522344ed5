"""The vmem-like arena: ranges never overlap, statistics add up, free segments coalesce within a span."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.vm.vmem import PAGE_SIZE, Vmem, VmemExhausted

BASE = 0xC000_0000
SIZE = 256 * PAGE_SIZE


def check_invariants(arena: Vmem, live: dict[int, int]) -> None:
    allocs = arena.allocations()
    assert {a.start: a.size for a in allocs} == live
    ranges = sorted([(a.start, a.end) for a in allocs] + arena.free_segments())
    # Allocations and free segments tile the spans exactly: no overlap, no gap.
    spans = list(arena.spans)
    pos = 0
    for start, end in spans:
        while pos < len(ranges) and ranges[pos][0] < end:
            assert ranges[pos][0] == start, "gap or overlap inside a span"
            start = ranges[pos][1]
            pos += 1
        assert start == end
    assert pos == len(ranges)
    assert arena.in_use == sum(live.values())
    assert arena.in_use + arena.free_total == arena.size == sum(e - s for s, e in spans)
    segs = arena.free_segments()
    assert arena.largest_free == max((e - s for s, e in segs), default=0)
    # Coalescing: two free segments never touch unless a span boundary separates them.
    span_starts = {s for s, _ in spans}
    for (_, e1), (s2, _) in zip(segs, segs[1:], strict=False):
        assert e1 < s2 or s2 in span_starts


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 40 * PAGE_SIZE), st.sampled_from([1, 2, 4, 16]),
                  st.sampled_from(["first-fit", "best-fit"])),
        st.tuples(st.just("free"), st.integers(0, 1000)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.booleans())
def test_random_alloc_free_sequences(seq, two_spans):
    arena = Vmem("test", BASE, SIZE)
    if two_spans:
        arena.add(BASE + SIZE, SIZE)        # adjacent span: must not coalesce across the boundary
    live: dict[int, int] = {}
    for op in seq:
        if op[0] == "alloc":
            _, size, align_pages, policy = op
            try:
                addr = arena.alloc(size, align=align_pages * PAGE_SIZE, policy=policy, name="x")
            except VmemExhausted as e:
                assert e.largest < -(-size // PAGE_SIZE) * PAGE_SIZE
                assert e.free == arena.free_total
                continue
            assert addr % (align_pages * PAGE_SIZE) == 0
            live[addr] = -(-size // PAGE_SIZE) * PAGE_SIZE
        elif live:
            addr = sorted(live)[op[1] % len(live)]
            arena.free(addr, live.pop(addr))
        check_invariants(arena, live)
    for addr in sorted(live):
        arena.free(addr, live.pop(addr))
    check_invariants(arena, live)
    # Everything freed: one free segment per span, exactly the spans.
    assert arena.free_segments() == list(arena.spans)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_free_in_any_order_coalesces(sizes, rnd):
    arena = Vmem("test", BASE, SIZE)
    got = [(arena.alloc(n * PAGE_SIZE), n * PAGE_SIZE) for n in sizes if n * PAGE_SIZE <= arena.largest_free]
    rnd.shuffle(got)
    for addr, size in got:
        arena.free(addr, size)
    assert arena.free_segments() == [(BASE, BASE + SIZE)]


def test_first_fit_and_best_fit():
    arena = Vmem("t", BASE, 16 * PAGE_SIZE)
    a = arena.alloc(4 * PAGE_SIZE)
    b = arena.alloc(PAGE_SIZE)
    c = arena.alloc(2 * PAGE_SIZE)
    arena.alloc(PAGE_SIZE)
    arena.free(a, 4 * PAGE_SIZE)      # hole of 4 pages at BASE
    arena.free(c, 2 * PAGE_SIZE)      # hole of 2 pages after b
    assert arena.alloc(PAGE_SIZE, policy="first-fit") == BASE
    assert arena.alloc(2 * PAGE_SIZE, policy="best-fit") == c
    assert b == BASE + 4 * PAGE_SIZE


def test_no_allocation_straddles_two_spans():
    arena = Vmem("t", BASE, 4 * PAGE_SIZE)
    arena.add(BASE + 4 * PAGE_SIZE, 4 * PAGE_SIZE)
    assert arena.largest_free == 4 * PAGE_SIZE
    with pytest.raises(VmemExhausted) as e:
        arena.alloc(5 * PAGE_SIZE)
    assert (e.value.requested, e.value.free, e.value.largest) == (5 * PAGE_SIZE, 8 * PAGE_SIZE, 4 * PAGE_SIZE)


def test_xalloc_and_errors():
    arena = Vmem("t", BASE, 8 * PAGE_SIZE)
    assert arena.xalloc(BASE + 2 * PAGE_SIZE, PAGE_SIZE, name="fixed") == BASE + 2 * PAGE_SIZE
    with pytest.raises(VmemExhausted):
        arena.xalloc(BASE + PAGE_SIZE, 2 * PAGE_SIZE)
    with pytest.raises(ValueError):
        arena.free(BASE + 2 * PAGE_SIZE, 2 * PAGE_SIZE)   # wrong size
    with pytest.raises(ValueError):
        arena.add(BASE + 4 * PAGE_SIZE, PAGE_SIZE)        # overlaps
    with pytest.raises(ValueError):
        arena.alloc(PAGE_SIZE, align=3 * PAGE_SIZE)
    assert [a.name for a in arena.allocations()] == ["fixed"]
    assert arena.alloc(1) == BASE                          # rounded up to the quantum


def test_thousands_of_allocations_are_cheap():
    arena = Vmem("kernel arena", BASE, 1 << 30)
    addrs = [arena.alloc(3 * PAGE_SIZE, policy="best-fit", name="kstack") for _ in range(5000)]
    for a in addrs[::2]:
        arena.free(a, 3 * PAGE_SIZE)
    for _ in range(2500):
        arena.alloc(3 * PAGE_SIZE, name="kstack")
    assert arena.in_use == 5000 * 3 * PAGE_SIZE
