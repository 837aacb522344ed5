"""The UZIP and UNCOMPRESS classes (sys/geom/uzip/g_uzip.c, sys/geom/uncompress/g_uncompress.c).

Both taste providers for a cloop image (kernel_sim/geom/uzip_format.py holds the format and the
kernel's checks) and publish a read-only provider of the uncompressed media: <name>.uzip or
<name>.uncompress. A write open is refused with EROFS; a corrupt block reads as EILSEQ (uzip) or
EIO (uncompress) and never brings the kernel down.
"""

from __future__ import annotations

from kernel_sim.geom.core import EROFS, GClass, Geom, GeomError, Mesh, Provider
from kernel_sim.geom.uzip_format import CloopError, parse_header

ERRNO = {"EILSEQ": 86, "EIO": 5, "EINVAL": 22, "EFTYPE": 79, "ENOMEM": 12, "ENXIO": 6}   # sys/sys/errno.h


class CompressedClass(GClass):
    """flavour "uzip" (class UZIP) or "uncompress" (class UNCOMPRESS)."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.name = "UZIP" if flavour == "uzip" else "UNCOMPRESS"

    def taste(self, mesh: Mesh, pp: Provider) -> Geom | None:
        gp = mesh.new_geom(self, f"{pp.name}.{self.flavour}")     # g_new_geomf(mp, "%s.uzip", pp->name)
        cp = mesh.attach(gp, pp)
        if cp.access(1, 0, 0):
            mesh.detach(cp)
            mesh.geoms.remove(gp)
            return None
        try:
            image = parse_header(cp.read_bytes,
                                 pp.mediasize, sector_size=pp.sectorsize, flavour=self.flavour,
                                 log=lambda line: mesh.printf(f"{gp.name}: {line}\n"))
        except (CloopError, GeomError):       # g_read_data failing is a taste that found nothing too
            cp.access(-1, 0, 0)
            mesh.detach(cp)
            mesh.geoms.remove(gp)
            return None
        gp.softc = (cp, image)
        child = mesh.new_provider(gp, image.provider_name(pp.name), image.mediasize, image.sectorsize)
        mesh.publish(child)
        return gp

    def access(self, pp: Provider, dr: int, dw: int, de: int) -> int:
        return EROFS if dw > 0 else 0

    def read(self, pp: Provider, offset: int, length: int) -> bytes:
        cp, image = pp.geom.softc
        try:
            return image.read(offset, length, cp.read_bytes)
        except CloopError as exc:
            raise GeomError(ERRNO.get(exc.errno_name, 5), f"{pp.name}: {exc.message}") from None

