"""`armboard sweep`: real boots over a grid, CSV/JSON rows, resume, plan agreement, bad grids."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools.cli import main

GRID = ["--no-loader-conf", "--physmem", "256M,512M", "--kernel-footprint", "9M", "--mfsroot-size", "60M",
        "-g", "LOCORE_MAP_MB=64,70", "-g", "NKPT2PG=16,32"]


def test_sweep_writes_one_row_per_boot_and_resumes(tmp_path, capsys):
    out, js, plot = tmp_path / "sweep.csv", tmp_path / "sweep.json", tmp_path / "map.svg"
    code = main(["sweep", *GRID, "-j", "2", "--out", str(out), "--json", str(js), "--plot", str(plot)])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = list(csv.DictReader(out.open()))
    assert [int(r["point"]) for r in rows] == list(range(8))
    booted = {(r["physmem"], r["options"]) for r in rows if r["exit_code"] == "0"}
    assert booted == {(m, "LOCORE_MAP_MB=70 NKPT2PG=32") for m in ("256M", "512M")}
    failed_window = [r for r in rows if "LOCORE_MAP_MB=64" in r["options"]]
    assert all(r["stage"] == "initarm" and "LOCORE_MAP_MB=70" in r["message"] for r in failed_window)
    assert all(r["plan_agrees"] == "True" for r in rows)
    assert "smallest LOCORE_MAP_MB that boots: 70" in text and "smallest NKPT2PG that boots: 32" in text
    assert len(json.loads(js.read_text())["rows"]) == 8
    svg = ET.fromstring(plot.read_bytes())                # matplotlib's SVG, text kept as text
    assert svg.tag.endswith("svg") and "armboard sweep: physmem across, LOCORE_MAP_MB down" in plot.read_text()
    # resume: an interrupted sweep (rows 0-3 kept) boots only the rest
    with out.open() as f:
        lines = f.readlines()
    out.write_text("".join(lines[:5]))
    code = main(["sweep", *GRID, "-j", "1", "--out", str(out)])
    assert code == 0
    assert "4 booted now" in capsys.readouterr().out
    assert [r["exit_code"] for r in csv.DictReader(out.open())] == [r["exit_code"] for r in rows]


@pytest.mark.parametrize("argv, needle", [
    (["-g", "NO_SUCH_OPTION=1"], "unknown kernel option NO_SUCH_OPTION"),
    (["-g", "VM_KMEM_SIZE_SCALE=8..1"], "runs backwards"),
    (["-g", "VM_KMEM_SIZE_SCALE"], "NAME=VALUES"),
    (["-g", "VM_KMEM_SIZE_SCALE=1,,2"], "empty value"),
    (["-g", "NKPT2PG=1", "-g", "NKPT2PG=2"], "given twice"),
    (["-g", "NKPT2PG=32", "-j", "0"], "-j"),
    (["--physmem", "1G,lots", "-g", "NKPT2PG=32"], "--physmem"),
    (["-g", "VM_KMEM_SIZE_SCALE=0"], "VM_KMEM_SIZE_SCALE"),
])
def test_bad_grids_are_input_errors(tmp_path, capsys, argv, needle):
    code = main(["sweep", *argv, "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("armboard: ") and needle in err and "Traceback" not in err


def test_a_different_grid_does_not_resume_from_another_file(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["sweep", "--physmem", "64M", "-g", "NKPT2PG=32", "--out", str(out)]) == 0
    assert main(["sweep", "--physmem", "64M", "-g", "NKPT2PG=16", "--out", str(out)]) == 2
    assert "holds another grid" in capsys.readouterr().err


def test_png_and_svg_pictures(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["sweep", "--physmem", "64M,128M", "-g", "NKPT2PG=1,32", "--out", str(out),
                 "--plot", str(tmp_path / "heat.png")]) == 0
    assert (tmp_path / "heat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plan", "--picture", str(tmp_path / "kva.png")]) == 0
    assert (tmp_path / "kva.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["plan", "--picture", str(tmp_path / "kva.gif")]) == 2
    assert "a picture is .svg or .png" in capsys.readouterr().err


def test_generated_root_takes_the_root_images_place_as_mfsroot_does(tmp_path, capsys):
    """sweep --mfsroot-size, plan --mfsroot and boot --mfsroot answer the same smallest values: the generated
    image replaces loader.conf's root image (it is not one more md_image beside it) and still mounts."""
    import shutil

    from kernel_sim.boot import IMAGES

    common = ["--physmem", "1G", "--kernel-footprint", "9M"]
    out = tmp_path / "s.csv"
    code = main(["sweep", *common, "--mfsroot-size", "120M", "-g", "LOCORE_MAP_MB=129,130",
                 "-g", "NKPT2PG=32,33", "-j", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text                                   # plan agrees with every boot
    assert "1 boot, 3 fail" in text
    assert "smallest LOCORE_MAP_MB that boots: 130" in text and "smallest NKPT2PG that boots: 33" in text
    rows = list(csv.DictReader(out.open()))
    booted = [r for r in rows if r["exit_code"] == "0"]
    assert [r["options"] for r in booted] == ["LOCORE_MAP_MB=130 NKPT2PG=33"]
    assert booted[0]["outcome"] == "halted"                  # md0 mounted as root, /etc/rc ran

    root = tmp_path / "root-120M.img"                        # the same input, by hand
    shutil.copyfile(Path(IMAGES, "rootfs.img"), root)
    with root.open("r+b") as f:
        f.truncate(120 << 20)
    assert main(["plan", "--json", *common, "--mfsroot", str(root)]) == 1
    plan = json.loads(capsys.readouterr().out)
    assert (plan["min_locore_map_mb"], plan["min_nkpt2pg"]) == (130, 33)
    assert main(["boot", *common, "--mfsroot", str(root), "-o", "LOCORE_MAP_MB=130", "-o", "NKPT2PG=33"]) == 0
    assert main(["boot", *common, "--mfsroot", str(root), "-o", "LOCORE_MAP_MB=129", "-o", "NKPT2PG=33"]) == 1
    capsys.readouterr()


def test_generated_root_smaller_than_the_root_image_is_an_input_error(tmp_path, capsys):
    code = main(["sweep", "--mfsroot-size", "1M", "-g", "NKPT2PG=32", "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("armboard: --mfsroot-size 1M: ") and "rootfs.img (8388608 bytes)" in err
    assert not (tmp_path / "s.csv").exists()


def test_generated_root_keeps_the_root_images_bytes_and_holes(tmp_path):
    from kernel_sim.boot import IMAGES
    from kernel_sim.sweep import generated_root

    made = generated_root({"loader_conf": Path(IMAGES, "loader.conf"), "mfsroot": None}, 64 << 20,
                          tmp_path / "g.img", "--mfsroot-size 64M")
    original = (Path(IMAGES, "rootfs.img")).read_bytes()
    assert made.stat().st_size == 64 << 20
    with made.open("rb") as f:
        assert f.read(len(original)) == original
    assert made.stat().st_blocks <= (Path(IMAGES, "rootfs.img")).stat().st_blocks + 256   # holes stay holes
    blank = generated_root({"loader_conf": None, "mfsroot": None}, 1 << 20, tmp_path / "b.img", "x")
    assert blank.read_bytes() == bytes(1 << 20)


def _sweep(tmp_path, capsys, *grid: str) -> tuple[str, list[dict]]:
    out = tmp_path / "s.csv"
    code = main(["sweep", "--no-loader-conf", "--physmem", "1G", *grid, "-j", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = list(csv.DictReader(out.open()))
    out.unlink()
    return text, rows


def test_scale_summary_notes_the_cap_only_when_capped_scales_are_in_the_grid(tmp_path, capsys):
    text, rows = _sweep(tmp_path, capsys, "-g", "VM_KMEM_SIZE_SCALE=1..4")
    assert "smallest VM_KMEM_SIZE_SCALE" not in text                  # not advice: every scale boots
    assert "every VM_KMEM_SIZE_SCALE in the grid boots (1, 2, 3, 4)" in text
    cap = {r["options"]: r["kmem_cap"] for r in rows}
    assert cap == {"VM_KMEM_SIZE_SCALE=1": "VM_KMEM_SIZE_MAX", "VM_KMEM_SIZE_SCALE=2": "VM_KMEM_SIZE_MAX",
                   "VM_KMEM_SIZE_SCALE=3": "", "VM_KMEM_SIZE_SCALE=4": ""}
    capped = {int(r["vm_kmem_size"]) for r in rows if r["kmem_cap"]}
    assert len(capped) == 1                                            # one arena size for both scales
    assert (f"VM_KMEM_SIZE_SCALE 1, 2: vm_kmem_size is capped by VM_KMEM_SIZE_MAX at "
            f"{capped.pop() >> 20} MiB") in text
    one, four = (next(r for r in rows if r["options"] == f"VM_KMEM_SIZE_SCALE={n}") for n in (1, 4))
    assert int(one["vm_kmem_size"]) > int(four["vm_kmem_size"])
    assert int(one["kva_remaining"]) < int(four["kva_remaining"])
    assert (f"trades the kmem arena's size against free KVA: at 1 the arena is {int(one['vm_kmem_size']) >> 20} MiB "
            f"and {int(one['kva_remaining']) >> 20} MiB of KVA is left, at 4 the arena is "
            f"{int(four['vm_kmem_size']) >> 20} MiB") in text

    text, _ = _sweep(tmp_path, capsys, "-g", "VM_KMEM_SIZE_SCALE=3..4")
    assert "every VM_KMEM_SIZE_SCALE in the grid boots (3, 4)" in text
    assert "capped" not in text


def test_scale_summary_names_a_tunable_cap_and_the_scales_that_fail():
    from tools.sweep_cmd import Dimension, scale_summary

    dim = Dimension("vm.kmem_size_scale", ("1", "2", "3"))
    rows = [{"options": "vm.kmem_size_scale=1", "exit_code": "1", "kmem_cap": "vm.kmem_size_max",
             "vm_kmem_size": str(300 << 20), "kva_remaining": ""},
            {"options": "vm.kmem_size_scale=2", "exit_code": "0", "kmem_cap": "vm.kmem_size_max",
             "vm_kmem_size": str(300 << 20), "kva_remaining": str(50 << 20)},
            {"options": "vm.kmem_size_scale=2", "exit_code": "1", "kmem_cap": "",    # failed before kmeminit
             "vm_kmem_size": "", "kva_remaining": ""},
            {"options": "vm.kmem_size_scale=3", "exit_code": "0", "kmem_cap": "",
             "vm_kmem_size": str(200 << 20), "kva_remaining": str(150 << 20)}]
    lines = scale_summary(rows, dim)
    assert lines[0] == "vm.kmem_size_scale boots at some point with 2, 3 (2 of 3 values)"
    assert lines[1].startswith("vm.kmem_size_scale 1, 2: vm_kmem_size is capped by vm.kmem_size_max at 300 MiB")
    # scale 1 never got a KVA layout: the trade-off runs from the first scale that did
    assert lines[2] == ("vm.kmem_size_scale trades the kmem arena's size against free KVA: at 2 the arena is 300 MiB "
                        "and 50 MiB of KVA is left, at 3 the arena is 200 MiB and 150 MiB is left")
    assert len(lines) == 3
