"""halt, poweroff and reboot (sbin/reboot): reboot(2) with RB_HALT, RB_POWEROFF or RB_AUTOBOOT.

Options: -q (no shutdown scripts, the only way here), -n (no sync), -p (halt: power off). A user gets
"halt: Operation not permitted", exit 1 (reboot.c errx(1, "%s", strerror(EPERM))).
"""

from __future__ import annotations

from kernel_sim.kern.sysapi import EPERM, RB_AUTOBOOT, RB_HALT, RB_POWEROFF, Sys, SysError, strerror
from kernel_sim.userland.commands._util import Usage, getopt, say, warnx


def main(sys: Sys, argv: list[str]) -> int:
    prog = argv[0].rsplit("/", 1)[-1]
    try:
        opts, args = getopt(sys, prog, argv[1:], "cdk:lNnopqr")
    except Usage:
        say(sys, f"usage: {prog} [-{'lnpq' if prog != 'reboot' else 'cdlNnpqr'}] [-k kernel]\n")
        return 1
    if args:
        say(sys, f"usage: {prog} [-lnpq] [-k kernel]\n")
        return 1
    flags = {ch for ch, _ in opts}
    howto = {"halt": RB_HALT, "poweroff": RB_POWEROFF}.get(prog, RB_AUTOBOOT)
    if "p" in flags:
        howto = RB_POWEROFF if prog != "reboot" else RB_AUTOBOOT | RB_POWEROFF
    if sys.uid != 0:
        warnx(sys, prog, strerror(EPERM))
        return 1
    try:
        sys.reboot(howto)
    except SysError as exc:
        warnx(sys, prog, strerror(exc.errno))
        return 1
    return 0
