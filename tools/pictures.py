"""Pictures of a plan's KVA layout and of a sweep's outcomes: SVG by hand, PNG through matplotlib.

matplotlib is imported only when a PNG is asked for: it costs more to import than a boot.
"""

from __future__ import annotations

from pathlib import Path

from kernel_sim.errors import InputError
from kernel_sim.guest.abi import MIB

COLOURS = {"outside": "#bbbbbb", "kernel_map": "#6699cc", "kernel_arena": "#99cc66"}
OUTCOME_COLOURS = {"all": "#55aa55", "some": "#ddaa33", "none": "#cc4444", "": "#dddddd"}
KVA_LOW, KVA_HIGH = 0xBFC00000, 1 << 32


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def kva_rows(plan) -> list:
    return sorted(plan.kva.rows, key=lambda r: r.start)


def kva_svg(plan) -> str:
    """One bar per consumer over [PT2MAP, 4 GiB)."""
    rows = kva_rows(plan)
    width, row_h, left = 900, 18, 330
    scale = (width - left - 20) / (KVA_HIGH - KVA_LOW)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row_h * len(rows) + 40}" '
             'font-family="monospace" font-size="11">',
             f'<text x="4" y="14">KVA layout 0x{KVA_LOW:08x}-0xffffffff (vm_kmem_size '
             f'{plan.kmem.vm_kmem_size // MIB} MiB)</text>']
    for i, r in enumerate(rows):
        y = 24 + i * row_h
        parts.append(f'<text x="4" y="{y + 12}">{_escape(r.consumer[:40])} {r.size / MIB:.1f} MiB</text>')
        x, w = left + (r.start - KVA_LOW) * scale, max(1.0, r.size * scale)
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 4}" '
                     f'fill="{COLOURS.get(r.map, "#cc9966")}"/>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def kva_png(plan, path: Path) -> None:
    plt = _pyplot()
    rows = kva_rows(plan)
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(rows) + 1))
    for i, r in enumerate(rows):
        ax.barh(i, r.size / MIB, left=(r.start - KVA_LOW) / MIB, color=COLOURS.get(r.map, "#cc9966"))
    ax.set_yticks(range(len(rows)), [f"{r.consumer[:40]} {r.size / MIB:.1f} MiB" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"MiB above 0x{KVA_LOW:08x}")
    ax.set_title(f"KVA layout (vm_kmem_size {plan.kmem.vm_kmem_size // MIB} MiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heatmap_svg(cells: dict, xs: tuple, ys: tuple, xname: str, yname: str) -> str:
    cw, ch, left, top = 70, 26, 160, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + cw * len(xs) + 20}" '
             f'height="{top + ch * len(ys) + 40}" font-family="monospace" font-size="11">',
             f'<text x="4" y="14">armboard sweep: {_escape(xname)} across, {_escape(yname or "-")} down '
             '(green: boots, amber: some boot, red: none)</text>']
    for i, xv in enumerate(xs):
        parts.append(f'<text x="{left + i * cw + 4}" y="{top - 6}">{_escape(xv)}</text>')
    for j, yv in enumerate(ys):
        parts.append(f'<text x="4" y="{top + j * ch + 17}">{_escape(yname)} {_escape(yv)}</text>')
        for i, xv in enumerate(xs):
            parts.append(f'<rect x="{left + i * cw}" y="{top + j * ch}" width="{cw - 2}" height="{ch - 2}" '
                         f'fill="{OUTCOME_COLOURS[cells.get((xv, yv), "")]}"/>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def heatmap_png(cells: dict, xs: tuple, ys: tuple, xname: str, yname: str, path: Path) -> None:
    plt = _pyplot()
    from matplotlib.colors import to_rgb

    fig, ax = plt.subplots(figsize=(max(5.0, 1 + 0.7 * len(xs)), max(3.0, 1 + 0.4 * len(ys))))
    grid = [[to_rgb(OUTCOME_COLOURS[cells.get((xv, yv), "")]) for xv in xs] for yv in ys]
    ax.imshow(grid, aspect="auto")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.set_title("green: all boot, amber: some boot, red: none boot", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("PNG pictures need matplotlib (pip install matplotlib); .svg needs nothing",
                         "--picture/--plot") from None
    return plt


def write_picture(path: Path, svg, png, flag: str) -> None:
    """Write an SVG (svg() -> text) or a PNG (png(path)) by the file's suffix."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".svg":
            path.write_text(svg())
        elif suffix == ".png":
            png(path)
        else:
            raise InputError(f"{path.name}: a picture is .svg or .png", flag)
    except OSError as exc:
        raise InputError(f"cannot write the picture: {exc.strerror}", str(path)) from None
