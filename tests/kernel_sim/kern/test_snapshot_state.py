"""The kernel's object graph in a snapshot: closures, shared cells and the types the kernel uses go
through; the board is referred to by name; live frames and host resources are refused by type; the
loader names nothing outside armboard and a few standard modules."""

from __future__ import annotations

import itertools
import pickle
import types
import weakref

import pytest

from kernel_sim.kern import snapshot_state
from kernel_sim.kern.snapshot_state import KernelStateError


@pytest.fixture(autouse=True)
def _this_module_counts_as_armboard(monkeypatch):
    """The closures and classes of this test module load as the kernel's would."""
    monkeypatch.setattr(snapshot_state, "ALLOWED_MODULES", (*snapshot_state.ALLOWED_MODULES, __name__))
    monkeypatch.setattr(snapshot_state, "FUNCTION_MODULES", (*snapshot_state.FUNCTION_MODULES, __name__))


def round_trip(obj, refs=None, load_refs=None):
    refs = refs or {}
    return snapshot_state.loads(snapshot_state.dumps(obj, refs), load_refs if load_refs is not None else refs)


def make_counter():
    count = 0

    def bump() -> int:
        nonlocal count
        count += 1
        return count

    def peek() -> int:
        return count

    return bump, peek


def test_closures_keep_their_shared_cells():
    bump, peek = make_counter()
    bump()
    bump2, peek2 = round_trip((bump, peek))
    assert peek2() == 1 and bump2() == 2 and peek2() == 2       # one cell for both, as before
    assert peek() == 1                                           # the original is untouched


def test_a_recursive_closure_and_a_lambda_default():
    def outer():
        def fact(n: int, acc=lambda x: x) -> int:
            return acc(1) if n <= 1 else n * fact(n - 1)
        return fact

    fact = round_trip(outer())
    assert fact(5) == 120


class Holder:
    def __init__(self) -> None:
        self.view = types.MappingProxyType({"a": 1})
        self.ids = itertools.count(7)
        self.watchers = weakref.WeakSet()
        self.method = self.describe
        self.handler = lambda: self.view["a"]

    def describe(self) -> str:
        return f"holder {self.view['a']}"


def test_the_types_the_kernel_uses_go_through():
    h = Holder()
    next(h.ids)
    h.watchers.add(h)
    h2 = round_trip(h)
    assert h2.view == {"a": 1} and isinstance(h2.view, types.MappingProxyType)
    assert next(h2.ids) == 8
    assert h2 in h2.watchers
    assert h2.method() == "holder 1" and h2.method.__self__ is h2
    assert h2.handler() == 1


def test_board_objects_are_names_resolved_at_load():
    board_part, other = object(), object()
    data = snapshot_state.dumps({"bus": board_part, "list": [board_part]}, {"phys": board_part})
    loaded = snapshot_state.loads(data, {"phys": other})
    assert loaded["bus"] is other and loaded["list"][0] is other
    with pytest.raises(KernelStateError, match="refers to 'phys', which this board does not have"):
        snapshot_state.loads(data, {})


def test_live_frames_and_host_resources_are_refused_by_type():
    with pytest.raises(KernelStateError, match="generator"):
        snapshot_state.dumps({"g": (i for i in range(3))}, {})
    with open(__file__, "rb") as f, pytest.raises(KernelStateError, match="BufferedReader"):
        snapshot_state.dumps([f], {})
    with pytest.raises(KernelStateError, match="builtin_function_or_method"):
        snapshot_state.dumps([len], {})


def test_the_loader_names_nothing_outside_armboard():
    import os

    class Evil:
        def __reduce__(self):
            return os.system, ("true",)

    with pytest.raises(KernelStateError, match="names posix.system|names os.system"):
        snapshot_state.loads(pickle.dumps(Evil()), {})
    with pytest.raises(KernelStateError, match="builtins.eval"):
        snapshot_state.loads(pickle.dumps(eval), {})
    # A bound method is rebuilt by name, but never a dunder one (no way to __globals__ or __class__).
    with pytest.raises(KernelStateError, match="__globals__"):
        snapshot_state._bound_method(round_trip, "__globals__")
    with pytest.raises(KernelStateError, match="module"):
        snapshot_state._bound_method(os, "system")


def test_a_function_of_another_version_is_named():
    data = snapshot_state.dumps(make_counter()[0], {})
    with pytest.raises(KernelStateError, match=r"make_counter.<locals>.bumq .*another version"):
        snapshot_state.loads(data.replace(b"make_counter.<locals>.bump", b"make_counter.<locals>.bumq"), {})


def test_functions_are_rebuilt_from_armboard_code_only():
    import subprocess

    class Forged:
        def __reduce__(self):
            line = subprocess.getoutput.__code__.co_firstlineno
            return snapshot_state._new_function, ("subprocess", "getoutput", line, ())

    with pytest.raises(KernelStateError, match="a function of subprocess, outside armboard"):
        snapshot_state.loads(pickle.dumps(Forged()), {})


def test_arrays_and_allowed_builtins_go_by_name():
    import array

    data = array.array("I", [1, 2, 3])
    assert round_trip({"a": data, "t": (len is None, set)})["a"] == data


def test_a_free_lock_is_a_new_lock_and_a_held_one_is_refused():
    import threading

    lock = threading.Lock()
    again = round_trip([lock])[0]
    assert again is not lock and again.acquire(blocking=False)
    with lock, pytest.raises(KernelStateError, match="a lock that is taken"):
        snapshot_state.dumps(lock, {})


def test_objects_the_loader_would_refuse_are_refused_when_saving():
    class Watcher:
        def seen(self) -> None:
            pass

    Watcher.__module__ = "tools.timeline_like"
    with pytest.raises(KernelStateError, match="tools.timeline_like.*Watcher, a watcher of the boot"):
        snapshot_state.dumps({"handlers": [Watcher().seen]}, {})
    import fractions

    with pytest.raises(KernelStateError, match="fractions.Fraction, which is not armboard's"):
        snapshot_state.dumps([fractions.Fraction(1, 3)], {})
