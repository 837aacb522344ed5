"""geom_map(4)'s example on the `embedded` board: the man page's kern.geom.conftxt, and upgrades.

The flash is built by `armboard flash build` from images/geom_map-example, with a real cloop image
as the rootfs (so UNCOMPRESS finds it), probed by the CFI disk driver over the bus, split by MAP
from the example's hints; md0 is a 10 MiB malloc disk as in the man page.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest

from board.devices.flash_image import FlashImage
from board.machine import Machine
from board.profile import load_profile
from kernel_sim.dev.cfi import CfiDriver
from kernel_sim.geom.core import EPERM, EROFS, GeomError, Mesh
from kernel_sim.geom.disk import DiskClass, DiskDriver
from kernel_sim.geom.map import MapClass
from kernel_sim.geom.md import MdClass, MdUnit
from kernel_sim.geom.uzip import CompressedClass
from kernel_sim.geom.uzip_format import write_image
from kernel_sim.loader.hints import parse_hints
from tools.flash_cmd import build_image, layout_hints, load_layout

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT.parent / "shared" / "seeds" / "geom_map.4.txt"
FLASH_BASE = 0x1F000000
ROOTFS = 0x150000
MAN_PAGE_CONFTXT = [
    "0 MD md0 10485760 512 u 0 s 512 f 0 fs 0 l 10485760 t malloc",
    "0 DISK cfid0 8388608 4 hd 0 sc 0",
    "1 MAP map/config 131072 4 i 5 o 8257536 entry 0 dsize 131072",
    "1 MAP map/rootfs 6881280 4 i 4 o 1376256 entry 0 dsize 6881280",
    "2 UNCOMPRESS map/rootfs.uncompress 18677760 512",
    "1 MAP map/kernel 1114112 4 i 3 o 262144 entry 0 dsize 1114112",
    "1 MAP map/upgrade 7995392 4 i 2 o 262144 entry 0 dsize 7995392",
    "1 MAP map/factory 65536 4 i 1 o 196608 entry 0 dsize 65536",
    "1 MAP map/bootloader 196608 4 i 0 o 0 entry 0 dsize 196608",
]


@pytest.fixture
def example(tmp_path):
    """The example flash file with a real cloop rootfs of 285 x 64 KiB (18677760 bytes) clusters."""
    layout = load_layout(ROOT / "images" / "geom_map-example" / "layout.toml")
    flash = build_image(layout)
    raw = bytearray(18677760)
    for i in range(0, len(raw), 65536):
        raw[i:i + 32] = f"rootfs cluster {i // 65536:08d}\n".encode().ljust(32)
    cloop = tmp_path / "rootfs.uncompress"
    write_image(io.BytesIO(bytes(raw)), cloop, compressor="zlib", cluster=65536)
    data = cloop.read_bytes()
    assert data.startswith(b"#!/bin/sh\n#V2.0 Format\n") and len(data) < 0x690000
    flash[ROOTFS:ROOTFS + len(data)] = data
    path = tmp_path / "flash.img"
    path.write_bytes(bytes(flash))
    hints = tmp_path / "device.hints"
    hints.write_text(layout_hints(layout))
    return path, hints, bytes(raw)


def boot_geom(flash_path: Path, hints_path: Path, lines: list[str]):
    image = FlashImage.open(flash_path, durable=False)     # MAP_SHARED: a killed process loses nothing
    machine = Machine(load_profile("embedded"), 64 << 20, flash_images={"flash0": image})
    mesh = Mesh(printf=lines.append)
    for cls in (DiskClass(), MdClass(), MapClass(parse_hints(hints_path), bootverbose=True),
                CompressedClass("uncompress")):
        mesh.add_class(cls)
    md = bytearray(10485760)

    def md_write(offset: int, data: bytes) -> None:
        md[offset:offset + len(data)] = data

    mesh.classes[1].create(mesh, MdUnit(0, 0, len(md), 512, lambda o, n: bytes(md[o:o + n]), md_write))
    cfi = CfiDriver(machine, FLASH_BASE)
    mesh.classes[0].create(mesh, DiskDriver("cfid", 0, cfi.chip.size, cfi.sectorsize, cfi.read, cfi.write))
    return machine, mesh


def test_conftxt_is_the_man_pages(example):
    flash, hints, _raw = example
    lines: list[str] = []
    _machine, mesh = boot_geom(flash, hints, lines)
    assert mesh.conftxt().splitlines() == MAN_PAGE_CONFTXT
    if SEED.exists():   # the same lines, read out of the seed itself
        seed = [re.sub(r"\s+", " ", line.strip()) for line in SEED.read_text().splitlines()
                if re.match(r"^\s+\d (MD|DISK|MAP|UNCOMPRESS)\s", line)]
        assert seed == MAN_PAGE_CONFTXT
    text = "".join(lines)
    assert 'MAP: cfid0: 150000x690000, data=0x690000 "/dev/map/rootfs"' in text
    assert "map/rootfs: GEOM_UZIP image found" in text or "map/rootfs" in text


def test_uncompressed_rootfs_reads_back_and_refuses_writes(example):
    flash, hints, raw = example
    _machine, mesh = boot_geom(flash, hints, [])
    cp = mesh.open("map/rootfs.uncompress")
    assert cp.read(0, 65536) == raw[:65536]
    assert cp.read(284 * 65536, 65536) == raw[284 * 65536:]
    with pytest.raises(GeomError) as err:
        mesh.open("map/rootfs.uncompress", write=True)
    assert err.value.errno == EROFS


def test_upgrade_changes_only_its_blocks_and_the_bootloader_is_protected(example):
    flash, hints, _raw = example
    before = flash.read_bytes()
    _machine, mesh = boot_geom(flash, hints, [])
    with pytest.raises(GeomError) as err:
        mesh.open("map/bootloader", write=True)
    assert err.value.errno == EPERM
    assert flash.read_bytes() == before                   # nothing reached the file
    cp = mesh.open("map/upgrade", write=True)
    new_kernel = b"armboard upgraded kernel\n".ljust(65536, b"\xa5")
    cp.write(0, new_kernel)                               # the first block of the upgrade slice
    after = flash.read_bytes()
    assert after[0x40000:0x50000] == new_kernel           # the flash file has the program
    changed = [b for b in range(0, len(after), 0x10000) if after[b:b + 0x10000] != before[b:b + 0x10000]]
    assert changed == [0x40000]                           # one erase block, nothing else
    assert hashlib.sha256(after[:0x40000]).digest() == hashlib.sha256(before[:0x40000]).digest()
    assert mesh.open("map/kernel").read(0, 28) == new_kernel[:28]


def test_booted_kernel_splits_the_flash_and_upgrades_through_the_monitor(tmp_path, capsys):
    from tools.cli import main

    flash, hints = tmp_path / "flash.img", tmp_path / "flash.img.hints"
    assert main(["flash", "build", str(ROOT / "images" / "geom_map-example" / "layout.toml"), "-o", str(flash)]) == 0
    before = flash.read_bytes()
    update = tmp_path / "kernel.bin"
    update.write_bytes(b"upgraded kernel!" * 4)
    console = tmp_path / "console.txt"
    code = main(["boot", "--board", "embedded", "--kernconf", str(ROOT / "images" / "EMBEDDED"),
                 "--flash", f"flash0={flash}", "--hints", str(hints), "-v", "--console", str(console),
                 "-x", "sysctl kern.geom.conftxt", "-x", "geom map list",
                 "-x", f"provider write map/upgrade 0 {update}", "-x", "provider read map/kernel 0 16"])
    out = capsys.readouterr().out
    assert code == 0
    text = console.read_text()
    assert "cfi0: <AMD/Fujitsu - 8MB> at 0x1f000000" in text and "cfid0 on cfi0" in text
    assert 'MAP: cfid0: 150000x690000, data=0x690000 "/dev/map/rootfs"' in text
    assert "1 MAP map/bootloader 196608 4 i 0 o 0 entry 0 dsize 196608" in out
    assert "Name: map/upgrade" in out
    assert "00000000: 75 70 67 72 61 64 65 64" in out          # "upgraded" read back through map/kernel
    after = flash.read_bytes()
    assert after[0x40000:0x40040] == update.read_bytes()
    assert [b for b in range(0, len(after), 0x10000) if after[b:b + 0x10000] != before[b:b + 0x10000]] == [0x40000]
    code = main(["boot", "--board", "embedded", "--kernconf", str(ROOT / "images" / "EMBEDDED"),
                 "--flash", f"flash0={flash}", "--hints", str(hints), "--console", str(console),
                 "-x", f"provider write map/bootloader 0 {update}"])
    captured = capsys.readouterr()
    # a refusal is a result (exit status of the boot, 0), with FreeBSD's errno text and name
    assert code == 0 and captured.err == ""
    assert "provider write: map/bootloader: open for write: Operation not permitted (EPERM)" \
        in captured.out
    assert flash.read_bytes() == after


def test_flash_image_of_the_wrong_size_is_an_input_error(tmp_path, capsys):
    from tools.cli import main

    bad = tmp_path / "small.img"
    bad.write_bytes(b"\xff" * 4096)
    assert main(["boot", "--board", "embedded", "--flash", f"flash0={bad}"]) == 2
    err = capsys.readouterr().err
    assert "flash bank flash0 is exactly 8388608 bytes" in err
    assert main(["boot", "--board", "embedded", "--flash", f"flash9={bad}"]) == 2
    assert "no flash bank flash9" in capsys.readouterr().err


def test_flash_map_offline_splits_as_the_booted_kernel(tmp_path, capsys):
    from tools.cli import main

    flash, hints = tmp_path / "flash.img", tmp_path / "flash.img.hints"
    assert main(["flash", "build", str(ROOT / "images" / "geom_map-example" / "layout.toml"), "-o", str(flash)]) == 0
    capsys.readouterr()
    assert main(["flash", "map", str(flash), "--hints", str(hints), "--profile", "embedded"]) == 0
    offline = [line for line in capsys.readouterr().out.splitlines() if re.match(r"^\d (DISK|MAP) ", line)]
    assert main(["boot", "--board", "embedded", "--kernconf", str(ROOT / "images" / "EMBEDDED"), "--flash",
                 f"flash0={flash}", "--hints", str(hints), "--console", "/dev/null",
                 "-x", "sysctl kern.geom.conftxt"]) == 0
    booted = capsys.readouterr().out.replace("kern.geom.conftxt: ", "").splitlines()
    booted = [line for line in booted if re.match(r"^\d (DISK|MAP) ", line)]
    assert offline == booted and len(offline) == 7
