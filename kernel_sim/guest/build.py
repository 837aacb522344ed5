"""Build the guest kernel ELF reproducibly with the pinned zig toolchain, cached by source hash.

An ordinary boot never runs a compiler: the ELF and a JSON summary of its load segments and
symbols (so the boot need not import pyelftools) live in a cache directory named by the hash of
the sources, the flags and the toolchain version.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from collections import namedtuple

GUEST_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("locore.S", "console.c", "trap.c", "initarm.c", "pmap.c")
INPUTS = (*SOURCES, "armboard.h", "link.ld")
ZIG_VERSION = "0.17.1"  # pinned in pyproject.toml

CFLAGS = (
    "-target", "arm-freestanding-eabi", "-mcpu=cortex_a15", "-marm", "-mfloat-abi=soft",
    "-ffreestanding", "-fno-builtin", "-nostdlib", "-O2", "-fno-pic", "-fno-sanitize=all",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g0", "-Wall", "-Wextra", "-Werror",
    "-Wl,--build-id=none", "-Wl,-z,max-page-size=4096",
)


class GuestBuildError(RuntimeError):
    """The guest kernel could not be built (missing toolchain or a compiler error)."""


class Segment(namedtuple("Segment", "offset vaddr paddr filesz memsz flags")):
    """One PT_LOAD segment of the ELF (p_offset, p_vaddr, ...). The records here are namedtuples
    and paths plain strings: this module is on every boot's path, dataclasses and pathlib are not."""

    __slots__ = ()


class GuestImage(namedtuple("GuestImage", "elf_path entry segments symbols")):
    """The built kernel: its ELF file (a path) plus what the loader needs from it: the entry point,
    the Segments and the symbols (name -> address)."""

    __slots__ = ()

    @property
    def image_end(self) -> int:
        """VA just past the highest loaded byte (&_end)."""
        return max(s.vaddr + s.memsz for s in self.segments)

    def physical_alias(self, va: int) -> int | None:
        """The physical address of a kernel VA, through the PT_LOAD segment holding it (None outside)."""
        seg = next((s for s in self.segments if s.vaddr <= va < s.vaddr + s.memsz), None)
        return None if seg is None else va - seg.vaddr + seg.paddr

    def symbol_at(self, va: int) -> str | None:
        """Name of the function or object containing va, as 'name+0xoff'."""
        best = None
        for name, addr in self.symbols.items():
            if addr <= va and (best is None or addr > best[1]):
                best = (name, addr)
        if best is None or va - best[1] > 0x10000:
            return None
        off = va - best[1]
        return best[0] if off == 0 else f"{best[0]}+0x{off:x}"


def source_hash() -> str:
    """The cache key: CRC-32 and Adler-32 of the toolchain version, flags and sources.

    A content key, not a security hash: it is computed on every boot, and hashlib's import alone
    costs more than the boot's own work before the CPU starts."""
    data = b"\0".join([ZIG_VERSION.encode(), "\0".join(CFLAGS).encode()]
                      + [name.encode() + b"\0" + _read(os.path.join(GUEST_DIR, name)) for name in INPUTS])
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def cache_root() -> str:
    """$ARMBOARD_CACHE, else $XDG_CACHE_HOME/armboard, else ~/.cache/armboard."""
    env = os.environ.get("ARMBOARD_CACHE")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "armboard")


def compile_elf(out: str | os.PathLike[str], *, zig_cache: str | os.PathLike[str] | None = None) -> None:
    """Run the compiler: `python -m ziglang cc` (the pinned PyPI toolchain)."""
    import subprocess

    out = os.fspath(out)
    cmd = [sys.executable, "-m", "ziglang", "cc", *CFLAGS, f"-I{GUEST_DIR}",
           "-Wl,-T," + os.path.join(GUEST_DIR, "link.ld"),
           *(os.path.join(GUEST_DIR, s) for s in SOURCES), "-o", out]
    env = dict(os.environ)
    if zig_cache is not None:
        env["ZIG_GLOBAL_CACHE_DIR"] = os.path.join(zig_cache, "global")
        env["ZIG_LOCAL_CACHE_DIR"] = os.path.join(zig_cache, "local")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=os.path.dirname(out) or ".")
    except OSError as exc:
        raise GuestBuildError(f"cannot run the guest toolchain: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise GuestBuildError("guest build failed: " + " | ".join(tail))


def describe_elf(path: str | os.PathLike[str]) -> dict:
    """Load segments, entry and symbols, read once with pyelftools at build time."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        segments = [
            {"offset": s["p_offset"], "vaddr": s["p_vaddr"], "paddr": s["p_paddr"],
             "filesz": s["p_filesz"], "memsz": s["p_memsz"], "flags": s["p_flags"]}
            for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"
        ]
        symbols = {}
        symtab = elf.get_section_by_name(".symtab")
        for sym in symtab.iter_symbols() if symtab else ():
            if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") \
                    and sym["st_shndx"] != "SHN_UNDEF" and not sym.name.startswith("$"):
                symbols[sym.name] = sym["st_value"] & ~1
        return {"entry": elf.header["e_entry"], "segments": segments, "symbols": symbols}


def _image_from(elf_path: str, info: dict) -> GuestImage:
    """The image from its summary (a marshal'd dict: the fastest read of a cached build)."""
    return GuestImage(elf_path=elf_path, entry=info["entry"],
                      segments=tuple(Segment(**s) for s in info["segments"]),
                      symbols=dict(info["symbols"]))


_built: list[GuestImage] = []   # this process's guest_image(), once found


def guest_image() -> GuestImage:
    """The cached build for the current sources, building it first if needed."""
    if _built:
        return _built[0]
    directory = os.path.join(cache_root(), f"guest-{source_hash()}")
    elf_path, info_path = os.path.join(directory, "kernel.elf"), os.path.join(directory, "kernel.info")
    if os.path.exists(elf_path) and os.path.exists(info_path):
        _built.append(_image_from(elf_path, marshal.loads(_read(info_path))))
        return _built[0]
    import tempfile

    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        tmp_elf, tmp_info = os.path.join(tmp, "kernel.elf"), os.path.join(tmp, "kernel.info")
        compile_elf(tmp_elf)
        info = describe_elf(tmp_elf)
        with open(tmp_info, "wb") as f:
            f.write(marshal.dumps(info))
        os.replace(tmp_elf, elf_path)          # atomic: parallel builds cannot see half a file
        os.replace(tmp_info, info_path)
    _built.append(_image_from(elf_path, info))
    return _built[0]


if __name__ == "__main__":
    img = guest_image()
    print(img.elf_path)
