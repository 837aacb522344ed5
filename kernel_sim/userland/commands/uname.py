"""uname [-abiKmnoprsUv] (usr.bin/uname): from kern.ostype, kern.hostname, kern.osrelease,
kern.version, hw.machine and hw.machine_arch; a value the kernel lacks prints as "unknown".
-a is -mnrsv, printed in the order s n r v m as FreeBSD does."""

from __future__ import annotations

from kernel_sim.kern.sysapi import Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, out, say

_OIDS = {"s": "kern.ostype", "n": "kern.hostname", "r": "kern.osrelease", "v": "kern.version",
         "m": "hw.machine", "p": "hw.machine_arch", "i": "kern.ident", "K": "kern.osreldate", "U": "kern.osreldate"}
_ORDER = "snrvmpiKU"


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, args = getopt(sys, "uname", argv[1:], "abiKmnoprsUv")
    except Usage:
        say(sys, "usage: uname [-abiKmnoprsUv]\n")
        return 1
    if args:
        say(sys, "usage: uname [-abiKmnoprsUv]\n")
        return 1
    want = set()
    for ch, _ in opts:
        want |= set("mnrsv") if ch == "a" else {"s"} if ch == "o" else {ch}
    want = want or {"s"}
    fields = []
    for ch in _ORDER:
        if ch in want:
            fields.append(_value(sys, _OIDS[ch]))
    out(sys, " ".join(fields) + "\n")
    return 0


def _value(sys: Sys, oid: str) -> str:
    try:
        rows = sys.sysctl(oid)
    except SysError:
        return "unknown"
    text = rows[0][1] if rows else "unknown"
    return " ".join(text.replace("\t", " ").splitlines()).strip() if oid == "kern.version" else text
