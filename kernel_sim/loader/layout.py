"""Where loader(8) puts everything in physical memory, decided before the machine is built.

Order as in FreeBSD's loader (stand/common/load_elf.c, md_load): the kernel by its physical
addresses; each module page-aligned after it; the environment; the metadata page-aligned after
that; MODINFOMD_KERNEND = the page-rounded end of the metadata, so it covers modules and metadata.
Addresses written into the metadata are kernel virtual addresses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kernel_sim.errors import InputError
from kernel_sim.guest.abi import MIB, PAGE_SIZE
from kernel_sim.guest.build import GuestImage
from kernel_sim.loader.metadata import MetadataModule, build_environment, build_metadata

OVERLAY_THRESHOLD = 1 * MIB   # modules at least this big are mapped from the file, not copied

# sys/sys/reboot.h flags that loader(8) derives from boot_* variables (stand/common/boot.c).
BOOT_HOWTO = {"boot_askname": 0x1, "boot_single": 0x2, "boot_dfltroot": 0x20, "boot_ddb": 0x40,
              "boot_verbose": 0x800, "boot_serial": 0x1000, "boot_cdrom": 0x2000, "boot_gdb": 0x8000,
              "boot_mute": 0x10000, "boot_pause": 0x100000, "boot_multicons": 0x20000000}


def round_page(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


@dataclass(frozen=True)
class ModuleRequest:
    """A module to preload: its metadata name, type, the host file and where it was asked for."""

    name: str
    type: str
    path: Path
    where: str


@dataclass(frozen=True)
class PlacedModule:
    name: str
    type: str
    path: Path
    where: str
    pa: int
    va: int
    size: int


@dataclass
class BootLayout:
    kernel_pa: int
    kernel_va: int
    kernel_size: int             # the footprint, including the embedded md image area
    embedded_md: tuple[int, int] | None   # (va, size) of MD_ROOT's mfs_root[] area
    modules: list[PlacedModule]
    env_va: int
    env: bytes
    metadata_va: int
    metadata: bytes
    kernend: int                 # VA
    howto: int
    ram_base: int
    ram_size: int
    overlays: list[tuple[int, Path]] = field(default_factory=list)

    def pa(self, va: int) -> int:
        return va - self.kernel_va + self.kernel_pa

    @property
    def kernel_end_va(self) -> int:
        return self.kernel_va + self.kernel_size


def howto_from_env(env: dict[str, str]) -> int:
    howto = 0
    for name, flag in BOOT_HOWTO.items():
        if name in env and env[name].lower() != "no":   # stand/common/boot.c boot_env_to_howto
            howto |= flag
    return howto


def plan(image: GuestImage, *, ram_base: int, ram_size: int, footprint: int | None,
         md_root_size: int, modules: list[ModuleRequest], env: dict[str, str]) -> BootLayout:
    """Place kernel, modules, environment and metadata; InputError when they cannot fit."""
    kernel_va = min(s.vaddr for s in image.segments)
    kernel_pa = min(s.paddr for s in image.segments)
    ram_end = ram_base + ram_size
    if kernel_pa < ram_base or kernel_pa >= ram_end:
        raise InputError(f"kernel loads at physical 0x{kernel_pa:08x}, outside RAM "
                         f"0x{ram_base:08x}-0x{ram_end:08x}", str(image.elf_path))
    end = image.image_end
    if footprint is not None:
        end = max(end, kernel_va + footprint)
    embedded = None
    if md_root_size:
        start = round_page(end)
        embedded = (start, md_root_size)
        end = start + md_root_size
    kernel_size = end - kernel_va
    cursor = round_page(end)

    placed = []
    for req in modules:
        try:
            size = os.path.getsize(req.path)
            if not os.access(req.path, os.R_OK) or not req.path.is_file():
                raise PermissionError
        except FileNotFoundError:
            raise InputError(f"module file {req.path} not found", req.where) from None
        except OSError:
            raise InputError(f"module file {req.path} cannot be read", req.where) from None
        pa = cursor - kernel_va + kernel_pa
        if pa + size > ram_end:
            raise InputError(
                f"module {req.path} ({size} bytes) does not fit in RAM: it would end at physical "
                f"0x{pa + size:x}, RAM ends at 0x{ram_end:x} ({ram_size >> 20} MiB of physmem)", req.where)
        placed.append(PlacedModule(req.name, req.type, req.path, req.where, pa, cursor, size))
        cursor = round_page(cursor + size)

    howto = howto_from_env(env)
    env_bytes = build_environment(env)
    env_va = cursor
    metadata_va = round_page(env_va + len(env_bytes))
    kernel_md = MetadataModule("kernel", "elf kernel", kernel_va, kernel_size)
    md_modules = [MetadataModule(m.name, m.type, m.va, m.size) for m in placed]
    size = len(build_metadata(kernel_md, md_modules, howto=howto, envp=env_va, kernend=0))
    kernend = round_page(metadata_va + size)
    metadata = build_metadata(kernel_md, md_modules, howto=howto, envp=env_va, kernend=kernend)
    if kernend - kernel_va + kernel_pa > ram_end:
        raise InputError(f"kernel, modules and metadata end at physical 0x{kernend - kernel_va + kernel_pa:x}, "
                         f"beyond RAM (0x{ram_end:x})")
    overlays = [(m.pa, m.path) for m in placed if m.size >= OVERLAY_THRESHOLD]
    return BootLayout(kernel_pa, kernel_va, kernel_size, embedded, placed, env_va, env_bytes,
                      metadata_va, metadata, kernend, howto, ram_base, ram_size, overlays)
