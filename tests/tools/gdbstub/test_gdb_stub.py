"""The stub end to end over a real socket, with a hand-written client and a tiny guest on the bare
board (no kernel): handshake, registers, memory, breakpoints, step, watchpoints, Ctrl-C, monitor
commands, detach and kill."""

from __future__ import annotations

import io
import socket
import struct
import threading
from types import SimpleNamespace

import pytest

from board.machine import Machine
from board.profile import load_profile
from kernel_sim.boot import run_guest
from kernel_sim.guest.build import GuestImage
from tools.gdbstub import GdbStub
from tools.gdbstub.packets import Framer, escape, frame, unhex

RAM = 0x40000000
# mov r0,#1 ; mov r0,#2 ; ldr r1,=RAM+0x100 ; str r0,[r1] ; mov r0,#0x18 ; svc 0x123456 (SYS_EXIT) ; b . ; 0 ; RAM+0x100
PROGRAM = (0xE3A00001, 0xE3A00002, 0xE59F1010, 0xE5810000, 0xE3A00018, 0xEF123456, 0xEAFFFFFE, 0, RAM + 0x100)
SPIN = (0xE2822001, 0xEAFFFFFD)                       # add r2, r2, #1 ; b back


class Client:
    """The gdb side, by hand: sends packets, checks acks, reads replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.framer = Framer()
        self.events = []
        self.ack = True

    def _event(self):
        while not self.events:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("the stub closed the connection")
            self.events += self.framer.feed(data)
        return self.events.pop(0)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))
        if self.ack:
            assert self._event().kind == "ack"

    def reply(self) -> bytes:
        event = self._event()
        assert event.kind == "packet", event
        if self.ack:
            self.sock.sendall(b"+")
        return event.payload

    def ask(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.reply()

    def register(self, regnum: int) -> int:
        return int.from_bytes(unhex(self.ask(b"p%x" % regnum)), "little")


class Target:
    """A board running PROGRAM (or another) under the stub, -S style, in a thread as the boot would."""

    def __init__(self, code: tuple[int, ...]) -> None:
        self.machine = Machine(load_profile("virt"), 16 << 20)
        self.machine.phys.write(RAM, struct.pack(f"<{len(code)}I", *code))
        self.err = io.StringIO()
        self.stub = GdbStub("127.0.0.1", 0, wait=True, err=self.err)
        self.stub.listen()
        self.stub.attach(self.machine, SimpleNamespace(image=GuestImage("", RAM, (), {})))
        self.stop = None
        self.thread = threading.Thread(target=self._boot, daemon=True)
        self.thread.start()
        self.gdb = Client(self.stub.port)

    def _boot(self) -> None:
        self.stop = run_guest(self.machine, RAM, self.stub, 30)
        code = 0 if self.stop.kind == "exit" else 1
        self.stub.after_boot(SimpleNamespace(status="halted", exit_code=code, startup=None, message="ended"))

    def finish(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def target():
    t = Target(PROGRAM)
    yield t
    t.gdb.sock.close()


def test_handshake_then_no_ack_mode_and_the_reset_stop(target):
    gdb = target.gdb
    supported = gdb.ask(b"qSupported:multiprocess+;swbreak+;xmlRegisters=i386")
    assert b"qXfer:features:read+" in supported and b"QStartNoAckMode+" in supported
    assert gdb.ask(b"vMustReplyEmpty") == b""                   # unknown packets: the empty reply
    assert gdb.ask(b"QStartNoAckMode") == b"OK"
    gdb.ack = False
    assert gdb.ask(b"?") == b"T05thread:1;"                      # stopped before the first instruction
    assert gdb.ask(b"qfThreadInfo") == b"m1" and gdb.ask(b"qsThreadInfo") == b"l" and gdb.ask(b"qC") == b"QC1"
    assert gdb.register(15) == RAM
    xml = gdb.ask(b"qXfer:features:read:target.xml:0,ffb")
    assert xml.startswith(b"l") and b"arm-core.xml" in xml
    part = gdb.ask(b"qXfer:features:read:arm-neon.xml:0,40")
    assert part.startswith(b"m") and len(part) == 0x41             # more to come: gdb asks again
    gdb.send(b"k")


def test_a_bad_checksum_is_nacked_and_the_stub_goes_on(target):
    gdb = target.gdb
    gdb.sock.sendall(b"$g#00")
    assert gdb._event().kind == "nack"
    assert len(gdb.ask(b"g")) == 2 * 328


def test_registers_and_memory_read_and_write(target):
    gdb = target.gdb
    g = unhex(gdb.ask(b"g"))
    assert int.from_bytes(g[60:64], "little") == RAM
    assert gdb.ask(b"P1a=8877665544332211") == b"OK"           # d0, 64 bits
    assert gdb.register(0x1A) == 0x1122334455667788
    assert target.machine.uc.reg_read64(14) == 0x1122334455667788
    assert gdb.ask(b"m%x,8" % RAM) == struct.pack("<2I", *PROGRAM[:2]).hex().encode()
    assert gdb.ask(b"M%x,4:efbeadde" % (RAM + 0x200)) == b"OK"
    assert target.machine.phys.read_u32(RAM + 0x200) == 0xDEADBEEF
    binary = b"#$}*"
    assert gdb.ask(b"X%x,4:" % (RAM + 0x204) + escape(binary)) == b"OK"
    assert target.machine.phys.read(RAM + 0x204, 4) == binary
    assert gdb.ask(b"m20000000,4") == b"E14"                   # nothing there
    assert gdb.ask(b"Qqemu.PhyMemMode:1") == b"OK" and gdb.ask(b"qqemu.PhyMemMode") == b"1"
    assert gdb.ask(b"m%x,4" % (RAM + 0x200)) == b"efbeadde"
    gdb.send(b"k")


def test_breakpoint_step_watchpoint_and_the_exit(target):
    gdb = target.gdb
    assert gdb.ask(b"Z0,%x,4" % (RAM + 8)) == b"OK"
    assert gdb.ask(b"c") == b"T05thread:1;"
    assert gdb.register(15) == RAM + 8 and gdb.register(0) == 2
    assert gdb.ask(b"vCont;s:1") == b"T05thread:1;"            # one instruction: the ldr
    assert gdb.register(15) == RAM + 12 and gdb.register(1) == RAM + 0x100
    assert gdb.ask(b"z0,%x,4" % (RAM + 8)) == b"OK"
    assert gdb.ask(b"Z2,%x,4" % (RAM + 0x100)) == b"OK"
    assert gdb.ask(b"c") == b"T05thread:1;watch:%x;" % (RAM + 0x100)
    assert gdb.register(15) == RAM + 12                        # the store, which gdb then steps over
    assert gdb.ask(b"z2,%x,4" % (RAM + 0x100)) == b"OK"
    assert gdb.ask(b"c") == b"W00"                             # semihosting SYS_EXIT: the boot is over
    target.finish()
    assert target.stop.kind == "exit"


@pytest.mark.parametrize("wait_until_running", [False, True])
def test_ctrl_c_stops_a_spinning_guest_with_sigint(wait_until_running):
    # The 0x03 may come before the stub has even taken the `c` off its queue (then the run stops
    # at once) or while Unicorn runs (then Machine.request_stop stops it from the reader thread).
    t = Target(SPIN)
    gdb = t.gdb
    gdb.ask(b"QStartNoAckMode")
    gdb.ack = False
    gdb.send(b"c")
    if wait_until_running:
        while not t.stub._running:
            threading.Event().wait(0.01)
    gdb.sock.sendall(b"\x03")
    assert gdb.reply() == b"T02thread:1;"
    assert gdb.register(15) in (RAM, RAM + 4)
    gdb.send(b"c")                                      # and again: one Ctrl-C, one stop
    gdb.sock.sendall(b"\x03")
    assert gdb.reply() == b"T02thread:1;"
    gdb.send(b"k")
    t.finish()


def test_monitor_commands_print_through_o_packets(target):
    gdb = target.gdb
    gdb.send(b"qRcmd," + b"info registers".hex().encode())
    out = b""
    while (packet := gdb.reply()) != b"OK":
        assert packet.startswith(b"O")
        out += unhex(packet[1:])
    assert b"R15=40000000" in out and b"SCTLR=" in out
    gdb.send(b"qRcmd," + b"bogus".hex().encode())
    assert unhex(gdb.reply()[1:]) == b"unknown command 'bogus' (try help)\n" and gdb.reply() == b"OK"
    gdb.send(b"qRcmd," + b"continue".hex().encode())
    assert b"under gdb, use gdb's continue" in unhex(gdb.reply()[1:]) and gdb.reply() == b"OK"
    gdb.send(b"k")


def test_detach_removes_gdbs_breakpoints_and_the_guest_runs_to_its_end(target):
    gdb = target.gdb
    gdb.ask(b"Z0,%x,4" % (RAM + 8))
    assert gdb.ask(b"D") == b"OK"
    target.finish()
    assert target.stop.kind == "exit"


def test_kill_ends_the_boot_at_the_stop(target):
    target.gdb.ask(b"Z0,%x,4" % (RAM + 8))
    assert target.gdb.ask(b"c") == b"T05thread:1;"
    target.gdb.send(b"k")
    target.finish()
    assert target.stop.kind == "breakpoint" and "ended by gdb's kill" in target.err.getvalue()


@pytest.mark.parametrize("spec, needle", [
    ("localhost:http", "'localhost:http' is not [HOST:]PORT"),
    ("99999", "'99999' is not [HOST:]PORT"),
])
def test_bad_gdb_addresses_are_input_errors(capsys, spec, needle):
    from tools.cli import main

    code = main(["boot", "--gdb", spec])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip() == f"armboard: --gdb: {needle} (e.g. 1234 or localhost:1234)"


def test_a_port_in_use_is_an_input_error_before_the_guest_runs(capsys):
    from tools.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["boot", "--gdb", f"127.0.0.1:{port}"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == f"armboard: --gdb: cannot listen on 127.0.0.1:{port}: Address already in use (EADDRINUSE)"


def test_parse_address_forms():
    from tools.gdbstub import parse_address

    assert parse_address("1234") == ("localhost", 1234)
    assert parse_address(":1234") == ("localhost", 1234)
    assert parse_address("tcp::1234") == ("localhost", 1234)            # as QEMU's -gdb writes it
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)
