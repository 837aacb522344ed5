"""The binary interface between the Python side and the guest boot code (mirrors armboard.h)."""

from __future__ import annotations

import struct
from collections import namedtuple

KERNVIRTADDR = 0xC0000000   # sys/arm/include/vmparam.h
KERNBASE = KERNVIRTADDR
PAGE_SIZE = 4096            # sys/arm/include/param.h
KSTACK_PAGES = 2            # sys/arm/include/param.h: a thread's kernel stack
KSTACK_GUARD_PAGES = 1      # sys/arm/include/param.h: the unmapped page below it
MIB = 1 << 20
PT2PG_SPAN = 4 * MIB        # one page of L2 tables maps 4 MiB (sys/arm/include/pmap_var.h NPT2_IN_PG)
PT2MAP = KERNBASE - 4 * MIB  # sys/arm/include/pmap_var.h

HC_HANDOVER, HC_PANIC, HC_FATAL = 1, 2, 3
ABI_NAMES = {1: "FreeBSD", 2: "Linux", 3: "none"}

CONFIG_MAGIC = 0x46434241  # "ABCF"
CONFIG_VERSION = 1
CONFIG_FORMAT = "<8I8I"


class GuestConfig(namedtuple("GuestConfig", "locore_map_mb nkpt2pg invariants kernel_end uart_pa uart_devmap_va")):
    """What the configure step writes into the kernel's .armboard_config section. (The records of
    this module are namedtuples: it is on every boot's path, and dataclasses costs an import there.)"""

    __slots__ = ()

    def pack(self) -> bytes:
        return struct.pack(CONFIG_FORMAT, CONFIG_MAGIC, CONFIG_VERSION, self.locore_map_mb, self.nkpt2pg,
                           int(self.invariants), self.kernel_end, self.uart_pa, self.uart_devmap_va,
                           *([0] * 8))


HANDOFF_FIELDS = (
    "version", "abi", "boot_r0", "boot_r1", "boot_r2", "boot_r3", "physaddr", "boot_pt1", "metadata",
    "kernend", "envp", "howto", "dtbp", "kern_pt1", "kern_pt2tab", "pt2pg_pa", "nkpt2pg", "kernel_vm_end",
    "mapped_end", "first_free_pa", "extra_pt2pg", "devmap_va", "uart_va", "nmodules",
)
MAX_MODULES = 16
HANDOFF_SIZE = 4 * len(HANDOFF_FIELDS) + 16 * MAX_MODULES


class GuestModule(namedtuple("GuestModule", "name type addr size")):
    """A module initarm found in the preload metadata."""

    __slots__ = ()


class Handoff(namedtuple("Handoff", "fields modules")):
    """struct handoff: what initarm and pmap_bootstrap found and built (`fields` by name, and
    the GuestModules); each field reads as an attribute too (handoff.kernend)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> int:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


def unpack_handoff(raw: bytes, read_string) -> Handoff:
    """Decode struct handoff; read_string(va) reads a NUL-terminated guest string."""
    values = struct.unpack_from(f"<{len(HANDOFF_FIELDS)}I", raw)
    fields = dict(zip(HANDOFF_FIELDS, values, strict=True))
    modules = []
    for i in range(min(fields["nmodules"], MAX_MODULES)):
        name, typ, addr, size = struct.unpack_from("<4I", raw, 4 * len(HANDOFF_FIELDS) + 16 * i)
        modules.append(GuestModule(read_string(name) if name else "?", read_string(typ) if typ else "?",
                                   addr, size))
    return Handoff(fields, tuple(modules))


FATAL_KINDS = {1: "data abort", 2: "prefetch abort", 3: "undefined instruction", 4: "svc", 5: "exception"}
