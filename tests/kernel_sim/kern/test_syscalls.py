"""Syscalls: descriptors, open flags, tmpfs limits through the calls, credentials, sysctl, kenv,
kernel stacks for spawned commands."""

from __future__ import annotations

import pytest

from board.memory import PhysicalMemory
from kernel_sim.dev.md import MdDriver
from kernel_sim.fs.tmpfs import TMPFS_PAGES_MINRESERVED
from kernel_sim.geom.core import Mesh
from kernel_sim.kern.proc import KSTACK_PAGES, ProcTable
from kernel_sim.kern.sysapi import (
    EACCES,
    EBADF,
    EEXIST,
    EFBIG,
    EINVAL,
    EISDIR,
    EMFILE,
    ENOENT,
    ENOMEM,
    ENOSPC,
    ENOTDIR,
    ENOTTY,
    EPERM,
    ESPIPE,
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    RB_HALT,
    SEEK_CUR,
    SEEK_END,
    SysError,
)
from kernel_sim.kern.syscalls import NOFILE, Syscalls, make_kernel
from kernel_sim.kern.sysctl import SysctlTree
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.vmem import Vmem

RAM = 0x4000_0000
PAGE = 4096


class Pmap:
    """kenter/kremove bookkeeping: what a kernel stack mapped."""

    def __init__(self) -> None:
        self.mapped: dict[int, int] = {}

    def kenter_range(self, va: int, pas, **_kw) -> None:
        for i, pa in enumerate(pas):
            assert va + i * PAGE not in self.mapped
            self.mapped[va + i * PAGE] = pa

    def kremove_range(self, va: int, size: int) -> None:
        for off in range(0, size, PAGE):
            del self.mapped[va + off]


class Kmem:
    def charge(self, mtype: str, n: int) -> bool:
        return True

    def uncharge(self, mtype: str, n: int) -> None:
        pass


def kernel(ram_mb: int = 16, kva: int = 4 << 20):
    mesh = Mesh()
    mesh.md = MdDriver(mesh, sector_alloc=lambda _n, _z: object(), sector_free=lambda _h: None)
    phys = PhysicalMemory()
    phys.add_ram(RAM, ram_mb << 20)
    pages = PhysAllocator(phys, RAM, RAM + (ram_mb << 20))
    pmap = Pmap()
    procs = ProcTable(Vmem("kernel_map", 0xC100_0000, kva), Vmem("kernel arena"), pmap, pages,
                      lambda _s: None, 0xC000_0000)
    procs.fork(0, "init")
    halted: list[int] = []
    console: list[bytes] = []
    k = make_kernel(mesh, pages=pages, kmem=Kmem(), sysctl=SysctlTree(), kenv={"kern.hostname": "armboard"},
                    procs=procs, reboot=halted.append, console_write=console.append)
    k.vfs.mount("tmpfs", "/", {})                    # a tmpfs root: every call below can write
    k.vfs.mkdir("/dev", 0o755)
    k.vfs.mount("devfs", "/dev", {})
    return k, Syscalls.for_init(k), pages, pmap, halted, console


@pytest.fixture
def sys_():
    return kernel()


def errno_of(fn, *args) -> int:
    with pytest.raises(SysError) as exc:
        fn(*args)
    return exc.value.errno


# ------------------------------------------------------------------ descriptors
def test_init_starts_with_the_console_on_0_1_2(sys_):
    _k, p, *_rest, console = sys_
    assert sorted(p.fds) == [0, 1, 2] and p.fds[0] is p.fds[1] is p.fds[2]
    p.write(2, b"init: hello\n")
    assert console == [b"init: hello\n"]
    assert errno_of(p.lseek, 1, 0) == ESPIPE


def test_bad_descriptors_and_the_descriptor_limit(sys_):
    _k, p, *_ = sys_
    assert errno_of(p.read, 9, 1) == EBADF
    assert errno_of(p.close, 9) == EBADF
    assert errno_of(p.dup2, 9, 3) == EBADF
    assert errno_of(p.dup2, 0, NOFILE) == EBADF
    fd = p.open("/f", O_CREAT | O_WRONLY)
    assert errno_of(p.read, fd, 1) == EBADF                  # write-only
    ro = p.open("/f", O_RDONLY)
    assert errno_of(p.write, ro, b"x") == EBADF
    assert errno_of(p.ftruncate, ro, 0) == EINVAL
    assert errno_of(p.file_sink, ro) == EBADF
    fds = [p.open("/f") for _ in range(NOFILE - 5)]
    assert len(p.fds) == NOFILE
    assert errno_of(p.open, "/f") == EMFILE
    p.close(fds[10])
    assert p.open("/f") == fds[10]                           # the lowest free descriptor


def test_open_flags(sys_):
    _k, p, *_ = sys_
    fd = p.open("/log", O_CREAT | O_EXCL | O_WRONLY, 0o644)
    assert errno_of(p.open, "/log", O_CREAT | O_EXCL | O_WRONLY) == EEXIST
    p.write(fd, b"one\n")
    p.close(fd)
    ap = p.open("/log", O_WRONLY | O_APPEND)
    p.lseek(ap, 0)
    p.write(ap, b"two\n")                                    # O_APPEND: at the end whatever the offset
    rd = p.open("/log")
    assert p.read(rd, 100) == b"one\ntwo\n"
    tr = p.open("/log", O_WRONLY | O_TRUNC)
    assert p.fstat(tr).size == 0
    assert errno_of(p.open, "/log", O_RDONLY | O_DIRECTORY) == ENOTDIR
    assert errno_of(p.open, "/dev", O_WRONLY) == EISDIR
    assert errno_of(p.open, "/none") == ENOENT
    d = p.open("/dev", O_RDONLY | O_DIRECTORY)
    assert errno_of(p.read, d, 10) == EISDIR
    assert errno_of(p.ioctl, rd, 0x4004667F) == ENOTTY        # FIONREAD on a file here: not a device
    p.symlink("/log", "/lnk")
    assert errno_of(p.open, "/lnk", O_CREAT | O_EXCL | O_WRONLY) == EEXIST
    p.symlink("/created", "/dangling")
    p.close(p.open("/dangling", O_CREAT | O_WRONLY))         # O_CREAT follows a dangling link
    assert p.stat("/created").size == 0


def test_dup2_shares_the_offset_and_lseek(sys_):
    _k, p, *_ = sys_
    fd = p.open("/f", O_CREAT | O_RDWR)
    p.write(fd, b"abcdef")
    p.dup2(fd, 7)
    p.lseek(fd, 2)
    assert p.read(7, 2) == b"cd" and p.lseek(fd, 0, SEEK_CUR) == 4
    assert p.lseek(fd, -1, SEEK_END) == 5
    assert errno_of(p.lseek, fd, -10, SEEK_CUR) == EINVAL
    assert p.pread(fd, 3, 0) == b"abc" and p.lseek(fd, 0, SEEK_CUR) == 5   # pread keeps the offset
    p.close(fd)
    assert p.read(7, 10) == b"f"                              # the other descriptor still works


# ------------------------------------------------------------------ tmpfs limits
def test_tmpfs_size_enospc_at_the_page_that_does_not_fit(sys_):
    _k, p, *_ = sys_
    p.mkdir("/tmp")
    p.mount("tmpfs", "/tmp", {"size": "64k"})                 # 16 pages, metadata included
    s = p.statfs("/tmp")
    assert s.blocks == 16 and s.bfree == 15                  # the root node's metadata page
    fd = p.open("/tmp/fill", O_CREAT | O_WRONLY)
    assert p.write(fd, b"x" * (15 * PAGE)) == 15 * PAGE
    assert errno_of(p.write, fd, b"y") == ENOSPC              # the 16th page has no room
    assert p.fstat(fd).size == 15 * PAGE                      # nothing half-written
    p.ftruncate(fd, 14 * PAGE)
    assert p.pwrite(fd, b"y" * PAGE, 14 * PAGE) == PAGE       # the freed page is usable again
    assert errno_of(p.open, "/tmp/another", O_CREAT | O_WRONLY) == ENOSPC   # no page for a node


def test_tmpfs_maxfilesize_efbig(sys_):
    _k, p, *_ = sys_
    p.mkdir("/tmp")
    p.mount("tmpfs", "/tmp", {"maxfilesize": "10000"})
    fd = p.open("/tmp/f", O_CREAT | O_RDWR)
    assert p.pwrite(fd, b"a" * 100, 9900) == 100
    assert errno_of(p.pwrite, fd, b"a", 10000) == EFBIG
    assert errno_of(p.truncate, "/tmp/f", 10001) == EFBIG
    assert p.fstat(fd).size == 10000


# ------------------------------------------------------------------ credentials
def test_root_only_calls_for_a_user(sys_):
    k, p, *_rest, halted, _console = sys_
    user = p.spawn_kstack("sh", uid=1001)
    assert user.uid == 1001 and k.procs.procs[user.pid].uid == 1001
    assert errno_of(user.mount, "tmpfs", "/dev", {}) == EPERM
    assert errno_of(user.unmount, "/dev") == EPERM
    assert errno_of(user.sysctl, "vfs.tmpfs.memory_percent", "50") == EPERM
    assert errno_of(user.sysctl, "no.such.oid", "1") == ENOENT
    assert errno_of(user.kenv, "x", "1") == EPERM
    assert errno_of(user.kenv, "kern.hostname", None, True) == EPERM
    assert errno_of(user.reboot, RB_HALT) == EPERM
    assert errno_of(user.spawn_kstack, "su", 0) == EPERM
    p.mkdir("/root", 0o700)
    assert errno_of(user.chdir, "/root") == EACCES
    assert errno_of(user.mkdir, "/home") == EACCES           # the root directory is 0755 root
    assert halted == []
    p.reboot(RB_HALT)
    assert halted == [RB_HALT]
    user.exit(0)


def test_sysctl_rows_set_and_the_tmpfs_reserve(sys_):
    k, p, *_ = sys_
    rows = dict(p.sysctl("vfs.tmpfs"))
    assert rows["vfs.tmpfs.memory_percent"] == "95"
    assert int(rows["vfs.tmpfs.memory_reserved"]) == TMPFS_PAGES_MINRESERVED * PAGE   # 16 MiB RAM: minimum
    assert p.sysctl("vfs.tmpfs.memory_percent", "50") == [("vfs.tmpfs.memory_percent", "95")]
    reserved = int(p.sysctl("vfs.tmpfs.memory_reserved")[0][1])
    assert reserved > TMPFS_PAGES_MINRESERVED * PAGE          # half of what was free at init
    assert errno_of(p.sysctl, "vfs.tmpfs.memory_reserved", str(PAGE)) == EINVAL   # below the minimum
    assert errno_of(p.sysctl, "vfs.tmpfs.memory_percent", "0") == EINVAL
    assert errno_of(p.sysctl, "vfs.tmpfs.memory_percent", "lots") == EINVAL
    assert errno_of(p.sysctl, "vfs.nothing") == ENOENT
    k.sysctl.add("kern.readonly_thing", "int", 5)
    assert errno_of(p.sysctl, "kern.readonly_thing", "6") == EPERM
    k.sysctl.add("kern.writable_thing", "int", 5, readonly=False)
    assert p.sysctl("kern.writable_thing", "6") == [("kern.writable_thing", "5")]
    assert p.sysctl("kern.writable_thing") == [("kern.writable_thing", "6")]


def test_securelevel_only_rises(sys_):
    k, p, *_ = sys_
    assert p.sysctl("kern.securelevel") == [("kern.securelevel", "-1")]
    p.sysctl("kern.securelevel", "1")
    assert k.securelevel == 1
    assert errno_of(p.sysctl, "kern.securelevel", "0") == EPERM


def test_kenv(sys_):
    _k, p, *_ = sys_
    assert p.kenv() == [("kern.hostname", "armboard")]
    assert p.kenv("kern.hostname") == [("kern.hostname", "armboard")]
    assert errno_of(p.kenv, "nope") == ENOENT
    p.kenv("hint.md.0.foo", "bar")
    assert ("hint.md.0.foo", "bar") in p.kenv()
    assert p.kenv("hint.md.0.foo", None, True) == [("hint.md.0.foo", "bar")]
    assert errno_of(p.kenv, "hint.md.0.foo", None, True) == ENOENT
    assert errno_of(p.kenv, "v", "x" * 129) == EINVAL         # KENV_MVALLEN


# ------------------------------------------------------------------ processes
def test_spawn_and_exit_take_and_give_back_a_kernel_stack(sys_):
    k, p, pages, pmap, *_ = sys_
    free, mapped = pages.free_count, len(pmap.mapped)
    p.mkdir("/work")
    p.chdir("/work")
    child = p.spawn_kstack("ls")
    assert child.pid == 2 and child.getcwd() == "/work" and child.uid == 0
    assert pages.free_count == free - KSTACK_PAGES and len(pmap.mapped) == mapped + KSTACK_PAGES
    child.write(1, b"from the child\n")
    child.exit(0)
    assert child.pid not in k.procs.procs and child.exited == 0
    assert pages.free_count == free and len(pmap.mapped) == mapped
    assert p.fds[1].refs == 3                                  # the parent's console is still open


def test_spawn_without_kva_is_enomem():
    k, p, *_ = kernel(kva=1 << 20)                              # one 1 MiB KVA chunk: 85 stacks
    children = []
    with pytest.raises(SysError) as exc:
        for _ in range(200):
            children.append(p.spawn_kstack("sleep"))
    assert exc.value.errno == ENOMEM and len(children) == (1 << 20) // (3 * PAGE) - 1
    children.pop().exit(0)
    children.append(p.spawn_kstack("sleep"))                   # an exited child's KVA is reusable


def test_time_geom_and_file_sink(sys_):
    k, p, *_rest, console = sys_
    assert p.time() == 0.0
    p.sleep(2.5)
    assert p.time() == 2.5 and k.clock.now() == 2.5
    assert errno_of(p.sleep, -1) == EINVAL
    k.mesh.md.attach(0, 1 << 20)
    assert p.geom_conf().startswith("0 MD md0 1048576 512")
    assert "Geom name: md0" in p.geom_list("md") and "Mediasize: 1048576 (1.0M)" in p.geom_list()
    assert errno_of(p.geom_list, "NOPE") == ENOENT
    assert errno_of(p.geom_conf, "confbad") == ENOENT
    p.file_sink(1).write(b"driver output\n")
    assert console[-1] == b"driver output\n"
