"""`armboard boot --nbd` and the monitor's `nbd` command, end to end with the project's own client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tools.cli import main
from tools.nbd import protocol as p
from tools.nbd.client import NbdClient

ROOT = Path(__file__).resolve().parents[3]
KERNEL = 0x40000


def armboard() -> list[str]:
    script = Path(sys.executable).parent / "armboard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]


@pytest.fixture
def flash(tmp_path: Path) -> tuple[Path, Path]:
    image = tmp_path / "flash.img"
    assert main(["flash", "build", str(ROOT / "images/geom_map-example/layout.toml"), "-o", str(image)]) == 0
    return image, tmp_path / "flash.img.hints"


def embedded(flash: tuple[Path, Path], *extra: str) -> list[str]:
    return ["boot", "--board", "embedded", "--kernconf", str(ROOT / "images/EMBEDDED"), "--flash",
            f"flash0={flash[0]}", "--hints", str(flash[1]), *extra]


def wait_for_socket(path: Path, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"armboard exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on {path}")
        time.sleep(0.02)


@pytest.mark.parametrize("address, message", [
    ("0.0.0.0:0", "is not a loopback address"),
    ("localhost:99999", "outside 0 to 65535"),
    ("unix:", "needs a socket path"),
    ("x:y", "is not a port number"),
])
def test_bad_nbd_addresses_are_input_errors_before_anything_boots(tmp_path, capsys, address, message) -> None:
    console = tmp_path / "console.txt"
    assert main(["boot", "--console", str(console), "--nbd", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"armboard: --nbd {address}: ") and message in err and "Traceback" not in err
    assert console.read_bytes() == b""                       # nothing booted


def test_a_path_that_is_not_a_socket_is_left_alone(tmp_path, capsys) -> None:
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    assert main(["boot", "--nbd", f"unix:{mine}"]) == 2
    assert "exists and is not a socket" in capsys.readouterr().err and mine.read_text() == "mine"


def test_monitor_start_wait_then_the_next_command_sees_the_write(tmp_path, flash, capsys) -> None:
    """-x "nbd start" / "nbd wait": a client writes map/kernel while the monitor waits; the following -x
    command reads the new bytes through the kernel; the image file holds them."""
    sock = tmp_path / "b.sock"
    new = os.urandom(4096)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            wait_for_socket(sock)
            c = NbdClient.connect(str(sock))
            c.go("map/kernel")
            assert c.write(0, new).error == 0
            assert c.call(p.NBD_CMD_FLUSH).error == 0
            c.disconnect()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    code = main(embedded(flash, "--console", str(tmp_path / "console.txt"), "-x", f"nbd start unix:{sock}",
                         "-x", "nbd wait", "-x", "provider read map/kernel 0 16", "-x", "nbd list", "-x", "quit"))
    t.join(30)
    out = capsys.readouterr().out
    assert not errors and code == 0
    assert f"nbd: serving on nbd+unix:///?socket={sock} (exports: flash0, mem, md0" in out
    assert "00000000: " + new[:16].hex(" ") in out
    assert "export map/kernel" in out
    assert flash[0].read_bytes()[KERNEL:KERNEL + 4096] == new
    assert not sock.exists()                                  # the server stopped with the boot


def test_monitor_nbd_usage_and_refusals(tmp_path, capsys) -> None:
    console = str(tmp_path / "console.txt")
    assert main(["boot", "--console", console, "-x", "nbd stop", "-x", "nbd list"]) == 0
    out = capsys.readouterr().out
    assert "nbd stop: not serving" in out and "nbd: not serving" in out
    assert main(["boot", "--console", console, "-x", "nbd frobnicate"]) == 2
    assert "usage: nbd start" in capsys.readouterr().err
    assert main(["boot", "--console", console, "-x", "nbd start 0.0.0.0:1"]) == 0
    assert "is not a loopback address" in capsys.readouterr().out        # refused, the boot's status


def test_boot_serves_until_sigterm_and_the_prompt_releases_giant(tmp_path, flash) -> None:
    """`armboard boot --nbd ... --monitor` with the prompt waiting on a pipe: clients are served during
    the wait (the kernel's objects included), the next monitor command sees their writes, quit ends it."""
    sock = tmp_path / "b.sock"
    proc = subprocess.Popen([*armboard(), *embedded(flash, "--console", str(tmp_path / "c.txt"), "--nbd",
                                                   f"unix:{sock}", "--monitor")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(sock, proc)
        c = NbdClient.connect(str(sock))
        c.go("map/kernel")                     # the kernel has started: its providers are exports
        assert c.write(16, b"from the client!").error == 0
        c.disconnect()
        out, err = proc.communicate("provider read map/kernel 16 16\nquit\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "00000010: " + b"from the client!".hex(" ") in out
    assert "Traceback" not in err and not sock.exists()
    # Without --monitor the board serves after the boot until SIGTERM, then exits with the boot's status.
    proc = subprocess.Popen([*armboard(), *embedded(flash, "--console", str(tmp_path / "c.txt"), "--nbd",
                                                   f"unix:{sock}")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(sock, proc)
        c = NbdClient.connect(str(sock))
        c.go("flash0")
        assert c.read(KERNEL + 16, 16).data == b"from the client!"
        c.disconnect()
        deadline = time.monotonic() + 60
        while "until interrupted" not in (line := proc.stderr.readline()):
            assert time.monotonic() < deadline and line, line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and not sock.exists()


def test_a_boot_without_nbd_imports_nothing_of_the_server(tmp_path) -> None:
    """The parser knows --nbd and the monitor knows `nbd`, but neither loads the server until asked."""
    code = ("import sys\nfrom tools.cli import main\n"
            f"code = main(['boot', '--console', {str(tmp_path / 'c.txt')!r}, '-x', 'help'])\n"
            "print(code, sorted(m for m in sys.modules if m.startswith('tools.nbd') and m != 'tools.nbd_cmd'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
