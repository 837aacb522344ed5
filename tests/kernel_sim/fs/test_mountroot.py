"""Root mount from a preloaded UFS image (md0), with FreeBSD's lines, fallbacks, mountroot> prompt and panic."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kernel_sim.boot import IMAGES
from kernel_sim.kern.mountroot import disk_names, mountroot, mountroot_options, root_candidates

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


# ------------------------------------------------------------------ no root specification: the prompt
ROOTFS = Path(IMAGES, "rootfs.img")                   # the committed default root (UFS2, with /etc/rc)


def console(result) -> str:
    return result.console.decode("utf-8", "replace").replace("\r\n", "\n")


def typed(*lines: str):
    """Console input as the boot reads it: one line per call, "" once the input ends."""
    it = iter(lines)
    return lambda: next(it, "")


def test_a_root_image_without_a_specification_and_without_console_panics_naming_vfs_root_mountfrom(
        boot, loader_conf):
    result = boot(mfsroot=ROOTFS, loader_conf=loader_conf('kern.hz="100"\n'))
    text = console(result)
    assert result.exit_code == 1 and result.status == "failed" and result.stage == "mountroot"
    assert "panic: mountroot: unable to (re-)mount root.\n" in text
    assert "start_init" not in text and "no root file system configured" not in text   # init never starts
    assert "mountroot>" not in text                      # no one could answer the prompt
    d = result.diagnosis
    assert d.option == "vfs.root.mountfrom" and d.suggested == "ufs:/dev/md0"
    assert "vfs.root.mountfrom is not in the kernel environment" in d.text
    assert 'md0 holds a UFS file system: set vfs.root.mountfrom="ufs:/dev/md0" in loader.conf' in d.text
    assert "--shell" in d.text


def test_the_cli_exits_1_with_the_diagnosis_on_stderr(capsys, tmp_path):
    from tools.cli import main

    conf = tmp_path / "loader.conf"
    conf.write_text('kern.hz="100"\n')
    code = main(["boot", "--mfsroot", str(ROOTFS), "--loader-conf", str(conf), "--console", "/dev/null"])
    err = capsys.readouterr().err
    assert code == 1 and 'vfs.root.mountfrom="ufs:/dev/md0"' in err


def test_the_prompt_lists_the_disks_and_a_typed_specification_mounts_and_rc_runs(boot):
    result = boot(mfsroot=ROOTFS, read_line=typed("?\n", "ufs:/dev/md0\n"))
    text = console(result)
    assert result.exit_code == 0, result.message
    assert ("\nLoader variables:\n\nManual root filesystem specification:\n  <fstype>:<device> [options]\n"
            in text)
    assert "  ?               List valid disk boot devices\n" in text
    assert "  <empty line>    Abort manual input\n\nmountroot> " in text
    assert "mountroot> \nList of GEOM managed disk devices:\n  md0\n\nmountroot> " in text
    assert "mountroot> Trying to mount root from ufs:/dev/md0 [ro]...\nstart_init: trying /sbin/init" in text
    assert result.startup.init.rc == 0 and "/tmp/hello is there" in text      # /etc/rc ran to its end
    assert result.startup.root_asked and result.startup.root_specs == []


def test_a_wrong_specification_returns_to_the_prompt_then_a_right_one_mounts(boot):
    result = boot(mfsroot=ROOTFS, read_line=typed("ufs:/dev/md7\n", "md0\n", "ext2fs:/dev/md0\n", ".\n",
                                                  "cd9660:/dev/md0 ro\n", "ufs:md0 rw\n"))
    text = console(result)
    assert result.exit_code == 0, result.message
    assert "Trying to mount root from ufs:/dev/md7 [ro]...\nMounting from ufs:/dev/md7 failed with error 6.\n" in text
    assert "mountroot> Invalid file system specification.\n" in text
    assert "Mounting from ext2fs:/dev/md0 failed with error 2: unknown file system.\n" in text
    assert "Mounting from cd9660:/dev/md0 failed with error 22.\n" in text          # UFS is no ISO 9660
    assert "Trying to mount root from ufs:/dev/md0 [rw]...\nstart_init" in text     # rw dropped: still ro
    assert text.count("\nmountroot> ") == 6
    assert result.startup.kernel.vfs.mounts["/"].readonly


def test_the_console_lines_after_the_root_go_to_the_shell(boot):
    result = boot(mfsroot=ROOTFS, shell=True, read_line=typed("ufs:/dev/md0\n", "echo typed-at-the-shell\n"))
    assert result.exit_code == 0, result.message
    assert "typed-at-the-shell\n" in console(result)


def test_an_empty_line_aborts_the_prompt_into_the_panic(boot):
    result = boot(mfsroot=ROOTFS, read_line=typed("\n", "ufs:/dev/md0\n"))
    text = console(result)
    assert result.exit_code == 1 and result.stage == "mountroot"
    assert "mountroot> panic: mountroot: unable to (re-)mount root." in text
    assert "Trying to mount root" not in text
    assert "left with an empty line" in result.message and result.diagnosis.suggested == "ufs:/dev/md0"


def test_a_failed_vfs_root_mountfrom_asks_on_the_console_and_the_diagnosis_names_the_disk_that_fits(
        boot, loader_conf, sparse_image):
    conf = loader_conf('vfs.root.mountfrom="ufs:/dev/md1"\nvfs.root.mountfrom.options="rw"\n')
    asked = boot(mfsroot=ROOTFS, loader_conf=conf, read_line=typed("ufs:/dev/md0\n"))
    text = console(asked)
    assert asked.exit_code == 0, asked.message
    assert ("Mounting from ufs:/dev/md1 failed with error 6.\n\nLoader variables:\n"
            "  vfs.root.mountfrom=ufs:/dev/md1\n  vfs.root.mountfrom.options=rw\n\n" in text)
    failed = boot(mfsroot=ROOTFS, loader_conf=conf)                  # no console: the panic at once
    assert failed.exit_code == 1 and "mountroot>" not in console(failed)
    assert failed.diagnosis.suggested == "ufs:/dev/md0" and "from ufs:/dev/md1;" in failed.message
    blank = boot(mfsroot=sparse_image(4 << 20), loader_conf=loader_conf('vfs.root.mountfrom="ufs:/dev/md0"\n'))
    assert blank.exit_code == 1 and blank.diagnosis.suggested is None   # nothing on any disk would mount


def test_with_nothing_to_mount_and_nothing_specified_the_kernel_only_boot_halts(boot, sparse_image):
    result = boot(mfsroot=sparse_image(4 << 20))
    text = console(result)
    assert result.exit_code == 0 and result.startup.root_candidates == []
    assert "Trying to mount root" not in text and "mountroot>" not in text
    assert "no root file system configured (vfs.root.mountfrom, ROOTDEVNAME or MD_ROOT) and none on any disk" in text


# ------------------------------------------------------------------ the pieces, over md units
def kernel_over(*images: bytes):
    from kernel_sim.dev.md import MdDriver
    from kernel_sim.geom.core import Mesh
    from kernel_sim.kern.syscalls import make_kernel

    mesh = Mesh()
    mesh.md = MdDriver(mesh, sector_alloc=lambda _n, _z: object(), sector_free=lambda _h: None)
    for image in images:
        mesh.md.preload(len(image) // 512 * 512, image=bytearray(image))
    return make_kernel(mesh)


def test_root_candidates_taste_ufs_and_iso9660_and_skip_blank_disks():
    pycdlib = pytest.importorskip("pycdlib")
    import io

    iso = pycdlib.PyCdlib()
    iso.new()
    iso.add_fp(io.BytesIO(b"x\n"), 2, "/X.;1")
    out = io.BytesIO()
    iso.write_fp(out)
    k = kernel_over(bytes(1 << 20), ROOTFS.read_bytes(), out.getvalue())
    assert root_candidates(k.vfs) == ["ufs:/dev/md1", "cd9660:/dev/md2"]
    assert disk_names(k.vfs.mesh) == ["md2", "md1", "md0"]                   # g_dev_print: newest first
    assert all(k.vfs.mesh.provider(n).acr == 0 for n in ("md0", "md1", "md2"))   # tasting let go


def test_the_prompt_keeps_79_characters_of_a_line_and_ends_at_the_end_of_input():
    k = kernel_over(ROOTFS.read_bytes())
    lines: list[str] = []
    spec = "ufs:/dev/" + "x" * 100
    assert mountroot(k.vfs, [], lines.append, ask=typed(spec + "\n")) is None
    text = "".join(lines)
    assert f"Trying to mount root from {spec[:79]} [ro]...\n" in text           # cngets: char name[80]
    assert text.endswith("\nmountroot> \n")                                   # input ended: no root
    assert "/" not in k.vfs.mounts


def test_mountroot_options_drop_rw_and_stop_at_an_empty_item():
    assert mountroot_options("rw,noatime,,nosuid") == {"noatime": ""}
    assert mountroot_options("noro,errmsg=x") == {"errmsg": "x"}
    assert mountroot_options(None) == {}
