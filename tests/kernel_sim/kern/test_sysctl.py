"""The sysctl tree: get/set/list/format/describe, FreeBSD's errnos, and the published boot figures."""

from __future__ import annotations

import errno

import pytest

from kernel_sim.kern.sysctl import SysctlError, SysctlTree, publish_boot_figures
from kernel_sim.vm.kmem import kmeminit
from kernel_sim.vm.kva_layout import KERNBASE, layout_kva

MIB = 1 << 20


@pytest.fixture
def tree() -> SysctlTree:
    t = SysctlTree()
    t.add("vm.v_free_min", "uint", 100, readonly=False, description="Minimum low-free-pages threshold")
    t.add("kern.ostype", "string", "FreeBSD", description="Operating system type")
    t.add("vm.kmem_size", "ulong", 1234, readonly=True, tunable=True, description="Size of kernel memory")
    t.add("vm.vmtotal", "opaque", "\nSystem wide totals computed every five seconds: (values in kilobytes)")
    t.add("hw.pagesize", "int", 4096, description="System memory page size")
    t.add("kern.hz", "int", 100, description="Number of clock ticks per second")
    return t


def test_get_and_format(tree):
    assert tree.get("vm.v_free_min") == 100
    assert tree.get("kern.ostype") == "FreeBSD"
    assert tree.format("vm.kmem_size") == "vm.kmem_size: 1234"
    assert tree.format("kern.ostype") == "kern.ostype: FreeBSD"
    assert tree.format("vm.vmtotal").startswith("vm.vmtotal: \nSystem wide totals")
    assert tree.describe("kern.ostype") == "kern.ostype: Operating system type"


def test_list_is_in_oid_order(tree):
    # kern (1) before vm (2) before hw (6), whatever the registration order; leaves in registration order.
    assert tree.list() == ["kern.ostype", "kern.hz", "vm.v_free_min", "vm.kmem_size", "vm.vmtotal", "hw.pagesize"]
    assert tree.list("vm") == ["vm.v_free_min", "vm.kmem_size", "vm.vmtotal"]
    assert tree.list("kern.hz") == ["kern.hz"]
    assert tree.format("kern") == "kern.ostype: FreeBSD\nkern.hz: 100"
    assert tree.describe("vm").splitlines()[0] == "vm: Virtual memory"


def test_set(tree):
    assert tree.set("vm.v_free_min", 200) == 100
    assert tree.get("vm.v_free_min") == 200
    tree.set("vm.v_free_min", "0x10")
    assert tree.get("vm.v_free_min") == 16


@pytest.mark.parametrize(("op", "name", "value", "errno_name"), [
    ("get", "vm.no_such", None, "ENOENT"),
    ("set", "vm.no_such", 1, "ENOENT"),
    ("get", "vm.v_free_min.deeper", None, "ENOENT"),
    ("set", "kern.hz", 1000, "EPERM"),
    ("set", "vm.kmem_size", 1, "EPERM"),
    ("get", "vm", None, "EISDIR"),
    ("set", "vm", 1, "EISDIR"),
    ("set", "vm.v_free_min", -1, "EINVAL"),
    ("set", "vm.v_free_min", 1 << 32, "EINVAL"),
    ("set", "vm.v_free_min", "lots", "EINVAL"),
    ("set", "vm.v_free_min", True, "EINVAL"),
])
def test_errors_carry_freebsd_errno(tree, op, name, value, errno_name):
    with pytest.raises(SysctlError) as e:
        tree.get(name) if op == "get" else tree.set(name, value)
    assert e.value.errno_name == errno_name
    assert e.value.errno == getattr(errno, errno_name)
    assert e.value.name == name


def test_error_messages_follow_sysctl8(tree):
    with pytest.raises(SysctlError, match="unknown oid 'vm.nope'"):
        tree.get("vm.nope")
    with pytest.raises(SysctlError, match="is read only$"):
        tree.set("kern.hz", 1)
    with pytest.raises(SysctlError, match="read only tunable"):
        tree.set("vm.kmem_size", 1)


def test_registration_rules(tree):
    with pytest.raises(ValueError):
        tree.add("kern.ostype", "string", "again")
    with pytest.raises(ValueError):
        tree.add("kern.ostype.sub", "int", 1)
    with pytest.raises(SysctlError):
        tree.add("hw.big", "int", 1 << 31)


def test_handlers_are_read_each_time(tree):
    counter = iter(range(10))
    tree.add("vm.ticks", "int", handler=lambda: next(counter))
    assert tree.get("vm.ticks") == 0 and tree.get("vm.ticks") == 1
    with pytest.raises(SysctlError):
        tree.set("vm.ticks", 5)


def test_publish_boot_figures():
    physmem, vpc = 1927020544, 470463
    kmem = kmeminit(v_page_count=vpc, physmem=physmem, kernel_map_size=0xFFE00000 - KERNBASE,
                    options={"VM_KMEM_SIZE_SCALE": 5})
    layout = layout_kva(physmem=physmem, v_page_count=vpc, kernend=KERNBASE + 209 * MIB + 8192, kmem=kmem,
                        nkpt2pg=60, ram_end=0x4000_0000 + 2048 * MIB)
    tree = SysctlTree()
    used = {"n": 0}
    publish_boot_figures(tree, kmem, layout, physmem, vpc, 60, kmem_in_use=lambda: used["n"])
    assert tree.format("vm.kmem_size") == "vm.kmem_size: 385400832"
    assert tree.get("vm.kmem_size_scale") == 5
    assert tree.get("vm.kmem_size_min") == 12 * MIB
    assert tree.get("vm.kmem_size_max") == 428657869
    assert tree.get("vm.kvm_size") == 0xFFE00000 - KERNBASE
    assert tree.get("vm.kvm_free") == layout.kvm_free == 61 * MIB
    assert tree.get("vm.pmap.nkpt2pg") == 60
    assert tree.format("hw.physmem") == "hw.physmem: 1927020544"
    assert tree.get("vm.stats.vm.v_page_count") == vpc
    assert tree.get("vm.kmem_map_size") == 0 and tree.get("vm.kmem_map_free") == 385400832
    used["n"] = 4096
    assert tree.get("vm.kmem_map_size") == 4096 and tree.get("vm.kmem_map_free") == 385400832 - 4096
    assert tree.describe("vm.kvm_free") == "vm.kvm_free: Amount of KVM free"
    with pytest.raises(SysctlError) as e:
        tree.set("vm.kmem_size", 1)
    assert e.value.errno_name == "EPERM"
    # Publishing again updates values in place (a second boot figure set).
    publish_boot_figures(tree, kmem, layout, physmem, vpc, 64)
    assert tree.get("vm.pmap.nkpt2pg") == 64
    assert tree.list("hw") == ["hw.physmem"]
