"""Where loader(8) puts everything in physical memory, decided before the machine is built.

Order as in FreeBSD's loader (stand/common/load_elf.c, md_load): the kernel by its physical
addresses; each module page-aligned after it; the environment; the metadata page-aligned after
that; MODINFOMD_KERNEND = the page-rounded end of the metadata, so it covers modules and metadata.
Addresses written into the metadata are kernel virtual addresses.

MD_ROOT's embedded image (md.c's mfs_root) is part of the kernel's own footprint, before the modules.
FreeBSD builds it two ways (sys/conf/kern.pre.mk, kern.post.mk, sys/dev/md/md.c):

* options MD_ROOT_SIZE=N: md.c reserves ``u_char mfs_root[N*1024]`` in section "oldmfs" and the build
  writes MFS_IMAGE into that array (sys/tools/embed_mfs.sh, which fails with "MFS image too large" when
  the image is bigger). mfs_root_size is the array's size, with or without an image.
* no MD_ROOT_SIZE: kern.post.mk makes an object of MFS_IMAGE with objcopy, its bytes in section "mfs"
  between the symbols mfs_root and mfs_root_end, and md.c takes mfs_root_size = &mfs_root_end -
  &mfs_root: the kernel grows by the image exactly. Without an image the size is 0 and md0 is not
  attached.
"""

from __future__ import annotations

from collections import namedtuple

from kernel_sim.errors import InputError, check_input_file
from kernel_sim.guest.abi import MIB, PAGE_SIZE
from kernel_sim.guest.build import GuestImage
from kernel_sim.loader.kernconf import KernelConfig
from kernel_sim.loader.metadata import MetadataModule, build_environment, build_metadata

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from kernel_sim.errors import StrPath

OVERLAY_THRESHOLD = 1 * MIB   # modules at least this big are mapped from the file, not copied

# sys/sys/reboot.h flags that loader(8) derives from boot_* variables (stand/common/boot.c).
BOOT_HOWTO = {"boot_askname": 0x1, "boot_single": 0x2, "boot_dfltroot": 0x20, "boot_ddb": 0x40,
              "boot_verbose": 0x800, "boot_serial": 0x1000, "boot_cdrom": 0x2000, "boot_gdb": 0x8000,
              "boot_mute": 0x10000, "boot_pause": 0x100000, "boot_multicons": 0x20000000}


def round_page(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class ModuleRequest(namedtuple("ModuleRequest", "name type path where")):
    """A module to preload: its metadata name, type, the host file and where it was asked for."""

    __slots__ = ()

    name: str
    type: str
    path: StrPath
    where: str


class PlacedModule(namedtuple("PlacedModule", "name type path where pa va size")):
    __slots__ = ()

    name: str
    type: str
    path: StrPath
    where: str
    pa: int
    va: int
    size: int


class MfsRoot(namedtuple("MfsRoot", "section size image image_size where va", defaults=(0,))):
    """md.c's mfs_root: the section it lives in, mfs_root_size, and the MFS_IMAGE written into it."""

    __slots__ = ()

    section: str  # "oldmfs" (the MD_ROOT_SIZE array) or "mfs" (the objcopy'd image)
    size: int  # mfs_root_size: what md0 attaches as "Embedded image %zd bytes"
    image: StrPath | None  # makeoptions MFS_IMAGE
    image_size: int
    where: str  # the config line that put the image (or the array) in the kernel
    va: int  # placed by plan()


def mfs_root(kernconf: KernelConfig) -> MfsRoot | None:
    """What md.c's mfs_root is for this kernel config; InputError where FreeBSD's build fails."""
    image = kernconf.mfs_image
    image_where = kernconf.origin.get("makeoptions MFS_IMAGE", str(kernconf.sources[0]) if kernconf.sources else "")
    md_root = bool(kernconf.value("MD_ROOT"))
    size_kb = int(kernconf.value("MD_ROOT_SIZE") or 0)
    if image is not None and not md_root:
        raise InputError("makeoptions MFS_IMAGE needs options MD_ROOT: only with it does md(4) attach the "
                         "embedded image as md0", image_where)
    if not md_root:
        return None
    image_size = 0
    if image is not None:
        image_size = check_input_file(image, what="MFS_IMAGE", where=image_where).st_size
    if size_kb:
        if image_size > size_kb * 1024:      # sys/tools/embed_mfs.sh: "MFS image too large"
            raise InputError(f"MFS image too large: MFS_IMAGE {image} is {image_size} bytes, MD_ROOT_SIZE={size_kb} "
                             f"reserves {size_kb * 1024} bytes ({size_kb} KiB) for it; set options "
                             f"MD_ROOT_SIZE={-(-image_size // 1024)} or more, or remove MD_ROOT_SIZE to embed "
                             f"the image as it is", kernconf.origin_of("MD_ROOT_SIZE"))
        return MfsRoot("oldmfs", size_kb * 1024, image, image_size,
                       image_where if image is not None else kernconf.origin_of("MD_ROOT_SIZE"))
    if image is None or image_size == 0:
        return None                          # &mfs_root_end - &mfs_root == 0: md.c attaches nothing
    return MfsRoot("mfs", image_size, image, image_size, image_where)


class BootLayout(namedtuple("BootLayout",
                            "kernel_pa kernel_va kernel_size embedded_md modules env_va env metadata_va "
                            "metadata kernend howto ram_base ram_size overlays", defaults=((),))):
    __slots__ = ()

    kernel_pa: int
    kernel_va: int
    kernel_size: int  # the footprint, including the embedded md image area
    embedded_md: MfsRoot | None  # MD_ROOT's mfs_root, placed (va set)
    modules: list[PlacedModule]
    env_va: int
    env: bytes
    metadata_va: int
    metadata: bytes
    kernend: int  # VA
    howto: int
    ram_base: int
    ram_size: int
    overlays: tuple[tuple[int, StrPath], ...]

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
         embedded_md: MfsRoot | None, modules: list[ModuleRequest], env: dict[str, str]) -> BootLayout:
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
    if embedded_md is not None:
        # oldmfs: md.c's page-aligned array; mfs: the image's bytes right after the kernel's, so the
        # kernel ends exactly image-size later (the linker puts the section among the kernel's own; its
        # place inside the kernel does not change the footprint).
        start = round_page(end) if embedded_md.section == "oldmfs" else end
        embedded = embedded_md._replace(va=start)
        end = start + embedded_md.size
    kernel_size = end - kernel_va
    cursor = round_page(end)

    placed = []
    for req in modules:
        size = check_input_file(req.path, what="module file", where=req.where).st_size
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
    if embedded is not None and embedded.image is not None and embedded.image_size >= OVERLAY_THRESHOLD \
            and embedded.va % PAGE_SIZE == 0:
        overlays.insert(0, (embedded.va - kernel_va + kernel_pa, embedded.image))
    return BootLayout(kernel_pa, kernel_va, kernel_size, embedded, placed, env_va, env_bytes,
                      metadata_va, metadata, kernend, howto, ram_base, ram_size, tuple(overlays))
