"""`armboard dump show FILE`: a kernel dump read offline, as kvm(3) and savecore(8)'s `info` show it.

Why a host command: a live dump (MEM_KERNELDUMP, the monitor's `dump`, `memctl dump`) is taken to be
read later, away from the machine. This prints the kerneldumpheader, the minidump's sections, the
memory the dump holds, the kernel's message buffer, and answers questions through the dumped page
tables: `--translate VA`, `--extract-pa PA LEN OUT`, `--extract-va VA LEN OUT`. With one of those the
output is only their answers. A damaged file is one `armboard: FILE: what (at offset N)` line and
exit 2; an address the dump does not hold is one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `dump show` under the main parser's subcommands."""
    dump = subparsers.add_parser("dump", help="read a kernel dump (live minidump) offline")
    sub = dump.add_subparsers(dest="dump_command", required=True, metavar="{show}")
    show = sub.add_parser("show", help="print a dump's headers, memory and message buffer; translate and extract")
    show.add_argument("file", type=Path, metavar="FILE", help="a dump written by MEM_KERNELDUMP or the monitor's dump")
    show.add_argument("--translate", action="append", default=[], metavar="VA",
                      help="translate a kernel virtual address through the dumped PTEs (repeatable)")
    show.add_argument("--extract-pa", nargs=3, action="append", default=[], metavar=("PA", "LEN", "OUT"),
                      help="write LEN bytes of physical memory from PA to OUT")
    show.add_argument("--extract-va", nargs=3, action="append", default=[], metavar=("VA", "LEN", "OUT"),
                      help="write LEN bytes of kernel virtual memory from VA to OUT")
    show.add_argument("--json", action="store_true", help="print the result as JSON")
    return dump


def _number(text: str, what: str) -> int:
    from kernel_sim.loader.sizes import parse_size

    value = parse_size(text, where=what)
    if value < 0:
        raise InputError(f"{text} is negative", what)
    return value


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run `dump show`; returns the exit status (errors are printed, never raised)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.dump_command != "show":
        err.write(f"armboard: unknown dump command {args.dump_command!r}\n")
        return EXIT_USAGE
    from kernel_sim.kern.dumpfile import DumpError, TranslateError, open_dump

    try:
        translate = [_number(va, "--translate") for va in args.translate]
        extracts = [("pa", _number(a, "--extract-pa PA"), _number(n, "--extract-pa LEN"), Path(o))
                    for a, n, o in args.extract_pa]
        extracts += [("va", _number(a, "--extract-va VA"), _number(n, "--extract-va LEN"), Path(o))
                     for a, n, o in args.extract_va]
        dump = open_dump(args.file)
    except InputError as exc:
        err.write(f"armboard: {exc}\n")
        return EXIT_USAGE
    except DumpError as exc:
        err.write(f"armboard: {args.file}: {exc}\n")
        return EXIT_USAGE
    result: dict[str, Any] = {}
    try:
        if translate:
            result["translations"] = [_translation(dump.translate(va)) for va in translate]
        for space, addr, length, path in extracts:
            data = dump.read_pa(addr, length) if space == "pa" else dump.read_va(addr, length)
            try:
                path.write_bytes(data)
            except OSError as exc:
                err.write(f"armboard: {path}: cannot write it: {describe_host(exc)}\n")
                return EXIT_USAGE
            result.setdefault("extracted", []).append({"space": space, "address": addr, "length": length,
                                                       "file": str(path)})
    except TranslateError as exc:
        err.write(f"armboard: {args.file}: {exc}\n")
        return EXIT_FAILED
    if not translate and not extracts:
        result = describe(dump)
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write(_text(dump, result))
    return EXIT_OK


def _translation(t) -> dict[str, int]:
    return {"va": t.va, "pte_index": t.pte_index, "pte": t.pte, "pte_offset": t.pte_offset, "pa": t.pa,
            "page_offset": t.page_offset}


def describe(dump) -> dict[str, Any]:
    """Everything `dump show` prints, as plain data."""
    from kernel_sim.kern.dumpfile import MMU_NAMES
    from kernel_sim.kern.minidump import COMPRESSIONS

    kdh = dump.kdh
    hdr = dump.hdr
    out: dict[str, Any] = {"file": str(dump.path), "file_size": dump.file_size, "kerneldumpheader": None}
    if kdh is not None:
        out["kerneldumpheader"] = {
            "magic": kdh.magic, "architecture": kdh.architecture, "version": kdh.version,
            "architectureversion": kdh.architectureversion, "dumplength": kdh.dumplength, "dumptime": kdh.dumptime,
            "blocksize": kdh.blocksize, "hostname": kdh.hostname, "versionstring": kdh.versionstring,
            "panicstring": kdh.panicstring, "compression": COMPRESSIONS[kdh.compression],
            "dumpextent": kdh.dumpextent, "parity": kdh.parity}
    out["minidump"] = {
        "magic": hdr.magic.split(b"\0", 1)[0].decode(), "version": hdr.version, "msgbufsize": hdr.msgbufsize,
        "bitmapsize": hdr.bitmapsize, "ptesize": hdr.ptesize, "kernbase": hdr.kernbase, "arch": hdr.arch,
        "mmuformat": MMU_NAMES.get(hdr.mmuformat, str(hdr.mmuformat)), "dumpavailsize": hdr.dumpavailsize,
        "size": len(dump.data), "sections": dump.offsets}
    out["dump_avail"] = [list(r) for r in dump.dump_avail]
    out["pages"] = dump.npages
    out["physical"] = [list(r) for r in dump.pa_runs()]
    out["virtual"] = [list(r) for r in dump.kva_runs()]
    out["msgbuf"] = dump.msgbuf_contents()
    out["msgbuf_header"] = dump.msgbuf_header is not None
    return out


def _kib(n: int) -> str:
    return f"{n // 1024} KiB" if n < 10 << 20 else f"{n >> 20} MiB"


def _text(dump, result: dict[str, Any]) -> str:
    lines: list[str] = []
    for t in result.get("translations", []):
        lines.append(f"0x{t['va']:08x}: PTE2[{t['pte_index']}] 0x{t['pte']:08x} (dump offset {t['pte_offset']}) "
                     f"-> physical 0x{t['pa']:08x} (dump offset {t['page_offset']})")
    for e in result.get("extracted", []):
        what = "physical" if e["space"] == "pa" else "virtual"
        lines.append(f"{e['length']} bytes of {what} memory from 0x{e['address']:08x} written to {e['file']}")
    if "minidump" not in result:
        return "".join(line + "\n" for line in lines)
    kdh, md = result["kerneldumpheader"], result["minidump"]
    lines.append(f"{result['file']}: {result['file_size']} bytes")
    if kdh is None:
        lines.append("kerneldumpheader: none (a bare minidump, as savecore(8) keeps it)")
    else:
        lines.append(f"kerneldumpheader: {kdh['magic']}, version {kdh['version']}, architecture {kdh['architecture']} "
                     f"(version {kdh['architectureversion']})")
        comp = kdh["compression"]
        size = (f"{kdh['dumplength']} bytes" if comp == "none" else
                f"{kdh['dumplength']} bytes {comp}-compressed, {kdh['dumpextent']} bytes uncompressed")
        lines.append(f"  dump length: {size}, block size {kdh['blocksize']}")
        lines.append(f"  dump time:   {kdh['dumptime']} (virtual seconds since boot)")
        lines.append(f"  hostname:    {kdh['hostname'] or '(none)'}")
        lines.append(f"  version:     {kdh['versionstring'].strip()}")
        lines.append(f"  panic:       {kdh['panicstring'] or '(none: a live dump)'}")
    sec = md["sections"]
    lines.append(f"minidump: {md['magic']}, version {md['version']}, arm {md['arch']}, MMU format {md['mmuformat']}, "
                 f"kernbase 0x{md['kernbase']:08x}, {md['size']} bytes")
    lines.append(f"  message buffer  {md['msgbufsize']:>9} bytes at offset {sec['msgbuf']}")
    lines.append(f"  dump_avail      {md['dumpavailsize']:>9} bytes at offset {sec['dump_avail']}")
    lines.append(f"  page bitmap     {md['bitmapsize']:>9} bytes at offset {sec['bitmap']}")
    ptes = md["ptesize"] // 4
    kva_end = md["kernbase"] + ptes * 4096
    lines.append(f"  PTE2s           {md['ptesize']:>9} bytes at offset {sec['ptes']} ({ptes} pages, "
                 f"0x{md['kernbase']:08x}-0x{kva_end:08x})")
    npages = result["pages"]
    lines.append(f"  pages           {npages * 4096:>9} bytes at offset {sec['pages']} ({npages} pages)")
    lines.append("dump_avail:")
    lines += [f"  0x{s:08x}-0x{e:08x} {_kib(e - s):>10}" for s, e in result["dump_avail"]]
    lines.append(f"physical memory in the dump ({result['pages']} pages, {_kib(result['pages'] * 4096)}):")
    lines += [f"  0x{s:08x}-0x{e:08x} {_kib(e - s):>10}" for s, e in result["physical"]]
    lines.append("kernel virtual memory mapped (through the dumped PTE2s):")
    lines += [f"  0x{s:08x}-0x{e:08x} -> 0x{pa:08x} {_kib(e - s):>10}" for s, e, pa in result["virtual"]]
    text = result["msgbuf"]
    note = "" if result["msgbuf_header"] else "; no struct msgbuf found, the raw ring without NULs"
    lines.append(f"message buffer ({len(text.encode())} bytes{note}):")
    body = "".join(line + "\n" for line in lines) + text
    return body if body.endswith("\n") else body + "\n"
