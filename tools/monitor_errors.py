"""The two ways a monitor command can end without its result, kept apart from the commands so that
every command module (tools/monitor.py, tools/monitor_mem.py) raises them without importing the others.

MonitorError is a malformed command (unknown name, bad syntax, a host file that cannot be read):
`-x` stops there and the boot exits 2. CommandRefused is a well-formed command that the kernel or a
device refused (EPERM from a read-only provider, an unmapped address): a result, printed with the
errno's text and name, after which the remaining commands still run.
"""

from __future__ import annotations

from kernel_sim.errnos import describe, strerror


class MonitorError(Exception):
    """A monitor command that is malformed (bad syntax, unknown command, unreadable host file)."""


class CommandRefused(MonitorError):
    """A well-formed command the kernel or a device refused: `errno` is FreeBSD's, or None."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def refused(what: str, exc: Exception) -> CommandRefused:
    """`what: detail: Operation not permitted (EPERM)` from an error carrying FreeBSD's errno.

    The detail is left out when it is only strerror again, so the text is not said twice."""
    errno = getattr(exc, "errno", None)
    detail = str(exc).strip()
    if errno is None:
        return CommandRefused(f"{what}: {detail}")
    if detail in ("", strerror(errno)):
        return CommandRefused(f"{what}: {describe(errno)}", errno)
    return CommandRefused(f"{what}: {detail}: {describe(errno)}", errno)
