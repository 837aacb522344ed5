"""The monitor: QEMU-style inspection commands run when a boot stops (`-x CMD`, `--monitor`).

Stepping commands (break, continue, step, until, x/Ni; tools/monitor_debug.py) join when the boot
can be resumed from its stop: `add_debug_commands`."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import TextIO

from board.exceptions import MODE_NAMES
from board.machine import Machine
from board.memory import PhysicalAbort as BusAbort
from board.ucapi import (
    UC_ARM_REG_CPSR,
    UC_ARM_REG_LR,
    UC_ARM_REG_PC,
    UC_ARM_REG_R0,
    UC_ARM_REG_SP,
    UC_ARM_REG_SPSR,
)
from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError, check_input_file
from kernel_sim.kern.sysctl import SysctlError, SysctlTree
from kernel_sim.loader.sizes import parse_int
from kernel_sim.vm.cpu_mmu import mmu_for
from kernel_sim.vm.mmu import MMUFault
from tools.monitor_errors import CommandRefused, MonitorError, refused
from tools.monitor_mem import COMMANDS as MEM_COMMANDS
from tools.monitor_nbd import COMMANDS as NBD_COMMANDS
from tools.monitor_snapshot import COMMANDS as SNAPSHOT_COMMANDS

__all__ = ["CommandRefused", "Monitor", "MonitorError", "interactive"]


class Monitor:
    def __init__(self, machine: Machine, out: TextIO | None = None, sysctl: SysctlTree | None = None,
                 geom=None, vfs=None) -> None:
        self.machine = machine
        self.geom = geom
        self.vfs = vfs
        self.out = out if out is not None else sys.stdout   # looked up now: tests swap sys.stdout
        self.sysctl = sysctl
        self.commands: dict[str, Callable[[list[str]], None]] = {
            "info": self.info, "x": self.examine, "xp": self.examine, "quit": self.quit, "q": self.quit,
            "help": self.help, "sysctl": self.sysctl_command, "geom": self.geom_command,
            "provider": self.provider_command, "ls": self.ls, "cat": self.cat, "mdconfig": self.mdconfig,
        }
        from functools import partial

        for name, fn in NBD_COMMANDS.items():
            self.commands[name] = partial(fn, self)
        for name, fn in SNAPSHOT_COMMANDS.items():      # savevm, loadvm, snapshots (tools/monitor_snapshot.py)
            self.commands[name] = partial(fn, self)
        self.done = False
        self.nbd = None                       # tools.nbd.board_server.BoardServer, once serving
        self.waiting = nullcontext            # what the prompt waits in (the NBD server's Giant released)
        self.resume = None          # a kernel_sim.boot.Resume left by continue, step or until
        self.stepping = None        # tools.monitor_debug.Stepping, once the debug commands are added
        self.image = None           # the guest kernel (symbols for x/Ni, break and $-free addresses)

    def add_debug_commands(self, stepping, image) -> None:
        """break, delete, continue, step, until, gdb (tools/monitor_debug.py) over this boot's stops."""
        from functools import partial

        from tools.monitor_debug import COMMANDS as DEBUG_COMMANDS

        self.stepping, self.image = stepping, image
        for name, fn in DEBUG_COMMANDS.items():
            self.commands[name] = partial(fn, self)

    def bind_startup(self, startup) -> None:
        """The Python kernel as far as it got (at a stage stop, or at the end): sysctl, GEOM, VFS, mem(4)."""
        self.startup = startup
        self.sysctl = getattr(startup, "sysctl", None)
        self.geom = getattr(startup, "geom", None)
        self.vfs = getattr(startup, "vfs", None)
        self.mem_devices = getattr(startup, "mem_devices", None)

    def add_mem_commands(self, startup) -> None:
        """mem(4)'s monitor commands (tools/monitor_mem.py) over this boot's /dev/mem and /dev/kmem."""
        from functools import partial

        self.startup = startup
        if startup is not None and getattr(startup, "mem_devices", None) is not None:
            self.mem_devices = startup.mem_devices
        for name, fn in MEM_COMMANDS.items():
            self.commands[name] = partial(fn, self)

    def run(self, line: str) -> None:
        words = shlex.split(line)
        if not words:
            return
        name, _, fmt = words[0].partition("/")
        handler = self.commands.get(name)
        if handler is None:
            raise MonitorError(f"unknown command '{name}' (try help)")
        if name in ("x", "xp"):
            self.examine(words[1:], fmt=fmt, physical=name == "xp")
        else:
            handler(words[1:])

    def help(self, _args: list[str]) -> None:
        if self.stepping is not None:
            self.out.write("break SYMBOL|0xADDR|STAGE | delete [N] | info break | continue | step [N] | "
                           "until STAGE | x/Ni ADDR | gdb [HOST:]PORT | ")
        self.out.write("info registers | info mem | x/N[wbx] ADDR (virtual) | xp/N ADDR (physical) | "
                       "sysctl [-d] [NAME...] | geom [CLASS] list | provider read NAME OFF LEN [FILE] | "
                       "provider write NAME OFF FILE | ls [-l] PATH | cat PATH | mem read PADDR LEN [FILE] | "
                       "mem write PADDR FILE | kmem read VA LEN [FILE] | paddr VA | ranges | "
                       "dump [--compress none|gzip|zstd] FILE | nbd start|stop|list|wait | savevm NAME | loadvm NAME | "
                       "snapshots | quit\n")

    def _mesh(self):
        if self.geom is None:
            raise CommandRefused("geom: the Python kernel has not started GEOM (the boot stopped before mi_startup)")
        return self.geom

    def geom_command(self, args: list[str]) -> None:
        """geom(8): `geom list` or `geom CLASS list` (e.g. `geom map list`)."""
        from kernel_sim.geom.listing import GeomClassNotFound, geom_list

        mesh = self._mesh()
        if args and args[-1] != "list" or len(args) > 2:
            raise MonitorError("usage: geom [CLASS] list")
        try:
            self.out.write(geom_list(mesh, args[0] if len(args) == 2 else None))
        except GeomClassNotFound as exc:
            raise CommandRefused(f"geom: {exc}") from None

    def provider_command(self, args: list[str]) -> None:
        """`provider read NAME OFFSET LENGTH [FILE]` / `provider write NAME OFFSET FILE`, through GEOM's
        access checks and the devices' real paths (the flash's erase and program commands)."""
        from pathlib import Path

        from kernel_sim.geom.core import GeomError

        mesh = self._mesh()
        if len(args) < 4 or args[0] not in ("read", "write"):
            raise MonitorError("usage: provider read NAME OFFSET LENGTH [FILE] | provider write NAME OFFSET FILE")
        try:
            offset = parse_int(args[2], where="provider")
            if args[0] == "read":
                length = parse_int(args[3], where="provider")
                cp = mesh.open(args[1])
                try:
                    data = cp.read(offset, length)
                finally:
                    mesh.close(cp)
                if len(args) > 4:
                    Path(args[4]).write_bytes(data)
                    self.out.write(f"{len(data)} bytes from {args[1]} at {offset} written to {args[4]}\n")
                else:
                    for i in range(0, len(data), 16):
                        self.out.write(f"{offset + i:08x}: {data[i:i + 16].hex(' ')}\n")
            else:
                check_input_file(args[3], what="file")     # stat first: a FIFO or /dev/zero is never read
                data = Path(args[3]).read_bytes()
                cp = mesh.open(args[1], read=True, write=True)
                try:
                    cp.write(offset, data)
                finally:
                    mesh.close(cp)
                self.out.write(f"{len(data)} bytes of {args[3]} written to {args[1]} at {offset}\n")
        except GeomError as exc:
            raise refused(f"provider {args[0]}", exc) from None
        except InputError as exc:
            raise MonitorError(f"provider {args[0]}: {exc}") from None
        except OSError as exc:            # the host file named in the command
            raise MonitorError(f"provider {args[0]}: {exc.filename}: {describe_host(exc)}") from None

    def mdconfig(self, args: list[str]) -> None:
        """mdconfig(8) against the kernel's md driver: its output, and its errors as one line."""
        from kernel_sim.userland.commands.mdconfig import mdconfig

        mesh = self._mesh()
        if mesh.md is None:
            raise CommandRefused("mdconfig: this kernel has no md driver (device md)")
        status, out, err = mdconfig(mesh.md, args)
        self.out.write(out)
        if status:
            raise CommandRefused((err or f"mdconfig exited {status}").strip().replace("\n", "; "))

    def _root(self):
        if self.vfs is None or "/" not in self.vfs.mounts:
            raise CommandRefused("no root file system is mounted")
        return self.vfs

    def ls(self, args: list[str]) -> None:
        """`ls [-l] PATH` on the mounted root file system."""
        from kernel_sim.fs.vfs import VfsError

        long = bool(args) and args[0] == "-l"
        rest = args[1:] if long else args
        path = rest[0] if rest else "/"
        try:
            entries = self._root().listdir(path)
        except VfsError as exc:
            raise refused(f"ls {path}", exc) from None
        for name, _ino, mode, size in entries:
            if name in (".", ".."):
                continue
            self.out.write(f"{oct(mode)[-6:]} {size:>10} {name}\n" if long else f"{name}\n")

    def cat(self, args: list[str]) -> None:
        """`cat PATH` from the mounted root file system."""
        from kernel_sim.fs.vfs import VfsError

        if len(args) != 1:
            raise MonitorError("usage: cat PATH")
        try:
            self.out.write(self._root().read_file(args[0]).decode("utf-8", "replace"))
        except VfsError as exc:
            raise refused(f"cat {args[0]}", exc) from None

    def sysctl_command(self, args: list[str]) -> None:
        """sysctl(8): `sysctl NAME` prints "NAME: value"; a node prints every leaf; -d the description."""
        if self.sysctl is None:
            raise CommandRefused("sysctl: the Python kernel has not started (the boot stopped before mi_startup)")
        describe = bool(args) and args[0] == "-d"
        names = args[1:] if describe else args
        try:
            for name in names or [""]:
                if describe:
                    self.out.write(self.sysctl.describe(name) + "\n")
                elif name:
                    self.out.write(self.sysctl.format(name) + "\n")
                else:
                    for leaf in self.sysctl.list(""):
                        self.out.write(self.sysctl.format(leaf) + "\n")
        except SysctlError as exc:
            raise CommandRefused(str(exc), exc.errno) from None

    def quit(self, _args: list[str]) -> None:
        self.done = True

    def info(self, args: list[str]) -> None:
        what = args[0] if args else ""
        if what in ("registers", "reg", "r"):
            self.registers()
        elif what in ("mem", "tlb"):
            self.mem()
        elif what in ("break", "breakpoints", "b") and self.stepping is not None:
            from tools.monitor_debug import info_break

            info_break(self)
        else:
            raise MonitorError("info needs 'registers', 'mem'" + (" or 'break'" if self.stepping else ""))

    def registers(self) -> None:
        uc = self.machine.uc
        regs = [uc.reg_read(UC_ARM_REG_R0 + i) for i in range(13)]
        regs += [uc.reg_read(UC_ARM_REG_SP), uc.reg_read(UC_ARM_REG_LR), uc.reg_read(UC_ARM_REG_PC)]
        names = [f"R{i:02d}" for i in range(16)]
        for row in range(4):
            self.out.write(" ".join(f"{names[4 * row + c]}={regs[4 * row + c]:08x}" for c in range(4)) + "\n")
        cpsr = uc.reg_read(UC_ARM_REG_CPSR)
        flags = "".join(f if cpsr & (1 << b) else "-" for f, b in (("N", 31), ("Z", 30), ("C", 29), ("V", 28)))
        mode = MODE_NAMES.get(cpsr & 0x1F, "???")
        self.out.write(f"PSR={cpsr:08x} {flags} {'T' if cpsr & 0x20 else 'A'} {mode}32\n")
        self.out.write(f"SPSR={uc.reg_read(UC_ARM_REG_SPSR):08x}\n")
        cp = self.machine.cp15
        self.out.write(f"SCTLR={cp.sctlr:08x} TTBR0={cp.ttbr0:08x} TTBCR={cp.ttbcr:08x} DACR={cp.dacr:08x} "
                       f"VBAR={cp.vbar:08x}\n")

    def mem(self) -> None:
        mmu = mmu_for(self.machine)
        if not mmu.m:
            self.out.write("MMU is off: virtual = physical\n")
            return
        for mapping in mmu.mappings():
            self.out.write(f"{mapping.va_start:08x}-{mapping.va_end:08x} {mapping.va_end - mapping.va_start:08x} "
                           f"-> {mapping.pa_start:08x} {mapping.attrs}\n")

    def address(self, text: str) -> int:
        """A number, `$pc`/`$sp`/`$lr`/`$rN`, or a guest kernel symbol (its virtual address)."""
        regs = {"pc": UC_ARM_REG_PC, "sp": UC_ARM_REG_SP, "lr": UC_ARM_REG_LR}
        regs.update({f"r{i}": UC_ARM_REG_R0 + i for i in range(13)})
        if text.startswith("$") and text[1:].lower() in regs:
            return self.machine.uc.reg_read(regs[text[1:].lower()])
        if self.image is not None and text in self.image.symbols:
            return self.image.symbols[text]
        try:
            return parse_int(text, where="monitor")
        except InputError as exc:
            raise MonitorError(str(exc)) from None

    def examine(self, args: list[str], *, fmt: str = "", physical: bool = False) -> None:
        if len(args) != 1:
            raise MonitorError("usage: x/N ADDR or xp/N ADDR")
        count_text = "".join(c for c in fmt if c.isdigit()) or "1"
        unit = 1 if "b" in fmt else 2 if "h" in fmt else 4
        addr = self.address(args[0])
        count = int(count_text)
        if "i" in fmt:
            from tools.monitor_debug import examine_instructions

            examine_instructions(self, addr, count, physical=physical)
            return
        try:
            if physical:
                data = self.machine.phys.read(addr, count * unit)
            else:
                mmu = mmu_for(self.machine)
                data = mmu.read_virtual(addr, count * unit, mmu.read_phys)
        except (MMUFault, BusAbort) as exc:
            raise CommandRefused(f"cannot access {'physical' if physical else 'virtual'} address "
                               f"0x{addr:08x}: {exc}") from None
        per_line = 16 // unit
        for i in range(0, count, per_line):
            words = [int.from_bytes(data[(i + j) * unit:(i + j + 1) * unit], "little")
                     for j in range(min(per_line, count - i))]
            self.out.write(f"{addr + i * unit:08x}: " + " ".join(f"0x{w:0{2 * unit}x}" for w in words) + "\n")


def interactive(monitor: Monitor, stdin: TextIO | None = None) -> None:
    """A (armboard) prompt until quit, a command that resumes the boot, or end of input."""
    stdin = stdin if stdin is not None else sys.stdin
    while not monitor.done and monitor.resume is None:
        monitor.out.write("(armboard) ")
        monitor.out.flush()
        with monitor.waiting():
            line = stdin.readline()
        if not line:
            break
        try:
            monitor.run(line)
        except MonitorError as exc:
            monitor.out.write(f"{exc}\n")
