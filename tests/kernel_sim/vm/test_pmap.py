"""The kernel pmap on a really booted machine: three views of every mapping must agree.

kextract reads the tables the pmap-v6 way (through PT2TAB), kernel_sim/vm/mmu.py walks them from
TTBR0 as the hardware does, and Unicorn's own MMU (QEMU's walker, board.uc_vmem) is what the CPU
uses; guest code run after a kenter/kremove shows the CPU itself sees the change.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board.machine import Machine
from board.uc_vmem import vmem_read, vmem_translate
from board.ucapi import UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE
from kernel_sim.boot import BootRequest, prepare, run
from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE, PT2MAP, Handoff
from kernel_sim.kern.panic import KernelPanic
from kernel_sim.vm.cpu_mmu import mmu_for
from kernel_sim.vm.mmu import FS_PERMISSION_PAGE, FS_TRANSLATION_PAGE, MMUFault
from kernel_sim.vm.phys import PhysAllocator
from kernel_sim.vm.pmap import PTE2_NM, PTE2_NX, PTE2_RO, KernelPmap, pte2_bits

MIB = 1 << 20
ACCESSES = (("read", UC_PROT_READ), ("write", UC_PROT_WRITE), ("fetch", UC_PROT_EXEC))


@dataclass
class Booted:
    machine: Machine
    handoff: Handoff
    pages: PhysAllocator
    pmap: KernelPmap


def boot(physmem: str = "64M") -> Booted:
    result = run(prepare(BootRequest(stop_at="handover", console=None, physmem=physmem)))
    assert result.status == "stopped" and result.handoff is not None, result.message
    pages = PhysAllocator.for_machine(result.machine, result.handoff)
    return Booted(result.machine, result.handoff, pages, KernelPmap.for_machine(result.machine, result.handoff, pages))


def views(b: Booted, va: int) -> tuple[int | None, dict[str, int | None], dict[str, int | None]]:
    """kextract, the Python MMU and Unicorn's MMU for one VA (privileged, the CPU is in SVC mode)."""
    mmu = mmu_for(b.machine)
    python: dict[str, int | None] = {}
    for access, _ in ACCESSES:
        try:
            python[access] = mmu.translate(va, access).pa
        except MMUFault:
            python[access] = None
    unicorn = {access: vmem_translate(b.machine.uc, va, prot) for access, prot in ACCESSES}
    return b.pmap.kextract(va), python, unicorn


def assert_mapped(b: Booted, va: int, pa: int | None, *, writable: bool = True, executable: bool = False) -> None:
    """All three views say va -> pa with these permissions (pa None: all say unmapped)."""
    kx, python, unicorn = views(b, va)
    expect = {"read": pa, "write": pa if writable else None, "fetch": pa if executable else None}
    if pa is None:
        expect = dict.fromkeys(expect)
    assert kx == pa, f"kextract(0x{va:08x})"
    assert python == expect, f"Python MMU at 0x{va:08x}"
    assert unicorn == expect, f"Unicorn MMU at 0x{va:08x}"


def words(*insns: int) -> bytes:
    return b"".join(struct.pack("<I", i) for i in insns)


# ldr r2, [r1] ; str r2, [r3] ; mov r0, #0x18 ; movw r1, #0x26 ; movt r1, #2 ; svc 0x123456 (SYS_EXIT)
COPY_AND_EXIT = words(0xE5912000, 0xE5832000, 0xE3A00018, 0xE3001026, 0xE3401002, 0xEF123456)


@pytest.fixture
def booted() -> Booted:
    return boot()


# ---------------------------------------------------------------------------------------------


def test_the_boot_tables_as_handed_over(booted):
    b, h = booted, booted.handoff
    s = b.pmap.stats()
    assert s.kernel_vm_end == h.kernel_vm_end == KERNBASE + h.nkpt2pg * 4 * MIB
    assert s.vm_max_kernel_address == h.devmap_va
    assert s.pt2pg_in_use == s.pt2pg_boot == h.nkpt2pg + h.extra_pt2pg
    assert s.pt2pg_grown == 0
    assert b.pmap.check() == []
    # The kernel's own pages, as pmap_bootstrap entered them (PTE2_KERN: V | A, executable, RW).
    assert_mapped(b, KERNBASE, h.physaddr, executable=True)
    assert b.pmap.pte2(KERNBASE) == h.physaddr | 0x12
    assert b.pmap.kextract(h.mapped_end) is None
    assert b.pmap.kextract(h.uart_va) == b.machine.profile.console.base     # the devmap section


def test_kenter_inside_and_beyond_kernel_vm_end(booted):
    b = booted
    end0 = b.pmap.kernel_vm_end
    free0 = b.pages.free_count
    pa_in, pa_out = b.pages.alloc(2)
    inside, beyond = end0 - 3 * PAGE_SIZE, end0 + 9 * MIB + 5 * PAGE_SIZE
    for va in (inside, beyond):
        assert_mapped(b, va, None)
    b.pmap.kenter(inside, pa_in)
    assert b.pmap.kernel_vm_end == end0
    b.pmap.kenter(beyond, pa_out, executable=True)
    # growkernel ran first: L2 tables linked up to the next MiB, one PT2 page per 4 MiB.
    assert b.pmap.kernel_vm_end == end0 + 10 * MIB
    assert b.pmap.stats().pt2pg_grown == 3
    assert b.pages.free_count == free0 - 2 - 3
    assert_mapped(b, inside, pa_in)
    assert_mapped(b, beyond, pa_out, executable=True)
    assert_mapped(b, beyond + 0x123, pa_out + 0x123, executable=True)
    assert_mapped(b, beyond + PAGE_SIZE, None)      # the grown tables start empty
    assert b.pmap.check() == []
    # Data written through one view is read through the others.
    b.machine.phys.write(pa_out, b"through the new mapping")
    assert vmem_read(b.machine.uc, beyond, 23) == b"through the new mapping"
    assert mmu_for(b.machine).read_virtual(beyond, 23, b.machine.phys.read) == b"through the new mapping"


def test_new_pt2_pages_appear_in_pt2map(booted):
    """Writing the PT2TAB entry maps the new PT2 page at PT2MAP for both MMUs (pmap_kenter_pt2tab)."""
    b = booted
    va = b.pmap.kernel_vm_end + 6 * MIB
    pa = b.pages.alloc_page()
    b.pmap.kenter(va, pa)
    pte2_va = KernelPmap.pt2map_va(va)
    assert PT2MAP <= pte2_va < KERNBASE
    expected = struct.pack("<I", pa | pte2_bits())
    assert vmem_read(b.machine.uc, pte2_va, 4) == expected
    assert mmu_for(b.machine).read_virtual(pte2_va, 4, b.machine.phys.read) == expected
    assert b.pmap.pte2(va) == pa | pte2_bits()
    # The PT2 page itself is mapped non-executable, read-write (PTE2_KERN | PTE2_NX, as the guest does).
    page_va = pte2_va & ~(PAGE_SIZE - 1)
    assert_mapped(b, page_va, b.pmap.pt2tab_entry(va) & ~0xFFF)


def test_read_only_and_execute_permissions(booted):
    b = booted
    pa = b.pages.alloc_page()
    va = b.pmap.kernel_vm_end - PAGE_SIZE
    b.pmap.kenter(va, pa, writable=False, executable=True)
    assert b.pmap.pte2(va) & (PTE2_RO | PTE2_NM | PTE2_NX) == PTE2_RO | PTE2_NM   # PTE2_AP_KR, executable
    assert_mapped(b, va, pa, writable=False, executable=True)
    with pytest.raises(MMUFault) as fault:
        mmu_for(b.machine).translate(va, "write")
    assert fault.value.fs == FS_PERMISSION_PAGE
    b.pmap.kenter(va, pa)                                # remapped RW, not executable
    assert_mapped(b, va, pa)
    with pytest.raises(MMUFault) as fault:
        mmu_for(b.machine).translate(va, "fetch")
    assert fault.value.fs == FS_PERMISSION_PAGE


def test_guest_code_runs_through_a_new_mapping_and_faults_after_kremove(booted):
    b, m = booted, booted.machine
    code_pa, data_pa = b.pages.alloc(2)
    m.phys.write(code_pa, COPY_AND_EXIT)
    m.phys.write_u32(data_pa, 0xCAFEF00D)
    code_va = b.pmap.kernel_vm_end + 16 * MIB            # beyond kernel_vm_end: grows first
    data_va = code_va + PAGE_SIZE
    b.pmap.kenter(code_va, code_pa, executable=True)
    b.pmap.kenter(data_va, data_pa)

    def go():
        m.uc.reg_write(UC_ARM_REG_R1, data_va)
        m.uc.reg_write(UC_ARM_REG_R3, data_va + 4)
        return m.run(code_va, timeout=5)

    stop = go()
    assert stop.kind == "exit" and stop.code == 0
    assert m.uc.reg_read(UC_ARM_REG_R2) == 0xCAFEF00D
    assert m.phys.read_u32(data_pa + 4) == 0xCAFEF00D   # the store went through the mapping

    # The CPU's TLB now holds data_va: kremove must flush it, or the load would still work.
    b.pmap.kremove(data_va)
    assert_mapped(b, data_va, None)
    with pytest.raises(MMUFault) as fault:
        mmu_for(m).translate(data_va)
    assert fault.value.fs == FS_TRANSLATION_PAGE
    faults_before = len(m.faults)
    stop = go()
    assert stop.kind == "hypercall"                      # the guest's trap handler reported it (HC_FATAL)
    assert stop.value.kind == "fatal" and stop.value.fatal.kind == "data abort"
    fault = m.faults[faults_before]
    assert (fault.vector, fault.pc, fault.address, fault.fsr) == ("data abort", code_va, data_va, 0x007)
    assert "Translation Fault (L2)" in bytes(m.console.data).decode()


def test_kenter_range_and_kremove_range_flush_once(booted):
    b = booted
    calls = []
    b.pmap.flush_tlb = lambda: (calls.append(1), b.machine.flush_tlb())
    start = b.pmap.kernel_vm_end - 5 * MIB + 7 * PAGE_SIZE   # spans boot tables, grown ones, 2+ PT2 pages
    npages = 3000
    base_pa = b.pages.alloc(npages, contiguous=True, zero=False)[0]
    b.pmap.kenter_range(start, range(base_pa, base_pa + npages * PAGE_SIZE, PAGE_SIZE))
    assert len(calls) == 1
    for i in (0, 1, 1000, 1017, 2047, 2048, 2999):
        assert_mapped(b, start + i * PAGE_SIZE, base_pa + i * PAGE_SIZE)
    assert_mapped(b, start + npages * PAGE_SIZE, None)
    # Scattered pages (pmap_qenter's shape).
    scattered = b.pages.alloc(3, zero=False)[::-1]
    b.pmap.kenter_range(start, scattered)
    assert [b.pmap.kextract(start + i * PAGE_SIZE) for i in range(3)] == scattered
    assert len(calls) == 2
    b.pmap.kremove_range(start + PAGE_SIZE, (npages - 2) * PAGE_SIZE)
    assert len(calls) == 3
    assert_mapped(b, start, scattered[0])
    for i in (1, 1017, 2998):
        assert_mapped(b, start + i * PAGE_SIZE, None)
    assert_mapped(b, start + 2999 * PAGE_SIZE, base_pa + 2999 * PAGE_SIZE)


def test_kenter_refuses_what_is_not_kernel_map_kva(booted):
    b = booted
    before = b.pmap.kernel_vm_end, b.pages.free_count, b.pmap.flushes
    for va, pa in ((KERNBASE - PAGE_SIZE, 0x4100_0000), (b.handoff.devmap_va, 0x4100_0000),
                   (KERNBASE + 0x10, 0x4100_0000), (b.pmap.kernel_vm_end, 0x4100_0008)):
        with pytest.raises(ValueError):
            b.pmap.kenter(va, pa)
    with pytest.raises(ValueError, match="outside the kernel map"):
        b.pmap.kenter_range(b.handoff.devmap_va - PAGE_SIZE, [0x4100_0000, 0x4100_1000])
    assert (b.pmap.kernel_vm_end, b.pages.free_count, b.pmap.flushes) == before


def test_growkernel_stops_below_the_devmap():
    b = boot("16M")
    uart_pa = b.machine.profile.console.base
    b.pmap.growkernel(0xFFFF_FFFF)
    s = b.pmap.stats()
    assert s.kernel_vm_end == b.handoff.devmap_va == 0xFFE0_0000
    assert s.pt2pg_in_use == 256 and s.pt2pg_grown == 256 - b.handoff.nkpt2pg
    assert b.pmap.check() == []
    # The console's section at 0xFFE00000 shares the last PT2 page's 4 MiB and survived.
    assert b.pmap.kextract(b.handoff.uart_va) == uart_pa
    assert vmem_translate(b.machine.uc, b.handoff.uart_va, UC_PROT_WRITE) == uart_pa
    last = b.handoff.devmap_va - PAGE_SIZE
    b.pmap.kenter(last, b.pages.alloc_page())
    assert b.pmap.kextract(last) == vmem_translate(b.machine.uc, last, UC_PROT_READ) is not None
    b.pmap.growkernel(0xFFFF_FFFF)                       # nothing left to grow: no page taken
    assert b.pmap.stats().pt2pg_grown == s.pt2pg_grown


def test_growkernel_panics_when_memory_runs_out():
    b = boot("16M")
    end0 = b.pmap.kernel_vm_end
    b.pages.alloc(b.pages.free_count - 3, zero=False)    # what kmem and friends would have taken
    with pytest.raises(KernelPanic) as panic:
        b.pmap.growkernel(b.handoff.devmap_va)
    assert panic.value.message == "pmap_growkernel: no memory to grow kernel"
    assert panic.value.console_line == "panic: pmap_growkernel: no memory to grow kernel\n"
    # The three pages it got are linked (12 MiB more KVA) and the tables are consistent.
    assert b.pages.free_count == 0
    assert b.pmap.kernel_vm_end == end0 + 12 * MIB
    assert b.pmap.stats().pt2pg_grown == 3
    assert b.pmap.check() == []
    with pytest.raises(KernelPanic, match="no memory to grow kernel"):
        b.pmap.kenter(end0 + 12 * MIB, 0x4000_0000)
    assert_mapped(b, end0 + 12 * MIB, None)


# ---------------------------------------------------------------------------------------------
# property: any sequence of kenter/kremove keeps kextract, mmu.py and Unicorn in agreement

SPECIAL = [-257, -256, -255, -1, 0, 1, 255, 256, 1023, 1024, 1025, 1279]   # pages around kernel_vm_end
page_off = st.one_of(st.sampled_from(SPECIAL), st.integers(-512, 1535))
op = st.one_of(
    st.tuples(st.just("kenter"), page_off, st.integers(0, 7), st.booleans(), st.booleans()),
    st.tuples(st.just("kremove"), page_off),
    st.tuples(st.just("kenter_range"), page_off, st.integers(1, 40), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("kremove_range"), page_off, st.integers(1, 300)),
)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=12))
def test_random_kenter_kremove_keep_the_three_views_in_agreement(ops):
    b = boot("32M")
    end0 = b.pmap.kernel_vm_end
    pool = b.pages.alloc(8)
    model: dict[int, tuple[int, bool, bool]] = {}
    touched: set[int] = set()
    for o in ops:
        va = end0 + o[1] * PAGE_SIZE
        if o[0] == "kenter":
            _, _, i, writable, executable = o
            b.pmap.kenter(va, pool[i], writable=writable, executable=executable)
            model[va] = (pool[i], writable, executable)
            touched.add(va)
        elif o[0] == "kremove":
            b.pmap.kremove(va)
            model.pop(va, None)
            touched.add(va)
        elif o[0] == "kenter_range":
            _, _, n, i, writable = o
            pas = range(pool[i], pool[i] + n * PAGE_SIZE, PAGE_SIZE)
            b.pmap.kenter_range(va, pas, writable=writable)
            for k, pa in enumerate(pas):
                model[va + k * PAGE_SIZE] = (pa, writable, False)
            touched.update((va, va + (n - 1) * PAGE_SIZE))
        else:
            _, _, n = o
            b.pmap.kremove_range(va, n * PAGE_SIZE)
            for k in range(n):
                model.pop(va + k * PAGE_SIZE, None)
            touched.update((va, va + (n - 1) * PAGE_SIZE, va + n * PAGE_SIZE))
        for t in sorted(touched | set(model)):
            pa, writable, executable = model.get(t, (None, True, False))
            assert_mapped(b, t, pa, writable=writable, executable=executable)
    assert b.pmap.check() == []
    assert b.pmap.flushes == len(ops)
