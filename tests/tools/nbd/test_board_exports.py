"""The board's storage over NBD, in-process: flash banks (file and NOR mode), RAM, swap, md units and
GEOM providers of a booted `embedded` board (geom_map(4)'s flash), and Giant between them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from board.devices.cfi import LOCKED
from kernel_sim import boot as boot_mod
from tools import cli
from tools.nbd import protocol as p
from tools.nbd.board_exports import BoardExports
from tools.nbd.client import NbdClient
from tools.nbd.giant import Giant
from tools.nbd.server import Address, NbdServer

ROOT = Path(__file__).resolve().parents[3]
KERNEL = 0x40000                  # map/kernel in the example flash
MIB = 1 << 20


class Board:
    """A booted embedded board, its exports served on a unix socket, Giant held by this thread."""

    def __init__(self, tmp_path: Path, *, mem_rw: bool = False, swap: str | None = None,
                 md_vnodes: tuple[str, ...] = ()) -> None:
        self.flash = tmp_path / "flash.img"
        assert cli.main(["flash", "build", str(ROOT / "images/geom_map-example/layout.toml"), "-o",
                         str(self.flash)]) == 0
        request = boot_mod.BootRequest(board="embedded", kernconf=ROOT / "images/EMBEDDED",
                                       flash=[("flash0", self.flash)], hints=tmp_path / "flash.img.hints",
                                       swap=swap, md_vnodes=list(md_vnodes))
        prepared = boot_mod.prepare(request)
        self.giant = Giant()
        self.giant.hold()
        self.exports = BoardExports(self.giant, mem_rw=mem_rw)
        self.machine = boot_mod.build_machine(prepared)
        self.exports.attach_machine(self.machine)
        self.result = boot_mod.run(prepared, self.machine)
        assert self.result.exit_code == 0, self.result.message
        self.exports.attach_kernel(self.result.startup)
        self.log: list[str] = []
        self.sock = tmp_path / "board.sock"
        self.server = NbdServer(self.exports.catalogue, Address(path=str(self.sock)), log=self.log.append,
                                giant=self.giant)
        self.server.start()

    @property
    def mesh(self):
        return self.result.startup.geom

    def client(self, name: str) -> NbdClient:
        with self.giant.released():
            c = NbdClient.connect(str(self.sock))
            c.go(name)
        return c

    def close(self) -> None:
        self.server.stop()
        self.giant.drop()


@pytest.fixture
def board(tmp_path):
    boards: list[Board] = []

    def make(**kwargs) -> Board:
        boards.append(Board(tmp_path, **kwargs))
        return boards[-1]

    yield make
    for b in boards:
        b.close()


def test_the_exports_of_a_booted_board(board) -> None:
    b = board()
    with b.giant.released():
        c = NbdClient.connect(str(b.sock))
        c.greet()
        names = [r.data[4:4 + p.U32.unpack_from(r.data)[0]].decode()
                 for r in c.option_replies(p.NBD_OPT_LIST)[:-1]]
    assert names[:3] == ["flash0", "mem", "md0"]
    assert {"cfid0", "map/bootloader", "map/kernel", "map/rootfs", "map/config", "map/rootfs.uzip"} <= set(names)
    assert names.count("md0") == 1             # the md unit, not its GEOM provider again


def test_flash_writes_go_straight_to_the_image_file(board) -> None:
    b = board()
    c = b.client("flash0")
    assert c.size == 8 * MIB and c.block_size == (4, 4096, 32 * MIB)
    assert c.flags & p.NBD_FLAG_CAN_MULTI_CONN and not c.flags & p.NBD_FLAG_READ_ONLY
    data = os.urandom(8192)
    with b.giant.released():
        assert c.write(KERNEL, data).error == 0
        # The guest's memory and the file hold it as soon as the reply is in (a killed board loses nothing).
        assert bytes(b.machine.flash["flash0"].device.array[KERNEL:KERNEL + 8192]) == data
        with open(b.flash, "rb") as f:
            f.seek(KERNEL)
            assert f.read(8192) == data
        assert c.call(p.NBD_CMD_FLUSH).error == 0
        assert c.write(KERNEL, data[:8], flags=p.NBD_CMD_FLAG_FUA).error == 0
        assert c.write(KERNEL + 2, b"abcd").error == p.NBD_EINVAL      # not a multiple of the 4-byte bank width
        assert c.read(KERNEL, 8192).data == data
        assert c.call(p.NBD_CMD_WRITE_ZEROES, KERNEL, 4096).error == 0
        assert c.read(KERNEL, 4096).data == bytes(4096)
    # The kernel reads the new bytes through GEOM and the cfi driver, with no remount of anything.
    cp = b.mesh.open("map/kernel")
    assert cp.read(4096, 4096) == data[4096:]
    b.mesh.close(cp)


def test_nor_mode_writes_through_the_chip_and_respects_protection(board) -> None:
    b = board()
    dev = b.machine.flash["flash0"].device
    c = b.client("flash0,mode=nor")
    assert c.block_size == (4, 65536, 32 * MIB)             # preferred: the erase block
    assert c.flags & p.NBD_FLAG_SEND_TRIM
    data = os.urandom(256)
    with b.giant.released():
        assert c.write(KERNEL + 1024, data).error == 0       # erase and program of the block, as cfid does
        assert c.read(KERNEL + 1024, 256).data == data
        assert c.call(p.NBD_CMD_TRIM, KERNEL, 0x10000 + 4096).error == 0   # erases the one whole block
        assert c.read(KERNEL, 0x10000).data == b"\xff" * 0x10000
    assert dev.in_read_array
    dev.set_lock(dev.geometry.block_at(KERNEL)[0], LOCKED)   # AMD sector protection, set by the host
    with b.giant.released():
        r = c.write(KERNEL, b"\0" * 16)
        assert r.error == p.NBD_EIO and "did not take" in r.message
    assert bytes(dev.array[KERNEL:KERNEL + 16]) == b"\xff" * 16
    with b.giant.released():
        assert c.call(p.NBD_CMD_WRITE_ZEROES, KERNEL, 4, flags=p.NBD_CMD_FLAG_FAST_ZERO).error == p.NBD_ENOTSUP
        bad = NbdClient.connect(str(b.sock))
        bad.greet()
        assert bad.option_replies(p.NBD_OPT_GO, p.info_request("flash0,mode=fast"))[-1].type == p.NBD_REP_ERR_UNKNOWN


def test_geom_providers_read_only_where_geom_says_so(board) -> None:
    b = board()
    boot = b.client("map/bootloader")
    kernel = b.client("map/kernel")
    assert boot.flags & p.NBD_FLAG_READ_ONLY and not kernel.flags & p.NBD_FLAG_READ_ONLY
    assert boot.block_size == (4, 4096, 32 * MIB)
    image = os.urandom(64 << 10)
    with b.giant.released():
        r = boot.write(0, b"evil")
        assert r.error == p.NBD_EPERM
        assert kernel.write(0, image).error == 0
        assert kernel.read(0, len(image)).data == image
        assert kernel.call(p.NBD_CMD_FLUSH).error == 0
    assert b.flash.read_bytes()[KERNEL:KERNEL + len(image)] == image
    assert b.flash.read_bytes()[:4] != b"evil"
    uzip = b.client("map/rootfs.uzip")
    assert uzip.flags & p.NBD_FLAG_READ_ONLY                   # UZIP refuses write opens (EROFS)
    with b.giant.released():
        assert uzip.read(0, 512).error == 0
        uzip.disconnect()
    # While connected, each holds an open of its provider, as a process with /dev/map/kernel open would.
    assert b.mesh.provider("map/kernel").acw == 1 and b.mesh.provider("map/bootloader").acw == 0
    with b.giant.released():
        for c in (boot, kernel):
            c.disconnect()
        while b.server.clients():
            threading.Event().wait(0.01)
    assert b.mesh.provider("map/kernel").acw == 0


def test_a_read_only_md_is_served_read_only(board, tmp_path) -> None:
    from kernel_sim.dev.md import MD_READONLY, MD_VNODE

    host = tmp_path / "ro.img"
    host.write_bytes(b"r" * MIB)
    b = board(md_vnodes=(str(host),))                       # --md-vnode FILE: read-only unless :rw
    unit = next(u for u, sc in b.mesh.md.units.items() if sc.type == MD_VNODE)
    assert b.mesh.md.units[unit].flags & MD_READONLY
    c = b.client(f"md{unit}")
    assert c.flags & p.NBD_FLAG_READ_ONLY                   # md's GEOM class refuses write opens (EROFS)
    with b.giant.released():
        assert c.read(0, 512).data == b"r" * 512
        assert c.write(0, bytes(512)).error == p.NBD_EPERM
    assert host.read_bytes() == b"r" * MIB


def test_md_units_report_their_holes_and_trim_frees(board) -> None:
    from kernel_sim.dev.md import MD_AUTOUNIT, MD_MALLOC

    b = board()
    unit = b.mesh.md.attach(MD_MALLOC, 8 * MIB, options=MD_AUTOUNIT)
    c = b.client(f"md{unit}")
    assert c.block_size == (512, 4096, 32 * MIB) and c.flags & p.NBD_FLAG_SEND_TRIM
    hz = p.NBD_STATE_HOLE | p.NBD_STATE_ZERO
    with b.giant.released():
        assert c.block_status(0, 8 * MIB).extents == [(8 * MIB, hz)]
        assert c.write(MIB, b"m" * 4096).error == 0
        assert c.block_status(0, 8 * MIB).extents == [(MIB, hz), (4096, 0), (7 * MIB - 4096, hz)]
        assert c.call(p.NBD_CMD_TRIM, MIB, 4096).error == 0
        assert c.block_status(0, 8 * MIB).extents == [(8 * MIB, hz)]
        assert c.call(p.NBD_CMD_WRITE_ZEROES, 0, 4096, flags=p.NBD_CMD_FLAG_FAST_ZERO).error == 0
        assert c.read(MIB, 512).data == bytes(512)
    assert b.mesh.md.malloc_sectors(unit) == 0
    # The preloaded root md0 is data throughout and cannot be trimmed.
    root = b.client("md0")
    assert not root.flags & p.NBD_FLAG_SEND_TRIM
    with b.giant.released():
        assert root.block_status(0, 4096).extents[0][1] == 0
        assert root.read(0, 4096).error == 0


def test_mem_is_read_only_unless_asked_and_swap_is_served_read_only(board) -> None:
    b = board(mem_rw=False, swap="16m:sparse")
    base = b.machine.profile.ram_base
    c = b.client("mem")
    assert c.size == b.machine.ram_size and c.flags & p.NBD_FLAG_READ_ONLY
    with b.giant.released():
        assert c.read(0x10000, 4096).data == b.machine.phys.read(base + 0x10000, 4096)
        assert c.write(0, b"x").error == p.NBD_EPERM
    s = b.client("swap")
    assert s.size == 16 * MIB and s.flags & p.NBD_FLAG_READ_ONLY
    with b.giant.released():
        assert s.block_status(0, 16 * MIB).error == 0


def test_mem_rw_writes_guest_ram(board) -> None:
    b = board(mem_rw=True)
    base = b.machine.profile.ram_base
    c = b.client("mem")
    assert not c.flags & p.NBD_FLAG_READ_ONLY
    with b.giant.released():
        assert c.write(b.machine.ram_size - 4096, b"ram!" * 1024).error == 0
        assert c.read(b.machine.ram_size - 1, 2).error == p.NBD_EINVAL     # past the end of RAM
    assert b.machine.phys.read(base + b.machine.ram_size - 4096, 4) == b"ram!"


def test_kernel_objects_wait_for_giant(board) -> None:
    """A GEOM read from a server thread cannot run while this (the kernel's) thread holds Giant."""
    b = board()
    with b.giant.released():
        c = NbdClient.connect(str(b.sock))
    done = threading.Event()

    def handshake() -> None:
        c.go("map/kernel")                     # opening the provider needs Giant
        done.set()

    t = threading.Thread(target=handshake)
    t.start()
    t.join(0.3)
    assert not done.is_set()                   # still waiting: the kernel thread holds Giant
    with b.giant.released():
        t.join(10)
    assert done.is_set()
