"""kern.geom.confdot as a picture: Graphviz `dot -Tsvg` when it is installed (Debian graphviz), else a
layered drawing with matplotlib from the same text, so the report always has the graph.

The fallback reads the subset of DOT that geom_dump.c's g_confdot writes (one node or one edge per
line) and puts each node on the level of its longest path from a node nothing points to: top
providers first, down through geoms and consumers to the disks.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from tools.pictures import figure_bytes, pyplot

NODE = re.compile(r'^\s*(\w+)\s*\[(.*)\];\s*$')
EDGE = re.compile(r'^\s*(\w+)\s*->\s*(\w+);\s*$')
ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\]]+)')


def parse_confdot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """(nodes by id with their attributes, edges) of a confdot digraph."""
    nodes: dict[str, dict[str, str]] = {}
    edges: list[tuple[str, str]] = []
    for line in text.splitlines():
        if m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
        elif m := NODE.match(line):
            attrs = {k: v.strip('"').replace("\\n", "\n").strip() for k, v in ATTR.findall(m.group(2))}
            nodes[m.group(1)] = attrs
    for a, b in edges:
        nodes.setdefault(a, {"label": a})
        nodes.setdefault(b, {"label": b})
    return nodes, edges


def levels(nodes: dict, edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path level of each node from the nodes without an incoming edge (cycles cut)."""
    incoming = {n: 0 for n in nodes}
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        out[a].append(b)
        incoming[b] += 1
    level = {n: 0 for n in nodes}
    order = [n for n in nodes if incoming[n] == 0]
    seen = 0
    while seen < len(order):
        n = order[seen]
        seen += 1
        for m in out[n]:
            level[m] = max(level[m], level[n] + 1)
            incoming[m] -= 1
            if incoming[m] == 0:
                order.append(m)
    return level


def fallback_svg(text: str) -> bytes:
    """The graph drawn with matplotlib: boxes for geoms, hexagons for providers, ellipses for consumers."""
    plt = pyplot()
    from matplotlib.patches import Ellipse, FancyBboxPatch, RegularPolygon

    nodes, edges = parse_confdot(text)
    level = levels(nodes, edges)
    rows: dict[int, list[str]] = {}
    for n in nodes:
        rows.setdefault(level[n], []).append(n)
    width = max((len(r) for r in rows.values()), default=1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.9 * width), max(2.0, 1.0 * (len(rows) + 1))))
    pos = {n: ((i + 0.5) * width / len(r), -lv) for lv, r in rows.items() for i, n in enumerate(r)}
    for a, b in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        ax.annotate("", xy=(x2, y2 + 0.28), xytext=(x1, y1 - 0.28),
                    arrowprops={"arrowstyle": "->", "color": "#555555", "linewidth": 0.8})
    for n, (x, y) in pos.items():
        shape = nodes[n].get("shape", "ellipse")
        if shape == "box":
            patch = FancyBboxPatch((x - 0.42, y - 0.26), 0.84, 0.52, boxstyle="square,pad=0", fc="#ddeeff",
                                   ec="#335577")
        elif shape == "hexagon":
            patch = RegularPolygon((x, y), 6, radius=0.34, orientation=0.5236, fc="#eeffdd", ec="#557733")
        else:
            patch = Ellipse((x, y), 0.7, 0.4, fc="#ffffff", ec="#777777")
        ax.add_patch(patch)
        ax.text(x, y, nodes[n].get("label", n), ha="center", va="center", fontsize=6)
    ax.set_xlim(0, width)
    ax.set_ylim(-max(rows, default=0) - 0.6, 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("kern.geom.confdot (drawn without Graphviz)", fontsize=8)
    fig.tight_layout()
    return figure_bytes(fig, "svg")


def confdot_svg(text: str, *, dot: str | None = None) -> tuple[bytes, str]:
    """(SVG bytes, how it was drawn): Graphviz's dot if found (or given), else the fallback drawing."""
    dot = dot if dot is not None else shutil.which("dot")
    if dot:
        try:
            proc = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            proc = None
        if proc is not None and proc.returncode == 0 and b"<svg" in proc.stdout:
            return proc.stdout, "Graphviz dot"
    return fallback_svg(text), "matplotlib (Graphviz dot not found)"
