"""Board descriptions: the physical memory map a machine is built from, read from TOML.

A profile may also give the board a swap device (`[swap]`: size, allocator and the allocator's
options). To the board that is only a block device of a size over a host-side store (board/storage,
nbdkit's memory plugin allocators); what pages go there is the kernel's business.
"""

from __future__ import annotations

import marshal
import os
import zlib
from collections import namedtuple

TYPE_CHECKING = False   # typing, dataclasses and pathlib cost imports on every boot; annotations are strings
if TYPE_CHECKING:
    from typing import Any

    from .storage import Allocator

PROFILE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles")


class ProfileError(ValueError):
    """A board profile that is missing or malformed."""


class RegionSpec(namedtuple("RegionSpec", "name base size type geometry", defaults=("memory", ""))):
    """A region of the memory map: a flash bank (`geometry`: a CFI geometry name, see
    board/devices/flash_image.py) or a device (`type`: "pl011")."""

    __slots__ = ()


SWAP_ALLOCATORS = ("sparse", "malloc", "zstd")
SWAP_OPTIONS = {"mlock": "malloc", "level": "zstd"}   # option -> the one allocator that takes it
# The kernel keeps the first two pages of a swap device for a label (sys/vm/vm_swap.c
# swaponsomething), so a device needs at least one page more to hold anything.
SWAP_MIN_SIZE = 3 * 4096
ZSTD_LEVELS = range(1, 23)     # zstd's compression levels 1..ZSTD_maxCLevel() (22)


class SwapSpec(namedtuple("SwapSpec", "size allocator options", defaults=("sparse", ()))):
    """A swap device: `size` bytes in a board/storage allocator (sparse, malloc or zstd), with its
    options as ((name, value), ...)."""

    __slots__ = ()

    def open(self) -> Allocator:
        """The store, as `nbdkit memory SIZE allocator=KIND[,options]` would make it."""
        from .storage import open_allocator

        return open_allocator(self.allocator, self.size, **dict(self.options))

    def __str__(self) -> str:
        opts = "".join(f",{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.options)
        return f"{self.size}:{self.allocator}{opts}"


def swap_spec(size: object, allocator: object = "sparse", options: dict[str, object] | None = None, *,
              where: str = "swap:") -> SwapSpec:
    """Check a swap device's size, allocator and options; ProfileError starts with `where`, then the key."""
    from .storage import SizeError, parse_size

    if isinstance(size, bool) or not isinstance(size, int | str):
        raise ProfileError(f"{where} size: expected bytes or a size such as \"512m\", got {size!r}")
    try:
        nbytes = parse_size(size)
    except SizeError as exc:
        raise ProfileError(f"{where} size: {exc.message}") from None
    if nbytes < SWAP_MIN_SIZE:
        raise ProfileError(f"{where} size: {size!r} is smaller than the {SWAP_MIN_SIZE} bytes a swap device "
                           "needs (the kernel keeps its first two pages for a label)")
    if not isinstance(allocator, str) or allocator not in SWAP_ALLOCATORS:
        raise ProfileError(f"{where} allocator: unknown allocator {allocator!r} "
                           f"(expected one of {', '.join(SWAP_ALLOCATORS)})")
    checked: list[tuple[str, Any]] = []
    for key, value in (options or {}).items():
        if key not in SWAP_OPTIONS:
            raise ProfileError(f"{where} {key}: unknown option (known: size, allocator, "
                               f"{', '.join(f'{k} for {a}' for k, a in SWAP_OPTIONS.items())})")
        if SWAP_OPTIONS[key] != allocator:
            raise ProfileError(f"{where} {key}: only allocator={SWAP_OPTIONS[key]} takes {key}, "
                               f"not allocator={allocator}")
        checked.append((key, _swap_option(key, value, where)))
    return SwapSpec(nbytes, allocator, tuple(checked))


def _swap_option(key: str, value: object, where: str) -> Any:
    if key == "mlock":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ProfileError(f"{where} mlock: expected true or false, got {value!r}")
    level = value
    if isinstance(value, str):
        try:
            level = int(value, 10)
        except ValueError:
            level = value
    if isinstance(level, bool) or not isinstance(level, int) or level not in ZSTD_LEVELS:
        raise ProfileError(f"{where} level: expected a zstd level from {ZSTD_LEVELS.start} to "
                           f"{ZSTD_LEVELS.stop - 1}, got {value!r}")
    return level


def parse_swap_spec(text: str, *, where: str = "--swap") -> SwapSpec:
    """`SIZE[:ALLOCATOR[,KEY=VALUE...]]` (e.g. "256m", "1g:zstd", "64m:malloc,mlock=true")."""
    size, _, rest = text.partition(":")
    allocator, *pairs = rest.split(",") if rest else ["sparse"]
    options: dict[str, object] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ProfileError(f"{where} {text!r}: {pair!r}: expected KEY=VALUE after the allocator "
                               "(e.g. 64m:malloc,mlock=true)")
        options[key.strip()] = value.strip()
    return swap_spec(size.strip(), allocator.strip() or "sparse", options, where=f"{where} {text!r}:")


def _profile_swap(data: dict, path: str) -> SwapSpec | None:
    table = data.get("swap")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: swap: expected a [swap] table")
    if "size" not in table:
        raise ProfileError(f"{path}: [swap] size: missing (e.g. size = \"256m\")")
    options = {k: v for k, v in table.items() if k not in ("size", "allocator")}
    return swap_spec(table["size"], table.get("allocator", "sparse"), options, where=f"{path}: [swap]")


class BoardProfile(namedtuple("BoardProfile", "name description cpu ram_base ram_default ram_min ram_max flash "
                                               "devices console_device console_devmap_va swap", defaults=(None,))):
    """A board: its RAM (base, default, smallest and largest size), flash banks and devices
    (tuples of RegionSpec), the console device and where the kernel maps it, and a swap device."""

    __slots__ = ()

    @property
    def console(self) -> RegionSpec:
        return next(d for d in self.devices if d.name == self.console_device)


def available_profiles() -> list[str]:
    return sorted(name[:-5] for name in os.listdir(PROFILE_DIR) if name.endswith(".toml"))


def _read_toml(path: str) -> dict:
    """The parsed TOML, from a marshal cache beside the user's cache when it is fresh.

    tomllib (with typing and datetime) costs more to import than a boot's own set-up; the cache
    is keyed by the file's path, size and modification time, and is only an optimisation."""
    st = os.stat(path)
    root = os.environ.get("ARMBOARD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "armboard")
    key = f"{zlib.crc32(os.path.realpath(path).encode()):08x}-{st.st_size}-{st.st_mtime_ns}"
    stem = os.path.splitext(os.path.basename(path))[0]
    cached = os.path.join(root, "profiles", f"{stem}-{key}.marshal")
    try:
        with open(cached, "rb") as f:
            return marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    import tomllib

    with open(path, encoding="utf-8") as f:
        data = tomllib.loads(f.read())
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
    path = os.fspath(name_or_path)
    if not os.path.splitext(path)[1]:
        path = os.path.join(PROFILE_DIR, f"{path}.toml")
    if not os.path.isfile(path):
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
            swap=_profile_swap(data, path),
        )
    except ProfileError:
        raise                                  # already names the file and the key
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:   # TOMLDecodeError is a ValueError
        raise ProfileError(f"{path}: malformed board profile: {exc}") from None
    if not any(d.name == profile.console_device for d in devices):
        raise ProfileError(f"{path}: console device '{profile.console_device}' is not defined")
    return profile
