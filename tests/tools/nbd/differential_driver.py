"""Run one request sequence against NBD servers with libnbd and print every reply as JSON.

Run by Debian's /usr/bin/python3, which has python3-libnbd (the project's venv has not): the test
(test_differential.py) writes {"uris": [...], "ops": [...]} on stdin and compares what comes back
for each server. Every op is answered with ["ok", value] or ["error", errno]; reads are recorded as
a digest and the chunks pread_structured saw, block status as the raw descriptors libnbd passed.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys

import nbd


def data_for(seed: int, length: int, kind: str) -> bytes:
    rng = random.Random(seed)
    if kind == "zeros":
        return bytes(length)
    if kind == "byte":
        return bytes([rng.randrange(1, 256)]) * length
    if kind == "text":
        line = b"%08d the quick brown fox jumps over the lazy dog\n" % seed
        return (line * (length // len(line) + 1))[:length]
    return rng.randbytes(length)


def flags_of(names: list[str]) -> int:
    out = 0
    for name in names:
        out |= getattr(nbd, f"CMD_FLAG_{name}")
    return out


def connect(uri: str) -> nbd.NBD:
    h = nbd.NBD()
    h.set_full_info(True)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    return h


def describe(h: nbd.NBD) -> dict:
    out = {"size": h.get_size(), "read_only": h.is_read_only(), "rotational": h.is_rotational(),
           "structured": h.get_structured_replies_negotiated(), "handshake": h.get_handshake_flags(),
           "protocol": h.get_protocol(), "meta": h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION),
           "name": h.get_canonical_export_name(), "block": [
               h.get_block_size(s) for s in (nbd.SIZE_MINIMUM, nbd.SIZE_PREFERRED, nbd.SIZE_MAXIMUM)]}
    for can in ("cache", "df", "fast_zero", "flush", "fua", "multi_conn", "trim", "zero"):
        out[can] = getattr(h, f"can_{can}")()
    try:
        out["description"] = h.get_export_description()
    except nbd.Error as exc:
        out["description"] = ["error", exc.errno]
    return out


def listing(uri: str) -> list:
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_uri(uri)
    names: list = []
    h.opt_list(lambda name, description: names.append([name, description]) or 0)
    h.opt_abort()
    return names


def run_op(h: nbd.NBD, op: dict):
    kind = op["op"]
    flags = flags_of(op.get("flags", []))
    if kind == "pread":
        chunks: list = []

        def chunk(buf, offset, status, error):
            chunks.append([offset, len(buf), status])
            return 0

        buf = h.pread_structured(op["count"], op["offset"], chunk, flags)
        return [hashlib.sha256(buf).hexdigest(), chunks]
    if kind == "pwrite":
        h.pwrite(data_for(op["seed"], op["count"], op["data"]), op["offset"], flags)
        return None
    if kind == "zero":
        h.zero(op["count"], op["offset"], flags)
        return None
    if kind == "trim":
        h.trim(op["count"], op["offset"], flags)
        return None
    if kind == "cache":
        h.cache(op["count"], op["offset"], flags)
        return None
    if kind == "flush":
        h.flush(flags)
        return None
    if kind == "block_status":
        seen: list = []

        def extents(context, offset, entries, error):
            seen.append([context, offset, list(entries)])
            return 0

        h.block_status(op["count"], op["offset"], extents, flags)
        return seen
    raise ValueError(f"unknown op {kind}")


def content(h: nbd.NBD, size: int) -> list:
    """The whole disk, as a digest per 4 MiB and its full map."""
    digests = []
    step = 4 << 20
    for off in range(0, size, step):
        digests.append(hashlib.sha256(h.pread(min(step, size - off), off)).hexdigest())
    extents: list = []
    pos = 0
    while pos < size:
        got: list = []
        h.block_status(min(size - pos, 1 << 30), pos, lambda c, o, e, err, got=got: got.extend(e) or 0)
        if not got:
            break
        extents.extend(got)
        pos += sum(got[0::2])
    return [digests, extents]


def main() -> None:
    job = json.load(sys.stdin)
    results = {}
    for uri in job["uris"]:
        out: dict = {"list": listing(uri)}
        handles = [connect(uri) for _ in range(job.get("connections", 1))]
        out["describe"] = describe(handles[0])
        replies = []
        for op in job["ops"]:
            h = handles[op.get("conn", 0) % len(handles)]
            h.set_strict_mode(0 if op.get("raw") else nbd.STRICT_MASK)
            try:
                replies.append(["ok", run_op(h, op)])
            except nbd.Error as exc:
                replies.append(["error", exc.errno])
        out["replies"] = replies
        handles[0].set_strict_mode(nbd.STRICT_MASK)
        out["content"] = content(handles[0], out["describe"]["size"])
        for h in handles:
            h.shutdown()
        results[uri] = out
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
