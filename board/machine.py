"""The machine: a Unicorn Cortex-A15, the physical bus from a board profile, and the run loop.

No per-instruction hooks: RAM and flash are plain memory, only device registers are MMIO.
The board delivers synchronous exceptions to the guest's own vectors, answers semihosting's
SYS_EXIT as QEMU does with -semihosting, and passes hypercalls (`svc #0x0AB0AB`) to whoever
registered a handler (the Python kernel). It knows nothing about FreeBSD.
"""

from __future__ import annotations

import struct
import time

from . import exceptions as exc
from .devices.flash_image import GEOMETRY_NAMES, FlashImage
from .devices.pl011 import PL011, Console
from .memory import MemoryStateError, PhysicalMemory
from .uc_vmem import vmem_read
from .ucapi import (
    UC_ARCH_ARM,
    UC_ARM_REG_CPSR,
    UC_ARM_REG_PC,
    UC_ARM_REG_R0,
    UC_ARM_REG_R1,
    UC_ARM_REG_R7,
    UC_CPU_ARM_CORTEX_A15,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_WRITE,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_ARM,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from .devices.cfi import CfiFlash
    from .memory import FileOverlay
    from .profile import BoardProfile, SwapSpec
    from .state_io import DataSink, DataSource
    from .storage import Allocator  # imported only with a swap device: zstandard is slow to import

    # A hypercall handler returns None to let the guest continue, or a value to stop the run.
    HypercallHandler = Callable[["Machine", int], object]
    # Classifies a data/prefetch abort from the MMU's view: (va, access) -> FSR value.
    FaultClassifier = Callable[["Machine", int, str], int]
    # Answers a TLB fill: (va, access, privileged) -> (pa, perms as UC_PROT_* bits) or the FSR of the fault.
    TlbFill = Callable[["Machine", int, str, bool], "tuple[int, int] | int"]

HYPERCALL_IMM = 0x0AB0AB
SEMIHOSTING_IMM = 0x123456
SYS_EXIT = 0x18
ADP_STOPPED_APPLICATION_EXIT = 0x20026
EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT = 2, 3, 4   # QEMU's target/arm/cpu.h
# With the Python TLB, Unicorn probes the stop address when it stops; its fill is refused quietly.
EXIT_ADDRESS = 0xFFFFFFFC
MACHINE_STATE_VERSION = 1


class MachineStateError(ValueError):
    """A saved machine state that does not fit this machine (another board, RAM size or device)."""


class Stop:
    """Why the run loop returned: `kind` is "exit", "hypercall", "breakpoint", "watchpoint", "step",
    "interrupt", "timeout" or "error"; `code` the semihosting exit status or the hypercall number;
    `value` what a hypercall handler returned, or for a watchpoint a WatchHit."""

    __slots__ = ("kind", "code", "detail", "value")

    def __init__(self, kind: str, code: int = 0, detail: str = "", value: object = None) -> None:
        self.kind, self.code, self.detail, self.value = kind, code, detail, value

    def __repr__(self) -> str:
        return f"Stop({self.kind!r}, {self.code}, {self.detail!r}, {self.value!r})"


class WatchHit:
    """Which watchpoint an access hit: its id, "read" or "write", the physical address and size."""

    __slots__ = ("watchpoint", "access", "address", "size")

    def __init__(self, watchpoint: int, access: str, address: int, size: int) -> None:
        self.watchpoint, self.access, self.address, self.size = watchpoint, access, address, size

    def __repr__(self) -> str:
        return f"WatchHit({self.watchpoint}, {self.access!r}, 0x{self.address:08x}, {self.size})"


class Fault:
    """A synchronous exception the board delivered to the guest (kept for diagnosis)."""

    __slots__ = ("vector", "pc", "address", "fsr", "physical", "access")

    def __init__(self, vector: str, pc: int, address: int | None, fsr: int | None, physical: int | None = None,
                 access: str = "read") -> None:
        self.vector, self.pc, self.address, self.fsr = vector, pc, address, fsr
        self.physical, self.access = physical, access

    def __repr__(self) -> str:
        return (f"Fault({self.vector!r}, pc=0x{self.pc:08x}, address={self.address!r}, fsr={self.fsr!r}, "
                f"physical={self.physical!r}, access={self.access!r})")


class FlashBank:
    """A CFI flash on the bus: plain memory while in read-array mode, MMIO otherwise.

    The command-set model (board/devices/cfi.py) is built on first use, when the guest writes a
    command or a driver of the Python kernel touches the bank: until then a read is the image's
    bytes, which is all read-array mode returns, and the boot never imports it."""

    def __init__(self, name: str, base: int, size: int, geometry: str, image: FlashImage,
                 on_mode_change: Callable[[bool], None]) -> None:
        self.name, self.base, self.size, self.geometry, self.image = name, base, size, geometry, image
        self._on_mode_change = on_mode_change
        self._device: CfiFlash | None = None
        self.mapped_as = ""       # "memory" or "mmio"

    @property
    def device(self) -> CfiFlash:
        if self._device is None:
            from .devices.cfi import GEOMETRIES, CfiFlash

            self._device = CfiFlash(GEOMETRIES[self.geometry](), self.image, name=self.name,
                                    on_mode_change=self._on_mode_change)
        return self._device

    @property
    def in_read_array(self) -> bool:
        return self._device is None or self._device.in_read_array

    @property
    def address(self) -> int:
        import ctypes

        return ctypes.addressof(ctypes.c_char.from_buffer(self.image.host))


class _Pending:
    """What the hooks of one emu_start left for the run loop."""

    __slots__ = ("error", "stop", "unmapped", "refused_fill", "flash_write")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.stop: Stop | None = None
        self.unmapped: tuple[int, str] | None = None
        self.refused_fill: tuple[int, str, int] | None = None
        self.flash_write: FlashBank | None = None


class Machine:
    """One board instance. Build it, load memory through `phys`, then `run(entry)`."""

    def __init__(self, profile: BoardProfile, ram_size: int, *, console: BinaryIO | None = None,
                 overlays: tuple[FileOverlay, ...] = (),
                 fault_classifier: FaultClassifier | None = None, tlb_fill: TlbFill | None = None,
                 flash_images: dict[str, FlashImage] | None = None, swap: SwapSpec | None = None) -> None:
        """`swap` overrides the profile's [swap] device (e.g. from the command line)."""
        self.profile = profile
        self.ram_size = ram_size
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
        self.uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_A15)
        self._running = False
        self.cp15 = exc.CP15(self.uc)
        self.phys = PhysicalMemory()
        self.phys.add_ram(profile.ram_base, ram_size, overlays)
        for region in self.phys.regions:
            self.uc.mem_map_ptr(region.base, region.size, UC_PROT_ALL, region.address())
        self.flash: dict[str, FlashBank] = {}
        self._flash_remap: set[str] = set()
        for f in profile.flash:
            if f.geometry not in GEOMETRY_NAMES:
                raise ValueError(f"board {profile.name}: unknown flash geometry '{f.geometry}'")
            image = (flash_images or {}).get(f.name) or FlashImage.anonymous(f.size)
            if image.size != f.size:
                raise ValueError(f"flash image {image.path or ''} is {image.size} bytes; flash bank {f.name} of "
                                 f"board {profile.name} is exactly {f.size} bytes")
            self.flash[f.name] = bank = FlashBank(f.name, f.base, f.size, f.geometry, image,
                                                  lambda _ra, name=f.name: self._flash_mode_changed(name))
            self._map_flash(bank)
        self.console = Console(console)
        # The swap device: a block device of a size over a host-side store; the kernel decides its use.
        swap_spec = swap if swap is not None else profile.swap
        self.swap: Allocator | None = swap_spec.open() if swap_spec is not None else None
        self.devices: dict[str, PL011] = {}
        for spec in profile.devices:
            if spec.type != "pl011":
                raise ValueError(f"board {profile.name}: device type {spec.type} is not built yet")
            dev = PL011(spec.name, spec.base, spec.size, self.console)
            self.devices[spec.name] = dev
            self.uc.mmio_map(spec.base, spec.size, self._mmio_read, dev, self._mmio_write, dev)
        self.hypercall_handler: HypercallHandler | None = None
        # board.trace.Events once someone listens (it is never imported otherwise); until then nothing is emitted.
        self.events = None
        self.fault_classifier = fault_classifier
        self.faults: list[Fault] = []
        self.wall_seconds = 0.0
        self._pending = _Pending()
        self.uc.hook_add(UC_HOOK_INTR, self._guarded(self._on_interrupt))
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._guarded(self._on_invalid, True))
        self.uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED
                         | UC_HOOK_MEM_FETCH_UNMAPPED | UC_HOOK_MEM_WRITE_PROT,
                         self._guarded(self._on_unmapped, False))
        self.tlb_fill = tlb_fill
        self.tlb_fills = 0
        # Debugging primitives (add_breakpoint, add_watchpoint, run(steps=...), request_stop): each
        # costs a hook only while it exists, so a boot that sets none runs without any.
        self._bp_hooks: dict[int, list[int]] = {}    # address -> [Unicorn hook, breakpoints there]
        self._bp_ids: dict[int, int] = {}            # breakpoint id -> address
        self.breakpoint_hits: dict[int, int] = {}    # address -> how often a breakpoint there stopped the guest
        self._watch_hooks: dict[int, int] = {}       # watchpoint id -> Unicorn hook
        self._next_id = 1
        self._skip_breakpoint_at: int | None = None  # resuming there: its breakpoint lets the first pass go
        self._steps_left = 0
        self._stop_requested = False
        # Unicorn compiles code hooks into translated blocks and retranslates neither when one is added
        # nor, for a lone hook it inlined, when it is deleted: blocks translated before a breakpoint
        # would run past it, and a deleted one would still stop. Adding or deleting one drops them.
        self._blocks_stale = False
        if tlb_fill is not None:
            # Every TLB fill is answered in Python (teaching mode): Unicorn's own walker is bypassed.
            self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
            self.uc.hook_add(UC_HOOK_TLB_FILL, self._guarded(self._on_tlb_fill, False))
            self.uc.ctl_exits_enabled(True)   # `until` would make Unicorn probe the stop address
            self.uc.ctl_set_exits([EXIT_ADDRESS])

    # ------------------------------------------------------------------ hooks
    def _guarded(self, fn: Callable, failure: object = None) -> Callable:
        """Keep a Python exception raised in a hook so run() re-raises it as itself."""
        def hook(*args):
            try:
                return fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised by run()
                self._pending.error = e
                self.uc.emu_stop()
                return failure
        return hook

    def _mmio_read(self, uc: Uc, offset: int, size: int, dev: PL011) -> int:
        value = dev.read(offset, size)
        if self.events is not None:
            self.events.mmio(dev.name, dev.base + offset, offset, size, value, False)
        return value

    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, dev: PL011) -> None:
        if self.events is not None:
            self.events.mmio(dev.name, dev.base + offset, offset, size, value, True)
        dev.write(offset, size, value)

    def _stop(self, stop: Stop) -> None:
        self._pending.stop = stop
        self.uc.emu_stop()

    def _on_interrupt(self, uc: Uc, intno: int, _user: object) -> None:
        pc = uc.reg_read(UC_ARM_REG_PC)
        if intno == EXCP_SWI:
            self._on_svc(pc)
        elif intno in (EXCP_DATA_ABORT, EXCP_PREFETCH_ABORT) and self._pending.refused_fill is not None:
            # A fill the Python MMU refused: Unicorn reports it with an unreliable exception number.
            refused, self._pending.refused_fill = self._pending.refused_fill, None
            self._refused_fill_abort(*refused)
        elif intno == EXCP_DATA_ABORT:
            self._deliver_abort(pc, data=True)
        elif intno == EXCP_PREFETCH_ABORT:
            self._deliver_abort(pc, data=False)
        else:
            self._stop(Stop("error", intno, f"unhandled CPU exception {intno} at pc 0x{pc:08x}"))

    def _on_svc(self, pc: int) -> None:
        code = self.read_virtual(pc - 4, 4)
        imm = struct.unpack("<I", code)[0] & 0xFFFFFF if code else None
        if self.events is not None and imm in (SEMIHOSTING_IMM, HYPERCALL_IMM):
            uc = self.uc
            if imm == SEMIHOSTING_IMM:
                self.events.gate(pc - 4, imm, uc.reg_read(UC_ARM_REG_R0), uc.reg_read(UC_ARM_REG_R1))
            else:
                self.events.gate(pc - 4, imm, uc.reg_read(UC_ARM_REG_R7), uc.reg_read(UC_ARM_REG_R0))
        if imm == SEMIHOSTING_IMM:
            self._semihosting()
        elif imm == HYPERCALL_IMM and self.hypercall_handler is not None:
            nr = self.uc.reg_read(UC_ARM_REG_R7)
            result = self.hypercall_handler(self, nr)
            if result is not None:
                self._stop(Stop("hypercall", nr, value=result))
        else:
            self._enter(exc.SVC, pc)

    def _semihosting(self) -> None:
        op = self.uc.reg_read(UC_ARM_REG_R0)
        arg = self.uc.reg_read(UC_ARM_REG_R1)
        if op == SYS_EXIT:
            # As QEMU: ADP_Stopped_ApplicationExit exits 0, any other reason exits 1.
            self._stop(Stop("exit", 0 if arg == ADP_STOPPED_APPLICATION_EXIT else 1,
                            f"semihosting SYS_EXIT, reason 0x{arg:x}"))
        else:
            self._stop(Stop("error", op, f"semihosting call 0x{op:x} is not supported"))

    def _classify(self, va: int, access: str) -> int:
        if self.fault_classifier is None:
            return 0x005  # translation fault (section): the most the board alone can say
        return self.fault_classifier(self, va, access)

    def _deliver_abort(self, pc: int, *, data: bool) -> None:
        if data:
            from .faultaddr import data_address

            code = self.read_virtual(pc, 4) or b""
            va, is_write = data_address(self.uc, code, pc)
            access = "write" if is_write else "read"
            va = va if va is not None else 0
            fsr = self._classify(va, access) | (exc.FSR_WNR if is_write else 0)
            self.faults.append(Fault("data abort", pc, va, fsr, access=access))
            self._enter(exc.DATA_ABORT, pc, fsr=fsr, far=va)
        else:
            fsr = self._classify(pc, "fetch")
            self.faults.append(Fault("prefetch abort", pc, pc, fsr, access="fetch"))
            self._enter(exc.PREFETCH_ABORT, pc, fsr=fsr, far=pc)

    def _enter(self, vector: exc.Vector, pc: int, *, fsr: int | None = None, far: int | None = None) -> None:
        """Exception entry (board/exceptions.py), told to whoever listens."""
        new_pc = exc.enter(self.uc, self.cp15, vector, pc, fsr=fsr, far=far)
        if self.events is not None:
            self.events.exception(vector, pc, fsr, far, new_pc)

    def _on_invalid(self, uc: Uc, _user: object) -> bool:
        pc = uc.reg_read(UC_ARM_REG_PC)
        self.faults.append(Fault("undefined instruction", pc, None, None))
        self._enter(exc.UNDEFINED, pc)
        return True

    # ------------------------------------------------------------------ flash
    def _map_flash(self, bank: FlashBank) -> None:
        """Read-array mode: the array as plain memory (writes trap); otherwise MMIO to the device."""
        want = "memory" if bank.in_read_array else "mmio"
        if bank.mapped_as == want:
            return
        if bank.mapped_as:
            self.uc.mem_unmap(bank.base, bank.size)
        if want == "memory":
            self.uc.mem_map_ptr(bank.base, bank.size, UC_PROT_READ | UC_PROT_EXEC, bank.address)
        else:
            self.uc.mmio_map(bank.base, bank.size, self._flash_read, bank.device, self._flash_write, bank.device)
        bank.mapped_as = want

    def _flash_read(self, uc: Uc, offset: int, size: int, dev: CfiFlash) -> int:
        value = dev.read(offset, size)
        if self.events is not None:
            self.events.mmio(dev.name, self.flash[dev.name].base + offset, offset, size, value, False)
        return value

    def _flash_write(self, uc: Uc, offset: int, size: int, value: int, dev: CfiFlash) -> None:
        if self.events is not None:
            self.events.mmio(dev.name, self.flash[dev.name].base + offset, offset, size, value, True)
        dev.write(offset, size, value)

    def _flash_mode_changed(self, name: str) -> None:
        """Called by a bank entering or leaving read-array: remap once the CPU is stopped."""
        self._flash_remap.add(name)               # host-side accesses: remapped when the CPU next runs
        if self._running:
            self.uc.emu_stop()

    def bus_read(self, pa: int, size: int) -> int:
        """A load by a device driver of the Python kernel: memory or device, as the CPU would see it."""
        bank = self.flash_at(pa)
        if bank is not None:
            value = bank.device.read(pa - bank.base, size)
            if self.events is not None:
                self.events.mmio(bank.name, pa, pa - bank.base, size, value, False, "bus")
            return value
        return int.from_bytes(self.phys.read(pa, size), "little")

    def bus_write(self, pa: int, size: int, value: int) -> None:
        """A store by a device driver of the Python kernel (flash commands go to the device)."""
        bank = self.flash_at(pa)
        if bank is not None:
            if self.events is not None:
                self.events.mmio(bank.name, pa, pa - bank.base, size, value, True, "bus")
            bank.device.write(pa - bank.base, size, value)
            return
        self.phys.write(pa, value.to_bytes(size, "little"))

    def flash_at(self, pa: int) -> FlashBank | None:
        for bank in self.flash.values():
            if bank.base <= pa < bank.base + bank.size:
                return bank
        return None

    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int,
                     _user: object) -> bool:
        kind = ("fetch" if access == UC_MEM_FETCH_UNMAPPED else
                "write" if access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT) else "read")
        bank = self.flash_at(address) if access == UC_MEM_WRITE_PROT else None
        if bank is not None:
            # A write to flash in read-array mode is a command: map the bank as MMIO and let the
            # store run again, so the device sees it exactly once.
            self._pending.flash_write = bank
            return False
        self._pending.unmapped = (address, kind)
        return False

    def _on_tlb_fill(self, uc: Uc, va: int, access: int, entry, _user: object) -> bool:
        kind = {UC_MEM_WRITE: "write", UC_MEM_FETCH: "fetch"}.get(access, "read")
        if va == EXIT_ADDRESS & ~0x3FF and kind == "fetch":
            return False   # Unicorn probing its stop address, not the guest (it never runs code there)
        privileged = (uc.reg_read(UC_ARM_REG_CPSR) & 0x1F) != exc.MODE_USR
        self.tlb_fills += 1
        answer = self.tlb_fill(self, va, kind, privileged)
        if self.events is not None:
            self.events.tlb_fill(va, kind, answer)
        if isinstance(answer, tuple):
            if not self.decodes(answer[0]):
                answer = exc.FSR_SYNC_EXTERNAL   # translated, but nothing answers on the bus
            else:
                entry.paddr, entry.perms = answer
                return True
        self._pending.refused_fill = (va, kind, answer)
        return False

    def _refused_fill_abort(self, va_page: int, kind: str, fsr: int) -> None:
        """The Python MMU refused a fill: Unicorn stopped at the instruction; deliver the abort."""
        pc = self.uc.reg_read(UC_ARM_REG_PC)
        if kind == "fetch":
            self.faults.append(Fault("prefetch abort", pc, pc, fsr, access="fetch"))
            self._enter(exc.PREFETCH_ABORT, pc, fsr=fsr, far=pc)
            return
        from .faultaddr import data_address

        va, _ = data_address(self.uc, self.read_virtual(pc, 4) or b"", pc)
        if va is None or (va & ~0x3FF) != (va_page & ~0x3FF):
            va = va_page
        fsr |= exc.FSR_WNR if kind == "write" else 0
        self.faults.append(Fault("data abort", pc, va, fsr, access=kind))
        self._enter(exc.DATA_ABORT, pc, fsr=fsr, far=va)

    def _external_abort(self, pa: int, kind: str) -> None:
        """Nothing behind a physical address: a synchronous external abort for the guest."""
        pc = self.uc.reg_read(UC_ARM_REG_PC)
        if kind == "fetch":
            self.faults.append(Fault("prefetch abort", pc, pc, exc.FSR_SYNC_EXTERNAL, pa, "fetch"))
            self._enter(exc.PREFETCH_ABORT, pc, fsr=exc.FSR_SYNC_EXTERNAL, far=pc)
            return
        from .faultaddr import data_address

        va, is_write = data_address(self.uc, self.read_virtual(pc, 4) or b"", pc)
        if va is None:
            va = pa
        elif (va & 0xFFF) != (pa & 0xFFF):
            va = (va & ~0xFFF) | (pa & 0xFFF)   # the word of a multiple transfer that faulted
        fsr = exc.FSR_SYNC_EXTERNAL | (exc.FSR_WNR if kind == "write" else 0)
        self.faults.append(Fault("data abort", pc, va, fsr, pa, kind))
        self._enter(exc.DATA_ABORT, pc, fsr=fsr, far=va)

    # ------------------------------------------------------------------ run loop
    def run(self, pc: int, *, timeout: float | None = None, steps: int | None = None,
            resume: bool = False) -> Stop:
        """Run from pc until the guest exits, a hypercall handler stops it, or time runs out.

        `steps`: stop ("step") before the instruction after the first `steps` ones; a per-instruction
        hook exists only for that run. `resume`: continuing from a stop at pc, so a breakpoint at pc
        does not stop it again before that instruction runs (a debugger's "continue")."""
        deadline = None if timeout is None else time.monotonic() + timeout
        start = time.monotonic()
        self._skip_breakpoint_at = pc if resume and pc in self._bp_hooks else None
        step_hook = None
        if steps is not None:
            self._steps_left = steps
            step_hook = self.uc.hook_add(UC_HOOK_CODE, self._guarded(self._on_step))
            self._blocks_stale = True
        if self._blocks_stale:
            self.uc.ctl_flush_tb()
            self._blocks_stale = False
        self._running = True
        try:
            while True:
                if self._stop_requested:
                    self._stop_requested = False
                    self.uc.reg_write(UC_ARM_REG_PC, pc)     # where the next run starts, as if it had
                    return Stop("interrupt", detail="stop requested")
                for name in sorted(self._flash_remap):
                    self._map_flash(self.flash[name])
                self._flash_remap.clear()
                self._pending = _Pending()
                budget_us = 0
                if deadline is not None:
                    budget_us = max(1, int((deadline - time.monotonic()) * 1e6))
                error: UcError | None = None
                try:
                    self.uc.emu_start(pc, EXIT_ADDRESS if self.tlb_fill else 0xFFFFFFFF, timeout=budget_us)
                except UcError as e:
                    error = e
                pending = self._pending
                if pending.error is not None:
                    raise pending.error
                if pending.stop is not None:
                    return pending.stop
                if self._stop_requested and error is None:
                    continue                     # emu_stop from request_stop: the loop's first test says so
                for name in sorted(self._flash_remap):
                    self._map_flash(self.flash[name])
                self._flash_remap.clear()
                if error is not None and pending.flash_write is not None:
                    bank = pending.flash_write
                    self.uc.mem_unmap(bank.base, bank.size)
                    self.uc.mmio_map(bank.base, bank.size, self._flash_read, bank.device, self._flash_write,
                                     bank.device)
                    bank.mapped_as = "mmio"
                    error = None
                if error is not None:
                    if pending.refused_fill is not None and error.errno == UC_ERR_EXCEPTION:
                        self._refused_fill_abort(*pending.refused_fill)
                    elif pending.unmapped is not None and error.errno in (
                            UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED, UC_ERR_WRITE_PROT):
                        self._external_abort(*pending.unmapped)
                    elif deadline is None or time.monotonic() < deadline:
                        return Stop("error", error.errno, f"{error} at pc 0x{self.pc:08x}")
                if deadline is not None and time.monotonic() >= deadline:
                    return Stop("timeout", detail=f"time limit of {timeout:g} s reached")
                pc = self.uc.reg_read(UC_ARM_REG_PC)
        finally:
            self._running = False
            if step_hook is not None:
                self.uc.hook_del(step_hook)
                self._blocks_stale = True
            for name in sorted(self._flash_remap):
                self._map_flash(self.flash[name])
            self._flash_remap.clear()
            self.wall_seconds += time.monotonic() - start
            self.console.flush()

    def decodes(self, pa: int) -> bool:
        """Whether anything (memory or a device) answers at this physical address."""
        return self.phys.find(pa) is not None or self.flash_at(pa) is not None or any(
            d.base <= pa < d.base + d.size for d in self.devices.values())

    def add_breakpoint(self, va: int) -> int:
        """Stop when the guest is about to execute the address va, before it runs; returns its id.

        va is the CPU's current address: virtual with the MMU on, physical with it off (code that runs
        both ways needs one breakpoint per alias). A hook on that one address costs nothing elsewhere:
        Unicorn emits the callback only into blocks that hold it. Breakpoints at one address share it."""
        bp_id = self._new_id()
        self._bp_ids[bp_id] = va
        if va in self._bp_hooks:
            self._bp_hooks[va][1] += 1
        else:
            self._bp_hooks[va] = [self.uc.hook_add(UC_HOOK_CODE, self._guarded(self._on_breakpoint),
                                                   begin=va, end=va), 1]
            self._blocks_stale = True
        return bp_id

    def remove_breakpoint(self, bp_id: int) -> None:
        """Remove a breakpoint by the id add_breakpoint returned; the last one at an address removes the hook."""
        va = self._bp_ids.pop(bp_id)
        entry = self._bp_hooks[va]
        entry[1] -= 1
        if entry[1] == 0:
            del self._bp_hooks[va]
            self.uc.hook_del(entry[0])
            self._blocks_stale = True

    def add_watchpoint(self, pa: int, size: int, access: str) -> int:
        """Stop at a guest access ("read", "write" or "access") overlapping pa..pa+size; returns its id.

        Unicorn's memory hooks see physical addresses, so a watchpoint is on physical memory (any
        virtual alias of it hits). The stop comes with the accessing instruction's pc, its store
        already done, as a debugger that steps over a watchpoint expects (gdb on ARM does)."""
        kinds = {"read": UC_HOOK_MEM_READ, "write": UC_HOOK_MEM_WRITE, "access": UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}
        if access not in kinds or size <= 0:
            raise ValueError(f"watchpoint access {access!r} of {size} bytes: read, write or access, size > 0")
        wp_id = self._new_id()
        end = pa + size

        def hit(uc: Uc, kind: int, address: int, length: int, _value: int, _user: object) -> None:
            if address < end and address + length > pa:     # the hook's range only bounds the start
                self._stop(Stop("watchpoint", detail=f"watchpoint at 0x{pa:08x}",
                                value=WatchHit(wp_id, "write" if kind == UC_MEM_WRITE else "read", address, length)))

        self._watch_hooks[wp_id] = self.uc.hook_add(kinds[access], self._guarded(hit), begin=max(0, pa - 7),
                                                    end=end - 1)
        return wp_id

    def remove_watchpoint(self, wp_id: int) -> None:
        self.uc.hook_del(self._watch_hooks.pop(wp_id))

    def request_stop(self) -> None:
        """Stop the guest as soon as it can (a debugger's interrupt): the run returns Stop("interrupt").

        Safe from another thread (Unicorn allows uc_emu_stop from any thread). A request made while
        the CPU is not running stops the next run before its first instruction."""
        self._stop_requested = True
        self.uc.emu_stop()

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _on_breakpoint(self, uc: Uc, address: int, size: int, _user: object) -> None:
        if address == self._skip_breakpoint_at:
            self._skip_breakpoint_at = None
            return
        self.breakpoint_hits[address] = self.breakpoint_hits.get(address, 0) + 1
        self._stop(Stop("breakpoint", detail=f"breakpoint at 0x{address:08x}"))

    def _on_step(self, uc: Uc, address: int, size: int, _user: object) -> None:
        if self._steps_left == 0:
            self._stop(Stop("step", detail=f"stepped to 0x{address:08x}"))
        else:
            self._steps_left -= 1

    # ------------------------------------------------------------------ inspection
    def read_virtual(self, va: int, size: int) -> bytes | None:
        """Read through the CPU's current translation (None if it faults)."""
        return vmem_read(self.uc, va, size)

    @property
    def pc(self) -> int:
        return self.uc.reg_read(UC_ARM_REG_PC)

    @property
    def cpsr(self) -> int:
        return self.uc.reg_read(UC_ARM_REG_CPSR)

    def flush_tlb(self) -> None:
        """After the host edits page tables in guest RAM (a TB flush alone is not enough)."""
        self.uc.ctl_flush_tlb()

    # ------------------------------------------------------------------ snapshots
    def parts(self) -> dict[str, object]:
        """The machine's components by stable names: what a snapshot of the software running on it
        refers to instead of copying (a kernel object holding the bus, a flash bank or the console)."""
        out: dict[str, object] = {"machine": self, "uc": self.uc, "cp15": self.cp15, "phys": self.phys,
                                  "console": self.console}
        for region in self.phys.regions:
            out[f"region@{region.base:#x}"] = region
            out[f"region@{region.base:#x}.host"] = region.host
        for name, dev in self.devices.items():
            out[f"device:{name}"] = dev
        for name, bank in self.flash.items():
            out[f"flash:{name}"] = bank
            out[f"flash:{name}.image"] = bank.image
            out[f"flash:{name}.host"] = bank.image.host
            out[f"flash:{name}.array"] = bank.image.array
            if bank._device is not None:
                out[f"flash:{name}.device"] = bank._device
        if self.swap is not None:
            out["swap"] = self.swap
        return out

    def state(self, sink: DataSink) -> dict:
        """The whole board as plain data: CPU, memory, flash, devices, console, swap store. Page and
        store contents go to `sink` in order; load_state() reads them back in the same order."""
        from .cpu_state import cpu_state  # snapshots only: not on the boot path

        return {
            "version": MACHINE_STATE_VERSION, "board": self.profile.name, "ram_size": self.ram_size,
            "cpu": cpu_state(self.uc),
            "memory": self.phys.state(sink),
            "flash": {name: {"image": bank.image.state(sink),
                             "device": bank._device.state() if bank._device is not None else None}
                      for name, bank in self.flash.items()},
            "devices": {name: dev.state() for name, dev in self.devices.items()},
            "console": self.console.state(),
            "swap": self.swap.state(sink) if self.swap is not None else None,
            "faults": [(f.vector, f.pc, f.address, f.fsr, f.physical, f.access) for f in self.faults],
            "tlb_fills": self.tlb_fills,
        }

    def check_state(self, state: dict) -> None:
        """Whether load_state(state) fits: checked whole before anything is loaded, so a refused
        restore leaves this machine as it was."""
        from .storage.base import StorageError  # the stores' module, loaded only for snapshots

        if state.get("version") != MACHINE_STATE_VERSION:
            raise MachineStateError(f"machine state version {state.get('version')!r}; this board reads version "
                                    f"{MACHINE_STATE_VERSION}")
        if (state.get("board"), state.get("ram_size")) != (self.profile.name, self.ram_size):
            raise MachineStateError(f"the snapshot is of board {state.get('board')} with "
                                    f"{state.get('ram_size', 0) >> 20} MiB of RAM; this is board {self.profile.name} "
                                    f"with {self.ram_size >> 20} MiB")
        try:
            self.phys.check_state(state["memory"])
            if sorted(state["flash"]) != sorted(self.flash):
                raise MachineStateError(f"the snapshot has flash banks {sorted(state['flash'])}; this board has "
                                        f"{sorted(self.flash)}")
            for name, bank in self.flash.items():
                bank.image.check_state(state["flash"][name]["image"], f"flash bank {name}")
            if sorted(state["devices"]) != sorted(self.devices):
                raise MachineStateError(f"the snapshot has devices {sorted(state['devices'])}; this board has "
                                        f"{sorted(self.devices)}")
            if (state["swap"] is None) != (self.swap is None):
                raise MachineStateError("the snapshot was saved " + ("without" if state["swap"] is None else "with")
                                        + " a swap device; this board has " + ("one" if self.swap else "none"))
            if self.swap is not None:
                self.swap.check_state(state["swap"])
        except (MemoryStateError, StorageError) as exc:
            raise MachineStateError(str(exc)) from None
        except (KeyError, TypeError) as exc:
            raise MachineStateError(f"malformed machine state: {exc!r}") from None

    def load_state(self, state: dict, source: DataSource) -> None:
        """Become the saved machine (after check_state): the CPU, then memory and flash through
        `source`, the devices; the TLB and every translated block are dropped, since both describe
        the memory and tables that were here before."""
        from .cpu_state import load_cpu_state

        load_cpu_state(self.uc, state["cpu"])
        self.phys.load_state(state["memory"], source)
        for name, bank in self.flash.items():
            saved = state["flash"][name]
            bank.image.load_state(saved["image"], source)
            if saved["device"] is not None:
                bank.device.load_state(saved["device"])
            elif bank._device is not None:
                bank._device.reset()          # never built when saved: power-on state, read-array
        for name, dev in self.devices.items():
            dev.load_state(state["devices"][name])
        self.console.load_state(state["console"])
        if self.swap is not None:
            self.swap.load_state(state["swap"], source)
        self.faults = [Fault(*f) for f in state["faults"]]
        self.tlb_fills = state["tlb_fills"]
        for name in self.flash:
            self._map_flash(self.flash[name])
        self._flash_remap.clear()
        self.uc.ctl_flush_tlb()
        self.uc.ctl_flush_tb()
    def forget_translations(self) -> None:
        """After the host writes guest memory that may hold code or page tables (a debugger's memory
        write): the translated blocks and the TLB go, so the CPU sees the new bytes."""
        self.uc.ctl_flush_tb()
        self.uc.ctl_flush_tlb()
