"""`armboard dump show`: live dumps of a booted kernel read offline, and damaged dumps refused with
one line that says what is wrong and where (exit 2, never a traceback)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import random
import struct

import pytest

from kernel_sim import boot as boot_mod
from kernel_sim.dev.mem import MEM_KERNELDUMP, MEM_LIVEDUMP_ARG, MemDevices
from kernel_sim.guest.abi import PAGE_SIZE
from kernel_sim.kern.minidump import KernelDumpHeader
from kernel_sim.kern.msgbuf import MsgBuf
from kernel_sim.kern.sysapi import EBADF, SysError
from kernel_sim.vm.cpu_mmu import mmu_for
from tools.dump_cmd import add_parser, run


class _Caller:
    uid, pid = 0, 1

    def __init__(self, sink) -> None:
        self.sink = sink

    def file_sink(self, fd: int):
        if fd != 3:
            raise SysError(EBADF)
        return self.sink


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One kernel (2 MiB md image) and its dumps in each compression."""
    tmp = tmp_path_factory.mktemp("dumps")
    image = tmp / "md0.img"
    image.write_bytes(random.Random(11).randbytes(2 << 20))
    result = boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(physmem="128M", mfsroot=image, loader_conf=None)))
    assert result.exit_code == 0, result.message
    msgbuf = MsgBuf.for_startup(result.startup)
    msgbuf.append(result.console)
    devs = MemDevices(result.machine, result.startup, msgbuf, printf=lambda _t: None)
    paths = {}
    for name, comp in (("none", 0), ("gzip", 1), ("zstd", 2)):
        paths[name] = tmp / f"vmcore.{name}"
        with open(paths[name], "wb") as f:
            devs.mem.d_ioctl(_Caller(f), MEM_KERNELDUMP, MEM_LIVEDUMP_ARG.pack(3, 0, comp))
    return result, paths, image


def show(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="armboard")
    add_parser(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args(["dump", "show", *map(str, argv)]), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", ["none", "gzip", "zstd"])
def test_show_prints_header_memory_and_the_message_buffer(booted, name):
    result, paths, _image = booted
    code, out, err = show(paths[name])
    assert (code, err) == (0, "")
    assert "kerneldumpheader: FreeBSD Kernel Dump, version 4, architecture armv7 (version 1)" in out
    assert f"{name}-compressed" in out if name != "none" else "dump length: " in out
    assert "minidump: minidump FreeBSD/arm, version 2, arm 7, MMU format V6, kernbase 0xc0000000" in out
    assert "  0x40000000-0x48000000    128 MiB" in out                      # dump_avail: the board's RAM
    assert out.endswith(result.console.decode().replace("\r", ""))        # the message buffer, last


def test_show_json(booted):
    result, paths, _image = booted
    code, out, _err = show(paths["zstd"], "--json")
    data = json.loads(out)
    assert code == 0 and data["kerneldumpheader"]["compression"] == "zstd"
    assert data["minidump"]["kernbase"] == 0xC0000000
    assert data["msgbuf"] == result.console.decode().replace("\r", "")
    module = result.prepared.layout.modules[0]
    assert any(a <= module.va and module.va + module.size <= b for a, b, _pa in data["virtual"])


def test_translate_and_extract_agree_with_live_memory(booted, tmp_path):
    result, paths, image = booted
    module = result.prepared.layout.modules[0]
    va = module.va + 0x1234
    code, out, err = show(paths["gzip"], "--translate", hex(va), "--extract-pa", hex(module.pa), "64k",
                          tmp_path / "pa.bin", "--extract-va", hex(module.va + 10), "5000", tmp_path / "va.bin")
    assert (code, err) == (0, "")
    assert f"0x{va:08x}: PTE2[" in out and f"-> physical 0x{mmu_for(result.machine).translate(va).pa:08x}" in out
    assert (tmp_path / "pa.bin").read_bytes() == image.read_bytes()[:64 << 10]
    assert (tmp_path / "va.bin").read_bytes() == image.read_bytes()[10:5010]
    _code, out, _err = show(paths["none"], "--translate", hex(va), "--json")
    assert json.loads(out)["translations"][0]["pa"] == module.pa + 0x1234


def test_addresses_the_dump_does_not_hold_are_one_line_and_exit_1(booted, tmp_path):
    result, paths, _image = booted
    guard = result.startup.procs.procs[1].threads[0].kstack - PAGE_SIZE
    for args in (("--translate", hex(guard)), ("--translate", "0x1000"),
                 ("--extract-pa", "0x47000000", "16", tmp_path / "x")):
        code, out, err = show(paths["none"], *args)
        assert code == 1 and out == "" and err.startswith("armboard: ") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- bad input
def refused(tmp_path, data: bytes, *expected: str) -> str:
    path = tmp_path / "bad.vmcore"
    path.write_bytes(data)
    code, out, err = show(path)
    assert code == 2 and out == "", err
    assert err.startswith(f"armboard: {path}: ") and err.count("\n") == 1 and "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


def with_header(raw: bytes, **changes) -> bytes:
    """The dump with kerneldumpheader fields changed (and its parity made right again)."""
    kdh = KernelDumpHeader.unpack(raw[-512:])
    return raw[:-512] + dataclasses.replace(kdh, **changes).pack()


def test_truncated_dumps(booted, tmp_path):
    _result, paths, _image = booted
    gz, plain = paths["gzip"].read_bytes(), paths["none"].read_bytes()
    refused(tmp_path, b"", "the file is 0 bytes", "offset 0")
    refused(tmp_path, gz[:1000], "no kerneldumpheader", "truncated")
    refused(tmp_path, gz[:-100], "no kerneldumpheader")
    refused(tmp_path, gz[:len(gz) // 2] + gz[-512:], "truncated: the header says the dump is")
    refused(tmp_path, plain[:len(plain) // 2], "truncated: the bitmap marks", "page data")
    refused(tmp_path, plain[:50000], "truncated: the message buffer section")
    refused(tmp_path, plain[:200000], "truncated: the PTE section")
    refused(tmp_path, plain[:3000], "truncated", "minidump header")
    stream = gz[:-512].rstrip(b"\0")                    # a gzip stream cut short, with a header that agrees
    cut = stream[:len(stream) // 2]
    padded = cut + bytes(-len(cut) % PAGE_SIZE)
    refused(tmp_path, with_header(padded + gz[-512:], dumplength=len(cut)), "gzip stream ends before its end mark")


def test_wrong_magic(booted, tmp_path):
    _result, paths, _image = booted
    plain = bytearray(paths["none"].read_bytes())
    bad = bytearray(plain)
    bad[-512] ^= 0x20                                  # "freeBSD Kernel Dump"
    refused(tmp_path, bytes(bad), "no kerneldumpheader", "'FreeBSD Kernel Dump'", f"offset {len(plain) - 512}")
    bad = bytearray(plain)
    bad[0:8] = b"maxidump"
    refused(tmp_path, bytes(bad), "not an arm minidump", "at file offset 0")


def test_unknown_versions(booted, tmp_path):
    _result, paths, _image = booted
    plain = paths["none"].read_bytes()
    refused(tmp_path, with_header(plain, version=5), "unknown kerneldumpheader version 5",
            f"offset {len(plain) - 512 + 32}")
    bad = bytearray(plain)
    struct.pack_into("<I", bad, 24, 9)
    refused(tmp_path, bytes(bad), "unknown minidump version 9", "at file offset 24")
    refused(tmp_path, with_header(plain, compression=9), "unknown compression 9")
    bad = bytearray(plain)
    bad[-512 + 70] ^= 1                                # the hostname changed, the parity not
    refused(tmp_path, bytes(bad), "parity mismatch")


def test_bitmap_or_pte_section_not_matching_the_header(booted, tmp_path):
    result, paths, _image = booted
    plain = paths["none"].read_bytes()
    bitmapsize, ptesize = struct.unpack_from("<II", plain, 32)
    bitmap_at = 2 * PAGE_SIZE + -(-struct.unpack_from("<I", plain, 28)[0] // PAGE_SIZE) * PAGE_SIZE
    bad = bytearray(plain)
    bad[bitmap_at + 2000] |= 0x01                      # one more page marked than the dump holds
    refused(tmp_path, bytes(bad), "the bitmap marks", "bytes of page data follow the PTEs")
    bad = bytearray(plain)
    struct.pack_into("<I", bad, 32, 0)                 # bitmapsize 0
    refused(tmp_path, bytes(bad), "the bitmap is 0 bytes", "dump_avail spans", "at file offset 32")
    bad = bytearray(plain)
    struct.pack_into("<I", bad, 36, ptesize + PAGE_SIZE)
    refused(tmp_path, bytes(bad), "bytes of page data follow the PTEs")
    bad = bytearray(plain)
    struct.pack_into("<I", bad, 36, ptesize - 2)
    refused(tmp_path, bytes(bad), "not a whole number of 4-byte PTE2s", "at file offset 36")
    ptes_at = bitmap_at + -(-bitmapsize // PAGE_SIZE) * PAGE_SIZE
    bad = bytearray(plain)
    struct.pack_into("<I", bad, ptes_at + 4 * 0x5000, 0x47000012)     # maps a RAM page the bitmap lacks
    refused(tmp_path, bytes(bad), "the PTE of 0xc5000000 maps physical 0x47000000", "do not belong together",
            f"offset {ptes_at + 4 * 0x5000}")


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_corrupt_compressed_data(booted, tmp_path, name):
    _result, paths, _image = booted
    raw = bytearray(paths[name].read_bytes())
    length = KernelDumpHeader.unpack(bytes(raw[-512:])).dumplength
    for i in range(length // 2, length // 2 + 64):
        raw[i] ^= 0x5A
    err = refused(tmp_path, bytes(raw), f"corrupt {name} data" if name == "zstd" else "gzip")
    assert "offset" in err


# ---------------------------------------------------------------------------------------------- the monitor
@pytest.fixture
def monitor(booted):
    from tools.monitor import Monitor

    result, _paths, _image = booted
    mon = Monitor(result.machine, out=io.StringIO(), sysctl=result.startup.sysctl)
    mon.startup = result.startup
    return mon


def mon(monitor, line: str) -> str:
    from tools.monitor_mem import COMMANDS

    words = line.split()
    monitor.out.seek(0)
    monitor.out.truncate()
    COMMANDS[words[0]](monitor, words[1:])
    return monitor.out.getvalue()


def test_monitor_paddr_shows_the_walk(booted, monitor):
    result, _paths, _image = booted
    module = result.prepared.layout.modules[0]
    va = module.va + 0x2345
    text = mon(monitor, f"paddr {va:#x}")
    ttbr0 = result.machine.cp15.ttbr0 & ~0x3FFF
    l1_addr = ttbr0 + 4 * (va >> 20)
    l1 = result.machine.phys.read_u32(l1_addr)
    assert text.splitlines()[:2] == [
        f"0x{va:08x}: TTBR0 0x{ttbr0:08x} (TTBCR.N 0), L1 index 0x{va >> 20:03x}",
        f"  L1 entry at 0x{l1_addr:08x}: 0x{l1:08x}  page table at 0x{l1 & ~0x3FF:08x}, domain 0 (client)"]
    l2_addr = (l1 & ~0x3FF) + 4 * ((va >> 12) & 0xFF)
    assert f"  L2 index 0x{(va >> 12) & 0xFF:02x}, entry at 0x{l2_addr:08x}: " in text
    assert "kernel rwx, user ---" in text and text.endswith(f"  physical address 0x{module.pa + 0x2345:08x} "
                                                            f"(small at 0x{module.pa + 0x2000:08x})\n")
    guard = result.startup.procs.procs[1].threads[0].kstack - PAGE_SIZE
    text = mon(monitor, f"paddr {guard:#x}")
    assert "fault (no page)" in text and "fault: Translation Fault (L2), DFSR 0x007" in text
    assert "inside a kernel_map entry" in text
    text = mon(monitor, "paddr 0xffe00000")                     # the console's devmap section
    assert "section (1 MiB)" in text and text.endswith("physical address 0x09000000 (section at 0x09000000)\n")
    assert mon(monitor, "paddr 0x10").endswith("fault: Translation Fault (L1), DFSR 0x005: a kernel read takes a "
                                               "Data Abort\n")


def test_monitor_mem_and_kmem_read_write(booted, monitor, tmp_path):
    from tools.monitor import MonitorError

    result, _paths, image = booted
    module = result.prepared.layout.modules[0]
    assert mon(monitor, f"mem read {module.pa:#x} 16") == f"{module.pa:08x}: {image.read_bytes()[:16].hex(' ')}\n"
    mon(monitor, f"kmem read {module.va:#x} 8k {tmp_path / 'k.bin'}")
    assert (tmp_path / "k.bin").read_bytes() == image.read_bytes()[:8192]
    scratch = result.startup.malloc.malloc(PAGE_SIZE, "temp")
    (tmp_path / "w.bin").write_bytes(b"from the host")
    mon(monitor, f"mem write {result.startup.pmap.kextract(scratch):#x} {tmp_path / 'w.bin'}")
    assert mon(monitor, f"kmem read {scratch:#x} 13") == f"{scratch:08x}: {b'from the host'.hex(' ')}\n"
    with pytest.raises(MonitorError, match=r"not in dump_avail.*Invalid argument \(EINVAL\)"):
        mon(monitor, "mem read 0x0 4")
    with pytest.raises(MonitorError, match=r"Bad address \(EFAULT\)"):
        mon(monitor, "kmem read 0x1000 4")
    with pytest.raises(MonitorError, match="usage: mem read"):
        mon(monitor, "mem peek 0x40000000")


def test_monitor_ranges_and_dump(booted, monitor, tmp_path):
    result, _paths, _image = booted
    assert mon(monitor, "ranges").splitlines()[3] == (
        "0x40000000/0x8000000 ram write-back fixed-base fixed-length set-by-firmware active fixed-active ")
    path = tmp_path / "monitor.vmcore"
    text = mon(monitor, f"dump --compress gzip {path}")
    assert text.startswith("dump: ") and text.endswith(f"written to {path} (gzip)\n")
    code, out, _err = show(path)
    assert code == 0 and "kerneldumpheader: FreeBSD Kernel Dump" in out
