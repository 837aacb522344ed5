"""Kernel tunables and kmem options, checked before the guest runs (bad input: exit 2, no boot)."""

from __future__ import annotations

from kernel_sim.errors import InputError
from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE
from kernel_sim.loader.sizes import parse_int, parse_size
from kernel_sim.vm.kmem import kmeminit

KMEM_OPTIONS = ("VM_KMEM_SIZE", "VM_KMEM_SIZE_SCALE", "VM_KMEM_SIZE_MIN", "VM_KMEM_SIZE_MAX")
HZ_DEFAULT = 1000   # sys/kern/subr_param.c: HZ on arm


def _tunable_int(env: dict[str, str], name: str, default: int, *, size: bool = False) -> int:
    if name not in env:
        return default
    try:
        return parse_size(env[name], where=name) if size else parse_int(env[name], where=name)
    except InputError:
        raise InputError(f"{name}={env[name]!r} is not a {'size' if size else 'number'}", name) from None


def _kmem_options(options: dict[str, object]) -> dict[str, int | None]:
    return {name: options[name] for name in KMEM_OPTIONS if options.get(name) is not None}


def check_inputs(physmem: int, devmap_va: int, options: dict[str, object], env: dict[str, str]) -> None:
    """Refuse bad kmem options and tunables before the guest runs (InputError naming them)."""
    kmeminit(v_page_count=max(1, physmem // PAGE_SIZE), physmem=physmem, kernel_map_size=devmap_va - KERNBASE,
             options=_kmem_options(options), tunables=env)
    _tunable_int(env, "debug.init_procs", 0)
    _tunable_int(env, "debug.kmem_stress", 0, size=True)
    _tunable_int(env, "kern.hz", HZ_DEFAULT)
