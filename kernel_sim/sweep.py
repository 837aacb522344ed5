"""Sweeps: real boots over a grid of kernel options, tunables and RAM sizes, one row per boot.

The grid is a product of dimensions (`-g NAME=VALUES`): an upper-case NAME is a kernel option
(`-o NAME=VALUE`), anything else a loader tunable that goes into the kernel environment. Each point
boots in a worker process; the plan for the same point is computed beside it, and a disagreement
between plan and boot is flagged in the row.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.loader.options import OPTIONS
from kernel_sim.loader.sizes import parse_size

MAX_POINTS = 100_000
COLUMNS = ("point", "physmem", "options", "exit_code", "outcome", "stage", "message", "plan_exit_code",
           "plan_stage", "plan_agrees", "vm_kmem_size", "kmem_cap", "kvm_free", "kva_remaining", "kstacks_started",
           "virtual_seconds", "wall_seconds")


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple[str, ...]

    @property
    def is_option(self) -> bool:
        return self.name.isupper()


def parse_values(text: str, where: str) -> tuple[str, ...]:
    """'1..8' (integers, inclusive), or a comma list '64,128,256' / '300M,400M'."""
    values: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise InputError("an empty value in the list", where)
        if ".." in part:
            lo_text, _, hi_text = part.partition("..")
            try:
                lo, hi = int(lo_text, 0), int(hi_text, 0)
            except ValueError:
                raise InputError(f"range {part!r} needs two integers, e.g. 1..8", where) from None
            if hi < lo:
                raise InputError(f"range {part!r} runs backwards", where)
            values.extend(str(v) for v in range(lo, hi + 1))
        else:
            values.append(part)
    return tuple(values)


def parse_dimension(spec: str) -> Dimension:
    where = f"-g {spec}"
    name, sep, text = spec.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InputError("expected NAME=VALUES, e.g. -g VM_KMEM_SIZE_SCALE=1..8 or -g vm.kmem_size=300M,400M", where)
    if name.isupper() and name not in OPTIONS:
        raise InputError(f"unknown kernel option {name}", where)
    values = parse_values(text, where)
    if name.isupper():
        for value in values:     # a value the option cannot take is refused before any boot
            OPTIONS[name].parse_value(value, where=where)
    return Dimension(name, values)


def parse_physmem(text: str | None) -> tuple[str | None, ...]:
    if text is None:
        return (None,)
    values = parse_values(text, "--physmem")
    for v in values:
        parse_size(v, where="--physmem")
    return values


@dataclass(frozen=True)
class Point:
    index: int
    physmem: str | None
    settings: tuple[tuple[str, str], ...]    # (name, value) in dimension order

    @property
    def key(self) -> str:
        parts = [f"physmem={self.physmem}"] if self.physmem else []
        return " ".join(parts + [f"{n}={v}" for n, v in self.settings])


def grid_points(physmem: tuple[str | None, ...], dims: list[Dimension]) -> list[Point]:
    names = [d.name for d in dims]
    if len(set(names)) != len(names):
        raise InputError(f"a dimension is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}",
                         "-g")
    count = len(physmem)
    for d in dims:
        count *= len(d.values)
    if count == 0:
        raise InputError("the grid has no points", "-g")
    if count > MAX_POINTS:
        raise InputError(f"the grid has {count} points, more than {MAX_POINTS}", "-g")
    combos = itertools.product(physmem, *(d.values for d in dims))
    return [Point(i, c[0], tuple(zip(names, c[1:], strict=True))) for i, c in enumerate(combos)]


def root_image(base: dict) -> Path | None:
    """The root image a boot of `base` preloads: --mfsroot, else loader.conf's root module (or none)."""
    if base.get("mfsroot") is not None:
        return Path(base["mfsroot"])
    if base.get("loader_conf") is None:
        return None
    from kernel_sim.loader.loaderconf import ROOT_MODULE, parse_loader_conf

    return next((m.path for m in parse_loader_conf(base["loader_conf"]).modules if m.key == ROOT_MODULE), None)


def generated_root(base: dict, size: int, path: Path, where: str) -> Path:
    """--mfsroot-size: a root image of `size` bytes in the root image's place, as --mfsroot FILE would be.

    Its head is the root image the boot would preload, so md0 still mounts as root (a UFS file system
    mounts from a device bigger than itself), and the rest is a hole: the kernel's footprint is that of
    a root image of `size`, and no boot reads or copies the hole. Without a root image it is all hole."""
    root = root_image(base)
    with path.open("wb") as out:
        if root is not None:
            try:
                with open(root, "rb") as src:
                    have = src.seek(0, 2)
                    if have > size:
                        raise InputError(f"{size} bytes is smaller than the root image it replaces, {root} "
                                         f"({have} bytes)", where)
                    src.seek(0)
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


def request_for(base: dict, point: Point):
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
    fields["console"] = None
    return boot_mod.BootRequest(overrides=overrides, tunables=tunables, **fields)


def kmem_cap(kmem) -> str:
    """The option or tunable that capped vm_kmem_size in kmeminit ("" when the scale's value stood)."""
    if kmem is None or not kmem.from_scale or not (kmem.capped_to_max or kmem.overflowed):
        return ""
    return "vm.kmem_size_max" if kmem.size_max.source.startswith("tunable") else "VM_KMEM_SIZE_MAX"


def run_point(base: dict, point: Point) -> dict:
    """Boot one point (and plan it); the row for the CSV/JSON output."""
    from kernel_sim import boot as boot_mod
    from kernel_sim.plan import plan_boot

    row: dict = {"point": point.index, "physmem": point.physmem or "",
                 "options": " ".join(f"{n}={v}" for n, v in point.settings)}
    start = time.perf_counter()
    try:
        prep = boot_mod.prepare(request_for(base, point))
    except InputError as exc:
        row.update(exit_code=2, outcome="input error", stage="loader", message=str(exc), plan_exit_code=2,
                   plan_stage="loader", plan_agrees=True, wall_seconds=round(time.perf_counter() - start, 4))
        return row
    plan = plan_boot(prep)
    result = boot_mod.run(prep)
    startup = result.startup
    kmem = startup.kmem if startup else plan.kmem
    row.update(
        exit_code=result.exit_code, outcome=result.status, stage=result.stage, message=result.message,
        plan_exit_code=plan.exit_code, plan_stage=plan.stage,
        plan_agrees=(plan.exit_code, plan.stage) == (result.exit_code, result.stage),
        vm_kmem_size=kmem.vm_kmem_size if kmem else "", kmem_cap=kmem_cap(kmem),
        kvm_free=startup.kva.kvm_free if startup else "",
        kva_remaining=startup.kva.kva_remaining if startup else "",
        kstacks_started=len(startup.procs.procs) - 1 if startup and startup.procs else 0,
        virtual_seconds=startup.virtual_seconds if startup else 0.0,
        wall_seconds=round(time.perf_counter() - start, 4),
    )
    return row
