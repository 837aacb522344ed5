"""Reading a user-supplied kernel ELF: validated so that bad files get one clear error line."""

from __future__ import annotations

import os

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError, check_input_file
from kernel_sim.guest.build import GuestImage, Segment

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from kernel_sim.errors import StrPath

EM_ARM = 40


def read_kernel_elf(path: StrPath, *, what: str = "kernel", where: str | None = None) -> GuestImage:
    """Load segments, entry and symbols of an ARM ELF, or raise InputError naming the file (and the
    option that named it, ``where``, when the file cannot be opened at all)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    path = os.fspath(path)
    size = check_input_file(path, what=f"{what} ELF", where=where).st_size
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below, after the error is mapped
    except OSError as exc:
        raise InputError(f"cannot read {what} ELF: {describe_host(exc)}", str(path)) from None
    with f:
        if f.read(4) != b"\x7fELF":
            raise InputError(f"not an ELF file (no \\x7fELF magic at offset 0); a {what} ELF is expected",
                             str(path))
        f.seek(0)
        try:
            elf = ELFFile(f)
            if elf.elfclass != 32 or elf["e_machine"] not in ("EM_ARM", EM_ARM):
                raise InputError(f"{what} ELF is for {elf['e_machine']} ({elf.elfclass}-bit), "
                                 "not 32-bit ARM", str(path))
            segments = []
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD":
                    continue
                if seg["p_offset"] + seg["p_filesz"] > size:
                    raise InputError(f"truncated {what} ELF: a PT_LOAD segment needs bytes up to offset "
                                     f"0x{seg['p_offset'] + seg['p_filesz']:x} but the file has 0x{size:x}",
                                     str(path))
                segments.append(Segment(seg["p_offset"], seg["p_vaddr"], seg["p_paddr"], seg["p_filesz"],
                                        seg["p_memsz"], seg["p_flags"]))
            if not segments:
                raise InputError(f"{what} ELF has no PT_LOAD segment", str(path))
            symbols: dict[str, int] = {}
            symtab = elf.get_section_by_name(".symtab")
            for sym in symtab.iter_symbols() if symtab is not None else ():
                if sym.name and sym["st_shndx"] != "SHN_UNDEF" and not sym.name.startswith("$"):
                    symbols[sym.name] = sym["st_value"] & ~1
            entry = elf.header["e_entry"]
        except InputError:
            raise
        except (ELFError, ValueError, KeyError, OSError, AssertionError, Exception) as exc:  # noqa: BLE001
            raise InputError(f"truncated or malformed {what} ELF ({type(exc).__name__}: {exc})",
                             str(path)) from None
    return GuestImage(elf_path=path, entry=entry, segments=tuple(segments), symbols=symbols)


def footprint_of(image: GuestImage) -> int:
    """Bytes from the lowest to the highest loaded address: what the kernel occupies in memory."""
    low = min(s.vaddr for s in image.segments)
    return image.image_end - low
