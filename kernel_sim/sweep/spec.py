"""What every point of a sweep shares, how a point becomes a boot request, and the files it reads.

A SweepSpec is small and picklable: it travels to every worker (a process of this machine or of a
Dask cluster). Its paths are absolute; on a worker whose files were staged under another root,
`rebased(root)` moves them there, and the generated root image (`--mfsroot-size`) is made on the
worker itself from the root image and the size.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.sweep.grid import Point

# BootRequest fields a sweep never takes from the command line: the console is off, RAM is a grid
# dimension, the time limit is the per-point one.
_NOT_BASE = ("console", "physmem", "timeout", "read_line", "on_stage")
_PATH_FIELDS = ("kernconf", "loader_conf", "hints", "mfsroot", "kernel")
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class SweepSpec:
    """The base request's fields (paths absolute), the generated root image, the per-point time limit,
    and whether points may start from a shared warm board."""

    base: tuple[tuple[str, object], ...]
    mfsroot_size: int | None = None
    mfsroot_size_text: str = ""
    timeout: float = DEFAULT_TIMEOUT
    warm: bool = True
    cache_dir: str = field(default="")      # where generated images go ("" = the user's cache)

    @classmethod
    def from_request(cls, request, **kwargs) -> SweepSpec:
        fields = {k: v for k, v in request.as_dict().items() if k not in _NOT_BASE}
        for name in _PATH_FIELDS:
            if fields.get(name) is not None:
                fields[name] = Path(os.path.abspath(fields[name]))
        fields["flash"] = [(bank, Path(os.path.abspath(p))) for bank, p in fields.get("flash", [])]
        fields["md_images"] = [Path(os.path.abspath(p)) for p in fields.get("md_images", [])]
        fields["md_vnodes"] = [_abs_vnode(spec) for spec in fields.get("md_vnodes", [])]
        footprint = fields.get("kernel_footprint")
        if footprint is not None and Path(footprint).exists():
            fields["kernel_footprint"] = os.path.abspath(footprint)
        board = fields.get("board", "virt")
        if Path(board).suffix:
            fields["board"] = os.path.abspath(board)
        return cls(tuple(sorted(fields.items())), **kwargs)

    def base_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.base}

    def digest(self) -> str:
        return hashlib.blake2b(pickle.dumps(self, protocol=5), digest_size=12).hexdigest()

    def rebased(self, root: Path) -> SweepSpec:
        """The same spec with every input file under `root` (files staged on a worker by their client paths)."""
        if root == Path("/"):
            return self

        def move(p: Path) -> Path:
            return root / Path(p).relative_to("/")

        fields = self.base_dict()
        for name in _PATH_FIELDS:
            if fields.get(name) is not None:
                fields[name] = move(fields[name])
        fields["flash"] = [(bank, move(p)) for bank, p in fields["flash"]]
        fields["md_images"] = [move(p) for p in fields["md_images"]]
        fields["md_vnodes"] = [_move_vnode(spec, move) for spec in fields["md_vnodes"]]
        if fields.get("kernel_footprint") is not None and os.path.isabs(fields["kernel_footprint"]):
            fields["kernel_footprint"] = str(move(Path(fields["kernel_footprint"])))
        if os.path.isabs(fields["board"]):
            fields["board"] = str(move(Path(fields["board"])))
        return replace(self, base=tuple(sorted(fields.items())))


def _abs_vnode(spec: str) -> str:
    path, suffix = (spec[:-3], spec[-3:]) if spec.endswith((":rw", ":ro")) else (spec, "")
    return os.path.abspath(path) + suffix


def _move_vnode(spec: str, move) -> str:
    path, suffix = (spec[:-3], spec[-3:]) if spec.endswith((":rw", ":ro")) else (spec, "")
    return str(move(Path(path))) + suffix


def request_for(base: dict, point: Point, *, timeout: float = DEFAULT_TIMEOUT):
    """The BootRequest of one point: the base request's fields plus the point's settings."""
    from kernel_sim import boot as boot_mod

    fields = dict(base)
    overrides = list(fields.pop("overrides", []))
    tunables = list(fields.pop("tunables", []))
    for name, value in point.settings:
        if name.isupper():
            overrides.append(f"{name}={value}")
        else:
            tunables.append((name, value))
    if point.physmem is not None:
        fields["physmem"] = point.physmem
    return boot_mod.BootRequest(overrides=overrides, tunables=tunables, console=None, timeout=timeout, **fields)


# ---------------------------------------------------------------------------------------------- images
def root_image(base: dict) -> Path | None:
    """The root image a boot of `base` preloads: --mfsroot, else loader.conf's root module (or none)."""
    if base.get("mfsroot") is not None:
        return Path(base["mfsroot"])
    if base.get("loader_conf") is None:
        return None
    from kernel_sim.loader.loaderconf import ROOT_MODULE, parse_loader_conf

    path = next((m.path for m in parse_loader_conf(base["loader_conf"]).modules if m.key == ROOT_MODULE), None)
    return None if path is None else Path(path)


def check_generated_root(base: dict, size: int, where: str) -> None:
    """Refuse, before any boot, a generated root image smaller than the root image it replaces."""
    root = root_image(base)
    if root is None:
        return
    try:
        have = root.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read the root image {root}: {describe_host(exc)}", where) from None
    if have > size:
        raise InputError(f"{size} bytes is smaller than the root image it replaces, {root} ({have} bytes)", where)


def generated_root(base: dict, size: int, path: Path, where: str) -> Path:
    """--mfsroot-size: a root image of `size` bytes in the root image's place, as --mfsroot FILE would be.

    Its head is the root image the boot would preload, so md0 still mounts as root (a UFS file system
    mounts from a device bigger than itself), and the rest is a hole: the kernel's footprint is that of
    a root image of `size`, and no boot reads or copies the hole. Without a root image it is all hole."""
    check_generated_root(base, size, where)
    root = root_image(base)
    with path.open("wb") as out:
        if root is not None:
            try:
                with root.open("rb") as src:
                    while block := src.read(_COPY_BLOCK):
                        if block.count(0) == len(block):
                            out.seek(len(block), 1)      # keep holes holes
                        else:
                            out.write(block)
            except OSError as exc:
                raise InputError(f"cannot read the root image {root}: {describe_host(exc)}", where) from None
        out.truncate(size)
    return path


_COPY_BLOCK = 64 * 1024


def cache_root(spec: SweepSpec) -> Path:
    if spec.cache_dir:
        return Path(spec.cache_dir)
    from kernel_sim.guest.build import cache_root as armboard_cache

    return Path(armboard_cache()) / "sweep"


def worker_base(spec: SweepSpec) -> dict:
    """The base request on this worker: the generated root image made here (once per machine: its name
    is its content's, so every worker and every run of this machine boots the same file)."""
    base = spec.base_dict()
    if spec.mfsroot_size is None:
        return base
    where = f"--mfsroot-size {spec.mfsroot_size_text}"
    root = root_image(base)
    ident = b"none"
    if root is not None:
        try:
            st = root.stat()
        except OSError as exc:
            raise InputError(f"cannot read the root image {root}: {describe_host(exc)}", where) from None
        ident = f"{root}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()
    name = hashlib.blake2b(ident + b"/%d" % spec.mfsroot_size, digest_size=10).hexdigest()
    directory = cache_root(spec) / "generated" / name
    path = directory / f"mfsroot-{spec.mfsroot_size_text}.img"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{path.name}.{os.getpid()}"
        generated_root(base, spec.mfsroot_size, tmp, where)
        os.replace(tmp, path)             # atomic: a worker racing us makes the same bytes
    base["mfsroot"] = path
    return base


def input_files(spec: SweepSpec, points: list[Point]) -> list[Path]:
    """Every host file a boot of this sweep reads: configs and what they include, loader.conf and its
    modules, hints, kernel, flash and md images, the board's TOML file. Staged on workers that lack them.

    Found by preparing a point (the first that prepares); the paths the user named are added anyway."""
    from kernel_sim import boot as boot_mod

    base = spec.base_dict()
    files: set[Path] = set()
    for name in _PATH_FIELDS:
        if base.get(name) is not None:
            files.add(Path(base[name]))
    files.update(p for _, p in base["flash"])
    files.update(base["md_images"])
    files.update(Path(s[:-3] if s.endswith((":rw", ":ro")) else s) for s in base["md_vnodes"])
    footprint = base.get("kernel_footprint")
    if footprint is not None and os.path.isabs(footprint):
        files.add(Path(footprint))
    if os.path.isabs(base["board"]):
        files.add(Path(base["board"]))
    with suppress(InputError):
        root = root_image(base)
        if root is not None:
            files.add(root)
    for point in points[:20]:
        try:
            prep = boot_mod.prepare(request_for(base, point))
        except InputError:
            continue
        files.update(prep.kernconf.sources)
        files.update(prep.kernconf.hints_files)
        if prep.kernconf.mfs_image is not None:
            files.add(prep.kernconf.mfs_image)
        files.update(m.path for m in prep.loader.modules if m.path is not None)
        if prep.loader.path is not None:
            files.add(prep.loader.path)
        break
    return sorted({Path(os.path.abspath(f)) for f in files if Path(f).is_file()})
