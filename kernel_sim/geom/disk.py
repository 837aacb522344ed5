"""The DISK class (sys/geom/geom_disk.c): one geom and one provider per disk(9) a driver creates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kernel_sim.geom.core import EROFS, GClass, Geom, Mesh, Provider


@dataclass
class DiskDriver:
    """What a driver hands to disk_create(): its name, unit, geometry and strategy routines."""

    name: str                     # "cfid"
    unit: int
    mediasize: int
    sectorsize: int
    read: Callable[[int, int], bytes]
    write: Callable[[int, bytes], None] | None = None   # None: a read-only disk
    fwheads: int = 0
    fwsectors: int = 0


class DiskClass(GClass):
    name = "DISK"

    def create(self, mesh: Mesh, disk: DiskDriver) -> Provider:
        """disk_create(): publish <name><unit> and let every class taste it."""
        gp = mesh.new_geom(self, f"{disk.name}{disk.unit}", softc=disk)
        pp = mesh.new_provider(gp, gp.name, disk.mediasize, disk.sectorsize)
        mesh.publish(pp)
        return pp

    def access(self, pp: Provider, dr: int, dw: int, de: int) -> int:
        disk: DiskDriver = pp.geom.softc
        return EROFS if dw > 0 and disk.write is None else 0

    def read(self, pp: Provider, offset: int, length: int) -> bytes:
        return pp.geom.softc.read(offset, length)

    def write(self, pp: Provider, offset: int, data: bytes) -> None:
        pp.geom.softc.write(offset, data)

    def dumpconf(self, gp: Geom, pp: Provider) -> str:
        disk: DiskDriver = gp.softc
        return f" hd {disk.fwheads} sc {disk.fwsectors}"     # geom_disk.c g_disk_dumpconf (conftxt)
