"""What a start loads (issue 11): the hand-over path, `plan` and `--version` import none of the
stdlib and third-party modules that cost a noticeable share of a boot, and no module of the Python
kernel or of a subsystem the boot does not use; the default full boot (through /etc/rc to halt) none
of the heavy ones it does not need. A new import on these paths fails here, by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each costs milliseconds to import (python -X importtime), or pulls in one that does.
HEAVY = ("dataclasses", "inspect", "typing", "re", "pathlib", "argparse", "enum", "json", "ast", "dis",
         "tokenize", "shutil", "tempfile", "subprocess", "hashlib", "decimal", "difflib", "tomllib", "threading",
         "datetime", "calendar", "copy", "contextlib", "urllib", "importlib.util", "unicorn", "capstone",
         "elftools", "matplotlib", "zstandard", "pycdlib", "numpy")
# What the default full boot may load of HEAVY, because it runs it: re (sh's patterns, the page
# allocator's free runs) and enum under it, typing (the Protocols of the kernel's interfaces) and
# contextlib under it, copy (sh's subshells). Everything else in HEAVY stays off, dataclasses first.
FULL_BOOT_NEEDS = ("re", "enum", "typing", "contextlib", "copy")
FULL_BOOT_HEAVY = tuple(h for h in HEAVY if h not in FULL_BOOT_NEEDS)
# Subsystems a plain boot never uses: dumps, snapshots, traces and timelines, the monitor, NBD, gdb.
FULL_BOOT_UNUSED = ("kernel_sim.kern.minidump", "kernel_sim.kern.dumpfile", "kernel_sim.kern.snapshot_state",
                    "kernel_sim.boot_snapshot", "board.snapshot", "board.trace", "tools.timeline", "tools.trace",
                    "tools.report", "tools.monitor", "tools.nbd", "tools.gdbstub")
HANDOVER = ["boot", "--abi", "none", "--no-loader-conf", "--stop-at", "handover", "--console", "/dev/null",
            "--physmem", "128M"]


def modules_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after running `armboard ARGV` (as scripts/armboard does)."""
    code = ("import sys\n"
            "from tools.cli import main\n"
            "try:\n"
            "    main(sys.argv[1:])\n"
            "except SystemExit:\n"
            "    pass\n"
            "sys.stdout.flush()\n"
            "sys.__stderr__.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert "MODULES " in proc.stderr, proc.stderr
    return set(proc.stderr.rsplit("MODULES ", 1)[1].split())


def heavy_in(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy))


@pytest.fixture(scope="module")
def warm_caches():
    """One run first: the guest build, the profile and the option table caches are made on a cold start."""
    modules_after(HANDOVER)


def test_the_hand_over_path_imports_nothing_heavy(warm_caches):
    modules = modules_after(HANDOVER)
    assert heavy_in(modules) == []
    kernel = sorted(m for m in modules if m.startswith(("kernel_sim.kern.startup", "kernel_sim.kern.diagnose",
                                                        "kernel_sim.geom", "kernel_sim.fs", "kernel_sim.dev",
                                                        "kernel_sim.userland", "board.devices.cfi",
                                                        "board.storage", "tools.monitor", "tools.nbd",
                                                        "tools.gdbstub")))
    assert kernel == []          # the Python kernel, its subsystems and the tools load after the hand-over


def test_plan_and_version_import_nothing_heavy(warm_caches):
    assert heavy_in(modules_after(["--version"])) == []
    plan = modules_after(["plan", "--physmem", "2G", "--kernel-footprint", "9M"])
    assert heavy_in(plan) == []
    assert "board.machine" not in plan and "board.ucapi" not in plan     # plan runs no CPU


def test_a_default_boot_without_flash_loads_no_flash_or_map_code(warm_caches):
    modules = modules_after(["boot", "--console", "/dev/null"])
    assert {"board.devices.cfi", "kernel_sim.dev.cfi", "kernel_sim.geom.map", "kernel_sim.geom.map_hints",
            "kernel_sim.fs.cd9660", "board.storage"} & modules == set()


def test_the_default_full_boot_imports_nothing_heavy_it_does_not_run(warm_caches):
    modules = modules_after(["boot", "--console", "/dev/null"])
    assert "kernel_sim.userland.init" in modules        # the boot went through init and /etc/rc
    assert heavy_in(modules, FULL_BOOT_HEAVY) == []
    assert heavy_in(modules, FULL_BOOT_UNUSED) == []


def test_the_check_itself_sees_a_heavy_import():
    # the guard must be able to fail: an argv that takes argparse's path imports argparse. A usage error
    # always does; `--help` does only until its text is cached, so it would pass once and fail after.
    assert "argparse" in heavy_in(modules_after(["boot", "--no-such-option"]))


