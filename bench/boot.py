"""Boot benchmarks (issues 2 and 11): armboard against qemu-system-arm on the same guest ELF.

1. Whole-process wall time to the hand-over (target ratio <= 1.5).
2. Peak RSS with 2 GiB of RAM (target: below QEMU's).
3. A 200 MiB md_image against a 2 MiB one (target wall ratio <= 1.2, RSS growth <= image size).
4. The default full boot, through /etc/rc to halt (target 0.15 s wall; QEMU's hand-over for scale).
5. `armboard plan` of the md(4) scenario against a bare `python -c pass` (target 3x or better).
6. `armboard --version` and `armboard boot --help` against `python -c pass` (target 2x or better).

Usage: python bench/boot.py [--pairs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import armboard_command, ensure_bytecode, pairs, report  # noqa: E402
from kernel_sim.guest.qemu import qemu_binary, qemu_virt_command  # noqa: E402


def configured_elf(directory: Path) -> Path:
    from kernel_sim import boot as boot_mod
    from kernel_sim.loader.load import write_configured_elf

    prep = boot_mod.prepare(boot_mod.BootRequest(abi="none", loader_conf=None))
    elf = directory / "kernel.elf"
    write_configured_elf(prep.image, prep.config, elf)
    return elf


def check_qemu_runs(elf: Path, mem_mb: int) -> None:
    """One run with the console read back: the figures must come from a QEMU that booted the guest
    to the hypercall gate and left through semihosting, not from one that failed at start-up."""
    proc = subprocess.run(qemu_virt_command(elf, mem_mb=mem_mb), capture_output=True, timeout=60)
    text = proc.stdout.decode(errors="replace")
    if proc.returncode != 0 or "initarm: hand-over" not in text:
        raise SystemExit(f"qemu-system-arm did not boot the guest (exit {proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip() or text[-200:]}")


def start_up(ab: list[str], tmpdir: Path, pairs_n: int) -> None:
    """Figures 4-6: what a user waits for on every start."""
    python = [sys.executable, "-c", "pass"]
    ours, ref = pairs([*ab, "boot", "--console", "/dev/null"], python, pairs_n)
    report("default full boot, wall (vs python -c pass)", [w for w, _ in ours], [w for w, _ in ref])
    root = tmpdir / "root-200M.img"
    with root.open("wb") as f:
        f.truncate(200 << 20)
    plan = [*ab, "plan", "--physmem", "2G", "--kernel-footprint", "9M", "--mfsroot", str(root),
            "-o", "LOCORE_MAP_MB=210", "-o", "NKPT2PG=53"]
    ours, ref = pairs(plan, python, pairs_n)
    report("plan, md(4) scenario (vs python -c pass)", [w for w, _ in ours], [w for w, _ in ref])
    ours, ref = pairs([*ab, "--version"], python, pairs_n)
    report("armboard --version (vs python -c pass)", [w for w, _ in ours], [w for w, _ in ref])
    ours, ref = pairs([*ab, "boot", "--help"], python, pairs_n)
    report("armboard boot --help (vs python -c pass)", [w for w, _ in ours], [w for w, _ in ref])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=9)
    args = parser.parse_args()
    ensure_bytecode()
    qemu = qemu_binary()
    ab = armboard_command()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        elf = configured_elf(tmpdir)
        common = ["boot", "--abi", "none", "--no-loader-conf", "--stop-at", "handover", "--console", "/dev/null"]
        if qemu is None:
            print("qemu-system-arm is not installed: the QEMU comparisons are skipped")
        else:
            for mem_mb in (128, 2048):
                check_qemu_runs(elf, mem_mb)
            ours, ref = pairs([*ab, *common, "--physmem", "128M"],
                              qemu_virt_command(elf, mem_mb=128, serial="null"), args.pairs)
            report("boot to hand-over, wall (vs qemu)", [w for w, _ in ours], [w for w, _ in ref])
            ours, ref = pairs([*ab, *common, "--physmem", "2G"],
                              qemu_virt_command(elf, mem_mb=2048, serial="null"), args.pairs)
            report("peak RSS, physmem 2G (vs qemu)", [r for _, r in ours], [r for _, r in ref], unit="B")

        big, small = tmpdir / "big.img", tmpdir / "small.img"
        for path, size in ((big, 200 << 20), (small, 2 << 20)):
            with path.open("wb") as f:       # real data, not holes: every page differs
                block = bytes(range(256)) * 4096
                for _ in range(size // len(block)):
                    f.write(block)
        fit = ["boot", "--stop-at", "handover", "--console", "/dev/null", "--physmem", "1G",
               "-o", "LOCORE_MAP_MB=256", "-o", "NKPT2PG=64"]
        ours, ref = pairs([*ab, *fit, "--mfsroot", str(big)], [*ab, *fit, "--mfsroot", str(small)], args.pairs)
        report("md_image 200 MiB vs 2 MiB, wall", [w for w, _ in ours], [w for w, _ in ref])
        growth = sorted(b[1] - s[1] for b, s in zip(ours, ref, strict=True))[len(ours) // 2]
        print(f"{'md_image 200 MiB vs 2 MiB, peak RSS growth':<44} {growth / 2**20:.1f} MiB "
              f"(image 200.0 MiB)   pairs {len(ours)}")
        start_up(ab, tmpdir, args.pairs)


if __name__ == "__main__":
    main()
