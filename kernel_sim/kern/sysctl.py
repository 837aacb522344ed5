"""A sysctl(3) MIB tree: how the kernel's figures reach the monitor's `sysctl NAME`.

Why: FreeBSD exposes the figures users tune by (vm.kmem_size, vm.kvm_free, ...) as sysctls, and users
compare them with a real system, so names, types, read-only flags, descriptions (`sysctl -d`) and the
`name: value` lines of sysctl(8) follow FreeBSD (sys/kern/kern_sysctl.c, sbin/sysctl/sysctl.c).

Errors carry the errno FreeBSD returns: ENOENT for an unknown name, EPERM for writing a read-only OID or
a read-only tunable (CTLFLAG_RDTUN), EISDIR for reading or writing a node as a value, EINVAL for a
value of the wrong type or range. Children list in OID-number order: well-known numbers first
(CTL_KERN 1, CTL_VM 2, ..., HW_PHYSMEM 5), then OID_AUTO ones (from 0x100) in registration order,
as sysctl_register_oid numbers them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

from kernel_sim.errnos import NUMBER as ERRNO
from kernel_sim.errors import InputError
from kernel_sim.loader.sizes import parse_int
from kernel_sim.record import Record

if TYPE_CHECKING:
    from kernel_sim.vm.kmem import KmemResult
    from kernel_sim.vm.kva_layout import KvaLayout

Kind = Literal["node", "int", "uint", "long", "ulong", "string", "opaque"]
Value = int | str

CTL_AUTO_START = 0x100  # sys/sys/sysctl.h: first OID_AUTO number
# Ranges of the C types on 32-bit arm (long and u_long are 32 bits).
_RANGES: dict[str, tuple[int, int]] = {
    "int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 31), (1 << 31) - 1),
    "uint": (0, (1 << 32) - 1), "ulong": (0, (1 << 32) - 1),
}
# sys/sys/sysctl.h top-level numbers and descriptions from the SYSCTL_ROOT_NODEs (sys/kern/kern_mib.c).
_TOP = {"kern": (1, "High kernel, proc, limits &c"), "vm": (2, "Virtual memory"),
        "vfs": (3, "File system"), "net": (4, "Network, (see socket.h)"), "debug": (5, "Debugging"),
        "hw": (6, "hardware"), "machdep": (7, "machine dependent"), "user": (8, "user-level")}
# sys/vm/vm_meter.c for vm.stats*; vm.pmap's wording is UNCONFIRMED.
_NODES = {"vm.stats": "VM meter stats", "vm.stats.vm": "VM meter vm stats", "vm.pmap": "VM/pmap parameters"}


class SysctlError(Exception):
    """A failed sysctl: `errno_name` is FreeBSD's ("ENOENT", "EPERM", "EISDIR", "EINVAL")."""

    def __init__(self, errno_name: str, name: str, message: str) -> None:
        super().__init__(message)
        self.errno_name = errno_name
        self.errno = ERRNO[errno_name]
        self.name = name
        self.message = message


class Oid(Record):
    """One OID: a node with children, or a leaf with a value or a handler."""

    __slots__ = ("name", "kind", "number", "description", "readonly", "tunable", "value", "handler", "children")

    def __init__(self, name: str, kind: Kind, number: int, description: str = "", readonly: bool = True,
                 tunable: bool = False, value: Value | None = None, handler: Callable[[], Value] | None = None,
                 children: dict[str, Oid] | None = None) -> None:
        self.name = name
        self.kind = kind
        self.number = number
        self.description = description
        self.readonly = readonly
        self.tunable = tunable  # CTLFLAG_TUN: settable from the loader environment
        self.value = value
        self.handler = handler
        self.children = {} if children is None else children

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def read(self) -> Value:
        return self.handler() if self.handler is not None else self.value  # type: ignore[return-value]


class SysctlTree:
    """The MIB: register OIDs, then get/set/list/format them by name."""

    def __init__(self) -> None:
        self._root = Oid("", "node", 0)
        self._auto = itertools.count(CTL_AUTO_START)

    # -- registration ------------------------------------------------------------------------------
    def add(self, name: str, kind: Kind, value: Value | None = None, *, description: str = "",
            readonly: bool = True, tunable: bool = False, handler: Callable[[], Value] | None = None,
            number: int | None = None) -> Oid:
        """Register a leaf (parents are created as nodes); re-registering a name is an error."""
        if kind == "node":
            return self.add_node(name, description, number=number)
        parent = self._parent_of(name, create=True)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in parent.children:
            raise ValueError(f"sysctl {name} is already registered")
        oid = Oid(name, kind, self._number(number), description, readonly, tunable, None, handler)
        if handler is None:
            oid.value = self._check(oid, value if value is not None else ("" if kind in ("string", "opaque") else 0))
        parent.children[leaf] = oid
        return oid

    def add_node(self, name: str, description: str = "", *, number: int | None = None) -> Oid:
        parent = self._parent_of(name, create=True)
        leaf = name.rsplit(".", 1)[-1]
        node = parent.children.get(leaf)
        if node is not None:
            if node.kind != "node":
                raise ValueError(f"sysctl {name} is a leaf, not a node")
            node.description = node.description or description
            return node
        node = Oid(name, "node", self._number(number), description)
        parent.children[leaf] = node
        return node

    def publish(self, name: str, kind: Kind, value: Value | None = None, **kwargs) -> Oid:
        """Register `name`, or update its value if it exists (the kernel writing its own variable)."""
        try:
            oid = self._lookup(name)
        except SysctlError:
            return self.add(name, kind, value, **kwargs)
        if "handler" in kwargs:
            oid.handler = kwargs["handler"]
        elif value is not None:
            oid.value = self._check(oid, value)
        return oid

    # -- access ------------------------------------------------------------------------------------
    def get(self, name: str) -> Value:
        oid = self._lookup(name)
        if oid.kind == "node":
            raise SysctlError("EISDIR", name, f"sysctl: oid '{name}' is a node, not a value")
        return oid.read()

    def set(self, name: str, value: Value) -> Value:
        """Write a value as `sysctl name=value` does; returns the old value."""
        oid = self._lookup(name)
        if oid.kind == "node":
            raise SysctlError("EISDIR", name, f"sysctl: oid '{name}' isn't a leaf node")
        if oid.readonly:
            if oid.tunable:
                raise SysctlError("EPERM", name, f"sysctl: oid '{name}' is a read only tunable\n"
                                                 f"sysctl: Tunable values are set in /boot/loader.conf")
            raise SysctlError("EPERM", name, f"sysctl: oid '{name}' is read only")
        if oid.handler is not None:
            raise SysctlError("EPERM", name, f"sysctl: oid '{name}' is read only")
        old = oid.read()
        oid.value = self._check(oid, value)
        return old

    def list(self, prefix: str = "") -> list[str]:
        """The leaf names under `prefix` (a node or a leaf name; "" for all), in OID order."""
        start = self._root if not prefix else self._lookup(prefix)
        return [o.name for o in self._walk(start)]

    def format(self, name: str) -> str:
        """`sysctl name` output: "name: value" per leaf (a node prints every leaf below it)."""
        oid = self._lookup(name)
        return "\n".join(f"{o.name}: {o.read()}" for o in self._walk(oid))

    def describe(self, name: str) -> str:
        """`sysctl -d name` output: "name: description" per OID (a node prints itself and every leaf)."""
        oid = self._lookup(name)
        lines = [f"{oid.name}: {oid.description}"] if oid.kind == "node" else []
        lines.extend(f"{o.name}: {o.description}" for o in self._walk(oid))
        return "\n".join(lines)

    def oid(self, name: str) -> Oid:
        return self._lookup(name)

    # -- internals ---------------------------------------------------------------------------------
    def _number(self, number: int | None) -> int:
        return next(self._auto) if number is None else number

    def _walk(self, oid: Oid) -> Iterator[Oid]:
        if oid.kind != "node":
            yield oid
            return
        for child in sorted(oid.children.values(), key=lambda o: o.number):
            yield from self._walk(child)

    def _lookup(self, name: str) -> Oid:
        node = self._root
        for part in name.split("."):
            child = node.children.get(part) if node.kind == "node" else None
            if child is None:
                raise SysctlError("ENOENT", name, f"sysctl: unknown oid '{name}'")
            node = child
        return node

    def _parent_of(self, name: str, *, create: bool) -> Oid:
        parts = name.split(".")
        if not name or any(not p for p in parts):
            raise ValueError(f"bad sysctl name {name!r}")
        node = self._root
        for i, part in enumerate(parts[:-1]):
            child = node.children.get(part)
            if child is None:
                if not create:
                    raise SysctlError("ENOENT", name, f"sysctl: unknown oid '{name}'")
                path = ".".join(parts[: i + 1])
                number, desc = _TOP.get(path, (None, _NODES.get(path, "")))
                child = Oid(path, "node", self._number(number), desc)
                node.children[part] = child
            elif child.kind != "node":
                raise ValueError(f"sysctl {child.name} is a leaf and cannot have children")
            node = child
        return node

    def _check(self, oid: Oid, value: Value) -> Value:
        if oid.kind in ("string", "opaque"):
            if not isinstance(value, str):
                raise SysctlError("EINVAL", oid.name, f"sysctl: {oid.name} takes text, not {value!r}")
            return value
        if isinstance(value, bool):
            raise SysctlError("EINVAL", oid.name, f"sysctl: invalid integer '{value}'")
        if isinstance(value, str):
            try:
                value = parse_int(value)
            except InputError:
                raise SysctlError("EINVAL", oid.name, f"sysctl: invalid integer '{value}'") from None
        if not isinstance(value, int):
            raise SysctlError("EINVAL", oid.name, f"sysctl: invalid integer '{value}'")
        lo, hi = _RANGES[oid.kind]
        if not lo <= value <= hi:
            raise SysctlError("EINVAL", oid.name, f"sysctl: {oid.name}: {value} is out of range ({lo}..{hi})")
        return value


def publish_boot_figures(tree: SysctlTree, kmem_result: KmemResult, kva_layout: KvaLayout, physmem: int,
                         v_page_count: int, nkpt2pg: int, *,
                         kmem_in_use: Callable[[], int] | None = None) -> None:
    """Publish the kmem and KVA figures under FreeBSD's names, types, flags and descriptions.

    `kmem_in_use` reports the bytes allocated from the kmem arena (vm.kmem_map_size); without it 0.
    """
    in_use = kmem_in_use or (lambda: 0)
    size = kmem_result.vm_kmem_size
    # sys/kern/kern_malloc.c (RDTUN: read-only, set from loader.conf).
    tun = {"readonly": True, "tunable": True}
    tree.publish("vm.kmem_size", "ulong", size, description="Size of kernel memory", **tun)
    tree.publish("vm.kmem_size_min", "ulong", kmem_result.size_min.value,
                 description="Minimum size of kernel memory", **tun)
    tree.publish("vm.kmem_size_max", "ulong", kmem_result.size_max.value,
                 description="Maximum size of kernel memory", **tun)
    tree.publish("vm.kmem_size_scale", "uint", kmem_result.scale.value,
                 description="Scale factor for kernel memory size", **tun)
    tree.publish("vm.kmem_map_size", "ulong", handler=in_use, description="Current kmem allocation size")
    tree.publish("vm.kmem_map_free", "ulong", handler=lambda: max(0, size - in_use()),
                 description="Free space in kmem")   # UNCONFIRMED: 11.3's wording
    # sys/arm/arm/pmap-v6.c: kvm_size / kvm_free handlers and nkpt2pg.
    tree.publish("vm.kvm_size", "ulong", kva_layout.kvm_size, description="Size of KVM")
    tree.publish("vm.kvm_free", "ulong", kva_layout.kvm_free, description="Amount of KVM free")
    tree.publish("vm.pmap.nkpt2pg", "int", nkpt2pg,
                 description="Number of preallocated L2 page table pages for kernel")  # UNCONFIRMED wording
    # sys/kern/kern_mib.c (HW_PHYSMEM 5) and sys/vm/vm_meter.c.
    tree.publish("hw.physmem", "ulong", physmem, description="Amount of physical memory (in bytes)", number=5)
    tree.publish("vm.stats.vm.v_page_count", "uint", v_page_count,
                 description="Total number of pages in system")
