"""mem(4) in the booted kernel: /dev/mem and /dev/kmem over the guest's real memory and page tables.

The devices are called as devfs calls them (d_open, d_read, d_ioctl with a caller); the facts they
are checked against come from a real boot with a preloaded md image: where the loader put it (PA),
where the kernel maps it (KVA), and what the MMU simulator and Unicorn's own MMU say.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from board.uc_vmem import UC_PROT_READ, vmem_translate
from kernel_sim import boot as boot_mod
from kernel_sim.dev.mem import (
    MDF_ACTIVE,
    MDF_BUSY,
    MDF_FIRMWARE,
    MDF_FIXBASE,
    MDF_FIXLEN,
    MDF_UNCACHEABLE,
    MDF_WRITEBACK,
    MDF_WRITECOMBINE,
    MDF_WRITEPROTECT,
    ME_STATE_INVALID,
    ME_STATE_MAPPED,
    ME_STATE_VALID,
    MEM_EXTRACT,
    MEM_EXTRACT_PADDR,
    MEM_KERNELDUMP,
    MEM_LIVEDUMP_ARG,
    MEM_RANGE_DESC,
    MEM_RANGE_OP,
    MEMRANGE_GET,
    MEMRANGE_NDESC,
    MEMRANGE_SET,
    MEMRANGE_SET_REMOVE,
    MEMRANGE_SET_UPDATE,
    MemDevices,
    MemRanges,
    RangeDesc,
)
from kernel_sim.guest.abi import PAGE_SIZE
from kernel_sim.kern.msgbuf import MsgBuf
from kernel_sim.kern.sysapi import (
    EACCES,
    EBADF,
    EBUSY,
    EFAULT,
    EINVAL,
    ENOENT,
    ENOSPC,
    ENOTTY,
    ENXIO,
    EOPNOTSUPP,
    EPERM,
    O_CREAT,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    SysError,
)
from kernel_sim.vm.cpu_mmu import mmu_for
from kernel_sim.vm.mmu import MMUFault

IMAGE_SIZE = 2 << 20


@dataclass
class Caller:
    """A process as a driver sees it (sysapi.Caller): credentials and its writable descriptors."""

    uid: int = 0
    pid: int = 1
    sinks: dict[int, object] = field(default_factory=dict)

    def file_sink(self, fd: int):
        if fd not in self.sinks:
            raise SysError(EBADF, f"descriptor {fd} is not open for writing")
        return self.sinks[fd]


ROOT = Caller()
USER = Caller(uid=1001, pid=2)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("md") / "md0.img"
    path.write_bytes(random.Random(6).randbytes(IMAGE_SIZE))
    return path


@pytest.fixture
def kernel(image):
    """A halted kernel with md0 preloaded, its message buffer, and the mem devices."""
    result = boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(physmem="256M", mfsroot=image, loader_conf=None)))
    assert result.exit_code == 0, result.message
    msgbuf = MsgBuf.for_startup(result.startup)
    msgbuf.append(result.console)
    devs = MemDevices(result.machine, result.startup, msgbuf)
    module = result.prepared.layout.modules[0]
    return result, devs, module


def ioctl_errno(dev, caller, cmd, arg, user=None) -> int:
    with pytest.raises(SysError) as err:
        dev.d_ioctl(caller, cmd, arg, user)
    return err.value.errno


def extract(devs, va: int) -> tuple[int, int, int]:
    out = devs.mem.d_ioctl(ROOT, MEM_EXTRACT_PADDR, MEM_EXTRACT.pack(va, 0, 0, 0))
    vaddr, paddr, domain, state = MEM_EXTRACT.unpack(out)
    assert vaddr == va and domain == 0
    return state, paddr, domain


# ---------------------------------------------------------------------------------------------- read/write
def test_dev_mem_at_the_loaders_physical_address_reads_md0s_image(kernel, image):
    result, devs, module = kernel
    assert module.type == "md_image" and module.size == IMAGE_SIZE
    devs.mem.d_open(ROOT, O_RDONLY)
    assert devs.mem.d_read(ROOT, module.pa, IMAGE_SIZE) == image.read_bytes()
    assert devs.mem.d_read(ROOT, module.pa + 4095, 10) == image.read_bytes()[4095:4105]   # across a page


def test_dev_kmem_at_md0s_kernel_address_reads_the_same_bytes(kernel, image):
    result, devs, module = kernel
    assert "md0: Preloaded image" in result.console.decode()
    devs.kmem.d_open(ROOT, O_RDONLY)
    assert devs.kmem.d_read(ROOT, module.va, IMAGE_SIZE) == image.read_bytes()
    assert devs.kmem.d_read(ROOT, module.va + 12345, 3) == image.read_bytes()[12345:12348]


def test_dev_mem_outside_ram_is_einval_and_transfers_nothing(kernel):
    result, devs, _module = kernel
    ram_end = result.machine.profile.ram_base + result.machine.ram_size
    for offset, size in ((ram_end, 16), (ram_end - 8, 16), (0x0, 4), (0x09000000, 4), (-1, 1)):
        with pytest.raises(SysError) as err:          # past RAM, straddling its end, flash, UART, negative
            devs.mem.d_read(ROOT, offset, size)
        assert err.value.errno == EINVAL
    with pytest.raises(SysError) as err:
        devs.mem.d_write(ROOT, ram_end - 4, b"12345678")
    assert err.value.errno == EINVAL
    assert devs.mem.d_read(ROOT, ram_end - 4, 4) == bytes(4)


def test_dev_kmem_unmapped_is_efault(kernel):
    result, devs, module = kernel
    guard = result.startup.procs.procs[1].threads[0].kstack - PAGE_SIZE      # init's kernel stack guard page
    for va, size in ((guard, 4), (guard - 8, 16), (0x10, 4), (0x1_0000_0000, 4)):
        with pytest.raises(SysError) as err:
            devs.kmem.d_read(ROOT, va, size)
        assert err.value.errno == EFAULT
    with pytest.raises(SysError) as err:                 # mapped, but to the console's registers, not RAM
        devs.kmem.d_read(ROOT, result.machine.profile.console_devmap_va, 4)
    assert err.value.errno == EFAULT
    with pytest.raises(SysError) as err:                 # the stack's last bytes and the guard: nothing written
        devs.kmem.d_write(ROOT, guard + PAGE_SIZE - 4, b"12345678")
    assert err.value.errno == EFAULT


def test_writes_through_dev_mem_are_seen_through_dev_kmem_and_back(kernel):
    result, devs, module = kernel
    devs.mem.d_open(ROOT, O_RDWR)
    assert devs.mem.d_write(ROOT, module.pa + 100, b"written through /dev/mem") == 24
    assert devs.kmem.d_read(ROOT, module.va + 100, 24) == b"written through /dev/mem"
    devs.kmem.d_write(ROOT, module.va + 4090, b"kmem crosses a page")
    assert result.machine.phys.read(module.pa + 4090, 19) == b"kmem crosses a page"


def test_kmem_write_to_a_read_only_kernel_mapping_is_efault(kernel):
    result, devs, module = kernel
    s = result.startup
    va = s.malloc.malloc(PAGE_SIZE, "temp")
    pa = s.pmap.kextract(va)
    s.pmap.kenter(va, pa, writable=False)                 # pmap_kenter_prot_attr(..., VM_PROT_READ)
    assert devs.kmem.d_read(ROOT, va, 4) == bytes(4)
    with pytest.raises(SysError) as err:
        devs.kmem.d_write(ROOT, va, b"nope")
    assert err.value.errno == EFAULT


def test_mmap_of_dev_mem_gives_the_physical_page_and_kmem_refuses(kernel):
    result, devs, module = kernel
    assert devs.mem.d_mmap(ROOT, module.pa) == module.pa
    with pytest.raises(SysError) as err:
        devs.kmem.d_mmap(ROOT, module.va)
    assert err.value.errno == EINVAL


# ---------------------------------------------------------------------------------------------- open
def test_open_needs_root_and_writing_needs_securelevel_at_most_zero(kernel):
    result, _devs, _module = kernel
    level = [-1]
    devs = MemDevices(result.machine, result.startup, securelevel=lambda: level[0])
    for dev in (devs.mem, devs.kmem):
        for flags in (O_RDONLY, O_WRONLY, O_RDWR):
            with pytest.raises(SysError) as err:
                dev.d_open(USER, flags)
            assert err.value.errno == EPERM
            dev.d_open(ROOT, flags)
        level[0] = 1
        dev.d_open(ROOT, O_RDONLY)                        # reading is still allowed
        for flags in (O_WRONLY, O_RDWR):
            with pytest.raises(SysError) as err:
                dev.d_open(ROOT, flags)
            assert err.value.errno == EPERM
        level[0] = 0
        dev.d_open(ROOT, O_RDWR)
        level[0] = -1
    assert (devs.mem.name, devs.kmem.name, devs.mem.mode, devs.mem.gid) == ("mem", "kmem", 0o640, 2)


def test_securelevel_comes_from_the_sysctl_when_the_kernel_publishes_it(kernel):
    result, _devs, _module = kernel
    result.startup.sysctl.add("kern.securelevel", "int", 2, readonly=False)
    devs = MemDevices(result.machine, result.startup)
    with pytest.raises(SysError) as err:
        devs.kmem.d_open(ROOT, O_WRONLY)
    assert err.value.errno == EPERM


# ---------------------------------------------------------------------------------------------- MEM_EXTRACT_PADDR
def test_extract_paddr_of_mapped_pages_agrees_with_both_mmus_and_the_pmap(kernel):
    result, devs, module = kernel
    mmu = mmu_for(result.machine)
    kstack = result.startup.procs.procs[1].threads[0].kstack
    for va in (module.va, module.va + 0x1234, module.va + IMAGE_SIZE - 1, kstack):
        state, pa, _ = extract(devs, va)
        assert state == ME_STATE_MAPPED
        assert pa == mmu.translate(va).pa == vmem_translate(result.machine.uc, va, UC_PROT_READ)
        assert pa == result.startup.pmap.kextract(va)
    assert extract(devs, module.va + 0x1234)[1] == module.pa + 0x1234


def test_extract_paddr_valid_but_not_mapped(kernel):
    """Inside a kernel_map entry with no page entered: a kernel stack's guard page, the kmem arena's
    untouched end, the buffer arena (KVA reserved for buffers that map pages only when used)."""
    result, devs, module = kernel
    s = result.startup
    kmem = s.kva.row("kmem arena")
    guard = s.procs.procs[1].threads[0].kstack - PAGE_SIZE
    buffers = next(r for r in s.kva.rows if r.consumer.startswith("buffer arena"))
    for va in (guard, kmem.end - PAGE_SIZE, buffers.start):
        state, pa, _ = extract(devs, va)
        assert (state, pa) == (ME_STATE_VALID, 0)
        with pytest.raises(MMUFault):
            mmu_for(result.machine).translate(va)
        assert vmem_translate(result.machine.uc, va, UC_PROT_READ) is None
        assert s.pmap.kextract(va) is None


def test_extract_paddr_invalid_outside_every_map_entry(kernel):
    result, devs, module = kernel
    kmap = result.startup.procs.kernel_map
    hole = kmap.free_segments()[-1][1] - PAGE_SIZE       # the top of kernel_map's last free segment
    for va in (0x1000, hole, 0x1_0000_0000):
        state, pa, _ = extract(devs, va)
        assert (state, pa) == (ME_STATE_INVALID, 0)
        if va <= 0xFFFFFFFF:
            with pytest.raises(MMUFault):
                mmu_for(result.machine).translate(va)
            assert vmem_translate(result.machine.uc, va, UC_PROT_READ) is None


# ---------------------------------------------------------------------------------------------- MEMRANGE
def memrange_get(devs, caller=ROOT) -> list[RangeDesc]:
    count = MEM_RANGE_OP.unpack(devs.mem.d_ioctl(caller, MEMRANGE_GET, MEM_RANGE_OP.pack(0, 0, 0)))[1]
    buf = bytearray(count * MEM_RANGE_DESC.size)
    out = devs.mem.d_ioctl(caller, MEMRANGE_GET, MEM_RANGE_OP.pack(0x1000, count, 0), {0x1000: buf})
    assert MEM_RANGE_OP.unpack(out)[1] == count
    return [RangeDesc.unpack(bytes(buf[i:i + MEM_RANGE_DESC.size])) for i in range(0, len(buf), MEM_RANGE_DESC.size)]


def memrange_set(devs, base: int, length: int, flags: int, owner: str = "test", op: int = MEMRANGE_SET_UPDATE):
    desc = bytearray(RangeDesc(base, length, flags, owner).pack())
    return devs.mem.d_ioctl(ROOT, MEMRANGE_SET, MEM_RANGE_OP.pack(0x2000, op, 0), {0x2000: desc})


def memrange_errno(devs, base, length, flags, op=MEMRANGE_SET_UPDATE) -> int:
    with pytest.raises(SysError) as err:
        memrange_set(devs, base, length, flags, op=op)
    return err.value.errno


def test_memrange_get_is_the_boards_memory_map(kernel):
    result, devs, _module = kernel
    active = [d for d in memrange_get(devs) if d.flags & MDF_ACTIVE]
    board = MDF_FIRMWARE | MDF_FIXBASE | MDF_FIXLEN | MDF_ACTIVE
    assert [(d.base, d.length, d.owner) for d in active] == [
        (0x0, 64 << 20, "flash0"), (0x04000000, 64 << 20, "flash1"), (0x09000000, 0x1000, "uart0"),
        (0x40000000, 256 << 20, "ram")]
    by_owner = {d.owner: d.flags for d in active}
    assert by_owner["ram"] & board == board and by_owner["ram"] & MDF_WRITEBACK
    assert by_owner["flash0"] & board == board and by_owner["flash0"] & MDF_WRITEPROTECT
    assert by_owner["uart0"] & (MDF_UNCACHEABLE | MDF_BUSY) == MDF_UNCACHEABLE | MDF_BUSY
    assert len(memrange_get(devs)) == MEMRANGE_NDESC


def test_memrange_set_adds_updates_and_removes_a_range(kernel):
    result, devs, _module = kernel
    memrange_set(devs, 0x48000000, 0x100000, MDF_UNCACHEABLE, "dmabuf")
    added = [d for d in memrange_get(devs) if d.owner == "dmabuf"]
    assert added == [RangeDesc(0x48000000, 0x100000, MDF_ACTIVE | MDF_UNCACHEABLE, "dmabuf")]
    memrange_set(devs, 0x40000000, 256 << 20, 1 << 2, "ram")          # write-through over the RAM range
    ram = next(d for d in memrange_get(devs) if d.owner == "ram")
    assert ram.flags & 0xFF == 1 << 2 and not ram.flags & MDF_FIRMWARE and ram.flags & MDF_FIXBASE
    memrange_set(devs, 0x48000000, 0x100000, 0, op=MEMRANGE_SET_REMOVE)
    assert not [d for d in memrange_get(devs) if d.owner == "dmabuf"]


def test_memrange_errnos(kernel):
    result, devs, _module = kernel
    # EINVAL: not page aligned, empty, no single attribute, outside the board, overlapping a conflicting range
    assert memrange_errno(devs, 0x48000800, 0x1000, MDF_UNCACHEABLE) == EINVAL
    assert memrange_errno(devs, 0x48000000, 0, MDF_UNCACHEABLE) == EINVAL
    assert memrange_errno(devs, 0x48000000, 0x1000, MDF_UNCACHEABLE | MDF_WRITEBACK) == EINVAL
    assert memrange_errno(devs, 0x20000000, 0x1000, MDF_UNCACHEABLE) == EINVAL
    assert memrange_errno(devs, 0x48000000, 0x1000, MDF_WRITECOMBINE) == EINVAL        # inside write-back RAM
    # EBUSY: the console's registers (its driver owns them)
    assert memrange_errno(devs, 0x09000000, 0x1000, MDF_UNCACHEABLE) == EBUSY
    assert memrange_errno(devs, 0x08000000, 0x2000000, MDF_UNCACHEABLE) == EINVAL      # spans two regions
    # EOPNOTSUPP: what the board cannot do, and an unknown operation
    assert memrange_errno(devs, 0x0, 0x40000, MDF_WRITEBACK) == EOPNOTSUPP              # flash written by stores
    assert memrange_errno(devs, 0x48000000, 0x1000, MDF_UNCACHEABLE, op=7) == EOPNOTSUPP
    # ENOENT: removing what is not there; EPERM: removing the board's own range
    assert memrange_errno(devs, 0x48000000, 0x1000, 0, op=MEMRANGE_SET_REMOVE) == ENOENT
    assert memrange_errno(devs, 0x40000000, 256 << 20, 0, op=MEMRANGE_SET_REMOVE) == EPERM
    # ENOSPC: every descriptor slot in use
    free = sum(1 for d in memrange_get(devs) if not d.flags & MDF_ACTIVE)
    for i in range(free):
        memrange_set(devs, 0x48000000 + i * PAGE_SIZE, PAGE_SIZE, MDF_UNCACHEABLE)
    assert memrange_errno(devs, 0x49000000, PAGE_SIZE, MDF_UNCACHEABLE) == ENOSPC


def test_memrange_enxio_when_there_are_no_descriptors():
    """No board has no memory, so ENXIO cannot happen in a booted kernel: the table's own rule."""
    table = MemRanges([], ndesc=0)
    with pytest.raises(SysError) as err:
        table.get()
    assert err.value.errno == ENXIO


def test_hw_mem_strict_arm_gives_freebsd_arms_enotty(kernel):
    result, devs, _module = kernel
    result.startup.sysctl.set("hw.mem.strict_arm", 1)
    assert ioctl_errno(devs.mem, ROOT, MEMRANGE_GET, MEM_RANGE_OP.pack(0, 0, 0)) == ENOTTY
    assert ioctl_errno(devs.mem, ROOT, MEMRANGE_SET, MEM_RANGE_OP.pack(0, 0, 0)) == ENOTTY
    result.startup.sysctl.set("hw.mem.strict_arm", 0)
    assert memrange_get(devs)


def test_memrange_bad_user_pointers_are_efault(kernel):
    result, devs, _module = kernel
    assert ioctl_errno(devs.mem, ROOT, MEMRANGE_GET, MEM_RANGE_OP.pack(0x3000, 4, 0), {}) == EFAULT
    assert ioctl_errno(devs.mem, ROOT, MEMRANGE_SET, MEM_RANGE_OP.pack(0x3000, 0, 0), {}) == EFAULT


# ---------------------------------------------------------------------------------------------- MEM_KERNELDUMP
class _File:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data) -> int:
        self.data += data
        return len(data)


def livedump(fd=3, flags=0, compression=0) -> bytes:
    return MEM_LIVEDUMP_ARG.pack(fd, flags, compression)


def test_kerneldump_errnos(kernel):
    result, devs, _module = kernel
    root = Caller(sinks={3: _File()})
    user = Caller(uid=1001, sinks={3: _File()})
    assert ioctl_errno(devs.mem, user, MEM_KERNELDUMP, livedump()) == EPERM
    assert ioctl_errno(devs.mem, root, MEM_KERNELDUMP, livedump(flags=1)) == EINVAL
    assert ioctl_errno(devs.mem, root, MEM_KERNELDUMP, livedump(fd=4)) == EBADF       # not open for writing
    assert ioctl_errno(devs.mem, root, MEM_KERNELDUMP, livedump(compression=3)) == EINVAL
    assert not root.sinks[3].data and not user.sinks[3].data


def test_kerneldump_while_one_is_in_progress_is_ebusy(kernel):
    result, devs, _module = kernel
    seen = []

    class Reentrant(_File):
        def write(self, data) -> int:
            if not seen:     # a second dump asked for while the first is writing
                seen.append(ioctl_errno(devs.mem, Caller(sinks={5: _File()}), MEM_KERNELDUMP, livedump(fd=5)))
            return super().write(data)

    caller = Caller(sinks={3: Reentrant()})
    devs.mem.d_ioctl(caller, MEM_KERNELDUMP, livedump())
    assert seen == [EBUSY]
    assert caller.sinks[3].data[-512:].startswith(b"FreeBSD Kernel Dump\0")     # the first dump completed
    devs.mem.d_ioctl(Caller(sinks={3: _File()}), MEM_KERNELDUMP, livedump())        # the lock was released


def test_unknown_ioctls_and_short_arguments(kernel):
    result, devs, _module = kernel
    assert ioctl_errno(devs.mem, ROOT, 0xC0046D99, b"\0" * 4) == ENOTTY
    assert ioctl_errno(devs.kmem, ROOT, MEM_EXTRACT_PADDR, b"\0" * 8) == EFAULT
    state = MEM_EXTRACT.unpack(devs.kmem.d_ioctl(ROOT, MEM_EXTRACT_PADDR, struct.pack("<Q", 0x1000) + bytes(56)))[3]
    assert state == ME_STATE_INVALID


# ---------------------------------------------------------------------------------------------- the guest
@pytest.fixture
def guest(kernel):
    """The booted kernel's devfs with /dev/mem and /dev/kmem, and init's system calls (tmpfs root)."""
    from kernel_sim.kern.syscalls import Syscalls, make_kernel

    result, devs, module = kernel
    s = result.startup
    console = bytearray()
    k = make_kernel(s.geom, pages=s.pages, malloc=s.malloc, procs=s.procs, sysctl=s.sysctl,
                    console_write=console.extend)
    k.vfs.mount("tmpfs", "/", {})
    for d in ("/dev", "/tmp"):
        k.vfs.mkdir(d, 0o755)
    k.vfs.mount("devfs", "/dev", {})
    k.vfs.devfs.make_dev(devs.mem)
    k.vfs.devfs.make_dev(devs.kmem)
    return result, devs, module, Syscalls.for_init(k), console


def run_guest(sys, console: bytearray, script: str) -> tuple[int, str]:
    from kernel_sim.userland.sh import Shell

    status = Shell(sys, "/etc/rc").run_script(script)
    text = console.decode("utf-8", "replace")
    console.clear()
    return status, text


def test_dd_reads_md0_through_dev_mem_and_dev_kmem(guest, image):
    result, _devs, module, sys, console = guest
    status, _text = run_guest(sys, console, f"dd if=/dev/mem of=/tmp/pa bs=4k skip={module.pa // 4096} count=16\n"
                                            f"dd if=/dev/kmem of=/tmp/va bs=4k skip={module.va // 4096} count=16\n")
    assert status == 0
    from kernel_sim.userland.commands._util import read_path

    assert read_path(sys, "/tmp/pa") == read_path(sys, "/tmp/va") == image.read_bytes()[:64 << 10]


def test_memctl_paddr_ranges_setrange_delrange(guest):
    result, _devs, module, sys, console = guest
    guard = result.startup.procs.procs[1].threads[0].kstack - PAGE_SIZE
    status, text = run_guest(sys, console, f"memctl paddr {module.va + 16:#x}\nmemctl paddr {guard:#x}\n"
                                           "memctl paddr 0x1000\n")
    assert status == 0
    assert text.splitlines() == [f"0x{module.va + 16:08x}: physical 0x{module.pa + 16:08x} (mapped, domain 0)",
                                 f"0x{guard:08x}: valid, not mapped", "0x00001000: invalid"]
    status, text = run_guest(sys, console, "memctl setrange 0x48000000 0x100000 uncacheable dmabuf\nmemctl ranges\n")
    assert status == 0
    assert text.splitlines() == [
        "0x0/0x4000000 flash0 write-protect fixed-base fixed-length set-by-firmware active fixed-active ",
        "0x4000000/0x4000000 flash1 write-protect fixed-base fixed-length set-by-firmware active fixed-active ",
        "0x9000000/0x1000 uart0 uncacheable fixed-base fixed-length set-by-firmware active fixed-active busy ",
        "0x40000000/0x10000000 ram write-back fixed-base fixed-length set-by-firmware active fixed-active ",
        "0x48000000/0x100000 dmabuf uncacheable active "]
    _status, text = run_guest(sys, console, "memctl delrange 0x48000000 0x100000\nmemctl ranges -a\n")
    assert "dmabuf" not in text and text.count("\n") == MEMRANGE_NDESC
    status, text = run_guest(sys, console, "memctl setrange 0x9000000 0x1000 uncacheable\n")
    assert (status, text) == (1, "memctl: ioctl(/dev/mem): Device busy\n")
    status, text = run_guest(sys, console, "memctl setrange 0x48000000 0x1000 write-combine\n")
    assert (status, text) == (1, "memctl: ioctl(/dev/mem): Invalid argument\n")
    status, text = run_guest(sys, console, "memctl setrange 0x48000000 0x1000 purple\n")
    assert status == 1 and text.startswith("usage: memctl paddr va\n")


def test_memctl_dump_writes_a_readable_dump_into_the_guests_file_system(guest, tmp_path):
    from kernel_sim.kern.dumpfile import open_dump
    from kernel_sim.userland.commands._util import read_path

    result, devs, module, sys, console = guest
    status, _text = run_guest(sys, console, "memctl dump -z zstd /tmp/vmcore.zst\n")
    assert status == 0
    host = tmp_path / "vmcore.zst"
    host.write_bytes(read_path(sys, "/tmp/vmcore.zst"))
    dump = open_dump(host)
    assert dump.kdh.compression == 2 and dump.read_va(module.va, 4096) == devs.kmem_read(module.va, 4096)
    assert sys.stat("/tmp/vmcore.zst").mode & 0o777 == 0o600


def test_a_process_without_privilege_cannot_open_the_devices(guest):
    """In the guest a non-root process meets devfs's mode (EACCES) before memopen's privilege check
    (EPERM, see test_open_needs_root_and_writing_needs_securelevel_at_most_zero)."""
    result, _devs, _module, sys, console = guest
    child = sys.spawn_kstack("memctl", uid=1001)
    try:
        from kernel_sim.userland.commands.memctl import main

        assert main(child, ["memctl", "ranges"]) == 1
        with pytest.raises(SysError) as err:
            child.open("/dev/kmem", O_RDONLY)
        assert err.value.errno == EACCES                # devfs's 0640 root:kmem comes first, as in FreeBSD
    finally:
        child.exit(0)
    assert console.decode() == "memctl: /dev/mem: Permission denied\n"


def test_kerneldump_to_a_descriptor_open_read_only_is_ebadf(guest):
    result, devs, _module, sys, _console = guest
    fd = sys.open("/tmp/ro", O_WRONLY | O_CREAT, 0o600)
    sys.close(fd)
    ro = sys.open("/tmp/ro", O_RDONLY)
    mem = sys.open("/dev/mem", O_RDONLY)
    with pytest.raises(SysError) as err:
        sys.ioctl(mem, MEM_KERNELDUMP, MEM_LIVEDUMP_ARG.pack(ro, 0, 0))
    assert err.value.errno == EBADF
    with pytest.raises(SysError) as err:
        sys.ioctl(mem, MEM_KERNELDUMP, MEM_LIVEDUMP_ARG.pack(42, 0, 0))    # not open at all
    assert err.value.errno == EBADF
    assert sys.stat("/tmp/ro").size == 0
