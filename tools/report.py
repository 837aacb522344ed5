"""`armboard boot --report FILE.html`: one self-contained page a teacher can hand out.

Sections: the outcome, the diagnosis when the boot failed, the console, the boot timeline, the
physical memory map, the KVA layout (the picture `plan --picture` draws), the L1/L2 tables of the
kernel window, and the GEOM graph. Everything is inside the file: pictures are base64 data URIs
(SVG from matplotlib and Graphviz), the CSS is inline, there is no script and no link outside, so the
page opens the same from a mail attachment or a USB stick.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from board.memory import PhysicalAbort as BusAbort
from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from kernel_sim.guest.abi import KERNVIRTADDR, MIB
from kernel_sim.humanize import humanize_number
from tools import pictures
from tools.report_tables import KernelWindowTables, TableRun, read_tables

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 75em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.15em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.window td { background: #e4f0e4; } tr.identity td { background: #f4f4f4; } tr.fault td { background: #f8e0e0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.failed { color: #a00; } .ok { color: #060; }
.diagnosis { background: #fff3f3; border: 1px solid #e99; padding: 0.8em; }
nav a { margin-right: 1em; }
"""

SECTIONS = (("outcome", "Outcome"), ("diagnosis", "Diagnosis"), ("console", "Console"), ("timeline", "Boot timeline"),
            ("physmem", "Physical memory map"), ("kva", "KVA layout"), ("page-tables", "Kernel window page tables"),
            ("geom", "GEOM graph"))


def _img(data: bytes, mime: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def _svg(fig, alt: str) -> str:
    return _img(pictures.figure_bytes(fig, "svg"), "image/svg+xml", alt)


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None,
           numeric: set[int] = frozenset()) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="num">{escape(c)}</td>' if j in numeric else f"<td>{escape(c)}</td>"
                        for j, c in enumerate(row))
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _section(ident: str, body: str) -> str:
    title = dict(SECTIONS)[ident]
    return f'<section id="{ident}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


# ------------------------------------------------------------------------------ sections
def _outcome(result) -> str:
    prep = result.prepared
    layout, options = prep.layout, prep.options
    ok = result.exit_code == 0
    rows = [["board", f"{prep.profile.name}, {humanize_number(layout.ram_size, 5)} RAM"],
            ["kernel configuration", f"{prep.kernconf.ident or 'GENERIC'} ({prep.request.kernconf})"],
            ["options", f"LOCORE_MAP_MB={options['LOCORE_MAP_MB']} NKPT2PG={options['NKPT2PG']}"
                        f"{' INVARIANTS' if options['INVARIANTS'] else ''}"],
            ["kernel", f"{humanize_number(layout.kernel_size, 5)} at 0x{layout.kernel_va:08x} "
                       f"(physical 0x{layout.kernel_pa:08x})"],
            ["modules", ", ".join(f"{m.type} {m.name} {humanize_number(m.size, 5)}" for m in layout.modules) or "none"],
            ["outcome", f"{result.status} in {result.stage} (exit status {result.exit_code})"],
            ["message", result.message]]
    verdict = '<p class="ok">The boot succeeded.</p>' if ok else '<p class="failed">The boot did not succeed.</p>'
    return verdict + _table(["", ""], rows)


def _diagnosis(result) -> str:
    d = result.diagnosis
    if result.exit_code == 0:
        return "<p>None: the boot succeeded.</p>"
    text = f'<div class="diagnosis"><p>{escape(result.message)}</p>'
    if d is not None and d.option:
        text += f"<p>Governing option: <code>{escape(str(d.option))}</code>"
        if d.suggested is not None:
            text += f"; a value that works: <code>{escape(str(d.suggested))}</code>"
        text += "</p>"
    return text + "</div>"


def _timeline(timeline) -> str:
    if timeline is None:
        return "<p>No timeline was recorded.</p>"
    picture = _svg(pictures.timeline_figure(timeline), "boot timeline")
    rows, classes = [], []
    for r in timeline.rows:
        rows.append([("\u2003" if r.parent else "") + r.name, f"{r.instructions:,}",
                     "-" if r.wall is None else f"{r.wall * 1e3:.2f}",
                     "-" if r.virtual is None else f"{r.virtual:.3f}", r.detail or r.title])
        classes.append("")
    table = _table(["stage", "guest instructions", "wall ms", "virtual s", "what"], rows, classes, {1, 2, 3})
    note = ("<p>Guest instructions are counted per translation block while a timeline is recorded; the Python "
            "kernel runs no guest instruction. Virtual time exists from init on (the kernel's VirtualClock); "
            "the KVA consumers are one computation inside kmeminit.</p>")
    return picture + note + table


def _physmem(result) -> str:
    handoff = result.handoff
    return _svg(pictures.physmem_figure(result.prepared, handoff), "physical memory map")


def _kva(result) -> str:
    prep = result.prepared
    startup = result.startup
    kva = getattr(startup, "kva", None)
    if kva is None:
        from kernel_sim.plan import plan_boot

        plan = plan_boot(prep)
        note = (f"<p>The boot ended in {escape(result.stage)}, before kmeminit laid out the KVA; this is the "
                "boot layout <code>armboard plan --picture</code> draws for it: kernel, modules and metadata "
                "against LOCORE_MAP_MB and NKPT2PG.</p>")
        return note + _svg(pictures.plan_figure(prep, plan), "boot layout")
    rows = [[f"0x{r.start:08x}", f"0x{r.end:08x}", humanize_number(r.size, 5), r.consumer, r.map, r.source]
            for r in sorted(kva.rows, key=lambda r: r.start)]
    figures = (f"<p>vm.kvm_size {kva.kvm_size}, vm.kvm_free {kva.kvm_free}, KVA left for kernel stacks and "
               f"later {kva.kva_remaining} ({humanize_number(kva.kva_remaining, 5)}); kernel_vm_end "
               f"0x{kva.kernel_vm_end:08x}.</p>")
    return (_svg(pictures.kva_figure(kva, prep.options["LOCORE_MAP_MB"]), "KVA layout") + figures
            + _table(["start", "end", "size", "consumer", "map", "FreeBSD source"], rows, numeric={2}))


def _runs_table(runs: list[TableRun]) -> str:
    rows, classes = [], []
    for r in runs:
        target = "-" if r.pa_start is None else f"0x{r.pa_start:08x}-0x{r.pa_start + r.va_end - r.va_start - 1:08x}"
        what = {"window": "LOCORE_MAP_MB window: kernel VA to the load address",
                "identity": "identity section (VA = PA)", "section": "section",
                "fault": "no mapping (translation fault)",
                "L2 table": f"L2 tables, {r.pages} small pages (4 KiB) mapped"}[r.kind]
        rows.append([f"0x{r.va_start:08x}-0x{r.va_end - 1:08x}", str(r.mib), f"0x{r.entry_address:08x}",
                     f"0x{r.first_entry:08x}", target, what])
        classes.append(r.kind if r.kind in ("window", "identity", "fault") else "")
    return _table(["kernel VA", "MiB", "first L1 entry at", "its value", "maps to", "kind"], rows, classes, {1})


def tables_now(result_or_run, prep, handoff, when: str) -> KernelWindowTables:
    """The kernel window's tables read from guest RAM now (the report takes them at the hand-over and at
    the end: the Python kernel maps pages of its own into kern_pt1 after the hand-over)."""
    image = prep.image
    boot_pt1 = handoff.boot_pt1 if handoff else image.physical_alias(image.symbols.get("boot_pt1", 0))
    return read_tables(result_or_run.machine.phys.read_u32, when, boot_pt1=boot_pt1,
                       load_pa=prep.layout.kernel_pa & ~(MIB - 1), locore_map_mb=prep.options["LOCORE_MAP_MB"],
                       handoff=handoff)


def _page_tables(result, at_handover: KernelWindowTables | None) -> str:
    prep = result.prepared
    window = prep.options["LOCORE_MAP_MB"]
    try:
        end = tables_now(result, prep, result.handoff, "at the end of the boot")
    except BusAbort as exc:          # a report says what it could not read
        return f"<p>The tables could not be read: {escape(str(exc))}</p>"
    first = at_handover or end
    parts = [f"<h3>locore's L1 table boot_pt1 at 0x{first.boot_pt1:08x}</h3>"
             f"<p>KERNVIRTADDR 0x{KERNVIRTADDR:08x} and the {window} MiB after it (LOCORE_MAP_MB) map to the "
             "kernel's load address; past the window the kernel's addresses fall through to the identity map.</p>"
             + _runs_table(first.boot_runs)]
    if first.kern_runs is None:
        parts.append(f"<p>No kern_pt1: the boot ended in {escape(result.stage)}, before pmap_bootstrap handed "
                     "its tables over.</p>")
        return "\n".join(parts)
    for tables in (at_handover, end) if at_handover is not None else (end,):
        pages = sum(r.pages for r in tables.kern_runs)
        parts.append(f"<h3>pmap_bootstrap's L1 table kern_pt1 at 0x{tables.kern_pt1:08x}, {escape(tables.when)}"
                     f"</h3><p>KERNBASE to kernel_vm_end 0x{tables.kernel_vm_end:08x} (NKPT2PG={tables.nkpt2pg} "
                     f"pages of L2 tables, 4 MiB each): {pages} pages of 4 KiB mapped.</p>"
                     + _runs_table(tables.kern_runs))
    return "\n".join(parts)


def _geom(result) -> str:
    geom = getattr(result.startup, "geom", None)
    if geom is None:
        return f"<p>GEOM did not start: the boot ended in {escape(result.stage)}, before mi_startup's GEOM step.</p>"
    from tools.geom_graph import confdot_svg

    dot = geom.confdot()
    svg, how = confdot_svg(dot)
    return (_img(svg, "image/svg+xml", "GEOM graph") + f"<p>Drawn by {escape(how)} from kern.geom.confdot; "
            "kern.geom.conftxt:</p>" + f"<pre>{escape(geom.conftxt())}</pre>")


def build_report(result, timeline=None, tables: KernelWindowTables | None = None) -> str:
    """The whole page as text."""
    prep = result.prepared
    sections = [_section("outcome", _outcome(result)), _section("diagnosis", _diagnosis(result)),
                _section("console", f"<pre>{escape(result.console.decode('utf-8', 'replace'))}</pre>"),
                _section("timeline", _timeline(timeline)), _section("physmem", _physmem(result)),
                _section("kva", _kva(result)), _section("page-tables", _page_tables(result, tables)),
                _section("geom", _geom(result))]
    nav = "<nav>" + "".join(f'<a href="#{i}">{escape(t)}</a>' for i, t in SECTIONS) + "</nav>"
    title = f"armboard boot report: {prep.kernconf.ident or 'GENERIC'} on {prep.profile.name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
            f"{nav}\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def write_report(result, timeline, path: Path, tables: KernelWindowTables | None = None) -> None:
    text = build_report(result, timeline, tables)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report: {describe_host(exc)}", str(path)) from None
