"""The board as a gdb remote target: `armboard boot --gdb [HOST:]PORT [-S]` and the monitor's `gdb`.

The stub is the boot's debugger (kernel_sim.boot.Debugger): the boot calls `stopped` at each guest
stop and `on_stage` before each Python kernel step; the stub answers gdb's packets there until gdb
resumes (c, s, vCont), detaches (D: breakpoints go, the boot runs on) or kills (k: the boot ends).
It drives the board only through its primitives (registers, add_breakpoint, add_watchpoint,
run(steps=...), request_stop) and reads memory through the MMU simulator (kernel_sim/vm/mmu.py):
virtual through the guest's current translation, or physical after `maint packet
Qqemu.PhyMemMode:1`, as QEMU's stub does. `monitor CMD` runs any armboard monitor command.

Why not udbserver (the PyPI gdb server for Unicorn): it takes the official binding's Uc and runs
its own stepping loop with a hook on every instruction, while this board uses its lean binding,
delivers exceptions and hypercalls in its own run loop, and must cost nothing until a breakpoint
exists; nor does udbserver offer the VFP description, physical memory or monitor commands.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading

import tools.gdbstub.registers as registers
from kernel_sim.boot import Debugger, EndBoot, Resume, physical_alias
from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError
from tools.gdbstub.connection import Connection
from tools.gdbstub.packets import console_output, escape, hex_bytes, unescape, unhex

THREAD = b"thread:1;"
WATCH_KINDS = {2: ("write", "watch"), 3: ("read", "rwatch"), 4: ("access", "awatch")}
E_FAULT, E_INVALID = b"E14", b"E16"            # EFAULT, EINVAL: what gdbserver answers
SUPPORTED = b"PacketSize=4000;qXfer:features:read+;QStartNoAckMode+;vContSupported+"


def parse_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` (QEMU's `tcp::PORT` too); HOST defaults to localhost, PORT 0 picks a free one."""
    spec = text[4:] if text.startswith("tcp:") else text
    host, sep, port = spec.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise InputError(f"'{text}' is not [HOST:]PORT (e.g. 1234 or localhost:1234)", "--gdb")
    return (host if sep and host else "localhost"), int(port)


class GdbStub(Debugger):
    """`wait`: the guest stays stopped until gdb connects (-S, or the monitor's `gdb`); without it
    the guest runs and a connecting gdb stops it, as QEMU's -gdb does."""

    def __init__(self, host: str, port: int, *, wait: bool, err=None) -> None:
        self.host, self.port, self.wait = host, port, wait
        self.err = err if err is not None else sys.stderr
        self.waiting = contextlib.nullcontext    # what its waits run in (--nbd: the server's Giant released)
        self.server: socket.socket | None = None
        self.conn: Connection | None = None
        self.machine = None
        self.image = None
        self.physical = False                  # Qqemu.PhyMemMode
        self.code_breakpoints: dict[tuple[int, int], list[int]] = {}   # (type, addr) -> board ids
        self.watchpoints: dict[tuple[int, int, int], int] = {}         # (type, addr, len) -> board id
        self._watch_names: dict[int, tuple[str, int]] = {}             # board id -> (stop key, gdb addr)
        self.monitor = None
        self.killed = False
        self._gdb_waits = False                # gdb resumed the guest and waits for a stop reply
        self._last_reply = b"S05"
        self._exit_reply = b"W00"
        self._running = False
        self._stopped = threading.Event()
        self._connected = threading.Event()
        self._ctrl_c = False
        self._stop_wanted = False              # a stop asked from a background thread, not yet heard
        self._interrupt_next = False           # a Ctrl-C read before the main thread resumed the guest
        self._lock = threading.Lock()          # _running and the Ctrl-C flags, between the two threads
        self._stages: list[str] = []           # the Python kernel's steps begun so far
        self._startup = None                   # the Python kernel's state, for monitor commands
        self._ending = ""                      # how the boot ended, once it has

    # ------------------------------------------------------------------ connection
    def listen(self) -> None:
        try:
            server = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((self.host, self.port))
            server.listen(1)
        except OSError as exc:
            raise InputError(f"cannot listen on {self.host}:{self.port}: {describe_host(exc)}", "--gdb") from None
        self.server = server
        self.port = server.getsockname()[1]
        self.err.write(f"armboard: gdb: listening on {self.host}:{self.port}\n")
        self.err.flush()

    def _accept_loop(self) -> None:
        """Take gdb's connections (one at a time; a new one after the last left). A gdb that connects
        while the guest runs stops it, as QEMU's stub does."""
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:                    # the server closed: the boot is over
                return
            if self.conn is not None and not self.conn.closed:
                sock.close()                   # one debugger at a time
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._gdb_waits = False
            self.conn = Connection(sock, self._on_interrupt)
            self._connected.set()
            if self._running:
                self._interrupt()

    def _on_interrupt(self) -> None:
        """gdb's Ctrl-C (reader thread). It may arrive before the main thread has taken the `c` that
        preceded it off the queue: then the run it starts stops at once."""
        with self._lock:
            self._ctrl_c = True
            if not self._running:
                self._interrupt_next = True
                return
        self._interrupt()

    def _interrupt(self) -> None:
        """Stop the guest from a background thread. A request can fall between the board's check and
        Unicorn's start of a run, so it is repeated until the main thread reports the stop."""
        self._stop_wanted = True
        while True:
            self.machine.request_stop()
            if self._stopped.wait(0.1) or not self._running:
                return

    # ------------------------------------------------------------------ Debugger
    def attach(self, machine, prep, *, reset: bool = True) -> None:
        self.machine, self.image = machine, prep.image
        if self.server is None:
            self.listen()
        if self.wait and reset:
            machine.request_stop()             # -S: stop before the first instruction
        self._running = not self.wait          # with wait, the board is stopped until gdb resumes it
        threading.Thread(target=self._accept_loop, name="gdb-accept", daemon=True).start()

    def stopped(self, stop):
        self._pause()
        if self.conn is None or self.conn.closed:
            self._wait_for_gdb()               # -S, or a stop point with no gdb (yet, or any more)
        self._report(self._stop_reply(stop))
        return self._serve(stage=None)

    def on_stage(self, name: str, run) -> None:
        self._stages.append(name)
        self._startup = run.s
        if self.monitor is None and not self._stop_wanted:
            return                              # no `monitor break STAGE` and no Ctrl-C: nothing to do here
        stepping = self._monitor().stepping
        stepping.stages_begun = self._stages[:-1]   # stage_reached notes this one
        line = stepping.stage_reached(name)
        if line is None and not self._stop_wanted:
            return
        if self.conn is None or self.conn.closed:
            return
        self._pause()
        self.monitor.bind_startup(run.s)
        if line is None:
            line = f"Stopped before the Python kernel's {name} step"
            stepping.paused, stepping.stage = "stage", name
        for packet in console_output(line + "\n"):
            self.conn.send(packet)
        self._report((b"T02" if self._ctrl_c else b"T05") + THREAD)
        resume = self._serve(stage=name)
        stepping.paused = "running"
        if resume is None:
            raise EndBoot(name, run.s)

    def after_boot(self, result) -> None:
        """The boot is over: gdb hears the exit status (W) when it asks, then the connection closes."""
        self._pause()
        self._running = False
        self._startup, self._ending = result.startup, result.status
        if self.monitor is not None:
            self.monitor.stepping.ended(result.status)
            self.monitor.bind_startup(result.startup)
        if self.wait and self.conn is None:    # started by the monitor after the end: gdb may look around
            self._wait_for_gdb()
        if self.conn is not None and not self.conn.closed and not self.killed:
            self._exit_reply = b"W%02x" % (result.exit_code & 0xFF)
            if self._gdb_waits:
                self.conn.send(self._exit_reply)
            else:                              # gdb looks at the halted board until it resumes it
                self._serve(stage=None, ended=True)
            self.conn.close()
        if self.server is not None:
            self.server.close()
        if self.killed:                         # QEMU says "Terminated via GDBstub"
            self.err.write(f"armboard: gdb: the boot was ended by gdb's kill. {result.message}\n")
            self.err.flush()

    # ------------------------------------------------------------------ stops and replies
    def _pause(self) -> None:
        with self._lock:
            self._running = False
            self._stop_wanted = False
            self._stopped.set()

    def _resume(self, steps: int | None) -> Resume:
        with self._lock:
            self._stopped.clear()
            self._running = True
            self._ctrl_c, self._interrupt_next = self._interrupt_next, False
        if self._ctrl_c:
            self.machine.request_stop()
        return Resume(steps)

    def _wait_for_gdb(self) -> None:
        self.err.write(f"armboard: gdb: the board is stopped; waiting for gdb on {self.host}:{self.port}\n")
        self.err.flush()
        self._connected.clear()
        while self.conn is None or self.conn.closed:
            with self.waiting():
                self._connected.wait()
            self._connected.clear()

    def _stop_reply(self, stop) -> bytes:
        if stop.kind == "interrupt" and self._ctrl_c:
            return b"T02" + THREAD
        if stop.kind == "watchpoint" and stop.value is not None:
            key, addr = self._watch_names.get(stop.value.watchpoint, ("watch", stop.value.address))
            return b"T05" + THREAD + f"{key}:{addr:x};".encode()
        return b"T05" + THREAD

    def _report(self, reply: bytes) -> None:
        """The stop reply: sent now if gdb is waiting for one, else kept for its `?`."""
        self._last_reply = reply
        if self._gdb_waits:
            self.conn.send(reply)
            self._gdb_waits = False

    def _serve(self, *, stage: str | None, ended: bool = False):
        """Answer gdb until it resumes the guest (a Resume), or kills the boot (None)."""
        while True:
            with self.waiting():
                event = self.conn.next_event()
            if event.kind == "closed":
                return self._gone(ended)
            if event.kind == "nack":
                self.conn.resend()
                continue
            if event.kind != "packet":
                continue
            payload = event.payload
            head = payload[:1]
            if ended and (head in b"cCsS" or payload.startswith(b"vCont;")):
                self.conn.send(self._exit_reply)           # nothing runs any more: the exit status
                return None
            if head in b"cCsS" or payload.startswith(b"vCont;"):
                steps = self._resume_packet(payload)
                if steps == "bad":
                    self.conn.send(E_INVALID)
                    continue
                if stage is not None and steps is not None:
                    for packet in console_output(f"armboard: the boot is paused before the Python kernel's "
                                                 f"{stage} step, which runs no guest instructions; continue "
                                                 "instead\n"):
                        self.conn.send(packet)
                    self.conn.send(self._last_reply)
                    continue
                self._gdb_waits = True
                return self._resume(steps)
            if head == b"D":
                self.conn.send(b"OK")
                self._forget_all()
                self.conn.close()
                return None if ended else self._resume(None)
            if head == b"k" or payload.startswith(b"vKill"):
                if payload.startswith(b"vKill"):
                    self.conn.send(b"OK")
                self.killed = True
                self.conn.close()
                return None
            self.conn.send(self._answer(payload))

    def _gone(self, ended: bool):
        """gdb closed the connection: its breakpoints go and the boot runs on, as QEMU does."""
        self._forget_all()
        return None if ended else self._resume(None)

    @staticmethod
    def _resume_packet(payload: bytes) -> int | None | str:
        """None to continue, 1 to single-step, "bad" if malformed (signals are ignored: no OS to deliver them)."""
        if payload.startswith(b"vCont;"):
            actions = [a.split(b":")[0] for a in payload[6:].split(b";") if a]
            if not actions:
                return "bad"
            first = actions[0][:1]
            if first in (b"s", b"S"):
                return 1
            if first in (b"c", b"C"):
                return None
            return "bad"
        return 1 if payload[:1] in (b"s", b"S") else None

    # ------------------------------------------------------------------ packets
    def _answer(self, p: bytes) -> bytes:
        try:
            return self._dispatch(p)
        except (ValueError, IndexError):
            return E_INVALID

    def _dispatch(self, p: bytes) -> bytes:
        uc = self.machine.uc
        if p.startswith(b"qSupported"):
            return SUPPORTED
        if p == b"QStartNoAckMode":
            self.conn.ack_mode = False
            return b"OK"
        if p == b"?":
            return self._last_reply
        if p[:1] == b"H" or p[:1] == b"T":
            return b"OK"
        if p == b"qC":
            return b"QC1"
        if p == b"qfThreadInfo":
            return b"m1"
        if p == b"qsThreadInfo":
            return b"l"
        if p.startswith(b"qAttached"):
            return b"1"
        if p.startswith(b"qXfer:features:read:"):
            return self._features(p[len(b"qXfer:features:read:"):])
        if p == b"g":
            return hex_bytes(registers.read_all(uc))
        if p[:1] == b"G":
            registers.write_all(uc, unhex(p[1:]))
            return b"OK"
        if p[:1] == b"p":
            reg = registers.BY_REGNUM.get(int(p[1:], 16))
            return hex_bytes(registers.read(uc, reg)) if reg else E_INVALID
        if p[:1] == b"P":
            num, value = p[1:].split(b"=")
            reg = registers.BY_REGNUM.get(int(num, 16))
            if reg is None:
                return E_INVALID
            registers.write(uc, reg, unhex(value).ljust(reg.size, b"\0")[:reg.size])
            return b"OK"
        if p[:1] == b"m":
            addr, length = (int(x, 16) for x in p[1:].split(b","))
            data = self._read_memory(addr, length)
            return hex_bytes(data) if data else E_FAULT
        if p[:1] == b"M":
            where, value = p[1:].split(b":", 1)
            addr, length = (int(x, 16) for x in where.split(b","))
            data = unhex(value)
            return self._write_memory(addr, data) if len(data) == length else E_INVALID
        if p[:1] == b"X":
            where, value = p[1:].split(b":", 1)
            addr, length = (int(x, 16) for x in where.split(b","))
            data = unescape(value)
            return self._write_memory(addr, data) if len(data) == length else E_INVALID
        if p[:1] in (b"Z", b"z"):
            return self._breakpoint(p)
        if p == b"vCont?":
            return b"vCont;c;C;s;S"
        if p.startswith(b"qRcmd,"):
            return self._monitor_command(unhex(p[6:]).decode("utf-8", "replace"))
        if p.startswith(b"Qqemu.PhyMemMode:"):
            self.physical = p.endswith(b"1")
            return b"OK"
        if p == b"qqemu.PhyMemMode":
            return b"1" if self.physical else b"0"
        return b""                               # not supported: gdb falls back

    def _features(self, rest: bytes) -> bytes:
        annex, _, span = rest.partition(b":")
        data = registers.target_files().get(annex.decode())
        if data is None:
            return b"E00"
        offset, length = (int(x, 16) for x in span.split(b","))
        chunk = data[offset:offset + length]
        return (b"l" if offset + length >= len(data) else b"m") + escape(chunk)

    # ------------------------------------------------------------------ memory
    def _read_memory(self, addr: int, length: int) -> bytes:
        """As much of the range as can be read (gdb takes a short answer), through the current
        translation or, in physical mode, from RAM and read-array flash."""
        out = bytearray()
        while len(out) < length:
            cur = addr + len(out)
            n = min(length - len(out), 0x1000 - (cur & 0xFFF))
            try:
                pa = cur if self.physical else self._translate(cur)
                out += self._read_physical(pa, n)
            except (LookupError, ValueError):
                break
        return bytes(out)

    def _translate(self, va: int) -> int:
        from kernel_sim.vm.cpu_mmu import mmu_for
        from kernel_sim.vm.mmu import MMUFault

        try:
            return mmu_for(self.machine).translate(va, "read").pa   # a debugger reads what the kernel can
        except MMUFault as exc:
            raise LookupError(str(exc)) from None

    def _read_physical(self, pa: int, n: int) -> bytes:
        from board.memory import PhysicalAbort

        bank = self.machine.flash_at(pa)
        if bank is not None and bank.in_read_array and pa + n <= bank.base + bank.size:
            return bytes(bank.image.host[pa - bank.base:pa - bank.base + n])
        try:
            return self.machine.phys.read(pa, n)
        except PhysicalAbort:
            raise LookupError(f"nothing readable at physical 0x{pa:08x}") from None

    def _write_memory(self, addr: int, data: bytes) -> bytes:
        """Writes go to RAM whatever the page's permissions say (as a debugger's do); the board then
        forgets translated code and the TLB, since the bytes may be code or page tables."""
        from board.memory import PhysicalAbort

        done = 0
        try:
            while done < len(data):
                cur = addr + done
                n = min(len(data) - done, 0x1000 - (cur & 0xFFF))
                pa = cur if self.physical else self._translate(cur)
                self.machine.phys.write(pa, data[done:done + n])
                done += n
        except (LookupError, PhysicalAbort):
            return E_FAULT
        finally:
            if done:
                self.machine.forget_translations()
        return b"OK"

    # ------------------------------------------------------------------ breakpoints and watchpoints
    def _breakpoint(self, p: bytes) -> bytes:
        insert = p[:1] == b"Z"
        kind_text, addr_text, size_text = p[1:].split(b",")[:3]
        kind, addr, size = int(kind_text), int(addr_text, 16), int(size_text.split(b";")[0], 16)
        if kind in (0, 1):
            key = (kind, addr)
            if insert:
                if key not in self.code_breakpoints:
                    # A kernel VA also stops at its physical alias: locore runs there before the MMU is on.
                    pa = physical_alias(self.image, addr)
                    self.code_breakpoints[key] = [self.machine.add_breakpoint(a)
                                                  for a in ((addr,) if pa in (None, addr) else (addr, pa))]
            else:
                for bp_id in self.code_breakpoints.pop(key, []):
                    self.machine.remove_breakpoint(bp_id)
            return b"OK"
        if kind in WATCH_KINDS:
            access, name = WATCH_KINDS[kind]
            key = (kind, addr, size)
            if insert:
                if key not in self.watchpoints:
                    try:
                        pa = addr if self.physical else self._translate(addr)
                    except LookupError:
                        return E_FAULT
                    wp_id = self.machine.add_watchpoint(pa, size, access)
                    self.watchpoints[key] = wp_id
                    self._watch_names[wp_id] = (name, addr)
            elif key in self.watchpoints:
                wp_id = self.watchpoints.pop(key)
                self._watch_names.pop(wp_id, None)
                self.machine.remove_watchpoint(wp_id)
            return b"OK"
        return b""

    def _forget_all(self) -> None:
        for ids in self.code_breakpoints.values():
            for bp_id in ids:
                self.machine.remove_breakpoint(bp_id)
        for wp_id in self.watchpoints.values():
            self.machine.remove_watchpoint(wp_id)
        self.code_breakpoints.clear()
        self.watchpoints.clear()
        self._watch_names.clear()
        if self.monitor is not None:
            self.monitor.stepping.delete(None)

    # ------------------------------------------------------------------ monitor
    def _monitor(self):
        if self.monitor is None:
            from tools.monitor import Monitor
            from tools.monitor_debug import Stepping

            self.monitor = Monitor(self.machine, out=io.StringIO())
            self.monitor.add_mem_commands(None)
            stepping = Stepping(self.machine, self.image, gdb=True)
            stepping.stages_begun = list(self._stages)
            if self._ending:
                stepping.ended(self._ending)
            self.monitor.add_debug_commands(stepping, self.image)
            self.monitor.bind_startup(self._startup)
        return self.monitor

    def _monitor_command(self, line: str) -> bytes:
        """`monitor CMD`: the armboard monitor's answer, printed on gdb's console through O packets."""
        from tools.monitor_errors import MonitorError

        monitor = self._monitor()
        out = monitor.out = io.StringIO()
        try:
            monitor.run(line)
        except MonitorError as exc:                 # refused or malformed: either way, a line to read
            out.write(f"{exc}\n")
        if monitor.done:
            monitor.done = False
            out.write("quit: gdb ends the boot with kill, or leaves it running with detach\n")
        for packet in console_output(out.getvalue()):
            self.conn.send(packet)
        return b"OK"
