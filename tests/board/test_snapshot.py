"""Board snapshots: each part's state survives a round trip to a new machine, and the file refuses
damage, truncation and foreign content with the offset, before anything is loaded."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board import snapshot as snap
from board.cpu_state import BANKED_MODES, CP15_REGISTERS, cpu_state
from board.machine import Machine
from board.memory import PAGE, FileOverlay
from board.profile import load_profile, parse_swap_spec
from board.snapshot import SnapshotError, SnapshotReader, SnapshotWriter
from board.ucapi import (
    UC_ARM_REG_CPSR,
    UC_ARM_REG_D0,
    UC_ARM_REG_FPSCR,
    UC_ARM_REG_LR,
    UC_ARM_REG_R0,
    UC_ARM_REG_SP,
    UC_ARM_REG_SPSR,
)

RAM = 0x40000000
SIZE = 32 << 20


def words(*insns: int) -> bytes:
    return b"".join(struct.pack("<I", i) for i in insns)


def code(marker: int) -> bytes:
    """mov r5, #marker ; mov r0, #0x18 ; ldr r1, [pc] ; svc 0x123456 (semihosting SYS_EXIT) ; .word 0x20026"""
    return words(0xE3A05000 | marker, 0xE3A00018, 0xE59F1000, 0xEF123456, 0x20026)


def ram_hash(m: Machine) -> str:
    h = hashlib.sha256()
    for region in m.phys.regions:
        h.update(region.host[:])
    return h.hexdigest()


def save(m: Machine, path, extra: dict[str, bytes] | None = None) -> None:
    writer = SnapshotWriter(path)
    snap.save_machine(writer, m)
    for name, data in (extra or {}).items():
        writer.add(name, data)
    writer.close()


def load(path, m: Machine) -> Machine:
    with SnapshotReader(path) as reader:
        snap.load_machine(reader, m)
    return m


def fresh(**kwargs) -> Machine:
    return Machine(load_profile("virt"), SIZE, **kwargs)


def test_cpu_registers_of_every_mode_vfp_and_cp15_survive(tmp_path):
    m = fresh()
    uc = m.uc
    cpsr = uc.reg_read(UC_ARM_REG_CPSR)
    for n, mode in enumerate(BANKED_MODES.values()):
        uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | mode)
        uc.reg_write(UC_ARM_REG_SP, 0x1000 + n)
        uc.reg_write(UC_ARM_REG_LR, 0x2000 + n)
        uc.reg_write(UC_ARM_REG_SPSR, 0x100 + mode)
        for i in range(8, 13):
            uc.reg_write(UC_ARM_REG_R0 + i, (mode << 8) | i)      # the FIQ bank differs from the others
    uc.reg_write(UC_ARM_REG_CPSR, (cpsr & ~0x1F) | 0x17)           # saved in ABT mode
    for i in range(8):
        uc.reg_write(UC_ARM_REG_R0 + i, 0xA0 + i)
    for i in range(32):
        uc.reg_write64(UC_ARM_REG_D0 + i, 0x0102030405060708 * (i + 1) & (1 << 64) - 1)
    uc.reg_write(UC_ARM_REG_FPSCR, 0x03000000)
    for value, (name, enc) in enumerate(CP15_REGISTERS.items()):
        if name in ("TTBR0", "TTBR1", "DACR", "VBAR", "CONTEXTIDR", "TPIDRURW", "TPIDRPRW", "PRRR", "NMRR", "DFAR"):
            crn, opc1, crm, opc2 = enc
            uc.cpr_write(15, opc1, crn, crm, opc2, 0, False, 0x4000 * (value + 1))
    before = cpu_state(uc)
    save(m, tmp_path / "cpu.snap")
    other = load(tmp_path / "cpu.snap", fresh())
    assert cpu_state(other.uc) == before
    assert other.uc.reg_read(UC_ARM_REG_CPSR) & 0x1F == 0x17 and other.uc.reg_read(UC_ARM_REG_R0 + 3) == 0xA3
    fiq = before["banked"]["fiq"]["r8_r12"]
    assert fiq == [(0x11 << 8) | i for i in range(8, 13)] != before["banked"]["svc"]["r8_r12"]
    assert other.cp15.ttbr0 == before["cp15"]["TTBR0/0"] and other.cp15.vbar == before["cp15"]["VBAR/0"] != 0


def test_only_changed_pages_are_saved_and_a_load_clears_the_rest(tmp_path):
    m = fresh()
    m.phys.write(RAM + 5 * PAGE + 7, b"five")
    m.phys.write(RAM + 6 * PAGE, os.urandom(PAGE))
    m.phys.write(RAM + 900 * PAGE, bytes(PAGE))          # touched, but zeros: nothing to save
    m.phys.read(RAM + 1000 * PAGE, PAGE)                  # read only
    state = m.state(_NullSink())
    assert state["memory"][0]["runs"] == [(5, 2)]
    save(m, tmp_path / "ram.snap")
    target = fresh()
    target.phys.write(RAM + 3000 * PAGE, b"left over")      # loading must make this zero again
    load(tmp_path / "ram.snap", target)
    assert ram_hash(target) == ram_hash(m)
    pages = SnapshotReader(tmp_path / "ram.snap").sections[snap.PAGES_SECTION].decoded
    assert pages == 2 * PAGE


class _NullSink:
    def put(self, data) -> None:
        pass


def test_a_restored_machine_runs_the_restored_code_not_a_stale_translation(tmp_path):
    m = fresh()
    m.phys.write(RAM, code(1))
    assert m.run(RAM, timeout=5).kind == "exit" and m.uc.reg_read(UC_ARM_REG_R0 + 5) == 1
    save(m, tmp_path / "a.snap")
    m.phys.write(RAM, code(2))
    m.uc.ctl_remove_cache(RAM, RAM + PAGE)
    assert m.run(RAM, timeout=5).kind == "exit" and m.uc.reg_read(UC_ARM_REG_R0 + 5) == 2   # B is translated now
    load(tmp_path / "a.snap", m)                           # A again, written behind Unicorn's back
    assert m.run(RAM, timeout=5).kind == "exit" and m.uc.reg_read(UC_ARM_REG_R0 + 5) == 1


def test_a_file_overlay_saves_its_changed_pages_and_refuses_a_changed_file(tmp_path):
    module = tmp_path / "module.img"
    module.write_bytes(os.urandom(16 * PAGE))
    overlay = (FileOverlay(RAM + 0x100000, str(module)),)
    m = fresh(overlays=overlay)
    m.phys.write(RAM + 0x100000 + 3 * PAGE, b"guest write")
    region = m.phys.find(RAM + 0x100000)
    assert region.kind == "file" and region.state(_NullSink())["runs"] == [(3, 1)]
    save(m, tmp_path / "ov.snap")
    other = load(tmp_path / "ov.snap", fresh(overlays=overlay))
    assert ram_hash(other) == ram_hash(m)
    assert module.read_bytes()[3 * PAGE:3 * PAGE + 11] != b"guest write"      # the file itself is never written
    os.utime(module, ns=(1, 2))                 # touched, same bytes: read and found the same
    load(tmp_path / "ov.snap", fresh(overlays=overlay))
    data = bytearray(module.read_bytes())
    data[100] ^= 1
    module.write_bytes(data)
    with pytest.raises(SnapshotError, match="has changed since the snapshot was saved"):
        load(tmp_path / "ov.snap", fresh(overlays=overlay))


def test_flash_command_state_and_an_anonymous_bank_survive(tmp_path):
    m = fresh()
    bank = m.flash["flash0"]
    bank.image.host[PAGE:PAGE + 4] = b"\x12\x34\x56\x78"
    m.bus_write(bank.base, 4, 0x00900090)                   # Intel read identifier: the CFI model is built
    ident = m.bus_read(bank.base, 4)
    save(m, tmp_path / "flash.snap")
    other = fresh()
    assert other.flash["flash0"]._device is None
    load(tmp_path / "flash.snap", other)
    assert other.flash["flash0"].device.mode == "read-identifier" and other.flash["flash0"].mapped_as == "mmio"
    assert other.bus_read(bank.base, 4) == ident
    assert bytes(other.flash["flash0"].image.host[PAGE:PAGE + 4]) == b"\x12\x34\x56\x78"
    assert other.flash["flash1"].mapped_as == "memory"


def test_a_flash_file_changed_after_the_save_is_refused(tmp_path):
    from board.devices.flash_image import FlashImage

    image = tmp_path / "flash.img"
    image.write_bytes(bytes(64 << 20))
    m = fresh(flash_images={"flash0": FlashImage.open(image)})
    save(m, tmp_path / "f.snap")
    m.flash["flash0"].image.close()
    with open(image, "r+b") as f:
        f.seek(12345)
        f.write(b"\x01")
    with pytest.raises(SnapshotError, match=r"flash bank flash0: the flash image .* has changed"):
        load(tmp_path / "f.snap", fresh(flash_images={"flash0": FlashImage.open(image)}))
    with pytest.raises(SnapshotError, match="saved with the image file"):
        load(tmp_path / "f.snap", fresh())


@pytest.mark.parametrize("allocator", ["sparse", "malloc", "zstd"])
def test_the_swap_store_survives(tmp_path, allocator):
    spec = parse_swap_spec(f"8m:{allocator}")
    m = fresh(swap=spec)
    m.swap.write(40960, os.urandom(5000))
    m.swap.write(6 << 20, b"swap tail")
    save(m, tmp_path / "swap.snap")
    other = fresh(swap=spec)
    other.swap.write(1 << 20, b"stale")
    load(tmp_path / "swap.snap", other)
    assert other.swap.read(0, 8 << 20) == m.swap.read(0, 8 << 20)
    with pytest.raises(SnapshotError, match="swap device"):
        load(tmp_path / "swap.snap", fresh())


def test_another_board_size_is_refused_and_the_machine_is_left_alone(tmp_path):
    m = fresh()
    save(m, tmp_path / "s.snap")
    other = Machine(load_profile("virt"), 64 << 20)
    other.phys.write(RAM, b"kept")
    with pytest.raises(SnapshotError, match="32 MiB of RAM; this is board virt with 64 MiB"):
        load(tmp_path / "s.snap", other)
    assert other.phys.read(RAM, 4) == b"kept"


def test_sections_of_the_caller_are_carried_as_they_are(tmp_path):
    save(fresh(), tmp_path / "x.snap", {"kernel": b"opaque" * 1000, "meta": b"{}"})
    with SnapshotReader(tmp_path / "x.snap") as reader:
        assert reader.read("kernel") == b"opaque" * 1000 and reader.read("meta") == b"{}"
        with pytest.raises(SnapshotError, match="has no section 'nothing'"):
            reader.read("nothing")


@pytest.fixture(scope="module")
def small_snapshot(tmp_path_factory) -> bytes:
    m = fresh()
    m.phys.write(RAM, os.urandom(3 * PAGE))
    path = tmp_path_factory.mktemp("snap") / "small.snap"
    save(m, path, {"kernel": b"k" * 200})
    return path.read_bytes()


def _open(tmp_path, data: bytes) -> None:
    path = tmp_path / "damaged.snap"
    path.write_bytes(data)
    with SnapshotReader(path) as reader:
        snap.load_machine(reader, fresh())


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.data())
def test_any_flipped_bit_is_found_with_its_offset(tmp_path, small_snapshot, data):
    bit = data.draw(st.integers(0, len(small_snapshot) * 8 - 1))
    damaged = bytearray(small_snapshot)
    damaged[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SnapshotError) as info:
        _open(tmp_path, bytes(damaged))
    assert 0 <= info.value.offset <= len(small_snapshot)
    assert str(info.value).startswith(f"offset {info.value.offset}: ")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.data())
def test_any_truncation_or_appended_bytes_are_refused(tmp_path, small_snapshot, data):
    cut = data.draw(st.integers(0, len(small_snapshot) - 1))
    with pytest.raises(SnapshotError, match="truncated|not an armboard snapshot"):
        _open(tmp_path, small_snapshot[:cut])
    with pytest.raises(SnapshotError, match="follow the end of the snapshot"):
        _open(tmp_path, small_snapshot + b"\0" * data.draw(st.integers(1, 64)))


def test_foreign_files_and_other_versions_are_named(tmp_path, small_snapshot):
    with pytest.raises(SnapshotError, match=r"^offset 0: not an armboard snapshot"):
        _open(tmp_path, b"\x7fELF" + bytes(100))
    with pytest.raises(SnapshotError, match=r"^offset 0: not an armboard snapshot"):
        _open(tmp_path, b"")
    head = snap.MAGIC + struct.pack("<I", 7)
    other = head + struct.pack("<I", __import__("zlib").crc32(head)) + small_snapshot[16:]
    with pytest.raises(SnapshotError, match="format version 7; this armboard reads version 1"):
        _open(tmp_path, other)


def test_a_board_state_holds_plain_data_only(tmp_path):
    import pickle

    writer = SnapshotWriter(tmp_path / "g.snap")
    with writer.stream(snap.PAGES_SECTION):
        pass
    writer.add(snap.BOARD_SECTION, pickle.dumps({"x": os.system}))     # a well-formed file naming a function
    writer.close()
    with pytest.raises(SnapshotError, match="plain data only"):
        _open(tmp_path, (tmp_path / "g.snap").read_bytes())


def test_a_failed_save_leaves_no_file(tmp_path):
    writer = SnapshotWriter(tmp_path / "never.snap")
    writer.add("a", b"x")
    writer.abort()
    assert os.listdir(tmp_path) == []


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.booleans()), min_size=1, max_size=30), st.integers(1, 4))
def test_the_page_stream_gives_back_every_byte_whatever_the_pieces(tmp_path, monkeypatch, pieces, workers):
    """Deferred fills and immediate reads, in any mix and across frame ends, get the bytes in order."""
    monkeypatch.setattr(snap, "FRAME_SIZE", 1000)
    monkeypatch.setattr(snap, "WORKERS", workers)
    data = os.urandom(sum(n for n, _ in pieces))
    path = tmp_path / f"stream{workers}.snap"
    writer = SnapshotWriter(path)
    with writer.stream(snap.PAGES_SECTION) as sink:
        pos = 0
        for n, _ in pieces:
            sink.put(data[pos:pos + n])
            pos += n
    writer.close()
    outs = []
    with SnapshotReader(path, deep=True) as reader, reader.source(snap.PAGES_SECTION) as source:
        for n, deferred in pieces:
            buf = bytearray(n)
            (source.fill if deferred else source.read_into)(buf)
            if not deferred:
                assert bytes(buf) == data[sum(len(b) for b in outs):sum(len(b) for b in outs) + n]
            outs.append(buf)
    assert b"".join(outs) == data
