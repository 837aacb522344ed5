"""Pictures, drawn with matplotlib: the KVA layout (plan --picture, the boot report), the boot layout
when a boot fails before there is one, a sweep's outcomes (sweep --plot), the boot timeline and the
physical memory map. One drawing code for all of them; SVG or PNG by the file's suffix.

Why matplotlib and not hand-written SVG: an address axis with hex ticks, shaded free ranges, markers
and a legend are what it does well. It costs about 0.3 s to import, so only these commands import it,
and only when they draw. SVG text stays text (svg.fonttype none), so a picture can be searched, and
the output does not change from run to run (no date, a fixed hash salt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.guest.abi import KERNBASE, KERNVIRTADDR, MIB, PT2MAP, PT2PG_SPAN
from kernel_sim.humanize import humanize_number

COLOURS = {"outside": "#bbbbbb", "kernel_map": "#6699cc", "kernel_arena": "#99cc66", "other": "#cc9966"}
FREE_COLOUR = "#eeeeee"
FITS = {True: "#55aa55", False: "#cc4444"}
OUTCOME_COLOURS = {"all": "#55aa55", "some": "#ddaa33", "none": "#cc4444", "": "#dddddd"}
MARKER_STYLES = {"KERNBASE": ("#000000", "-"), "LOCORE_MAP_MB window end": ("#cc4444", "--"),
                 "kernel_vm_end": ("#7744aa", "-."), "vm_max_kernel_address": ("#aa6600", ":"),
                 "kernel end (MODINFOMD_KERNEND)": ("#333333", "--"), "NKPT2PG span end": ("#7744aa", "-.")}
STAGE_COLOURS = {"guest": "#6699cc", "kernel": "#99cc66", "process": "#ccddaa"}
SUFFIXES = (".svg", ".png")
KVA_LOW, KVA_HIGH = PT2MAP, 1 << 32


@dataclass(frozen=True)
class Bar:
    """One labelled span of addresses in a picture."""

    label: str
    start: int
    size: int
    colour: str


def size_text(n: int) -> str:
    """humanize_number(3)'s way: 16K, 4.0K, 1.5M, 338M (never "0.0 MiB")."""
    return humanize_number(n, 5)


# ------------------------------------------------------------------------------ files
def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("pictures need matplotlib (pip install matplotlib)", "--picture/--plot") from None
    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "armboard", "font.size": 8})
    return plt


def figure_bytes(fig, fmt: str) -> bytes:
    """The figure as SVG or PNG bytes (for the report), closed afterwards."""
    import io

    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100, metadata={"Date": None} if fmt == "svg" else {"Software": None})
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path: Path, flag: str, also: str | None = None) -> None:
    """Write a figure as SVG or PNG by `path`'s suffix; any other suffix is bad input."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        pyplot().close(fig)
        kinds = ".svg or .png" + (f" (or {also})" if also else "")
        raise InputError(f"{path.name}: a picture is {kinds}", flag)
    data = figure_bytes(fig, suffix[1:])
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write the picture: {describe_host(exc)}", str(path)) from None


# ------------------------------------------------------------------------------ address pictures
def _hex_axis(ax, low: int, high: int) -> None:
    """Ticks at round hexadecimal addresses: a power-of-two step giving about ten of them."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    ax.set_xlim(low, high)
    step = 1 << max(12, ((high - low) // 12 - 1).bit_length())
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"0x{int(x):08x}"))
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")


def _free_ranges(bars: list[Bar], low: int, high: int) -> list[tuple[int, int]]:
    """The parts of [low, high) no bar covers."""
    spans = sorted((b.start, b.start + b.size) for b in bars if b.size > 0)
    free, cursor = [], low
    for start, end in spans:
        if start > cursor:
            free.append((cursor, min(start, high)))
        cursor = max(cursor, end)
    if cursor < high:
        free.append((cursor, high))
    return [(s, e) for s, e in free if e > s]


def address_figure(title: str, bars: list[Bar], low: int, high: int, *, markers: dict[str, int],
                   free_in: tuple[int, int] | None = None, legend: dict[str, str] | None = None,
                   axis_label: str = "kernel virtual address"):
    """One row per span on a hex address axis, the free parts of `free_in` shaded across all rows,
    named markers as vertical lines, and a legend. A span too small to see at this scale is drawn
    at a minimum width; its label still gives its exact size."""
    plt = pyplot()
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(11, 0.24 * len(bars) + 2.6))
    span = high - low
    free = _free_ranges(bars, *free_in) if free_in else []
    for start, end in free:
        ax.axvspan(start, end, facecolor=FREE_COLOUR, zorder=0, hatch="//", edgecolor="#cccccc", linewidth=0)
    for i, b in enumerate(bars):
        start = min(max(b.start, low), high)
        end = min(max(b.start + b.size, low), high)
        ax.barh(i, max(end - start, span * 0.002), left=start, color=b.colour, height=0.7, zorder=2)
    ax.set_yticks(range(len(bars)), [b.label for b in bars])
    ax.set_ylim(len(bars) - 0.4, -0.6)
    handles = [Patch(color=c, label=name) for name, c in (legend or {}).items()]
    if free:
        total = sum(e - s for s, e in free)
        handles.append(Patch(facecolor=FREE_COLOUR, hatch="//", edgecolor="#cccccc",
                             label=f"free ({size_text(total)} in {len(free)} ranges)"))
    for name, address in markers.items():
        if low <= address <= high:
            colour, style = MARKER_STYLES.get(name, ("#000000", "-"))
            handles.append(ax.axvline(address, color=colour, linestyle=style, linewidth=1.2, zorder=3,
                                      label=f"{name} 0x{address:08x}"))
    _hex_axis(ax, low, high)
    ax.set_xlabel(axis_label)
    ax.set_title(title, fontsize=9)
    _legend_below(fig, handles)
    return fig


def _legend_below(fig, handles: list) -> None:
    """The legend under the axes, in three columns, with room made for it."""
    height = 0.18 * -(-len(handles) // 3) + 0.15
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, height / fig.get_figheight(), 1, 1))


def kva_bars(rows) -> list[Bar]:
    """KvaRows (kernel_sim/vm/kva_layout.py) by address, labelled with their exact sizes."""
    return [Bar(f"{r.consumer[:44]} {size_text(r.size)}", r.start, r.size, COLOURS.get(r.map, COLOURS["other"]))
            for r in sorted(rows, key=lambda r: r.start)]


def kva_figure(kva, locore_map_mb: int, *, title: str | None = None):
    """The boot KVA layout: every consumer, the free KVA of the kernel map, KERNBASE, the end of
    locore's LOCORE_MAP_MB window, kernel_vm_end and vm_max_kernel_address."""
    vm_max = kva.inputs.vm_max_kernel_address
    title = title or (f"KVA layout 0x{KVA_LOW:08x}-0xffffffff (vm_kmem_size "
                      f"{size_text(kva.inputs.kmem.vm_kmem_size)}, free KVA {size_text(kva.kva_remaining)})")
    markers = {"KERNBASE": KERNBASE, "LOCORE_MAP_MB window end": KERNVIRTADDR + locore_map_mb * MIB,
               "kernel_vm_end": kva.kernel_vm_end, "vm_max_kernel_address": vm_max}
    legend = {"kernel_map (boot pages, submaps)": COLOURS["kernel_map"],
              "kernel_arena (kva_alloc, kmem_malloc)": COLOURS["kernel_arena"],
              "outside the kernel map": COLOURS["outside"]}
    return address_figure(title, kva_bars(kva.rows), KVA_LOW, KVA_HIGH, markers=markers, free_in=(KERNBASE, vm_max),
                          legend=legend)


def boot_layout_figure(prep, plan):
    """What locore and pmap_bootstrap must cover, against what LOCORE_MAP_MB and NKPT2PG give.

    Drawn when the predicted boot fails before vm_ksubmap_init, so there is no KVA layout: the kernel,
    its modules and the metadata (up to MODINFOMD_KERNEND), locore's window and the span the NKPT2PG
    boot L2 pages map, in kernel virtual addresses; a window that falls short of the kernel end is red."""
    layout, options = prep.layout, prep.options
    window = options["LOCORE_MAP_MB"] * MIB
    nkpt2pg = options["NKPT2PG"] * PT2PG_SPAN
    ram_end = layout.ram_base + layout.ram_size - layout.kernel_pa + layout.kernel_va
    bars = [Bar(f"kernel {size_text(layout.kernel_size)}", layout.kernel_va, layout.kernel_size, COLOURS["kernel_map"])]
    bars += [Bar(f"{m.type} {m.name[:24]} {size_text(m.size)}", m.va, m.size, COLOURS["kernel_arena"])
             for m in layout.modules]
    bars.append(Bar("environment and metadata", layout.env_va, layout.kernend - layout.env_va, COLOURS["other"]))
    bars.append(Bar(f"LOCORE_MAP_MB={options['LOCORE_MAP_MB']} (needs {plan.min_locore_map_mb})",
                    KERNVIRTADDR, window, FITS[KERNVIRTADDR + window >= layout.kernend]))
    bars.append(Bar(f"NKPT2PG={options['NKPT2PG']} (needs {plan.min_nkpt2pg})", KERNBASE, nkpt2pg,
                    FITS[KERNBASE + nkpt2pg >= layout.kernend]))
    high = min(1 << 32, -(-max(b.start + b.size for b in bars) // MIB) * MIB + MIB)   # RAM may run past: clipped
    bars.append(Bar(f"RAM from the kernel's load address ({size_text(layout.ram_size)} in all)", layout.kernel_va,
                    ram_end - layout.kernel_va, COLOURS["outside"]))
    title = f"boot layout 0x{KERNBASE:08x}-0x{high - 1:08x} (predicted to fail in {plan.stage}, before KVA exists)"
    markers = {"KERNBASE": KERNBASE, "LOCORE_MAP_MB window end": KERNVIRTADDR + window,
               "kernel end (MODINFOMD_KERNEND)": layout.kernend, "NKPT2PG span end": KERNBASE + nkpt2pg}
    legend = {"fits": FITS[True], "falls short of the kernel end": FITS[False]}
    return address_figure(title, bars, KERNBASE, high, markers=markers, legend=legend)


def plan_figure(prep, plan):
    """plan --picture: the KVA layout, or the boot layout when there is none."""
    if plan.kva is not None:
        return kva_figure(plan.kva, prep.options["LOCORE_MAP_MB"])
    return boot_layout_figure(prep, plan)


def physmem_figure(prep, handoff=None):
    """The board's physical address map, and what the loader and pmap_bootstrap put in RAM."""
    profile, layout = prep.profile, prep.layout
    bus = [Bar(f"RAM {size_text(layout.ram_size)}", layout.ram_base, layout.ram_size, COLOURS["kernel_arena"])]
    bus += [Bar(f"{f.name} (CFI flash) {size_text(f.size)}", f.base, f.size, COLOURS["other"]) for f in profile.flash]
    bus += [Bar(f"{d.name} ({d.type})", d.base, d.size, COLOURS["outside"]) for d in profile.devices]
    ram = [Bar(f"kernel {size_text(layout.kernel_size)}", layout.kernel_pa, layout.kernel_size, COLOURS["kernel_map"])]
    ram += [Bar(f"{m.type} {m.name[:24]} {size_text(m.size)}", m.pa, m.size, COLOURS["kernel_arena"])
            for m in layout.modules]
    ram.append(Bar("environment and metadata", layout.pa(layout.env_va), layout.kernend - layout.env_va,
                   COLOURS["other"]))
    end = layout.pa(layout.kernend)
    if handoff is not None:
        h = handoff
        ram.append(Bar("kern_pt1 (L1, 16K)", h.kern_pt1, 16384, "#7744aa"))
        ram.append(Bar("kern_pt2tab (PT2TAB, 4K)", h.kern_pt2tab, 4096, "#7744aa"))
        ram.append(Bar(f"L2 table pages (NKPT2PG={h.nkpt2pg} + {h.extra_pt2pg})", h.pt2pg_pa,
                       (h.nkpt2pg + h.extra_pt2pg) * 4096, "#9966cc"))
        end = max(end, h.first_free_pa)
    ram_end = layout.ram_base + layout.ram_size
    ram.append(Bar(f"free RAM after the boot tables {size_text(ram_end - end)}", end, ram_end - end, FREE_COLOUR))
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 0.24 * (len(bus) + len(ram)) + 3.4),
                                      gridspec_kw={"height_ratios": [len(bus) + 1, len(ram) + 1]})
    for ax, bars, low, high, title in (
            (top, bus, 0, max(b.start + b.size for b in bus), f"{profile.name} board: physical address map"),
            (bottom, ram, layout.ram_base, min(ram_end, -(-end // MIB) * MIB + 8 * MIB),
             "RAM: what the loader placed and pmap_bootstrap took (start of RAM)")):
        span = high - low
        for i, b in enumerate(bars):
            start, stop = max(b.start, low), min(b.start + b.size, high)
            ax.barh(i, max(stop - start, span * 0.002), left=start, color=b.colour, height=0.7,
                    edgecolor="#999999" if b.colour == FREE_COLOUR else None)
        ax.set_yticks(range(len(bars)), [f"{b.label} @0x{b.start:08x}" for b in bars])
        ax.set_ylim(len(bars) - 0.4, -0.6)
        _hex_axis(ax, low, high)
        ax.set_title(title, fontsize=9)
    bottom.set_xlabel("physical address")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ sweep
def heatmap_figure(cells: dict, xs: tuple, ys: tuple, xname: str, yname: str):
    """sweep --plot: one cell per grid point pair, green when every point there boots."""
    plt = pyplot()
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.7 * len(xs)), max(3.0, 1.2 + 0.4 * len(ys))))
    grid = [[to_rgb(OUTCOME_COLOURS[cells.get((xv, yv), "")]) for xv in xs] for yv in ys]
    ax.imshow(grid, aspect="auto")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xname)
    ax.set_ylabel(yname or "-")
    ax.set_title(f"armboard sweep: {xname} across, {yname or '-'} down", fontsize=9)
    ax.legend(handles=[Patch(color=OUTCOME_COLOURS[k], label=t) for k, t in
                       (("all", "all boot"), ("some", "some boot"), ("none", "none boot"), ("", "no point"))],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ timeline
def timeline_figure(timeline, max_rows: int = 60):
    """The boot timeline (tools/timeline.py) as a Gantt chart over wall time, the instruction count of
    each guest stage written beside its bar."""
    plt = pyplot()
    from matplotlib.patches import Patch

    rows = [r for r in timeline.rows if r.wall_start is not None and r.kind != "kva"][:max_rows]
    fig, ax = plt.subplots(figsize=(11, 0.24 * len(rows) + 1.8))
    total = max(timeline.wall, 1e-6) * 1e3
    for i, r in enumerate(rows):
        start, width = r.wall_start * 1e3, (r.wall or 0.0) * 1e3
        ax.barh(i, max(width, total * 0.002), left=start, color=STAGE_COLOURS.get(r.kind, "#cccccc"), height=0.7)
        note = f"{r.instructions:,} insns" if r.kind == "guest" else ""
        if r.virtual:
            note += f"{', ' if note else ''}{r.virtual:.3f} s virtual"
        if note:
            ax.text(start + width + total * 0.005, i, note, va="center", fontsize=7)
    depth = timeline.depths()
    ax.set_yticks(range(len(rows)), ["    " * depth[r.name] + r.name for r in rows])
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(0, total * 1.15)
    ax.set_xlabel("wall time since the board started (ms)")
    ax.set_title(f"boot timeline: {timeline.instructions:,} guest instructions, {total:.1f} ms", fontsize=9)
    ax.legend(handles=[Patch(color=STAGE_COLOURS["guest"], label="guest ARM code"),
                       Patch(color=STAGE_COLOURS["kernel"], label="Python kernel step"),
                       Patch(color=STAGE_COLOURS["process"], label="process (init, rc)")],
              loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig
