"""The guest kernel's code read from its ELF as instruction words: where its CP15 writes are and where
a call returns, for the boot stages and traces. Nothing here runs on a boot that does not ask."""

from __future__ import annotations

import struct

from board.trace import is_cp15_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from kernel_sim.guest.build import GuestImage

PF_X = 1     # ELF p_flags: executable


def code_words(image: GuestImage) -> Iterator[tuple[int, int, int]]:
    """(VA, PA, word) of each aligned word of the executable PT_LOAD segments, from the file."""
    with open(image.elf_path, "rb") as f:
        for seg in image.segments:
            if not seg.flags & PF_X or not seg.filesz:
                continue
            f.seek(seg.offset)
            data = f.read(seg.filesz - seg.filesz % 4)
            for i, (word,) in enumerate(struct.iter_unpack("<I", data)):
                yield seg.vaddr + 4 * i, seg.paddr + 4 * i, word


def cp15_write_sites(image: GuestImage) -> tuple[int, ...]:
    """The addresses of every MCR to CP15 in the kernel's code, at its VA and at its PA (where locore
    runs with the MMU off): the few places a code hook can see TTBR, SCTLR and TLB operations."""
    sites: set[int] = set()
    for va, pa, word in code_words(image):
        if is_cp15_write(word):
            sites.update((va, pa))
    return tuple(sorted(sites))


def branch_target(address: int, word: int) -> int | None:
    """The target of an ARM B or BL (any condition) at `address`, else None (ARM ARM A8.8.18)."""
    if (word >> 25) & 0x7 != 0b101 or word >> 28 == 0xF:
        return None
    offset = (word & 0xFFFFFF) << 2
    if offset & (1 << 25):
        offset -= 1 << 26
    return (address + 8 + offset) & 0xFFFFFFFF


def call_return(image: GuestImage, caller: str, callee: str) -> int | None:
    """The VA just after `caller`'s first `bl callee` (where the callee returns to), or None."""
    start, target = image.symbols.get(caller), image.symbols.get(callee)
    if start is None or target is None:
        return None
    later = [a for a in image.symbols.values() if a > start]
    end = min(later) if later else start + 0x10000
    for va, _pa, word in code_words(image):
        if start <= va < end and (word >> 24) & 0xF == 0xB and branch_target(va, word) == target:
            return va + 4
    return None
