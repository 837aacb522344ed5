"""tools/pictures.py: the KVA picture has a hex address axis, shaded free KVA, the four markers and a
legend; sizes read as sizes; SVG or PNG by suffix, the same code for plan --picture and sweep --plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kernel_sim.boot import BootRequest, prepare
from kernel_sim.errors import InputError
from kernel_sim.guest.abi import KERNBASE, MIB
from kernel_sim.plan import plan_boot
from tools import pictures


@pytest.fixture(scope="module")
def planned():
    prep = prepare(BootRequest(kernel_footprint="9M", loader_conf=None))
    return prep, plan_boot(prep)


def merged_free(rows, low: int, high: int) -> int:
    """Free bytes in [low, high) that no row covers, by a plain sweep over the rows."""
    covered, cursor = 0, low
    for start, end in sorted((max(r.start, low), min(r.end, high)) for r in rows if r.end > low and r.start < high):
        if end > cursor:
            covered += end - max(start, cursor)
            cursor = end
    return high - low - covered


def test_the_kva_picture_has_a_hex_axis_markers_free_ranges_and_a_legend(planned):
    prep, plan = planned
    kva = plan.kva
    fig = pictures.kva_figure(kva, prep.options["LOCORE_MAP_MB"])
    ax = fig.axes[0]
    fig.canvas.draw()
    low, high = ax.get_xlim()
    ticks = [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True) if low <= x <= high]
    assert len(ticks) >= 5 and all(t.startswith("0x") and len(t) >= 10 for t in ticks)
    assert "0xc0000000" in ticks
    values = [int(t, 16) for t in ticks]
    step = values[1] - values[0]
    assert step & (step - 1) == 0 and all(b - a == step for a, b in zip(values, values[1:], strict=False))
    lines = {round(line.get_xdata()[0]) for line in ax.get_lines()}
    vm_max = kva.inputs.vm_max_kernel_address
    assert lines == {KERNBASE, KERNBASE + 64 * MIB, kva.kernel_vm_end, vm_max}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    free = merged_free(kva.rows, KERNBASE, vm_max)
    assert any(t.startswith("kernel_map") for t in legend) and any(t.startswith("kernel_arena") for t in legend)
    assert f"free ({pictures.size_text(free)} in " in " ".join(legend)
    assert f"kernel_vm_end 0x{kva.kernel_vm_end:08x}" in legend and f"vm_max_kernel_address 0x{vm_max:08x}" in legend
    assert "KERNBASE 0xc0000000" in legend and "LOCORE_MAP_MB window end 0xc4000000" in legend
    shaded = [p for p in ax.patches if p.get_hatch() == "//"]
    assert shaded and sum(p.get_width() for p in shaded if hasattr(p, "get_width")) == pytest.approx(free)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(kva.rows)
    assert not any("0.0 MiB" in label or " 0B" in label for label in labels)
    assert "IRQ stacks 4.0K" in labels and any(label.startswith("kmem arena ") for label in labels)


def test_svg_and_png_by_suffix_and_nothing_else(planned, tmp_path):
    prep, plan = planned
    svg, png = tmp_path / "kva.svg", tmp_path / "kva.png"
    pictures.save_figure(pictures.plan_figure(prep, plan), svg, "--picture")
    pictures.save_figure(pictures.plan_figure(prep, plan), png, "--picture")
    root = ET.fromstring(svg.read_bytes())
    assert root.tag.endswith("svg") and "kmem arena" in svg.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match=r"kva.gif: a picture is \.svg or \.png"):
        pictures.save_figure(pictures.plan_figure(prep, plan), tmp_path / "kva.gif", "--picture")
    assert not (tmp_path / "kva.gif").exists()


def test_svg_output_is_the_same_every_time(planned, tmp_path):
    prep, plan = planned
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    pictures.save_figure(pictures.plan_figure(prep, plan), a, "--picture")
    pictures.save_figure(pictures.plan_figure(prep, plan), b, "--picture")
    assert a.read_bytes() == b.read_bytes()


def test_the_heatmap_legend_names_the_outcomes():
    fig = pictures.heatmap_figure({("1", "a"): "all", ("2", "a"): "none"}, ("1", "2"), ("a",), "SCALE", "X")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["all boot", "some boot", "none boot", "no point"]


def test_the_physical_memory_map_shows_the_board_and_what_is_in_ram(planned):
    prep, _plan = planned
    fig = pictures.physmem_figure(prep)
    top, bottom = fig.axes
    bus = [t.get_text() for t in top.get_yticklabels()]
    ram = [t.get_text() for t in bottom.get_yticklabels()]
    assert any(t.startswith("RAM ") and "@0x40000000" in t for t in bus)
    assert any(t.startswith("uart0 (pl011)") and "@0x09000000" in t for t in bus)
    assert any(t.startswith("kernel 9.0M @0x40000000") for t in ram)
    assert any(t.startswith("free RAM after the boot tables") for t in ram)
