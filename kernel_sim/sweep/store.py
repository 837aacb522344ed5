"""The row store: an append-only journal of finished rows that a killed sweep resumes from.

CSV by default; JSON Lines when the file is named .jsonl or .ndjson. Each row is written with one
write() as it arrives, so a sweep killed at any moment loses no finished row (the kernel has it); the
caller fsyncs every so often (`sync`), which bounds what a host crash could lose. A row cut off by a
kill is dropped when the sweep resumes, and its point runs again. At the end the file is rewritten in
point order (a new file renamed over the old one). The journal is locked while a sweep writes it: a
second sweep on the same file is refused.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from contextlib import suppress
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError, check_input_file
from kernel_sim.sweep.grid import Point
from kernel_sim.sweep.rows import COLUMNS

INTS = ("point", "exit_code", "plan_exit_code", "vm_kmem_size", "kvm_free", "kva_remaining", "kstacks_started",
        "kva_free", "kmem_free", "kstacks_fit")
FLOATS = ("virtual_seconds", "wall_seconds")


def typed(row: dict) -> dict:
    """A row read back from CSV with its numbers as numbers ("" stays "": not measured)."""
    out = dict(row)
    for name in INTS:
        value = out.get(name)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            out[name] = int(value)
    for name in FLOATS:
        value = out.get(name)
        if isinstance(value, str) and value:
            with suppress(ValueError):
                out[name] = float(value)
    if isinstance(out.get("plan_agrees"), str):
        out["plan_agrees"] = out["plan_agrees"] in ("True", "true", "1")
    return out


def csv_text(row: dict) -> dict:
    """A row as the CSV writes it (what a test compares between two sweeps)."""
    return {c: "" if row.get(c) is None else str(row.get(c, "")) for c in COLUMNS}


class RowStore:
    def __init__(self, path: Path, points: list[Point]) -> None:
        self.path = path
        self.jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
        self.by_index = {p.index: p for p in points}
        self.fieldnames: list[str] = list(COLUMNS)
        self.file: io.TextIOWrapper | None = None

    # ------------------------------------------------------------------ resume
    def load(self) -> dict[int, dict]:
        """The rows of an earlier run of the same grid, by point; a torn last row is dropped."""
        if not self.path.exists():
            return {}
        check_input_file(self.path, what="earlier sweep journal", where="--out")   # a FIFO is never replaced
        try:
            raw = self.path.read_bytes().decode()
        except UnicodeDecodeError:
            raise InputError("not a sweep journal (not text)", str(self.path)) from None
        except OSError as exc:
            raise InputError(f"cannot read it: {describe_host(exc)}", str(self.path)) from None
        records, keep = (self._jsonl_records if self.jsonl else self._csv_records)(raw)
        if keep != len(raw):
            self._truncate(len(raw[:keep].encode()))
        done: dict[int, dict] = {}
        for line, row in records:
            where = f"{self.path}:{line}"
            try:
                index = int(row["point"])
            except (KeyError, ValueError, TypeError):
                raise InputError("not an armboard sweep journal (no point column)", where) from None
            point = self.by_index.get(index)
            if (point is None or str(row.get("options", "")) != point.options_text
                    or str(row.get("physmem", "")) != (point.physmem or "")):
                raise InputError("the output file holds another grid: remove it or choose another --out", where)
            done.setdefault(index, typed(row))
        return done

    def _csv_records(self, raw: str) -> tuple[list[tuple[int, dict]], int]:
        """(line, row) of each complete record, and how many characters of `raw` they take."""
        if not raw.strip():
            return [], 0
        header_end = raw.find("\n")
        if header_end < 0:
            return [], 0                                  # a header cut off: start over
        self.fieldnames = next(csv.reader([raw[:header_end]]))
        if "point" not in self.fieldnames:
            raise InputError("not an armboard sweep CSV (no point column)", f"{self.path}:1")
        records: list[tuple[int, dict]] = []
        keep = header_end + 1
        line = 1
        body = raw[keep:]
        offset = 0
        while offset < len(body):
            end = _record_end(body, offset)
            if end is None:
                break                                     # the last record was cut off mid-write
            text = body[offset:end]
            line += 1
            values = next(csv.reader([text.rstrip("\n")]), [])
            if len(values) != len(self.fieldnames):
                break
            records.append((line, dict(zip(self.fieldnames, values, strict=True))))
            line += text.count("\n") - 1
            offset = end
        return records, keep + offset

    def _jsonl_records(self, raw: str) -> tuple[list[tuple[int, dict]], int]:
        records = []
        offset = 0
        for n, text in enumerate(raw.splitlines(keepends=True), start=1):
            if not text.endswith("\n"):
                break
            try:
                row = json.loads(text)
            except json.JSONDecodeError:
                break
            if not isinstance(row, dict):
                raise InputError("not an armboard sweep journal (a line is not an object)", f"{self.path}:{n}")
            records.append((n, row))
            offset += len(text)
        return records, offset

    def _truncate(self, size: int) -> None:
        with self.path.open("r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ append
    def open(self) -> None:
        """Open for appending (after load), taking the lock; a new CSV gets its header."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a", newline="", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise InputError("another sweep is writing this file", str(self.path)) from None
        self.file = f
        if not self.jsonl and f.tell() == 0:
            self.fieldnames = list(COLUMNS)
            self._write(_csv_line(self.fieldnames, {c: c for c in self.fieldnames}))
            self.sync()

    def append(self, rows: list[dict]) -> None:
        """Write rows with one write() (no fsync: see sync)."""
        if not rows:
            return
        if self.jsonl:
            text = "".join(json.dumps({c: r.get(c, "") for c in COLUMNS}, default=str) + "\n" for r in rows)
        else:
            text = "".join(_csv_line(self.fieldnames, r) for r in rows)
        self._write(text)

    def sync(self) -> None:
        """fsync: what was appended is on disk, not only in the kernel's cache."""
        if self.file is not None:
            os.fsync(self.file.fileno())

    def _write(self, text: str) -> None:
        assert self.file is not None
        self.file.write(text)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def compact(self, rows: list[dict]) -> None:
        """Rewrite the journal in point order with today's columns (atomically: a new file renamed)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        ordered = sorted(rows, key=lambda r: int(r["point"]))
        with tmp.open("w", newline="", encoding="utf-8") as f:
            if self.jsonl:
                f.write("".join(json.dumps({c: r.get(c, "") for c in COLUMNS}, default=str) + "\n" for r in ordered))
            else:
                f.write(_csv_line(list(COLUMNS), {c: c for c in COLUMNS}))
                f.write("".join(_csv_line(list(COLUMNS), r) for r in ordered))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.close()


def _csv_line(fieldnames: list[str], row: dict) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if row.get(c) is None else row.get(c, "") for c in fieldnames])
    return out.getvalue()


def _record_end(body: str, offset: int) -> int | None:
    """Where the CSV record starting at `offset` ends (after its newline), minding quoted newlines:
    a newline ends the record when the quotes before it pair up. None when the text ends inside it."""
    quotes = 0
    start = offset
    while True:
        nl = body.find("\n", start)
        if nl < 0:
            return None
        quotes += body.count('"', start, nl)
        if quotes % 2 == 0:
            return nl + 1
        start = nl + 1
