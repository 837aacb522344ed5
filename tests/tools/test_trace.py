"""`armboard boot --trace`: blocks with symbols, the MMU switch, exceptions, MMIO and the hypercall gate,
the range and stage filters, and bad options."""

from __future__ import annotations

import json
import re

import pytest

from kernel_sim.guest.build import guest_image
from tools.cli import main

LINE = re.compile(r"^0x([0-9a-f]{8}):  ([0-9a-f]{8})  (\S+)")


def trace(tmp_path, capsys, kinds: str, *extra: str, name: str = "trace.txt") -> tuple[int, str, str]:
    path = tmp_path / name
    conf = [] if "--loader-conf" in extra else ["--no-loader-conf"]
    code = main(["boot", *conf, "--console", str(tmp_path / "console.txt"), "--trace", kinds,
                 "--trace-file", str(path), *extra])
    out, _err = capsys.readouterr()
    return code, path.read_text(), out


def addresses(text: str) -> list[int]:
    return [int(m.group(1), 16) for m in map(LINE.match, text.splitlines()) if m]


def test_in_asm_and_mmu_show_locore_building_its_table_and_turning_the_mmu_on(tmp_path, capsys):
    code, text, _ = trace(tmp_path, capsys, "in_asm,mmu,hypercall", "--stop-at", "handover")
    assert code == 0
    handoff = json.loads(_json_handoff(capsys))
    lines = text.splitlines()
    assert lines[0] == "stage: reset at 0x40000000 <_start>"
    assert "IN: _start" in lines
    assert any(line.startswith("0x40000000:  e1a08000  mov      r8, r0") and line.endswith("<_start>")
               for line in lines)
    stages = [line.split()[1] for line in lines if line.startswith("stage: ")]
    assert stages == ["reset", "locore", "mmu_on", "initarm", "pmap_bootstrap", "handover"]
    mmu = [line for line in lines if line.startswith("mmu: 0x")]
    ttbr = [line.rsplit(" ", 1)[1] for line in mmu if "TTBR0 = " in line]
    assert ttbr == [f"0x{handoff['boot_pt1']:08x}", f"0x{handoff['kern_pt1']:08x}"]     # locore's, then pmap's
    on = [line for line in mmu if "(MMU on)" in line]
    assert len(on) == 1 and "<init_mmu+" in on[0] and "M=1" in on[0] and "TRE=1 AFE=1" in on[0]
    assert sum("TLBIALL" in line for line in mmu) == 2
    # the first fetch at a kernel address after the switch, through locore's window
    assert "mmu: fetch 0xc00000f8 -> 0x400000f8: section 0xc0000000->0x40000000 (1024 KiB), rwx/---, domain 0" in lines
    gate = [line for line in lines if line.startswith("hypercall: ")]
    assert gate == [f"hypercall: 0xc0000370 <hypercall+0xc>: HC_HANDOVER (1), r0 0x{handoff['_va']:08x}"]


def _json_handoff(capsys) -> str:
    main(["boot", "--no-loader-conf", "--json", "--stop-at", "handover"])
    data = json.loads(capsys.readouterr().out)
    handoff = data["handoff"]
    handoff["_va"] = guest_image().symbols["handoff"]
    return json.dumps(handoff)


def test_mmio_lines_spell_the_console_the_guest_wrote(tmp_path, capsys):
    code, text, _ = trace(tmp_path, capsys, "mmio", "--stop-at", "handover")
    assert code == 0
    dr = re.compile(r"^mmio: uart0 write 0x09000000 \(\+0x000 UARTDR\) 4 bytes 0x([0-9a-f]{8})", re.M)
    written = "".join(chr(int(m.group(1), 16) & 0xFF) for m in dr.finditer(text))
    assert written.replace("\r\n", "\n") == (tmp_path / "console.txt").read_text()   # the UART sends CR LF
    assert "mmio: uart0 read  0x09000018 (+0x018 UARTFR) 4 bytes" in text
    assert "<kvprintf+0x" in text or "<cons_putc" in text


def test_a_data_abort_is_decoded_with_its_vector(tmp_path, capsys, loader_conf):
    conf = loader_conf('debug.wild_access="0x20000000"\n')
    code, text, _ = trace(tmp_path, capsys, "int,hypercall", "--loader-conf", str(conf))
    assert code == 1
    taken = [line for line in text.splitlines() if line.startswith("int: ")]
    assert len(taken) == 1
    assert re.fullmatch(r"int: data abort at 0xc[0-9a-f]{7} <debug_wild_access\+0x[0-9a-f]+>: DFSR 0x005 "
                        r"Translation Fault \(L1\) \(read\), DFAR 0x20000000; vector 0xc00001b0 "
                        r"<exception_vectors\+0x10>, mode abt", taken[0]), taken[0]
    assert "HC_FATAL (3)" in text.splitlines()[-1]


def test_the_range_filter_keeps_only_code_inside_it(tmp_path, capsys):
    image = guest_image()
    start = image.symbols["pmap_bootstrap"]
    code, text, _ = trace(tmp_path, capsys, "insn,exec", "--stop-at", "handover",
                          "--trace-range", f"0x{start:x}+0x100")
    assert code == 0
    found = addresses(text)
    assert found and all(start <= a < start + 0x100 for a in found)
    assert found[0] == start
    execs = [int(m, 16) for m in re.findall(r"^Trace: 0x([0-9a-f]{8})", text, re.M)]
    assert execs and all(start <= a < start + 0x100 for a in execs)


def test_the_stage_filter_keeps_only_that_stage(tmp_path, capsys):
    image = guest_image()
    lo = image.physical_alias(image.symbols["build_pagetables"])
    hi = image.physical_alias(image.symbols["init_mmu"])
    code, text, _ = trace(tmp_path, capsys, "in_asm", "--stop-at", "handover", "--trace-stage", "locore")
    assert code == 0
    found = addresses(text)
    assert found and all(lo <= a < hi for a in found), [hex(a) for a in found if not lo <= a < hi]


def test_one_line_per_instruction_matches_the_timeline_count(tmp_path, capsys):
    timeline = tmp_path / "t.json"
    code, text, _ = trace(tmp_path, capsys, "insn", "--stop-at", "handover", "--timeline", str(timeline))
    assert code == 0
    counted = json.loads(timeline.read_text())["instructions"]
    assert len(addresses(text)) == counted > 100_000


def test_python_mmu_traces_each_tlb_fill(tmp_path, capsys):
    code, text, _ = trace(tmp_path, capsys, "mmu", "--stop-at", "handover", "--mmu", "python")
    assert code == 0
    fills = [line for line in text.splitlines() if line.startswith("mmu: TLB fill ")]
    assert any(re.match(r"mmu: TLB fill fetch 0xc0001[0-9a-f]{3} -> 0x40001[0-9a-f]{3} r.x", f) for f in fills)


@pytest.mark.parametrize(("argv", "needles"), [
    (["--trace", "in_asm,bogus"], ["--trace", "unknown trace kind 'bogus'", "in_asm, exec"]),
    (["--trace", "in_asm", "--trace-range", "0x10-0x1"], ["--trace-range", "empty range"]),
    (["--trace", "in_asm", "--trace-range", "pmap"], ["--trace-range", "START-END or START+LEN"]),
    (["--trace", "in_asm", "--trace-stage", "locore,nowhere"], ["--trace-stage", "unknown stage 'nowhere'"]),
    (["--trace-range", "0x0-0x10"], ["--trace-range", "needs --trace KINDS"]),
    (["--trace", "int", "--trace-file", "/nonexistent/dir/t.txt"], ["/nonexistent/dir/t.txt", "cannot write"]),
    (["--timeline", "t.txt"], ["--timeline", "a timeline is .json, .svg or .png"]),
    (["--report", "r.pdf"], ["--report", "a report is .html"]),
])
def test_bad_trace_options_are_one_line_and_exit_2(capsys, tmp_path, argv, needles):
    code = main(["boot", "--no-loader-conf", "--console", str(tmp_path / "c.txt"), *argv])
    _out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("armboard: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "c.txt").exists() or (tmp_path / "c.txt").read_text() == ""
