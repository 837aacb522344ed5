"""Guest ARM code reading the virt flash's CFI query table gets the values QEMU gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from board.machine import Machine
from board.profile import load_profile
from kernel_sim.guest.qemu import qemu_binary, qemu_virt_command
from kernel_sim.loader.kernel_elf import read_kernel_elf
from kernel_sim.loader.load import load_kernel

HERE = Path(__file__).resolve().parent
QEMU = qemu_binary()


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cfi") / "cfi_query.elf"
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "arm-freestanding-eabi", "-mcpu=cortex_a15",
                    "-marm", "-nostdlib", "-ffreestanding", "-Wl,-T," + str(HERE / "guest" / "probe.ld"),
                    "-Wl,--build-id=none", str(HERE / "guest" / "cfi_query.S"), "-o", str(out)],
                   check=True, capture_output=True)
    return out


def on_armboard(elf: Path) -> str:
    image = read_kernel_elf(elf)
    machine = Machine(load_profile("virt"), 64 << 20)
    load_kernel(machine.phys, image)
    stop = machine.run(image.entry, timeout=10)
    assert stop.kind == "exit" and stop.code == 0, stop
    return machine.console.text


def test_query_table_ids_and_status_as_qemu_documents(probe):
    words = [int(line, 16) for line in on_armboard(probe).split()]
    query = words[:0x40]
    # ../shared/reference/unicorn.md: entry i in both 16-bit halves of the 32-bit word at 4*i
    assert all(w >> 16 == w & 0xFFFF for w in query)
    entries = [w & 0xFF for w in query]
    assert bytes(entries[0x10:0x13]) == b"QRY"
    assert entries[0x13:0x15] == [0x01, 0x00] and entries[0x27] == 0x19 and entries[0x2A] == 0x0B
    assert entries[0x2C] == 0x01 and entries[0x2D:0x31] == [0xFF, 0x00, 0x00, 0x02]
    assert bytes(entries[0x31:0x34]) == b"PRI"
    assert words[0x40:0x42] == [0x00890089, 0x00180018]
    assert words[0x42] == 0x00800080  # status: SR.7 ready in both chips (QEMU 7.2 measured)
    assert words[0x43] == 0          # read-array mode again: a bank with no image reads 0


@pytest.mark.interop
@pytest.mark.skipif(QEMU is None, reason="qemu-system-arm is not installed (.ci/run installs it)")
def test_same_output_on_qemu(probe):
    proc = subprocess.run(qemu_virt_command(probe, mem_mb=64), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().replace("\r\n", "\n") == on_armboard(probe)
