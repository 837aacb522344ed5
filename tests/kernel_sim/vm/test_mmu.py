"""Unit tests for kernel_sim.vm.mmu: descriptor kinds, exact FSR values, AP/AFE/DACR, TTBCR split."""

from __future__ import annotations

import pytest

from kernel_sim.vm.mmu import (
    FS_EXT_ABORT,
    MMU,
    Mapping,
    MMUFault,
    PhysicalAbort,
    decode_fsr,
    fsr_fault_code,
    make_fsr,
)

L1 = 0x4000_0000  # TTBR0 table
L1B = 0x4000_4000  # TTBR1 table
L2A = 0x4000_8000
L2B = 0x4000_8400
DACR_ALL_CLIENT = 0x5555_5555


class Phys:
    """Sparse little-endian physical memory; unbacked addresses raise PhysicalAbort."""

    def __init__(self, base: int = 0x4000_0000, size: int = 0x10_0000) -> None:
        self.base = base
        self.mem = bytearray(size)

    def _off(self, pa: int, n: int) -> int:
        off = pa - self.base
        if off < 0 or off + n > len(self.mem):
            raise PhysicalAbort(pa)
        return off

    def read_u32(self, pa: int) -> int:
        off = self._off(pa, 4)
        return int.from_bytes(self.mem[off : off + 4], "little")

    def write_u32(self, pa: int, value: int) -> None:
        off = self._off(pa, 4)
        self.mem[off : off + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")

    def read(self, pa: int, n: int) -> bytes:
        off = self._off(pa, n)
        return bytes(self.mem[off : off + n])

    def write(self, pa: int, data: bytes) -> None:
        off = self._off(pa, len(data))
        self.mem[off : off + len(data)] = data

    def l1(self, va: int, desc: int, table: int = L1) -> None:
        self.write_u32(table + 4 * (va >> 20), desc)

    def l2(self, table: int, va: int, desc: int) -> None:
        self.write_u32(table + 4 * ((va >> 12) & 0xFF), desc)


def section(
    pa: int,
    *,
    ap: int = 0b011,
    domain: int = 0,
    xn: bool = False,
    tex: int = 0,
    c: bool = False,
    b: bool = False,
    s: bool = False,
    ng: bool = False,
    pxn: bool = False,
) -> int:
    """Short-descriptor section entry (ARM ARM B3.5.1)."""
    return (
        (pa & 0xFFF00000) | (ng << 17) | (s << 16) | ((ap >> 2) << 15) | (tex << 12) | ((ap & 3) << 10)
        | (domain << 5) | (xn << 4) | (c << 3) | (b << 2) | (0b11 if pxn else 0b10)
    )  # fmt: skip


def supersection(pa: int, *, ap: int = 0b011, xn: bool = False, ext: int = 0) -> int:
    """Supersection entry; ``ext`` fills the extended-base bits 23:20 and 8:5 (must be ignored)."""
    return (pa & 0xFF000000) | (ext << 20) | (ext << 5) | (1 << 18) | ((ap >> 2) << 15) | (
        (ap & 3) << 10
    ) | (xn << 4) | 0b10  # fmt: skip


def page_table(l2: int, *, domain: int = 0, pxn: bool = False, ns: bool = False) -> int:
    return (l2 & 0xFFFFFC00) | (domain << 5) | (ns << 3) | (pxn << 2) | 0b01


def small(
    pa: int,
    *,
    ap: int = 0b011,
    xn: bool = False,
    tex: int = 0,
    c: bool = False,
    b: bool = False,
    s: bool = False,
    ng: bool = False,
) -> int:
    return (
        (pa & 0xFFFFF000) | (ng << 11) | (s << 10) | ((ap >> 2) << 9) | (tex << 6) | ((ap & 3) << 4)
        | (c << 3) | (b << 2) | 0b10 | int(xn)
    )  # fmt: skip


def large(
    pa: int,
    *,
    ap: int = 0b011,
    xn: bool = False,
    tex: int = 0,
    c: bool = False,
    b: bool = False,
    s: bool = False,
    ng: bool = False,
) -> int:
    return (
        (pa & 0xFFFF0000) | (xn << 15) | (tex << 12) | (ng << 11) | (s << 10) | ((ap >> 2) << 9)
        | ((ap & 3) << 4) | (c << 3) | (b << 2) | 0b01
    )  # fmt: skip


def make(phys: Phys, **kw: object) -> MMU:
    kw.setdefault("ttbr0", L1)
    kw.setdefault("dacr", DACR_ALL_CLIENT)
    return MMU(phys.read_u32, **kw)  # type: ignore[arg-type]


def fault_of(mmu: MMU, va: int, access: str = "read", privileged: bool = True) -> MMUFault:
    with pytest.raises(MMUFault) as info:
        mmu.translate(va, access, privileged)  # type: ignore[arg-type]
    return info.value


@pytest.fixture
def phys() -> Phys:
    return Phys()


# ---------------------------------------------------------------------------------------------
# descriptor kinds


def test_section(phys: Phys) -> None:
    phys.l1(0xC010_0000, section(0x8030_0000, domain=3, tex=0b101, c=True, b=False, s=True, ng=True))
    tr = make(phys).translate(0xC012_3456)
    assert tr.pa == 0x8032_3456
    assert (tr.kind, tr.page_size, tr.base_va, tr.base_pa) == ("section", 1 << 20, 0xC010_0000, 0x8030_0000)
    assert (tr.domain, tr.tex, tr.c, tr.b, tr.s, tr.ng, tr.xn, tr.ap) == (
        3,
        0b101,
        True,
        False,
        True,
        True,
        False,
        0b011,
    )
    assert tr.tre_index == 0b110  # TEX[0]=1, C=1, B=0
    assert (tr.priv_read, tr.priv_write, tr.priv_exec) == (True, True, True)
    assert (tr.user_read, tr.user_write, tr.user_exec) == (True, True, True)


def test_supersection_ignores_extended_base_and_domain_bits(phys: Phys) -> None:
    desc = supersection(0x9A00_0000, ext=0xF)
    for i in range(16):  # the architecture wants 16 identical L1 entries
        phys.l1(0x2000_0000 + (i << 20), desc)
    mmu = make(phys, dacr=0b01)  # only domain 0 is accessible: supersections live there
    tr = mmu.translate(0x20AB_CDEF)
    assert tr.pa == 0x9AAB_CDEF
    assert (tr.kind, tr.page_size, tr.base_va, tr.base_pa, tr.domain) == (
        "supersection",
        1 << 24,
        0x2000_0000,
        0x9A00_0000,
        0,
    )


def test_small_page(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A, domain=7))
    phys.l2(L2A, 0x0013_4000, small(0x7654_3000, tex=0b001, b=True, xn=True))
    tr = make(phys).translate(0x0013_4ABC)
    assert tr.pa == 0x7654_3ABC
    assert (tr.kind, tr.page_size, tr.base_va, tr.base_pa) == ("small", 4096, 0x0013_4000, 0x7654_3000)
    assert (tr.domain, tr.tex, tr.b, tr.c, tr.xn, tr.tre_index) == (7, 1, True, False, True, 0b101)
    assert not tr.priv_exec and not tr.user_exec


def test_small_page_type_0b11_is_small_with_xn(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A))
    phys.l2(L2A, 0x0010_0000, 0x1234_5000 | (0b11 << 4) | 0b11)
    tr = make(phys).translate(0x0010_0010)
    assert tr.kind == "small" and tr.xn and tr.pa == 0x1234_5010


def test_large_page(phys: Phys) -> None:
    phys.l1(0x0030_0000, page_table(L2A))
    desc = large(0x5555_0000, xn=True, tex=0b111, s=True)
    for i in range(16):
        phys.l2(L2A, 0x0031_0000 + (i << 12), desc)
    tr = make(phys).translate(0x0031_F00D)
    assert tr.pa == 0x5555_F00D
    assert (tr.kind, tr.page_size, tr.base_va, tr.base_pa) == ("large", 1 << 16, 0x0031_0000, 0x5555_0000)
    assert tr.xn and tr.tex == 0b111 and tr.s
    with pytest.raises(MMUFault):
        make(phys).translate(0x0031_F00D, "fetch")


def test_mmu_off_is_identity(phys: Phys) -> None:
    tr = make(phys, m=False).translate(0xDEAD_BEEF, "fetch", privileged=False)
    assert tr.pa == 0xDEAD_BEEF and tr.kind == "identity"


def test_sctlr_property(phys: Phys) -> None:
    mmu = make(phys)
    mmu.sctlr = 0x00C5_0078 | 1 | (1 << 28) | (1 << 29)
    assert mmu.m and mmu.tre and mmu.afe
    mmu.sctlr = 0
    assert not (mmu.m or mmu.tre or mmu.afe)


def test_translation_is_frozen(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000))
    tr = make(phys).translate(0)
    with pytest.raises(AttributeError):
        tr.pa = 1  # type: ignore[misc]


def test_bad_access_kind(phys: Phys) -> None:
    with pytest.raises(ValueError):
        make(phys).translate(0, "execute")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# faults and exact FSR values


def test_translation_fault_section(phys: Phys) -> None:
    mmu = make(phys)
    f = fault_of(mmu, 0x1234_5678)
    assert (f.fsr, f.level, f.status, f.va) == (0x005, 1, "translation", 0x1234_5678)
    assert fault_of(mmu, 0x1234_5678, "write").fsr == 0x805
    assert fault_of(mmu, 0x1234_5678, "fetch").fsr == 0x005
    assert f.description == "Translation Fault (L1)"


def test_translation_fault_page_carries_domain_in_dfsr_only(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A, domain=3))
    mmu = make(phys)
    f = fault_of(mmu, 0x0010_5000)
    assert (f.fsr, f.level, f.status, f.domain) == (0x037, 2, "translation", 3)
    assert fault_of(mmu, 0x0010_5000, "write").fsr == 0x837
    assert fault_of(mmu, 0x0010_5000, "fetch").fsr == 0x007  # IFSR has no Domain field
    assert decode_fsr(f.fsr) == "Translation Fault (L2)"


def test_access_flag_faults(phys: Phys) -> None:
    phys.l1(0x0000_0000, section(0x4000_0000, ap=0b010, domain=5))  # AP[0] = 0
    phys.l1(0x0010_0000, page_table(L2A, domain=6))
    phys.l2(L2A, 0x0010_0000, small(0x4000_0000, ap=0b110))  # AP[0] = 0
    mmu = make(phys, afe=True)
    f = fault_of(mmu, 0x10)
    assert (f.fsr, f.level, f.status) == (0x053, 1, "access-flag")
    assert decode_fsr(f.fsr) == "Access Bit (L1)"
    f = fault_of(mmu, 0x0010_0010, "write", privileged=False)
    assert (f.fsr, f.level) == (0x866, 2)
    assert decode_fsr(f.fsr) == "Access Bit (L2)"
    # Without AFE the same entries are ordinary AP encodings.
    mmu.afe = False
    assert mmu.translate(0x10, "write").pa == 0x4000_0010


def test_xn_fetch_checked_before_access_flag_like_qemu(phys: Phys) -> None:
    # QEMU 7.2 / Unicorn: a fetch from an XN unit is a Permission fault even with AF = 0
    # (the ARM ARM would give the Access flag fault priority); data accesses see the AF fault.
    phys.l1(0, section(0x4000_0000, ap=0b010, xn=True))
    phys.l1(0x0010_0000, section(0x4010_0000, ap=0b010, pxn=True))
    mmu = make(phys, afe=True)
    f = fault_of(mmu, 0x10, "fetch")
    assert f.status == "permission" and f.fsr == 0x00D
    assert fault_of(mmu, 0x10, "read").status == "access-flag"
    assert fault_of(mmu, 0x0010_0010, "fetch").status == "permission"  # PXN, privileged
    assert fault_of(mmu, 0x0010_0010, "fetch", privileged=False).status == "access-flag"


def test_domain_faults(phys: Phys) -> None:
    phys.l1(0x0000_0000, section(0x4000_0000, domain=2))
    phys.l1(0x0010_0000, page_table(L2A, domain=4))
    phys.l2(L2A, 0x0010_0000, small(0x4000_0000))
    mmu = make(phys, dacr=0)
    f = fault_of(mmu, 0x20)
    assert (f.fsr, f.level, f.status, f.domain) == (0x029, 1, "domain", 2)
    assert decode_fsr(f.fsr) == "Domain Fault (L1)"
    f = fault_of(mmu, 0x0010_0020, "write")
    assert (f.fsr, f.level, f.status) == (0x84B, 2, "domain")
    assert decode_fsr(f.fsr) == "Domain Fault (L2)"
    assert fault_of(mmu, 0x0010_0020, "fetch").fsr == 0x00B


def test_domain_checked_before_l2_fetch_like_qemu(phys: Phys) -> None:
    # No-access domain over a page table whose L2 entry is invalid: QEMU reports the domain fault.
    phys.l1(0x0010_0000, page_table(L2A, domain=1))
    f = fault_of(make(phys, dacr=0), 0x0010_0000)
    assert f.fsr == 0x01B and f.status == "domain"
    # ... and even when the L2 table itself is not readable.
    phys.l1(0x0020_0000, page_table(0x1000_0000, domain=1))
    assert fault_of(make(phys, dacr=0), 0x0020_0000).fsr == 0x01B


def test_reserved_dacr_value_is_no_access(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000, domain=1))
    assert fault_of(make(phys, dacr=0b10 << 2), 0).status == "domain"


def test_permission_faults(phys: Phys) -> None:
    phys.l1(0x0000_0000, section(0x4000_0000, ap=0b001, domain=9))  # PL1 RW only
    phys.l1(0x0010_0000, page_table(L2A, domain=10))
    phys.l2(L2A, 0x0010_0000, small(0x4000_0000, ap=0b111))  # RO everywhere
    mmu = make(phys)
    f = fault_of(mmu, 0x0, privileged=False)
    assert (f.fsr, f.level, f.status) == (0x09D, 1, "permission")
    assert decode_fsr(f.fsr) == "Permission Fault (L1)"
    assert fault_of(mmu, 0x0, "fetch", privileged=False).fsr == 0x00D
    f = fault_of(mmu, 0x0010_0000, "write")
    assert (f.fsr, f.level) == (0x8AF, 2)
    assert decode_fsr(f.fsr) == "Permission Fault (L2)"


def test_external_abort_on_walk(phys: Phys) -> None:
    mmu = make(phys, ttbr0=0x1000_0000)  # nothing behind the L1 table
    f = fault_of(mmu, 0x1234, "write")
    assert (f.fsr, f.level, f.status) == (0x80C, 1, "external-walk")
    assert decode_fsr(f.fsr) == "External Translation Abort (L1)"
    phys.l1(0x0010_0000, page_table(0x2000_0000, domain=2))
    f = fault_of(make(phys), 0x0010_0000)
    assert (f.fsr, f.level) == (0x02E, 2)
    assert decode_fsr(f.fsr) == "External Translation Abort (L2)"


def test_external_abort_ext_bit() -> None:
    def slave_error(pa: int) -> int:
        raise PhysicalAbort(pa, ext=True)

    f = fault_of(MMU(slave_error, ttbr0=L1), 0)
    assert f.fsr == 0x100C


def test_alignment_fault(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000))
    mmu = make(phys)
    with pytest.raises(MMUFault) as info:
        mmu.translate(0x2, "write", align=4)
    assert (info.value.fsr, info.value.status, info.value.level) == (0x801, "alignment", 0)
    assert decode_fsr(info.value.fsr) == "Alignment Fault"
    assert mmu.translate(0x4, "write", align=4).pa == 0x4000_0004


def test_synchronous_external_abort_on_access(phys: Phys) -> None:
    phys.l1(0, section(0x9000_0000))  # outside Phys
    mmu = make(phys)
    with pytest.raises(MMUFault) as info:
        mmu.read_virtual(0x10, 4, phys.read)
    assert (info.value.fsr, info.value.status) == (0x008, "external")
    assert decode_fsr(info.value.fsr) == "External Abort"
    with pytest.raises(MMUFault) as info:
        mmu.write_virtual(0x10, b"x", phys.write)
    assert info.value.fsr == 0x808


def test_make_fsr_and_fs4() -> None:
    assert make_fsr(0b10110) == 0x406
    assert fsr_fault_code(0x406) == 0b10110
    assert decode_fsr(0x406) == "Asynchronous External Abort"
    assert make_fsr(FS_EXT_ABORT, ext=True, write=True) == 0x1808
    assert fsr_fault_code(0x1808) == FS_EXT_ABORT


@pytest.mark.parametrize(
    ("fs", "text"),
    [
        (0b00000, "Undefined Code (0x000)"),
        (0b00001, "Alignment Fault"),
        (0b00010, "Debug Event"),
        (0b00011, "Access Bit (L1)"),
        (0b00100, "Instruction cache maintenance"),
        (0b00101, "Translation Fault (L1)"),
        (0b00110, "Access Bit (L2)"),
        (0b00111, "Translation Fault (L2)"),
        (0b01000, "External Abort"),
        (0b01001, "Domain Fault (L1)"),
        (0b01011, "Domain Fault (L2)"),
        (0b01100, "External Translation Abort (L1)"),
        (0b01101, "Permission Fault (L1)"),
        (0b01110, "External Translation Abort (L2)"),
        (0b01111, "Permission Fault (L2)"),
        (0b10000, "TLB Conflict Abort"),
        (0b10110, "Asynchronous External Abort"),
        (0b11000, "Asynchronous Parity Error on Memory Access"),
        (0b11001, "Parity Error on Memory Access"),
        (0b11100, "Parity Error on Translation (L1)"),
        (0b11110, "Parity Error on Translation (L2)"),
        (0b11111, "Undefined Code (0x40F)"),
    ],
)
def test_decode_fsr_freebsd_strings(fs: int, text: str) -> None:
    # Upper bits (domain, WnR, ExT) must not change the description.
    assert decode_fsr(make_fsr(fs, domain=0xF, write=True, ext=True) | 0xF0) == text


# ---------------------------------------------------------------------------------------------
# AP decoding

# AP[2:0] -> (priv read, priv write, user read, user write), ARM ARM table B3-8 (AFE = 0).
AP_FULL = {
    0b000: (False, False, False, False),
    0b001: (True, True, False, False),
    0b010: (True, True, True, False),
    0b011: (True, True, True, True),
    0b100: (False, False, False, False),  # reserved
    0b101: (True, False, False, False),
    0b110: (True, False, True, False),  # deprecated
    0b111: (True, False, True, False),
}


@pytest.mark.parametrize("ap", range(8))
@pytest.mark.parametrize("xn", [False, True])
def test_ap_full_model(phys: Phys, ap: int, xn: bool) -> None:
    phys.l1(0, section(0x4000_0000, ap=ap, xn=xn))
    phys.l1(0x0010_0000, page_table(L2A))
    phys.l2(L2A, 0x0010_0000, small(0x4010_0000, ap=ap, xn=xn))
    mmu = make(phys)
    pr, pw, ur, uw = AP_FULL[ap]
    for va in (0x0, 0x0010_0000):
        for privileged, (r, w) in ((True, (pr, pw)), (False, (ur, uw))):
            expect = {"read": r, "write": w, "fetch": r and not xn}
            for access, ok in expect.items():
                got = mmu.try_translate(va, access, privileged)  # type: ignore[arg-type]
                assert (got is not None) == ok, (ap, xn, va, privileged, access)
        if pr or ur:
            tr = mmu.translate(va, "read", privileged=pr)
            assert (tr.priv_read, tr.priv_write, tr.user_read, tr.user_write) == (pr, pw, ur, uw)


# AP[2:1] with AFE = 1 (ARM ARM table B3-9, simplified model).
AP_SIMPLE = {
    0b00: (True, True, False, False),
    0b01: (True, True, True, True),
    0b10: (True, False, False, False),
    0b11: (True, False, True, False),
}


@pytest.mark.parametrize("ap21", range(4))
def test_ap_simplified_model(phys: Phys, ap21: int) -> None:
    phys.l1(0, section(0x4000_0000, ap=(ap21 << 1) | 1))
    mmu = make(phys, afe=True)
    pr, pw, ur, uw = AP_SIMPLE[ap21]
    for privileged, (r, w) in ((True, (pr, pw)), (False, (ur, uw))):
        for access, ok in (("read", r), ("write", w), ("fetch", r)):
            assert (mmu.try_translate(0, access, privileged) is not None) == ok  # type: ignore[arg-type]
    phys.l1(0, section(0x4000_0000, ap=ap21 << 1))  # AP[0] = 0: access flag fault, whatever AP[2:1]
    assert fault_of(mmu, 0).status == "access-flag"


# ---------------------------------------------------------------------------------------------
# DACR


def test_dacr_manager_skips_all_checks(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000, ap=0b000, xn=True, domain=1))
    phys.l1(0x0010_0000, section(0x4010_0000, ap=0b010, xn=True, domain=1))  # AF=0 under AFE
    mmu = make(phys, dacr=0b11 << 2, afe=False)
    for privileged in (True, False):
        for access in ("read", "write", "fetch"):
            assert mmu.translate(0x10, access, privileged).pa == 0x4000_0010  # type: ignore[arg-type]
    mmu.afe = True
    assert mmu.translate(0x0010_0000, "fetch", privileged=False).pa == 0x4010_0000
    # Same entry as client: permission fault.
    mmu.afe = False
    mmu.dacr = 0b01 << 2
    assert fault_of(mmu, 0x10).status == "permission"
    mmu.dacr = 0
    assert fault_of(mmu, 0x10).status == "domain"


# ---------------------------------------------------------------------------------------------
# PXN / reserved L1 encoding


def test_l1_type3_without_pxn_is_translation_fault(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000, pxn=True))
    f = fault_of(make(phys, has_pxn=False), 0)
    assert f.fsr == 0x005


def test_l1_type3_with_pxn_is_privileged_execute_never(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000, pxn=True))
    mmu = make(phys)  # has_pxn=True: Cortex-A15 (LPAE) behaviour, as Unicorn does
    tr = mmu.translate(0x10, "read")
    assert tr.pxn and tr.kind == "section"
    assert fault_of(mmu, 0x10, "fetch").fsr == 0x00D
    assert mmu.translate(0x10, "fetch", privileged=False).pa == 0x4000_0010


def test_page_table_pxn_bit(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A, pxn=True))
    phys.l2(L2A, 0x0010_0000, small(0x4000_0000))
    assert fault_of(make(phys), 0x0010_0000, "fetch").fsr == 0x00F
    assert make(phys, has_pxn=False).translate(0x0010_0000, "fetch").pa == 0x4000_0000


# ---------------------------------------------------------------------------------------------
# TTBCR.N split


def test_ttbcr_split(phys: Phys) -> None:
    n = 2  # TTBR0 covers 0..1 GiB with a 4 KiB table; TTBR1 covers the rest
    phys.l1(0x3FF0_0000, section(0x1110_0000), table=L1)  # last entry of the 4 KiB TTBR0 table
    phys.l1(0x4000_0000, section(0x2220_0000), table=L1B)
    phys.l1(0xC000_0000, section(0x3330_0000), table=L1B)
    phys.l1(0xC000_0000, section(0x4440_0000), table=L1)  # must be ignored
    mmu = make(phys, ttbr0=L1 | 0x0F00 | 0x7F, ttbr1=L1B | 0x7F, ttbcr=n)  # low bits are masked
    assert mmu.translate(0x3FF0_0001).pa == 0x1110_0001
    assert mmu.translate(0x4000_0002).pa == 0x2220_0002
    assert mmu.translate(0xC000_0003).pa == 0x3330_0003
    # TTBR0 base bits [13:12] are part of the base when N=2 (table aligned to 4 KiB).
    mmu.ttbr0 = L1 + 0x1000
    assert fault_of(mmu, 0x3FF0_0001).fsr == 0x005
    mmu.ttbr0 = L1
    # PD0 / PD1 disable the walk: section translation fault.
    mmu.ttbcr = n | (1 << 4)
    assert fault_of(mmu, 0x3FF0_0001).fsr == 0x005
    assert mmu.translate(0xC000_0003).pa == 0x3330_0003
    mmu.ttbcr = n | (1 << 5)
    assert fault_of(mmu, 0xC000_0003).fsr == 0x005
    assert mmu.translate(0x3FF0_0001).pa == 0x1110_0001


def test_ttbcr_n0_uses_ttbr0_only(phys: Phys) -> None:
    phys.l1(0xC000_0000, section(0x4440_0000), table=L1)
    phys.l1(0xC000_0000, section(0x3330_0000), table=L1B)
    assert make(phys, ttbr1=L1B).translate(0xC000_0000).pa == 0x4440_0000


def test_eae_not_modelled(phys: Phys) -> None:
    with pytest.raises(NotImplementedError):
        make(phys, ttbcr=1 << 31).translate(0)


# ---------------------------------------------------------------------------------------------
# mappings()


def test_mappings_coalesce(phys: Phys) -> None:
    # Two sections with consecutive PA and equal attrs, then one with a gap in PA.
    phys.l1(0xC000_0000, section(0x4000_0000))
    phys.l1(0xC010_0000, section(0x4010_0000))
    phys.l1(0xC020_0000, section(0x5000_0000))
    # A page table continuing the first run's PA with the same attributes (merges into it
    # if its first page is contiguous), then a page with different attributes.
    phys.l1(0xC030_0000, page_table(L2A))
    phys.l2(L2A, 0xC030_0000, small(0x5010_0000))
    phys.l2(L2A, 0xC030_1000, small(0x5010_1000))
    phys.l2(L2A, 0xC030_2000, small(0x5010_2000, ap=0b001))
    phys.l2(L2A, 0xC030_4000, small(0x5010_4000, ap=0b001))  # gap in VA
    runs = list(make(phys).mappings())
    assert [(r.va_start, r.va_end, r.pa_start) for r in runs] == [
        (0xC000_0000, 0xC020_0000, 0x4000_0000),
        (0xC020_0000, 0xC030_2000, 0x5000_0000),
        (0xC030_2000, 0xC030_3000, 0x5010_2000),
        (0xC030_4000, 0xC030_5000, 0x5010_4000),
    ]
    assert runs[0].attrs.priv == "rwx" and runs[0].attrs.user == "rwx"
    assert runs[2].attrs.priv == "rwx" and runs[2].attrs.user == "---"
    assert "rwx/---" in str(runs[2].attrs)
    assert isinstance(runs[0], Mapping)
    va_start, va_end, pa_start, attrs = runs[0]  # plain tuple unpacking works
    assert attrs.domain_access == "client"


def test_mappings_large_page_and_supersection_slices(phys: Phys) -> None:
    for i in range(16):
        phys.l1(0x0100_0000 + (i << 20), supersection(0x8000_0000))
    phys.l1(0x0300_0000, page_table(L2A))
    for i in range(16):
        phys.l2(L2A, 0x0300_0000 + (i << 12), large(0x9000_0000))
    runs = list(make(phys).mappings())
    assert [(r.va_start, r.va_end, r.pa_start) for r in runs] == [
        (0x0100_0000, 0x0200_0000, 0x8000_0000),
        (0x0300_0000, 0x0301_0000, 0x9000_0000),
    ]


def test_mappings_clipping_and_order(phys: Phys) -> None:
    phys.l1(0xC000_0000, section(0x4000_0000))
    phys.l1(0xC010_0000, section(0x4010_0000))
    runs = list(make(phys).mappings(0xC008_0000, 0xC018_0000))
    assert [(r.va_start, r.va_end, r.pa_start) for r in runs] == [(0xC008_0000, 0xC018_0000, 0x4008_0000)]
    assert list(make(phys).mappings(0xC018_0000, 0xC018_0000)) == []


def test_mappings_ttbcr_split_and_bulk_reader(phys: Phys) -> None:
    phys.l1(0x0000_0000, section(0x1000_0000), table=L1)
    phys.l1(0x8000_0000, section(0x2000_0000), table=L1B)
    phys.l1(0x8000_0000, section(0x3000_0000), table=L1)  # beyond the 8 KiB TTBR0 table: ignored
    for reader in (None, phys.read):
        mmu = MMU(phys.read_u32, ttbr0=L1, ttbr1=L1B, ttbcr=1, dacr=DACR_ALL_CLIENT, read_phys=reader)
        runs = [(r.va_start, r.va_end, r.pa_start) for r in mmu.mappings()]
        assert runs == [(0, 0x0010_0000, 0x1000_0000), (0x8000_0000, 0x8010_0000, 0x2000_0000)]


def test_mappings_skip_unreadable_tables(phys: Phys) -> None:
    phys.l1(0x0000_0000, page_table(0x2000_0000))
    phys.l1(0x0010_0000, section(0x1000_0000))
    assert [r.va_start for r in make(phys).mappings()] == [0x0010_0000]
    assert list(make(phys, ttbr0=0x2000_0000).mappings()) == []


def test_mappings_mmu_off(phys: Phys) -> None:
    assert [(r.va_start, r.va_end, r.pa_start) for r in make(phys, m=False).mappings()] == [(0, 1 << 32, 0)]


def test_mappings_agree_with_translate(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A, domain=3))
    phys.l2(L2A, 0x0010_3000, small(0x4123_4000, ap=0b101, xn=True))
    phys.l1(0xC000_0000, section(0x4000_0000, ap=0b010))
    mmu = make(phys)
    for run in mmu.mappings():
        for va in (run.va_start, run.va_end - 1):
            tr = mmu.translate(va)
            assert tr.pa == run.pa_start + (va - run.va_start)


def test_mappings_of_a_full_table_that_never_coalesces(phys: Phys) -> None:
    for i in range(4096):
        # Alternate attributes so nothing coalesces: the worst case for the generator.
        phys.write_u32(L1 + 4 * i, section(i << 20, ap=0b011 if i % 2 else 0b001))
    for reader in (None, phys.read):
        mmu = MMU(phys.read_u32, ttbr0=L1, dacr=DACR_ALL_CLIENT, read_phys=reader)
        runs = list(mmu.mappings())
        assert len(runs) == 4096
        assert [r.va_start for r in runs[:3]] == [0, 1 << 20, 2 << 20]


# ---------------------------------------------------------------------------------------------
# read_virtual / write_virtual


def test_read_write_virtual_across_pages(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A))
    phys.l2(L2A, 0x0010_0000, small(0x4005_0000))
    phys.l2(L2A, 0x0010_1000, small(0x4003_0000))  # not contiguous in PA
    mmu = make(phys)
    data = bytes(range(256)) * 4
    mmu.write_virtual(0x0010_0F00, data[:512], phys.write)
    assert phys.read(0x4005_0F00, 256) == data[:256]
    assert phys.read(0x4003_0000, 256) == data[256:512]
    assert mmu.read_virtual(0x0010_0F00, 512, phys.read) == data[:512]
    assert mmu.read_virtual(0x0010_0F00, 0, phys.read) == b""


def test_write_virtual_fault_writes_nothing(phys: Phys) -> None:
    phys.l1(0x0010_0000, page_table(L2A))
    phys.l2(L2A, 0x0010_0000, small(0x4005_0000))
    phys.l2(L2A, 0x0010_1000, small(0x4003_0000, ap=0b111))  # read-only
    mmu = make(phys)
    with pytest.raises(MMUFault) as info:
        mmu.write_virtual(0x0010_0FF0, b"\xaa" * 32, phys.write)
    assert info.value.va == 0x0010_1000 and info.value.fsr == 0x80F
    assert phys.read(0x4005_0FF0, 16) == bytes(16)
    with pytest.raises(MMUFault):
        mmu.read_virtual(0x0010_0FF0, 32, phys.read, privileged=False, access="write")


def test_user_read_virtual_permission(phys: Phys) -> None:
    phys.l1(0, section(0x4000_0000, ap=0b001))
    mmu = make(phys)
    assert mmu.read_virtual(0, 4, phys.read) == phys.read(0x4000_0000, 4)  # the L1 table itself
    with pytest.raises(MMUFault) as info:
        mmu.read_virtual(0, 4, phys.read, privileged=False)
    assert info.value.status == "permission" and not info.value.privileged
