"""The GEOM graph (sys/geom/geom_subr.c, geom_dump.c): classes, geoms, providers, consumers.

Classes taste every new provider in class order; a geom that takes it attaches a consumer. Access
counts (read, write, exclusive) are kept per consumer and summed per provider, with g_access()'s
checks. kern.geom.conftxt, confxml and confdot come from one walk of the graph, in FreeBSD's
formats and orders (lists are LIST_INSERT_HEAD in FreeBSD: the newest entry comes first).
"""

from __future__ import annotations

from collections.abc import Callable

EPERM, EIO, ENXIO, EROFS, EINVAL, EOPNOTSUPP = 1, 5, 6, 30, 22, 45   # sys/sys/errno.h


class GeomError(Exception):
    """An I/O or access request GEOM refuses, with FreeBSD's errno."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


def report_io_error(printf: Callable[[str], None], exc: GeomError) -> int:
    """A GEOM I/O error that reaches a user (read(2) of /dev/NAME, a file on a mounted provider): one
    console line saying what failed and where, as ffs reports a damaged file system, so the guest gets
    its errno and the console says why. Returns the errno for the caller's SysError."""
    printf(f"{exc}: error {exc.errno}\n")
    return exc.errno


class GClass:
    """A GEOM class: tastes providers; its geoms serve I/O. Subclasses override what they need."""

    name = "?"
    tastes_own = True     # MAP never tastes its own providers

    def taste(self, mesh: Mesh, pp: Provider) -> Geom | None:
        return None

    def access(self, pp: Provider, dr: int, dw: int, de: int) -> int:
        return 0

    def read(self, pp: Provider, offset: int, length: int) -> bytes:
        raise GeomError(EOPNOTSUPP, f"{self.name}: read not supported")

    def write(self, pp: Provider, offset: int, data: bytes) -> None:
        raise GeomError(EOPNOTSUPP, f"{self.name}: write not supported")

    def dumpconf(self, gp: Geom, pp: Provider) -> str:
        """What the class appends to a provider's kern.geom.conftxt line."""
        return ""


class StorageClass(GClass):
    """A class whose geom's softc is the storage itself: `read(offset, length)`, `write(offset, data)`
    (None for read-only media, which refuse write opens with EROFS). DISK and MD are such classes."""

    def access(self, pp: Provider, dr: int, dw: int, de: int) -> int:
        return EROFS if dw > 0 and pp.geom.softc.write is None else 0

    def read(self, pp: Provider, offset: int, length: int) -> bytes:
        return pp.geom.softc.read(offset, length)

    def write(self, pp: Provider, offset: int, data: bytes) -> None:
        pp.geom.softc.write(offset, data)

    def publish(self, mesh: Mesh, name: str, softc) -> Provider:
        """One geom with one provider over `softc`, published for every class to taste."""
        gp = mesh.new_geom(self, name, softc=softc)
        pp = mesh.new_provider(gp, name, softc.mediasize, softc.sectorsize)
        mesh.publish(pp)
        return pp


class Geom:
    def __init__(self, cls: GClass, name: str, softc: object = None) -> None:
        self.cls = cls
        self.name = name
        self.softc = softc
        self.providers: list[Provider] = []   # newest first
        self.consumers: list[Consumer] = []   # newest first
        self.rank = 1


class Provider:
    def __init__(self, geom: Geom, name: str, mediasize: int, sectorsize: int, index: int = 0) -> None:
        self.geom = geom
        self.name = name
        self.mediasize = mediasize
        self.sectorsize = sectorsize
        self.index = index
        self.consumers: list[Consumer] = []   # newest first
        self.error = 0
        self.private: object = None

    @property
    def acr(self) -> int:
        return sum(c.acr for c in self.consumers)

    @property
    def acw(self) -> int:
        return sum(c.acw for c in self.consumers)

    @property
    def ace(self) -> int:
        return sum(c.ace for c in self.consumers)


class Consumer:
    def __init__(self, geom: Geom, provider: Provider) -> None:
        self.geom = geom
        self.provider = provider
        self.acr = self.acw = self.ace = 0

    def access(self, dr: int, dw: int, de: int) -> int:
        """g_access(): 0 or an errno; nothing changes on refusal."""
        pp = self.provider
        if self.acr + dr < 0 or self.acw + dw < 0 or self.ace + de < 0:
            return EINVAL
        pw = pp.acw - self.acw       # what the other consumers hold
        pe = pp.ace - self.ace
        if de > 0 and pw > 0:
            return EPERM
        if dw > 0 and pe > 0:
            return EPERM
        if (dr > 0 or dw > 0 or de > 0) and pp.error:
            return pp.error
        error = pp.geom.cls.access(pp, dr, dw, de)
        if error:
            return error
        self.acr += dr
        self.acw += dw
        self.ace += de
        return 0

    def read(self, offset: int, length: int) -> bytes:
        pp = self.provider
        if self.acr <= 0:
            raise GeomError(EPERM, f"{pp.name}: read without read access")
        _check_range(pp, offset, length)
        return pp.geom.cls.read(pp, offset, length)

    def read_bytes(self, offset: int, length: int) -> bytes:
        """Bytes at any offset: the request widened to whole sectors, as a bio would be, then cut."""
        sector = self.provider.sectorsize
        start = offset // sector * sector
        end = min(-(-(offset + length) // sector) * sector, self.provider.mediasize)
        if start >= end:
            return b""
        return self.read(start, end - start)[offset - start:offset - start + length]

    def write(self, offset: int, data: bytes) -> None:
        pp = self.provider
        if self.acw <= 0:
            raise GeomError(EPERM, f"{pp.name}: write without write access")
        _check_range(pp, offset, len(data))
        pp.geom.cls.write(pp, offset, data)


def _check_range(pp: Provider, offset: int, length: int) -> None:
    """g_io_check: sector-aligned, inside the media."""
    if offset < 0 or length < 0 or offset + length > pp.mediasize:
        raise GeomError(EIO, f"{pp.name}: I/O at {offset}+{length} is past the end ({pp.mediasize})")
    if offset % pp.sectorsize or length % pp.sectorsize:
        raise GeomError(EINVAL, f"{pp.name}: I/O at {offset}+{length} is not a multiple of {pp.sectorsize}")


class Mesh:
    """All classes, geoms and providers of one kernel."""

    def __init__(self, printf: Callable[[str], None] = lambda _s: None) -> None:
        self.classes: list[GClass] = []      # registration order: tasting goes in this order
        self.geoms: list[Geom] = []
        self.printf = printf
        self.md = None          # the md(4) driver, when the kernel has one (kernel_sim.dev.md.MdDriver)

    def add_class(self, cls: GClass) -> None:
        self.classes.append(cls)
        for gp in list(self.geoms):          # a new class tastes what exists (g_load_class)
            for pp in list(gp.providers):
                self._taste_one(cls, pp)

    def new_geom(self, cls: GClass, name: str, softc: object = None) -> Geom:
        gp = Geom(cls, name, softc)
        self.geoms.append(gp)
        return gp

    def new_provider(self, gp: Geom, name: str, mediasize: int, sectorsize: int, index: int = 0) -> Provider:
        pp = Provider(gp, name, mediasize, sectorsize, index)
        gp.providers.insert(0, pp)
        return pp

    def publish(self, pp: Provider) -> None:
        """g_error_provider(pp, 0): the provider goes live and every class tastes it."""
        for cls in list(self.classes):
            self._taste_one(cls, pp)

    def _taste_one(self, cls: GClass, pp: Provider) -> None:
        if cls is pp.geom.cls and not cls.tastes_own:
            return
        if any(c.geom.cls is cls for c in pp.consumers):
            return
        cls.taste(self, pp)

    def attach(self, gp: Geom, pp: Provider) -> Consumer:
        cp = Consumer(gp, pp)
        gp.consumers.insert(0, cp)
        pp.consumers.insert(0, cp)
        gp.rank = max(gp.rank, pp.geom.rank + 1)
        return cp

    def detach(self, cp: Consumer) -> None:
        cp.geom.consumers.remove(cp)
        cp.provider.consumers.remove(cp)

    def orphan(self, pp: Provider, error: int = ENXIO) -> None:
        """The provider went away: its consumers' geoms lose their providers too (g_orphan_provider)."""
        pp.error = error
        for cp in list(pp.consumers):
            for child in list(cp.geom.providers):
                self.orphan(child, error)
        if pp in pp.geom.providers:
            pp.geom.providers.remove(pp)

    def provider(self, name: str) -> Provider | None:
        for gp in self.geoms:
            for pp in gp.providers:
                if pp.name == name:
                    return pp
        return None

    def open(self, name: str, *, read: bool = True, write: bool = False) -> Consumer:
        """What a user's open(2) of /dev/NAME does: a consumer with r1 (and w1), or GeomError."""
        pp = self.provider(name)
        if pp is None:
            raise GeomError(ENXIO, f"no GEOM provider named {name}")
        dev = self._devfs_geom()
        cp = self.attach(dev, pp)
        error = cp.access(int(read), int(write), 0)
        if error:
            self.detach(cp)
            raise GeomError(error, f"{name}: open for {'write' if write else 'read'}")
        return cp

    def close(self, cp: Consumer) -> None:
        cp.access(-cp.acr, -cp.acw, -cp.ace)
        self.detach(cp)

    def _devfs_geom(self) -> Geom:
        for gp in self.geoms:
            if gp.cls.name == "DEV" and gp.name == "devfs":
                return gp
        dev = GClass()
        dev.name = "DEV"
        gp = Geom(dev, "devfs")
        gp.rank = 99
        return gp

    # ---------------------------------------------------------------- kern.geom.conf*
    def conftxt(self) -> str:
        """kern.geom.conftxt (geom_dump.c g_conftxt): from each DISK and MD geom, depth first."""
        out: list[str] = []

        def walk(gp: Geom, level: int) -> None:
            for pp in gp.providers:
                out.append(f"{level} {gp.cls.name} {pp.name} {pp.mediasize} {pp.sectorsize}"
                           f"{gp.cls.dumpconf(gp, pp)}\n")
                for cp in pp.consumers:
                    if cp.geom.cls.name != "DEV":
                        walk(cp.geom, level + 1)

        for cls in reversed(self.classes):           # g_classes: newest class first
            if cls.name in ("DISK", "MD"):
                for gp in reversed([g for g in self.geoms if g.cls is cls]):
                    walk(gp, 0)
        return "".join(out)

    def confxml(self) -> str:
        """kern.geom.confxml (geom_dump.c g_confxml): the mesh as XML, ids from object identity."""
        def ref(obj: object) -> str:
            return f"0x{id(obj):x}"

        lines = ["<mesh>"]
        for cls in self.classes:
            lines.append(f'  <class id="{ref(cls)}">')
            lines.append(f"    <name>{cls.name}</name>")
            for gp in (g for g in self.geoms if g.cls is cls):
                lines.append(f'    <geom id="{ref(gp)}">')
                lines.append(f'      <class ref="{ref(cls)}"/>')
                lines.append(f"      <name>{gp.name}</name>")
                lines.append(f"      <rank>{gp.rank}</rank>")
                for cp in gp.consumers:
                    lines.append(f'      <consumer id="{ref(cp)}">')
                    lines.append(f'        <geom ref="{ref(gp)}"/>')
                    lines.append(f'        <provider ref="{ref(cp.provider)}"/>')
                    lines.append(f"        <mode>r{cp.acr}w{cp.acw}e{cp.ace}</mode>")
                    lines.append("      </consumer>")
                for pp in gp.providers:
                    lines.append(f'      <provider id="{ref(pp)}">')
                    lines.append(f'        <geom ref="{ref(gp)}"/>')
                    lines.append(f"        <mode>r{pp.acr}w{pp.acw}e{pp.ace}</mode>")
                    lines.append(f"        <name>{pp.name}</name>")
                    lines.append(f"        <mediasize>{pp.mediasize}</mediasize>")
                    lines.append(f"        <sectorsize>{pp.sectorsize}</sectorsize>")
                    lines.append("      </provider>")
                lines.append("    </geom>")
            lines.append("  </class>")
        lines.append("</mesh>")
        return "\n".join(lines) + "\n"

    def confdot(self) -> str:
        """kern.geom.confdot (geom_dump.c g_confdot): geoms as boxes, providers as hexagons."""
        lines = ["digraph geom {"]
        for gp in self.geoms:
            lines.append(f'\tz0x{id(gp):x} [shape=box,label="{gp.cls.name}\\n{gp.name}\\nr#{gp.rank}"];')
            for cp in gp.consumers:
                lines.append(f'\tz0x{id(cp):x} [label="r{cp.acr}w{cp.acw}e{cp.ace}"];')
                lines.append(f"\tz0x{id(gp):x} -> z0x{id(cp):x};")
                lines.append(f"\tz0x{id(cp):x} -> z0x{id(cp.provider):x};")
            for pp in gp.providers:
                lines.append(f'\tz0x{id(pp):x} [shape=hexagon,label="{pp.name}\\nr{pp.acr}w{pp.acw}e{pp.ace}'
                             f'\\nerr#{pp.error}\\n"];')
                lines.append(f"\tz0x{id(pp):x} -> z0x{id(gp):x};")
        lines.append("}")
        return "\n".join(lines) + "\n"
