"""tmpfs in a booted kernel with and without swap: bigger than RAM comes back identical, or ENOSPC.

Each test boots the virt board with 32 MiB of RAM and no preloaded image, from a copy of the shipped
profile with a [swap] table when the test wants swap, and mounts tmpfs over the kernel's own page
allocator, kmem and swap (vm_swap_init), as the kernel does. Sizes are taken from the free RAM the
boot leaves, so they hold whatever the kernel itself takes.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from board.profile import PROFILE_DIR
from kernel_sim.fs.tmpfs import PAGE_SIZE, TmpfsError, TmpfsMount
from kernel_sim.fs.vfs import MallocCharges
from kernel_sim.vm.pageout import vm_swap_init

MIB = 1 << 20
CHUNK = MIB


def booted(boot, tmp_path: Path, swap: str | None):
    board = "virt"
    if swap is not None:
        size, _, allocator = swap.partition(":")
        text = Path(PROFILE_DIR, "virt.toml").read_text()
        path = tmp_path / "virt-swap.toml"
        path.write_text(text + f'\n[swap]\nsize = "{size}"\nallocator = "{allocator or "sparse"}"\n')
        board = str(path)
    result = boot(board=board, physmem="32M", loader_conf=None)
    assert result.exit_code == 0
    s = result.startup
    vm = vm_swap_init(result.machine, s.pages, s.sysctl)
    clock = itertools.count(1)
    mount = TmpfsMount.mount({}, pages=s.pages, kmem=MallocCharges(s.malloc), now=lambda: float(next(clock)),
                             covered=None, vm=vm)
    return result, vm, mount


def mixed(n: int, seed: int) -> bytes:
    """Random, text and zero stretches, as files are."""
    parts = []
    for k in range(0, n, CHUNK):
        kind = (k // CHUNK + seed) % 3
        size = min(CHUNK, n - k)
        if kind == 0:
            parts.append(os.urandom(size))
        elif kind == 1:
            parts.append((b"%08d the quick brown fox\n" % (k + seed) * (size // 30 + 1))[:size])
        else:
            parts.append(bytes(size))
    return b"".join(parts)


def write_all(m: TmpfsMount, ino: int, data: bytes, offset: int = 0) -> None:
    for k in range(0, len(data), CHUNK):
        m.write(ino, offset + k, data[k:k + CHUNK])


def free_mib(vm) -> int:
    return vm.pages.free_count * PAGE_SIZE // MIB


def test_more_than_free_ram_with_swap_comes_back_identical(boot, tmp_path):
    result, vm, m = booted(boot, tmp_path, "96m:zstd")
    pages = result.startup.pages
    free0, swap0 = pages.free_count, vm.swap_pages_free()
    assert free_mib(vm) < 32
    a, b = m.create(2, "a", 0o644, 0, 0), m.create(2, "b", 0o644, 0, 0)
    da, db = mixed(free_mib(vm) * MIB + 123, 0), mixed(free_mib(vm) * MIB // 2, 1)   # 1.5 times free RAM
    write_all(m, a, da)
    write_all(m, b, db)
    assert m.swapped_pages > 0 and vm.pager.v_swappgsout > 0
    assert m.read(a, 0, len(da) + 10) == da and m.read(b, 0, len(db)) == db
    assert m.stat(a).st_size == len(da)
    assert result.startup.sysctl.get("vm.stats.vm.v_swappgsin") > 0
    assert pages.free_count >= vm.daemon.t.v_free_reserved
    m.unlink(2, "a")
    m.unlink(2, "b")
    assert vm.swap_pages_free() == swap0
    assert pages.free_count >= free0 - 8                               # only kmem's metadata pages remain


def test_tmpfs_mem_avail_counts_free_swap(boot, tmp_path):
    _, vm, m = booted(boot, tmp_path, "64m")
    assert m.mem_avail() == vm.swap_pages_free() + vm.pages.free_count - m.tunables.pages_reserved
    assert vm.swap_pages_free() == (64 * MIB) // PAGE_SIZE - 2
    s = m.statfs()
    assert s.f_blocks == m.pages_used + m.mem_avail() and s.f_blocks * PAGE_SIZE > 64 * MIB


def test_without_swap_enospc_at_the_page_check_and_nothing_half_written(boot, tmp_path):
    result, vm, m = booted(boot, tmp_path, None)
    f = m.create(2, "f", 0o644, 0, 0)
    data = mixed(40 * MIB, 2)
    room = (vm.pages.free_count - m.tunables.pages_reserved) * PAGE_SIZE     # tmpfs_mem_avail at the start
    written = 0
    with pytest.raises(TmpfsError) as err:
        while written < len(data):
            m.write(f, written, data[written:written + CHUNK])
            written += CHUNK
    assert err.value.errno_name == "ENOSPC" and "no room to grow" in err.value.message
    assert room - 2 * CHUNK < written <= room
    assert m.stat(f).st_size == written                               # the failed write left nothing
    assert m.read(f, 0, written + CHUNK) == data[:written]
    assert vm.pager.v_swappgsout == 0
    # the reserve is tmpfs's (4 MiB at least), above the VM's v_free_reserved
    assert vm.pages.free_count - m.tunables.pages_reserved < CHUNK // PAGE_SIZE


def test_without_swap_holes_filled_later_fail_in_the_vm_with_nothing_written(boot, tmp_path):
    """Holes are counted by tmpfs but cost no page; filling them when RAM is gone is the VM's ENOSPC."""
    _, vm, m = booted(boot, tmp_path, None)
    sparse, full = m.create(2, "sparse", 0o644, 0, 0), m.create(2, "full", 0o644, 0, 0)
    half = free_mib(vm) // 2
    m.truncate(sparse, (half + 4) * MIB)                              # accounting only
    filler = mixed(half * MIB, 0)
    write_all(m, full, filler)                                        # passes: the holes took no RAM
    with pytest.raises(TmpfsError) as err:
        write_all(m, sparse, b"\xee" * ((half + 4) * MIB))
    assert err.value.errno_name == "ENOSPC" and "reserve" in err.value.message
    after = m.read(sparse, 0, (half + 4) * MIB)
    k = after.count(b"\xee") // CHUNK
    assert half - 4 <= k < half + 4 and after == b"\xee" * (k * CHUNK) + bytes((half + 4 - k) * CHUNK)
    assert m.stat(sparse).st_size == (half + 4) * MIB and m.read(full, 0, len(filler)) == filler
    assert vm.pages.free_count >= vm.daemon.t.v_free_reserved


def test_swap_full_is_enospc_and_keeps_what_was_written(boot, tmp_path):
    _, vm, m = booted(boot, tmp_path, "8m")
    f = m.create(2, "f", 0o644, 0, 0)
    data = mixed(64 * MIB, 1)
    room = m.mem_avail() * PAGE_SIZE                                  # free RAM + free swap - tmpfs's reserve
    written = 0
    with pytest.raises(TmpfsError) as err:
        while written < len(data):
            m.write(f, written, data[written:written + CHUNK])
            written += CHUNK
    assert err.value.errno_name == "ENOSPC" and vm.pager.v_swappgsout > 0
    assert room - 2 * CHUNK < written <= room and vm.swap_pages_free() < CHUNK // PAGE_SIZE + 1024
    assert m.read(f, 0, written) == data[:written] and m.stat(f).st_size == written
