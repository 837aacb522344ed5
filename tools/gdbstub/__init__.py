"""A gdb remote stub for the board (`armboard boot --gdb [HOST:]PORT`, `-S`, the monitor's `gdb`).

    packets.py      framing: checksums, acks, escapes, the interrupt byte
    registers.py    the ARM core + VFP target description and the g/G/p/P layout
    connection.py   one connection: a reader thread, queued packets, replies
    stub.py         GdbStub: the boot's debugger, answering gdb's requests at each stop
"""

from __future__ import annotations

from tools.gdbstub.stub import GdbStub, parse_address

__all__ = ["GdbStub", "parse_address"]
