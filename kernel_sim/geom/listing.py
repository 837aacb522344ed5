"""geom(8)'s `geom [CLASS] list` text, from the mesh.

Why here and not in a tool: both the monitor and the guest's geom(8) (through the geom_list system
call) print it, and they must print the same thing. The layout is sbin/geom/core/geom.c
list_one_geom / list_one_provider / list_one_consumer, with its humanized sizes; class-specific
config lines are not printed (the classes only give their conftxt words).
"""

from __future__ import annotations

from kernel_sim.geom.core import Consumer, Geom, Mesh, Provider
from kernel_sim.humanize import humanize_number


class GeomClassNotFound(Exception):
    """geom(8): the class the user named does not exist in this kernel."""


def humanize(size: int) -> str:
    """humanize_number(buf, 5, size, "", HN_AUTOSCALE, HN_B | HN_NOSPACE | HN_DECIMAL), as geom.c
    calls it: at most three digits, one decimal below 10 ("2.0M", "466G", "512B")."""
    return humanize_number(size, 5)


def _provider(n: int, pp: Provider) -> str:
    return (f"{n}. Name: {pp.name}\n   Mediasize: {pp.mediasize} ({humanize(pp.mediasize)})\n"
            f"   Sectorsize: {pp.sectorsize}\n   Mode: r{pp.acr}w{pp.acw}e{pp.ace}\n")


def _consumer(n: int, cp: Consumer) -> str:
    pp = cp.provider
    return (f"{n}. Name: {pp.name}\n   Mediasize: {pp.mediasize} ({humanize(pp.mediasize)})\n"
            f"   Sectorsize: {pp.sectorsize}\n   Mode: r{cp.acr}w{cp.acw}e{cp.ace}\n")


def _geom(gp: Geom) -> str:
    out = [f"Geom name: {gp.name}\n"]
    if gp.providers:
        out.append("Providers:\n")
        out += [_provider(i, pp) for i, pp in enumerate(reversed(gp.providers), start=1)]
    if gp.consumers:
        out.append("Consumers:\n")
        out += [_consumer(i, cp) for i, cp in enumerate(reversed(gp.consumers), start=1)]
    out.append("\n")
    return "".join(out)


def geom_list(mesh: Mesh, cls: str | None = None) -> str:
    """`geom CLASS list` (cls given, any case) or every class's geoms (`geom list`); the devfs
    consumers' DEV geom is not listed, as geom(8) lists no DEV class by default."""
    wanted = cls.upper() if cls else None
    if wanted and wanted not in {c.name.upper() for c in mesh.classes}:
        raise GeomClassNotFound(f"Class '{cls}' not found.")    # sbin/geom/core/geom.c find_class
    return "".join(_geom(gp) for gp in mesh.geoms
                   if gp.cls.name != "DEV" and (wanted is None or gp.cls.name.upper() == wanted))
