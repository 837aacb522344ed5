"""The UZIP and UNCOMPRESS classes in a GEOM graph: a damaged image is a taste that finds nothing or a
read that fails with the class's errno and one console line, never an exception out of the kernel."""

from __future__ import annotations

import functools
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.fs.devfs import DiskFile
from kernel_sim.geom.core import Mesh
from kernel_sim.geom.disk import DiskClass, DiskDriver
from kernel_sim.geom.uzip import CompressedClass
from kernel_sim.geom.uzip_format import HEADER_SIZE, write_image
from kernel_sim.kern.sysapi import O_RDONLY, SysError

ROOTFS = Path(__file__).resolve().parents[3] / "images" / "rootfs.img"


@functools.cache
def rootfs_image() -> bytes:
    """`armboard mkuzip images/rootfs.img`: what the bad-input campaign damaged (a function, not a
    fixture, so that hypothesis does not print 7 KiB with every example)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rootfs.img.uzip"
        write_image(ROOTFS, out)
        return out.read_bytes()


@pytest.fixture
def rootfs_uzip() -> bytes:
    return rootfs_image()


def graph(image: bytes, *flavours: str) -> tuple[Mesh, list[str]]:
    """A mesh with the given classes and a 512-byte-sector disk md1 holding ``image``."""
    lines: list[str] = []
    mesh = Mesh(printf=lines.append)
    for flavour in flavours:
        mesh.add_class(CompressedClass(flavour))
    data = bytearray(image) + bytes(-len(image) % 512)
    disk = DiskClass()
    mesh.add_class(disk)
    disk.create(mesh, DiskDriver("md", 1, len(data), 512, lambda o, n: bytes(data[o:o + n]), lambda o, b: None))
    return mesh, lines


def test_a_damaged_first_offset_is_eio_and_one_console_line(rootfs_uzip) -> None:
    """Bytes 136-143 (offsets table entry 0) set to 0x7f: UNCOMPRESS takes the image (it does not check
    the table at taste), its own taste of md1.uncompress reads cluster 0 and finds nothing, and the
    guest's read(2) gets EIO with a console line naming the provider, the cluster and the entry."""
    damaged = bytearray(rootfs_uzip)
    damaged[136:144] = b"\x7f" * 8
    mesh, lines = graph(bytes(damaged), "uzip", "uncompress")     # GENERIC-VIRT + both classes
    assert mesh.provider("md1.uzip") is None                        # UZIP checks the table at taste
    assert mesh.provider("md1.uncompress") is not None
    assert mesh.provider("md1.uncompress.uncompress") is None
    lines.clear()
    f = DiskFile(mesh, "md1.uncompress", O_RDONLY)
    with pytest.raises(SysError) as info:
        f.read(0, 65536)
    assert info.value.errno == 5
    assert lines == ["md1.uncompress: cluster #0: offsets table entry 0 at byte 136 says its compressed data "
                     f"starts at {0x7f7f7f7f7f7f7f7f}, past the media ({len(damaged)} bytes): error 5\n"]
    f.close()


def test_an_entry_that_ends_before_it_starts_names_the_next_entry(rootfs_uzip) -> None:
    damaged = bytearray(rootfs_uzip)
    first = struct.unpack_from(">Q", damaged, HEADER_SIZE)[0]
    struct.pack_into(">Q", damaged, HEADER_SIZE + 8, first - 1)     # entry 1 before entry 0
    mesh, lines = graph(bytes(damaged), "uncompress")
    lines.clear()
    with pytest.raises(SysError) as info:
        DiskFile(mesh, "md1.uncompress", O_RDONLY).read(0, 512)
    assert info.value.errno == 5
    assert len(lines) == 1 and "offsets table entry 1 at byte 144 says its compressed data ends at " \
                               f"{first - 1}, before it starts at {first}" in lines[0]


# --- fuzzing: the GEOM classes over hostile images ------------------------------------------------------

damage = st.lists(st.one_of(
    st.tuples(st.just("byte"), st.integers(0, 2047), st.integers(0, 255)),
    st.tuples(st.just("entry"), st.integers(0, 40), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("cut"), st.integers(0, 8000), st.just(0)),
), min_size=1, max_size=4)


def damaged_copy(image: bytes, changes) -> bytes:
    b = bytearray(image)
    for kind, where, value in changes:
        if kind == "byte" and where < len(b):
            b[where] = value
        elif kind == "entry" and HEADER_SIZE + 8 * where + 8 <= len(b):
            struct.pack_into(">Q", b, HEADER_SIZE + 8 * where, value)
        elif kind == "cut":
            del b[max(1, where):]
    return bytes(b)


@settings(max_examples=60, deadline=None)
@given(changes=damage)
def test_fuzz_taste_and_read_never_raise_past_the_read_path(changes) -> None:
    """Every provider the classes publish reads, cluster by cluster, as data or as a SysError with the
    class's errno (EIO, EILSEQ, EINVAL) and its console line, last after the decompressor's own printf
    (g_uzip_zlib.c's "inflate() failed"), if any; tasting never raises."""
    mesh, lines = graph(damaged_copy(rootfs_image(), changes), "uzip", "uncompress")
    for name in ("md1.uzip", "md1.uncompress"):
        pp = mesh.provider(name)
        if pp is None:
            continue
        f = DiskFile(mesh, name, O_RDONLY)
        for offset in range(0, min(pp.mediasize, 16 * 16384), 16384):
            lines.clear()
            try:
                assert len(f.read(offset, 16384)) == min(16384, pp.mediasize - offset)
            except SysError as exc:
                assert exc.errno in (5, 22, 86)
                assert 1 <= len(lines) <= 2 and lines[-1].startswith(f"{name}: cluster #") and lines[-1].endswith(
                    f": error {exc.errno}\n")
        f.close()


def test_map_over_a_provider_whose_reads_fail_finds_nothing_instead_of_raising(rootfs_uzip) -> None:
    """geom_map's search reads through g_read_data; a read that fails (here: md1.uncompress's cluster 0
    behind a damaged table) is a key not found, not an exception out of the taste."""
    from kernel_sim.geom.map import MapClass
    from kernel_sim.loader.hints import parse_hints_text

    damaged = bytearray(rootfs_uzip)
    damaged[136:144] = b"\x7f" * 8
    hints = parse_hints_text('hint.map.0.at="md1.uncompress"\nhint.map.0.start=0\n'
                             'hint.map.0.end="search:0:0x200:KEY"\nhint.map.0.name="part"\n', "device.hints")
    lines: list[str] = []
    mesh = Mesh(printf=lines.append)
    mesh.add_class(CompressedClass("uncompress"))
    mesh.add_class(MapClass(hints))
    data = damaged + bytes(-len(damaged) % 512)
    disk = DiskClass()
    mesh.add_class(disk)
    disk.create(mesh, DiskDriver("md", 1, len(data), 512, lambda o, n: bytes(data[o:o + n]), None))
    assert mesh.provider("md1.uncompress") is not None
    assert mesh.provider("map/part") is None
    assert "MAP: No valid partition found at md1.uncompress\n" in lines
