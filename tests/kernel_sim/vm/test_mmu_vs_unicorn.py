"""The Python MMU must agree with Unicorn's (QEMU's) own table walk on a Cortex-A15.

Random short-descriptor tables are written into a Unicorn machine's RAM, the CP15 registers are
set in the Secure bank (the CPU runs Secure SVC after reset, see shared/reference/unicorn.md), and
for many virtual addresses every access kind (read/write/fetch) is compared in SVC and USR mode
through ``uc_vmem_translate`` (board.uc_vmem): both fault, or both give the same physical address.

Findings pinned by the deterministic tests at the end (all match QEMU):
* L1 type 0b11 is a section with PXN = 1 on Cortex-A15 (LPAE implies PXN), not a translation fault.
* A Manager domain ignores AP, XN and the access flag.
* Supersection extended base address bits do not reach the physical address Unicorn reports.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import (
    UC_ARCH_ARM,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_MODE_ARM,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn.arm_const import UC_ARM_REG_CPSR, UC_CPU_ARM_CORTEX_A15

from board.uc_vmem import vmem_read, vmem_translate, vmem_write
from kernel_sim.vm.mmu import MMU, MMUFault, PhysicalAbort

RAM = 0x4000_0000
RAM_SIZE = 0x10_0000
L1_0 = RAM  # TTBR0 table (16 KiB aligned)
L1_1 = RAM + 0x4000  # TTBR1 table
L2_BASE = RAM + 0x8000  # 1 KiB L2 tables from here
N_L2 = 16
UNMAPPED_TABLE = 0x2000_0000  # page-table pointer with no RAM behind it -> external abort on walk

MODE_USR = 0x10
MODE_SVC = 0x13
SCTLR_M = 1 << 0
SCTLR_TRE = 1 << 28
SCTLR_AFE = 1 << 29
KINDS = (("read", UC_PROT_READ), ("write", UC_PROT_WRITE), ("fetch", UC_PROT_EXEC))


class Machine:
    """A Cortex-A15 Unicorn with RAM for the tables and helpers for the Secure CP15 bank."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_ARM)
        self.uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_A15)
        self.uc.mem_map(RAM, RAM_SIZE)
        self.sctlr_reset = self.cp15_read(1, 0, 0, 0)

    # cpr_write(coproc, opc1, crn, crm, opc2, el, is_64, value): unicorn 2.1 passes ``el`` as
    # QEMU's non-secure flag, so 0 selects the Secure bank the guest runs in.
    def cp15_write(self, crn: int, crm: int, opc1: int, opc2: int, value: int) -> None:
        self.uc.cpr_write(15, opc1, crn, crm, opc2, 0, False, value)

    def cp15_read(self, crn: int, crm: int, opc1: int, opc2: int) -> int:
        return self.uc.cpr_read(15, opc1, crn, crm, opc2, 0, False)

    def set_regs(self, *, ttbr0: int, ttbr1: int, ttbcr: int, dacr: int, afe: bool, tre: bool) -> None:
        self.cp15_write(2, 0, 0, 0, ttbr0)
        self.cp15_write(2, 0, 0, 1, ttbr1)
        self.cp15_write(2, 0, 0, 2, ttbcr)
        self.cp15_write(3, 0, 0, 0, dacr)
        sctlr = (self.sctlr_reset & ~(SCTLR_AFE | SCTLR_TRE)) | SCTLR_M
        sctlr |= (SCTLR_AFE if afe else 0) | (SCTLR_TRE if tre else 0)
        self.cp15_write(1, 0, 0, 0, sctlr)
        self.flush_tlb()

    def flush_tlb(self) -> None:
        # Required after the host edits tables (unicorn.md): stale translations otherwise stay.
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def set_mode(self, mode: int) -> None:
        cpsr = self.uc.reg_read(UC_ARM_REG_CPSR)
        self.uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | mode)

    def read_u32(self, pa: int) -> int:
        try:
            return struct.unpack("<I", self.uc.mem_read(pa, 4))[0]
        except UcError as exc:
            raise PhysicalAbort(pa) from exc

    def read_phys(self, pa: int, n: int) -> bytes:
        try:
            return bytes(self.uc.mem_read(pa, n))
        except UcError as exc:
            raise PhysicalAbort(pa) from exc

    def clear_tables(self) -> None:
        self.uc.mem_write(RAM, bytes(L2_BASE + N_L2 * 0x400 - RAM))


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    yield Machine()


# ---------------------------------------------------------------------------------------------
# random tables


@dataclass
class Tables:
    """One drawn configuration: registers, L1 entries by slot, L2 entries per table."""

    ttbcr_n: int
    pd: int  # TTBCR.PD1:PD0 bits (5:4)
    dacr: int
    afe: bool
    tre: bool
    l1: dict[int, int]
    l2: dict[int, dict[int, int]]  # table number -> {index: desc}
    vas: list[int]
    ttbr_low: int = 0  # TTBRx bits 6:0 (walk attributes): must not change the table address
    bad_ttbr1: bool = False  # TTBR1 points where no RAM is: external abort on the L1 walk

    @property
    def ttbr0(self) -> int:
        return L1_0 | self.ttbr_low

    @property
    def ttbr1(self) -> int:
        return (UNMAPPED_TABLE if self.bad_ttbr1 else L1_1) | self.ttbr_low

    @property
    def ttbcr(self) -> int:
        return self.ttbcr_n | (self.pd << 4)


u32 = st.integers(0, 0xFFFF_FFFF)
# Hypothesis favours the first alternatives: keep the interesting ones first, faults last.
L1_KINDS = ["section", "table", "super", "table", "section", "pxn", "table", "badtable", "fault"]


@st.composite
def l1_desc(draw: st.DrawFn, table_no: int) -> int:
    kind = draw(st.sampled_from(L1_KINDS))
    raw = draw(u32)
    if kind == "fault":
        return raw & ~3
    if kind == "section":
        return (raw & ~((1 << 18) | 3)) | 0b10
    if kind == "super":
        return (raw | (1 << 18) | 0b10) & ~1
    if kind == "pxn":  # 0b11: section/supersection with PXN on Cortex-A15
        return raw | 0b11
    base = UNMAPPED_TABLE if kind == "badtable" else L2_BASE + 0x400 * table_no
    return base | (raw & 0x3FC) | 0b01


@st.composite
def l2_desc(draw: st.DrawFn) -> int:
    kind = draw(st.sampled_from(["small", "large", "small3", "large", "small", "fault"]))
    raw = draw(u32)
    if kind == "fault":
        return raw & ~3
    if kind == "small":
        return (raw & ~3) | 0b10 | (raw & 1)
    if kind == "small3":
        return raw | 0b11
    return (raw & ~3) | 0b01


# DACR fields weighted towards Client so permission checks are exercised most.
domain_field = st.sampled_from([0b01, 0b01, 0b01, 0b01, 0b11, 0b00, 0b10])


@st.composite
def tables(draw: st.DrawFn) -> Tables:
    n = draw(st.sampled_from([0, 0, 0, 1, 2, 3, 7]))
    pd = draw(st.sampled_from([0] * 8 + [1, 2]))
    dacr = sum(f << (2 * i) for i, f in enumerate(draw(st.lists(domain_field, min_size=16, max_size=16))))
    slots = draw(st.lists(st.integers(0, 4095), min_size=1, max_size=10, unique=True))
    l1: dict[int, int] = {}
    l2: dict[int, dict[int, int]] = {}
    for i, slot in enumerate(slots):
        desc = draw(l1_desc(table_no=i % N_L2))
        if (desc & 3) in (2, 3) and desc & (1 << 18) and draw(st.booleans()):
            for k in range(16):  # properly replicated supersection
                l1[(slot & ~15) | k] = desc
        else:
            l1[slot] = desc
        if desc & 3 == 1 and (desc & 0xFFFFFC00) != UNMAPPED_TABLE:
            table_no = ((desc & 0xFFFFFC00) - L2_BASE) // 0x400
            entries = l2.setdefault(table_no, {})
            for idx in draw(st.lists(st.integers(0, 255), min_size=1, max_size=8, unique=True)):
                d = draw(l2_desc())
                if d & 3 == 1 and draw(st.booleans()):
                    for k in range(16):  # properly replicated large page
                        entries[(idx & ~15) | k] = d
                else:
                    entries[idx] = d
    # Virtual addresses: mostly inside written L1 slots (and written L2 entries), some anywhere.
    l2_idx = {t: sorted(e) for t, e in l2.items()}
    vas: list[int] = []
    for _ in range(draw(st.integers(4, 16))):
        how = draw(st.sampled_from(["slot", "slot", "page", "page", "page", "any"]))
        if how == "any":
            vas.append(draw(u32))
            continue
        slot = draw(st.sampled_from(sorted(l1)))
        desc = l1[slot]
        low = draw(st.integers(0, (1 << 20) - 1))
        if how == "page" and desc & 3 == 1 and (desc & 0xFFFFFC00) != UNMAPPED_TABLE:
            table_no = ((desc & 0xFFFFFC00) - L2_BASE) // 0x400
            if l2_idx.get(table_no):
                idx = draw(st.sampled_from(l2_idx[table_no]))
                low = (idx << 12) | (low & 0xFFF)
        vas.append((slot << 20) | low)
    afe, tre = draw(st.booleans()), draw(st.booleans())
    ttbr_low = draw(st.integers(0, 0x7F))
    bad_ttbr1 = n > 0 and draw(st.sampled_from([False] * 5 + [True]))
    return Tables(n, pd, dacr, afe, tre, l1, l2, vas, ttbr_low, bad_ttbr1)


def install(machine: Machine, t: Tables) -> MMU:
    """Write ``t`` into guest RAM and both register files; return the matching Python MMU."""
    machine.clear_tables()
    split_slot = (1 << (12 - t.ttbcr_n)) if t.ttbcr_n else 4096
    for slot, desc in t.l1.items():
        base = L1_1 if slot >= split_slot else L1_0
        machine.uc.mem_write(base + 4 * slot, struct.pack("<I", desc))
    for table_no, entries in t.l2.items():
        for idx, desc in entries.items():
            machine.uc.mem_write(L2_BASE + 0x400 * table_no + 4 * idx, struct.pack("<I", desc))
    machine.set_regs(ttbr0=t.ttbr0, ttbr1=t.ttbr1, ttbcr=t.ttbcr, dacr=t.dacr, afe=t.afe, tre=t.tre)
    return MMU(
        machine.read_u32, ttbr0=t.ttbr0, ttbr1=t.ttbr1, ttbcr=t.ttbcr, dacr=t.dacr, afe=t.afe, tre=t.tre,
        read_phys=machine.read_phys,
    )  # fmt: skip


def python_pa(mmu: MMU, va: int, access: str, privileged: bool) -> int | None:
    try:
        return mmu.translate(va, access, privileged).pa  # type: ignore[arg-type]
    except MMUFault:
        return None


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(t=tables())
def test_python_mmu_agrees_with_unicorn(machine: Machine, t: Tables) -> None:
    mmu = install(machine, t)
    try:
        for mode, privileged in ((MODE_SVC, True), (MODE_USR, False)):
            machine.set_mode(mode)
            for va in t.vas:
                for access, prot in KINDS:
                    expected = vmem_translate(machine.uc, va, prot)
                    got = python_pa(mmu, va, access, privileged)
                    assert got == expected, (
                        f"va={va:#010x} {access} {'svc' if privileged else 'usr'}: "
                        f"python={got if got is None else hex(got)} "
                        f"unicorn={expected if expected is None else hex(expected)}"
                    )
        # mappings() must agree with the walk for every run it reports (privileged read view).
        machine.set_mode(MODE_SVC)
        for run in mmu.mappings():
            for va in {run.va_start, run.va_end - 1}:
                expected = vmem_translate(machine.uc, va, UC_PROT_READ)
                if run.attrs.priv[0] == "r":
                    assert expected == run.pa_start + (va - run.va_start)
                else:
                    assert expected is None
    finally:
        machine.set_mode(MODE_SVC)


# ---------------------------------------------------------------------------------------------
# deterministic checks of the set-up and of Unicorn's behaviour


def _section(pa: int, *, ap: int = 0b011, domain: int = 0, xn: bool = False, typ: int = 0b10) -> int:
    return (pa & 0xFFF00000) | ((ap >> 2) << 15) | ((ap & 3) << 10) | (domain << 5) | (xn << 4) | typ


def _single(machine: Machine, entries: dict[int, int], dacr: int = 0x5555_5555, afe: bool = False) -> MMU:
    return install(machine, Tables(0, 0, dacr, afe, False, entries, {}, []))


def test_cp15_writes_reach_the_secure_bank(machine: Machine) -> None:
    mmu = _single(machine, {0xC00: _section(0x4000_0000)})
    assert machine.cp15_read(2, 0, 0, 0) == L1_0
    assert machine.cp15_read(3, 0, 0, 0) == 0x5555_5555
    assert machine.cp15_read(1, 0, 0, 0) & SCTLR_M
    assert vmem_translate(machine.uc, 0xC001_2345, UC_PROT_READ) == 0x4001_2345
    assert mmu.translate(0xC001_2345).pa == 0x4001_2345
    # A DACR change takes effect (after the TLB flush): domain 0 no access -> both fault.
    machine.cp15_write(3, 0, 0, 0, 0)
    machine.flush_tlb()
    assert vmem_translate(machine.uc, 0xC001_2345, UC_PROT_READ) is None
    # A table edit is seen only after the TLB flush.
    machine.cp15_write(3, 0, 0, 0, 0x5555_5555)
    machine.flush_tlb()
    assert vmem_translate(machine.uc, 0xC001_2345, UC_PROT_READ) == 0x4001_2345
    machine.uc.mem_write(L1_0 + 4 * 0xC00, struct.pack("<I", _section(0x5000_0000)))
    machine.flush_tlb()
    assert vmem_translate(machine.uc, 0xC001_2345, UC_PROT_READ) == 0x5001_2345


def test_unicorn_l1_type3_is_pxn_section(machine: Machine) -> None:
    mmu = _single(machine, {0x001: _section(0x4000_0000, typ=0b11)})
    assert vmem_translate(machine.uc, 0x0010_0000, UC_PROT_READ) == 0x4000_0000
    assert vmem_translate(machine.uc, 0x0010_0000, UC_PROT_EXEC) is None
    assert mmu.translate(0x0010_0000).pxn
    machine.set_mode(MODE_USR)
    try:
        assert vmem_translate(machine.uc, 0x0010_0000, UC_PROT_EXEC) == 0x4000_0000
    finally:
        machine.set_mode(MODE_SVC)


def test_unicorn_manager_domain_ignores_ap_xn_and_af(machine: Machine) -> None:
    # domain 1 = manager; AP = 000 (no access), XN = 1, AP[0] = 0 (AF clear under AFE).
    _single(machine, {0x002: _section(0x4000_0000, ap=0, domain=1, xn=True)}, dacr=0b11 << 2, afe=True)
    for _, prot in KINDS:
        assert vmem_translate(machine.uc, 0x0020_0000, prot) == 0x4000_0000


def test_unicorn_supersection_drops_extended_base(machine: Machine) -> None:
    desc = 0xAB00_0000 | (0xF << 20) | (0xF << 5) | (1 << 18) | (0b11 << 10) | 0b10
    mmu = _single(machine, {0x010: desc})
    assert vmem_translate(machine.uc, 0x0100_1234, UC_PROT_READ) == 0xAB00_1234
    assert mmu.translate(0x0100_1234).pa == 0xAB00_1234


def test_vmem_read_write_match_python(machine: Machine) -> None:
    mmu = _single(machine, {0x000: _section(RAM + 0x0000_0000)})
    payload = bytes(range(64))
    assert vmem_write(machine.uc, 0x000F_0000, payload)
    assert vmem_read(machine.uc, 0x000F_0000, 64) == payload
    assert mmu.read_virtual(0x000F_0000, 64, machine.read_phys) == payload
    assert vmem_read(machine.uc, 0x0100_0000, 4) is None  # unmapped VA
    assert vmem_read(machine.uc, 0, 0) == b""
    with pytest.raises(ValueError):
        vmem_translate(machine.uc, 0, UC_PROT_READ | UC_PROT_WRITE)
