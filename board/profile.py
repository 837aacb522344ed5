"""Board descriptions: the physical memory map a machine is built from, read from TOML."""

from __future__ import annotations

import marshal
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class ProfileError(ValueError):
    """A board profile that is missing or malformed."""


@dataclass(frozen=True)
class RegionSpec:
    name: str
    base: int
    size: int
    type: str = "memory"
    geometry: str = ""      # for flash banks: a CFI geometry name (board/devices/cfi.py)


@dataclass(frozen=True)
class BoardProfile:
    name: str
    description: str
    cpu: str
    ram_base: int
    ram_default: int
    ram_min: int
    ram_max: int
    flash: tuple[RegionSpec, ...]
    devices: tuple[RegionSpec, ...]
    console_device: str
    console_devmap_va: int

    @property
    def console(self) -> RegionSpec:
        return next(d for d in self.devices if d.name == self.console_device)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    """The parsed TOML, from a marshal cache beside the user's cache when it is fresh.

    tomllib (with typing and datetime) costs more to import than a boot's own set-up; the cache
    is keyed by the file's path, size and modification time, and is only an optimisation."""
    st = path.stat()
    root = os.environ.get("ARMBOARD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "armboard")
    key = f"{zlib.crc32(str(path.resolve()).encode()):08x}-{st.st_size}-{st.st_mtime_ns}"
    cached = os.path.join(root, "profiles", f"{path.stem}-{key}.marshal")
    try:
        with open(cached, "rb") as f:
            return marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    import tomllib

    data = tomllib.loads(path.read_text())
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = f"{cached}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump(data, f)
        os.replace(tmp, cached)
    except OSError:
        pass   # a read-only cache directory only costs the parse next time
    return data


def load_profile(name_or_path: str) -> BoardProfile:
    """A profile by name (board/profiles/NAME.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown board '{name_or_path}' (known: {', '.join(available_profiles())})")
    try:
        data = _read_toml(path)
        ram = data["ram"]
        flash = tuple(RegionSpec(f["name"], int(f["base"]), int(f["size"]), "flash", f.get("geometry", "qemu-virt"))
                      for f in data.get("flash", ()))
        devices = tuple(RegionSpec(d["name"], int(d["base"]), int(d["size"]), d["type"])
                        for d in data.get("device", ()))
        profile = BoardProfile(
            name=data["name"], description=data.get("description", ""), cpu=data.get("cpu", "cortex-a15"),
            ram_base=int(ram["base"]), ram_default=int(ram["default_size"]),
            ram_min=int(ram["min_size"]), ram_max=int(ram["max_size"]),
            flash=flash, devices=devices,
            console_device=data["console"]["device"], console_devmap_va=int(data["console"]["devmap_va"]),
        )
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:   # TOMLDecodeError is a ValueError
        raise ProfileError(f"{path}: malformed board profile: {exc}") from None
    if not any(d.name == profile.console_device for d in devices):
        raise ProfileError(f"{path}: console device '{profile.console_device}' is not defined")
    return profile
