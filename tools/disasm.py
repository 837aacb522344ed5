"""Guest instructions as text: capstone's disassembly beside the kernel's `symbol+offset`.

capstone costs 50-60 ms to import, so it loads here, on the first disassembly: only `x/Ni` (and the
diagnoses that decode a faulting instruction) pay for it, never a plain boot.
"""

from __future__ import annotations

from collections.abc import Callable

_engines: dict[bool, object] = {}


def _engine(thumb: bool):
    cs = _engines.get(thumb)
    if cs is None:
        import capstone

        cs = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB if thumb else capstone.CS_MODE_ARM)
        _engines[thumb] = cs
    return cs


def instructions(code: bytes, address: int, count: int, *, thumb: bool = False) -> list[tuple[int, bytes, str]]:
    """Up to `count` instructions from `code` at `address` as (address, encoding, text). An encoding
    capstone cannot decode is shown as the `.word` (or `.short`) it is and the listing goes on."""
    cs = _engine(thumb)
    out: list[tuple[int, bytes, str]] = []
    offset = 0
    while len(out) < count and offset < len(code):
        insn = next(cs.disasm(code[offset:offset + 4], address + offset, 1), None)
        if insn is None:
            size = 2 if thumb else 4
            raw = code[offset:offset + size]
            word = int.from_bytes(raw, "little")
            out.append((address + offset, raw, f".{'short' if size == 2 else 'word'} 0x{word:0{2 * size}x}"))
        else:
            size = insn.size
            out.append((insn.address, bytes(insn.bytes), f"{insn.mnemonic} {insn.op_str}".strip()))
        offset += size
    return out


def listing(code: bytes, address: int, count: int, symbol_of: Callable[[int], str | None], *,
            thumb: bool = False) -> str:
    """`c0001004 <initarm+0x4>: e1a0b00d  mov fp, sp` lines, as gdb's x/i prints them plus the encoding."""
    lines = []
    for addr, raw, text in instructions(code, address, count, thumb=thumb):
        name = symbol_of(addr)
        where = f" <{name}>" if name else ""
        encoding = int.from_bytes(raw, "little")
        lines.append(f"{addr:08x}{where}: {encoding:0{2 * len(raw)}x}  {text}\n")
    return "".join(lines)
