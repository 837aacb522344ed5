"""Physical memory: regions, file overlays that never change the user's file."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from board.memory import FileOverlay, PhysicalAbort, PhysicalMemory

BASE = 0x40000000


def test_overlay_is_copy_on_write(tmp_path):
    path = tmp_path / "img"
    data = bytes(range(256)) * 64 + b"tail"   # 16 KiB + 4 bytes: not a page multiple
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    mem = PhysicalMemory()
    mem.add_ram(BASE, 1 << 20, (FileOverlay(BASE + 0x8000, path),))
    kinds = [(r.base, r.kind) for r in mem.regions]
    assert kinds == [(BASE, "ram"), (BASE + 0x8000, "file"), (BASE + 0xC000, "ram")]
    assert mem.read(BASE + 0x8000, 16) == data[:16]
    mem.write(BASE + 0x8000, b"guest wrote this")
    assert mem.read(BASE + 0x8000, 16) == b"guest wrote this"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_nothing_behind_an_address_raises():
    mem = PhysicalMemory()
    mem.add_ram(BASE, 1 << 20)
    with pytest.raises(PhysicalAbort):
        mem.read(BASE + (1 << 20) - 2, 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, (1 << 20) - 64), st.binary(min_size=1, max_size=64))
def test_reads_return_what_was_written_across_regions(tmp_path_factory, offset, blob):
    path = tmp_path_factory.mktemp("ov") / "img"
    path.write_bytes(b"\0" * 8192)
    mem = PhysicalMemory()
    mem.add_ram(BASE, 1 << 20, (FileOverlay(BASE + 0x4000, path),))
    mem.write(BASE + offset, blob)
    assert mem.read(BASE + offset, len(blob)) == blob
