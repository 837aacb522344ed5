"""The VFS: namei across mounts, symlinks, read-only roots, unmount rules, statfs, tmpfs via the VFS.

The root is a makefs UFS image on md0 (as the boot mounts it); tmpfs gets real guest pages from a
PhysAllocator over sparse RAM, so ENOSPC and the page counts are the kernel's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board.memory import PhysicalMemory
from kernel_sim.dev.md import MdDriver
from kernel_sim.fs.ufs import mount_bytes
from kernel_sim.fs.vfs import ROOT, Cred, MallocCharges
from kernel_sim.geom.core import Mesh
from kernel_sim.kern.mountroot import mountroot
from kernel_sim.kern.sysapi import (
    EACCES,
    EBUSY,
    EEXIST,
    EINTEGRITY,
    EINVAL,
    EIO,
    EISDIR,
    ELOOP,
    ENAMETOOLONG,
    ENODEV,
    ENOENT,
    ENOTDIR,
    ENOTEMPTY,
    EPERM,
    EROFS,
    EXDEV,
    O_CREAT,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    S_IFDIR,
    S_IFMT,
    SysError,
)
from kernel_sim.kern.syscalls import Syscalls, make_kernel
from kernel_sim.vm.phys import PhysAllocator

MAKEFS = shutil.which("makefs")
pytestmark = pytest.mark.skipif(MAKEFS is None, reason="makefs is not installed (.ci/run installs it)")
RAM = 0x4000_0000


def build_tree(root: Path) -> None:
    for d in ("etc", "tmp", "mnt", "dev", "secret", "chain"):
        (root / d).mkdir()
    (root / "etc" / "motd").write_text("Welcome\n")
    (root / "secret" / "key").write_text("k\n")
    os.chmod(root / "secret", 0o700)
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/etc/motd", root / "abs")
    os.symlink("../etc", root / "tmp" / "up")
    # chain/l0 -> l1 -> ... -> l32 -> /etc/motd: 33 links from l0, 32 from l1.
    for i in range(33):
        os.symlink(f"l{i + 1}" if i < 32 else "/etc/motd", root / "chain" / f"l{i}")


@pytest.fixture(scope="module")
def ufs_image(tmp_path_factory) -> bytes:
    base = tmp_path_factory.mktemp("vfs")
    tree = base / "tree"
    tree.mkdir()
    build_tree(tree)
    img = base / "root.img"
    subprocess.run([MAKEFS, "-t", "ffs", "-o", "version=2", "-s", "4m", str(img), str(tree)],
                   check=True, capture_output=True)
    return img.read_bytes()


class CountingKmem:
    def __init__(self, limit: int = 1 << 30) -> None:
        self.limit = limit
        self.by_type: dict[str, int] = {}

    def charge(self, mtype: str, n: int) -> bool:
        if sum(self.by_type.values()) + n > self.limit:
            return False
        self.by_type[mtype] = self.by_type.get(mtype, 0) + n
        return True

    def uncharge(self, mtype: str, n: int) -> None:
        self.by_type[mtype] -= n


def boot_vfs(image: bytes, ram_mb: int = 16, kmem=None):
    """md0 over the image, root mounted as the boot does (devfs on /dev), init's system calls."""
    mesh = Mesh()
    mesh.md = MdDriver(mesh, sector_alloc=lambda _n, _z: object(), sector_free=lambda _h: None)
    mesh.md.preload(len(image), image=bytearray(image))
    phys = PhysicalMemory()
    phys.add_ram(RAM, ram_mb << 20)
    pages = PhysAllocator(phys, RAM, RAM + (ram_mb << 20))
    console: list[bytes] = []
    k = make_kernel(mesh, pages=pages, kmem=kmem or CountingKmem(), console_write=console.append)
    lines: list[str] = []
    assert mountroot(k.vfs, ["ufs:md0"], lines.append) is not None, lines
    return k, Syscalls.for_init(k), pages


@pytest.fixture
def env(ufs_image):
    return boot_vfs(ufs_image)


def errno_of(fn, *args) -> int:
    with pytest.raises(SysError) as exc:
        fn(*args)
    return exc.value.errno


# ------------------------------------------------------------------ lookups
def test_dotdot_leaves_a_mount_root_and_entries_cross_into_mounts(env):
    k, p, _ = env
    root = p.stat("/")
    p.mount("tmpfs", "/mnt", {})
    p.mkdir("/mnt/a")
    assert p.stat("/mnt").dev != root.dev and p.stat("/mnt").ino == 2
    assert p.stat("/mnt/a/../..") == root
    assert p.stat("/mnt/..") == root
    assert "etc" in p.readdir("/mnt/a/../../")
    p.chdir("/mnt/a")
    assert p.getcwd() == "/mnt/a"
    assert p.stat("../../etc/motd").size == len("Welcome\n")
    assert p.stat("/dev/..") == root and p.getcwd() == "/mnt/a"
    assert [s.mntonname for s in p.getfsstat()] == ["/", "/dev", "/mnt"]


def test_symlinks_relative_absolute_and_through_mounts(env):
    k, p, _ = env
    assert p.readlink("/abs") == "/etc/motd"
    assert p.stat("/abs").size == 8 and p.lstat("/abs").mode & S_IFMT == 0o120000
    assert "motd" in p.readdir("/tmp/up")                  # ../etc from /tmp
    p.mount("tmpfs", "/tmp", {})                            # now /tmp/up is hidden
    assert errno_of(p.stat, "/tmp/up") == ENOENT
    p.symlink("/etc", "/tmp/etc")
    p.symlink("../etc/motd", "/tmp/rel")                   # ".." from the tmpfs root leaves the mount
    assert p.read(p.open("/tmp/rel"), 100) == b"Welcome\n"
    assert p.read(p.open("/tmp/etc/motd"), 100) == b"Welcome\n"


def test_symlink_loops_and_maxsymlinks(env):
    _k, p, _ = env
    assert errno_of(p.stat, "/loop1") == ELOOP
    assert p.lstat("/loop1").mode & S_IFMT == 0o120000
    assert p.stat("/chain/l1").size == 8                    # 32 links: allowed (MAXSYMLINKS)
    assert errno_of(p.stat, "/chain/l0") == ELOOP           # 33 links: ELOOP


def test_namei_errors(env):
    _k, p, _ = env
    assert errno_of(p.stat, "/etc/motd/x") == ENOTDIR
    assert errno_of(p.stat, "/etc/motd/") == ENOTDIR
    assert errno_of(p.stat, "/etc/nothing") == ENOENT
    assert errno_of(p.stat, "") == ENOENT
    assert errno_of(p.stat, "/" + "a" * 256) == ENAMETOOLONG
    assert errno_of(p.stat, "/" + "a/" * 511 + "b") == ENAMETOOLONG   # 1024 bytes: past MAXPATHLEN
    assert p.stat("//etc///motd").size == 8
    assert p.stat("/etc/./motd").size == 8


def test_ufs_root_is_read_only(env):
    _k, p, _ = env
    assert errno_of(p.mkdir, "/newdir") == EROFS
    assert errno_of(p.mkdir, "/etc") == EEXIST
    assert errno_of(p.open, "/etc/motd", O_WRONLY) == EROFS
    assert errno_of(p.open, "/etc/new", O_WRONLY | O_CREAT) == EROFS
    assert errno_of(p.unlink, "/etc/motd") == EROFS
    assert errno_of(p.unlink, "/etc/none") == ENOENT
    assert errno_of(p.rmdir, "/chain") == EROFS
    assert errno_of(p.truncate, "/etc/motd", 0) == EROFS
    assert errno_of(p.symlink, "x", "/etc/lnk") == EROFS
    assert errno_of(p.mkdir, "/") == EISDIR
    assert errno_of(p.mount, "ufs", "/mnt", {"from": "/dev/md0"}) != 0   # rw UFS is refused
    assert p.statfs("/").flags == ("local", "read-only")


def test_permissions_for_a_user(env):
    k, p, _ = env
    user = Syscalls(k, 99, uid=1001, gid=1001)
    assert errno_of(user.stat, "/secret/key") == EACCES     # search permission on a 0700 directory
    assert errno_of(user.readdir, "/secret") == EACCES
    assert p.stat("/secret/key").size == 2                   # root bypasses the mode bits
    assert errno_of(user.mount, "tmpfs", "/mnt", {}) == EPERM
    p.mount("tmpfs", "/tmp", {"mode": "1777"})
    fd = user.open("/tmp/mine", O_CREAT | O_WRONLY, 0o600)
    user.close(fd)
    assert p.stat("/tmp/mine").uid == 1001
    other = Syscalls(k, 100, uid=1002, gid=1002)
    assert errno_of(other.open, "/tmp/mine", O_RDONLY) == EACCES
    assert errno_of(other.unlink, "/tmp/mine") == EPERM      # sticky /tmp: not the owner
    user.unlink("/tmp/mine")
    p.mkdir("/tmp/rootonly", 0o755)
    assert errno_of(user.mkdir, "/tmp/rootonly/x") == EACCES
    assert errno_of(user.unmount, "/tmp") == EPERM


# ------------------------------------------------------------------ mounts
def test_unmount_busy_rules_and_forced_unmount(env):
    _k, p, _ = env
    p.mount("tmpfs", "/mnt", {})
    p.mkdir("/mnt/sub")
    p.mount("tmpfs", "/mnt/sub", {})
    assert errno_of(p.unmount, "/mnt") == EBUSY              # a mount below it
    assert errno_of(p.unmount, "/mnt", True) == EBUSY
    assert errno_of(p.rmdir, "/mnt/sub") == EBUSY
    p.unmount("/mnt/sub")
    fd = p.open("/mnt/f", O_CREAT | O_RDWR)
    p.write(fd, b"data")
    assert errno_of(p.unmount, "/mnt") == EBUSY              # an open file
    assert errno_of(p.unmount, "/etc") == EINVAL             # not a mount point
    p.unmount("/mnt", True)
    assert errno_of(p.read, fd, 4) == EIO                    # the forced unmount killed the file
    p.close(fd)
    assert p.readdir("/mnt") == [".", ".."]                  # the UFS directory shows again
    p.mount("tmpfs", "/mnt", {})
    p.chdir("/mnt")
    assert errno_of(p.unmount, "/mnt") == EBUSY              # a working directory in it
    p.chdir("/")
    p.unmount("/mnt")
    assert errno_of(p.mount, "nosuchfs", "/mnt", {}) == ENODEV
    assert errno_of(p.mount, "tmpfs", "/etc/motd", {}) == ENOTDIR
    assert errno_of(p.mount, "tmpfs", "/none", {}) == ENOENT
    assert errno_of(p.mount, "tmpfs", "/mnt", {"bogus": "1"}) == EINVAL


def test_statfs_flags_and_update(env):
    _k, p, _ = env
    p.mount("tmpfs", "/tmp", {"size": "1m", "nosuid": "", "from": "swapfs"})
    s = p.statfs("/tmp/.")
    assert (s.fstypename, s.mntfromname, s.mntonname) == ("tmpfs", "swapfs", "/tmp")
    assert s.flags == ("local", "nosuid") and s.blocks == 256 and s.bsize == 4096
    p.mount("tmpfs", "/tmp", {"update": "", "ro": ""})
    assert p.statfs("/tmp").flags == ("local", "read-only")
    assert errno_of(p.mkdir, "/tmp/x") == EROFS
    p.mount("tmpfs", "/tmp", {"update": "", "rw": ""})
    p.mkdir("/tmp/x")
    assert errno_of(p.mount, "tmpfs", "/tmp/x", {"update": ""}) == EINVAL
    dev = p.statfs("/dev")
    assert (dev.fstypename, dev.mntfromname) == ("devfs", "devfs")


def test_nosymfollow(env):
    _k, p, _ = env
    p.mount("tmpfs", "/tmp", {"nosymfollow": ""})
    p.symlink("/etc/motd", "/tmp/l")
    assert errno_of(p.stat, "/tmp/l") == EACCES
    assert p.readlink("/tmp/l") == "/etc/motd" and p.lstat("/tmp/l").size == 9
    assert "nosymfollow" in p.statfs("/tmp").flags


def test_rename_rules(env):
    _k, p, _ = env
    p.mount("tmpfs", "/tmp", {})
    p.mount("tmpfs", "/mnt", {})
    p.close(p.open("/tmp/a", O_CREAT | O_WRONLY))
    assert errno_of(p.rename, "/tmp/a", "/mnt/a") == EXDEV
    p.mkdir("/tmp/d")
    p.rename("/tmp/a", "/tmp/d/b")
    assert p.readdir("/tmp/d") == [".", "..", "b"]
    p.mkdir("/tmp/e")
    p.mkdir("/tmp/e/f")
    assert errno_of(p.rename, "/tmp/d", "/tmp/e") == ENOTEMPTY
    assert errno_of(p.rename, "/tmp/d", "/tmp/d/x") == EINVAL
    assert errno_of(p.rename, "/tmp", "/tmp2") == EBUSY       # a mount point
    assert errno_of(p.rmdir, "/tmp/e/.") == EINVAL
    assert errno_of(p.unlink, "/tmp/e") == EPERM              # unlink(2) of a directory


def test_corrupt_and_foreign_images(ufs_image):
    blank = bytes(len(ufs_image))
    with pytest.raises(AssertionError):
        boot_vfs(blank)                                        # no superblock: the root mount fails ...
    mesh = Mesh()
    mesh.md = MdDriver(mesh, sector_alloc=lambda _n, _z: object(), sector_free=lambda _h: None)
    mesh.md.preload(len(blank), image=bytearray(blank))
    k = make_kernel(mesh)
    lines: list[str] = []
    assert mountroot(k.vfs, ["ufs:md0", "ufs:md9"], lines.append) is None
    assert lines == ["Trying to mount root from ufs:/dev/md0 [ro]...\n",
                     "Mounting from ufs:/dev/md0 failed with error 22.\n",   # ... with EINVAL
                     "Trying to mount root from ufs:/dev/md9 [ro]...\n",
                     "Mounting from ufs:/dev/md9 failed with error 6.\n"]
    assert mesh.provider("md0").acr == 0                     # the failed mount let go of the device
    # A root directory whose first entry has d_reclen 0: EINTEGRITY from the reader, not a crash.
    reader = mount_bytes(ufs_image)
    block = reader.bmap(reader._inode(2), 0) * reader.sb.fsize
    bad = bytearray(ufs_image)
    bad[block + 4:block + 6] = b"\0\0"
    _k, p, _ = boot_vfs(bytes(bad))
    assert errno_of(p.readdir, "/") == EINTEGRITY


# ------------------------------------------------------------------ tmpfs through the VFS
def test_tmpfs_pages_come_from_the_allocator_and_go_back(env):
    _k, p, pages = env
    free0 = pages.free_count
    p.mount("tmpfs", "/tmp", {})
    fd = p.open("/tmp/f", O_CREAT | O_RDWR)
    p.write(fd, b"x" * 3 * 4096)
    assert pages.free_count == free0 - 3
    assert p.pread(fd, 4, 4096) == b"xxxx" and p.fstat(fd).blocks == 24
    p.close(fd)
    p.unmount("/tmp")
    assert pages.free_count == free0


def test_malloc_charges_take_whole_pages_per_type():
    class FakeMalloc:
        def __init__(self, pages: int) -> None:
            self.left = pages
            self.live: dict[int, str] = {}
            self.next = 0x1000

        def malloc(self, size, mtype, flags):
            assert size == 4096
            if not self.left:
                return None
            self.left -= 1
            self.next += 4096
            self.live[self.next] = mtype
            return self.next

        def free(self, va):
            del self.live[va]
            self.left += 1

    m = FakeMalloc(2)
    ch = MallocCharges(m)
    assert ch.charge("TMPFS node", 200) and len(m.live) == 1
    for _ in range(19):
        assert ch.charge("TMPFS node", 200)                 # 4000 bytes: still one page
    assert len(m.live) == 1
    assert ch.charge("TMPFS node", 200) and len(m.live) == 2
    assert not ch.charge("M_TMPFSNAME", 10)                 # kmem exhausted: refused, nothing kept
    assert ch.bytes.get("M_TMPFSNAME", 0) == 0
    ch.uncharge("TMPFS node", 200)
    assert len(m.live) == 1                                 # 4000 bytes fit in one page again
    assert [row for row in ch.stats() if row[0] == "TMPFS node"] == [("TMPFS node", 20, 4096, 21)]


# A dict model of a directory tree: path -> None (directory) or bytes (file).
_names = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_names, min_size=1, max_size=2).map(lambda xs: "t/" + "/".join(xs))
_ops = st.lists(st.one_of(
    st.tuples(st.just("mkdir"), _paths),
    st.tuples(st.just("write"), _paths, st.binary(max_size=64)),
    st.tuples(st.just("unlink"), _paths),
    st.tuples(st.just("rmdir"), _paths),
    st.tuples(st.just("rename"), _paths, _paths),
), max_size=25)


def _model_errno(model: dict[str, bytes | None], op: tuple) -> int:
    """What the model says an operation returns (0 on success), applying it."""
    def parent_ok(path: str) -> int:
        parts = path.split("/")[1:-1]
        for i in range(1, len(parts) + 1):
            prefix = "t/" + "/".join(parts[:i])
            if prefix not in model:
                return ENOENT
            if model[prefix] is not None:
                return ENOTDIR
        return 0

    kind, path = op[0], op[1]
    err = parent_ok(path)
    if kind == "mkdir":
        if err:
            return err
        if path in model:
            return EEXIST
        model[path] = None
    elif kind == "write":
        if err:
            return err
        if model.get(path, b"") is None:
            return EISDIR
        model[path] = op[2]
    elif kind == "unlink":
        if err:
            return err
        if path not in model:
            return ENOENT
        if model[path] is None:
            return EPERM
        del model[path]
    elif kind == "rmdir":
        if err:
            return err
        if path not in model:
            return ENOENT
        if model[path] is not None:
            return ENOTDIR
        if any(k.startswith(path + "/") for k in model):
            return ENOTEMPTY
        del model[path]
    return 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_tmpfs_namespace_agrees_with_a_dict_model(ufs_image, ops):
    _k, p, pages = boot_vfs(ufs_image)
    free0 = pages.free_count
    p.mount("tmpfs", "/tmp", {})
    p.mkdir("/tmp/t")
    p.chdir("/tmp")
    model: dict[str, bytes | None] = {}
    for op in ops:
        if op[0] == "rename":
            continue_model = dict(model)
            try:
                p.rename(op[1], op[2])
            except SysError:
                model = continue_model
            else:
                src, dst = op[1], op[2]
                if src == dst:
                    continue
                moved = {k: v for k, v in model.items() if k == src or k.startswith(src + "/")}
                for k2 in [k for k in model if k == dst or k.startswith(dst + "/")]:
                    del model[k2]
                for k, v in moved.items():
                    del model[k]
                    model[dst + k[len(src):]] = v
            continue
        want = _model_errno(model, op)
        try:
            if op[0] == "mkdir":
                p.mkdir(op[1])
            elif op[0] == "write":
                fd = p.open(op[1], O_CREAT | O_WRONLY | O_TRUNC)
                p.write(fd, op[2])
                p.close(fd)
            elif op[0] == "unlink":
                p.unlink(op[1])
            else:
                p.rmdir(op[1])
            got = 0
        except SysError as exc:
            got = exc.errno
        assert got == want, (op, model)
    # The tree now is the model, file contents included.
    seen: dict[str, bytes | None] = {}

    def walk(d: str) -> None:
        for name in p.readdir(d):
            if name in (".", ".."):
                continue
            path = f"{d}/{name}"
            if p.lstat(path).mode & S_IFMT == S_IFDIR:
                seen[path] = None
                walk(path)
            else:
                fd = p.open(path)
                seen[path] = p.read(fd, 1000)
                p.close(fd)

    walk("t")
    assert seen == model
    p.chdir("/")
    p.unmount("/tmp")
    assert pages.free_count == free0


def test_root_cred_constant_is_root():
    assert ROOT.uid == 0 and Cred(5, 5).in_group(5) and not Cred(5, 5).in_group(0)
