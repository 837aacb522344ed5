"""`armboard plan --picture`: a failing prediction keeps its stages and exit status and still draws."""

from __future__ import annotations

import json
import re

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
    assert svg.startswith("<svg") and "LOCORE_MAP_MB=1 (needs 18)" in svg and "NKPT2PG=32 (needs 5)" in svg
    # locore's 1 MiB window is drawn red (short of the kernel end), NKPT2PG's 128 MiB green
    window = re.search(r'LOCORE_MAP_MB=1 \(needs 18\)</text>\n<rect [^>]*fill="([^"]+)"', svg)
    tables = re.search(r'NKPT2PG=32 \(needs 5\)</text>\n<rect [^>]*fill="([^"]+)"', svg)
    assert window is not None and tables is not None
    assert (window.group(1), tables.group(1)) == ("#cc4444", "#55aa55")


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
