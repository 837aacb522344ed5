"""ARMv7 short-descriptor (VMSAv7, non-LPAE format) address translation in pure Python.

Why this exists: the Python side of the board (kernel model, monitor ``info mem``, debugger stub,
fault reporting) needs to walk the guest's *real* translation tables and produce the exact
DFSR/IFSR values a Cortex-A15 would, but Unicorn never writes DFAR/DFSR and gives no fault status.
This module is that walk, with no Unicorn import: it reads guest physical memory through a callback.

Sources and choices (ARM ARM = DDI 0406C, VMSAv7 short-descriptor format):

* L1 (16 KiB, 4096 entries; TTBCR.N > 0 shrinks the TTBR0 table and sends VAs at or above
  ``2**(32-N)`` to TTBR1): 0b00 fault, 0b01 page table, 0b10 section (bit 18 = 0) or
  supersection (bit 18 = 1, always domain 0, extended base bits ignored).  0b11 is reserved on an
  implementation without the PXN feature (translation fault); Cortex-A15 implements LPAE and so
  PXN, and there 0b11 is a section/supersection with PXN = 1.  QEMU/Unicorn do the same (measured:
  privileged fetch from an 0b11 section is refused).  ``MMU(has_pxn=...)`` selects the behaviour;
  the default (True) matches the board's Cortex-A15.
* L2 (1 KiB, 256 entries): 0b00 fault, 0b01 large page (64 KiB), 0b1x small page (4 KiB).
* AP[2:0] with SCTLR.AFE = 0 (ARM ARM table B3-8, 3-bit model): 000 no access, 001 PL1 RW,
  010 PL1 RW / PL0 RO, 011 full access, 100 reserved (treated as no access, like QEMU),
  101 PL1 RO, 110 RO (deprecated), 111 RO.  With AFE = 1, AP[0] is the access flag (0 -> Access flag
  fault) and AP[2:1] uses the simplified model: 00 PL1 RW, 01 RW, 10 PL1 RO, 11 RO.
* Instruction fetch needs read permission in the current mode and XN = 0 (and PXN = 0 when
  privileged).  A Manager domain skips every permission, access-flag and XN check (ARM ARM: "XN ...
  in a Client domain"; QEMU gives RWX).
* Fault order follows QEMU (the reference CPU model), which deviates from the ARM ARM in one place:
  the domain is checked right after the L1 descriptor, *before* the L2 descriptor is fetched, so a
  no-access domain over a page table gives "Domain fault (L2)" even when the L2 entry is invalid
  (the ARM ARM checks the domain of a page when the L2 descriptor is returned, so it would report
  a Translation fault (L2) there).  Then L2 fetch/translation, then - still QEMU's order, as in
  qemu-system-arm 7.2 and Unicorn 2.1.4's QEMU fork - an instruction fetch from an XN (or, when
  privileged, PXN) unit is a Permission fault *before* the access flag is looked at; then the
  access flag, then AP.  The ARM ARM (and QEMU 8.x, which moved XN into get_S1prot) give the
  Access flag fault priority over every Permission fault; only the fault code differs, never
  whether the access faults.
* Not modelled: SCTLR.WXN/UWXN (the short-descriptor walk of QEMU 7.2/Unicorn ignores them), LPAE long
  descriptors (TTBCR.EAE = 1 raises NotImplementedError), the NS bit beyond reporting it.
* FSR values: FS[3:0] in bits 3:0, FS[4] in bit 10, WnR bit 11 (data writes), ExT bit 12 (external
  aborts), Domain bits 7:4 only in a DFSR and only for the codes where ARM ARM table B3-23 says the
  domain is valid (L2 translation, access flag, domain, permission, L2 walk abort).  An IFSR never
  carries Domain or WnR.
"""

from __future__ import annotations

import struct
from collections import namedtuple

TYPE_CHECKING = False   # typing and dataclasses cost imports on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Literal

    AccessKind = Literal["read", "write", "fetch"]

__all__ = [
    "FS_ACCESS_FLAG_PAGE",
    "FS_ACCESS_FLAG_SECTION",
    "FS_ALIGNMENT",
    "FS_DOMAIN_PAGE",
    "FS_DOMAIN_SECTION",
    "FS_EXT_ABORT",
    "FS_EXT_WALK_L1",
    "FS_EXT_WALK_L2",
    "FS_PERMISSION_PAGE",
    "FS_PERMISSION_SECTION",
    "FS_TRANSLATION_PAGE",
    "FS_TRANSLATION_SECTION",
    "MMU",
    "MMUFault",
    "Mapping",
    "MappingAttrs",
    "PhysicalAbort",
    "Translation",
    "decode_fsr",
    "fsr_fault_code",
    "make_fsr",
]

_KINDS = ("read", "write", "fetch")

# Short-descriptor fault status codes FS[4:0] (ARM ARM B3.13.3, table B3-23).
FS_ALIGNMENT = 0b00001
FS_ACCESS_FLAG_SECTION = 0b00011
FS_ACCESS_FLAG_PAGE = 0b00110
FS_TRANSLATION_SECTION = 0b00101
FS_TRANSLATION_PAGE = 0b00111
FS_EXT_ABORT = 0b01000
FS_DOMAIN_SECTION = 0b01001
FS_DOMAIN_PAGE = 0b01011
FS_EXT_WALK_L1 = 0b01100
FS_PERMISSION_SECTION = 0b01101
FS_EXT_WALK_L2 = 0b01110
FS_PERMISSION_PAGE = 0b01111

# Codes whose DFSR.Domain field is valid (ARM ARM table B3-23 "Domain" column).
_DOMAIN_VALID = frozenset(
    {
        FS_TRANSLATION_PAGE,
        FS_ACCESS_FLAG_SECTION,
        FS_ACCESS_FLAG_PAGE,
        FS_DOMAIN_SECTION,
        FS_DOMAIN_PAGE,
        FS_PERMISSION_SECTION,
        FS_PERMISSION_PAGE,
        FS_EXT_WALK_L2,
    }
)

_FSR_WNR = 1 << 11  # FreeBSD armreg.h FSR_WNR
_FSR_EXT = 1 << 12  # FreeBSD armreg.h FSR_EXT

# FreeBSD sys/arm/arm/trap-v6.c aborts[].desc, indexed by FSR_TO_FAULT(fsr) =
# (fsr & 0xF) | ((fsr & (1 << 10)) >> 6)  (sys/arm/include/armreg.h).
_FREEBSD_ABORTS: tuple[str, ...] = (
    "Undefined Code (0x000)",
    "Alignment Fault",
    "Debug Event",
    "Access Bit (L1)",
    "Instruction cache maintenance",
    "Translation Fault (L1)",
    "Access Bit (L2)",
    "Translation Fault (L2)",
    "External Abort",
    "Domain Fault (L1)",
    "Undefined Code (0x00A)",
    "Domain Fault (L2)",
    "External Translation Abort (L1)",
    "Permission Fault (L1)",
    "External Translation Abort (L2)",
    "Permission Fault (L2)",
    "TLB Conflict Abort",
    "Undefined Code (0x401)",
    "Undefined Code (0x402)",
    "Undefined Code (0x403)",
    "Undefined Code (0x404)",
    "Undefined Code (0x405)",
    "Asynchronous External Abort",
    "Undefined Code (0x407)",
    "Asynchronous Parity Error on Memory Access",
    "Parity Error on Memory Access",
    "Undefined Code (0x40A)",
    "Undefined Code (0x40B)",
    "Parity Error on Translation (L1)",
    "Undefined Code (0x40D)",
    "Parity Error on Translation (L2)",
    "Undefined Code (0x40F)",
)

_STATUS_NAMES = {
    FS_ALIGNMENT: "alignment",
    FS_ACCESS_FLAG_SECTION: "access-flag",
    FS_ACCESS_FLAG_PAGE: "access-flag",
    FS_TRANSLATION_SECTION: "translation",
    FS_TRANSLATION_PAGE: "translation",
    FS_EXT_ABORT: "external",
    FS_DOMAIN_SECTION: "domain",
    FS_DOMAIN_PAGE: "domain",
    FS_EXT_WALK_L1: "external-walk",
    FS_PERMISSION_SECTION: "permission",
    FS_EXT_WALK_L2: "external-walk",
    FS_PERMISSION_PAGE: "permission",
}

_SCTLR_M = 1 << 0
_SCTLR_TRE = 1 << 28
_SCTLR_AFE = 1 << 29
_TTBCR_PD0 = 1 << 4
_TTBCR_PD1 = 1 << 5
_TTBCR_EAE = 1 << 31

_MASK32 = 0xFFFFFFFF


def fsr_fault_code(fsr: int) -> int:
    """FS[4:0] of a short-descriptor FSR (FS[4] lives in bit 10)."""
    return (fsr & 0xF) | ((fsr >> 6) & 0x10)


def make_fsr(fs: int, *, domain: int = 0, write: bool = False, fetch: bool = False, ext: bool = False) -> int:
    """Compose a DFSR (``fetch=False``) or IFSR value for fault code ``fs`` (LPAE bit 9 stays 0)."""
    value = (fs & 0xF) | (((fs >> 4) & 1) << 10)
    if not fetch:
        if fs in _DOMAIN_VALID:
            value |= (domain & 0xF) << 4
        if write:
            value |= _FSR_WNR
    if ext and fs in (FS_EXT_ABORT, FS_EXT_WALK_L1, FS_EXT_WALK_L2):
        value |= _FSR_EXT
    return value


def decode_fsr(fsr: int) -> str:
    """FreeBSD's description of an FSR (the string ``abort_handler`` prints, trap-v6.c ``aborts[]``)."""
    return _FREEBSD_ABORTS[fsr_fault_code(fsr)]


class PhysicalAbort(Exception):
    """Raised by a physical-memory callback when nothing answers at ``pa`` (a bus error).

    ``ext`` is the FSR.ExT classification: QEMU sets it for a slave error and clears it for a decode
    error (nothing mapped), so the default is False.
    """

    def __init__(self, pa: int, ext: bool = False) -> None:
        super().__init__(f"physical abort at {pa:#010x}")
        self.pa = pa
        self.ext = ext


class MMUFault(Exception):
    """A translation or access fault, carrying what the CPU would put in DFSR/IFSR and DFAR/IFAR.

    ``level`` is the table level (1 or 2) for walk-related faults and 0 for alignment faults and
    external aborts on the final access, which are not tied to a level.
    """

    def __init__(
        self, va: int, fsr: int, level: int, status: str, access: AccessKind, privileged: bool, domain: int
    ) -> None:
        self.va = va
        self.fsr = fsr
        self.level = level
        self.status = status
        self.access = access
        self.privileged = privileged
        self.domain = domain
        super().__init__(f"{decode_fsr(fsr)} at {va:#010x} ({access}, fsr {fsr:#x})")

    @property
    def fs(self) -> int:
        """The 5-bit fault status code."""
        return fsr_fault_code(self.fsr)

    @property
    def is_prefetch(self) -> bool:
        """True for an instruction fetch (Prefetch Abort, IFSR/IFAR), False for a Data Abort."""
        return self.access == "fetch"

    @property
    def description(self) -> str:
        """FreeBSD's text for this fault."""
        return decode_fsr(self.fsr)


class Translation(namedtuple("Translation",
                             "va pa kind page_size base_va base_pa ap xn pxn domain tex c b s ng ns tre_index "
                             "priv_read priv_write priv_exec user_read user_write user_exec")):
    """One successful translation: where ``va`` goes and the attributes of the unit that maps it.

    ``kind`` is "section", "supersection", "large", "small", or "identity" when SCTLR.M = 0.
    ``tre_index`` is TEX[0]:C:B, the PRRR/NMRR index used when SCTLR.TRE = 1.
    """

    __slots__ = ()

    va: int
    pa: int
    kind: str
    page_size: int
    base_va: int
    base_pa: int
    ap: int
    xn: bool
    pxn: bool
    domain: int
    tex: int
    c: bool
    b: bool
    s: bool
    ng: bool
    ns: bool
    tre_index: int
    priv_read: bool
    priv_write: bool
    priv_exec: bool
    user_read: bool
    user_write: bool
    user_exec: bool


class MappingAttrs(namedtuple("MappingAttrs", "priv user domain domain_access tex c b s ng af")):
    """Attributes ``mappings()`` coalesces on (equal attrs + contiguous VA and PA -> one run)."""

    __slots__ = ()

    priv: str  # "rwx" style, as the current DACR/AFE/AP/XN allow
    user: str
    domain: int
    domain_access: str  # "none", "client", "manager" (DACR 0b10 reserved counts as "none")
    tex: int
    c: bool
    b: bool
    s: bool
    ng: bool
    af: bool  # access flag set (always True when SCTLR.AFE = 0)

    def __str__(self) -> str:
        flags = "".join(ch for ch, on in (("C", self.c), ("B", self.b), ("S", self.s), ("G", not self.ng)) if on)
        extra = "" if self.af else " AF=0"
        return (
            f"{self.priv}/{self.user} d{self.domain}:{self.domain_access} tex{self.tex}"
            f"{' ' + flags if flags else ''}{extra}"
        )


class Mapping(namedtuple("Mapping", "va_start va_end pa_start attrs")):
    """A merged run ``[va_start, va_end)`` -> ``pa_start`` for ``info mem``."""

    __slots__ = ()

    va_start: int
    va_end: int
    pa_start: int
    attrs: MappingAttrs


# (priv_r, priv_w, user_r, user_w) for the full 3-bit AP model, SCTLR.AFE = 0 (ARMv7).
_AP_FULL: tuple[tuple[bool, bool, bool, bool], ...] = (
    (False, False, False, False),  # 000 no access
    (True, True, False, False),  # 001 PL1 RW
    (True, True, True, False),  # 010 PL1 RW, PL0 RO
    (True, True, True, True),  # 011 full access
    (False, False, False, False),  # 100 reserved: QEMU gives no access
    (True, False, False, False),  # 101 PL1 RO
    (True, False, True, False),  # 110 RO (deprecated encoding)
    (True, False, True, False),  # 111 RO
)
# Simplified model, AP[2:1] (AFE = 1).
_AP_SIMPLE: tuple[tuple[bool, bool, bool, bool], ...] = (
    (True, True, False, False),  # 00 PL1 RW
    (True, True, True, True),  # 01 RW
    (True, False, False, False),  # 10 PL1 RO
    (True, False, True, False),  # 11 RO
)
_DOMAIN_ACCESS = ("none", "client", "none", "manager")


class _Unit(namedtuple("_Unit", "kind size base_pa ap xn pxn domain tex c b s ng ns")):
    """Decoded leaf descriptor (before permission checks)."""

    __slots__ = ()

    kind: str
    size: int
    base_pa: int  # PA of the start of the unit (size-aligned)
    ap: int
    xn: bool
    pxn: bool
    domain: int
    tex: int
    c: bool
    b: bool
    s: bool
    ng: bool
    ns: bool


def _decode_section(desc: int, has_pxn: bool) -> _Unit:
    """A 0b10/0b11 L1 descriptor as a section or supersection."""
    pxn = has_pxn and bool(desc & 1)
    ap = ((desc >> 10) & 3) | ((desc >> 13) & 4)
    tex = (desc >> 12) & 7
    common = dict(
        ap=ap,
        xn=bool(desc & 0x10),
        pxn=pxn,
        tex=tex,
        c=bool(desc & 8),
        b=bool(desc & 4),
        s=bool(desc & (1 << 16)),
        ng=bool(desc & (1 << 17)),
        ns=bool(desc & (1 << 19)),
    )
    if desc & (1 << 18):
        # Supersection: 16 MiB, domain 0, bits 23:20 and 8:5 are extended base (ignored).
        return _Unit("supersection", 1 << 24, desc & 0xFF000000, domain=0, **common)
    return _Unit("section", 1 << 20, desc & 0xFFF00000, domain=(desc >> 5) & 0xF, **common)


def _decode_page(desc: int, l1: int, has_pxn: bool) -> _Unit | None:
    """A L2 descriptor under page-table L1 descriptor ``l1``; None for a fault entry."""
    t = desc & 3
    if t == 0:
        return None
    domain = (l1 >> 5) & 0xF
    pxn = has_pxn and bool(l1 & 4)
    ns = bool(l1 & 8)
    ap = ((desc >> 4) & 3) | ((desc >> 7) & 4)
    if t == 1:
        return _Unit(
            "large",
            1 << 16,
            desc & 0xFFFF0000,
            ap=ap,
            xn=bool(desc & (1 << 15)),
            pxn=pxn,
            domain=domain,
            tex=(desc >> 12) & 7,
            c=bool(desc & 8),
            b=bool(desc & 4),
            s=bool(desc & (1 << 10)),
            ng=bool(desc & (1 << 11)),
            ns=ns,
        )
    return _Unit(
        "small",
        1 << 12,
        desc & 0xFFFFF000,
        ap=ap,
        xn=bool(desc & 1),
        pxn=pxn,
        domain=domain,
        tex=(desc >> 6) & 7,
        c=bool(desc & 8),
        b=bool(desc & 4),
        s=bool(desc & (1 << 10)),
        ng=bool(desc & (1 << 11)),
        ns=ns,
    )


def _rights(ap: int, xn: bool, pxn: bool, domain_access: int, afe: bool) -> tuple[bool, ...]:
    """(priv r, w, x, user r, w, x, access flag ok) for a client/manager domain."""
    if domain_access == 3:  # manager: no permission, access-flag or XN check (QEMU: RWX)
        return (True, True, True, True, True, True, True)
    if domain_access != 1:  # 00 no access, 10 reserved
        return (False, False, False, False, False, False, True)
    if afe:
        if not ap & 1:
            return (False, False, False, False, False, False, False)
        pr, pw, ur, uw = _AP_SIMPLE[ap >> 1]
    else:
        pr, pw, ur, uw = _AP_FULL[ap]
    return (pr, pw, pr and not xn and not pxn, ur, uw, ur and not xn, True)


def _perm_str(r: bool, w: bool, x: bool) -> str:
    return ("r" if r else "-") + ("w" if w else "-") + ("x" if x else "-")


class MMU:
    """The guest's stage-1 MMU state plus a table walker reading guest RAM through callbacks.

    ``read_u32(pa)`` returns the little-endian word at a physical address or raises
    :class:`PhysicalAbort`.  ``read_phys(pa, n)``, when given, is used by :meth:`mappings` to fetch
    whole tables at once (much faster than 4096 single-word calls).  The register attributes are
    plain and mutable: the kernel updates them when the guest writes CP15.
    """

    def __init__(
        self,
        read_u32: Callable[[int], int],
        *,
        ttbr0: int = 0,
        ttbr1: int = 0,
        ttbcr: int = 0,
        dacr: int = 0,
        m: bool = True,
        afe: bool = False,
        tre: bool = False,
        has_pxn: bool = True,
        read_phys: Callable[[int, int], bytes] | None = None,
    ) -> None:
        self.read_u32 = read_u32
        self.read_phys = read_phys
        self.ttbr0 = ttbr0 & _MASK32
        self.ttbr1 = ttbr1 & _MASK32
        self.ttbcr = ttbcr & _MASK32
        self.dacr = dacr & _MASK32
        self.m = m
        self.afe = afe
        self.tre = tre
        self.has_pxn = has_pxn

    # -- register helpers -------------------------------------------------------------------
    @property
    def sctlr(self) -> int:
        """The SCTLR bits this model uses (M, TRE, AFE); other bits read as 0."""
        return (_SCTLR_M if self.m else 0) | (_SCTLR_TRE if self.tre else 0) | (_SCTLR_AFE if self.afe else 0)

    @sctlr.setter
    def sctlr(self, value: int) -> None:
        self.m = bool(value & _SCTLR_M)
        self.tre = bool(value & _SCTLR_TRE)
        self.afe = bool(value & _SCTLR_AFE)

    def domain_access(self, domain: int) -> int:
        """DACR field for ``domain``: 0 no access, 1 client, 2 reserved, 3 manager."""
        return (self.dacr >> (2 * domain)) & 3

    def _l1_table(self, va: int) -> int | None:
        """Physical address of the L1 descriptor for ``va``; None if TTBCR.PDx disables the walk."""
        n = self.ttbcr & 7
        if n and va >> (32 - n):
            if self.ttbcr & _TTBCR_PD1:
                return None
            return (self.ttbr1 & 0xFFFFC000) | ((va >> 18) & 0x3FFC)
        if self.ttbcr & _TTBCR_PD0:
            return None
        base_mask = ~(0x3FFF >> n) & _MASK32
        return (self.ttbr0 & base_mask) | ((va >> 18) & 0x3FFC)

    # -- translation ------------------------------------------------------------------------
    def translate(
        self, va: int, access: AccessKind = "read", privileged: bool = True, *, align: int = 1
    ) -> Translation:
        """Translate ``va`` for one access, or raise :class:`MMUFault` with the CPU's FSR.

        ``align`` > 1 checks natural alignment first (Alignment fault has the highest priority).
        With SCTLR.M = 0 the result is the flat identity mapping.
        """
        if access not in _KINDS:
            raise ValueError(f"access must be one of {_KINDS}, got {access!r}")
        va &= _MASK32
        write = access == "write"
        fetch = access == "fetch"

        def fault(fs: int, level: int, domain: int = 0, ext: bool = False) -> MMUFault:
            fsr = make_fsr(fs, domain=domain, write=write, fetch=fetch, ext=ext)
            return MMUFault(va, fsr, level, _STATUS_NAMES[fs], access, privileged, domain)

        if align > 1 and va % align:
            raise fault(FS_ALIGNMENT, 0)
        if not self.m:
            return Translation(
                va=va,
                pa=va,
                kind="identity",
                page_size=1 << 32,
                base_va=0,
                base_pa=0,
                ap=0b011,
                xn=False,
                pxn=False,
                domain=0,
                tex=0,
                c=False,
                b=False,
                s=False,
                ng=False,
                ns=False,
                tre_index=0,
                priv_read=True,
                priv_write=True,
                priv_exec=True,
                user_read=True,
                user_write=True,
                user_exec=True,
            )
        if self.ttbcr & _TTBCR_EAE:
            raise NotImplementedError("TTBCR.EAE = 1 (LPAE long descriptors) is not modelled")

        table = self._l1_table(va)
        if table is None:
            raise fault(FS_TRANSLATION_SECTION, 1)
        try:
            l1 = self.read_u32(table) & _MASK32
        except PhysicalAbort as exc:
            raise fault(FS_EXT_WALK_L1, 1, ext=exc.ext) from exc
        t = l1 & 3
        if t == 0 or (t == 3 and not self.has_pxn):
            raise fault(FS_TRANSLATION_SECTION, 1)

        if t == 1:
            domain = (l1 >> 5) & 0xF
            dacc = self.domain_access(domain)
            if dacc in (0, 2):
                # QEMU order: domain checked before the L2 fetch (see module docstring).
                raise fault(FS_DOMAIN_PAGE, 2, domain)
            l2_addr = (l1 & 0xFFFFFC00) | ((va >> 10) & 0x3FC)
            try:
                l2 = self.read_u32(l2_addr) & _MASK32
            except PhysicalAbort as exc:
                raise fault(FS_EXT_WALK_L2, 2, domain, ext=exc.ext) from exc
            unit = _decode_page(l2, l1, self.has_pxn)
            if unit is None:
                raise fault(FS_TRANSLATION_PAGE, 2, domain)
            level = 2
        else:
            unit = _decode_section(l1, self.has_pxn)
            domain = unit.domain
            dacc = self.domain_access(domain)
            if dacc in (0, 2):
                raise fault(FS_DOMAIN_SECTION, 1, domain)
            level = 1

        if fetch and dacc == 1 and (unit.xn or (unit.pxn and privileged)):
            # QEMU 7.2 / Unicorn order: XN/PXN before the access flag (see module docstring).
            raise fault(FS_PERMISSION_SECTION if level == 1 else FS_PERMISSION_PAGE, level, domain)
        pr, pw, px, ur, uw, ux, af_ok = _rights(unit.ap, unit.xn, unit.pxn, dacc, self.afe)
        if not af_ok:
            raise fault(FS_ACCESS_FLAG_SECTION if level == 1 else FS_ACCESS_FLAG_PAGE, level, domain)
        if privileged:
            allowed = pw if write else (px if fetch else pr)
        else:
            allowed = uw if write else (ux if fetch else ur)
        if not allowed:
            raise fault(FS_PERMISSION_SECTION if level == 1 else FS_PERMISSION_PAGE, level, domain)

        size = unit.size
        offset = va & (size - 1)
        return Translation(
            va=va,
            pa=unit.base_pa | offset,
            kind=unit.kind,
            page_size=size,
            base_va=va - offset,
            base_pa=unit.base_pa,
            ap=unit.ap,
            xn=unit.xn,
            pxn=unit.pxn,
            domain=domain,
            tex=unit.tex,
            c=unit.c,
            b=unit.b,
            s=unit.s,
            ng=unit.ng,
            ns=unit.ns,
            tre_index=((unit.tex & 1) << 2) | (int(unit.c) << 1) | int(unit.b),
            priv_read=pr,
            priv_write=pw,
            priv_exec=px,
            user_read=ur,
            user_write=uw,
            user_exec=ux,
        )

    def try_translate(self, va: int, access: AccessKind = "read", privileged: bool = True) -> int | None:
        """Physical address for ``va``, or None when the access faults."""
        try:
            return self.translate(va, access, privileged).pa
        except MMUFault:
            return None

    # -- info mem -----------------------------------------------------------------------------
    def _attrs(self, unit: _Unit) -> MappingAttrs:
        dacc = self.domain_access(unit.domain)
        pr, pw, px, ur, uw, ux, af_ok = _rights(unit.ap, unit.xn, unit.pxn, dacc, self.afe)
        return MappingAttrs(
            priv=_perm_str(pr, pw, px),
            user=_perm_str(ur, uw, ux),
            domain=unit.domain,
            domain_access=_DOMAIN_ACCESS[dacc],
            tex=unit.tex,
            c=unit.c,
            b=unit.b,
            s=unit.s,
            ng=unit.ng,
            af=af_ok,
        )

    def _words(self, pa: int, count: int) -> tuple[int, ...] | None:
        """``count`` words from ``pa`` (bulk when ``read_phys`` is set); None on a bus error."""
        try:
            if self.read_phys is not None:
                return struct.unpack(f"<{count}I", self.read_phys(pa, 4 * count))
            return tuple(self.read_u32(pa + 4 * i) & _MASK32 for i in range(count))
        except PhysicalAbort:
            return None

    def _units(self, start: int, end: int) -> Iterator[tuple[int, int, int, MappingAttrs]]:
        """Every mapped unit slice overlapping [start, end) in VA order: (va, size, pa, attrs)."""
        n = self.ttbcr & 7
        split = (1 << (32 - n)) if n else 1 << 32
        attrs_cache: dict[_Unit, MappingAttrs] = {}

        def attrs_of(unit: _Unit) -> MappingAttrs:
            key = unit._replace(base_pa=0)
            a = attrs_cache.get(key)
            if a is None:
                a = attrs_cache[key] = self._attrs(unit)
            return a

        regions: list[tuple[int, int, int | None]] = []  # (va_lo, va_hi, table base or None)
        if start < split:
            base = None if self.ttbcr & _TTBCR_PD0 else self.ttbr0 & (~(0x3FFF >> n) & _MASK32)
            regions.append((0, split, base))
        if split < 1 << 32:
            base = None if self.ttbcr & _TTBCR_PD1 else self.ttbr1 & 0xFFFFC000
            regions.append((split, 1 << 32, base))

        for lo, hi, base in regions:
            lo_c, hi_c = max(lo, start), min(hi, end)
            if base is None or lo_c >= hi_c:
                continue
            first, last = lo_c >> 20, (hi_c - 1) >> 20
            words = self._words(base + 4 * first, last - first + 1)
            if words is None:
                continue
            for i, l1 in enumerate(words):
                slot_va = (first + i) << 20
                t = l1 & 3
                if t == 0 or (t == 3 and not self.has_pxn):
                    continue
                if t != 1:
                    unit = _decode_section(l1, self.has_pxn)
                    # One L1 entry covers 1 MiB of VA, also inside a supersection.
                    pa = unit.base_pa | (slot_va & (unit.size - 1))
                    yield slot_va, 1 << 20, pa, attrs_of(unit)
                    continue
                l2_base = l1 & 0xFFFFFC00
                j0 = (max(slot_va, lo_c) - slot_va) >> 12
                j1 = (min(slot_va + (1 << 20), hi_c) - 1 - slot_va) >> 12
                l2_words = self._words(l2_base + 4 * j0, j1 - j0 + 1)
                if l2_words is None:
                    continue
                for k, l2 in enumerate(l2_words):
                    unit = _decode_page(l2, l1, self.has_pxn)
                    if unit is None:
                        continue
                    page_va = slot_va | ((j0 + k) << 12)
                    pa = unit.base_pa | (page_va & (unit.size - 1))
                    yield page_va, 1 << 12, pa, attrs_of(unit)

    def mappings(self, start: int = 0, end: int = 1 << 32) -> Iterator[Mapping]:
        """Merged runs of mapped VA in [start, end), in VA order (QEMU ``info mem`` style).

        Adjacent units are merged when their PAs are consecutive and their attributes equal.
        Entries whose tables cannot be read (PhysicalAbort) are skipped.  With SCTLR.M = 0 the
        whole space is one identity run.
        """
        start = max(0, start)
        end = min(1 << 32, end)
        if start >= end:
            return
        if not self.m:
            full = MappingAttrs("rwx", "rwx", 0, "manager", 0, False, False, False, False, True)
            yield Mapping(start, end, start, full)
            return
        if self.ttbcr & _TTBCR_EAE:
            raise NotImplementedError("TTBCR.EAE = 1 (LPAE long descriptors) is not modelled")
        run: list[int] | None = None  # [va_start, va_end, pa_start]
        run_attrs: MappingAttrs | None = None
        for va, size, pa, attrs in self._units(start, end):
            lo, hi = max(va, start), min(va + size, end)
            pa += lo - va
            if run is not None and run[1] == lo and run_attrs == attrs and run[2] + (run[1] - run[0]) == pa:
                run[1] = hi
                continue
            if run is not None and run_attrs is not None:
                yield Mapping(run[0], run[1], run[2], run_attrs)
            run, run_attrs = [lo, hi, pa], attrs
        if run is not None and run_attrs is not None:
            yield Mapping(run[0], run[1], run[2], run_attrs)

    # -- virtual memory access ----------------------------------------------------------------
    def _chunks(self, va: int, size: int, access: AccessKind, privileged: bool) -> list[tuple[int, int, int]]:
        """Translate a range up front: list of (pa, offset in buffer, length), split per unit."""
        out: list[tuple[int, int, int]] = []
        done = 0
        while done < size:
            cur = (va + done) & _MASK32
            tr = self.translate(cur, access, privileged)
            n = min(size - done, tr.base_va + tr.page_size - cur)
            out.append((tr.pa, done, n))
            done += n
        return out

    def _ext_fault(self, va: int, access: AccessKind, privileged: bool, exc: PhysicalAbort) -> MMUFault:
        fsr = make_fsr(FS_EXT_ABORT, write=access == "write", fetch=access == "fetch", ext=exc.ext)
        return MMUFault(va & _MASK32, fsr, 0, "external", access, privileged, 0)

    def read_virtual(
        self,
        va: int,
        size: int,
        read_phys: Callable[[int, int], bytes],
        *,
        privileged: bool = True,
        access: AccessKind = "read",
    ) -> bytes:
        """Read ``size`` bytes at ``va`` as the CPU would, page by page; MMUFault on any fault."""
        parts: list[bytes] = []
        for pa, off, n in self._chunks(va, size, access, privileged):
            try:
                parts.append(read_phys(pa, n))
            except PhysicalAbort as exc:
                raise self._ext_fault(va + off, access, privileged, exc) from exc
        return b"".join(parts)

    def write_virtual(
        self,
        va: int,
        data: bytes,
        write_phys: Callable[[int, bytes], None],
        *,
        privileged: bool = True,
    ) -> None:
        """Write ``data`` at ``va``; every page is translated first, so a fault writes nothing."""
        view = memoryview(bytes(data))
        for pa, off, n in self._chunks(va, len(view), "write", privileged):
            try:
                write_phys(pa, bytes(view[off : off + n]))
            except PhysicalAbort as exc:
                raise self._ext_fault(va + off, "write", privileged, exc) from exc
