"""Root mount from a preloaded UFS image (md0), with FreeBSD's lines, fallbacks and panic."""

from __future__ import annotations

import shutil
import subprocess

import pytest

MAKEFS = shutil.which("makefs")
needs_makefs = pytest.mark.skipif(MAKEFS is None, reason="makefs is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def root_image(tmp_path_factory):
    tree = tmp_path_factory.mktemp("tree")
    (tree / "etc").mkdir()
    (tree / "etc" / "motd").write_text("Welcome to armboard\n")
    (tree / "etc" / "rc").write_text("#!/bin/sh\necho rc\n")
    image = tmp_path_factory.mktemp("img") / "root.img"
    subprocess.run([MAKEFS, "-t", "ffs", "-o", "version=2", "-s", "4m", str(image), str(tree)],
                   check=True, capture_output=True)
    return image


@needs_makefs
@pytest.mark.interop
def test_mount_from_vfs_root_mountfrom_with_a_fallback(boot, root_image, loader_conf):
    result = boot(mfsroot=root_image, loader_conf=loader_conf('vfs.root.mountfrom="ufs:md1 ufs:/dev/md0"\n'))
    text = result.console.decode().replace("\r\n", "\n")
    assert result.exit_code == 0, result.message
    assert "md0: Preloaded image <" in text
    assert "Trying to mount root from ufs:/dev/md1 [ro]...\nMounting from ufs:/dev/md1 failed with error 6." in text
    assert "Trying to mount root from ufs:/dev/md0 [ro]..." in text
    assert result.startup.vfs.read_file("/etc/motd") == b"Welcome to armboard\n"
    names = [name for name, *_ in result.startup.vfs.listdir("/etc")]
    assert {"motd", "rc"} <= set(names)


@needs_makefs
@pytest.mark.interop
def test_md_root_option_mounts_md0_and_rootdevname_overrides_it(boot, root_image, tmp_path):
    conf = tmp_path / "KERNCONF"
    conf.write_text("ident MDROOT\ndevice md\noptions MD_ROOT\n")
    result = boot(kernconf=conf, mfsroot=root_image, loader_conf=None)
    assert result.exit_code == 0 and "Trying to mount root from ufs:/dev/md0 [ro]..." in result.console.decode()
    conf.write_text('ident MDROOT\ndevice md\noptions MD_ROOT\noptions ROOTDEVNAME=\\"ufs:md7\\"\n')
    failed = boot(kernconf=conf, mfsroot=root_image, loader_conf=None)
    assert failed.exit_code == 1 and failed.stage == "mountroot"
    assert "panic: mountroot: unable to (re-)mount root." in failed.console.decode()


def test_a_device_without_ufs_is_einval_then_the_mountroot_panic(boot, sparse_image, loader_conf):
    result = boot(mfsroot=sparse_image(2 << 20), loader_conf=loader_conf('vfs.root.mountfrom="ufs:/dev/md0"\n'))
    text = result.console.decode()
    assert "Mounting from ufs:/dev/md0 failed with error 22." in text
    assert result.exit_code == 1 and result.stage == "mountroot"


def test_no_root_specification_mounts_nothing(boot):
    result = boot(loader_conf=None)
    assert result.exit_code == 0 and "no root file system configured" in result.console.decode()


@needs_makefs
@pytest.mark.interop
def test_monitor_ls_and_cat(capsys, root_image, tmp_path):
    from tools.cli import main

    conf = tmp_path / "loader.conf"
    conf.write_text('vfs.root.mountfrom="ufs:/dev/md0"\n')
    code = main(["boot", "--mfsroot", str(root_image), "--loader-conf", str(conf), "--console", "/dev/null",
                 "-x", "ls /etc", "-x", "cat /etc/motd"])
    out = capsys.readouterr().out
    assert code == 0 and "motd\n" in out and "Welcome to armboard\n" in out
