"""A small running kernel for the userland tests: the real Syscalls over a tmpfs root with devfs on /dev.

The VFS, tmpfs, devfs, the process table's kernel stacks (real KVA from a Vmem, real pages from a
PhysAllocator over RAM) and the virtual clock are the kernel's own. Only the page-table writes of a
kernel stack are skipped (`_UnmappedPmap`): nothing in userland reads them, and building the boot's
page tables would need a boot. The console is a byte buffer (`Board.console`) and a line source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from board.memory import PhysicalMemory
from kernel_sim.geom.core import Mesh
from kernel_sim.kern.md_glue import GuestVnode
from kernel_sim.kern.proc import ProcTable
from kernel_sim.kern.syscalls import Kernel, Syscalls, make_kernel
from kernel_sim.kern.sysctl import SysctlTree
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.vmem import Vmem

RAM_BASE = 0x4000_0000
RAM_SIZE = 64 << 20
KVA_BASE = 0xC100_0000


class _UnmappedPmap:
    def kenter_range(self, va: int, pas: list[int]) -> None:
        pass

    def kremove_range(self, va: int, size: int) -> None:
        pass


class _Kmem:
    """tmpfs's kmem charges (charge/uncharge by malloc type) with a byte limit."""

    def __init__(self, limit: int = 8 << 20) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, mtype: str, nbytes: int) -> bool:
        if self.used + nbytes > self.limit:
            return False
        self.used += nbytes
        return True

    def uncharge(self, mtype: str, nbytes: int) -> None:
        self.used -= nbytes


@dataclass
class Board:
    kernel: Kernel
    init: Syscalls
    console: bytearray
    stdin: bytearray = field(default_factory=bytearray)
    reboots: list[int] = field(default_factory=list)

    def text(self) -> str:
        """The console output so far (and forget it)."""
        out = self.console.decode("utf-8", "replace")
        self.console.clear()
        return out

    def run(self, script: str, name: str = "/etc/rc") -> tuple[int, str]:
        from kernel_sim.userland.sh import Shell

        status = Shell(self.init, name).run_script(script)
        return status, self.text()

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        from kernel_sim.kern.sysapi import O_CREAT, O_TRUNC, O_WRONLY

        raw = data.encode() if isinstance(data, str) else data
        fd = self.init.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        self.init.write(fd, raw)
        self.init.close(fd)

    def read_file(self, path: str) -> bytes:
        from kernel_sim.userland.commands._util import read_path

        return read_path(self.init, path)


def make_board(*, kva: int = 16 << 20, sysctl: SysctlTree | None = None, kenv: dict[str, str] | None = None,
               md: bool = False) -> Board:
    phys = PhysicalMemory()
    phys.add_ram(RAM_BASE, RAM_SIZE)
    pages = PhysAllocator(phys, RAM_BASE, RAM_BASE + RAM_SIZE)
    kernel_map = Vmem("kernel_map", KVA_BASE, kva)
    arena = Vmem("kernel arena")
    procs = ProcTable(kernel_map, arena, _UnmappedPmap(), pages, lambda _s: None, KVA_BASE - 0x3000)  # type: ignore
    console = bytearray()
    stdin = bytearray()
    reboots: list[int] = []

    def console_read(size: int) -> bytes:
        chunk = bytes(stdin[:size])
        del stdin[:size]
        return chunk

    mesh = Mesh()
    if md:
        from kernel_sim.dev.md import MdDriver
        from kernel_sim.geom.md import MdClass  # noqa: F401  (the MD class the driver publishes through)

        counter = iter(range(1, 1 << 30))
        mesh.md = MdDriver(mesh, sector_alloc=lambda n, z: next(counter), sector_free=lambda h: None,
                           vnode_open=lambda path, writable: GuestVnode(kernel.vfs, path, writable))
    kernel = make_kernel(mesh, pages=pages, kmem=_Kmem(), procs=procs, sysctl=sysctl, kenv=kenv,
                         console_read=console_read, console_write=console.extend, reboot=reboots.append)
    kernel.vfs.mount("tmpfs", "/", {})
    for d in ("/dev", "/etc", "/mnt", "/root"):
        kernel.vfs.mkdir(d, 0o755)
    kernel.vfs.mkdir("/tmp", 0o1777)
    kernel.vfs.mount("devfs", "/dev", {})
    procs.fork(0, "init")
    init = Syscalls.for_init(kernel)
    return Board(kernel, init, console, stdin, reboots)


@pytest.fixture
def board() -> Board:
    return make_board()


@pytest.fixture
def make() -> Callable[..., Board]:
    return make_board
