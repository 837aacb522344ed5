"""`armboard flash build` and `armboard flash map`: NOR flash images and their geom_map split, offline.

``flash build LAYOUT.toml -o flash.img`` turns a declarative layout into the image and the
device.hints geom_map(4) needs to split it. The layout (paths relative to the TOML file):

    [flash]
    size = "8M"                # the whole flash; sizes are numbers or strings such as "64K", "0x30000"
    erase_block = "64K"        # the size must be a whole number of erase blocks
    fill = 0xFF                # what unwritten bytes hold (default 0xFF: erased NOR)
    provider = "cfid0"         # hint.map.N.at (default cfid0)
    sector_size = 4            # the disk's sector size the split is checked with (default 4)

    [[part]]                   # one per partition, hint.map.N in file order
    name = "kernel"            # map/<name>
    at = 0x40000               # an offset, or "next-block" (the default): the first erase-block
                               # boundary at or after the end of the previous (non-overlay) part
    size = "1088K"             # or end = OFFSET, or end = "<name of a later part>" (ends where it
                               # starts); without either the part is as long as its content
    file = "kernel.bin"        # content: file, or fill = BYTE (the whole part) or
                               # fill = { byte = 0x00, size = "1M" }; marker = "..." comes first
    readonly = true            # hint.map.N.readonly=1
    align = false              # allow a start that is not on an erase block
    overlay = true             # a window over other parts (no content, may overlap them)
    search = ".!/bin/sh"       # the kernel finds the start by this key ('#' is written '.');
    search_from = 0x100000     # from here (default: the previous part's start),
    search_step = 0x10000      # in these steps (default: the erase block)

A part whose ``end`` names a searched part gets the same ``search:`` hint for its end, as the
geom_map(4) example's kernel does. Before anything is written, the hints are run through the same
geom_map code the kernel uses (kernel_sim.geom.map_hints) over the new image: every part must come
out exactly where the layout put it, or the build fails saying why.

``flash map flash.img --hints device.hints`` prints that split: the MAP lines (with -v, as with
bootverbose), a table and the kern.geom.conftxt lines (geom_dump.c g_conftxt), and draws it with
``--picture FILE.svg|png``. Exit status 1 if a hint.map.N was skipped or nothing was configured.
A partition that starts or ends inside an erase block of the bank (its CFI geometry from --profile or
from the image's size; --erase-block for uniform blocks) gets an `armboard: warning:` line on stderr.
README.md ("Flash layout files") documents the layout with a complete example.
"""

from __future__ import annotations

import argparse
import mmap
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from board.devices.cfi import GEOMETRIES, CfiGeometry
from kernel_sim.errnos import describe_host
from kernel_sim.errors import TEXT_LIMIT, InputError, check_input_file, read_input_bytes, read_text_file
from kernel_sim.geom.map_hints import (
    MAP_MAX_MARKER_LEN,
    MAP_MAXSLICE,
    MapPart,
    MapProblem,
    find_marker,
    ju,
    parse_map_hints,
    read_from,
)
from kernel_sim.loader.hints import parse_hints, parse_hints_text
from kernel_sim.loader.sizes import format_size, parse_int, parse_size
from tools.flash_args import DEFAULT_PROVIDER, DEFAULT_SECTOR_SIZE

# geom_map(4)'s example: `0 DISK cfid0 8388608 4 hd 0 sc 0` (the man page's cfid0 has 4-byte sectors).
MAX_FLASH_SIZE = 1 << 32          # a 32-bit bus
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_FLASH_KEYS = {"size", "erase_block", "fill", "provider", "sector_size"}
_PART_KEYS = {"name", "at", "size", "end", "file", "fill", "marker", "readonly", "align", "overlay", "search",
              "search_from", "search_step"}


# ---------------------------------------------------------------------------------------------- layout
@dataclass
class LayoutPart:
    """One [[part]] of a layout, resolved to offsets and bytes."""

    index: int
    name: str
    where: str
    start: int
    end: int
    content: bytes              # written at start; the rest of the part keeps the flash's fill
    describe: str               # what the content is, for the summary
    readonly: bool = False
    overlay: bool = False
    search: str | None = None   # the key as the hint writes it ('#' -> '.')
    search_from: int = 0
    search_step: int = 0
    end_part: str | None = None  # the part named by `end`

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class Layout:
    path: Path
    size: int
    erase_block: int
    fill: int
    provider: str
    sector_size: int
    parts: list[LayoutPart]

    def part(self, name: str) -> LayoutPart:
        return next(p for p in self.parts if p.name == name)


def _header_lines(text: str, header: str) -> list[int]:
    """Line numbers of each ``[header]`` / ``[[header]]`` table, so errors can say file:line."""
    pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(header)}\s*\]\]?\s*(#.*)?$")
    return [n for n, line in enumerate(text.split("\n"), start=1) if pattern.match(line)]


class _Table:
    """A TOML table of the layout with the place errors about it are reported at."""

    def __init__(self, values: dict[str, Any], where: str, label: str, known: set[str]) -> None:
        self.values, self.where, self.label = values, where, label
        for key in values:
            if key not in known:
                self.fail(f"unknown key {key!r} (known: {', '.join(sorted(known))})")

    def fail(self, message: str) -> None:
        raise InputError(f"{self.label}: {message}", self.where)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def size(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        """A byte count or offset: a TOML integer, or a string parse_size reads ("64K", "0x30000")."""
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(f"{key} must be a number or a size string such as \"64K\", not {value!r}")
        if isinstance(value, str):
            try:
                value = parse_size(value)
            except InputError as exc:
                self.fail(f"{key}: {exc.message}")
        if value < minimum:
            self.fail(f"{key} = {value} must be at least {minimum}")
        return value

    def byte(self, key: str, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = parse_int(value)
            except InputError as exc:
                self.fail(f"{key}: {exc.message}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
            self.fail(f"{key} must be a byte (0 to 0xff), not {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{key} must be true or false, not {value!r}")
        return value

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(f"{key} must be a string, not {value!r}")
        return value


def load_layout(path: str | Path) -> Layout:
    """Read and check a layout TOML; every error is an InputError naming the file, line and part."""
    path = Path(path)
    text = read_text_file(path, what="flash layout")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", str(path)) from None
    for key in doc:
        if key not in ("flash", "part"):
            raise InputError(f"unknown table or key {key!r}: a layout has [flash] and [[part]]", str(path))
    flash_lines = _header_lines(text, "flash")
    flash_doc = doc.get("flash")
    if not isinstance(flash_doc, dict):
        raise InputError("no [flash] table: give at least size and erase_block", str(path))
    flash = _Table(flash_doc, f"{path}:{flash_lines[0]}" if flash_lines else str(path), "[flash]", _FLASH_KEYS)
    size = flash.size("size")
    erase_block = flash.size("erase_block")
    if size is None or erase_block is None:
        flash.fail("size and erase_block are required")
    if erase_block <= 0 or size <= 0:
        flash.fail("size and erase_block must be positive")
    if size > MAX_FLASH_SIZE:
        flash.fail(f"size {format_size(size)} is more than a 32-bit bus addresses ({format_size(MAX_FLASH_SIZE)})")
    if size % erase_block:
        flash.fail(f"size {size:#x} is not a whole number of {format_size(erase_block)} erase blocks")
    fill = flash.byte("fill", flash.get("fill", 0xFF))
    provider = flash.text("provider") or DEFAULT_PROVIDER
    if not _NAME_RE.fullmatch(provider):
        flash.fail(f"provider {provider!r} is not a GEOM provider name")
    sector_size = flash.size("sector_size", DEFAULT_SECTOR_SIZE, minimum=1)

    part_docs = doc.get("part", [])
    if not isinstance(part_docs, list) or not all(isinstance(p, dict) for p in part_docs):
        raise InputError("part must be an array of tables: write each one as [[part]]", str(path))
    if not part_docs:
        raise InputError("no [[part]]: a layout needs at least one partition", str(path))
    if len(part_docs) > MAP_MAXSLICE:
        raise InputError(f"{len(part_docs)} parts: geom_map reads hint.map.0 to hint.map.{MAP_MAXSLICE - 1}",
                         str(path))
    part_lines = _header_lines(text, "part")
    tables = []
    for i, pdoc in enumerate(part_docs):
        where = f"{path}:{part_lines[i]}" if i < len(part_lines) else str(path)
        name = pdoc.get("name")
        label = f'part "{name}"' if isinstance(name, str) else f"part {i}"
        tables.append(_Table(pdoc, where, label, _PART_KEYS))
    layout = Layout(path, size, erase_block, fill, provider, sector_size, [])
    _resolve_parts(layout, tables)
    return layout


def _resolve_parts(layout: Layout, tables: list[_Table]) -> None:
    """Place the parts in file order, then resolve `end = "<part>"`, then check the whole."""
    names: dict[str, _Table] = {}
    pending_fill: dict[int, int] = {}
    pending_end: dict[int, str] = {}
    for i, t in enumerate(tables):
        name = t.text("name")
        if not name:
            t.fail("has no name (name = \"...\" becomes /dev/map/<name>)")
        if not _NAME_RE.fullmatch(name):
            t.fail(f"name {name!r}: use letters, digits, _ . + - (it goes into device.hints and /dev/map)")
        if name in names:
            t.fail(f"name {name!r} is used twice (first at {names[name].where})")
        names[name] = t
        overlay = t.flag("overlay", False)
        has_content = any(t.get(k) is not None for k in ("file", "fill", "marker"))
        if overlay and has_content:
            t.fail("an overlay names other parts' bytes and has no content: drop file, fill and marker")
        start = _place(layout, t)
        align = t.flag("align", True)
        if align and start % layout.erase_block:
            t.fail(f"starts at {start:#x}, not on a {format_size(layout.erase_block)} erase block "
                   f"(the nearest are {start - start % layout.erase_block:#x} and "
                   f"{start - start % layout.erase_block + layout.erase_block:#x}); set align = false to allow it")
        content, describe, whole_fill = _content(layout, t)
        size, end_value = t.size("size"), t.get("end")
        if size is not None and end_value is not None:
            t.fail("give size or end, not both")
        end: int | None = None
        if size is not None:
            end = start + size
        elif end_value is not None:
            if isinstance(end_value, str) and end_value in (tt.get("name") for tt in tables):
                pending_end[i] = end_value
            else:
                try:
                    end = t.size("end")
                except InputError:
                    t.fail(f"end = {end_value!r} is neither an offset nor the name of a part")
        elif whole_fill is not None:
            t.fail("fill = BYTE fills the whole part: give it a size or an end")
        elif overlay:
            t.fail("an overlay needs a size or an end")
        else:
            end = start + len(content)
        if whole_fill is not None:
            pending_fill[i] = whole_fill
        part = LayoutPart(i, name, t.where, start, end if end is not None else -1, content, describe,
                          readonly=t.flag("readonly", False), overlay=overlay)
        _search(layout, t, part)
        layout.parts.append(part)
    for i, target in pending_end.items():
        part, t = layout.parts[i], tables[i]
        if target == part.name:
            t.fail("end names the part itself")
        other = layout.part(target)
        part.end, part.end_part = other.start, target
    for part, t in zip(layout.parts, tables, strict=True):
        if part.end < part.start:
            t.fail(f"ends at {part.end:#x}, before its start {part.start:#x}")
        if part.end == part.start:
            t.fail("is empty: give it content, a size or an end (geom_map configures no provider of size 0)")
        if len(part.content) > part.size:
            t.fail(f"its content ({len(part.content)} bytes) does not fit in its {part.size} bytes "
                   f"({part.start:#x}-{part.end:#x})")
        if part.end > layout.size:
            t.fail(f"{part.start:#x}-{part.end:#x} runs past the end of the {format_size(layout.size)} flash "
                   f"({layout.size:#x}) by {part.end - layout.size} bytes")
        if part.index in pending_fill:
            byte = pending_fill[part.index]
            part.content += bytes([byte]) * (part.size - len(part.content))
            part.describe = (part.describe + " + " if part.describe else "") + f"fill {byte:#04x}"
    _check_overlaps(layout, tables)


def _place(layout: Layout, t: _Table) -> int:
    """The start of a part: `at` as an offset, or "next-block" after the previous non-overlay part."""
    at = t.get("at", "next-block")
    if at != "next-block":
        try:
            start = t.size("at")
        except InputError as exc:
            if not isinstance(at, str):
                raise
            raise InputError(f'{exc.message} (at is an offset or "next-block")', t.where) from None
        assert start is not None
        return start
    previous = next((p for p in reversed(layout.parts) if not p.overlay), None)
    if previous is None:
        return 0
    # A part that ends at a later part's start (end = "<name>") is not placed yet: its content ends it.
    prev_end = previous.end if previous.end >= 0 else previous.start + len(previous.content)
    block = layout.erase_block
    return -(-prev_end // block) * block


def _content(layout: Layout, t: _Table) -> tuple[bytes, str, int | None]:
    """The bytes a part starts with, how to describe them, and a byte that fills the rest (fill = BYTE)."""
    content, describe = b"", []
    marker = t.text("marker")
    if marker is not None:
        if not marker:
            t.fail("marker is empty")
        content += marker.encode("utf-8")
        describe.append(f"marker {marker[:16]!r}")
    file, fill = t.get("file"), t.get("fill")
    if file is not None and fill is not None:
        t.fail("give file or fill, not both")
    whole_fill = None
    if file is not None:
        if not isinstance(file, str) or not file:
            t.fail(f"file must be a path, not {file!r}")
        fpath = layout.path.parent / file
        try:   # bounded by the flash: a bigger file cannot fit anyway, and /dev/zero never ends
            data = read_input_bytes(fpath, what="part file", where=t.where, limit=layout.size)
        except InputError as exc:
            t.fail(exc.message)
        content += data
        describe.append(f"file {file} ({len(data)} bytes)")
    elif isinstance(fill, dict):
        sub = _Table(fill, t.where, f"{t.label}: fill", {"byte", "size"})
        if "byte" not in fill or "size" not in fill:
            sub.fail("a fill table is { byte = 0x00, size = \"64K\" }")
        byte = sub.byte("byte", fill["byte"])
        count = sub.size("size")
        assert count is not None
        content += bytes([byte]) * count
        describe.append(f"fill {byte:#04x} x {format_size(count)}")
    elif fill is not None:
        whole_fill = t.byte("fill", fill)
    return content, " + ".join(describe), whole_fill


def _search(layout: Layout, t: _Table, part: LayoutPart) -> None:
    """A part whose start the kernel finds by a search: the key as the hint writes it, and its grid."""
    key = t.text("search")
    if key is None:
        for k in ("search_from", "search_step"):
            if t.get(k) is not None:
                t.fail(f"{k} without search = \"KEY\"")
        return
    # config(8) cuts hint lines at '#', even inside quotes: '.' (any byte) stands for it.
    key = key.replace("#", ".")
    if not key:
        t.fail("search key is empty")
    if '"' in key or "\n" in key:
        t.fail("a search key cannot hold '\"' or a newline: a hint value cannot")
    if len(key.encode("utf-8")) > MAP_MAX_MARKER_LEN - 1:
        t.fail(f"search key is {len(key.encode())} bytes; geom_map reads at most {MAP_MAX_MARKER_LEN - 1}")
    previous = next((p for p in reversed(layout.parts) if not p.overlay), None)
    default_from = previous.start if previous is not None else 0
    part.search = key
    part.search_from = t.size("search_from", default_from)
    part.search_step = t.size("search_step", layout.erase_block, minimum=1)
    if part.start < part.search_from or (part.start - part.search_from) % part.search_step:
        t.fail(f"starts at {part.start:#x}, which a search from {part.search_from:#x} in steps of "
               f"{part.search_step:#x} never probes")


def _check_overlaps(layout: Layout, tables: list[_Table]) -> None:
    solid = sorted((p for p in layout.parts if not p.overlay), key=lambda p: (p.start, p.end))
    for a, b in zip(solid, solid[1:], strict=False):
        if b.start < a.end:
            tables[b.index].fail(f"{b.start:#x}-{b.end:#x} overlaps part \"{a.name}\" ({a.start:#x}-{a.end:#x}, "
                                 f"{a.where}); mark one overlay = true if it is a window over the other")


def build_image(layout: Layout) -> bytearray:
    """The flash contents: the fill byte everywhere, each part's content at its start."""
    image = bytearray([layout.fill]) * layout.size
    for part in layout.parts:
        image[part.start:part.start + len(part.content)] = part.content
    return image


def _search_value(part: LayoutPart) -> str:
    # The form of geom_map(4)'s example: "search:0x00100000:0x10000:.!/bin/sh"
    return f"search:0x{part.search_from:08x}:0x{part.search_step:x}:{part.search}"


def layout_hints(layout: Layout) -> str:
    """device.hints for the layout: hint.map.N.at/start/end/name[/readonly], as geom_map(4) writes them."""
    lines = [f"# geom_map(4) partitions of {layout.provider}, written by `armboard flash build "
             f"{layout.path.name}`.", "# '.' in a search key stands for '#', which would start a comment here."]
    for part in layout.parts:
        n = part.index
        start = _search_value(part) if part.search else f"0x{part.start:08x}"
        target = layout.part(part.end_part) if part.end_part else None
        end = _search_value(target) if target is not None and target.search else f"0x{part.end:08x}"
        lines += ["", f'hint.map.{n}.at="{layout.provider}"', _hint_line(n, "start", start),
                  _hint_line(n, "end", end), f'hint.map.{n}.name="{part.name}"']
        if part.readonly:
            lines.append(f"hint.map.{n}.readonly=1")
    return "\n".join(lines) + "\n"


def _hint_line(n: int, what: str, value: str) -> str:
    return f'hint.map.{n}.{what}="{value}"' if value.startswith("search:") else f"hint.map.{n}.{what}={value}"


def verify_split(layout: Layout, image: bytes | bytearray, hints_text: str, origin: str) -> list[MapPart]:
    """Run the kernel's geom_map over the new image and hints: each part must land where the layout says."""
    problems: list[MapProblem] = []
    parts = parse_map_hints(parse_hints_text(hints_text, origin), layout.provider, layout.size, layout.sector_size,
                            read_from(image), bootverbose=False, printf=lambda _: None, problems=problems)
    got = {p.index: p for p in parts}
    skipped = {p.index: p for p in problems}
    for part in layout.parts:
        where, label = part.where, f'part "{part.name}"'
        if part.index in skipped:
            raise InputError(f"{label}: geom_map would skip it: {skipped[part.index].message}", where)
        mp = got[part.index]
        if (mp.start, mp.end) != (part.start, part.end):
            raise InputError(f"{label}: geom_map would split it at {mp.start:#x}-{mp.end:#x}, not at the layout's "
                             f"{part.start:#x}-{part.end:#x}{_search_reason(layout, part, mp)}", where)
    return parts


def _search_reason(layout: Layout, part: LayoutPart, mp: MapPart) -> str:
    searched = part if part.search else (layout.part(part.end_part) if part.end_part else None)
    if searched is None or not searched.search:
        return ""
    found = mp.start if searched is part else mp.end
    inside = next((p.name for p in layout.parts if not p.overlay and p.start <= found < p.end), None)
    where = f" inside part \"{inside}\"" if inside else ""
    return (f": the key {searched.search!r} is found first at {found:#x}{where}; start the search past it "
            f"(search_from) or change that content")


def _search_missing(layout: Layout, image: bytes | bytearray) -> None:
    """A searched part whose content does not carry its key: say so before the generic mismatch."""
    for part in layout.parts:
        if part.search is None:
            continue
        value = f"search:{part.start:#x}:{layout.size:#x}:{part.search}"   # one probe, at the start
        hit = find_marker(value, geom=layout.provider, media_size=layout.size, sectorsize=layout.sector_size,
                          read=read_from(image), bootverbose=False, printf=lambda _: None)
        if hit != part.start:
            raise InputError(f'part "{part.name}": its content does not begin with the search key {part.search!r} '
                             "('.' matches any byte): give it a marker or a file that starts with it", part.where)


# ---------------------------------------------------------------------------------------------- flash map
def map_table(parts: list[MapPart]) -> list[str]:
    """The partitions as a table: name, start, end, size, offset, dsize, ro."""
    rows = [("N", "name", "start", "end", "size", "offset", "dsize", "ro")]
    for p in parts:
        rows.append((str(p.index), p.name, f"{p.start:#x}", f"{p.end:#x}", f"{p.size:#x}", f"{p.offset:#x}",
                     f"{p.dsize:#x}", "yes" if p.readonly else "no"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def conftxt_lines(provider: str, media_size: int, sector_size: int, parts: list[MapPart]) -> list[str]:
    """kern.geom.conftxt for the DISK and its MAP slices (geom_dump.c g_conftxt: "%d %s %s %ju %u").

    DISK adds " hd %u sc %u" (g_disk_dumpconf); a MAP provider adds g_slice_dumpconf's " i %u o %ju"
    and g_map_dumpconf's " entry %jd dsize %jd". Providers are LIST_INSERT_HEAD: newest (highest N) first.
    """
    lines = [f"0 DISK {provider} {media_size} {sector_size} hd 0 sc 0"]
    for p in sorted((p for p in parts if p.has_provider), key=lambda p: p.index, reverse=True):
        lines.append(f"1 MAP {p.provider} {ju(p.dsize)} {sector_size} i {p.index} o {ju(p.slice_start)} "
                     f"entry {p.offset} dsize {p.dsize}")
    return lines


_PART_COLOURS = ("#6699cc", "#99cc66", "#ddaa33", "#cc77aa", "#66bbbb", "#aa88dd", "#cc9966", "#88aa55")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def map_svg(provider: str, media_size: int, erase_block: int, parts: list[MapPart]) -> str:
    """The partitions over the erase blocks: one row per partition, the data slice darker, read-only red."""
    width, left, right, row_h, top = 980, 330, 20, 22, 46
    span = max(media_size, 1)
    scale = (width - left - right) / span
    height = top + row_h * (len(parts) + 1) + 24
    blocks = media_size // erase_block if erase_block else 0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="monospace" font-size="11">',
           '<defs><pattern id="ro" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="3" height="6" fill="#cc4444" fill-opacity="0.5"/></pattern>'
           '</defs>',
           f'<text x="4" y="16">{_escape(provider)}: {format_size(media_size)}, {blocks} erase blocks of '
           f'{format_size(erase_block)}; hatched: read-only; dark: the data (start+offset, dsize)</text>']
    y0 = top - 18
    out.append(f'<rect x="{left}" y="{y0}" width="{span * scale:.1f}" height="{row_h - 6}" fill="#eeeeee" '
               'stroke="#888888"/>')
    out.append(f'<text x="4" y="{y0 + 12}">{_escape(provider)} 0x0-{media_size:#x}</text>')
    every = max(1, -(-blocks // 256))
    for b in range(0, blocks + 1, every):
        x = left + b * erase_block * scale
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{top + row_h * len(parts)}" '
                   'stroke="#cccccc" stroke-width="0.5"/>')
    for i, p in enumerate(parts):
        y = top + i * row_h
        colour = _PART_COLOURS[i % len(_PART_COLOURS)]
        label = f"{p.provider} {p.start:#x}-{p.end:#x} {format_size(max(p.size, 0))}"
        out.append(f'<text x="4" y="{y + 13}">{_escape(label)}{" ro" if p.readonly else ""}</text>')
        x0, x1 = left + max(0, min(p.start, span)) * scale, left + max(0, min(p.end, span)) * scale
        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(1.0, x1 - x0):.1f}" height="{row_h - 6}" '
                   f'fill="{colour}" fill-opacity="0.45" stroke="{colour}"/>')
        d0 = left + max(0, min(p.slice_start, span)) * scale
        d1 = left + max(0, min(p.slice_start + p.dsize, span)) * scale
        out.append(f'<rect x="{d0:.1f}" y="{y + 3}" width="{max(1.0, d1 - d0):.1f}" height="{row_h - 12}" '
                   f'fill="{colour}"/>')
        if p.readonly:
            out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(1.0, x1 - x0):.1f}" height="{row_h - 6}" '
                       'fill="url(#ro)"/>')
    y = top + row_h * len(parts) + 14
    for k in range(5):
        off = media_size * k // 4
        out.append(f'<text x="{left + off * scale:.1f}" y="{y}" text-anchor="middle">{off:#x}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


def map_png(provider: str, media_size: int, erase_block: int, parts: list[MapPart], path: Path) -> None:
    """The same picture through matplotlib, imported only here (it is slow to import and optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("PNG pictures need matplotlib (pip install matplotlib); .svg needs nothing",
                         "--picture") from None
    kib = 1024
    fig, ax = plt.subplots(figsize=(11, 0.4 * len(parts) + 1.5))
    for i, p in enumerate(parts):
        colour = _PART_COLOURS[i % len(_PART_COLOURS)]
        ax.barh(i, p.size / kib, left=p.start / kib, color=colour, alpha=0.45, edgecolor=colour,
                hatch="//" if p.readonly else None)
        ax.barh(i, p.dsize / kib, left=p.slice_start / kib, height=0.4, color=colour)
    blocks = media_size // erase_block if erase_block else 0
    every = max(1, -(-blocks // 256))
    for b in range(0, blocks + 1, every):
        ax.axvline(b * erase_block / kib, color="#cccccc", linewidth=0.4, zorder=0)
    ax.set_yticks(range(len(parts)), [f"{p.provider}{' ro' if p.readonly else ''}" for p in parts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, media_size / kib)
    ax.set_xlabel(f"KiB of {provider} ({blocks} erase blocks of {format_size(erase_block)})")
    ax.set_title(f"geom_map partitions of {provider}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_picture(path: Path, provider: str, media_size: int, erase_block: int, parts: list[MapPart]) -> None:
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise InputError(f"{path.name}: a picture is .svg or .png", "--picture")
    try:
        if suffix == ".svg":
            path.write_text(map_svg(provider, media_size, erase_block, parts))
        else:
            map_png(provider, media_size, erase_block, parts, path)
    except OSError as exc:
        raise InputError(f"cannot write the picture: {describe_host(exc)}", str(path)) from None


# ---------------------------------------------------------------------------------------------- commands
def cmd_flash(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `flash build` or `flash map`; bad input raises InputError (exit 2 in tools.cli)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.flash_command == "build":
        return cmd_build(args, out)
    if args.flash_command == "map":
        return cmd_map(args, out, err)
    raise InputError(f"unknown flash command {args.flash_command!r}")


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    layout = load_layout(args.layout)
    image = build_image(layout)
    output: Path = args.flash_output
    hints_path: Path = args.flash_hints or output.with_name(output.name + ".hints")
    text = layout_hints(layout)
    _search_missing(layout, image)
    verify_split(layout, image, text, str(hints_path))
    for path, data in ((output, bytes(image)), (hints_path, text.encode())):
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise InputError(f"cannot write it: {describe_host(exc)}", str(path)) from None
    blocks = layout.size // layout.erase_block
    out.write(f"{output}: {format_size(layout.size)} flash, {blocks} erase blocks of "
              f"{format_size(layout.erase_block)}, fill {layout.fill:#04x}\n")
    rows = [("N", "name", "start", "end", "size", "ro", "content")]
    for p in layout.parts:
        content = "overlay" if p.overlay else (p.describe or "(fill)")
        start = f"{p.start:#x}" + (" (search)" if p.search else "")
        rows.append((str(p.index), p.name, start, f"{p.end:#x}", format_size(p.size), "yes" if p.readonly else "",
                     content))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        out.write("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write(f"{hints_path}: {len(layout.parts)} hint.map entries at {layout.provider}\n")
    return 0


def cmd_map(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    geometry: CfiGeometry | None = None
    source = "--erase-block"
    if getattr(args, "profile", None):
        geometry, source = _profile_geometry(args.profile)
        args.sector_size = geometry.bank_width     # the cfi driver's sector is the bus width
    if args.sector_size <= 0:
        raise InputError(f"--sector-size {args.sector_size} must be positive")
    erase_block = parse_size(args.erase_block, where="--erase-block") if args.erase_block else None
    if erase_block is not None and erase_block <= 0:
        raise InputError("the erase block must be positive", "--erase-block")
    hints = parse_hints(args.flash_hints)
    image: Path = args.image
    check_input_file(image, what="flash image")
    try:
        with image.open("rb") as f:
            media_size = f.seek(0, 2)
            data: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if media_size else b""
    except FileNotFoundError:
        raise InputError("cannot open the flash image: no such file", str(image)) from None
    except IsADirectoryError:
        raise InputError("the flash image is a directory", str(image)) from None
    except OSError as exc:
        raise InputError(f"cannot read the flash image: {describe_host(exc)}", str(image)) from None
    if erase_block is not None:
        geometry = None
    elif geometry is None:
        geometry, source = _geometry_of_size(media_size)
    if erase_block is None:
        erase_block = geometry.erase_regions[0][0]
    problems: list[MapProblem] = []
    try:
        parts = parse_map_hints(hints, args.provider, media_size, args.sector_size, read_from(data),
                                bootverbose=args.verbose, printf=out.write, problems=problems)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    if not args.verbose:
        for problem in problems:
            where = f"{problem.where}: " if problem.where else ""
            err.write(f"armboard: {where}{problem.message} (hint.map.{problem.index} skipped; "
                      "the kernel says this only with bootverbose)\n")
    if args.verbose:
        out.write("\n")
    for line in map_table(parts):
        out.write(line + "\n")
    for p in parts:
        if p.has_provider and (p.slice_start < 0 or p.dsize < 0 or p.slice_start + p.dsize > media_size):
            err.write(f"armboard: note: {p.provider} ({p.slice_start:#x}+{p.dsize:#x}) is not inside "
                      f"{args.provider} ({media_size:#x} bytes): FreeBSD configures it anyway and its I/O fails\n")
    for line in misaligned(args.provider, media_size, geometry, erase_block, source, parts):
        err.write(f"armboard: warning: {line}\n")
    out.write("\nkern.geom.conftxt:\n")
    for line in conftxt_lines(args.provider, media_size, args.sector_size, parts):
        out.write(line + "\n")
    if args.picture is not None:
        _write_picture(args.picture, args.provider, media_size, erase_block, parts)
    if not any(p.has_provider for p in parts):
        known = sorted({h.value for h in hints if h.driver == "map" and h.name == "at"})
        hint = f" (the hints name: {', '.join(known)})" if known and args.provider not in known else ""
        err.write(f"armboard: no geom_map partition at {args.provider}{hint}\n")
        return 1
    return 1 if problems else 0


def erase_block_at(geometry: CfiGeometry | None, erase_block: int, offset: int) -> tuple[int, int]:
    """(start, size) of the erase block holding offset: the bank's regions, or uniform blocks."""
    if geometry is not None and 0 <= offset < geometry.size:
        _index, start, size = geometry.block_at(offset)
        return start, size
    return offset - offset % erase_block, erase_block


def misaligned(provider: str, media_size: int, geometry: CfiGeometry | None, erase_block: int, source: str,
               parts: list[MapPart]) -> list[str]:
    """One sentence per partition edge inside an erase block: writing there rewrites a neighbour's bytes.

    The cfi driver writes by erasing and reprogramming each block a write touches (cfi_write_block),
    so a partition that shares a block with its neighbour cannot be rewritten without touching it."""
    lines = []
    for p in parts:
        if not p.has_provider:
            continue
        for edge, offset in (("starts", p.start), ("ends", p.end)):
            if offset <= 0 or offset >= media_size:
                continue
            start, size = erase_block_at(geometry, erase_block, offset)
            if start == offset:
                continue
            outside = offset - start if edge == "starts" else start + size - offset
            lines.append(f"{p.provider} ({p.start:#x}-{p.end:#x}) {edge} at {offset:#x}, inside the "
                         f"{format_size(size)} erase block {start:#x}-{start + size:#x} of {provider} ({source}): "
                         f"a write there also erases and reprograms the {outside:#x} bytes of that block outside it")
    return lines


def _geometry_of_size(media_size: int) -> tuple[CfiGeometry, str]:
    """The flash bank an image of this size is for; geom_map(4)'s 64K-block flash when none is."""
    for name, make in GEOMETRIES.items():
        geometry = make()
        if geometry.size == media_size:
            return geometry, f"the {name} bank, by the image size"
    return CfiGeometry.geom_map_example(), "geom_map(4)'s flash; give --erase-block or --profile for yours"


def _profile_geometry(board: str) -> tuple[CfiGeometry, str]:
    """The geometry of a board's first flash bank, as the booted kernel's cfi driver sees it."""
    from board.profile import ProfileError, load_profile

    if Path(board).suffix:      # a profile file, not a name: checked as every file argument is
        check_input_file(board, what="board profile", where="--profile", limit=TEXT_LIMIT)
    try:
        profile = load_profile(board)
    except ProfileError as exc:
        raise InputError(str(exc), "--profile") from None
    if not profile.flash:
        raise InputError(f"board {profile.name} has no flash", "--profile")
    bank = profile.flash[0]
    return GEOMETRIES[bank.geometry](), f"board {profile.name}, {bank.name}"
