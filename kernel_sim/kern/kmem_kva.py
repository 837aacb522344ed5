"""kmeminit and the boot KVA layout together: the one computation the booted kernel (mi_startup's
kmeminit step) and `armboard plan` both make, kept apart from mi_startup so that plan, which runs no
CPU, does not load the kernel's start-up and everything it brings."""

from __future__ import annotations

from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE
from kernel_sim.kern.tunables import _kmem_options
from kernel_sim.vm.kmem import KmemResult, kmeminit
from kernel_sim.vm.kva_layout import KvaLayout, layout_kva


def kmem_and_kva(*, v_page_count: int, kernend: int, nkpt2pg: int, boot_pt_pages: int, devmap_va: int,
                 ram_end: int, options: dict[str, object], env: dict[str, str]) -> tuple[KmemResult, KvaLayout]:
    """kmeminit and the boot KVA layout: the one computation both the boot and `armboard plan` make."""
    physmem = v_page_count * PAGE_SIZE           # hw.physmem: RAM less the kernel's excluded range
    kmem = kmeminit(v_page_count=v_page_count, physmem=physmem, kernel_map_size=devmap_va - KERNBASE,
                    options=_kmem_options(options), tunables=env)
    kva = layout_kva(physmem=physmem, v_page_count=v_page_count, kernend=kernend, kmem=kmem, nkpt2pg=nkpt2pg,
                     vm_max_kernel_address=devmap_va, tunables=env, ram_end=ram_end, boot_pt_pages=boot_pt_pages)
    return kmem, kva
