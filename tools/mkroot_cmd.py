"""`armboard mkroot`: build the default UFS root image from the tree in images/rootfs with makefs(8).

Why a command: the root image is an input users change (their /etc/rc, their files), so rebuilding
it must be one step. The host's ownership and modes do not leak in: an mtree(5) specification gives
every entry uid 0, gid 0 (root:wheel) and FreeBSD's modes (/tmp 1777, /root 0750), and `-T` pins
the time stamps, so two builds hold the same files (UFS's random fs_id still differs). Git cannot
keep empty directories, so the tree carries `.keep` files that are left out of the image.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kernel_sim.errors import InputError

IMAGES = Path(__file__).resolve().parent.parent / "images"
DEFAULT_TREE = IMAGES / "rootfs"
DEFAULT_IMAGE = IMAGES / "rootfs.img"
DEFAULT_SIZE = "8m"
DEFAULT_EPOCH = 1767225600            # 2026-01-01 00:00:00 UTC, unless SOURCE_DATE_EPOCH says otherwise
PLACEHOLDER = ".keep"
# etc/mtree/BSD.root.dist: the directories whose mode is not 0755.
SPECIAL_MODES = {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o750}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mkroot", help="build the UFS root image from a directory tree with makefs")
    p.add_argument("tree", nargs="?", type=Path, default=DEFAULT_TREE, help="the root tree (default images/rootfs)")
    p.add_argument("-o", dest="output", type=Path, default=DEFAULT_IMAGE,
                   help="the image to write (default images/rootfs.img)")
    p.add_argument("-s", dest="size", default=DEFAULT_SIZE, help=f"image size (default {DEFAULT_SIZE})")
    p.add_argument("-O", dest="version", type=int, default=2, choices=(1, 2), help="UFS version (default 2)")


def mtree_spec(tree: Path, epoch: int = DEFAULT_EPOCH) -> str:
    """An mtree(5) specification of `tree`: root-owned, FreeBSD's modes, one time stamp, `.keep` files left out."""
    lines = ["#mtree", f"/set uid=0 gid=0 time={epoch}.0", ". type=dir mode=0755"]
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(tree)
        for name in dirnames + sorted(filenames):
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            if name == PLACEHOLDER:
                continue
            entry = "./" + rel.replace(" ", "\\040")
            if path.is_symlink():
                lines.append(f"{entry} type=link mode=0755 link={os.readlink(path)}")
            elif path.is_dir():
                lines.append(f"{entry} type=dir mode={SPECIAL_MODES.get(rel, 0o755):04o}")
            elif path.is_file():
                mode = 0o755 if os.access(path, os.X_OK) else 0o644
                lines.append(f"{entry} type=file mode={mode:04o}")
            else:
                raise InputError("only files, directories and symbolic links can go into the image", str(path))
    return "\n".join(lines) + "\n"


def build_root_image(tree: Path, output: Path, size: int, version: int = 2) -> None:
    """Copy the tree without placeholders, write the spec, run makefs; the output appears whole or not at all."""
    import shutil
    import subprocess
    import tempfile

    makefs = shutil.which("makefs")
    if makefs is None:
        raise InputError("makefs is not installed (Debian package makefs)", "mkroot")
    if not tree.is_dir():
        raise InputError("no such directory", str(tree))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    with tempfile.TemporaryDirectory(prefix="armboard-mkroot-") as tmp:
        staged = Path(tmp) / "root"
        shutil.copytree(tree, staged, symlinks=True, ignore=shutil.ignore_patterns(PLACEHOLDER))
        spec = Path(tmp) / "spec"
        spec.write_text(mtree_spec(tree, epoch))
        partial = Path(tmp) / "image"
        proc = subprocess.run([makefs, "-t", "ffs", "-o", f"version={version}", "-s", str(size), "-F", str(spec),
                               "-T", str(epoch), str(partial), str(staged)], capture_output=True, text=True)
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            raise InputError(f"makefs: {detail}", str(tree))
        shutil.move(str(partial), output)


def cmd_mkroot(args: argparse.Namespace) -> int:
    from kernel_sim.loader.sizes import parse_size

    size = parse_size(args.size, where="-s")
    build_root_image(args.tree, args.output, size, args.version)
    print(f"{args.output}: UFS{args.version} image of {args.tree}, {size} bytes")
    return 0
