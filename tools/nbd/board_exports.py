"""The board's storage as NBD exports: flash banks, physical RAM, the swap store, md units, GEOM providers.

What each export is, and which lock it takes (Giant: tools/nbd/giant.py):

* `flash0`, ...: a CFI bank's array, the mapped image file. Reads and writes go straight to the
  array, as a programmer writing the file would: no lock, and a running guest sees the new bytes at
  once (the CPU maps the same memory). `flash0,mode=nor` instead writes through the chip's command
  interface (erase and program, as the kernel's cfi driver does: locked or protected blocks refuse),
  under Giant, since the chip's command state is shared with the guest and the kernel. FLUSH and FUA
  msync and fsync the image file. Minimum block size: the bank's width (the cfid sector size).
* `mem`: physical RAM from the RAM base (offset 0 is the first byte of RAM), read-only unless the
  server allows writes (`--nbd-mem-rw`); nbdkit's offset filter over the whole physical bus.
* `swap`: the board's swap store, read-only (the kernel's pager owns it), under Giant.
* `md0`, ...: md units, through a GEOM consumer opened like /dev/mdN (so GEOM's access rules apply),
  with md's own BIO_DELETE for trim and md's allocation map for block status (holes of a malloc or
  swap md show as holes). Under Giant.
* every other GEOM provider by name (`cfid0`, `map/kernel`, `md0.uzip`): through a consumer; a
  provider GEOM will not open for writing (`map/bootloader`: EPERM; uzip: EROFS) is served
  read-only, and a write gets NBD_EPERM. Minimum block size: the provider's sector size. Under Giant.

Every export is one object for all connections (no per-connection cache), so NBD_FLAG_CAN_MULTI_CONN
is true for each: a FLUSH on any connection makes every connection's completed writes durable.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from typing import Any

from board.machine import FlashBank, Machine
from board.memory import PhysicalMemory
from kernel_sim.errnos import NAME as ERRNO_NAMES
from kernel_sim.geom.core import EPERM, EROFS, GeomError
from tools.nbd.exports import (
    DEFAULT_MAX_PAYLOAD,
    BlockSize,
    Buffer,
    Catalogue,
    Export,
    ExportError,
    Extent,
    Offset,
    ReadOnly,
    StoreExport,
)
from tools.nbd.giant import Giant
from tools.nbd.protocol import NBD_STATE_HOLE, NBD_STATE_ZERO

ZEROS = bytes(1 << 20)
# md allocation queries are cut to this much per block status request (the protocol lets a server
# answer less than asked; clients ask again from where the answer ended).
MD_EXTENTS_SPAN = 64 << 20


def geom_error(exc: GeomError) -> ExportError:
    return ExportError(ERRNO_NAMES.get(exc.errno, "EIO"), str(exc))


def _preferred(minimum: int, wanted: int = 4096) -> int:
    """A preferred block size the protocol accepts: a power of two, at least 512 and the minimum."""
    size = max(wanted, minimum, 512)
    return 1 << (size - 1).bit_length()


def _write_zeros(write: Callable[[int, memoryview], None], offset: int, length: int) -> None:
    view = memoryview(ZEROS)
    while length:
        n = min(length, len(ZEROS))
        write(offset, view[:n])
        offset += n
        length -= n


def sync_image(bank: FlashBank, offset: int = 0, length: int | None = None) -> None:
    """msync the touched pages of a bank's image file, then fsync the file: durable on the host's disk."""
    image = bank.image
    if image.path is None or not image.writable or image.host.closed:
        return
    length = image.size - offset if length is None else length
    start = offset - offset % mmap.PAGESIZE
    end = min(image.size, -(-(offset + length) // mmap.PAGESIZE) * mmap.PAGESIZE)
    if end > start:
        image.host.flush(start, end - start)
    fd = os.open(image.path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- flash ----------------------------------------------------------------------------------------------
class FlashExport(Export):
    """A bank's array, written straight to the image (what a programmer writing the file would do)."""

    can_trim = False
    can_fast_zero = False

    def __init__(self, name: str, bank: FlashBank) -> None:
        g = bank.device.geometry           # the bank's chip model: built now if the guest never used it
        self.name = name
        self.bank = bank
        self.array = bank.image.array
        self.size = bank.size
        self.readonly = not bank.image.writable
        self.block_size = BlockSize(g.bank_width, _preferred(g.bank_width), DEFAULT_MAX_PAYLOAD)
        where = f"image {bank.image.path}" if bank.image.path else "no image file"
        self.description = (f"CFI flash {name} at 0x{bank.base:08x}, {bank.size} bytes ({g.name}), {where}; "
                            f"writes go straight to the image ({name},mode=nor: through the chip's commands)")

    def read(self, offset: int, length: int) -> list[Buffer]:
        return [self.array[offset:offset + length]]

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        self.array[offset:offset + len(data)] = data
        if fua:
            sync_image(self.bank, offset, len(data))

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        if fast:
            raise ExportError("ENOTSUP", f"{self.name}: zeroing flash is a write")
        _write_zeros(lambda off, view: self.array.__setitem__(slice(off, off + len(view)), view), offset, length)
        if fua:
            sync_image(self.bank, offset, length)

    def flush(self) -> None:
        sync_image(self.bank)


class FlashNorExport(FlashExport):
    """`flash0,mode=nor`: writes through the chip's erase and program commands, as the cfi driver
    writes (kernel_sim/dev/cfi.py: each touched erase block is read, erased and programmed again).
    Trim erases the erase blocks it covers whole (they read 0xFF after), the rest of it is ignored."""

    can_trim = True

    def __init__(self, name: str, bank: FlashBank, machine: Machine, giant: Giant) -> None:
        super().__init__(name, bank)
        g = bank.device.geometry
        smallest = min(block for block, _ in g.erase_regions)
        self.block_size = BlockSize(g.bank_width, _preferred(g.bank_width, smallest), DEFAULT_MAX_PAYLOAD)
        self.description = (f"CFI flash {name.partition(',')[0]} at 0x{bank.base:08x}, {bank.size} bytes "
                            f"({g.name}); writes go through the chip's erase and program commands")
        self.machine = machine
        self.giant = giant
        self._driver: Any = None

    def _chip(self):
        from kernel_sim.dev.cfi import CfiDriver, CfiProbeError

        if self._driver is None:
            try:
                self._driver = CfiDriver(self.machine, self.bank.base)
            except CfiProbeError as exc:
                raise ExportError("EIO", f"{self.name}: {exc}") from None
        return self._driver

    def _program(self, offset: int, data: bytes) -> None:
        with self.giant:
            try:
                self._chip().write(offset, data)
            except GeomError as exc:
                raise geom_error(exc) from None

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        self._program(offset, bytes(data))
        if fua:
            sync_image(self.bank, offset, len(data))

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        if fast:
            raise ExportError("ENOTSUP", f"{self.name}: zeroing NOR flash means programming it")
        for pos in range(offset, offset + length, len(ZEROS)):
            self._program(pos, ZEROS[:min(len(ZEROS), offset + length - pos)])
        if fua:
            sync_image(self.bank, offset, length)

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        g = self.bank.device.geometry
        pos, end = offset, offset + length
        while pos < end:
            _, start, size = g.block_at(pos)
            if start >= offset and start + size <= end:
                self._program(start, b"\xff" * size)      # erased words are not programmed: an erase
            pos = start + size
        if fua:
            sync_image(self.bank, offset, length)


# -- physical memory ----------------------------------------------------------------------------------------
class PhysicalExport(Export):
    """The bus's memory by physical address (reads and writes where nothing is mapped fail with EIO)."""

    can_trim = False
    can_fast_zero = False

    def __init__(self, phys: PhysicalMemory, size: int = 1 << 32) -> None:
        self.name = "phys"
        self.phys = phys
        self.size = size
        self.block_size = BlockSize(1, 4096, DEFAULT_MAX_PAYLOAD)

    def _views(self, pa: int, length: int) -> Iterator[tuple[int, memoryview]]:
        end = pa + length
        while pa < end:
            region = self.phys.find(pa)
            if region is None:
                raise ExportError("EIO", f"nothing at physical address 0x{pa:x}")
            n = min(end, region.end) - pa
            off = pa - region.base
            yield pa, memoryview(region.host)[off:off + n]
            pa += n

    def read(self, offset: int, length: int) -> list[Buffer]:
        return [view for _, view in self._views(offset, length)]

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        at = 0
        for _, view in self._views(offset, len(data)):
            view[:] = data[at:at + len(view)]
            at += len(view)

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        if fast:
            raise ExportError("ENOTSUP", "zeroing RAM is a write")
        _write_zeros(lambda off, view: self.write(off, view, fua=False), offset, length)


def ram_export(machine: Machine, *, writable: bool) -> Export:
    """`mem`: the RAM window of the physical bus, offset 0 at the RAM base."""
    base = machine.profile.ram_base
    phys = PhysicalExport(machine.phys, size=base + machine.ram_size)
    end = base + machine.ram_size - 1
    export: Export = Offset(phys, base, machine.ram_size, name="mem",
                            description=f"physical RAM 0x{base:08x}-0x{end:08x} ({machine.ram_size >> 20} MiB) of "
                                        f"the {machine.profile.name} board; offset 0 is physical address 0x{base:08x}")
    return export if writable else ReadOnly(export, "mem is read-only (armboard boot --nbd-mem-rw makes it writable)")


# -- kernel objects: GEOM providers and md units ----------------------------------------------------------------
class GeomExport(Export):
    """A GEOM provider through a consumer of its own, as a process's open of /dev/NAME would be."""

    can_trim = False
    can_fast_zero = False

    def __init__(self, giant: Giant, mesh: Any, name: str, *, readonly: bool, flush: Callable[[], None]) -> None:
        self.giant = giant
        self.mesh = mesh
        self.name = name
        self._flush = flush
        with giant:
            pp = mesh.provider(name)
            if pp is None:
                raise ExportError("ENXIO", f"no GEOM provider named {name}")
            self.refusal = ""
            self.cp = None
            if not readonly:
                try:
                    self.cp = mesh.open(name, read=True, write=True)
                except GeomError as exc:
                    if exc.errno not in (EPERM, EROFS):
                        raise geom_error(exc) from None
                    self.refusal = f"{name}: GEOM refuses to open it for writing ({ERRNO_NAMES.get(exc.errno)})"
            if self.cp is None:
                try:
                    self.cp = mesh.open(name)
                except GeomError as exc:
                    raise geom_error(exc) from None
            self.size = pp.mediasize
            sector = pp.sectorsize
            self.description = (f"GEOM provider {name} ({pp.geom.cls.name} geom {pp.geom.name}), "
                                f"{pp.mediasize} bytes, {sector}-byte sectors")
        self.readonly = readonly or bool(self.refusal)
        self.block_size = BlockSize(sector, _preferred(sector), DEFAULT_MAX_PAYLOAD)

    def read(self, offset: int, length: int) -> list[Buffer]:
        with self.giant:
            try:
                return [self.cp.read(offset, length)]
            except GeomError as exc:
                raise geom_error(exc) from None

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        with self.giant:
            try:
                self.cp.write(offset, bytes(data))
            except GeomError as exc:
                raise geom_error(exc) from None
            if fua:
                self._flush()

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        if fast:
            raise ExportError("ENOTSUP", f"{self.name}: zeroing is a write of zeroes")
        _write_zeros(lambda off, view: self.write(off, view, fua=False), offset, length)
        if fua:
            self.flush()

    def flush(self) -> None:
        with self.giant:
            self._flush()

    def close(self) -> None:
        with self.giant:
            if self.cp is not None and self.cp in self.cp.provider.consumers:
                self.mesh.close(self.cp)
            self.cp = None


class MdExport(GeomExport):
    """An md unit: its GEOM provider for I/O and access, md's BIO_DELETE and allocation map besides."""

    def __init__(self, giant: Giant, mesh: Any, unit: int, *, readonly: bool, flush: Callable[[], None]) -> None:
        super().__init__(giant, mesh, f"md{unit}", readonly=readonly, flush=flush)
        from kernel_sim.dev.md import MD_MALLOC, MD_SWAP, MD_VNODE
        from kernel_sim.geom.md import MD_TYPE_NAMES

        self.md = mesh.md
        self.unit = unit
        with giant:
            kind = self.md.units[unit].type
        self.frees = kind in (MD_MALLOC, MD_SWAP)          # BIO_DELETE gives the memory back
        self.can_trim = kind in (MD_MALLOC, MD_SWAP, MD_VNODE)
        self.can_fast_zero = self.frees
        self.description = f"md{unit}: {MD_TYPE_NAMES.get(kind, kind)} disk, {self.size} bytes"

    def trim(self, offset: int, length: int, *, fua: bool) -> None:
        with self.giant:
            try:
                self.md.delete(self.unit, offset, length)
            except GeomError as exc:
                raise geom_error(exc) from None

    def zero(self, offset: int, length: int, *, may_trim: bool, fast: bool, fua: bool) -> None:
        if self.frees and may_trim:
            self.trim(offset, length, fua=fua)       # deleted sectors and pages read as zeroes
            return
        if fast:
            raise ExportError("ENOTSUP", f"{self.name}: zeroing this md is a write of zeroes")
        super().zero(offset, length, may_trim=may_trim, fast=False, fua=fua)

    def extents(self, offset: int, length: int, *, req_one: bool) -> list[Extent]:
        flags = {"hole": NBD_STATE_HOLE | NBD_STATE_ZERO, "zero": NBD_STATE_ZERO, "data": 0}
        with self.giant:
            try:
                runs = self.md.allocation(self.unit, offset, min(length, MD_EXTENTS_SPAN))
            except GeomError as exc:
                raise geom_error(exc) from None
        return [(off, n, flags[kind]) for off, n, kind in runs]


# -- the catalogue of a board ---------------------------------------------------------------------------------------
class BoardExports:
    """Every storage object of one board, as a Catalogue: the machine's now, the kernel's once it runs."""

    def __init__(self, giant: Giant, *, mem_rw: bool = False) -> None:
        self.giant = giant
        self.mem_rw = mem_rw
        self.machine: Machine | None = None
        self.startup: Any = None
        self.catalogue = Catalogue(listing_lock=lambda: giant)
        self.catalogue.providers.append(self._kernel_exports)

    def attach_machine(self, machine: Machine) -> None:
        self.machine = machine
        for name, bank in machine.flash.items():
            self.catalogue.add(name, self._flash_opener(name, bank), f"CFI flash bank at 0x{bank.base:08x}")
        self.catalogue.add("mem", lambda name, readonly: ram_export(machine, writable=self.mem_rw and not readonly),
                           f"physical RAM from 0x{machine.profile.ram_base:08x}")
        if machine.swap is not None:
            store = machine.swap
            self.catalogue.add("swap", lambda name, readonly: ReadOnly(
                StoreExport("swap", store, lock=self.giant, description=f"the board's swap store ({store.kind})"),
                "swap is read-only: the kernel's pager owns it"), f"swap store ({store.kind})")

    def attach_kernel(self, startup: Any) -> None:
        """The Python kernel has started: its md units and GEOM providers become exports."""
        self.startup = startup

    def _flash_opener(self, name: str, bank: FlashBank):
        def opener(requested: str, readonly: bool) -> Export:
            options = dict(item.partition("=")[::2] for item in requested.split(",")[1:])
            mode = options.pop("mode", "file")
            if options:
                raise ExportError("EINVAL", f"{requested}: unknown option {', '.join(options)} (only mode=nor|file)")
            if mode == "file":
                export: Export = FlashExport(requested, bank)
            elif mode == "nor":
                assert self.machine is not None
                export = FlashNorExport(requested, bank, self.machine, self.giant)
            else:
                raise ExportError("EINVAL", f"{requested}: mode={mode} is neither nor nor file")
            return ReadOnly(export) if readonly else export
        return opener

    @property
    def _mesh(self) -> Any:
        return getattr(self.startup, "geom", None) if self.startup is not None else None

    def _kernel_exports(self) -> Iterator[tuple[str, Callable[[str, bool], Export], str]]:
        """md units, then every other live GEOM provider (called with Giant held)."""
        mesh = self._mesh
        if mesh is None:
            return
        md = getattr(mesh, "md", None)
        if md is not None:
            for unit in list(md.units):
                yield f"md{unit}", self._md_opener(unit), f"md{unit}"
        for gp in list(mesh.geoms):
            for pp in list(gp.providers):
                if not pp.error:
                    yield pp.name, self._geom_opener(pp.name), f"GEOM {gp.cls.name} provider"

    def _md_opener(self, unit: int):
        return lambda requested, readonly: MdExport(self.giant, self._mesh, unit, readonly=readonly, flush=self.flush)

    def _geom_opener(self, name: str):
        return lambda requested, readonly: GeomExport(self.giant, self._mesh, name, readonly=readonly,
                                                      flush=self.flush)

    def flush(self) -> None:
        """Everything the board holds durably reaches the host's disk: the flash images, md vnode files."""
        if self.machine is not None:
            for bank in self.machine.flash.values():
                sync_image(bank)
        mesh = self._mesh
        md = getattr(mesh, "md", None) if mesh is not None else None
        if md is not None:
            with self.giant:
                for sc in md.units.values():
                    fd = getattr(sc.vnode, "fd", None)
                    if fd is not None:
                        os.fsync(fd)
