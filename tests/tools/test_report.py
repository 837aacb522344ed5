"""`armboard boot --report`: one self-contained page with every section, the page tables as the guest
left them, the diagnosis of a failed boot, and the GEOM graph with or without Graphviz."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from tools.cli import main
from tools.geom_graph import confdot_svg, levels, parse_confdot
from tools.report import SECTIONS


class Page(HTMLParser):
    """The tags, references, section ids and table rows of a report."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str]] = []
        self.sections: list[str] = []
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [(k, v) for k, v in attrs if k in ("src", "href", "action", "data")]
        if tag == "section":
            self.sections.append(a["id"])
        if tag == "img":
            self.images.append(a["src"])
        if tag == "tr":
            self.rows.append([])
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def report(tmp_path, capsys, *argv: str) -> tuple[int, str]:
    path = tmp_path / "boot.html"
    code = main(["boot", "--console", str(tmp_path / "console.txt"), "--report", str(path), *argv])
    capsys.readouterr()
    return code, path.read_text()


def test_the_report_is_one_self_contained_page_with_every_section(tmp_path, capsys):
    code, text = report(tmp_path, capsys)
    assert code == 0
    page = Page(text)
    assert page.sections == [ident for ident, _ in SECTIONS]
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for attr, value in page.refs:
        assert value.startswith("data:") if attr == "src" else value.startswith("#"), (attr, value[:80])
    assert len(page.images) >= 4                              # timeline, physical memory, KVA, GEOM
    for src in page.images:
        head, _, data = src.partition(",")
        assert head == "data:image/svg+xml;base64"
        assert ET.fromstring(base64.b64decode(data)).tag.endswith("svg")
    console = (tmp_path / "console.txt").read_text()
    assert "The operating system has halted." in console and "The operating system has halted." in text


def test_the_page_tables_are_those_the_guest_built(tmp_path, capsys):
    code, text = report(tmp_path, capsys)
    assert code == 0
    rows = Page(text).rows
    window = next(r for r in rows if r and r[-1].startswith("LOCORE_MAP_MB window"))
    assert window[:2] == ["0xc0000000-0xc3ffffff", "64"] and window[4] == "0x40000000-0x43ffffff"
    after = rows[rows.index(window) + 1]
    assert after[0].startswith("0xc4000000-") and after[-1] == "identity section (VA = PA)"
    mapped = re.search(r"0xc0000000-0x[0-9a-f]+ mapped with (\d+) 4 KiB pages",
                       (tmp_path / "console.txt").read_text())
    handover = text[text.index("kern_pt1 at 0x"):text.rindex("kern_pt1 at 0x")]     # the first of the two tables
    pages = sum(int(n) for n in re.findall(r"L2 tables, (\d+) small pages", handover))
    assert mapped is not None and pages == int(mapped.group(1))
    assert re.search(rf"kern_pt1 at 0x[0-9a-f]+, at the hand-over</h3><p>[^<]*: {pages} pages", text)
    later = int(re.search(r"at the end of the boot</h3><p>[^<]*: (\d+) pages", text).group(1))
    assert later > pages                                      # the Python kernel maps its own pages there


def test_a_failed_boot_reports_its_diagnosis(tmp_path, capsys, sparse_image):
    image = sparse_image(60 << 20)
    code, text = report(tmp_path, capsys, "--kernel-footprint", "9M", "--mfsroot", str(image))
    assert code == 1
    page = Page(text)
    assert page.sections == [ident for ident, _ in SECTIONS]
    diagnosis = text[text.index('<section id="diagnosis">'):text.index('<section id="console">')]
    assert "Set options LOCORE_MAP_MB=70 or larger" in diagnosis and "<code>70</code>" in diagnosis
    assert "before kmeminit laid out the KVA" in text and "GEOM did not start" in text
    assert "No kern_pt1: the boot ended in initarm" in text


def test_the_geom_graph_without_graphviz_is_drawn_from_confdot(tmp_path, capsys):
    from kernel_sim import boot as boot_mod

    result = boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(console=None)))
    dot = result.startup.geom.confdot()
    nodes, edges = parse_confdot(dot)
    labels = [n.get("label", "") for n in nodes.values()]
    assert any(label.startswith("md0") for label in labels) and any(label.startswith("MD\n") for label in labels)
    level = levels(nodes, edges)
    assert all(level[b] > level[a] for a, b in edges)
    svg, how = confdot_svg(dot, dot="")
    assert how.startswith("matplotlib") and "md0" in svg.decode()
    assert ET.fromstring(svg).tag.endswith("svg")


@pytest.mark.skipif(not __import__("shutil").which("dot"), reason="Graphviz dot is not installed (.ci/run installs it)")
def test_the_geom_graph_with_graphviz(tmp_path):
    svg, how = confdot_svg('digraph geom {\n\tz0x1 [shape=box,label="MD\\nmd0\\nr#1"];\n}\n')
    assert how == "Graphviz dot" and b"md0" in svg
