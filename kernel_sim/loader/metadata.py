"""Preload metadata (MODINFO records) and the kernel environment, laid out as loader(8) does.

Record format (sys/kern/subr_module.c): u32 type, u32 size, data; the next record at
roundup(8 + size, 4) on arm; the list ends with MODINFO_END, size 0.
"""

from __future__ import annotations

import struct
from collections import namedtuple

# sys/sys/linker.h and sys/arm/include/metadata.h
MODINFO_END, MODINFO_NAME, MODINFO_TYPE, MODINFO_ADDR, MODINFO_SIZE = 0, 1, 2, 3, 4
MODINFO_METADATA = 0x8000
MODINFOMD_ENVP, MODINFOMD_HOWTO, MODINFOMD_KERNEND = 6, 7, 8
MODINFOMD_DTBP = 0x1002


def record(rtype: int, data: bytes) -> bytes:
    pad = (-len(data)) % 4
    return struct.pack("<II", rtype, len(data)) + data + b"\0" * pad


def cstring(text: str) -> bytes:
    return text.encode() + b"\0"


class MetadataModule(namedtuple("MetadataModule", "name type addr size")):
    __slots__ = ()

    name: str
    type: str
    addr: int
    size: int


def build_metadata(kernel: MetadataModule, modules: list[MetadataModule], *, howto: int, envp: int,
                   kernend: int) -> bytes:
    """The kernel's records (with HOWTO, ENVP, KERNEND) then one group per module."""
    out = bytearray()
    for i, mod in enumerate([kernel, *modules]):
        out += record(MODINFO_NAME, cstring(mod.name))
        out += record(MODINFO_TYPE, cstring(mod.type))
        out += record(MODINFO_ADDR, struct.pack("<I", mod.addr))
        out += record(MODINFO_SIZE, struct.pack("<I", mod.size))
        if i == 0:
            out += record(MODINFO_METADATA | MODINFOMD_HOWTO, struct.pack("<I", howto))
            out += record(MODINFO_METADATA | MODINFOMD_ENVP, struct.pack("<I", envp))
            out += record(MODINFO_METADATA | MODINFOMD_KERNEND, struct.pack("<I", kernend))
    out += struct.pack("<II", MODINFO_END, 0)
    return bytes(out)


def parse_metadata(raw: bytes) -> list[tuple[int, bytes]]:
    """(type, data) records up to MODINFO_END: the inverse of build_metadata, for inspection."""
    out = []
    off = 0
    while off + 8 <= len(raw):
        rtype, size = struct.unpack_from("<II", raw, off)
        if rtype == MODINFO_END:
            break
        out.append((rtype, raw[off + 8:off + 8 + size]))
        off += (8 + size + 3) & ~3
    return out


def build_environment(env: dict[str, str]) -> bytes:
    """name=value strings, each NUL-terminated, the list ended by an empty string."""
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()) + b"\0"
