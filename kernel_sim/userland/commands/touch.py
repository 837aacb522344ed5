"""touch [-c] file ... (usr.bin/touch): creates missing files (mode 0666 less the umask).

Not yet: changing the times of an existing file needs utimes(2), which the system-call interface does
not have; an existing file is left as it is (touch still checks that it can be opened for writing).
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import ENOENT, O_CREAT, O_WRONLY, S_IFDIR, S_IFMT, Sys, SysError
from kernel_sim.userland.commands._util import UMASK, Usage, getopt, say, warn


def main(sys: Sys, argv: list[str]) -> int:
    try:
        opts, files = getopt(sys, "touch", argv[1:], "acfhmr:t:d:A:")
    except Usage:
        files = []
        opts = []
    if not files:
        say(sys, "usage: touch [-A [-][[hh]mm]SS] [-achm] [-r file] [-t [[CC]YY]MMDDhhmm[.SS]]\n"
                 "       [-d YYYY-MM-DDThh:mm:SS[.frac][tz]] file ...\n")
        return 1
    nocreate = any(ch == "c" for ch, _ in opts)
    status = 0
    for name in files:
        try:
            st = sys.stat(name)
        except SysError as exc:
            if exc.errno != ENOENT:
                warn(sys, "touch", name, exc)
                status = 1
                continue
            if nocreate:
                continue
            st = None
        if st is not None and st.mode & S_IFMT == S_IFDIR:
            continue
        try:
            fd = sys.open(name, O_WRONLY | (0 if st is not None else O_CREAT), 0o666 & ~UMASK)
            sys.close(fd)
        except SysError as exc:
            warn(sys, "touch", name, exc)
            status = 1
    return status
