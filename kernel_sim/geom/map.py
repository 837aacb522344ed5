"""The MAP class (sys/geom/geom_map.c): fixed partitions of a disk from hint.map.N, as slices.

Tasting reads the hints for the provider's name (kernel_sim/geom/map_hints.py does the parsing and
the search, shared with `armboard flash map`); each valid part becomes a provider map/<name>.
A read-only part refuses a write open with EPERM. MAP never tastes its own providers.
"""

from __future__ import annotations

from kernel_sim.geom.core import EPERM, GClass, Geom, GeomError, Mesh, Provider
from kernel_sim.geom.map_hints import MapPart, parse_map_hints
from kernel_sim.loader.hints import Hints


class MapClass(GClass):
    name = "MAP"
    tastes_own = False

    def __init__(self, hints: Hints, *, bootverbose: bool = False) -> None:
        self.hints = hints
        self.bootverbose = bootverbose

    def taste(self, mesh: Mesh, pp: Provider) -> Geom | None:
        if not any(h.driver == "map" and h.name == "at" and h.value == pp.name for h in self.hints):
            return None
        gp = mesh.new_geom(self, pp.name)
        cp = mesh.attach(gp, pp)
        if cp.access(1, 0, 0):
            mesh.detach(cp)
            return None

        def read(offset: int, length: int) -> bytes | None:
            if offset < 0 or offset + length > pp.mediasize:
                return None
            try:
                return cp.read(offset, length)
            except GeomError:                     # g_read_data returning NULL: no key read there
                return None

        parts = parse_map_hints(self.hints, pp.name, pp.mediasize, pp.sectorsize, read,
                                bootverbose=self.bootverbose, printf=mesh.printf)
        cp.access(-1, 0, 0)
        parts = [p for p in parts if p.has_provider]
        if not parts:
            mesh.printf(f"MAP: No valid partition found at {pp.name}\n")
            mesh.detach(cp)
            mesh.geoms.remove(gp)
            return None
        gp.softc = cp
        for part in parts:
            child = mesh.new_provider(gp, part.provider, part.dsize, pp.sectorsize, index=part.index)
            child.private = part
        for child in reversed(gp.providers):     # published in hint order
            mesh.publish(child)
        return gp

    def access(self, pp: Provider, dr: int, dw: int, de: int) -> int:
        part: MapPart = pp.private
        if dw > 0 and part.readonly:
            return EPERM
        return pp.geom.softc.access(dr, dw, de)     # g_slice_access: pass the counts down

    def read(self, pp: Provider, offset: int, length: int) -> bytes:
        part: MapPart = pp.private
        return pp.geom.softc.read(part.slice_start + offset, length)

    def write(self, pp: Provider, offset: int, data: bytes) -> None:
        part: MapPart = pp.private
        pp.geom.softc.write(part.slice_start + offset, data)

    def dumpconf(self, gp: Geom, pp: Provider) -> str:
        part: MapPart = pp.private
        # g_slice_dumpconf (" i %u o %ju") then g_map_dumpconf (" entry %jd dsize %jd")
        return f" i {part.index} o {part.slice_start} entry 0 dsize {part.dsize}"
