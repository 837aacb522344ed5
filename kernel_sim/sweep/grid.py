"""The grid of a sweep: dimensions, their values, and the points of their product.

The grid is a product of dimensions (`-g NAME=VALUES`): an upper-case NAME is a kernel option
(`-o NAME=VALUE`), anything else a loader tunable that goes into the kernel environment; `--physmem`
adds the RAM sizes. A point is one combination, numbered in the product's order: the number and the
settings together name it in the row store (resume) and in every executor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from kernel_sim.errors import InputError
from kernel_sim.loader.options import OPTIONS
from kernel_sim.loader.sizes import parse_size

MAX_POINTS = 100_000


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

    @property
    def options_text(self) -> str:
        """The settings as the row's `options` column writes them."""
        return " ".join(f"{n}={v}" for n, v in self.settings)


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
