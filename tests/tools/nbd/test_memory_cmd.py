"""`armboard nbd memory`: nbdkit memory's parameters, their errors, and a foreground server run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_sim.errors import InputError
from tools.cli import main
from tools.nbd.client import NbdClient
from tools.nbd_cmd import parse_memory_params


@pytest.mark.parametrize("params, expect", [
    (["1G"], (1 << 30, "sparse", {})),
    (["size=64M", "allocator=zstd"], (64 << 20, "zstd", {})),
    (["allocator=zstd,level=9", "2s"], (1024, "zstd", {"level": 9})),
    (["100", "allocator=malloc,mlock=true"], (100, "malloc", {"mlock": "true"})),
    (["0x1000", "allocator=malloc,mlock"], (4096, "malloc", {"mlock": "1"})),      # nbdkit: a bare key is "1"
    ([str(2**63 - 1)], (2**63 - 1, "sparse", {})),
])
def test_parameters_as_nbdkit_reads_them(params, expect) -> None:
    assert parse_memory_params(params) == expect


@pytest.mark.parametrize("params, message", [
    ([], "a size is required"),
    (["allocator=zstd"], "a size is required"),
    (["1G", "2G"], "the size is given twice"),
    (["lots"], "could not parse size"),
    ([str(2**63)], "too large"),
    (["1G", "allocator=slab"], "unknown allocator 'slab'"),
    (["1G", "allocator=sparse,level=3"], "takes no parameter 'level'"),
    (["1G", "allocator=zstd,level=99"], "outside 1 to 22"),
    (["1G", "allocator=malloc,mlock=maybe"], "not a boolean"),
    (["1G", "colour=red"], "unknown parameter 'colour'"),
])
def test_bad_parameters_are_one_line_input_errors(params, message) -> None:
    with pytest.raises(InputError) as exc:
        parse_memory_params(params)
    assert message in str(exc.value)


def test_exit_status_2_and_no_traceback(capsys) -> None:
    assert main(["nbd", "memory", "1G", "allocator=slab"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("armboard: nbd memory allocator=slab: ") and "Traceback" not in err
    assert main(["nbd", "memory", "1G", "--port", "0.0.0.0:0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_serves_in_the_foreground_until_sigterm(tmp_path: Path) -> None:
    sock = tmp_path / "m.sock"
    script = Path(sys.executable).parent / "armboard"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]
    proc = subprocess.Popen([*argv, "nbd", "memory", "64M", "allocator=zstd", "--unix", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"nbd+unix:///?socket={sock}"   # printed once it listens
        c = NbdClient.connect(str(sock))
        c.go("any name at all")                                 # one disk under every name, as nbdkit
        assert c.size == 64 << 20
        assert c.write(4096, b"zstd page").error == 0
        assert c.read(4096, 9).data == b"zstd page"
        c.disconnect()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and not sock.exists()
