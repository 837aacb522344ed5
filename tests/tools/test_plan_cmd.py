"""`armboard plan --picture`: a failing prediction keeps its stages and exit status and still draws."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import matplotlib.colors
import pytest

from tools.cli import main


def test_picture_of_a_boot_that_fails_in_initarm_draws_the_boot_layout(tmp_path, capsys):
    picture = tmp_path / "kva.svg"
    code = main(["plan", "--kernel-footprint", "9M", "-o", "LOCORE_MAP_MB=1", "--picture", str(picture)])
    captured = capsys.readouterr()
    assert code == 1                                      # as plan without --picture: the prediction fails
    assert "initarm          FAILS" in captured.out
    assert "prediction: the board fails in initarm (exit 1)" in captured.out
    assert "smallest LOCORE_MAP_MB that covers kernel, modules and metadata: 18" in captured.out
    assert "smallest NKPT2PG that maps them: 5" in captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("armboard: --picture: no KVA layout")
    assert "fail in initarm" in lines[0] and str(picture) in lines[0]
    svg = picture.read_text()
    assert ET.fromstring(svg).tag.endswith("svg")
    assert "LOCORE_MAP_MB=1 (needs 18)" in svg and "NKPT2PG=32 (needs 5)" in svg
    assert "LOCORE_MAP_MB window end 0xc0100000" in svg and "kernel end (MODINFOMD_KERNEND) 0xc1102000" in svg


def test_the_boot_layout_draws_a_short_window_red_and_enough_l2_pages_green():
    from kernel_sim.boot import BootRequest, prepare
    from kernel_sim.plan import plan_boot
    from tools.pictures import FITS, boot_layout_figure

    prep = prepare(BootRequest(kernel_footprint="9M", overrides=["LOCORE_MAP_MB=1"]))
    fig = boot_layout_figure(prep, plan_boot(prep))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    bars = ax.patches
    colour = {labels[round(b.get_y() + b.get_height() / 2)]: matplotlib.colors.to_hex(b.get_facecolor()) for b in bars}
    assert colour["LOCORE_MAP_MB=1 (needs 18)"] == FITS[False]
    assert colour["NKPT2PG=32 (needs 5)"] == FITS[True]


def test_picture_of_a_pmap_bootstrap_failure_with_json_keeps_stdout_json(tmp_path, capsys):
    picture = tmp_path / "boot.svg"
    code = main(["plan", "--json", "--kernel-footprint", "9M", "-o", "NKPT2PG=1", "-o", "INVARIANTS=1",
                 "--picture", str(picture)])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert code == 1 and data["stage"] == "pmap_bootstrap" and data["min_nkpt2pg"] == 5
    assert "NKPT2PG=1 (needs 5)" in picture.read_text()


def test_picture_of_a_boot_that_lays_out_kva_draws_the_kva_layout(tmp_path, capsys):
    picture = tmp_path / "kva.svg"
    assert main(["plan", "--kernel-footprint", "9M", "--picture", str(picture)]) == 0
    assert capsys.readouterr().err == ""
    svg = picture.read_text()
    assert "KVA layout 0xbfc00000-0xffffffff" in svg and "kmem arena" in svg


def test_picture_with_an_unknown_suffix_is_an_input_error(tmp_path, capsys):
    code = main(["plan", "--picture", str(tmp_path / "kva.gif")])
    assert code == 2 and "a picture is .svg or .png" in capsys.readouterr().err


@pytest.mark.slow
def test_png_picture_of_a_failing_boot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "boot.png"
    assert main(["plan", "-o", "LOCORE_MAP_MB=1", "--kernel-footprint", "9M", "--picture", str(picture)]) == 1
    assert picture.read_bytes().startswith(b"\x89PNG")
