"""kmeminit as FreeBSD 11.3 runs it on arm: how big the kmem arena is, and why.

Why a separate module: the size is pure arithmetic on the page count, the kernel options and the loader
tunables, and users ask for exactly that arithmetic ("v_page_count / scale * PAGE_SIZE = ..., raised to
MIN ..., capped to MAX ..."), so the result keeps every term and where each value came from.

The algorithm (sys/kern/kern_malloc.c kmeminit; in 11.3 the vm.kmem_size* tunables are CTLFLAG_RDTUN
sysctls, fetched from the kernel environment before kmeminit runs):

1. vm_kmem_size, vm_kmem_size_min, vm_kmem_size_max: the loader tunable if it is non-zero, else the
   kernel option if the config defines it, else arm's default (sys/arm/include/vmparam.h). A tunable of 0
   means "not set" because kmeminit only fills in a zero variable.
2. vm_kmem_size_scale: the tunable if >= 1, else VM_KMEM_SIZE_SCALE ("if (vm_kmem_size_scale < 1)").
3. If vm_kmem_size is 0: (v_page_count / scale) pages, times PAGE_SIZE in 32-bit u_long arithmetic
   (on overflow the source takes vm_kmem_size_max), raised to MIN when MIN > 0 and the size is below it,
   then capped to MAX when MAX > 0 and the size is >= MAX.
4. Still 0: panic("Tune VM_KMEM_SIZE_* for the platform").
5. Capped to twice the page count: if vm_kmem_size / 2 / PAGE_SIZE > v_page_count, it becomes
   2 * v_page_count * PAGE_SIZE. (The source compares with v_page_count, not with hw.physmem.)
6. round_page. In 11.3 kmeminit then reserves that much KVA for the kmem arena (kva_alloc + vmem_init):
   kva_layout.py allocates it.
"""

from __future__ import annotations

from collections import namedtuple

from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import parse_int

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Mapping

PAGE_SIZE = 4096                      # sys/arm/include/param.h
U_LONG_MAX = 0xFFFF_FFFF              # u_long is 32 bits on arm (sys/arm/include/_types.h)
VM_MIN_KERNEL_ADDRESS = 0xC000_0000   # sys/arm/include/vmparam.h: VM_MIN_KERNEL_ADDRESS = KERNBASE
VM_KMEM_SIZE_SCALE = 3                # sys/arm/include/vmparam.h: #define VM_KMEM_SIZE_SCALE (3)
VM_KMEM_SIZE_MIN = 12 * 1024 * 1024   # sys/arm/include/vmparam.h: #define VM_KMEM_SIZE_MIN (12 * 1024 * 1024)
KMEM_ZMAX_SMALL_PAGES = 32768         # sys/kern/kern_malloc.c kmeminit: "if (mem_size <= 32768) kmem_zmax = PAGE_SIZE"
TUNE_PANIC = "Tune VM_KMEM_SIZE_* for the platform"  # sys/kern/kern_malloc.c kmeminit

# The loader tunable and the kernel option behind each kmeminit variable.
TUNABLES = {"size": "vm.kmem_size", "scale": "vm.kmem_size_scale", "min": "vm.kmem_size_min",
            "max": "vm.kmem_size_max"}
OPTIONS = {"size": "VM_KMEM_SIZE", "scale": "VM_KMEM_SIZE_SCALE", "min": "VM_KMEM_SIZE_MIN",
           "max": "VM_KMEM_SIZE_MAX"}
DEFAULT_SOURCE = "default (sys/arm/include/vmparam.h)"

# getenv_ulong/getenv_quad (sys/kern/kern_environment.c): a strtoq base-0 number and one optional
# k/m/g/t suffix, case-insensitive, in powers of 1024.
_SHIFTS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_HEX, _DEC = frozenset("0123456789abcdefABCDEF"), frozenset("0123456789")


def _split_tunable(text: str) -> tuple[str, str] | None:
    """(number, suffix) of `[+-](0x<hex>|<decimal>)[kmgt]` with blanks around, else None."""
    body = text.strip()
    suffix = body[-1:].lower() if body[-1:].lower() in "kmgt" and body[-1:] else ""
    number = body[:-1] if suffix else body
    digits = number[1:] if number[:1] in "+-" else number
    if digits[:2] in ("0x", "0X"):
        ok = len(digits) > 2 and set(digits[2:]) <= _HEX
    else:
        ok = bool(digits) and set(digits) <= _DEC
    return (number, suffix) if ok else None


def round_page(x: int) -> int:
    """round_page on a 32-bit u_long (wraps as the C macro does)."""
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & U_LONG_MAX


def vm_kmem_size_max_default(kernel_map_size: int) -> int:
    """arm's VM_KMEM_SIZE_MAX: ((vm_max_kernel_address - VM_MIN_KERNEL_ADDRESS + 1) * 2 / 5), 40% of the
    kernel map (sys/arm/include/vmparam.h)."""
    return ((kernel_map_size + 1) * 2 // 5) & U_LONG_MAX


def parse_tunable(value: int | str, where: str) -> int:
    """A loader tunable's value as getenv_ulong reads it ("400M", "0x1000", 12582912)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"expected a number, got {value!r}", where)
    if isinstance(value, int):
        n = value
    else:
        parts = _split_tunable(value)
        if parts is None:
            raise InputError(f"{value!r} is not a number (decimal, 0x hexadecimal, with an optional "
                             f"k/m/g/t suffix)", where)
        n = parse_int(parts[0], where=where) << _SHIFTS[parts[1]]
    if n < 0 or n > U_LONG_MAX:
        raise InputError(f"{value} is out of range: the kernel keeps it in a 32-bit u_long "
                         f"(0..{U_LONG_MAX})", where)
    return n


class KmemValue(namedtuple("KmemValue", "value source where")):
    """One input of the formula: its value and where it came from."""

    __slots__ = ()

    value: int
    source: str  # "tunable vm.kmem_size_min", "options VM_KMEM_SIZE_MIN", "default (...)", "unset"
    where: str  # the name a user changes: "vm.kmem_size_min" or "options VM_KMEM_SIZE_MIN"


class KmemResult(namedtuple("KmemResult",
                            "vm_kmem_size v_page_count physmem kernel_map_size fixed scale size_min size_max "
                            "scaled_pages scaled overflowed raised_to_min capped_to_max before_cap2x cap2x "
                            "capped_to_2x before_round kmem_zmax_page panic notes", defaults=((),))):
    """vm_kmem_size and every term of kmeminit's formula."""

    __slots__ = ()

    vm_kmem_size: int
    v_page_count: int
    physmem: int
    kernel_map_size: int
    fixed: KmemValue  # vm.kmem_size / VM_KMEM_SIZE; value 0 when neither is set
    scale: KmemValue
    size_min: KmemValue
    size_max: KmemValue
    scaled_pages: int | None  # v_page_count / scale (None when the size was fixed)
    scaled: int | None  # scaled_pages * PAGE_SIZE (32-bit), None when fixed
    overflowed: bool  # the 32-bit product wrapped, so the source took vm_kmem_size_max
    raised_to_min: bool
    capped_to_max: bool
    before_cap2x: int
    cap2x: int  # 2 * v_page_count * PAGE_SIZE (the "twice physical memory" cap)
    capped_to_2x: bool
    before_round: int
    kmem_zmax_page: bool  # v_page_count <= 32768: malloc(9) uses UMA only up to PAGE_SIZE
    panic: str | None  # TUNE_PANIC when the size came out 0
    notes: tuple[str, ...]

    @property
    def from_scale(self) -> bool:
        """Whether the size was computed from the scale (no vm.kmem_size / VM_KMEM_SIZE)."""
        return self.fixed.value == 0

    def steps(self) -> tuple[str, ...]:
        """The arithmetic, one line per step, for `armboard plan`."""
        out: list[str] = []
        if self.from_scale:
            out.append(f"v_page_count / scale * PAGE_SIZE = {self.v_page_count} / {self.scale.value} * "
                       f"{PAGE_SIZE} = {self.scaled_pages} * {PAGE_SIZE} = {self.scaled} "
                       f"(scale {self.scale.value}: {self.scale.source})")
            if self.overflowed:
                out.append(f"the product overflows 32 bits, so kmeminit takes vm_kmem_size_max = "
                           f"{self.size_max.value}")
            if self.raised_to_min:
                out.append(f"raised to MIN {self.size_min.value} ({self.size_min.source})")
            if self.capped_to_max:
                out.append(f"capped to MAX {self.size_max.value} ({self.size_max.source})")
        else:
            out.append(f"vm_kmem_size = {self.fixed.value} ({self.fixed.source}); the scale, MIN and MAX "
                       f"are not applied")
        if self.capped_to_2x:
            out.append(f"capped to twice the page count: 2 * {self.v_page_count} * {PAGE_SIZE} = {self.cap2x}")
        if self.before_round != self.vm_kmem_size:
            out.append(f"round_page({self.before_round}) = {self.vm_kmem_size}")
        if self.panic:
            out.append(f"panic: {self.panic}")
        else:
            out.append(f"vm_kmem_size = {self.vm_kmem_size} ({self.vm_kmem_size / (1 << 20):.1f} MiB)")
        out.extend(self.notes)
        return tuple(out)


def _pick(kind: str, tunables: Mapping[str, int | str], options: Mapping[str, int | None],
          default: int | None) -> KmemValue:
    """Tunable if non-zero, else the option if defined, else the default: kmeminit's precedence."""
    tname, oname = TUNABLES[kind], OPTIONS[kind]
    if tname in tunables:
        value = parse_tunable(tunables[tname], tname)
        if value != 0:
            return KmemValue(value, f"tunable {tname}", tname)
    if options.get(oname) is not None:
        value = options[oname]
        where = f"options {oname}"
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U_LONG_MAX:
            raise InputError(f"{oname}={value} is out of range: the kernel keeps it in a 32-bit u_long", where)
        return KmemValue(value, where, where)
    if default is None:
        return KmemValue(0, "unset", tname)
    return KmemValue(default, DEFAULT_SOURCE, tname)


def _scale(tunables: Mapping[str, int | str], options: Mapping[str, int | None], strict: bool,
           notes: list[str]) -> KmemValue:
    opt = options.get("VM_KMEM_SIZE_SCALE")
    compiled = KmemValue(VM_KMEM_SIZE_SCALE, DEFAULT_SOURCE, "vm.kmem_size_scale")
    if opt is not None:
        where = "options VM_KMEM_SIZE_SCALE"
        if isinstance(opt, bool) or not isinstance(opt, int) or opt < 1:
            # sys/kern/kern_malloc.c: CTASSERT(VM_KMEM_SIZE_SCALE >= 1): the kernel would not compile.
            raise InputError(f"VM_KMEM_SIZE_SCALE={opt} is not allowed: it must be 1 or more "
                             f"(kern_malloc.c asserts VM_KMEM_SIZE_SCALE >= 1)", where)
        if opt > U_LONG_MAX:
            raise InputError(f"VM_KMEM_SIZE_SCALE={opt} does not fit in 32 bits", where)
        compiled = KmemValue(opt, where, where)
    name = TUNABLES["scale"]
    if name not in tunables:
        return compiled
    value = parse_tunable(tunables[name], name)
    if value >= 1:
        return KmemValue(value, f"tunable {name}", name)
    if strict:
        raise InputError(f"{name}={tunables[name]} is less than 1: FreeBSD ignores it and uses "
                         f"VM_KMEM_SIZE_SCALE={compiled.value}; remove it or give a scale of 1 or more", name)
    notes.append(f"{name}={tunables[name]} is less than 1, so kmeminit uses VM_KMEM_SIZE_SCALE={compiled.value}")
    return compiled


def kmeminit(*, v_page_count: int, physmem: int, kernel_map_size: int,
             options: Mapping[str, int | None] | None = None,
             tunables: Mapping[str, int | str] | None = None,
             strict: bool = True) -> KmemResult:
    """Compute vm_kmem_size as FreeBSD 11.3 kmeminit does on arm.

    `options` holds the kernel options the config sets (absent or None: not defined); `tunables` the
    kernel environment (values as strings or ints). `kernel_map_size` is vm_max_kernel_address -
    VM_MIN_KERNEL_ADDRESS. With `strict` (the default) a vm.kmem_size_scale below 1, which FreeBSD
    silently ignores, is an input error; without it the FreeBSD fallback is applied and noted.
    """
    options = options or {}
    tunables = tunables or {}
    if not isinstance(v_page_count, int) or not 0 < v_page_count <= U_LONG_MAX // PAGE_SIZE + 1:
        raise InputError(f"v_page_count {v_page_count} must be between 1 and {U_LONG_MAX // PAGE_SIZE + 1}",
                         "vm.stats.vm.v_page_count")
    if physmem <= 0 or physmem % PAGE_SIZE or physmem > U_LONG_MAX + 1:
        raise InputError(f"physical memory {physmem} must be a positive multiple of the page size "
                         f"({PAGE_SIZE}) and at most 4 GiB", "hw.physmem")
    if not 0 < kernel_map_size <= U_LONG_MAX:
        raise InputError(f"kernel map size {kernel_map_size} must be positive and fit in 32 bits",
                         "vm_max_kernel_address")
    notes: list[str] = []
    fixed = _pick("size", tunables, options, None)
    scale = _scale(tunables, options, strict, notes)
    size_min = _pick("min", tunables, options, VM_KMEM_SIZE_MIN)
    size_max = _pick("max", tunables, options, vm_kmem_size_max_default(kernel_map_size))
    if size_min.value and size_max.value and size_min.value > size_max.value:
        raise InputError(f"the minimum kmem size {size_min.value} ({size_min.source}) is larger than the "
                         f"maximum {size_max.value} ({size_max.source}); lower the minimum to at most "
                         f"{size_max.value}", size_min.where)

    size = fixed.value
    scaled_pages = scaled = None
    overflowed = raised = capped = False
    if size == 0:
        scaled_pages = v_page_count // scale.value
        scaled = (scaled_pages * PAGE_SIZE) & U_LONG_MAX
        overflowed = scaled < scaled_pages   # the source's own test of the wrapped product
        size = size_max.value if overflowed else scaled
        if size_min.value > 0 and size < size_min.value:
            size, raised = size_min.value, True
        if size_max.value > 0 and size >= size_max.value:
            size, capped = size_max.value, True
    panic = TUNE_PANIC if size == 0 else None
    before_cap2x = size
    cap2x = (2 * v_page_count * PAGE_SIZE) & U_LONG_MAX
    capped_to_2x = size // 2 // PAGE_SIZE > v_page_count
    if capped_to_2x:
        size = cap2x
    before_round = size
    size = round_page(size)
    return KmemResult(
        vm_kmem_size=size, v_page_count=v_page_count, physmem=physmem, kernel_map_size=kernel_map_size,
        fixed=fixed, scale=scale, size_min=size_min, size_max=size_max, scaled_pages=scaled_pages,
        scaled=scaled, overflowed=overflowed, raised_to_min=raised, capped_to_max=capped,
        before_cap2x=before_cap2x, cap2x=cap2x, capped_to_2x=capped_to_2x, before_round=before_round,
        kmem_zmax_page=v_page_count <= KMEM_ZMAX_SMALL_PAGES, panic=panic, notes=tuple(notes),
    )


def kmem_size_for_scale(result: KmemResult, scale: int) -> int:
    """vm_kmem_size if the same inputs used `scale` instead (no vm.kmem_size/VM_KMEM_SIZE applies)."""
    pages = result.v_page_count // scale
    product = (pages * PAGE_SIZE) & U_LONG_MAX
    size = result.size_max.value if product < pages else product
    if result.size_min.value > 0 and size < result.size_min.value:
        size = result.size_min.value
    if result.size_max.value > 0 and size >= result.size_max.value:
        size = result.size_max.value
    if size // 2 // PAGE_SIZE > result.v_page_count:
        size = result.cap2x
    return round_page(size)
