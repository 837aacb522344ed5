"""The guest build: reproducible, cached, and carrying what the loader needs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kernel_sim.guest import build


def test_two_fresh_builds_are_byte_identical(tmp_path):
    digests = []
    for n in range(2):
        out = tmp_path / f"b{n}"
        out.mkdir()
        build.compile_elf(out / "kernel.elf", zig_cache=tmp_path / f"zig-cache-{n}")
        digests.append(hashlib.sha256((out / "kernel.elf").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_cached_image_matches_a_fresh_build(tmp_path):
    image = build.guest_image()
    build.compile_elf(tmp_path / "kernel.elf", zig_cache=tmp_path / "zc")
    assert (tmp_path / "kernel.elf").read_bytes() == Path(image.elf_path).read_bytes()
    assert Path(image.elf_path).parent.name == f"guest-{build.source_hash()}"


def test_image_has_entry_config_and_symbols():
    image = build.guest_image()
    assert image.entry == 0xC0000000
    for name in ("_start", "initarm", "pmap_bootstrap", "armboard_config", "exception_vectors"):
        assert name in image.symbols
    assert image.symbols["exception_vectors"] % 32 == 0
    assert image.symbol_at(image.symbols["initarm"] + 8) == "initarm+0x8"


def test_guest_abort_strings_match_the_python_decoder():
    """trap.c prints the FSR description itself; the diagnosis decodes it in Python: same table."""
    import re

    from kernel_sim.vm.mmu import decode_fsr

    source = Path(build.GUEST_DIR, "trap.c").read_text()
    table = source[source.index("aborts[32] = {"):source.index("};", source.index("aborts[32] = {"))]
    strings = re.findall(r'"([^"]*)"', table)
    assert len(strings) == 32
    for index, text in enumerate(strings):
        fsr = (index & 0xF) | ((index & 0x10) << 6)
        assert decode_fsr(fsr) == text
