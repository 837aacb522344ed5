"""The kernel options and devices this kernel knows, with their kinds, defaults and allowed ranges.

A kernel config may only name options and devices listed here: a typo such as ``NKPT2G`` must be an
error at its file:line, not a silently ignored line that makes a later boot failure inexplicable.
Several common GENERIC options are accepted for compatibility but change nothing (``modelled=False``),
so that real FreeBSD configs parse.

Values are read as a C compiler would read the ``#define`` that config(8) writes: decimal, ``0x`` hex,
``0``-prefixed octal, C integer suffixes (``UL``), and products such as ``(12*1024*1024)``, which real
configs use for byte counts. Ranges keep every value inside the 32-bit variable the kernel stores it in.
Each default carries the FreeBSD source path it comes from.
"""

from __future__ import annotations

from collections import namedtuple
from types import MappingProxyType

from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import parse_int

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Mapping

OptionValue = bool | int | str

U32_MAX = 0xFFFF_FFFF  # u_long / vm_size_t on 32-bit arm
INT_MAX = 0x7FFF_FFFF  # int

# sys/arm/include/vmparam.h: KERNVIRTADDR, the kernel's link address; pmap-v6 KERNBASE equals it.
KERNVIRTADDR = 0xC000_0000


class OptionKind:
    """How an option's value is written and what Python type ``KernelConfig.value`` returns.
    (Plain string constants rather than an Enum: this module is on every boot's path.)"""

    FLAG = "flag"  # no value; present or not (bool)
    INT = "int"  # a plain integer (int)
    SIZE_KB = "size_kb"  # an integer count of KiB (int, in KiB)
    BYTES = "bytes"  # an integer count of bytes (int, in bytes)
    STRING = "string"  # a C string, quoted in config files (str, without the quotes)


class Option(namedtuple("Option",
                        "name kind default source help minimum maximum range_note modelled pattern "
                        "pattern_hint", defaults=(None, None, "", True, None, ""))):
    """One known kernel option: its kind, default, range and the FreeBSD source of the default."""

    __slots__ = ()

    name: str
    kind: OptionKind
    default: OptionValue | None
    source: str
    help: str
    minimum: int | None
    maximum: int | None
    range_note: str  # why the range is what it is, quoted in out-of-range messages
    modelled: bool  # False: accepted so real configs parse, but changes nothing here
    pattern: str | None  # STRING options: the value must match this (re.fullmatch)
    pattern_hint: str  # STRING options: the expected form, for the error message

    @property
    def takes_value(self) -> bool:
        return self.kind != OptionKind.FLAG

    def example_value(self) -> str:
        """A valid value as one would type it on the command line (strings unquoted)."""
        if self.kind == OptionKind.STRING:
            return self.default if isinstance(self.default, str) else "ufs:/dev/md0"
        if self.kind == OptionKind.FLAG:
            return ""
        return str(self.default if isinstance(self.default, int) else self.minimum)

    def example(self) -> str:
        """A config line that sets this option correctly, for "needs a value" messages."""
        if self.kind == OptionKind.FLAG:
            return f"options {self.name}"
        if self.kind == OptionKind.STRING:
            return f'options {self.name}=\\"{self.example_value()}\\"'
        return f"options {self.name}={self.example_value()}"

    def parse_value(self, text: str | None, *, where: str | None, quoted: bool = False) -> OptionValue:
        """Check and convert the value written after ``NAME=`` (``None`` when there is no ``=``).

        ``quoted`` says the value was a quoted string in the file (already unquoted in ``text``).
        """
        if self.kind == OptionKind.FLAG:
            if text is not None:
                raise InputError(
                    f"{self.name} is a flag and takes no value; write 'options {self.name}'", where
                )
            return True
        if text is None or (not quoted and not text.strip()):
            raise InputError(f"{self.name} needs a value, e.g. {self.example()}", where)
        if self.kind == OptionKind.STRING:
            value = text if quoted else text.strip()
            if not value:
                raise InputError(f"{self.name} needs a non-empty value, e.g. {self.example()}", where)
            if self.pattern is not None and not _matches(self.pattern, value):
                raise InputError(f'{self.name}="{value}" is not valid: {self.pattern_hint}', where)
            return value
        if quoted:
            raise InputError(f'{self.name} needs a number, not the quoted string "{text}"', where)
        number = parse_c_integer(text, name=self.name, where=where)
        self.check_range(number, text=text.strip(), where=where)
        return number

    def check_range(self, value: int, *, text: str | None = None, where: str | None) -> None:
        """Raise InputError naming the range when ``value`` is outside it."""
        lo = self.minimum if self.minimum is not None else 0
        hi = self.maximum if self.maximum is not None else U32_MAX
        if lo <= value <= hi:
            return
        if value.bit_length() > 64:  # far out of range: printing it could be huge
            shown = text if text is not None else "a value over 64 bits"
        elif text is None or text == str(value):
            shown = str(value)
        else:
            shown = f"{text} (= {value})"
        note = f" ({self.range_note})" if self.range_note else ""
        raise InputError(
            f"{self.name}={shown} is out of range: it must be between {lo} and {hi}{note}", where
        )


def _flag(name: str, source: str, help_text: str, *, modelled: bool = True) -> Option:
    return Option(name, OptionKind.FLAG, False, source, help_text, modelled=modelled)


_COMPAT = "accepted so that FreeBSD configs parse; no effect in armboard"

_OPTION_LIST: tuple[Option, ...] = (
    # -- early boot: locore and pmap-v6 ----------------------------------------------------------
    Option(
        "LOCORE_MAP_MB", OptionKind.INT, 64,
        "sys/arm/arm/locore-v6.S; option in sys/conf/options.arm",
        "MiB mapped at KERNVIRTADDR by locore; must cover the kernel and every preloaded module",
        minimum=1, maximum=1023,
        range_note="the window from KERNVIRTADDR 0xC0000000 must end below the high vector page 0xFFFF0000",
    ),
    Option(
        "NKPT2PG", OptionKind.INT, 32,
        "sys/arm/include/pmap-v6.h; option in sys/conf/options.arm (opt_pmap.h)",
        "L2 page-table pages preallocated for kernel VA; each maps 4 MiB",
        minimum=1, maximum=256,
        range_note="each page maps 4 MiB of KVA and 256 pages cover all 1 GiB of it",
    ),
    Option(
        "KERNVIRTADDR", OptionKind.INT, KERNVIRTADDR,
        "sys/arm/include/vmparam.h; option in sys/conf/options.arm",
        "the kernel's virtual link address",
        minimum=KERNVIRTADDR, maximum=KERNVIRTADDR,
        range_note="armboard's kernel is linked at 0xC0000000",
    ),
    # -- md(4) root: sys/dev/md/md.c, options in sys/conf/options (opt_md.h) ------------------------
    _flag("MD_ROOT", "sys/dev/md/md.c; sys/conf/options (opt_md.h)",
          "the first md image (embedded or preloaded) becomes the root device"),
    _flag("MD_ROOT_READONLY", "sys/dev/md/md.c; sys/conf/options (opt_md.h)",
          "the md root device is read-only (MD_READONLY)"),
    Option(
        "MD_ROOT_SIZE", OptionKind.SIZE_KB, None,
        "sys/dev/md/md.c: u_char mfs_root[MD_ROOT_SIZE*1024]; sys/conf/options (opt_md.h)",
        "KiB reserved in the kernel image for an embedded root image (makeoptions MFS_IMAGE)",
        minimum=1, maximum=1 << 20,
        range_note="the size is in KiB and at most 1 GiB, the whole kernel address space",
    ),
    Option(
        "MD_ROOT_FSTYPE", OptionKind.STRING, "ufs",
        'sys/dev/md/md.c: #define MD_ROOT_FSTYPE "ufs"; sys/conf/options (opt_md.h)',
        "the file system type of the md root image",
        pattern=r"[A-Za-z0-9_]+", pattern_hint="the file system type is one word such as ufs or cd9660",
    ),
    Option(
        "ROOTDEVNAME", OptionKind.STRING, None,
        "sys/kern/vfs_mountroot.c; sys/conf/options (opt_rootdevname.h)",
        "the root device tried first, inserted verbatim in the mountroot list",
        pattern=r"[A-Za-z0-9_]+:\S.*", pattern_hint="it must look like fstype:device, e.g. ufs:/dev/md0",
    ),
    # -- kmem sizing: sys/kern/kern_malloc.c kmeminit, arm defaults in sys/arm/include/vmparam.h ----
    Option(
        "VM_KMEM_SIZE", OptionKind.BYTES, None,
        "sys/kern/kern_malloc.c (kmeminit); arm defines none in sys/arm/include/vmparam.h",
        "a fixed kmem size in bytes instead of the scaled one",
        minimum=1, maximum=U32_MAX, range_note="vm_kmem_size is a 32-bit u_long on arm",
    ),
    Option(
        "VM_KMEM_SIZE_SCALE", OptionKind.INT, 3,
        "sys/arm/include/vmparam.h: #define VM_KMEM_SIZE_SCALE (3)",
        "physical pages per page of kmem KVA",
        minimum=1, maximum=INT_MAX, range_note="kmeminit divides the page count by this int",
    ),
    Option(
        "VM_KMEM_SIZE_MIN", OptionKind.BYTES, 12 * 1024 * 1024,
        "sys/arm/include/vmparam.h: #define VM_KMEM_SIZE_MIN (12 * 1024 * 1024)",
        "the smallest kmem size in bytes (0: no minimum)",
        minimum=0, maximum=U32_MAX, range_note="vm_kmem_size_min is a 32-bit u_long on arm",
    ),
    Option(
        "VM_KMEM_SIZE_MAX", OptionKind.BYTES, None,
        "sys/arm/include/vmparam.h: 2/5 of the kernel map, computed at boot when not set",
        "the largest kmem size in bytes",
        minimum=1, maximum=U32_MAX, range_note="vm_kmem_size_max is a 32-bit u_long on arm",
    ),
    # -- debugging: sys/conf/options -----------------------------------------------------------------
    _flag("INVARIANTS", "sys/conf/options (opt_global.h)", "enable KASSERT checks"),
    _flag("INVARIANT_SUPPORT", "sys/conf/options (opt_global.h)", "compile in support for INVARIANTS"),
    _flag("WITNESS", "sys/conf/options (opt_witness.h)", "lock-order checking", modelled=False),
    _flag("WITNESS_SKIPSPIN", "sys/conf/options (opt_witness.h)", _COMPAT, modelled=False),
    _flag("DDB", "sys/conf/options (opt_ddb.h)", "in-kernel debugger", modelled=False),
    _flag("KDB", "sys/conf/options (opt_kdb.h)", "kernel debugger framework", modelled=False),
    _flag("KDB_TRACE", "sys/conf/options (opt_kdb.h)", _COMPAT, modelled=False),
    _flag("GDB", "sys/conf/options (opt_gdb.h)", "remote gdb backend", modelled=False),
    _flag("DIAGNOSTIC", "sys/conf/options (opt_global.h)", _COMPAT, modelled=False),
    _flag("ALT_BREAK_TO_DEBUGGER", "sys/conf/options (opt_kdb.h)", _COMPAT, modelled=False),
    _flag("VERBOSE_SYSINIT", "sys/conf/options (opt_global.h)", "print each SYSINIT as mi_startup runs it"),
    # -- file systems and GEOM classes compiled in ---------------------------------------------------
    _flag("FFS", "sys/conf/options (opt_ffs.h)", "the UFS/FFS file system"),
    _flag("TMPFS", "sys/conf/options", "the tmpfs file system"),
    _flag("CD9660", "sys/conf/options", "the ISO 9660 file system"),
    _flag("GEOM_MAP", "sys/conf/options (opt_geom.h)", "the geom_map class (also: device geom_map)"),
    _flag("GEOM_UZIP", "sys/conf/options (opt_geom.h)", "the geom_uzip class (also: device geom_uzip)"),
    _flag("GEOM_UNCOMPRESS", "sys/conf/options (opt_geom.h)",
          "the geom_uncompress class (also: device geom_uncompress)"),
    # -- common GENERIC lines accepted for compatibility ---------------------------------------------
    *(
        _flag(name, source, _COMPAT, modelled=False)
        for name, source in (
            ("SCHED_ULE", "sys/conf/options (opt_sched.h)"),
            ("PREEMPTION", "sys/conf/options"),
            ("INET", "sys/conf/options (opt_inet.h)"),
            ("INET6", "sys/conf/options (opt_inet6.h)"),
            ("SOFTUPDATES", "sys/conf/options (opt_ffs.h)"),
            ("UFS_ACL", "sys/conf/options (opt_ufs.h)"),
            ("UFS_DIRHASH", "sys/conf/options (opt_ufs.h)"),
            ("MSDOSFS", "sys/conf/options"),
            ("PSEUDOFS", "sys/conf/options"),
            ("PROCFS", "sys/conf/options"),
            ("NFSCL", "sys/conf/options"),
            ("NFS_ROOT", "sys/conf/options (opt_nfsroot.h)"),
            ("GEOM_PART_BSD", "sys/conf/options (opt_geom.h)"),
            ("GEOM_PART_MBR", "sys/conf/options (opt_geom.h)"),
            ("GEOM_PART_GPT", "sys/conf/options (opt_geom.h)"),
            ("GEOM_LABEL", "sys/conf/options (opt_geom.h)"),
            ("KTRACE", "sys/conf/options"),
            ("SYSVSHM", "sys/conf/options (opt_sysvipc.h)"),
            ("SYSVMSG", "sys/conf/options (opt_sysvipc.h)"),
            ("SYSVSEM", "sys/conf/options (opt_sysvipc.h)"),
            ("_KPOSIX_PRIORITY_SCHEDULING", "sys/conf/options (opt_posix.h)"),
            ("COMPAT_FREEBSD11", "sys/conf/options"),
            ("SMP", "sys/conf/options (opt_global.h)"),
            ("VFP", "sys/conf/options.arm"),
            ("FDT", "sys/conf/options (opt_platform.h)"),
            ("PLATFORM", "sys/conf/options.arm"),
            ("INTRNG", "sys/conf/options"),
            ("LINUX_BOOT_ABI", "sys/conf/options.arm (armboard's kernel always accepts both boot ABIs)"),
        )
    ),
)

OPTIONS: Mapping[str, Option] = MappingProxyType({opt.name: opt for opt in _OPTION_LIST})

# Devices a `device NAME` line may name, with what each provides here.
DEVICES: Mapping[str, str] = MappingProxyType({
    "md": "memory disks, md(4)",
    "uart": "serial console driver",
    "pl011": "the PL011 UART",
    "cfi": "CFI NOR flash controller",
    "cfid": "CFI flash disk",
    "geom_map": "geom_map(4): fixed or searched flash partitions from hints",
    "geom_uzip": "compressed read-only images (mkuzip)",
    "geom_uncompress": "compressed read-only images (older releases)",
    "mem": "/dev/mem and /dev/kmem, mem(4)",
    "tmpfs": "the tmpfs file system",
    "random": _COMPAT,
    "loop": _COMPAT,
    "ether": _COMPAT,
    "bpf": _COMPAT,
    "pty": _COMPAT,
})

# A device and the option that compiles in the same code: FreeBSD configs use either spelling.
DEVICE_OPTION_ALIASES: Mapping[str, str] = MappingProxyType({
    "geom_map": "GEOM_MAP",
    "geom_uzip": "GEOM_UZIP",
    "geom_uncompress": "GEOM_UNCOMPRESS",
    "tmpfs": "TMPFS",
})

# Names people write as options that are something else, with what to write instead.
_NOT_OPTIONS: Mapping[str, str] = MappingProxyType({
    "BOOTVERBOSE": 'bootverbose is a loader tunable; set boot_verbose="YES" in loader.conf',
    "BOOT_VERBOSE": 'bootverbose is a loader tunable; set boot_verbose="YES" in loader.conf',
    "MFS_IMAGE": "MFS_IMAGE is a make option; write 'makeoptions MFS_IMAGE=path'",
    "UFS": "UFS is compiled in with 'options FFS'",
})
_NOT_DEVICES: Mapping[str, str] = MappingProxyType({
    "ufs": "UFS is compiled in with 'options FFS'",
    "ffs": "UFS is compiled in with 'options FFS'",
})


def _did_you_mean(name: str, known: Mapping[str, object]) -> str:
    """"; did you mean X?" for the closest known name, or nothing."""
    import difflib  # only on the error path: it is slow to import

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def lookup_option(name: str, *, where: str | None) -> Option:
    """The registry entry for ``name``, or an InputError that suggests what was meant."""
    opt = OPTIONS.get(name)
    if opt is not None:
        return opt
    if name in _NOT_OPTIONS:
        raise InputError(f"unknown option {name}: {_NOT_OPTIONS[name]}", where)
    if name in DEVICES:
        raise InputError(f"unknown option {name}: {name} is a device; write 'device {name}'", where)
    if name.upper() in OPTIONS:
        raise InputError(
            f"unknown option {name}: option names are case-sensitive; did you mean {name.upper()}?", where
        )
    raise InputError(f"unknown option {name}{_did_you_mean(name, OPTIONS)}", where)


def check_device(name: str, *, where: str | None) -> str:
    """Return ``name`` if it is a known device, else raise an InputError that suggests what was meant."""
    if name in DEVICES:
        return name
    if name in _NOT_DEVICES:
        raise InputError(f"unknown device {name}: {_NOT_DEVICES[name]}", where)
    if name in OPTIONS:
        raise InputError(f"unknown device {name}: {name} is an option; write 'options {name}'", where)
    if name.lower() in DEVICES:
        raise InputError(
            f"unknown device {name}: device names are case-sensitive; did you mean {name.lower()}?", where
        )
    raise InputError(f"unknown device {name}{_did_you_mean(name, DEVICES)}", where)


def _matches(pattern: str, value: str) -> bool:
    """re.fullmatch, imported only for the few STRING options that carry a pattern."""
    import re

    return re.fullmatch(pattern, value) is not None


# The suffixes a C integer constant may carry: U and L, LL in either order (case as C allows).
_C_SUFFIXES = frozenset(u + ll for u in ("", "u", "U") for ll in ("", "l", "L", "ll", "LL")) | frozenset(
    ll + u for u in ("u", "U") for ll in ("l", "L", "ll", "LL"))
_WORD_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def _c_tokens(body: str) -> list[tuple[str, str]] | None:
    """("num", literal) and ("op", "(" | ")" | "*") tokens, blanks skipped; None at any other character."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch.isspace():
            i += 1
        elif ch in "()*":
            tokens.append(("op", ch))
            i += 1
        elif "0" <= ch <= "9":
            j = i + 1
            while j < n and body[j] in _WORD_CHARS:
                j += 1
            tokens.append(("num", body[i:j]))
            i = j
        else:
            return None
    return tokens


def _strip_c_suffix(literal: str) -> str:
    """The digits of a C constant without its U/L suffix (parse_int checks what is left)."""
    for k in (3, 2, 1):
        if len(literal) > k and literal[-k:] in _C_SUFFIXES and literal[-k - 1] not in "uUlL":
            return literal[:-k]
    return literal


_INT_FORMS = "use decimal, 0x hexadecimal, or a product like (12*1024*1024)"


def parse_c_integer(text: str, *, name: str, where: str | None) -> int:
    """Evaluate an option value the way the C compiler would see it: an integer or a product of them.

    Grammar: ``expr := factor ('*' factor)*``, ``factor := INTEGER | '(' expr ')'``, with an optional
    leading ``-`` (so a negative value is reported as out of range, not as garbage). ``name`` is the
    option, quoted in messages as ``NAME=text``.
    """
    source = text.strip()
    if not source:
        raise InputError(f"{name} needs a value", where)
    negative = source.startswith("-")
    body = source[1:] if negative else source
    tokens = _c_tokens(body)
    if tokens is None:
        raise InputError(f"{name}={source} is not an integer: {_INT_FORMS}", where)

    def bad(detail: str) -> InputError:
        return InputError(f"{name}={source} is not an integer ({detail}): {_INT_FORMS}", where)

    def number(literal: str) -> int:
        digits = _strip_c_suffix(literal)
        try:
            return parse_int(digits)
        except InputError as exc:
            raise bad(exc.message) from None

    def factor(i: int) -> tuple[int, int]:
        if i >= len(tokens):
            raise bad("it ends where a number was expected")
        kind, tok = tokens[i]
        if kind == "num":
            return number(tok), i + 1
        if tok == "(":
            value, i = expr(i + 1)
            if i >= len(tokens) or tokens[i][1] != ")":
                raise bad("a '(' is not closed")
            return value, i + 1
        raise bad(f"unexpected '{tok}'")

    def expr(i: int) -> tuple[int, int]:
        value, i = factor(i)
        while i < len(tokens) and tokens[i][1] == "*":
            rhs, i = factor(i + 1)
            value *= rhs
        return value, i

    value, end = expr(0)
    if end != len(tokens):
        raise bad(f"unexpected '{tokens[end][1]}'")
    return -value if negative else value
