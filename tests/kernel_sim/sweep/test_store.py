"""The row journal: appended rows survive a kill, a torn last row is dropped, another grid is refused."""

from __future__ import annotations

import json

import pytest

from kernel_sim.errors import InputError
from kernel_sim.sweep import Dimension, grid_points
from kernel_sim.sweep.store import RowStore

POINTS = grid_points(("64M",), [Dimension("NKPT2PG", ("16", "32", "48"))])


def _row(p, message="ok") -> dict:
    return {"point": p.index, "physmem": p.physmem, "options": p.options_text, "exit_code": 0,
            "outcome": "halted", "stage": "mi_startup", "message": message, "plan_agrees": True,
            "kva_free": 1 << 20, "virtual_seconds": 0.5}


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl"])
def test_rows_come_back_typed_and_a_torn_last_row_is_dropped(tmp_path, name):
    path = tmp_path / name
    store = RowStore(path, POINTS)
    assert store.load() == {}
    store.open()
    store.append([_row(POINTS[0], 'a "quoted"\nmessage on two lines')])
    store.append([_row(POINTS[1])])
    store.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])                       # killed in the middle of writing row 1
    store = RowStore(path, POINTS)
    done = store.load()
    assert sorted(done) == [0]
    assert done[0]["message"] == 'a "quoted"\nmessage on two lines'
    assert (done[0]["exit_code"], done[0]["kva_free"], done[0]["plan_agrees"]) == (0, 1 << 20, True)
    repaired = path.read_bytes()
    assert whole.startswith(repaired) and repaired.endswith(b"\n") and len(repaired) < len(whole) - 7
    store.open()                                       # resume appends after the repaired end
    store.append([_row(POINTS[1]), _row(POINTS[2])])
    store.compact(list(done.values()) + [_row(POINTS[1]), _row(POINTS[2])])
    again = RowStore(path, POINTS).load()
    assert sorted(again) == [0, 1, 2]
    if name.endswith(".jsonl"):
        assert [json.loads(line)["point"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_a_cut_inside_a_quoted_newline_is_a_torn_row(tmp_path):
    path = tmp_path / "rows.csv"
    store = RowStore(path, POINTS)
    store.open()
    store.append([_row(POINTS[0]), _row(POINTS[1], "first line\nsecond line")])
    store.close()
    text = path.read_text()
    path.write_text(text[:text.index("second line")])  # the cut ends with the quoted newline
    assert sorted(RowStore(path, POINTS).load()) == [0]


def test_another_grid_and_a_second_writer_are_refused(tmp_path):
    path = tmp_path / "rows.csv"
    store = RowStore(path, POINTS)
    store.open()
    store.append([_row(POINTS[0])])
    with pytest.raises(InputError, match="another sweep is writing"):
        RowStore(path, POINTS).open()
    store.close()
    other = grid_points(("64M",), [Dimension("NKPT2PG", ("8", "32", "48"))])
    with pytest.raises(InputError, match="holds another grid"):
        RowStore(path, other).load()
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="no point column"):
        RowStore(tmp_path / "junk.csv", POINTS).load()
