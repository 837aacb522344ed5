"""The GEOM graph: access counts and their rules, tasting, orphaning, and the three dumps."""

from __future__ import annotations

import io
import re

import pytest

from kernel_sim.geom.core import EPERM, EROFS, GeomError, Mesh
from kernel_sim.geom.disk import DiskClass, DiskDriver
from kernel_sim.geom.uzip import CompressedClass
from kernel_sim.geom.uzip_format import write_image


def ram_disk(mesh: Mesh, data: bytearray, name: str = "ada", sectorsize: int = 512):
    def write(offset: int, chunk: bytes) -> None:
        data[offset:offset + len(chunk)] = chunk

    disk = DiskClass()
    mesh.add_class(disk)
    return disk, disk.create(mesh, DiskDriver(name, 0, len(data), sectorsize,
                                              lambda o, n: bytes(data[o:o + n]), write))


def test_access_counts_and_exclusive_rules():
    mesh = Mesh()
    _disk, pp = ram_disk(mesh, bytearray(64 * 1024))
    reader = mesh.open("ada0")
    writer = mesh.open("ada0", write=True)
    assert (pp.acr, pp.acw, pp.ace) == (2, 1, 0)
    assert reader.access(0, 0, 1) == EPERM             # exclusive while someone else writes
    mesh.close(writer)
    assert reader.access(0, 0, 1) == 0                 # now possible
    with pytest.raises(GeomError) as err:
        mesh.open("ada0", write=True)                  # writing while someone holds it exclusively
    assert err.value.errno == EPERM
    assert reader.access(-5, 0, 0) != 0 and reader.acr == 1   # counts never go negative
    mesh.close(reader)
    assert (pp.acr, pp.acw, pp.ace) == (0, 0, 0)


def test_io_checks_sectors_and_bounds():
    mesh = Mesh()
    ram_disk(mesh, bytearray(range(256)) * 16)
    cp = mesh.open("ada0", write=True)
    cp.write(512, b"\x01" * 512)
    assert cp.read(512, 4 * 128)[:4] == b"\x01" * 4
    for offset, length in ((1, 512), (0, 100), (4096, 512)):
        with pytest.raises(GeomError):
            cp.read(offset, length)


def uzip_image(clusters: int = 8) -> bytes:
    raw = b"".join(f"cluster {i}\n".encode().ljust(16384, b"x") for i in range(clusters))
    out = io.BytesIO()
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.uzip"
        write_image(io.BytesIO(raw), path, compressor="zlib")
        out.write(path.read_bytes())
    return out.getvalue()


def test_uzip_tastes_a_disk_and_corrupt_blocks_are_eilseq():
    image = bytearray(uzip_image())
    image += bytes(-len(image) % 512)
    lines: list[str] = []
    mesh = Mesh(printf=lines.append)
    mesh.add_class(CompressedClass("uzip"))
    ram_disk(mesh, image)
    pp = mesh.provider("ada0.uzip")
    assert pp is not None and pp.mediasize == 8 * 16384 and pp.sectorsize == 512
    cp = mesh.open("ada0.uzip")
    assert cp.read(0, 512).startswith(b"cluster 0\n")
    with pytest.raises(GeomError) as err:
        mesh.open("ada0.uzip", write=True)
    assert err.value.errno == EROFS
    # damage the compressed bytes of cluster 3 (after the header and the offset table)
    start = 136 + 9 * 8 + 3 * 40
    image[start:start + 64] = bytes(64)
    with pytest.raises(GeomError) as err:
        cp.read(3 * 16384, 16384)
    assert err.value.errno in (86, 22)                # EILSEQ, or EINVAL if the damage hit a length


def test_orphaning_takes_the_children_away():
    mesh = Mesh()
    mesh.add_class(CompressedClass("uzip"))
    image = bytearray(uzip_image())
    image += bytes(-len(image) % 512)
    _disk, pp = ram_disk(mesh, image)
    assert mesh.provider("ada0.uzip") is not None
    mesh.orphan(pp)
    assert mesh.provider("ada0") is None and mesh.provider("ada0.uzip") is None


def test_confxml_and_confdot_describe_the_same_graph():
    mesh = Mesh()
    mesh.add_class(CompressedClass("uzip"))
    image = bytearray(uzip_image())
    image += bytes(-len(image) % 512)
    ram_disk(mesh, image)
    cp = mesh.open("ada0.uzip")
    xml = mesh.confxml()
    assert xml.startswith("<mesh>") and xml.rstrip().endswith("</mesh>")
    assert "<name>ada0.uzip</name>" in xml and "<mode>r1w0e0</mode>" in xml
    assert xml.count("<provider id=") == 2
    dot = mesh.confdot()
    assert dot.startswith("digraph geom {") and dot.rstrip().endswith("}")
    assert len(re.findall(r"shape=hexagon", dot)) == 2 and len(re.findall(r"shape=box", dot)) == 2
    mesh.close(cp)
    assert mesh.conftxt().splitlines() == [f"0 DISK ada0 {len(image)} 512 hd 0 sc 0",
                                           "1 UZIP ada0.uzip 131072 512"]
