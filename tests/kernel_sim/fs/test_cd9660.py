"""cd9660: ISO 9660 images (pycdlib-built, and makefs-built as a user would) mounted over md."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

pycdlib = pytest.importorskip("pycdlib")

from kernel_sim.dev.md import MdDriver  # noqa: E402
from kernel_sim.geom.core import Mesh  # noqa: E402
from kernel_sim.kern.mountroot import mountroot  # noqa: E402
from kernel_sim.kern.sysapi import (  # noqa: E402
    EINVAL,
    EROFS,
    O_RDONLY,
    O_WRONLY,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    SysError,
)
from kernel_sim.kern.syscalls import Syscalls, make_kernel  # noqa: E402

MAKEFS = shutil.which("makefs")


def rock_ridge_iso() -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")
    iso.add_directory("/ETC", rr_name="etc", file_mode=0o40755)
    motd = b"Welcome to the CD\n"
    iso.add_fp(io.BytesIO(motd), len(motd), "/ETC/MOTD.;1", rr_name="Motd.Long-Name.txt", file_mode=0o100640)
    big = bytes(range(256)) * 40                               # 10240 bytes: several logical blocks
    iso.add_fp(io.BytesIO(big), len(big), "/BIG.BIN;1", rr_name="big.bin")
    iso.add_symlink(symlink_path="/MOTD.;1", rr_symlink_name="motd", rr_path="etc/Motd.Long-Name.txt")
    iso.add_symlink(symlink_path="/ABS.;1", rr_symlink_name="abs", rr_path="/etc")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def plain_iso() -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new()
    iso.add_directory("/DOCS")
    iso.add_fp(io.BytesIO(b"plain\n"), 6, "/DOCS/README.TXT;1")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def kernel_with(image: bytes, spec: str = "cd9660:md0"):
    mesh = Mesh()
    mesh.md = MdDriver(mesh, sector_alloc=lambda _n, _z: object(), sector_free=lambda _h: None)
    mesh.md.preload(len(image) // 512 * 512, image=bytearray(image))
    k = make_kernel(mesh)
    lines: list[str] = []
    root = mountroot(k.vfs, [spec], lines.append)
    return k, root, lines, mesh


def errno_of(fn, *args) -> int:
    with pytest.raises(SysError) as exc:
        fn(*args)
    return exc.value.errno


def test_cd9660_root_with_rock_ridge_names_modes_and_symlinks():
    k, root, lines, _ = kernel_with(rock_ridge_iso())
    assert root is not None and lines[0] == "Trying to mount root from cd9660:/dev/md0 [ro]...\n"
    p = Syscalls.for_init(k)
    assert set(p.readdir("/")) >= {".", "..", "etc", "big.bin", "motd", "abs"}
    assert p.readdir("/etc") == [".", "..", "Motd.Long-Name.txt"]
    st = p.stat("/etc/Motd.Long-Name.txt")
    assert st.mode == S_IFREG | 0o640 and st.size == 18
    assert p.stat("/etc").mode == S_IFDIR | 0o755
    assert p.lstat("/motd").mode & S_IFMT == S_IFLNK and p.readlink("/motd") == "etc/Motd.Long-Name.txt"
    assert p.read(p.open("/motd"), 100) == b"Welcome to the CD\n"
    assert p.readdir("/abs") == p.readdir("/etc")
    fd = p.open("/big.bin", O_RDONLY)
    assert p.pread(fd, 300, 2000) == (bytes(range(256)) * 40)[2000:2300]
    assert p.read(fd, 1 << 20) == bytes(range(256)) * 40
    s = p.statfs("/")
    assert (s.fstypename, s.mntfromname, s.flags, s.bsize) == ("cd9660", "/dev/md0", ("local", "read-only"), 2048)
    assert p.stat("/etc/..") == p.stat("/")
    assert errno_of(p.open, "/etc/Motd.Long-Name.txt", O_WRONLY) == EROFS
    assert errno_of(p.mkdir, "/new") == EROFS


def test_inode_numbers_follow_cd9660():
    k, _root, _lines, _ = kernel_with(rock_ridge_iso())
    p = Syscalls.for_init(k)
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(rock_ridge_iso()))
    etc = iso.get_record(rr_path="/etc")
    assert p.stat("/etc").ino == etc.extent_location() * 2048          # isodirino
    inos = [p.lstat(f"/{n}").ino for n in ("big.bin", "motd", "abs")]
    assert len(set(inos)) == 3 and all(i % 2048 for i in inos)          # directory record addresses


def test_without_rock_ridge_names_are_lowercased_iso_names():
    k, root, _lines, _ = kernel_with(plain_iso())
    assert root is not None
    p = Syscalls.for_init(k)
    assert p.readdir("/docs") == [".", "..", "readme.txt"]
    assert p.stat("/docs/readme.txt").mode == S_IFREG | 0o555
    assert p.read(p.open("/docs/readme.txt"), 10) == b"plain\n"
    k2, _r, _l, _ = kernel_with(rock_ridge_iso())
    assert "/dev" not in k2.vfs.mounts                                   # the image has no /dev
    k2.vfs.unmount("/")
    k2.vfs.mount("cd9660", "/", {"from": "/dev/md0", "ro": "", "norrip": ""})
    assert "motd" in Syscalls.for_init(k2).readdir("/")                 # "MOTD.;1" -> "motd"
    assert "Motd.Long-Name.txt" not in Syscalls.for_init(k2).readdir("/etc")


def test_mount_refusals_and_the_device_let_go():
    k, root, lines, mesh = kernel_with(b"\0" * 65536)
    assert root is None and lines[-1] == "Mounting from cd9660:/dev/md0 failed with error 22.\n"
    assert mesh.provider("md0").acr == 0
    k, root, _lines, mesh = kernel_with(rock_ridge_iso())
    p = Syscalls.for_init(k)
    assert errno_of(p.unmount, "/") == 16                    # EBUSY: init's working directory is /
    p.exit(0)
    p.unmount("/")
    assert mesh.provider("md0").acr == 0
    assert errno_of(k.vfs.mount, "cd9660", "/", {"from": "/dev/md0"}) == EROFS   # no "ro"
    assert errno_of(k.vfs.mount, "cd9660", "/", {"from": "/dev/md0", "ro": "", "bogus": ""}) == EINVAL


@pytest.mark.interop
@pytest.mark.skipif(MAKEFS is None, reason="makefs is not installed (.ci/run installs it)")
def test_makefs_rock_ridge_image_with_a_relocated_deep_directory(tmp_path):
    tree = tmp_path / "tree"
    deep = tree / "a" / "b" / "c" / "d" / "e" / "f" / "g" / "h" / "i"
    deep.mkdir(parents=True)
    (deep / "Deep File.txt").write_text("deep\n")
    (tree / "a" / "Mixed.Case").write_text("x")
    os.chmod(tree / "a" / "Mixed.Case", 0o604)
    os.symlink("b/c", tree / "a" / "toc")
    iso = tmp_path / "cd.iso"
    subprocess.run([MAKEFS, "-t", "cd9660", "-o", "rockridge", str(iso), str(tree)], check=True,
                   capture_output=True)
    k, root, _lines, _ = kernel_with(iso.read_bytes())
    assert root is not None
    p = Syscalls.for_init(k)
    path = "/a/b/c/d/e/f/g/h/i"
    assert p.readdir(path) == [".", "..", "Deep File.txt"]
    assert p.read(p.open(path + "/Deep File.txt"), 10) == b"deep\n"
    assert p.stat("/a/Mixed.Case").mode == S_IFREG | 0o604
    assert p.stat("/a/toc/d/e").mode & S_IFMT == S_IFDIR
    p.chdir(path)
    assert p.getcwd() == path
    assert p.readdir("..") == [".", "..", "i"]


# --- fuzzing: a damaged ISO mounts and reads, or fails with an errno; nothing else comes out --------------

import contextlib  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ISO = rock_ridge_iso()
# Where a bad byte changes the parser's path: the primary volume descriptor (sector 16), the path tables
# and the root directory's records with their Rock Ridge entries (sectors 18 to 23 for this image).
_HOT = [16 * 2048, 17 * 2048, 18 * 2048, 19 * 2048, 20 * 2048, 21 * 2048, 22 * 2048, 23 * 2048]


def _walk(p, path: str = "/", depth: int = 0) -> None:
    """What `find / -exec cat {} \\;` would touch: every entry's stat, link and contents."""
    for name in p.readdir(path):
        if name in (".", ".."):
            continue
        full = path.rstrip("/") + "/" + name
        try:
            st_ = p.lstat(full)
            if st_.mode & S_IFMT == S_IFDIR and depth < 4:
                _walk(p, full, depth + 1)
            elif st_.mode & S_IFMT == S_IFLNK:
                p.readlink(full)
            else:
                fd = p.open(full, O_RDONLY)
                p.read(fd, 1 << 16)
                p.close(fd)
        except SysError:
            pass


@settings(max_examples=80, deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from(_HOT + [None]), st.integers(0, 2047), st.integers(0, 255)),
                        min_size=1, max_size=6))
def test_fuzz_damaged_isos_mount_or_fail_with_an_errno(changes) -> None:
    image = bytearray(_ISO)
    for base, off, value in changes:
        image[(base + off) if base is not None else off * 11 % len(image)] = value
    k, root, lines, _ = kernel_with(bytes(image))
    if root is None:
        assert any("error" in line for line in lines), lines      # mountroot said why
        return
    with contextlib.suppress(SysError):
        _walk(Syscalls.for_init(k))
