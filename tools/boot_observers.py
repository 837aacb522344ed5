"""What `armboard boot` records beside the console when asked: a trace (--trace), the boot timeline
(--timeline, the monitor's `timeline`) and the HTML report (--report).

Nothing here is imported by a boot that asks for none of them (tools/cli.py's _records checks the
options first). Bad options are found before the machine exists: exit status 2, nothing run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError

TIMELINE_SUFFIXES = (".json", ".svg", ".png")


class BootObservers:
    def __init__(self, args) -> None:
        from tools import trace

        if (args.trace_file or args.trace_range or args.trace_stage) and not args.trace:
            flag = "--trace-file" if args.trace_file else "--trace-range" if args.trace_range else "--trace-stage"
            raise InputError("needs --trace KINDS (e.g. --trace in_asm,int,mmu)", flag)
        self.kinds = trace.parse_kinds(args.trace) if args.trace else ()
        self.range = trace.parse_range(args.trace_range) if args.trace_range else None
        self.stages = trace.parse_stages(args.trace_stage) if args.trace_stage else None
        self.timeline_path = Path(args.timeline) if args.timeline else None
        if self.timeline_path is not None and self.timeline_path.suffix.lower() not in TIMELINE_SUFFIXES:
            raise InputError(f"{self.timeline_path.name}: a timeline is .json, .svg or .png", "--timeline")
        self.report_path = Path(args.report) if args.report else None
        if self.report_path is not None and self.report_path.suffix.lower() not in (".html", ".htm"):
            raise InputError(f"{self.report_path.name}: a report is .html", "--report")
        self.want_timeline = bool(self.timeline_path or self.report_path
                                  or any(c.split()[:1] == ["timeline"] for c in args.monitor_commands))
        self.trace_out = None
        self._close_trace_out = False
        if self.kinds:
            if args.trace_file is None or str(args.trace_file) == "-":
                self.trace_out = sys.stderr
            else:
                try:
                    self.trace_out = open(args.trace_file, "w", encoding="utf-8")   # noqa: SIM115 - closed in finish
                except OSError as exc:
                    raise InputError(f"cannot write the trace: {describe_host(exc)}", str(args.trace_file)) from None
                self._close_trace_out = True
        self.recorder = None
        self.tracer = None
        self.timeline = None
        self.tables = None           # the kernel window's page tables at the hand-over, for the report

    def attach(self, prepared):
        """The machine for this boot, with the trace and the timeline listening, and the boot's on_stage
        chained to theirs."""
        from kernel_sim import boot as boot_mod

        machine = boot_mod.build_machine(prepared)
        watchers = []
        if self.want_timeline:
            from tools.timeline import Recorder

            self.recorder = Recorder(machine, prepared.image)
            watchers.append(self.recorder.watch.on_stage)
        if self.kinds:
            from tools.trace import Tracer

            self.tracer = Tracer(machine, prepared.image, self.kinds, self.trace_out, address_range=self.range,
                                 stages=self.stages, python_mmu=prepared.request.mmu == "python")
            watchers.append(self.tracer.watch.on_stage)
        if self.report_path is not None:
            watchers.append(self._tables_at_handover)
        self._prepared = prepared
        previous = prepared.request.on_stage
        if previous is not None:
            watchers.append(previous)

        def on_stage(name: str, run: object) -> None:
            for watch in watchers:
                watch(name, run)

        prepared.request.on_stage = on_stage
        return machine

    def _tables_at_handover(self, name: str, run) -> None:
        if name == "kmeminit":
            from tools.report import tables_now

            self.tables = tables_now(run, self._prepared, run.handoff, "at the hand-over")

    def finish(self, result) -> None:
        """Stop listening and write what was asked for."""
        if self.tracer is not None:
            self.tracer.close()
            if self._close_trace_out:
                self.trace_out.close()
        if self.recorder is not None:
            self.timeline = self.recorder.finish(result)
        if self.timeline_path is not None:
            from tools.timeline import write_timeline

            write_timeline(self.timeline, self.timeline_path)
        if self.report_path is not None:
            from tools.report import write_report

            write_report(result, self.timeline, self.report_path, self.tables)
