"""Pictures of a plan's KVA layout and of a sweep's outcomes: SVG by hand, PNG through matplotlib.

matplotlib is imported only when a PNG is asked for: it costs more to import than a boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.guest.abi import KERNBASE, KERNVIRTADDR, MIB, PT2PG_SPAN

COLOURS = {"outside": "#bbbbbb", "kernel_map": "#6699cc", "kernel_arena": "#99cc66"}
OUTCOME_COLOURS = {"all": "#55aa55", "some": "#ddaa33", "none": "#cc4444", "": "#dddddd"}
KVA_LOW, KVA_HIGH = 0xBFC00000, 1 << 32


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Bar:
    """One labelled span of addresses in a picture."""

    label: str
    start: int
    size: int
    colour: str


def kva_rows(plan) -> list:
    return sorted(plan.kva.rows, key=lambda r: r.start)


def kva_bars(plan) -> tuple[str, list[Bar], int, int]:
    """The KVA layout over [PT2MAP, 4 GiB): one bar per consumer."""
    title = f"KVA layout 0x{KVA_LOW:08x}-0xffffffff (vm_kmem_size {plan.kmem.vm_kmem_size // MIB} MiB)"
    bars = [Bar(f"{r.consumer[:40]} {r.size / MIB:.1f} MiB", r.start, r.size, COLOURS.get(r.map, "#cc9966"))
            for r in kva_rows(plan)]
    return title, bars, KVA_LOW, KVA_HIGH


def boot_layout_bars(prep, plan) -> tuple[str, list[Bar], int, int]:
    """What locore and pmap_bootstrap must cover, against what LOCORE_MAP_MB and NKPT2PG give.

    Drawn when the predicted boot fails before vm_ksubmap_init, so there is no KVA layout: the kernel,
    its modules and the metadata (up to MODINFOMD_KERNEND), locore's window and the span the NKPT2PG
    boot L2 pages map, in kernel virtual addresses; a window that falls short of the kernel end is red."""
    layout, options = prep.layout, prep.options
    window = options["LOCORE_MAP_MB"] * MIB
    nkpt2pg = options["NKPT2PG"] * PT2PG_SPAN
    ram_end = layout.ram_base + layout.ram_size - layout.kernel_pa + layout.kernel_va
    bars = [Bar(f"kernel {layout.kernel_size // 1024} KiB", layout.kernel_va, layout.kernel_size,
                COLOURS["kernel_map"])]
    bars += [Bar(f"{m.type} {m.name[:24]} {m.size // 1024} KiB", m.va, m.size, COLOURS["kernel_arena"])
             for m in layout.modules]
    bars.append(Bar("environment and metadata", layout.env_va, layout.kernend - layout.env_va, "#cc9966"))
    fits = {True: "#55aa55", False: "#cc4444"}
    bars.append(Bar(f"LOCORE_MAP_MB={options['LOCORE_MAP_MB']} (needs {plan.min_locore_map_mb})",
                    KERNVIRTADDR, window, fits[KERNVIRTADDR + window >= layout.kernend]))
    bars.append(Bar(f"NKPT2PG={options['NKPT2PG']} (needs {plan.min_nkpt2pg})", KERNBASE, nkpt2pg,
                    fits[KERNBASE + nkpt2pg >= layout.kernend]))
    high = min(1 << 32, -(-max(b.start + b.size for b in bars) // MIB) * MIB)   # RAM may run past: clipped
    bars.append(Bar(f"RAM from the kernel's load address ({layout.ram_size // MIB} MiB in all)", layout.kernel_va,
                    ram_end - layout.kernel_va, COLOURS["outside"]))
    title = f"boot layout 0x{KERNBASE:08x}-0x{high - 1:08x} (predicted to fail in {plan.stage}, before KVA exists)"
    return title, bars, KERNBASE, high


def bars_svg(title: str, bars: list[Bar], low: int, high: int) -> str:
    """One bar per span over [low, high)."""
    width, row_h, left = 900, 18, 330
    scale = (width - left - 20) / (high - low)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row_h * len(bars) + 40}" '
             'font-family="monospace" font-size="11">',
             f'<text x="4" y="14">{_escape(title)}</text>']
    for i, b in enumerate(bars):
        y = 24 + i * row_h
        parts.append(f'<text x="4" y="{y + 12}">{_escape(b.label)}</text>')
        start = min(max(b.start, low), high)
        end = min(max(b.start + b.size, low), high)
        x, w = left + (start - low) * scale, max(1.0, (end - start) * scale)
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 4}" fill="{b.colour}"/>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def bars_png(title: str, bars: list[Bar], low: int, high: int, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.25 * len(bars) + 1))
    for i, b in enumerate(bars):
        ax.barh(i, b.size / MIB, left=(b.start - low) / MIB, color=b.colour)
    ax.set_yticks(range(len(bars)), [b.label for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, (high - low) / MIB)
    ax.set_xlabel(f"MiB above 0x{low:08x}")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def kva_svg(plan) -> str:
    return bars_svg(*kva_bars(plan))


def kva_png(plan, path: Path) -> None:
    bars_png(*kva_bars(plan), path)


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
        raise InputError(f"cannot write the picture: {describe_host(exc)}", str(path)) from None
