"""panic(9) for the Python kernel.

Why an exception: after the hand-over the kernel is Python, so a FreeBSD panic() has to unwind
the Python call stack to whoever runs the boot (mi_startup's caller), which can then print
FreeBSD's console line and diagnose. The message is FreeBSD's own string, already formatted
(for example "pmap_growkernel: no memory to grow kernel", sys/arm/arm/pmap-v6.c), without the
"panic: " prefix that sys/kern/kern_shutdown.c vpanic() prints in front of it.
"""

from __future__ import annotations


class KernelPanic(Exception):
    """The kernel cannot go on; `message` is the panic string as FreeBSD formats it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def console_line(self) -> str:
        """What vpanic() prints on the console (sys/kern/kern_shutdown.c: "panic: %s\\n")."""
        return f"panic: {self.message}\n"

    def __str__(self) -> str:
        return self.message
