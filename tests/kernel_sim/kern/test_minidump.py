"""Live minidumps of a booted kernel, read back: every dumped page is live memory, the message
buffer is the console's kernel messages, and the headers are FreeBSD's."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest

from kernel_sim import boot as boot_mod
from kernel_sim.dev.mem import MEM_KERNELDUMP, MEM_LIVEDUMP_ARG, MemDevices
from kernel_sim.guest.abi import KERNBASE, PAGE_SIZE
from kernel_sim.kern.dumpfile import open_dump
from kernel_sim.kern.minidump import (
    KERNELDUMP_COMP_GZIP,
    KERNELDUMP_COMP_NONE,
    KERNELDUMP_COMP_ZSTD,
    kerneldump_parity,
)
from kernel_sim.kern.msgbuf import MSG_MAGIC, MSGBUF_WRAP, SIZEOF_MSGBUF, MsgBuf, decode
from kernel_sim.kern.sysapi import EBADF, ENOSPC, SysError
from kernel_sim.vm.cpu_mmu import mmu_for

COMPRESSIONS = {"none": KERNELDUMP_COMP_NONE, "gzip": KERNELDUMP_COMP_GZIP, "zstd": KERNELDUMP_COMP_ZSTD}


@dataclass
class Caller:
    uid: int = 0
    pid: int = 1
    sinks: dict[int, object] = field(default_factory=dict)

    def file_sink(self, fd: int):
        if fd not in self.sinks:
            raise SysError(EBADF, f"descriptor {fd} is not open for writing")
        return self.sinks[fd]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A halted kernel with a 3 MiB md image, some kmem in use, and its messages in the msgbuf."""
    image = tmp_path_factory.mktemp("md") / "md0.img"
    image.write_bytes(random.Random(7).randbytes(3 << 20))
    result = boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(physmem="128M", mfsroot=image, loader_conf=None)))
    assert result.exit_code == 0, result.message
    s = result.startup
    for i in range(8):                                   # kmem pages with known contents
        va = s.malloc.malloc(PAGE_SIZE, "temp")
        result.machine.phys.write(s.pmap.kextract(va), bytes([i + 1]) * PAGE_SIZE)
    msgbuf = MsgBuf.for_startup(s)
    msgbuf.append(result.console)                        # the hook the lead wires into printf
    devs = MemDevices(result.machine, s, msgbuf, printf=lambda _text: None)
    return result, devs, image


def take_dump(devs, path, compression: int):
    with open(path, "wb") as f:
        devs.mem.d_ioctl(Caller(sinks={3: f}), MEM_KERNELDUMP, MEM_LIVEDUMP_ARG.pack(3, 0, compression))
    return open_dump(path)


@pytest.mark.parametrize("name", list(COMPRESSIONS))
def test_dump_reads_back_and_matches_live_memory_page_for_page(kernel, tmp_path, name):
    result, devs, image = kernel
    machine, s = result.machine, result.startup
    dump = take_dump(devs, tmp_path / f"vmcore.{name}", COMPRESSIONS[name])
    assert dump.kdh.compression == COMPRESSIONS[name]
    # the pages are exactly those the kernel's tables map from KERNBASE to kernel_vm_end
    mapped = {s.pmap.kextract(va) & ~(PAGE_SIZE - 1)
              for va in range(KERNBASE, s.pmap.kernel_vm_end, PAGE_SIZE) if s.pmap.kextract(va) is not None}
    dumped = {pa for start, end in dump.pa_runs() for pa in range(start, end, PAGE_SIZE)}
    assert dumped == mapped
    for pa in sorted(dumped):
        assert dump.read_pa(pa, PAGE_SIZE) == machine.phys.read(pa, PAGE_SIZE), hex(pa)
    # every mapped KVA translates through the dumped PTEs as the MMU simulator translates it
    mmu = mmu_for(machine)
    for va_start, va_end, _pa in dump.kva_runs():
        for va in (va_start, va_end - 1):
            assert dump.translate(va).pa == mmu.translate(va).pa
    module = result.prepared.layout.modules[0]
    assert dump.read_va(module.va, module.size) == image.read_bytes()


@pytest.mark.parametrize("name", list(COMPRESSIONS))
def test_the_dumps_message_buffer_is_the_consoles_kernel_messages(kernel, tmp_path, name):
    result, devs, _image = kernel
    dump = take_dump(devs, tmp_path / f"vmcore.{name}", COMPRESSIONS[name])
    assert dump.msgbuf_header is not None and dump.msgbuf_header.msg_magic == MSG_MAGIC
    assert dump.msgbuf_contents() == result.console.decode().replace("\r", "")
    assert "md0: Preloaded image" in dump.msgbuf_contents()


def test_headers_are_freebsds(kernel, tmp_path):
    result, devs, _image = kernel
    path = tmp_path / "vmcore.gz"
    dump = take_dump(devs, path, KERNELDUMP_COMP_GZIP)
    raw = path.read_bytes()
    kdh = dump.kdh
    assert raw[-512:].startswith(b"FreeBSD Kernel Dump\0") and kerneldump_parity(raw[-512:]) == 0
    assert (kdh.architecture, kdh.version, kdh.architectureversion, kdh.blocksize) == ("armv7", 4, 1, PAGE_SIZE)
    assert kdh.dumplength == len(raw) - 512 - (-kdh.dumplength % PAGE_SIZE)     # the compressed size
    assert kdh.dumpextent == len(dump.data)                                      # the minidump's size
    assert kdh.versionstring.startswith("armboard") and kdh.dumpkeysize == 0
    assert raw[:2] == b"\x1f\x8b"                                                # a gzip stream
    assert struct.unpack_from(">I", raw, len(raw) - 512 + 32)[0] == 4           # big-endian fields
    hdr = dump.hdr
    assert (hdr.magic.rstrip(b"\0"), hdr.version, hdr.arch, hdr.mmuformat) == (b"minidump FreeBSD/arm", 2, 7, 2)
    assert hdr.kernbase == KERNBASE and hdr.ptesize == 4 * ((result.startup.pmap.kernel_vm_end - KERNBASE) >> 12)
    assert hdr.msgbufsize == 32768 * 3 - SIZEOF_MSGBUF and hdr.dumpavailsize == PAGE_SIZE
    assert dump.dump_avail == [(0x40000000, 0x40000000 + (128 << 20))]
    zstd = take_dump(devs, tmp_path / "vmcore.zst", KERNELDUMP_COMP_ZSTD)
    assert (tmp_path / "vmcore.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd" and zstd.npages == dump.npages


def test_uncompressed_dump_layout_is_a_plain_minidump_then_the_header(kernel, tmp_path):
    result, devs, _image = kernel
    path = tmp_path / "vmcore"
    dump = take_dump(devs, path, KERNELDUMP_COMP_NONE)
    raw = path.read_bytes()
    assert raw.startswith(b"minidump FreeBSD/arm") and len(raw) == dump.kdh.dumplength + 512
    assert dump.kdh.dumplength == dump.kdh.dumpextent == dump.offsets["pages"] + dump.npages * PAGE_SIZE
    bare = tmp_path / "vmcore.0"                 # what savecore(8) keeps: the dump without the header
    bare.write_bytes(raw[:-512])
    again = open_dump(bare)
    assert again.kdh is None and again.npages == dump.npages and again.msgbuf_text == dump.msgbuf_text


def test_dump_console_lines_and_a_full_file_system(kernel):
    result, _devs, _image = kernel
    lines: list[str] = []
    devs = MemDevices(result.machine, result.startup, _devs.msgbuf, printf=lines.append)

    class Full:
        def __init__(self) -> None:
            self.room = 64 << 10

        def write(self, data) -> int:
            if len(data) > self.room:
                raise SysError(ENOSPC, "tmpfs full")
            self.room -= len(data)
            return len(data)

    with pytest.raises(SysError) as err:
        devs.mem.d_ioctl(Caller(sinks={3: Full()}), MEM_KERNELDUMP, MEM_LIVEDUMP_ARG.pack(3, 0, 0))
    assert err.value.errno == ENOSPC
    text = "".join(lines)
    assert text.startswith("Physical memory: 128 MB\nDumping ")
    assert "\nDump failed. Partition too small (about " in text and text.endswith("MB were needed this time).\n")


# ---------------------------------------------------------------------------------------------- msgbuf
def test_msgbuf_is_freebsds_struct_in_guest_pages(kernel):
    result, devs, _image = kernel
    mb = devs.msgbuf
    hdr = mb.header()
    assert (hdr.msg_magic, hdr.msg_ptr, hdr.msg_size, hdr.msg_seqmod) == (MSG_MAGIC, mb.va, 98248, 98248 * 16)
    assert mb.va == result.startup.kva.row("message buffer (msgbuf)").start
    raw = devs.kmem.d_read(Caller(), mb.header_va, SIZEOF_MSGBUF)               # the struct, through /dev/kmem
    assert struct.unpack_from("<II", raw, 4) == (MSG_MAGIC, 98248)
    assert hdr.msg_cksum == sum(devs.kmem.d_read(Caller(), mb.va, hdr.msg_size)) & 0xFFFFFFFF


def test_msgbuf_wraps_keeping_the_newest_bytes(kernel):
    result, _devs, _image = kernel
    s = result.startup
    va = s.malloc.malloc(4 * PAGE_SIZE, "temp")
    pas = [s.pmap.kextract(va + i * PAGE_SIZE) for i in range(4)]
    mb = MsgBuf(result.machine.phys, va, pas, 4 * PAGE_SIZE)
    mb._init()
    lines = [f"line {i:05d} of the kernel's messages\r\n" for i in range(1000)]
    for line in lines:
        mb.append(line)
    text = "".join(lines).replace("\r", "")
    hdr = mb.header()
    assert hdr.msg_flags & MSGBUF_WRAP and hdr.msg_wseq == len(text) % hdr.msg_seqmod
    assert mb.contents() == text[-hdr.msg_size:]
    mb.append("x" * (3 * hdr.msg_size))                  # longer than the ring: only its end survives
    assert mb.contents() == "x" * hdr.msg_size
    decoded_hdr, decoded = decode(mb.area(), hdr.msg_size)
    assert decoded_hdr == mb.header() and decoded.decode() == mb.contents()
    corrupt = bytearray(mb.area())
    corrupt[10] ^= 0xFF                                  # the checksum no longer matches: raw ring, no header
    assert decode(bytes(corrupt), hdr.msg_size)[0] is None


# --- fuzzing: a damaged dump is one DumpError, never another exception -----------------------------------

import contextlib  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kernel_sim.kern.dumpfile import DumpError, TranslateError  # noqa: E402

# Field offsets: struct kerneldumpheader (big-endian, from the header's start) and struct minidumphdr
# (little-endian u32s after the 24-byte magic).
KDH_FIELDS = {"version": (32, ">I"), "architectureversion": (36, ">I"), "dumplength": (40, ">Q"),
              "dumpkeysize": (56, ">I"), "blocksize": (60, ">I"), "compression": (495, ">B"),
              "dumpextent": (496, ">Q")}
MDHDR_FIELDS = {name: (24 + 4 * i, "<I") for i, name in enumerate(
    ("version", "msgbufsize", "bitmapsize", "ptesize", "kernbase", "arch", "mmuformat", "dumpavailsize"))}


@pytest.fixture(scope="module")
def dump_files(kernel, tmp_path_factory):
    """An uncompressed and a gzip dump of the kernel fixture: the bases the fuzzer damages in place."""
    _result, devs, _image = kernel
    out = {}
    for name in ("none", "gzip"):
        path = tmp_path_factory.mktemp("fuzz") / f"vmcore.{name}"
        take_dump(devs, path, COMPRESSIONS[name])
        raw = path.read_bytes()
        out[name] = (path, raw[:3 * PAGE_SIZE + 1], raw[-512:])
    return out


@contextlib.contextmanager
def patched(path, patches: list[tuple[int, bytes]]):
    """The file with some bytes replaced, restored afterwards (dumps are megabytes: no copy per example)."""
    saved = []
    with open(path, "r+b") as f:
        for off, data in patches:
            f.seek(off)
            saved.append((off, f.read(len(data))))
            f.seek(off)
            f.write(data)
    try:
        yield path
    finally:
        with open(path, "r+b") as f:
            for off, data in reversed(saved):
                f.seek(off)
                f.write(data)


def _fix_parity(header: bytearray) -> None:
    struct.pack_into("<I", header, 508, 0)
    struct.pack_into("<I", header, 508, kerneldump_parity(bytes(header)))


field_change = st.one_of(
    st.tuples(st.just("kdh"), st.sampled_from(sorted(KDH_FIELDS)), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("mdhdr"), st.sampled_from(sorted(MDHDR_FIELDS)), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("byte"), st.integers(0, 3 * PAGE_SIZE), st.integers(0, 255)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["none", "gzip"]), changes=st.lists(field_change, min_size=1, max_size=4),
       keep_parity=st.booleans())
def test_fuzz_damaged_dumps_are_one_dump_error(dump_files, name, changes, keep_parity) -> None:
    """Hostile header fields (with the parity fixed up, so the checks behind it are reached too) and stray
    bytes in the first pages: open_dump says DumpError, or the dump opens and every question about it is
    answered or refused with TranslateError/DumpError."""
    path, head, tail = dump_files[name]
    size = path.stat().st_size
    raw_head, header = bytearray(head), bytearray(tail)
    for kind, what, value in changes:
        if kind == "kdh":
            off, fmt = KDH_FIELDS[what]
            struct.pack_into(fmt, header, off, value % (1 << 8 * struct.calcsize(fmt)))
        elif kind == "mdhdr" and name == "none":      # the gzip dump's minidump header is compressed
            off, fmt = MDHDR_FIELDS[what]
            struct.pack_into(fmt, raw_head, off, value)
        elif kind == "byte":
            raw_head[what % len(raw_head)] = value
    if keep_parity:
        _fix_parity(header)
    with patched(path, [(0, bytes(raw_head)), (size - 512, bytes(header))]):
        try:
            dump = open_dump(path)
        except DumpError:
            return
        dump.msgbuf_contents()
        for va in (KERNBASE, KERNBASE + 0x123456, 0xFFFF0000):
            with contextlib.suppress(TranslateError, DumpError):
                dump.translate(va)
            with contextlib.suppress(TranslateError, DumpError):
                dump.read_va(va, 16)
        for pa in (0x40000000, 0):
            with contextlib.suppress(TranslateError, DumpError):
                dump.read_pa(pa, 64)
