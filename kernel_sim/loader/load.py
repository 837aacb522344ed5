"""Put the kernel, its configuration, modules, environment and metadata into guest memory."""

from __future__ import annotations

import os

from board.memory import PAGE, PhysicalMemory
from kernel_sim.errors import InputError
from kernel_sim.guest.abi import CONFIG_MAGIC, GuestConfig
from kernel_sim.guest.build import GuestImage
from kernel_sim.loader.layout import BootLayout

CONFIG_SYMBOL = "armboard_config"


def load_kernel(phys: PhysicalMemory, image: GuestImage) -> None:
    """Each PT_LOAD at its physical address; the rest of memsz is RAM's zeros already."""
    for seg in image.segments:
        if seg.filesz:
            phys.readinto_file(seg.paddr, image.elf_path, seg.filesz, seg.offset)


def config_va(image: GuestImage) -> int | None:
    return image.symbols.get(CONFIG_SYMBOL)


def write_config(phys: PhysicalMemory, image: GuestImage, config: GuestConfig) -> bool:
    """Fill .armboard_config in guest RAM: the configure step, no compiler involved.

    Returns False for a kernel that has no such section (booted as it is)."""
    va = config_va(image)
    if va is None:
        return False
    seg = next(s for s in image.segments if s.vaddr <= va < s.vaddr + s.memsz)
    pa = va - seg.vaddr + seg.paddr
    if int.from_bytes(phys.read(pa, 4), "little") != CONFIG_MAGIC:
        raise InputError(f"{CONFIG_SYMBOL} in the kernel ELF does not carry the armboard magic",
                         str(image.elf_path))
    phys.write(pa, config.pack())
    return True


def load_modules(phys: PhysicalMemory, layout: BootLayout) -> None:
    """The embedded MFS_IMAGE, each module, the environment and the metadata, where plan() put them."""
    overlaid = {pa for pa, _ in layout.overlays}

    def place(pa: int, path: str | os.PathLike[str], size: int) -> None:
        if pa in overlaid:
            head = size // PAGE * PAGE   # mapped from the file; copy only the last partial page
            if size > head:
                phys.readinto_file(pa + head, path, size - head, head)
        else:
            phys.readinto_file(pa, path, size)

    embedded = layout.embedded_md
    if embedded is not None and embedded.image is not None:
        place(layout.pa(embedded.va), embedded.image, embedded.image_size)
    for mod in layout.modules:
        place(mod.pa, mod.path, mod.size)
    phys.write(layout.pa(layout.env_va), layout.env)
    phys.write(layout.pa(layout.metadata_va), layout.metadata)


def write_configured_elf(image: GuestImage, config: GuestConfig, out: str | os.PathLike[str]) -> None:
    """A copy of the kernel ELF with the configuration filled in (for QEMU's -kernel)."""
    with open(image.elf_path, "rb") as f:
        data = bytearray(f.read())
    va = config_va(image)
    if va is not None:
        seg = next(s for s in image.segments if s.vaddr <= va < s.vaddr + s.filesz)
        off = va - seg.vaddr + seg.offset
        data[off:off + len(config.pack())] = config.pack()
    with open(out, "wb") as f:
        f.write(data)
