"""Issue 12: the default `armboard boot`, no debugging option, against the tree before the issue.

Traces, the timeline, the report (and the gdb stub) must cost nothing when they are off: the whole
default boot (rc to halt) of this tree against a temporary git worktree of the base commit, run by the
same interpreter, alternately, after one warm-up each. Target: ratio within 1.03. Then, for the record,
what a timeline costs when it is asked for (no target).

Usage: python bench/debug_off.py [--pairs N] [--base COMMIT]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, pairs, report  # noqa: E402

# `git merge-base HEAD main` when issue 12's trace work began (main's "mi_startup as named steps"). The
# default is the merge base now: after a rebase it is the tree this branch's changes apply to.
STARTED_FROM = "2fac17f0309796b7ec60507dc5fb009177d856db"
PACKAGES = ("board", "kernel_sim", "tools")
LAUNCH = "import sys; sys.path.insert(0, sys.argv.pop(1)); from tools.cli import main; sys.exit(main(sys.argv[1:]))"


def command(tree: Path, *argv: str) -> list[str]:
    """armboard from `tree`, whatever the installed copy is: the tree's packages come first on sys.path."""
    return [sys.executable, "-c", LAUNCH, str(tree), *argv]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=11)
    parser.add_argument("--base", help="the commit to compare against (default: git merge-base HEAD main; "
                                       f"issue 12 began from {STARTED_FROM[:12]})")
    args = parser.parse_args()
    if args.base is None:
        args.base = subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True,
                                   text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="armboard-base-") as tmp:
        # A cache of their own: other checkouts of this user write theirs into ~/.cache/armboard meanwhile.
        os.environ["ARMBOARD_CACHE"] = str(Path(tmp) / "cache")
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
