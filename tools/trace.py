"""`armboard boot --trace KINDS`: what the CPU and the devices did, as QEMU's -d prints it, with the
kernel's symbols and the MMU simulator's view added.

    in_asm     each block the first time it runs, disassembled (QEMU's in_asm; translation blocks
               split differently from QEMU's, the instructions are the same)
    exec       each block each time it runs (QEMU's exec)
    insn       each instruction each time it runs, disassembled (slow: narrow it with --trace-range)
    cpu        the registers before each block (QEMU's cpu)
    int        exceptions: the vector, FSR/FAR decoded, where it was taken and where it goes
    mmu        TTBR/SCTLR/DACR writes, TLB maintenance, and the first translation of each page through
               the MMU simulator (kernel_sim/vm/mmu.py) after each change; with --mmu python each TLB
               fill the simulator answers
    mmio       device register accesses, by the CPU and by the Python kernel's drivers
    hypercall  the svc gate into the Python kernel, and semihosting
    nochain    accepted for QEMU's sake: every block is seen here anyway

Stage lines (`stage: NAME`) mark where each boot stage begins. `--trace-range START-END|START+LEN`
keeps events whose pc (for a block, its first instruction) is in the range as the CPU sees addresses;
`--trace-stage NAMES` keeps events while one of those stages runs. capstone is imported only here.
"""

from __future__ import annotations

from typing import TextIO

from board.devices import pl011
from board.exceptions import MODE_NAMES
from board.machine import HYPERCALL_IMM, SEMIHOSTING_IMM, Machine
from board.trace import Events
from board.ucapi import UC_ARM_REG_CPSR, UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_R0, UC_ARM_REG_SP
from kernel_sim.errors import InputError
from kernel_sim.guest.abi import HC_FATAL, HC_HANDOVER, HC_PANIC
from kernel_sim.guest.build import GuestImage
from kernel_sim.guest.code import cp15_write_sites
from kernel_sim.guest.symbols import SymbolTable
from kernel_sim.loader.sizes import parse_int
from tools.stage_watch import ALL_STAGES, StageWatch

KINDS = ("in_asm", "exec", "insn", "cpu", "int", "mmu", "mmio", "hypercall", "nochain")
HYPERCALL_NAMES = {HC_HANDOVER: "HC_HANDOVER", HC_PANIC: "HC_PANIC", HC_FATAL: "HC_FATAL"}
SEMIHOSTING_NAMES = {0x18: "SYS_EXIT"}
PL011_NAMES = {pl011.DR: "UARTDR", pl011.RSR: "UARTRSR", pl011.FR: "UARTFR", pl011.ILPR: "UARTILPR",
               pl011.IBRD: "UARTIBRD", pl011.FBRD: "UARTFBRD", pl011.LCR_H: "UARTLCR_H", pl011.CR: "UARTCR",
               pl011.IFLS: "UARTIFLS", pl011.IMSC: "UARTIMSC", pl011.RIS: "UARTRIS", pl011.MIS: "UARTMIS",
               pl011.ICR: "UARTICR", pl011.DMACR: "UARTDMACR"}
SCTLR_BITS = ((0, "M"), (1, "A"), (2, "C"), (11, "Z"), (12, "I"), (13, "V"), (28, "TRE"), (29, "AFE"), (30, "TE"))
TLB_OPERATIONS = {"TLBIALL", "TLBIMVA", "TLBIASID", "TLBIALLIS", "TLBIMVAIS", "TLBIASIDIS", "TLBIMVAA",
                  "TLBIMVAAIS"}


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown trace kind '{unknown[0] if unknown else text}' (known: {', '.join(KINDS)})",
                         "--trace")
    return kinds


def parse_range(text: str) -> tuple[int, int]:
    """START-END (END inclusive, as QEMU's -dfilter) or START+LEN, in hexadecimal with 0x or decimal."""
    for sep in ("+", "-"):
        start, found, rest = text.partition(sep)
        if found:
            try:
                lo, n = parse_int(start.strip(), where="--trace-range"), parse_int(rest.strip(), where="--trace-range")
            except InputError:
                break
            hi = lo + n - 1 if sep == "+" else n
            if lo > hi or hi > 0xFFFFFFFF:
                raise InputError(f"'{text}' is an empty range or runs past 0xffffffff", "--trace-range")
            return lo, hi
    raise InputError(f"'{text}' is not START-END or START+LEN (e.g. 0xc0001000-0xc0001fff)", "--trace-range")


def parse_stages(text: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(ALL_STAGES))
    if unknown or not names:
        raise InputError(f"unknown stage '{unknown[0] if unknown else text}' (stages: {', '.join(ALL_STAGES)})",
                         "--trace-stage")
    return names


def _bits(value: int) -> str:
    return " ".join(f"{name}={(value >> bit) & 1}" for bit, name in SCTLR_BITS)


class Tracer:
    """Writes one boot's trace to `out`; `close()` removes its hooks."""

    def __init__(self, machine: Machine, image: GuestImage, kinds: tuple[str, ...], out: TextIO, *,
                 address_range: tuple[int, int] | None = None, stages: frozenset[str] | None = None,
                 python_mmu: bool = False) -> None:
        import capstone

        self.machine, self.out, self.kinds = machine, out, set(kinds)
        self.symbols = SymbolTable(image)
        self.lo, self.hi = address_range or (0, 0xFFFFFFFF)
        self.stages = stages
        self._cs = {False: capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_ARM),
                    True: capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB)}
        self._seen_blocks: set[tuple[int, int]] = set()
        self._insn_text: dict[tuple[int, int], str] = {}
        self._pages: set[tuple[str, int]] = set()      # (kind, page) translated since the last TTBR/TLB change
        self.mmu_on = bool(machine.cp15.sctlr & 1)
        self.watch = StageWatch(machine, image)
        self.watch.listeners.append(self._stage)
        self.active = stages is None
        bus = Events.of(machine)
        subs = []
        begin, end = address_range if address_range else (1, 0)
        if self.kinds & {"in_asm", "exec", "cpu"} or ("mmu" in self.kinds and not python_mmu):
            subs.append(bus.subscribe("block", self._block, begin=begin, end=end))
        if "insn" in self.kinds:
            subs.append(bus.subscribe("insn", self._insn, begin=begin, end=end))
        if "int" in self.kinds:
            subs.append(bus.subscribe("exception", self._exception))
        if "mmu" in self.kinds:
            subs.append(bus.subscribe("cp15", self._cp15, sites=cp15_write_sites(image)))
            if python_mmu:
                subs.append(bus.subscribe("tlb_fill", self._tlb_fill))
            else:
                subs.append(bus.subscribe("memory", self._memory))
        if "mmio" in self.kinds:
            subs.append(bus.subscribe("mmio", self._mmio))
        if "hypercall" in self.kinds:
            subs.append(bus.subscribe("hypercall", self._gate))
        self._subs = subs

    # ------------------------------------------------------------------ helpers
    def where(self, address: int) -> str:
        name = self.symbols.describe(address)
        return f"0x{address:08x} <{name}>" if name else f"0x{address:08x}"

    def _wanted(self, pc: int) -> bool:
        return self.active and self.lo <= pc <= self.hi

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")

    def _thumb(self) -> bool:
        return bool(self.machine.uc.reg_read(UC_ARM_REG_CPSR) & (1 << 5))

    def _disassemble(self, address: int, size: int) -> list[str]:
        code = self.machine.read_virtual(address, size) or b""
        lines, thumb = [], self._thumb()
        done = address
        for insn in self._cs[thumb].disasm(code, address):
            lines.append(self._insn_line(insn.address, insn.bytes, insn.mnemonic, insn.op_str))
            done = insn.address + insn.size
        if done < address + size:
            for a in range(done, address + size, 4):
                word = code[a - address:a - address + 4]
                lines.append(f"0x{a:08x}:  {word[::-1].hex():>8}  (undecodable)")
        return lines

    def _insn_line(self, address: int, raw: bytes, mnemonic: str, op_str: str) -> str:
        word = int.from_bytes(raw, "little")
        name = self.symbols.describe(address)
        text = f"0x{address:08x}:  {word:0{2 * len(raw)}x}  {mnemonic:<8} {op_str}".rstrip()
        return f"{text:<56} <{name}>" if name else text

    # ------------------------------------------------------------------ events
    def _stage(self, name: str, address: int | None, _run: object) -> None:
        self.active = self.stages is None or name in self.stages
        if name == "done":
            self._write("stage: done (the Python kernel's mi_startup has returned)")
        elif address is not None:
            self._write(f"stage: {name} at {self.where(address)}")
        else:
            self._write(f"stage: {name} (Python kernel)")

    def _block(self, address: int, size: int) -> None:
        self.watch.begin_at(address)
        if not self.active:
            return
        if "mmu" in self.kinds and self.mmu_on:
            self._first_translation(address, "fetch")
        if "in_asm" in self.kinds and (address, size) not in self._seen_blocks:
            self._seen_blocks.add((address, size))
            self._write("----------------")
            self._write(f"IN: {self.symbols.describe(address) or ''}")
            for line in self._disassemble(address, size):
                self._write(line)
            self._write("")
        if "exec" in self.kinds:
            self._write(f"Trace: {self.where(address)} [{size >> 2} insns]")
        if "cpu" in self.kinds:
            self._registers()

    def _registers(self) -> None:
        uc = self.machine.uc
        regs = [uc.reg_read(UC_ARM_REG_R0 + i) for i in range(13)]
        regs += [uc.reg_read(UC_ARM_REG_SP), uc.reg_read(UC_ARM_REG_LR), uc.reg_read(UC_ARM_REG_PC)]
        for row in range(4):
            self._write(" ".join(f"R{4 * row + c:02d}={regs[4 * row + c]:08x}" for c in range(4)))
        cpsr = uc.reg_read(UC_ARM_REG_CPSR)
        flags = "".join(f if cpsr & (1 << b) else "-" for f, b in (("N", 31), ("Z", 30), ("C", 29), ("V", 28)))
        self._write(f"PSR={cpsr:08x} {flags} {'T' if cpsr & 0x20 else 'A'} {MODE_NAMES.get(cpsr & 0x1F, '???')}32")

    def _insn(self, address: int, size: int) -> None:
        if not self.active:
            return
        code = self.machine.read_virtual(address, size) or b""
        key = (address, int.from_bytes(code, "little"))
        text = self._insn_text.get(key)
        if text is None:
            found = next(self._cs[size == 2].disasm(code, address), None)
            text = (self._insn_line(address, code, found.mnemonic, found.op_str) if found
                    else f"0x{address:08x}:  {code[::-1].hex()}  (undecodable)")
            self._insn_text[key] = text
        self._write(text)

    def _exception(self, event) -> None:
        if not self._wanted(event.pc):
            return
        mode = MODE_NAMES.get(event.mode, f"0x{event.mode:x}")
        what = event.vector
        if event.fsr is not None:
            from kernel_sim.vm.mmu import decode_fsr

            status = "DFSR" if event.vector == "data abort" else "IFSR"
            far = "DFAR" if event.vector == "data abort" else "IFAR"
            access = "write" if event.fsr & (1 << 11) else "read" if event.vector == "data abort" else "fetch"
            what += (f" at {self.where(event.pc)}: {status} 0x{event.fsr:03x} {decode_fsr(event.fsr)} ({access}), "
                     f"{far} 0x{(event.far or 0):08x}")
        else:
            what += f" at {self.where(event.pc)}"
        self._write(f"int: {what}; vector {self.where(event.new_pc)}, mode {mode}")

    def _cp15(self, write) -> None:
        if not self._wanted(write.pc):
            self._track(write)
            return
        name = write.name
        line = f"mmu: {self.where(write.pc)}: "
        if name in TLB_OPERATIONS:
            line += f"{name} (TLB invalidate{' all' if name.startswith('TLBIALL') else ''})"
        elif name == "SCTLR":
            old = self.machine.cp15.sctlr
            change = (" (MMU on)" if write.value & 1 and not old & 1 else
                      " (MMU off)" if old & 1 and not write.value & 1 else "")
            line += f"SCTLR = 0x{write.value:08x}{change}: {_bits(write.value)}"
        else:
            line += f"{name} = 0x{write.value:08x}"
        self._write(line)
        self._track(write)

    def _track(self, write) -> None:
        """A new translation regime: pages are translated (and shown) again."""
        if write.name == "SCTLR":
            self.mmu_on = bool(write.value & 1)
        if write.name in TLB_OPERATIONS or write.name in ("SCTLR", "TTBR0", "TTBR1", "TTBCR", "DACR"):
            self._pages.clear()

    def _memory(self, write: bool, address: int, size: int, value: int) -> None:
        if not self.mmu_on or not self.active:
            return
        key = ("data", address >> 12)
        if key in self._pages:
            return
        self._pages.add(key)
        pc = self.machine.pc
        if not self.lo <= pc <= self.hi:
            return
        from board.faultaddr import data_address

        va, _ = data_address(self.machine.uc, self.machine.read_virtual(pc, 4) or b"", pc)
        if va is None:
            self._write(f"mmu: {'write' if write else 'read'} of physical 0x{address:08x} at {self.where(pc)}")
            return
        self._first_translation((va & ~0xFFF) | (address & 0xFFF), "write" if write else "read", pa=address, pc=pc,
                                key=False)

    def _first_translation(self, va: int, access: str, *, pa: int | None = None, pc: int | None = None,
                           key: bool = True) -> None:
        if key:
            k = ("fetch", va >> 12)
            if k in self._pages:
                return
            self._pages.add(k)
        from kernel_sim.vm.cpu_mmu import mmu_for
        from kernel_sim.vm.mmu import MMUFault

        at = f" at {self.where(pc)}" if pc is not None else ""
        try:
            t = mmu_for(self.machine).translate(va, access)
        except MMUFault as fault:
            self._write(f"mmu: {access} 0x{va:08x}{at}: {fault}")
            return
        rights = (f"{'r' if t.priv_read else '-'}{'w' if t.priv_write else '-'}{'x' if t.priv_exec else '-'}/"
                  f"{'r' if t.user_read else '-'}{'w' if t.user_write else '-'}{'x' if t.user_exec else '-'}")
        line = (f"mmu: {access} 0x{va:08x}{at} -> 0x{t.pa:08x}: {t.kind} 0x{t.base_va:08x}->0x{t.base_pa:08x} "
                f"({t.page_size >> 10} KiB), {rights}, domain {t.domain}")
        if pa is not None and pa != t.pa:
            line += f"; the CPU's MMU went to 0x{pa:08x}: the two MMUs disagree"
        self._write(line)

    def _tlb_fill(self, fill) -> None:
        if not self.active:
            return
        if isinstance(fill.answer, tuple):
            pa, perms = fill.answer
            rights = "".join(c if perms & b else "-" for c, b in (("r", 1), ("w", 2), ("x", 4)))
            self._write(f"mmu: TLB fill {fill.access} 0x{fill.va:08x} -> 0x{pa:08x} {rights}")
        else:
            from kernel_sim.vm.mmu import decode_fsr

            self._write(f"mmu: TLB fill {fill.access} 0x{fill.va:08x} refused: FSR 0x{fill.answer:03x} "
                        f"{decode_fsr(fill.answer)}")

    def _mmio(self, access) -> None:
        if not self.active:
            return
        pc = self.machine.pc if access.source == "cpu" else None
        if pc is not None and not self.lo <= pc <= self.hi:
            return
        reg = PL011_NAMES.get(access.offset) if access.device.startswith("uart") else None
        reg = f" {reg}" if reg else ""
        char = ""
        if access.write and reg == " UARTDR" and 32 <= (access.value & 0xFF) < 127:
            char = f" '{chr(access.value & 0xFF)}'"
        by = f" at {self.where(pc)}" if pc is not None else " by the Python kernel"
        self._write(f"mmio: {access.device} {'write' if access.write else 'read '} 0x{access.address:08x} "
                    f"(+0x{access.offset:03x}{reg}) {access.size} bytes 0x{access.value:0{2 * access.size}x}"
                    f"{char}{by}")

    def _gate(self, call) -> None:
        if not self._wanted(call.pc):
            return
        if call.imm == HYPERCALL_IMM:
            name = HYPERCALL_NAMES.get(call.number, "unknown")
            self._write(f"hypercall: {self.where(call.pc)}: {name} ({call.number}), r0 0x{call.argument:08x}")
        elif call.imm == SEMIHOSTING_IMM:
            name = SEMIHOSTING_NAMES.get(call.number, "unsupported")
            self._write(f"semihosting: {self.where(call.pc)}: {name} (0x{call.number:x}), r1 0x{call.argument:x}")

    def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []
        self.watch.close()
        self.out.flush()
