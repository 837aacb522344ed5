"""`armboard mkroot` and the committed images it builds: images/rootfs.img, and the geom_map example's
rootfs.uzip (mkroot, then mkuzip)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kernel_sim.fs.ufs import mount_bytes
from kernel_sim.geom import uzip_format as uf
from tools.cli import main
from tools.mkroot_cmd import DEFAULT_EPOCH, DEFAULT_IMAGE, DEFAULT_TREE, PLACEHOLDER, SPECIAL_MODES

needs_makefs = pytest.mark.skipif(shutil.which("makefs") is None,
                                  reason="makefs is not installed (.ci/run installs it)")


def tree_entries(tree: Path) -> dict[str, bytes | None]:
    """Every path under the tree (files with their bytes, directories as None), placeholders left out."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        rel = Path(dirpath).relative_to(tree)
        for d in dirnames:
            out["/" + (rel / d).as_posix()] = None
        for f in filenames:
            if f != PLACEHOLDER:
                out["/" + (rel / f).as_posix()] = (Path(dirpath) / f).read_bytes()
    return out


def image_entries(image: Path | bytes) -> dict[str, bytes | None]:
    fs = mount_bytes(image if isinstance(image, bytes) else image.read_bytes())
    out: dict[str, bytes | None] = {}

    def walk(path: str) -> None:
        for name, ino, _ in fs.readdir(fs.lookup(path or "/")):
            if name in (".", ".."):
                continue
            full = f"{path}/{name}"
            st = fs.stat(ino)
            assert (st.uid, st.gid, st.mtime) == (0, 0, DEFAULT_EPOCH), full
            if st.is_dir():
                expected = SPECIAL_MODES.get(full.lstrip("/"), 0o755)
                assert st.mode & 0o7777 == expected, full
                out[full] = None
                walk(full)
            else:
                out[full] = fs.read(ino, 0, st.size)
    walk("")
    return out


def test_the_committed_root_image_holds_exactly_the_tree():
    assert image_entries(DEFAULT_IMAGE) == tree_entries(DEFAULT_TREE), \
        "images/rootfs.img is stale: rebuild it with `./armboard mkroot`"


EXAMPLE = DEFAULT_TREE.parent / "geom_map-example"
EXAMPLE_CLUSTER = 16384                 # mkuzip's default -s, as README's recipe runs it


def _example_ufs() -> bytes:
    image, read = uf.open_image(EXAMPLE / "rootfs.uzip")
    assert (image.compressor, image.blksz) == ("zlib", EXAMPLE_CLUSTER)
    return image.read(0, image.mediasize, read)


def test_the_example_rootfs_uzip_holds_exactly_its_tree():
    assert image_entries(_example_ufs()) == tree_entries(EXAMPLE / "rootfs"), \
        "images/geom_map-example/rootfs.uzip is stale: rebuild it as its README says"


def test_the_example_rootfs_uzip_is_what_mkuzip_makes_of_its_ufs_image(tmp_path, capsys):
    """makefs draws fs_id and inode generations at random, so the UFS image cannot be rebuilt byte for
    byte; the compression can: mkuzip of the image inside gives the committed bytes again."""
    ufs = tmp_path / "rootfs.ufs"
    ufs.write_bytes(_example_ufs())
    out = tmp_path / "rootfs.uzip"
    assert main(["mkuzip", "-o", str(out), str(ufs)]) == 0
    assert out.read_bytes() == (EXAMPLE / "rootfs.uzip").read_bytes()


@needs_makefs
@pytest.mark.interop
def test_the_example_recipe_rebuilds_the_same_tree(tmp_path, capsys):
    ufs, out = tmp_path / "rootfs.ufs", tmp_path / "rootfs.uzip"
    assert main(["mkroot", str(EXAMPLE / "rootfs"), "-o", str(ufs), "-s", "1m"]) == 0
    assert main(["mkuzip", "-o", str(out), str(ufs)]) == 0
    image, read = uf.open_image(out)
    assert image.mediasize == len(_example_ufs())
    assert image_entries(image.read(0, image.mediasize, read)) == tree_entries(EXAMPLE / "rootfs")


@needs_makefs
@pytest.mark.interop
def test_mkroot_rebuilds_the_image_from_a_tree(tmp_path, capsys):
    tree = tmp_path / "tree"
    shutil.copytree(DEFAULT_TREE, tree)
    (tree / "etc" / "rc.local").write_text("echo site\n")
    (tree / "lnk").symlink_to("etc/motd")
    out = tmp_path / "root.img"
    assert main(["mkroot", str(tree), "-o", str(out), "-s", "4m", "-O", "1"]) == 0
    fs = mount_bytes(out.read_bytes())
    assert fs.sb.ufs2 is False
    assert fs.read(fs.lookup("/etc/rc.local"), 0, 100) == b"echo site\n"
    assert fs.readlink(fs.lookup("/lnk", follow=False)) == "etc/motd"
    assert "UFS1 image" in capsys.readouterr().out


def test_mkroot_of_a_missing_tree_is_an_input_error(tmp_path, capsys):
    out = tmp_path / "root.img"
    code = main(["mkroot", str(tmp_path / "nope"), "-o", str(out)])
    err = capsys.readouterr().err
    if shutil.which("makefs") is None:
        assert code == 2 and "makefs is not installed" in err
    else:
        assert code == 2 and err.startswith("armboard: ") and "no such directory" in err
    assert not out.exists()
