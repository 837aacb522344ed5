"""The boot timeline: stage order and instruction counts are deterministic and exact, the Python kernel's
steps, KVA consumers and init's processes are there, and the outputs and the monitor command work."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from board.trace import Events
from kernel_sim import boot as boot_mod
from kernel_sim.guest.stages import GUEST_STAGE_NAMES
from kernel_sim.kern.startup import STAGE_NAMES
from tools.cli import main
from tools.timeline import Recorder


def record(**request) -> tuple[object, object, int]:
    """(BootResult, Timeline, instructions counted one by one by a code hook in the same run)."""
    prep = boot_mod.prepare(boot_mod.BootRequest(console=None, **request))
    machine = boot_mod.build_machine(prep)
    one_by_one = [0]

    def count(_address: int, _size: int) -> None:
        one_by_one[0] += 1

    Events.of(machine).subscribe("insn", count)
    recorder = Recorder(machine, prep.image)
    prep.request.on_stage = recorder.watch.on_stage
    result = boot_mod.run(prep, machine)
    return result, recorder.finish(result), one_by_one[0]


def shape(timeline) -> list[tuple[str, str, int, str | None]]:
    return [(r.name, r.kind, r.instructions, r.parent) for r in timeline.rows]


def test_stages_in_boot_order_with_exact_counts():
    result, timeline, one_by_one = record()
    assert result.exit_code == 0
    stages = [r.name for r in timeline.stages()]
    assert stages == [*GUEST_STAGE_NAMES, *STAGE_NAMES]
    counts = {r.name: r.instructions for r in timeline.stages()}
    assert timeline.instructions == one_by_one == sum(counts.values())
    assert counts["reset"] == 0x50 // 4                         # _start up to build_pagetables
    # build_pagetables: 2 set-up instructions, 5 per identity section, 5 before the window, 7 per window
    # MiB (cmp, bhs, orr, str, add, add, b), and the final cmp and bhs
    assert counts["locore"] == 2 + 5 * 4096 + 5 + 7 * 64 + 2
    assert all(counts[name] == 0 for name in STAGE_NAMES)       # the Python kernel runs no guest code
    assert all(r.wall is not None and r.wall >= 0 for r in timeline.stages())


def test_the_window_size_shows_in_locores_count():
    _result, timeline, _ = record(overrides=["LOCORE_MAP_MB=128"], stop_at="handover")
    locore = next(r for r in timeline.stages() if r.name == "locore")
    assert locore.instructions == 2 + 5 * 4096 + 5 + 7 * 128 + 2


def test_order_and_counts_are_the_same_every_run(tmp_path, capsys):
    _r1, first, _ = record()
    _r2, second, _ = record()
    assert shape(first) == shape(second)
    path = tmp_path / "t.json"
    assert main(["boot", "--console", str(tmp_path / "c.txt"), "--timeline", str(path)]) == 0
    capsys.readouterr()
    third = json.loads(path.read_text())
    assert [(r["name"], r["kind"], r["instructions"], r["parent"]) for r in third["stages"]] == shape(first)


def test_an_exception_cut_block_counts_what_ran(loader_conf):
    conf = loader_conf('debug.wild_access="0x20000000"\n')
    result, timeline, one_by_one = record(loader_conf=conf)
    assert result.exit_code == 1 and result.machine.faults
    assert timeline.instructions == one_by_one
    assert [r.name for r in timeline.stages()][-1] == "handover"
    assert timeline.outcome["stage"] == "initarm" and timeline.outcome["exit_code"] == 1


def test_a_stop_point_ends_the_count_before_its_instruction():
    _result, full, _ = record(stop_at="handover")
    result, stopped, _ = record(stop_at="parse_metadata")
    assert result.status == "stopped"
    upto = {r.name: r.instructions for r in full.stages()}
    counts = {r.name: r.instructions for r in stopped.stages()}
    assert list(counts) == ["reset", "locore", "mmu_on", "initarm"]
    assert [counts[n] for n in ("reset", "locore", "mmu_on")] == [upto[n] for n in ("reset", "locore", "mmu_on")]
    assert 0 < counts["initarm"] < upto["initarm"]
    _result, at_stage, _ = record(stop_at="pmap_bootstrap")   # a stop point on a stage's first instruction
    assert at_stage.instructions == sum(upto[n] for n in ("reset", "locore", "mmu_on", "initarm"))


def test_kva_consumers_and_processes_sit_under_their_stage():
    result, timeline, _ = record()
    kva = [r for r in timeline.rows if r.kind == "kva"]
    assert [r.name for r in kva] == [r.consumer for r in result.startup.kva.rows]
    assert all(r.parent == "kmeminit" for r in kva)
    names = [r.name for r in timeline.rows]
    assert names.index("kmeminit") < names.index(kva[0].name) < names.index("msgbuf")
    procs = {r.name: r for r in timeline.rows if r.kind == "process"}
    assert procs["sh (pid 2)"].parent == "init"                  # runcom's shell for /etc/rc
    assert procs["mount (pid 3)"].parent == "sh (pid 2)"          # rc's first command
    assert all(r.wall is not None for r in procs.values())
    assert result.startup.procs.eventhandlers == {"process_fork": [], "process_exit": []}   # removed again


def test_virtual_time_from_the_kernels_clock():
    _result, timeline, _ = record(command="sleep 2")
    sleep = next(r for r in timeline.rows if r.name.startswith("sleep (pid"))
    assert sleep.virtual == pytest.approx(2.0)
    init = next(r for r in timeline.stages() if r.name == "init")
    assert init.virtual >= 2.0
    assert all(r.virtual is None for r in timeline.stages() if r.kind == "guest")   # no clock there: not invented


def test_svg_png_and_the_monitor_command(tmp_path, capsys):
    svg = tmp_path / "t.svg"
    assert main(["boot", "--no-loader-conf", "--console", str(tmp_path / "c.txt"), "--timeline", str(svg),
                 "-x", "timeline", "-x", f"timeline {tmp_path / 't.png'}"]) == 0
    out = capsys.readouterr().out
    assert ET.fromstring(svg.read_bytes()).tag.endswith("svg") and "pmap_bootstrap" in svg.read_text()
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    lines = out.splitlines()
    assert lines[0].split() == ["stage", "instructions", "wall", "ms", "virtual", "s", "detail"]
    assert any(line.startswith("pmap_bootstrap ") for line in lines) and lines[-2].startswith("total ")


def test_the_monitor_says_when_no_timeline_was_recorded(tmp_path, capsys):
    from tools.monitor import Monitor
    from tools.monitor_errors import CommandRefused
    from tools.monitor_timeline import add_timeline_commands

    result = boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(console=None, loader_conf=None, stop_at="handover")))
    monitor = Monitor(result.machine)
    add_timeline_commands(monitor, None)
    with pytest.raises(CommandRefused, match="no timeline was recorded for this boot; boot with --timeline"):
        monitor.run("timeline")
