"""GEOM at boot: the classes the kernel config compiles in, the disks the drivers attach, tasting.

The CFI driver probes each flash bank of the board over the bus (`device cfi`); every preloaded
md_image becomes an MD provider (the md driver's preload path); MAP splits what its hints name,
UZIP/UNCOMPRESS open compressed images. The graph is readable as kern.geom.conftxt/confxml/confdot.
"""

from __future__ import annotations

from kernel_sim.geom.core import Mesh
from kernel_sim.geom.disk import DiskClass, DiskDriver
from kernel_sim.geom.md import MdClass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from board.machine import Machine
    from kernel_sim.kern.sysctl import SysctlTree
    from kernel_sim.loader.hints import Hints
    from kernel_sim.loader.layout import BootLayout


def geom_start(machine: Machine, layout: BootLayout, kernconf, hints: Hints, env: dict[str, str],
               sysctl: SysctlTree, malloc=None) -> Mesh:
    out = machine.console
    mesh = Mesh(printf=out.write_text)
    bootverbose = env.get("boot_verbose", "NO").lower() not in ("no", "0", "")
    disk = DiskClass()
    mesh.add_class(disk)
    md = MdClass()
    if kernconf.has_device("md"):
        mesh.add_class(md)
    # Each class's code loads only when the kernel config compiles it in, as a module would.
    if kernconf.has_device("geom_map"):
        from kernel_sim.geom.map import MapClass

        mesh.add_class(MapClass(hints, bootverbose=bootverbose))
    for flavour in ("uzip", "uncompress"):
        if kernconf.has_device(f"geom_{flavour}"):
            from kernel_sim.geom.uzip import CompressedClass

            mesh.add_class(CompressedClass(flavour))
    sysctl.add("kern.geom.conftxt", "string", handler=mesh.conftxt, description="Dump the GEOM config in txt")
    sysctl.add("kern.geom.confxml", "string", handler=mesh.confxml, description="Dump the GEOM config in XML")
    sysctl.add("kern.geom.confdot", "string", handler=mesh.confdot, description="Dump the GEOM config in dot")
    if kernconf.has_device("md") or kernconf.value("MD_ROOT"):
        images = []
        embedded = layout.embedded_md      # md.c g_md_init: mfs_root (oldmfs array or mfs section) is md0
        if kernconf.value("MD_ROOT") and embedded is not None:
            images.append((f"md{len(images)}: Embedded image {embedded.size} bytes at 0x{embedded.va:08x}\n",
                           layout.pa(embedded.va), embedded.size))
        for module in layout.modules:
            if module.type in ("md_image", "mfs_root"):
                images.append((f"md{len(images)}: Preloaded image <{module.name}> {module.size} bytes at "
                               f"0x{module.va:08x}\n", module.pa, module.size))
        if md not in mesh.classes:
            mesh.add_class(md)
        mesh.md = _md_driver(mesh, malloc)
        for unit, (line, pa, size) in enumerate(images):
            out.write_text(line)

            def read(offset: int, length: int, pa: int = pa) -> bytes:
                return machine.phys.read(pa + offset, length)

            def write(offset: int, data: bytes, pa: int = pa) -> None:
                machine.phys.write(pa + offset, data)

            readonly = bool(kernconf.value("MD_ROOT_READONLY")) and unit == 0
            mesh.md.preload(size // 512 * 512, read, write, readonly=readonly)
    if kernconf.has_device("cfi"):
        from kernel_sim.dev.cfi import AMD, CfiDriver, CfiProbeError

        for unit, bank in enumerate(machine.flash.values()):
            try:
                drv = CfiDriver(machine, bank.base, unit=unit)
            except CfiProbeError:
                continue
            vendor = "AMD/Fujitsu" if drv.chip.command_set == AMD else "Intel/Sharp"
            out.write_text(f"cfi{unit}: <{vendor} - {drv.chip.size >> 20}MB> at 0x{bank.base:08x}\n")
            out.write_text(f"cfid{unit} on cfi{unit}\n")
            disk.create(mesh, DiskDriver("cfid", unit, drv.chip.size, drv.sectorsize, drv.read, drv.write))
    return mesh


def _md_driver(mesh: Mesh, malloc):
    """md(4), its malloc sectors in kmem through per-device zones (refused before kmem exists)."""
    from kernel_sim.dev.md import MdDriver
    from kernel_sim.kern.md_glue import SectorZones

    if malloc is None:
        return MdDriver(mesh, sector_alloc=lambda _n, _z: None, sector_free=lambda _h: None)
    zones = SectorZones(malloc)
    return MdDriver(mesh, sector_alloc=zones.alloc, sector_free=zones.free)
