"""df [-h | -H | -k | -m | -g] [-i] [file | filesystem ...] (bin/df).

FreeBSD's columns: "Filesystem 512-blocks Used Avail Capacity Mounted on" (BLOCKSIZE is not passed to
commands here, so the default block is getbsize()'s 512 bytes; -k gives 1K-blocks, -m 1M-blocks,
-g 1G-blocks), each column as wide as its widest entry, Capacity as used / (used + avail) rounded
("%5.0f%%"). -h and -H print sizes as humanize_number does (base 1024 and 1000). -i adds
iused/ifree/%iused. An operand names the file system it is on.
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import StatFs, Sys, SysError
from kernel_sim.userland.commands._util import Usage, getopt, humanize_number, out, say, warn

USAGE = ("usage: df [-b | -g | -H | -h | -k | -m | -P] [-acilnT] [-,] [-t type] [-x type]\n"
         "          [file | filesystem ...]\n")


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, args = getopt(sys, "df", argv[1:], "abcgHhiklmnPTt:x:,")
    except Usage:
        say(sys, USAGE)
        return 1
    human = 0
    blocksize, header = 512, "512-blocks"
    inodes = False
    for ch, _ in opts:
        if ch in "hH":
            human = 1024 if ch == "h" else 1000
        elif ch in "kmgbP":
            human = 0
            blocksize, header = {"k": (1024, "1K-blocks"), "m": (1 << 20, "1M-blocks"), "g": (1 << 30, "1G-blocks"),
                                 "b": (512, "512-blocks"), "P": (512, "512-blocks")}[ch]
        elif ch == "i":
            inodes = True
    status = 0
    try:
        mounts = sys.getfsstat()
    except SysError as exc:
        warn(sys, "df", "getmntinfo", exc)
        return 1
    chosen: list[StatFs] = []
    if args:
        for name in args:
            try:
                fs = sys.statfs(name)
            except SysError as exc:
                warn(sys, "df", name, exc)
                status = 1
                continue
            chosen.append(fs)
    else:
        chosen = mounts
    if chosen:
        out(sys, _table(chosen, human, blocksize, header, inodes))
    return status


def _table(fss: list[StatFs], human: int, blocksize: int, header: str, inodes: bool) -> str:
    rows = []
    for fs in fss:
        used = fs.blocks - fs.bfree
        availblks = fs.bavail + used
        cap = 100.0 if availblks == 0 else used / availblks * 100.0
        if human:
            cols = [humanize_number(v * fs.bsize, 5, divisor=human) for v in (fs.blocks, used, fs.bavail)]
        else:
            cols = [str(v * fs.bsize // blocksize) for v in (fs.blocks, used, fs.bavail)]
        iused = fs.files - fs.ffree
        icap = 100.0 if fs.files == 0 else iused / fs.files * 100.0
        rows.append((fs.mntfromname, cols, f"{cap:5.0f}%", (str(iused), str(fs.ffree), f"{icap:4.0f}%"),
                     fs.mntonname))
    wfrom = max(len("Filesystem"), *(len(r[0]) for r in rows))
    if human:
        heads = ["Size", "Used", "Avail"]
        widths = [len("   Size")] * 3
    else:
        heads = [header, "Used", "Avail"]
        widths = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    wiu = max(len("iused"), *(len(r[3][0]) for r in rows))
    wif = max(len("ifree"), *(len(r[3][1]) for r in rows))
    line = f"{'Filesystem':<{wfrom}} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    line += " Capacity"
    if inodes:
        line += f" {'iused':>{wiu}} {'ifree':>{wif}} %iused"
    lines = [line + "  Mounted on\n"]
    for name, cols, cap, inode_cols, on in rows:
        # prtstat(): " %5.0f%%", then " %*jd %*jd %4.0f%% " with -i or "  ", then "  %s\n"
        line = f"{name:<{wfrom}} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)) + f" {cap}"
        if inodes:
            line += f" {inode_cols[0]:>{wiu}} {inode_cols[1]:>{wif}} {inode_cols[2]} "
        else:
            line += "  "
        lines.append(f"{line}  {on}\n")
    return "".join(lines)
