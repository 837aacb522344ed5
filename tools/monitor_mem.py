"""Monitor commands over mem(4): the host's view of physical and kernel memory, ranges, live dumps.

    mem read PADDR LENGTH [FILE]      /dev/mem as root: a hex dump, or the bytes into a host FILE
    mem write PADDR FILE              a host FILE's bytes into physical memory through /dev/mem
    kmem read VA LENGTH [FILE]        /dev/kmem as root
    paddr VA                          the translation of a kernel read, step by step: L1 index and
                                      entry, L2 entry, attributes, the physical address or the fault
    ranges                            the memory range descriptors (memcontrol's list format)
    dump [--compress none|gzip|zstd] FILE   a live minidump into a host FILE (`armboard dump show`)

Why through the devices: the monitor answers with the rules the guest lives by (dump_avail for
/dev/mem, the guest's own page tables for /dev/kmem), so what it shows is what `dd if=/dev/mem`
would read. The monitor finds the kernel's devices as `monitor.mem_devices` (a MemDevices), else builds them
from `monitor.startup` (kernel_sim.kern.startup.Startup) or, before mi_startup, from the machine
alone (mem, kmem and paddr work; dump needs the kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError, check_input_file
from kernel_sim.kern.sysapi import EBADF, SysError
from tools.monitor_errors import CommandRefused, MonitorError, refused

__all__ = ["COMMANDS"]


class _Host:
    """The monitor as a caller of the devices: root, no descriptors of its own."""

    uid = 0
    pid = 0

    def file_sink(self, fd: int):
        raise SysError(EBADF, "the monitor has no descriptors")


HOST = _Host()


def devices(monitor: Any):
    """The kernel's MemDevices (set by whoever wires the monitor), or ones built on demand."""
    devs = getattr(monitor, "mem_devices", None)
    if devs is None:
        from kernel_sim.dev.mem import MemDevices

        startup = getattr(monitor, "startup", None)
        devs = MemDevices(monitor.machine, startup, sysctl=getattr(monitor, "sysctl", None))
        monitor.mem_devices = devs
    return devs


def _int(text: str, what: str) -> int:
    from kernel_sim.loader.sizes import parse_int

    try:
        value = parse_int(text, where=what)
    except InputError as exc:
        raise MonitorError(str(exc)) from None
    if value < 0:
        raise MonitorError(f"{what}: {text} is negative")
    return value


def _size(text: str, what: str) -> int:
    from kernel_sim.loader.sizes import parse_size

    try:
        return parse_size(text, where=what)
    except InputError as exc:
        raise MonitorError(str(exc)) from None


def _hexdump(out, addr: int, data: bytes) -> None:
    for i in range(0, len(data), 16):
        out.write(f"{addr + i:08x}: {data[i:i + 16].hex(' ')}\n")


def _write_host(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise MonitorError(f"{path}: cannot write it: {describe_host(exc)}") from None


def _read_host(path: str) -> bytes:
    try:
        check_input_file(path, what="file")            # stat first: a FIFO or /dev/zero is never read
        return Path(path).read_bytes()
    except InputError as exc:
        raise MonitorError(str(exc)) from None
    except OSError as exc:
        raise MonitorError(f"{path}: cannot read it: {describe_host(exc)}") from None


def _read(monitor: Any, args: list[str], name: str) -> None:
    usage = f"usage: {name} read {'PADDR' if name == 'mem' else 'VA'} LENGTH [FILE]"
    if len(args) not in (3, 4) or args[0] != "read":
        raise MonitorError(usage)
    addr, length = _int(args[1], name), _size(args[2], name)
    devs = devices(monitor)
    dev = devs.mem if name == "mem" else devs.kmem
    try:
        data = dev.d_read(HOST, addr, length)
    except SysError as exc:
        raise refused(f"{name} read 0x{addr:x}", exc) from None
    if len(args) == 4:
        _write_host(args[3], data)
        monitor.out.write(f"{len(data)} bytes from /dev/{name} at 0x{addr:x} written to {args[3]}\n")
    else:
        _hexdump(monitor.out, addr, data)


def mem_command(monitor: Any, args: list[str]) -> None:
    """`mem read PADDR LENGTH [FILE]` / `mem write PADDR FILE`."""
    if args and args[0] == "write":
        if len(args) != 3:
            raise MonitorError("usage: mem write PADDR FILE")
        addr = _int(args[1], "mem")
        data = _read_host(args[2])
        try:
            devices(monitor).mem.d_write(HOST, addr, data)
        except SysError as exc:
            raise refused(f"mem write 0x{addr:x}", exc) from None
        monitor.out.write(f"{len(data)} bytes of {args[2]} written to /dev/mem at 0x{addr:x}\n")
        return
    _read(monitor, args, "mem")


def kmem_command(monitor: Any, args: list[str]) -> None:
    """`kmem read VA LENGTH [FILE]`."""
    _read(monitor, args, "kmem")


def _rights(r: bool, w: bool, x: bool) -> str:
    return ("r" if r else "-") + ("w" if w else "-") + ("x" if x else "-")


def _word(phys, pa: int) -> int | None:
    """A table word, or None when nothing answers at pa (the walk then takes an external abort)."""
    from board.memory import PhysicalAbort

    try:
        return phys.read_u32(pa)
    except PhysicalAbort:
        return None


def paddr_command(monitor: Any, args: list[str]) -> None:
    """`paddr VA`: the short-descriptor walk a kernel read of VA makes, with the table words it reads."""
    from kernel_sim.dev.mem import ME_STATE_VALID
    from kernel_sim.vm.cpu_mmu import mmu_for
    from kernel_sim.vm.mmu import MMUFault

    if len(args) != 1:
        raise MonitorError("usage: paddr VA")
    va = _int(args[0], "paddr")
    if va > 0xFFFFFFFF:
        raise MonitorError(f"paddr: 0x{va:x} is not a 32-bit virtual address")
    out = monitor.out
    mmu = mmu_for(monitor.machine)
    phys = monitor.machine.phys
    if not mmu.m:
        out.write(f"0x{va:08x}: the MMU is off (SCTLR.M = 0): physical address 0x{va:08x}\n")
        return
    n = mmu.ttbcr & 7
    if n and va >> (32 - n):
        reg, table = "TTBR1", mmu.ttbr1 & 0xFFFFC000
    else:
        reg, table = "TTBR0", mmu.ttbr0 & ~(0x3FFF >> n) & 0xFFFFFFFF
    l1_addr = table | ((va >> 18) & 0x3FFC)
    out.write(f"0x{va:08x}: {reg} 0x{table:08x} (TTBCR.N {n}), L1 index 0x{(l1_addr - table) // 4:03x}\n")
    l1 = _word(phys, l1_addr)
    kind = None if l1 is None else l1 & 3
    if l1 is None:
        out.write(f"  L1 entry at 0x{l1_addr:08x}: nothing answers on the bus\n")
    elif kind == 0:
        out.write(f"  L1 entry at 0x{l1_addr:08x}: 0x{l1:08x}  fault (no section, no page table)\n")
    elif kind == 1:
        domain = (l1 >> 5) & 0xF
        l2_base = l1 & 0xFFFFFC00
        l2_addr = l2_base | ((va >> 10) & 0x3FC)
        out.write(f"  L1 entry at 0x{l1_addr:08x}: 0x{l1:08x}  page table at 0x{l2_base:08x}, domain {domain} "
                  f"({('no access', 'client', 'reserved', 'manager')[mmu.domain_access(domain)]})\n")
        l2 = _word(phys, l2_addr)
        if l2 is None:
            out.write(f"  L2 entry at 0x{l2_addr:08x}: nothing answers on the bus\n")
        else:
            what = {0: "fault (no page)", 1: "large page (64 KiB)"}.get(l2 & 3, "small page (4 KiB)")
            out.write(f"  L2 index 0x{(va >> 12) & 0xFF:02x}, entry at 0x{l2_addr:08x}: 0x{l2:08x}  {what}\n")
    else:
        what = "supersection (16 MiB)" if l1 & (1 << 18) else "section (1 MiB)"
        out.write(f"  L1 entry at 0x{l1_addr:08x}: 0x{l1:08x}  {what}, domain {(l1 >> 5) & 0xF}\n")
    try:
        t = mmu.translate(va, "read", True)
    except MMUFault as fault:
        out.write(f"  fault: {fault.description}, DFSR 0x{fault.fsr:03x}: a kernel read takes a Data Abort\n")
        if devices(monitor).extract(va)[0] == ME_STATE_VALID:
            out.write("  (inside a kernel_map entry: KVA reserved, no page entered yet)\n")
        return
    flags = [f"TEX {t.tex} C {int(t.c)} B {int(t.b)}", "shared" if t.s else "not shared",
             "not global" if t.ng else "global"]
    if t.xn:
        flags.append("XN")
    if t.pxn:
        flags.append("PXN")
    out.write(f"  attributes: AP 0b{t.ap:03b}: kernel {_rights(t.priv_read, t.priv_write, t.priv_exec)}, user "
              f"{_rights(t.user_read, t.user_write, t.user_exec)}; {', '.join(flags)}\n")
    out.write(f"  physical address 0x{t.pa:08x} ({t.kind} at 0x{t.base_pa:08x})\n")


def ranges_command(monitor: Any, args: list[str]) -> None:
    """`ranges`: the active memory range descriptors."""
    from kernel_sim.dev.mem import MDF_ACTIVE, flag_names

    if args:
        raise MonitorError("usage: ranges")
    for d in devices(monitor).ranges.get():
        if d.flags & MDF_ACTIVE:
            words = "".join(f"{w} " for w in flag_names(d.flags))
            monitor.out.write(f"0x{d.base:x}/0x{d.length:x} {d.owner or '-'} {words}\n")


def dump_command(monitor: Any, args: list[str]) -> None:
    """`dump [--compress none|gzip|zstd] FILE`: a live minidump of the kernel into a host file."""
    from kernel_sim.kern.minidump import COMPRESSIONS

    names = {v: k for k, v in COMPRESSIONS.items()}
    usage = "usage: dump [--compress none|gzip|zstd] FILE"
    compression = 0
    rest = list(args)
    if rest[:1] == ["--compress"]:
        if len(rest) < 2 or rest[1] not in names:
            raise MonitorError(usage)
        compression = names[rest[1]]
        rest = rest[2:]
    if len(rest) != 1:
        raise MonitorError(usage)
    devs = devices(monitor)
    if devs.startup is None:
        raise CommandRefused("dump: the Python kernel has not started (the boot stopped before mi_startup)")
    try:
        with open(rest[0], "wb") as f:
            result = devs.dump_to(f, compression)
    except OSError as exc:
        raise MonitorError(f"{rest[0]}: cannot write it: {describe_host(exc)}") from None
    except SysError as exc:
        raise refused("dump", exc) from None
    monitor.out.write(f"dump: {result.pages} pages, {result.dumpsize} bytes of minidump, "
                      f"{result.file_size} bytes written to {rest[0]} ({COMPRESSIONS[compression]})\n")


COMMANDS: dict[str, Callable[[Any, list[str]], None]] = {
    "mem": mem_command,
    "kmem": kmem_command,
    "paddr": paddr_command,
    "ranges": ranges_command,
    "dump": dump_command,
}
