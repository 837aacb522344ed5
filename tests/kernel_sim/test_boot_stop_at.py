"""`--stop-at`: kernel symbols at whichever address they run (physical before the MMU is on), 0xADDR,
and a stop point the boot never reaches."""

from __future__ import annotations

import pytest

from kernel_sim.boot import physical_alias, stop_point
from kernel_sim.errors import InputError
from kernel_sim.guest.build import guest_image


def test_start_stops_at_the_entry_physical_address_before_any_instruction(boot):
    result = boot(stop_at="_start")
    image = result.prepared.image
    entry_pa = physical_alias(image, image.entry)
    assert image.symbols["_start"] == image.entry != entry_pa        # linked at a VA, entered at its PA
    assert result.exit_code == 0 and result.status == "stopped" and result.stage == "_start"
    assert result.machine.pc == entry_pa
    assert result.message == f"Stopped at _start (pc 0x{entry_pa:08x}, the physical address of 0x{image.entry:08x})."
    assert result.console == b""                                       # locore has not printed yet


def test_a_symbol_after_the_mmu_switch_stops_at_its_virtual_address(boot):
    result = boot(stop_at="initarm")
    assert result.status == "stopped" and result.machine.pc == result.prepared.image.symbols["initarm"]
    assert result.machine.pc >= 0xC0000000                            # a kernel VA: the MMU is on
    assert b"initarm:" not in result.console
    assert result.message == f"Stopped at initarm (pc 0x{result.machine.pc:08x})."


def test_an_address_stops_where_the_cpu_is_virtual_or_physical(boot):
    image = guest_image()
    entry_pa = physical_alias(image, image.entry)
    for address in (entry_pa + 4, image.symbols["pmap_bootstrap"]):
        result = boot(stop_at=f"0x{address:x}")
        assert result.exit_code == 0 and result.status == "stopped", result.message
        assert result.machine.pc == address


def test_a_symbol_never_executed_ends_the_boot_with_status_1_and_says_so(boot):
    # With the FreeBSD ABI the loader's metadata is real: initarm never fakes it.
    result = boot(stop_at="fake_preload_metadata")
    va = result.prepared.image.symbols["fake_preload_metadata"]
    assert result.exit_code == 1 and result.status == "unreached"
    assert "The operating system has halted." in result.console.decode()    # the boot ran to its end
    assert result.message == (f"The stop point fake_preload_metadata (0x{va:08x} or 0x{va - 0x80000000:08x}) "
                              "was never reached; the boot ended in mi_startup: The kernel halted cleanly.")


def test_an_address_never_executed_ends_the_boot_with_status_1(boot):
    result = boot(stop_at="0x12345678")
    assert result.exit_code == 1 and result.status == "unreached"
    assert result.message.startswith("The stop point 0x12345678 was never reached; the boot ended in mi_startup")


def test_a_failing_boot_before_the_stop_point_keeps_its_diagnosis(boot, sparse_image):
    result = boot(stop_at="pmap_bootstrap", kernel_footprint="9M", mfsroot=sparse_image(60 << 20))
    assert result.exit_code == 1 and result.status == "failed" and result.stage == "initarm"
    assert result.message.startswith("The stop point pmap_bootstrap (")
    assert "was never reached; the boot ended in initarm: " in result.message and "LOCORE_MAP_MB" in result.message


@pytest.mark.parametrize("spec, needle", [
    ("0xzz", "'0xzz' is not a 32-bit hexadecimal address"),
    ("0x100000000", "is not a 32-bit hexadecimal address"),
    ("no_such_symbol", "unknown stop point 'no_such_symbol'"),
])
def test_bad_stop_points_are_input_errors(spec, needle):
    with pytest.raises(InputError) as err:
        stop_point(guest_image(), spec)
    assert needle in str(err.value) and err.value.where == "--stop-at"


def test_halt_and_handover_need_no_breakpoint():
    assert stop_point(guest_image(), "halt") is None and stop_point(guest_image(), "handover") is None
