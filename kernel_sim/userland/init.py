"""init(8) (sbin/init/init.c): the first process. It runs /etc/rc, or a single-user shell, on the console.

Multi-user: `/bin/sh /etc/rc autoboot` in a child process, as runcom() forks it. FreeBSD's init drops to
single-user mode silently when rc exits non-zero; here it also says why, since a boot that stops
early is what a user wants explained: sh has already printed a syntax error or an error with its line,
and for a command that failed under `set -e` (which sh stops on without a word) init prints the line
and the command ("/etc/rc: 12: mount -t tmpfs tmpfs /tmp: exit status 1 (set -e)"), then one init line
("init: /etc/rc exited with status 1 at line 12"). Then the `command` the kernel was asked to run, if
any, and then, when the console can be read, a root shell on it (the single-user shell when rc
failed, as FreeBSD would give). init then returns rc's status and the kernel halts the board.

Single-user (boot -s): FreeBSD's "Enter full pathname of shell or RETURN for /bin/sh: " and a shell
on the console until it exits or the input ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from kernel_sim.kern.sysapi import Sys, SysError, strerror
from kernel_sim.record import Record
from kernel_sim.userland.sh import Shell, read_file

RC = "/etc/rc"
SHELL = "/bin/sh"
_PATH_CONSOLE = "/dev/console"


class InitReport(Record):
    """What the kernel wants to know after init: each stage's exit status (None: it did not run)."""

    __slots__ = ("rc", "rc_line", "command")

    def __init__(self, rc: int | None = None, rc_line: int | None = None, command: int | None = None) -> None:
        self.rc = rc
        self.rc_line = rc_line  # where rc stopped, when it failed
        self.command = command


def init_main(sys: Sys, *, single_user: bool = False, command: str | None = None,
              read_line: Callable[[], str | None] | None = None,
              write_console: Callable[[str], None] | None = None, report: InitReport | None = None) -> int:
    """Run the boot's userland as init (pid 1) with `sys`; the result is rc's exit status (or the
    single-user shell's). `read_line` gives console input lines (None at the end); `write_console`,
    when given, takes init's own messages (else they go to init's standard error, the console)."""

    def say(text: str) -> None:
        if write_console is not None:
            write_console(text)
            return
        with contextlib.suppress(SysError):
            sys.write(2, text.encode("utf-8", "surrogateescape"))

    report = report if report is not None else InitReport()
    if single_user:
        status = _single_user(sys, read_line, say)
    else:
        status = report.rc = _runcom(sys, say, report)
    if command is not None:
        report.command = _run_command(sys, command, say)
    if read_line is not None and not single_user:
        if status:
            say("Enter full pathname of shell or RETURN for /bin/sh: ")
            first = read_line()
            if first is not None and first.strip() not in ("", SHELL):
                say(f"init: {first.strip()}: only {SHELL} is available; starting it\n")
            if first is not None:
                _console_shell(sys, read_line, say)
        else:
            _console_shell(sys, read_line, say)
    return status


def _in_child(sys: Sys, say: Callable[[str], None], body: Callable[[Sys], int]) -> int | None:
    """fork a shell process, run `body` in it, and reap it with the body's status; None when the fork
    failed (said on the console, as init does)."""
    try:
        child = sys.spawn_kstack("sh")
    except SysError as exc:
        say(f"init: can't fork for {SHELL} on {_PATH_CONSOLE}: {strerror(exc.errno)}\n")
        return None
    status = 1
    try:
        status = body(child)
    finally:
        child.exit(status)
    return status


def _runcom(sys: Sys, say: Callable[[str], None], report: InitReport) -> int:
    """runcom(): fork, then `sh /etc/rc autoboot` in the child; the child's status."""
    shells: list[Shell] = []

    def rc(child: Sys) -> int:
        try:
            text = read_file(child, RC)
        except SysError as exc:
            _write(child, f"sh: cannot open {RC}: {strerror(exc.errno)}\n")
            return 127 if exc.errno in (2, 20) else 126
        shells.append(Shell(child, RC, ["autoboot"]))
        return shells[0].run_script(text)

    status = _in_child(sys, say, rc)
    if status is None:
        return 1
    if status:
        stop = shells[0].stop if shells else None
        if stop is not None and not stop.what.startswith("Syntax error") and stop.status == status \
                and shells[0].errexit:
            say(f"{RC}: {stop.line}: {stop.what}: exit status {status} (set -e)\n")
        where = f" at line {stop.line}" if stop is not None else ""
        report.rc_line = stop.line if stop is not None else None
        say(f"init: {RC} exited with status {status}{where}\n")
    return status


def _run_command(sys: Sys, command: str, say: Callable[[str], None]) -> int:
    """The boot's extra command (`armboard boot -c CMD`): `sh -c CMD` on the console."""
    def run(child: Sys) -> int:
        shell = Shell(child, "sh")
        shell.commandname = None
        return shell.run_script(command)

    status = _in_child(sys, say, run)
    return 1 if status is None else status


def _single_user(sys: Sys, read_line: Callable[[], str | None] | None, say: Callable[[str], None]) -> int:
    """single_user(): the shell prompt, then a shell on the console until exit or end of input."""
    if read_line is None:
        say("init: single-user mode needs a console to read from\n")
        return 1
    say("Enter full pathname of shell or RETURN for /bin/sh: ")
    first = read_line()
    if first is None:
        return 0
    if first.strip() not in ("", SHELL):
        say(f"init: {first.strip()}: only {SHELL} is available; starting it\n")
    return _console_shell(sys, read_line, say)


def _console_shell(sys: Sys, read_line: Callable[[], str | None], say: Callable[[str], None]) -> int:
    def interact(child: Sys) -> int:
        shell = Shell(child, None, interactive=True)
        return shell.interact(read_line, prompt=shell.vars["PS1"])

    status = _in_child(sys, say, interact)
    return 1 if status is None else status


def _write(sys: Sys, text: str) -> None:
    with contextlib.suppress(SysError):
        sys.write(2, text.encode("utf-8", "surrogateescape"))
