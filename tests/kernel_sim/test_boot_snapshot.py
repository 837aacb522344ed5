"""Snapshots of a boot (issue 12, item 6): saved at the hand-over, mid-locore with the MMU off, at a
guest symbol after the MMU switch and before each step of mi_startup, a restored boot goes on to the
same console bytes and the same RAM as one never interrupted; so does the boot that saved."""

from __future__ import annotations

import struct
import zlib

import pytest

from board import snapshot as board_snapshot
from kernel_sim import boot as boot_mod
from kernel_sim import boot_snapshot
from kernel_sim.boot import BootRequest
from kernel_sim.errors import InputError
from kernel_sim.guest.build import guest_image
from kernel_sim.kern.startup import STAGE_NAMES

MOV_R1_KERNVIRTADDR_MB = 0xE3A01B03      # locore: `mov r1, #(KERNVIRTADDR >> 20)`, after the identity map


def ram_hash(machine) -> tuple[int, ...]:
    """CRC-32 of every RAM region, whole (read in place: no copy), and of the swap store."""
    crcs = [zlib.crc32(memoryview(region.host)) for region in machine.phys.regions]
    if machine.swap is not None:
        crcs.append(zlib.crc32(machine.swap.read(0, machine.swap.size)))
    return tuple(crcs)


def request(**kwargs) -> BootRequest:
    """The default boot (root from md0, /etc/rc, halt) on 128 MiB, so that hashing RAM costs little."""
    kwargs.setdefault("physmem", "128M")
    return BootRequest(**kwargs)


_reference: dict[tuple, boot_mod.BootResult] = {}


def uninterrupted(**kwargs) -> boot_mod.BootResult:
    key = tuple(sorted(kwargs.items()))
    if key not in _reference:
        _reference[key] = boot_mod.run(boot_mod.prepare(request(**kwargs)))
    return _reference[key]


def save_and_restore(tmp_path, point: str, **kwargs):
    path = tmp_path / f"{point}.snap"
    reports: list[boot_snapshot.SaveReport] = []
    saving = boot_snapshot.boot_saving(boot_mod.prepare(request(**kwargs)), point, path, reports.append)
    assert len(reports) == 1 and path.exists(), saving.message
    restored = boot_snapshot.restore(path, request())
    return saving, restored, reports[0]


def assert_same(result, reference) -> None:
    assert result.exit_code == reference.exit_code and result.message == reference.message
    assert result.console == reference.console
    assert ram_hash(result.machine) == ram_hash(reference.machine)


def test_the_hand_over(tmp_path):
    ref = uninterrupted()
    assert ref.exit_code == 0 and b"The operating system has halted." in ref.console
    saving, restored, report = save_and_restore(tmp_path, "handover")
    assert report.position == "handover"
    assert_same(saving, ref)            # saving does not disturb the boot that saves
    assert_same(restored, ref)


def locore_after_identity_map() -> int:
    """The physical address of locore's first instruction after the 4096 identity sections."""
    image = guest_image()
    entry_pa = boot_mod.physical_alias(image, image.entry)
    seg = next(s for s in image.segments if s.vaddr <= image.entry < s.vaddr + s.filesz)
    with open(image.elf_path, "rb") as f:
        f.seek(seg.offset + image.entry - seg.vaddr)
        code = f.read(0x100)
    index = [struct.unpack_from("<I", code, i)[0] for i in range(0, len(code), 4)].index(MOV_R1_KERNVIRTADDR_MB)
    return entry_pa + 4 * index


def test_mid_locore_with_the_mmu_off(tmp_path):
    address = locore_after_identity_map()
    saving, restored, report = save_and_restore(tmp_path, f"0x{address:x}")
    assert report.position == "guest"
    with board_snapshot.SnapshotReader(report.path) as reader:
        state = board_snapshot.machine_state(reader)
    assert state["cpu"]["pc"] == address
    assert state["cpu"]["cp15"]["SCTLR/0"] & 1 == 0                  # MMU off
    assert b"locore:" not in bytes(state["console"]["data"])           # before locore's first line
    ref = uninterrupted()
    assert_same(saving, ref)
    assert_same(restored, ref)


POINTS = ["_start", "initarm", "pmap_bootstrap", *STAGE_NAMES, "done"]
QUICK = ("initarm", "geom_taste", "init")


@pytest.mark.parametrize("point", [p if p in QUICK else pytest.param(p, marks=pytest.mark.slow) for p in POINTS])
def test_every_guest_point_and_kernel_stage(tmp_path, point):
    saving, restored, report = save_and_restore(tmp_path, point)
    assert report.position == ("guest" if point in ("_start", "initarm", "pmap_bootstrap") else "stage")
    ref = uninterrupted()
    assert_same(saving, ref)
    assert_same(restored, ref)


def test_a_boot_with_a_swap_device_and_a_vnode_md(tmp_path):
    vnode = tmp_path / "disk.img"
    vnode.write_bytes(bytes(range(256)) * 4096)
    kwargs = {"swap": "16m:zstd", "md_vnodes": (str(vnode),)}
    ref = uninterrupted(**kwargs)
    assert b"vnode" in ref.console and ref.exit_code == 0
    saving, restored, _ = save_and_restore(tmp_path, "mountroot", **kwargs)
    assert_same(saving, ref)
    assert_same(restored, ref)


def test_the_python_mmu(tmp_path):
    ref = uninterrupted(mmu="python", loader_conf=None)
    saving, restored, _ = save_and_restore(tmp_path, "pmap_bootstrap", mmu="python", loader_conf=None)
    assert restored.machine.tlb_fill is not None
    assert_same(restored, ref)


def test_a_restored_boot_saves_again(tmp_path):
    _, _, first = save_and_restore(tmp_path, "handover")
    runtime = request()
    restored = boot_snapshot.load(first.path, runtime)
    saver = boot_snapshot.SavePoint(restored.prepared, "geom_taste", tmp_path / "second.snap")
    saver.install(restored.run)
    saver.finish(boot_snapshot.resume(restored))
    assert saver.saved is not None and saver.saved.point == "geom_taste"
    assert_same(boot_snapshot.restore(tmp_path / "second.snap", request()), uninterrupted())


def test_a_save_point_never_reached_writes_nothing_and_says_so(tmp_path):
    path = tmp_path / "never.snap"
    result = boot_snapshot.boot_saving(boot_mod.prepare(request()), "fake_preload_metadata", path)
    assert result.exit_code == 1 and result.status == "unreached" and not path.exists()
    assert result.message.startswith("The save point fake_preload_metadata was never reached, so no snapshot was "
                                     "written; the boot ended in mi_startup: The kernel halted cleanly.")
    stopped = boot_snapshot.boot_saving(boot_mod.prepare(request(stop_at="initarm")), "geom_taste", path)
    assert stopped.exit_code == 1 and "never reached" in stopped.message and not path.exists()


def test_a_save_point_that_is_also_the_stop_point(tmp_path):
    path = tmp_path / "both.snap"
    result = boot_snapshot.boot_saving(boot_mod.prepare(request(stop_at="initarm")), "initarm", path)
    assert result.exit_code == 0 and result.status == "stopped" and path.exists()
    restored = boot_snapshot.restore(path, request())
    assert_same(restored, uninterrupted())


def test_unknown_save_points_are_input_errors():
    prepared = boot_mod.prepare(request())
    for bad in ("nowhere", "halt", "0xZZ"):
        with pytest.raises(InputError, match="--save-at: unknown save point|--save-at: 'halt' is no save point"):
            boot_snapshot.SavePoint(prepared, bad, "x.snap")
    for inside in ("rc", "/etc/rc", "shell"):
        with pytest.raises(InputError, match=f"--save-at: '{inside}' runs inside init, in live Python frames, which "
                                             "no snapshot can hold; save at init"):
            boot_snapshot.SavePoint(prepared, inside, "x.snap")


def test_a_kernel_holding_a_live_frame_cannot_be_saved(tmp_path):
    def hold_a_generator(name: str, run) -> None:
        if name == "geom_taste":
            run.s.pending = (n for n in range(3))

    with pytest.raises(InputError, match="--save-at geom_taste: cannot save here: the kernel holds a "
                                         "builtins.generator"):
        boot_snapshot.boot_saving(boot_mod.prepare(request(on_stage=hold_a_generator)), "geom_taste",
                                  tmp_path / "g.snap")
    assert not (tmp_path / "g.snap").exists()


def test_a_changed_flash_file_is_refused_at_restore(tmp_path):
    image = tmp_path / "flash0.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    kwargs = {"flash": [("flash0", str(image))], "loader_conf": None}
    _, restored, report = save_and_restore(tmp_path, "handover", **kwargs)
    assert restored.exit_code == 0
    with open(image, "r+b") as f:
        f.seek(4096)
        f.write(b"\xff")
    with pytest.raises(InputError, match=rf"handover.snap: offset \d+: flash bank flash0: the flash image "
                                         rf"{image} has changed since the snapshot was saved"):
        boot_snapshot.restore(report.path, request())


def test_savevm_of_a_finished_or_stopped_boot(tmp_path):
    for kwargs, position in (({"stop_at": "initarm"}, "guest"), ({"stop_at": "handover"}, "handover"), ({}, "stage")):
        result = boot_mod.run(boot_mod.prepare(request(**kwargs)))
        where = boot_snapshot.position_of(result)
        assert where.position == position
        saved = boot_snapshot.save_position(tmp_path / f"{position}.snap", where)
        restored = boot_snapshot.restore(saved.path, request())
        assert_same(restored, uninterrupted())


def test_the_embedded_board_with_its_flash_map_and_uzip_root(tmp_path):
    """geom_map's example on the embedded board: the CFI model the kernel's driver built, the MAP
    slices and the UZIP geom over them are saved and go on alike."""
    from tools.cli import main

    root = boot_mod.IMAGES
    image = tmp_path / "flash.img"
    assert main(["flash", "build", f"{root}/geom_map-example/layout.toml", "-o", str(image)]) == 0
    kwargs = {"board": "embedded", "kernconf": f"{root}/EMBEDDED", "flash": [("flash0", str(image))],
              "hints": f"{image}.hints", "physmem": None,
              "command": "mount -r /dev/map/rootfs.uzip /mnt && cat /mnt/etc/version"}
    ref = uninterrupted(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    assert ref.exit_code == 0 and b"armboard geom_map(4) example rootfs 1" in ref.console
    saving, restored, report = save_and_restore(tmp_path, "mountroot", **kwargs)
    with board_snapshot.SnapshotReader(report.path) as reader:
        assert board_snapshot.machine_state(reader)["flash"]["flash0"]["device"] is not None   # the CFI model
    assert_same(saving, ref)
    assert_same(restored, ref)


def test_a_stop_point_the_snapshot_is_past_is_an_input_error(tmp_path):
    _, _, report = save_and_restore(tmp_path, "geom_taste")
    for stop_at in ("initarm", "handover"):
        with pytest.raises(InputError, match=rf"--stop-at {stop_at}: the snapshot is before mi_startup's step "
                                             "geom_taste, past this stop point"):
            boot_snapshot.restore(report.path, request(stop_at=stop_at))
    _, _, report = save_and_restore(tmp_path, "handover")
    stopped = boot_snapshot.restore(report.path, request(stop_at="handover"))
    assert stopped.exit_code == 0 and stopped.status == "stopped"


class RecordingDebugger(boot_mod.Debugger):
    """A debugger that sees every guest stop it is given and continues from each."""

    def __init__(self) -> None:
        self.stops: list[str] = []

    def stopped(self, stop):
        self.stops.append(stop.kind)
        return boot_mod.Resume()


def test_a_save_point_in_guest_code_is_the_boots_not_the_debuggers(tmp_path):
    """--save-at initarm with --gdb attached: the pause saves and goes on without the debugger being
    asked (it set no breakpoint there), and the boot ends as an uninterrupted one does."""
    debugger = RecordingDebugger()
    prepared = boot_mod.prepare(request(debugger=debugger))
    path = tmp_path / "initarm.snap"
    result = boot_snapshot.boot_saving(prepared, "initarm", path)
    assert result.exit_code == 0 and result.status == "halted", result.message
    assert path.exists() and debugger.stops == []
    assert result.console == uninterrupted().console
