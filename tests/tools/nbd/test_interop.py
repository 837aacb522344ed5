"""The real NBD clients against a running board: qemu-img, nbdcopy, nbdinfo and python3-libnbd.

A firmware tester's day: look at map/kernel with qemu-img info, write a new kernel partition with
qemu-img convert, read it back with nbdcopy, see the guest read the same bytes (the next monitor
command, and the next boot), be refused on the write-protected bootloader, map a sparse md's holes
with nbdinfo --map and qemu-img map, and copy with nbdcopy's four connections.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.cli import main

ROOT = Path(__file__).resolve().parents[3]
KERNEL_SIZE = 1114112                         # map/kernel in geom_map(4)'s example
DEBIAN_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.interop


def tool(name: str):
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"needs {name} (Debian package "
                              f"{ {'qemu-img': 'qemu-utils'}.get(name, 'libnbd-bin') })")


def armboard() -> list[str]:
    script = Path(sys.executable).parent / "armboard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]


def uri(sock: Path, export: str) -> str:
    return f"nbd+unix:///{export}?socket={sock}"


class Running:
    """`armboard boot ... --nbd unix:SOCK [more]` in a child process, until the test ends it."""

    def __init__(self, tmp_path: Path, args: list[str], *, monitor: bool = False) -> None:
        self.sock = tmp_path / "board.sock"
        self.proc = subprocess.Popen([*armboard(), *args, "--console", str(tmp_path / "console.txt"),
                                      "--nbd", f"unix:{self.sock}", *(["--monitor"] if monitor else [])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"armboard exited {self.proc.returncode}: {self.proc.stderr.read()}")
            if self.sock.exists() and (monitor or self._serving()):
                return
            assert time.monotonic() < deadline, "the board did not start serving"
            time.sleep(0.05)

    def _serving(self) -> bool:
        # Without --monitor the kernel's exports exist once the boot is over (the serve wait).
        line = self.proc.stderr.readline()
        return "until interrupted" in line

    def finish(self, monitor_input: str | None = None) -> tuple[str, str]:
        if monitor_input is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(monitor_input, timeout=120)
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err
        return out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def flash(tmp_path: Path) -> tuple[Path, Path]:
    image = tmp_path / "flash.img"
    assert main(["flash", "build", str(ROOT / "images/geom_map-example/layout.toml"), "-o", str(image)]) == 0
    return image, tmp_path / "flash.img.hints"


def embedded(flash: tuple[Path, Path]) -> list[str]:
    return ["boot", "--board", "embedded", "--kernconf", str(ROOT / "images/EMBEDDED"), "--flash",
            f"flash0={flash[0]}", "--hints", str(flash[1])]


def run(*argv: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc


@tool("qemu-img")
@tool("nbdcopy")
def test_a_new_kernel_partition_through_qemu_img_and_nbdcopy(tmp_path, flash) -> None:
    new = tmp_path / "kernel.new"
    new.write_bytes(os.urandom(KERNEL_SIZE))
    board = Running(tmp_path, embedded(flash), monitor=True)
    try:
        info = run("qemu-img", "info", "--output=json", uri(board.sock, "map/kernel"))
        assert json.loads(info.stdout)["virtual-size"] == KERNEL_SIZE
        run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(new), uri(board.sock, "map/kernel"))
        back = tmp_path / "kernel.back"
        run("nbdcopy", uri(board.sock, "map/kernel"), str(back))
        assert back.read_bytes() == new.read_bytes()
        again = tmp_path / "kernel.qemu"
        run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri(board.sock, "map/kernel"), str(again))
        assert again.read_bytes() == new.read_bytes()
        # The write-protected bootloader: nbdcopy and qemu-img refuse a read-only export ...
        refused = run("nbdcopy", str(new), uri(board.sock, "map/bootloader"), ok=False)
        assert refused.returncode != 0 and "read-only" in refused.stderr
        refused = run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(new),
                      uri(board.sock, "map/bootloader"), ok=False)
        assert refused.returncode != 0
        # ... and the guest reads the new kernel through GEOM and the cfi driver, at the next command.
        guest = tmp_path / "kernel.guest"
        out, _ = board.finish(f"provider read map/kernel 0 {KERNEL_SIZE} {guest}\nquit\n")
    finally:
        board.kill()
    assert guest.read_bytes() == new.read_bytes()
    assert flash[0].read_bytes()[0x40000:0x40000 + KERNEL_SIZE] == new.read_bytes()
    # And on the next boot, from the image file.
    nxt = tmp_path / "kernel.next"
    assert main([*embedded(flash), "--console", str(tmp_path / "c2.txt"),
                 "-x", f"provider read map/kernel 0 {KERNEL_SIZE} {nxt}"]) == 0
    assert nxt.read_bytes() == new.read_bytes()


@pytest.mark.skipif(not Path(DEBIAN_PYTHON).exists() or subprocess.run(
    [DEBIAN_PYTHON, "-c", "import nbd"], capture_output=True).returncode != 0, reason="needs python3-libnbd")
def test_a_write_to_the_bootloader_is_eperm_for_libnbd(tmp_path, flash) -> None:
    board = Running(tmp_path, embedded(flash))
    script = f"""
import nbd
h = nbd.NBD()
h.connect_uri({uri(board.sock, "map/bootloader")!r})
assert h.is_read_only()
for strict in (nbd.STRICT_MASK, 0):        # refused by libnbd itself, then by the server
    h.set_strict_mode(strict)
    try:
        h.pwrite(b"evil", 0)
    except nbd.Error as exc:
        print(exc.errno)
"""
    try:
        out = run(DEBIAN_PYTHON, "-c", script).stdout.split()
    finally:
        board.finish()
        board.kill()
    assert out == ["EPERM", "EPERM"]
    assert flash[0].read_bytes()[:24] == b"armboard fake bootloader"


@tool("nbdinfo")
@tool("qemu-img")
def test_nbdinfo_map_shows_the_holes_of_a_sparse_md(tmp_path) -> None:
    chunk = tmp_path / "chunk.bin"
    chunk.write_bytes(b"d" * 4096)
    board = Running(tmp_path, ["boot", "-x", "mdconfig -a -t malloc -s 8m -u 4",
                               "-x", f"provider write md4 1048576 {chunk}"])
    try:
        mapped = run("nbdinfo", "--map", uri(board.sock, "md4")).stdout.split("\n")
        qmap = json.loads(run("qemu-img", "map", "--output=json", uri(board.sock, "md4")).stdout)
        # --no-content: the content probe runs file(1), and nbdinfo 1.14 prints garbage where it is missing
        info = json.loads(run("nbdinfo", "--json", "--no-content", uri(board.sock, "md4")).stdout)
    finally:
        board.finish()
        board.kill()
    rows = [line.split() for line in mapped if line.strip()]
    assert rows == [["0", "1048576", "3", "hole,zero"], ["1048576", "4096", "0", "data"],
                    ["1052672", str(8 * 1048576 - 1052672), "3", "hole,zero"]]
    assert [(e["start"], e["length"], e["data"], e["zero"]) for e in qmap] == [
        (0, 1048576, False, True), (1048576, 4096, True, False), (1052672, 8 * 1048576 - 1052672, False, True)]
    export = info["exports"][0]
    assert export["can_multi_conn"] and export["block_size_minimum"] == 512


@tool("nbdcopy")
def test_nbdcopy_with_four_connections_and_the_mem_export(tmp_path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(4 << 20) + bytes(4 << 20))
    ram = tmp_path / "ram.bin"
    board = Running(tmp_path, ["boot", "-x", "mdconfig -a -t malloc -s 8m -u 3",
                               "-x", f"mem read 0x40000000 65536 {ram}"])
    try:
        run("nbdcopy", "--connections=4", str(data), uri(board.sock, "md3"))
        back = tmp_path / "back.bin"
        run("nbdcopy", "--connections=4", uri(board.sock, "md3"), str(back))
        mem = tmp_path / "mem.bin"
        run("nbdcopy", uri(board.sock, "mem"), str(mem))
        written = run("nbdcopy", str(data), uri(board.sock, "mem"), ok=False)
    finally:
        board.finish()
        board.kill()
    assert back.read_bytes() == data.read_bytes()
    from board.profile import load_profile

    assert mem.stat().st_size == load_profile("virt").ram_default   # all of RAM, offset 0 at its base
    assert mem.read_bytes()[:65536] == ram.read_bytes()        # the same bytes /dev/mem gives the monitor
    assert written.returncode != 0 and "read-only" in written.stderr
