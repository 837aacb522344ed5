"""The command line that runs a configured guest ELF on qemu-system-arm's virt board.

The tests and benchmarks compare armboard against QEMU on the same ELF; they all take the command
from here so that it stays self-contained: `-nic none` drops the default virtio NIC, whose option
ROM (`efi-virtio.rom`, Debian's recommended `ipxe-qemu`) a fresh machine does not have, and no other
device the guest does not use is asked for.
"""

from __future__ import annotations

import shutil


def qemu_binary() -> str | None:
    """qemu-system-arm on PATH, or None."""
    return shutil.which("qemu-system-arm")


def qemu_virt_command(elf: str, *, mem_mb: int, serial: str = "stdio", qemu: str | None = None,
                      extra: tuple[str, ...] = ()) -> list[str]:
    """`-kernel ELF` on virt with a Cortex-A15, as armboard's `--abi none` boots it; semihosting
    (target=native) gives the guest its exit, as the board's own SYS_EXIT handling does."""
    return [qemu or qemu_binary() or "qemu-system-arm", "-M", "virt", "-cpu", "cortex-a15", "-m", str(mem_mb),
            "-nographic", "-nic", "none", "-monitor", "none", "-serial", serial,
            "-kernel", str(elf), "-semihosting-config", "enable=on,target=native", *extra]
