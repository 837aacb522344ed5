"""A boot that asks for no trace, timeline or report imports none of their modules and installs no hook:
the default boot's speed does not depend on them (bench/debug_off.py measures it)."""

from __future__ import annotations

import subprocess
import sys

RECORDING = ("board.trace", "tools.boot_observers", "tools.trace", "tools.timeline", "tools.stage_watch",
             "tools.report", "tools.report_tables", "tools.geom_graph", "tools.pictures", "tools.monitor_timeline",
             "kernel_sim.guest.stages", "kernel_sim.guest.code", "kernel_sim.guest.symbols")

PROBE = """
import sys
from kernel_sim import boot
from tools.cli import main
runs = []
real_run = boot.run
boot.run = lambda prep, machine=None: runs.append(real_run(prep, machine)) or runs[-1]
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m in {names!r} or m.split(".")[0] in ("matplotlib", "capstone"))
print(code, runs[-1].machine.events, heavy)
"""


def probe(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(names=RECORDING), *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_a_plain_boot_imports_nothing_of_traces_timelines_or_reports():
    assert probe("boot", "--console", "/dev/null") == "0 None []"


def test_a_traced_boot_does(tmp_path):
    # the probe's own control: the same check sees the modules when they are asked for
    line = probe("boot", "--no-loader-conf", "--console", "/dev/null", "--stop-at", "handover",
                 "--trace", "int", "--trace-file", str(tmp_path / "t.txt"), "--timeline", str(tmp_path / "t.json"))
    assert line.startswith("0 <board.trace.Events object") and "'tools.trace'" in line and "'capstone'" in line
