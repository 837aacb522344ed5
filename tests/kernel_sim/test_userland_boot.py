"""Whole boots into the userland: the default root runs /etc/rc; makefs images read back through the
guest's own commands; rc failures and -c commands decide the exit status."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel_sim.boot import DEFAULT_LOADER_CONF
from kernel_sim.kern.sysapi import O_RDONLY

MAKEFS = shutil.which("makefs")
needs_makefs = pytest.mark.skipif(MAKEFS is None, reason="makefs is not installed (.ci/run installs it)")
BIG = 5 * 1024 * 1024 + 333          # past the double-indirect threshold of both versions with 4 KiB blocks
RC = "mount -t tmpfs -o size=32m tmpfs /tmp\necho rc done\n"


def console(result) -> str:
    return result.console.decode("utf-8", "replace").replace("\r\n", "\n")


def guest_read(result, path: str) -> bytes:
    """A file as the booted kernel's VFS gives it (what the guest's commands wrote)."""
    vfs = result.startup.kernel.vfs
    of = vfs.open(path, O_RDONLY)
    try:
        return vfs.read(of, 1 << 30, 0)
    finally:
        vfs.close(of)


def test_the_default_boot_runs_rc_to_the_end_and_exits_0(boot):
    result = boot(loader_conf=DEFAULT_LOADER_CONF)
    text = console(result)
    assert result.exit_code == 0 and result.status == "halted", result.message
    assert result.startup.init.rc == 0
    assert "Trying to mount root from ufs:/dev/md0 [ro]..." in text
    assert "/tmp/hello is there" in text and "rc.local: site additions" in text
    assert "md9\tmalloc\t 4096K" in text                 # rc's mdconfig -l -v, before it detaches md9
    assert text.rstrip().endswith("sysctl vm.kmem_size, geom list, ls -l /dev.\nThe operating system has halted.")
    mounts = {m.path: m.fstype for m in result.startup.kernel.vfs.mount_list}
    assert mounts == {"/": "ufs", "/dev": "devfs", "/tmp": "tmpfs"}
    assert 9 not in result.startup.geom.md.units          # rc detached its md


def test_a_command_runs_after_rc_and_its_status_is_the_exit_status(boot):
    ok = boot(loader_conf=DEFAULT_LOADER_CONF, command="echo from-the-command; sysctl -n kern.ostype")
    assert ok.exit_code == 0 and "from-the-command\nFreeBSD\n" in console(ok)
    failed = boot(loader_conf=DEFAULT_LOADER_CONF, command="cat /nope")
    assert failed.exit_code == 1 and failed.stage == "command"
    assert "cat: /nope: No such file or directory" in console(failed)


def test_halt_from_the_command_stops_the_board_at_once(boot):
    result = boot(loader_conf=DEFAULT_LOADER_CONF, command="halt; echo never")
    text = console(result)
    assert result.exit_code == 0 and "never" not in text
    assert text.rstrip().endswith("The operating system has halted.")


def test_single_user_boot_reads_the_console(boot, loader_conf):
    lines = iter(["\n", "echo single; exit 0\n"])
    result = boot(loader_conf=loader_conf(Path(DEFAULT_LOADER_CONF).read_text().replace(
        'mfsroot_name="rootfs.img"', f'mfsroot_name="{Path(DEFAULT_LOADER_CONF).parent / "rootfs.img"}"')
        + 'boot_single="YES"\n'), read_line=lambda: next(lines, ""))
    text = console(result)
    assert "Enter full pathname of shell or RETURN for /bin/sh: " in text
    assert "single" in text and "Mounting tmpfs" not in text         # single user: no rc
    assert result.exit_code == 0


def _tree(root: Path, rc: str) -> dict[str, bytes]:
    rng = random.Random(5)
    files = {f"/many/f{i:03d}": rng.randbytes(rng.randrange(0, 5000)) for i in range(120)}
    files["/big"] = rng.randbytes(BIG)
    deep = "/" + "/".join(f"d{i}" for i in range(10))
    files[deep + "/bottom"] = b"at the bottom\n"
    files["/etc/rc"] = rc.encode()
    for path, data in files.items():
        (root / path[1:]).parent.mkdir(parents=True, exist_ok=True)
        (root / path[1:]).write_bytes(data)
    (root / "tmp").mkdir()
    (root / "dev").mkdir()
    os.symlink("many/f007", root / "short")
    os.symlink("./" * 80 + "many/f009", root / "long")       # longer than the inode's inline space
    os.symlink(deep + "/bottom", root / "deeplink")
    return files


@needs_makefs
@pytest.mark.interop
@pytest.mark.parametrize("version", [1, 2])
def test_makefs_images_read_back_byte_identical_through_the_guests_commands(boot, tmp_path, version):
    root = tmp_path / "tree"
    files = _tree(root, RC)
    image = tmp_path / "root.img"
    subprocess.run([MAKEFS, "-t", "ffs", "-o", f"version={version},bsize=4096,fsize=512", "-s", "12m",
                    str(image), str(root)], check=True, capture_output=True)
    command = ("cat /big > /tmp/big && cat /long > /tmp/long && cat /deeplink && cat /short > /tmp/short && "
               "sha256 /big /many/f100")
    result = boot(mfsroot=image, physmem="256M", command=command, loader_conf=None,
                  tunables=[("vfs.root.mountfrom", "ufs:/dev/md0")])
    text = console(result)
    assert result.exit_code == 0, result.message + text[-2000:]
    assert guest_read(result, "/tmp/big") == files["/big"]
    assert guest_read(result, "/tmp/long") == files["/many/f009"]
    assert guest_read(result, "/tmp/short") == files["/many/f007"]
    assert "at the bottom\n" in text
    assert f"SHA256 (/big) = {hashlib.sha256(files['/big']).hexdigest()}" in text
    assert f"SHA256 (/many/f100) = {hashlib.sha256(files['/many/f100']).hexdigest()}" in text
    for path, data in files.items():                        # and every file through the VFS itself
        assert guest_read(result, path) == data, path


@needs_makefs
@pytest.mark.interop
def test_an_rc_error_stops_rc_with_its_line_and_fails_the_boot(boot, tmp_path):
    root = tmp_path / "tree"
    _tree(root, "set -e\necho one\ncat /missing\necho two\n")
    image = tmp_path / "root.img"
    subprocess.run([MAKEFS, "-t", "ffs", "-s", "12m", str(image), str(root)], check=True, capture_output=True)
    result = boot(mfsroot=image, loader_conf=None, tunables=[("vfs.root.mountfrom", "ufs:/dev/md0")])
    text = console(result)
    assert "one\ncat: /missing: No such file or directory\n" in text and "two" not in text
    assert "init: /etc/rc exited with status 1 at line 3" in text
    assert result.exit_code == 1 and result.stage == "rc" and "line 3" in result.message


@needs_makefs
@pytest.mark.interop
@pytest.mark.parametrize("swap", ["256m", "256m:zstd", None])
def test_tmpfs_beyond_free_ram_pages_out_to_swap_or_fails_with_enospc(boot, tmp_path, swap):
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "mnt").mkdir()
    data = random.Random(7).randbytes(8 << 20)
    (root / "r").write_bytes(data)
    (root / "etc" / "rc").write_text("mount -t tmpfs tmpfs /mnt\n")
    image = tmp_path / "root.img"
    subprocess.run([MAKEFS, "-t", "ffs", "-s", "12m", str(image), str(root)], check=True, capture_output=True)
    copies = 8                                       # 64 MiB of file data on a 48 MiB board
    command = " && ".join(f"cp /r /mnt/r{i}" for i in range(copies)) + " && sha256 " + \
        " ".join(f"/mnt/r{i}" for i in range(copies))
    result = boot(mfsroot=image, physmem="48M", swap=swap, command=command, loader_conf=None,
                  tunables=[("vfs.root.mountfrom", "ufs:/dev/md0")])
    text = console(result)
    digest = hashlib.sha256(data).hexdigest()
    if swap is None:
        assert "No space left on device" in text and result.exit_code == 1
        assert result.startup.vm.pager.v_swappgsout == 0
    else:
        assert result.exit_code == 0, text[-1500:]
        assert text.count(f") = {digest}") == copies
        assert result.startup.vm.pager.v_swappgsout > 0
        assert guest_read(result, "/mnt/r0") == data


def test_a_live_dump_of_the_default_boot_holds_the_kernels_messages_not_userlands(boot, tmp_path):
    from kernel_sim.kern.dumpfile import open_dump

    result = boot(loader_conf=DEFAULT_LOADER_CONF, command="memctl dump -z zstd /tmp/live.dump")
    assert result.exit_code == 0, console(result)[-800:]
    path = tmp_path / "live.dump"
    path.write_bytes(guest_read(result, "/tmp/live.dump"))     # the dump the guest wrote into tmpfs
    dump = open_dump(path)
    messages = dump.msgbuf_contents()
    text = console(result)
    assert messages.startswith("locore: boot_pt1 at 0x40004000")
    assert "Trying to mount root from ufs:/dev/md0 [ro]...\n" in messages
    assert "Mounting tmpfs on /tmp" in text and "Mounting tmpfs on /tmp" not in messages   # rc's echo
    kernel_lines = [line for line in text.splitlines() if line in messages.splitlines()]
    assert kernel_lines == messages.splitlines()[:len(kernel_lines)]                       # same order
    md0 = result.prepared.layout.modules[0]
    assert dump.read_va(md0.va, 4096) == result.machine.phys.read(md0.pa, 4096)            # md0's first page


def test_dev_mem_and_dev_kmem_read_md0_in_the_guest(boot):
    from kernel_sim.boot import DEFAULT_LOADER_CONF as conf

    probe = boot(loader_conf=conf, stop_at="handover")
    md0 = probe.prepared.layout.modules[0]
    page = 4096
    command = (f"dd if=/dev/mem of=/tmp/p bs={page} count=2 skip={md0.pa // page} && "
               f"dd if=/dev/kmem of=/tmp/v bs={page} count=2 skip={md0.va // page} && "
               f"dd if=/dev/mem of=/tmp/bad bs={page} count=1 skip={0x10000000 // page}")
    result = boot(loader_conf=conf, command=command)
    image = (Path(DEFAULT_LOADER_CONF).parent / "rootfs.img").read_bytes()[:2 * page]
    assert guest_read(result, "/tmp/p") == image and guest_read(result, "/tmp/v") == image
    assert "dd: /dev/mem: Invalid argument" in console(result) and result.exit_code == 1


@needs_makefs
@pytest.mark.interop
def test_a_damaged_ufs_file_gives_eintegrity_and_a_console_line_and_the_kernel_stays_up(boot, tmp_path):
    import struct

    from kernel_sim.fs.ufs import mount_bytes

    root = tmp_path / "tree"
    _tree(root, RC)
    image = tmp_path / "root.img"
    subprocess.run([MAKEFS, "-t", "ffs", "-o", "version=2", "-s", "12m", str(image), str(root)],
                   check=True, capture_output=True)
    raw = bytearray(image.read_bytes())
    fs = mount_bytes(bytes(raw))
    ino = fs.lookup("/big")
    struct.pack_into("<q", raw, fs.inode_offset(ino) + 112 + 8, 1 << 40)   # ufs2 di_db[1]: past the media
    image.write_bytes(raw)
    result = boot(mfsroot=image, loader_conf=None, tunables=[("vfs.root.mountfrom", "ufs:/dev/md0")],
                  command="cat /big > /tmp/big; echo still-up; cat /short > /tmp/s && echo short-ok")
    text = console(result)
    assert "cat: /big: Integrity check failed" in text
    assert "UFS /dev/md0 (/):" in text and "past fs_size" in text          # the kernel's console line
    assert "still-up\nshort-ok" in text and result.exit_code == 0


def test_a_uzip_image_with_a_damaged_offsets_table_is_eio_and_one_line_and_the_boot_goes_on(boot, tmp_path):
    """The bad-input campaign's image: `armboard mkuzip images/rootfs.img` with bytes 136-143 (the first
    offsets-table entry) set to 0x7f, preloaded with --md-image on a kernel with geom_uncompress, read
    by the guest's dd. It used to end in a GeomError traceback out of the taste of md1.uncompress."""
    from kernel_sim.boot import DEFAULT_KERNCONF, IMAGES
    from kernel_sim.geom.uzip_format import write_image

    image = tmp_path / "rootfs.img.uzip"
    write_image(Path(IMAGES, "rootfs.img"), image)
    raw = bytearray(image.read_bytes())
    raw[136:144] = b"\x7f" * 8
    image.write_bytes(raw)
    kernconf = tmp_path / "KERN"
    kernconf.write_text(f'include "{DEFAULT_KERNCONF}"\ndevice geom_uncompress\n')
    result = boot(kernconf=kernconf, loader_conf=DEFAULT_LOADER_CONF, md_images=[image],
                  command="dd if=/dev/md1.uncompress of=/dev/null bs=64k; echo dd said $?")
    text = console(result)
    assert "md1.uncompress: GEOM_UZIP image found" in text
    assert text.count("md1.uncompress: cluster #0:") == 1
    assert (f"md1.uncompress: cluster #0: offsets table entry 0 at byte 136 says its compressed data starts at "
            f"{0x7f7f7f7f7f7f7f7f}, past the media ({len(raw)} bytes): error 5\n"
            "dd: /dev/md1.uncompress: Input/output error\n") in text
    assert "dd said 1\n" in text and result.status == "halted" and result.exit_code == 0


def test_a_host_iso_attached_with_md_vnode_mounts_as_cd9660_and_stays_unchanged(boot, tmp_path):
    import io

    pycdlib = pytest.importorskip("pycdlib")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")
    text = b"from the host's ISO\n"
    iso.add_fp(io.BytesIO(text), len(text), "/NOTE.TXT;1", rr_name="note.txt")
    path = tmp_path / "data.iso"
    iso.write(str(path))
    iso.close()
    before = path.read_bytes()
    result = boot(loader_conf=DEFAULT_LOADER_CONF, md_vnodes=[str(path)],
                  command="mdconfig -l -v; mount -t cd9660 /dev/md1 /mnt && cat /mnt/note.txt; "
                          "dd if=/dev/zero of=/dev/md1 bs=512 count=1")
    out = console(result)
    assert f"md1: vnode {path}, {len(before)} bytes, read-only" in out
    assert "md1\tvnode\t" in out and str(path) in out
    assert "from the host's ISO\n" in out
    assert "dd: /dev/md1:" in out and result.exit_code == 1          # a read-only md refuses the write
    assert path.read_bytes() == before


def test_md_vnode_bad_input_is_one_line(tmp_path):
    from kernel_sim.boot import BootRequest, prepare
    from kernel_sim.errors import InputError

    with pytest.raises(InputError, match="--md-vnode .*nope: cannot open vnode file .*nope: No such file or directory"):
        prepare(BootRequest(md_vnodes=[str(tmp_path / "nope")]))
    with pytest.raises(InputError, match="--md-vnode .*: vnode file .* is a directory"):
        prepare(BootRequest(md_vnodes=[str(tmp_path)]))
