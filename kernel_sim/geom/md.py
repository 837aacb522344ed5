"""The MD class as GEOM sees it (sys/dev/md/md.c g_md_dumpconf); the md driver itself comes later.

An md device here is a provider over bytes the caller supplies (a preloaded image or malloc'd
sectors), enough for the GEOM graph, tasting and kern.geom.conftxt.
"""

from __future__ import annotations

from collections.abc import Callable

from kernel_sim.geom.core import Geom, Mesh, Provider, StorageClass
from kernel_sim.record import Record

MD_TYPE_NAMES = {0: "malloc", 1: "preload", 2: "vnode", 3: "swap", 4: "null"}   # sys/sys/mdioctl.h


class MdUnit(Record):
    __slots__ = ("unit", "type", "mediasize", "sectorsize", "read", "write", "fwheads", "fwsectors", "file")

    def __init__(self, unit: int, type: int, mediasize: int, sectorsize: int, read: Callable[[int, int], bytes],
                 write: Callable[[int, bytes], None] | None, fwheads: int = 0, fwsectors: int = 0,
                 file: str | None = None) -> None:
        self.unit = unit
        self.type = type
        self.mediasize = mediasize
        self.sectorsize = sectorsize
        self.read = read
        self.write = write
        self.fwheads = fwheads
        self.fwsectors = fwsectors
        self.file = file


class MdClass(StorageClass):
    name = "MD"

    def create(self, mesh: Mesh, md: MdUnit) -> Provider:
        return self.publish(mesh, f"md{md.unit}", md)

    def dumpconf(self, gp: Geom, pp: Provider) -> str:
        md: MdUnit = gp.softc
        text = (f" u {md.unit} s {md.sectorsize} f {md.fwheads} fs {md.fwsectors} l {md.mediasize} "
                f"t {MD_TYPE_NAMES[md.type]}")
        return text + (f" file {md.file}" if md.file else "")
