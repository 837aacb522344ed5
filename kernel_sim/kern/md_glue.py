"""The md driver bound to the kernel: sector buffers from kmem, packed as md.c's per-device UMA zone.

Kernel malloc is page-granular, so each "md%d" zone carves its pages into sector-sized items, as
UMA does; a page returns to kmem when its last item is freed. When kmem is exhausted the allocation
fails (M_NOWAIT) and md turns that into ENOSPC, so every malloc-backed md shares the kmem quota.
"""

from __future__ import annotations

from types import SimpleNamespace

from kernel_sim.guest.abi import PAGE_SIZE
from kernel_sim.kern.malloc import M_NOWAIT, Malloc
from kernel_sim.kern.sysapi import O_RDONLY, O_RDWR, SysError


class SectorZones:
    """One zone per md unit ("md%d"), each item one sector: (zone, page va, slot) handles."""

    def __init__(self, malloc: Malloc) -> None:
        self.malloc = malloc
        self.zones: dict[str, dict[int, set[int]]] = {}   # zone -> page va -> free slots
        self.used: dict[str, dict[int, int]] = {}          # zone -> page va -> items in use

    def alloc(self, nbytes: int, zone: str) -> tuple[str, int, int] | None:
        per_page = max(1, PAGE_SIZE // nbytes)
        pages = self.zones.setdefault(zone, {})
        used = self.used.setdefault(zone, {})
        page = next((va for va, free in pages.items() if free), None)
        if page is None:
            page = self.malloc.malloc(PAGE_SIZE, zone, M_NOWAIT)
            if page is None:
                return None
            pages[page] = set(range(per_page))
            used[page] = 0
        slot = min(pages[page])
        pages[page].discard(slot)
        used[page] += 1
        return zone, page, slot

    def free(self, handle: tuple[str, int, int]) -> None:
        zone, page, slot = handle
        self.zones[zone][page].add(slot)
        self.used[zone][page] -= 1
        if self.used[zone][page] == 0:
            del self.zones[zone][page], self.used[zone][page]
            self.malloc.free(page)


class GuestVnode:
    """md(4)'s vnode backing over the guest VFS (what `mdconfig -t vnode -f /tmp/disk.img` opens) with the
    kernel's credentials; the md driver expects OSError and os.stat_result's field names."""

    def __init__(self, vfs, path: str, writable: bool) -> None:
        self.vfs = vfs
        try:
            self.of = vfs.open(path, O_RDWR if writable else O_RDONLY)
        except SysError as exc:
            raise OSError(exc.errno, str(exc)) from None

    def stat(self) -> SimpleNamespace:
        st = self.vfs.getattr(self.of.vnode)
        return SimpleNamespace(st_mode=st.mode, st_dev=st.dev, st_ino=st.ino, st_size=st.size)

    def pread(self, length: int, offset: int) -> bytes:
        return self.vfs.read(self.of, length, offset)

    def pwrite(self, data: bytes, offset: int) -> None:
        self.vfs.write(self.of, data, offset)

    def close(self) -> None:
        self.vfs.close(self.of)
