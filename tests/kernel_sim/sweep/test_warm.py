"""Warm boots: points forked from one board at the hand-over give the rows of boots from reset."""

from __future__ import annotations

import os

import pytest

from kernel_sim import boot as boot_mod
from kernel_sim.sweep import DETERMINISTIC, Dimension, SweepSpec, grid_points, request_for
from kernel_sim.sweep.runner import PointRunner
from kernel_sim.sweep.store import csv_text
from kernel_sim.sweep.warm import handover_key


def _rows(spec: SweepSpec, points) -> tuple[dict[int, dict], int]:
    runner = PointRunner(spec)
    try:
        items = list(runner.run(points))
        boards = len(runner.servers)
    finally:
        runner.close()
    assert all(kind == "row" for _, kind, _ in items), items
    return {i: csv_text(row) for i, _, row in items}, boards


def test_a_warm_sweep_gives_the_rows_of_a_cold_one_over_50_points():
    """50 points: two RAM sizes, five kmem scales (which share the guest boot) and five process loads
    (tunables: they reach the guest's environment, so they do not). Every column but wall time agrees,
    the console digest included, and the warm run did share boards."""
    dims = [Dimension("VM_KMEM_SIZE_SCALE", ("1", "2", "3", "4", "5")),
            Dimension("debug.init_procs", ("0", "10", "40", "80", "120"))]
    points = grid_points(("128M", "256M"), dims)
    assert len(points) == 50
    request = boot_mod.BootRequest(kernel_footprint="9M")
    # Points sorted as the executors get them: by what their guest boot reads.
    ordered = sorted(points, key=lambda p: (p.physmem, dict(p.settings)["debug.init_procs"], p.index))
    warm, boards = _rows(SweepSpec.from_request(request, warm=True), ordered)
    cold, none = _rows(SweepSpec.from_request(request, warm=False), ordered)
    assert boards > 0 and none == 0
    assert sorted(warm) == list(range(50))
    for index in range(50):
        assert {c: warm[index][c] for c in DETERMINISTIC} == {c: cold[index][c] for c in DETERMINISTIC}, index
    outcomes = {warm[i]["outcome"] for i in warm}
    assert "halted" in outcomes                          # /etc/rc ran to its end on the booting points


def test_the_handover_key_follows_what_the_guest_boot_reads():
    base = SweepSpec.from_request(boot_mod.BootRequest(kernel_footprint="9M")).base_dict()
    points = grid_points(("256M", "512M"), [Dimension("VM_KMEM_SIZE_SCALE", ("3", "5")),
                                            Dimension("NKPT2PG", ("32", "33")),
                                            Dimension("vm.kmem_size", ("300M", "301M"))])
    keys = {p.index: handover_key(boot_mod.prepare(request_for(base, p))) for p in points}

    def differ(name: str) -> bool:
        a = next(p for p in points if dict(p.settings)[name] == dim_values[name][0])
        b = next(p for p in points if dict(p.settings)[name] == dim_values[name][1]
                 and all(v == w for (n, v), (_, w) in zip(p.settings, a.settings, strict=True) if n != name)
                 and p.physmem == a.physmem)
        return keys[a.index] != keys[b.index]

    dim_values = {"VM_KMEM_SIZE_SCALE": ("3", "5"), "NKPT2PG": ("32", "33"), "vm.kmem_size": ("300M", "301M")}
    assert not differ("VM_KMEM_SIZE_SCALE")     # read by kmeminit, after the hand-over
    assert differ("NKPT2PG")                     # pmap_bootstrap, in the guest
    assert differ("vm.kmem_size")                # a tunable: its bytes are in the environment the guest walks
    assert keys[0] != keys[len(points) // 2]     # RAM size


def test_a_point_past_its_time_limit_is_a_timeout_row_and_a_crash_is_a_failure(monkeypatch):
    points = grid_points(("256M",), [Dimension("VM_KMEM_SIZE_SCALE", ("3", "4", "5"))])
    finish = boot_mod.finish

    def misbehave(result, prep=None):
        scale = dict(prep.kernconf.options).get("VM_KMEM_SIZE_SCALE")
        if scale == 4:
            os.kill(os.getpid(), 11)             # the boot process crashes (SIGSEGV)
        if scale == 5:
            import time

            time.sleep(30)                       # the boot hangs past --timeout
        return finish(result, prep)

    monkeypatch.setattr(boot_mod, "finish", misbehave)
    runner = PointRunner(SweepSpec.from_request(boot_mod.BootRequest(kernel_footprint="9M", loader_conf=None),
                                                timeout=1.0))
    try:
        items = {i: (kind, value) for i, kind, value in runner.run(points)}
    finally:
        runner.close()
    assert items[0][0] == "row" and items[0][1]["outcome"] == "halted"
    assert items[1] == ("failed", "the boot process died of signal 11 (SIGSEGV)")
    assert items[2][0] == "row"
    assert (items[2][1]["outcome"], items[2][1]["exit_code"]) == ("timeout", 3)
    assert "per-point time limit of 1 s" in items[2][1]["message"]


def test_flash_writes_of_a_sweep_point_never_reach_the_image_file(tmp_path):
    """build_machine(private_flash=True): programs work in the board, the file keeps its bytes."""
    from board.profile import load_profile

    bank = load_profile("virt").flash[0]
    image = tmp_path / "flash0.img"
    image.write_bytes(b"\xff" * bank.size)
    prep = boot_mod.prepare(boot_mod.BootRequest(loader_conf=None, flash=[(bank.name, image)]))
    machine = boot_mod.build_machine(prep, private_flash=True)
    device = machine.flash[bank.name].device
    device.write(0, 2, 0x40)                     # word program (Intel 0x40), then the data
    device.write(0, 2, 0x1234)
    device.write(0, 2, 0xFF)                     # back to read-array
    assert device.read(0, 2) == 0x1234
    assert image.read_bytes()[:2] == b"\xff\xff"


@pytest.mark.parametrize("warm", [True, False])
def test_an_input_error_of_one_point_is_its_row(warm):
    points = grid_points((None,), [Dimension("vm.kmem_size", ("300M", "lots"))])
    runner = PointRunner(SweepSpec.from_request(boot_mod.BootRequest(loader_conf=None), warm=warm))
    try:
        items = {i: value for i, _, value in runner.run(points)}
    finally:
        runner.close()
    assert items[1]["exit_code"] == 2 and items[1]["outcome"] == "input error"
