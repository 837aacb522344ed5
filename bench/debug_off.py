"""Issue 12: the default `armboard boot`, no debugging option, against the tree before the issue.

Traces, the timeline, the report (and the gdb stub) must cost nothing when they are off: the whole
default boot (rc to halt) of this tree against a temporary git worktree of the base commit, run by the
same interpreter, alternately, after one warm-up each. Target: ratio within 1.03. Then, for the record,
what a timeline costs when it is asked for (no target).

Usage: python bench/debug_off.py [--pairs N] [--base COMMIT]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, pairs, report  # noqa: E402

# `git merge-base HEAD main` when issue 12's trace work began (main's "mi_startup as named steps").
BASE = "2fac17f0309796b7ec60507dc5fb009177d856db"
PACKAGES = ("board", "kernel_sim", "tools")
LAUNCH = "import sys; sys.path.insert(0, sys.argv.pop(1)); from tools.cli import main; sys.exit(main(sys.argv[1:]))"


def command(tree: Path, *argv: str) -> list[str]:
    """armboard from `tree`, whatever the installed copy is: the tree's packages come first on sys.path."""
    return [sys.executable, "-c", LAUNCH, str(tree), *argv]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=11)
    parser.add_argument("--base", default=BASE, help="the commit to compare against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="armboard-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            for tree in (ROOT, base):        # as scripts/setup.sh does: with PYTHONDONTWRITEBYTECODE set
                subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(tree / p) for p in PACKAGES)],
                               check=True)
            ours, ref = pairs(command(ROOT, "boot"), command(base, "boot"), args.pairs)
            report("default boot, no debug options (vs base)", [w for w, _ in ours], [w for w, _ in ref])
            print(f"(base {args.base[:12]})")
            timeline = str(Path(tmp) / "timeline.json")
            ours, ref = pairs(command(ROOT, "boot", "--timeline", timeline), command(ROOT, "boot"), args.pairs)
            report("boot --timeline FILE.json (vs plain boot)", [w for w, _ in ours], [w for w, _ in ref])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
