"""The DISK class (sys/geom/geom_disk.c): one geom and one provider per disk(9) a driver creates."""

from __future__ import annotations

from collections.abc import Callable

from kernel_sim.geom.core import Geom, Mesh, Provider, StorageClass
from kernel_sim.record import Record


class DiskDriver(Record):
    """What a driver hands to disk_create(): its name, unit, geometry and strategy routines."""

    __slots__ = ("name", "unit", "mediasize", "sectorsize", "read", "write", "fwheads", "fwsectors")

    def __init__(self, name: str, unit: int, mediasize: int, sectorsize: int, read: Callable[[int, int], bytes],
                 write: Callable[[int, bytes], None] | None = None, fwheads: int = 0, fwsectors: int = 0) -> None:
        self.name = name  # "cfid"
        self.unit = unit
        self.mediasize = mediasize
        self.sectorsize = sectorsize
        self.read = read
        self.write = write  # None: a read-only disk
        self.fwheads = fwheads
        self.fwsectors = fwsectors


class DiskClass(StorageClass):
    name = "DISK"

    def create(self, mesh: Mesh, disk: DiskDriver) -> Provider:
        """disk_create(): publish <name><unit> and let every class taste it."""
        return self.publish(mesh, f"{disk.name}{disk.unit}", disk)

    def dumpconf(self, gp: Geom, pp: Provider) -> str:
        disk: DiskDriver = gp.softc
        return f" hd {disk.fwheads} sc {disk.fwsectors}"     # geom_disk.c g_disk_dumpconf (conftxt)
