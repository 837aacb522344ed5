"""The L1 (and L2) tables of the kernel window as the boot report shows them, read from guest RAM.

Two tables matter to a student of this boot. locore's boot_pt1 maps every MiB of the address space
to itself with sections, except KERNVIRTADDR..+LOCORE_MAP_MB, which it maps to the kernel's load
address: past that window a kernel address falls through to the identity map (the classic
LOCORE_MAP_MB failure). pmap_bootstrap's kern_pt1 then maps the kernel with 4 KiB pages through
L2 tables. Runs of equal kind are merged into one row. Descriptors: ARM ARM B3.5.1 (short format).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kernel_sim.guest.abi import KERNVIRTADDR, MIB

L1_FAULT, L1_TABLE, L1_SECTION = 0, 1, 2


@dataclass
class TableRun:
    """Consecutive MiB of kernel VA whose L1 entries are of one kind, in one table."""

    table: str               # "boot_pt1 (locore)" or "kern_pt1 (pmap_bootstrap)"
    va_start: int
    va_end: int              # exclusive
    kind: str                # "window", "identity", "section", "L2 table", "fault"
    first_entry: int         # the descriptor of the run's first MiB
    entry_address: int       # where that descriptor is (PA)
    pa_start: int | None     # what the run's first address maps to
    pages: int = 0           # for L2 tables: 4 KiB pages mapped in the run

    @property
    def mib(self) -> int:
        return (self.va_end - self.va_start) // MIB


def _runs(table: str, base: int, first_mib: int, count: int, read_u32: Callable[[int], int],
          classify: Callable[[int, int], tuple[str, int | None, int]]) -> list[TableRun]:
    runs: list[TableRun] = []
    for i in range(first_mib, min(first_mib + count, 4096)):
        address = base + 4 * i
        entry = read_u32(address)
        kind, pa, pages = classify(i, entry)
        last = runs[-1] if runs else None
        contiguous = (last is not None and last.kind == kind and last.va_end == i * MIB
                      and (pa is None) == (last.pa_start is None)
                      and (pa is None or pa - last.pa_start == i * MIB - last.va_start))
        if contiguous:
            last.va_end = (i + 1) * MIB
            last.pages += pages
        else:
            runs.append(TableRun(table, i * MIB, (i + 1) * MIB, kind, entry, address, pa, pages))
    return runs


def boot_pt1_runs(read_u32: Callable[[int], int], boot_pt1: int, load_pa: int, locore_map_mb: int,
                  extra_mib: int = 4) -> list[TableRun]:
    """locore's L1 over KERNVIRTADDR.. the end of the window plus `extra_mib`."""
    kern = KERNVIRTADDR >> 20

    def classify(i: int, entry: int) -> tuple[str, int | None, int]:
        if entry & 3 != L1_SECTION:
            return "fault", None, 0
        pa = entry & 0xFFF00000
        if pa == i * MIB:
            return "identity", pa, 0
        if pa == load_pa + (i - kern) * MIB:
            return "window", pa, 0
        return "section", pa, 0

    return _runs("boot_pt1 (locore)", boot_pt1, kern, locore_map_mb + extra_mib, read_u32, classify)


def kern_pt1_runs(read_u32: Callable[[int], int], kern_pt1: int, mib: int) -> list[TableRun]:
    """pmap_bootstrap's L1 over the first `mib` MiB of KVA: sections, L2 tables with their page counts."""
    def classify(i: int, entry: int) -> tuple[str, int | None, int]:
        kind = entry & 3
        if kind == L1_SECTION:
            return "section", entry & 0xFFF00000, 0
        if kind != L1_TABLE:
            return "fault", None, 0
        l2 = entry & 0xFFFFFC00
        pages, first = 0, None
        for j in range(256):
            desc = read_u32(l2 + 4 * j)
            if desc & 2:
                pages += 1
                if first is None:
                    first = (desc & 0xFFFFF000) - j * 4096
        return "L2 table", first, pages

    return _runs("kern_pt1 (pmap_bootstrap)", kern_pt1, KERNVIRTADDR >> 20, mib, read_u32, classify)


@dataclass
class KernelWindowTables:
    """Both tables' runs at one moment of the boot."""

    when: str
    boot_pt1: int
    boot_runs: list[TableRun]
    kern_pt1: int | None = None
    kernel_vm_end: int | None = None
    nkpt2pg: int | None = None
    kern_runs: list[TableRun] | None = None


def read_tables(read_u32: Callable[[int], int], when: str, *, boot_pt1: int, load_pa: int, locore_map_mb: int,
                handoff=None) -> KernelWindowTables:
    """boot_pt1 over the window, and kern_pt1 up to kernel_vm_end once pmap_bootstrap has handed over."""
    tables = KernelWindowTables(when, boot_pt1, boot_pt1_runs(read_u32, boot_pt1, load_pa, locore_map_mb))
    if handoff is not None and handoff.kern_pt1:
        mib = -(-(handoff.kernel_vm_end - KERNVIRTADDR) // MIB)
        tables.kern_pt1, tables.kernel_vm_end, tables.nkpt2pg = handoff.kern_pt1, handoff.kernel_vm_end, handoff.nkpt2pg
        tables.kern_runs = kern_pt1_runs(read_u32, handoff.kern_pt1, mib)
    return tables
