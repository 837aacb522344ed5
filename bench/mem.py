"""mem(4) benchmarks (issue 6): /dev/mem reads from the host side, and live dumps of a 2 GiB board.

1. Reading 256 MiB of guest RAM through /dev/mem (MemDevices.mem.d_read, as devfs calls it) in
   1 MiB and 64 KiB reads, against a plain copy of the same bytes out of the host mapping behind
   guest RAM, in the same process. The ratio is throughput, ours / plain copy: target 0.5 or better.
2. The same 256 MiB through the NBD export `mem` of the running board (issue 14): a libnbd client
   (Debian's python3 with python3-libnbd, in a child process that times its own reads, 16 requests
   in flight) reads it in 1 MiB and 64 KiB requests from the board's in-process server, against the
   guest's own `dd if=/dev/mem of=/dev/null` of the same range with the same block size, inside the
   board (a process of the booted kernel, through read(2) and devfs). The ratio is throughput,
   NBD / dd: target 0.5 or better. A second line puts NBD against the host-side d_read of figure 1
   (no system call, no guest buffer: a plain copy), for scale.
3. A live minidump (MEM_KERNELDUMP's writer) of a 2 GiB `virt` board holding about 300 MiB of data
   (a preloaded md image of text with random runs, ~45% compressible by gzip -1), for each
   compression, against the host's `cp`, `gzip -1` and `zstd -3` of the same bytes (the
   uncompressed minidump). Our side runs in-process after the boot (the boot is not timed); the
   host tools run as child processes. Compression levels: the dump's are set with
   kern.kerneldump_gzlevel, at the host tools' levels (1, 3) and at FreeBSD's default (6). If the
   zstd command is missing, the python zstandard module at level 3 stands in (the line says so).

Usage: python bench/mem.py [--pairs N] [--dump-pairs N] [--skip-dump]
One line per figure: name, ratio, the two medians, and the number of pairs.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1 << 20


class _Root:
    uid, pid = 0, 1

    def file_sink(self, fd: int):
        raise OSError("no descriptors")


def _pairs(ours: Callable[[], object], ref: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    """Alternate the two (after one warm-up each) so machine noise hits both alike."""
    ours()
    ref()
    a, b = [], []
    for _ in range(n):
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref()
        b.append(time.perf_counter() - t)
    return a, b


def _line(name: str, ratio: float, ours: str, ref: str, pairs: int) -> None:
    print(f"{name:<60} ratio {ratio:6.2f}   armboard {ours:>12}   reference {ref:>12}   pairs {pairs}")


def boot(physmem: str, mfsroot: Path | None = None, overrides=(), tunables=(), rc: bool = False):
    from kernel_sim import boot as boot_mod
    from kernel_sim.dev.mem import MemDevices
    from kernel_sim.kern.msgbuf import MsgBuf

    kwargs = {} if rc else {"loader_conf": None}        # rc: the default root and init, for guest commands
    request = boot_mod.BootRequest(physmem=physmem, mfsroot=mfsroot, overrides=list(overrides),
                                   tunables=list(tunables), **kwargs)
    result = boot_mod.run(boot_mod.prepare(request))
    if result.exit_code != 0:
        raise SystemExit(f"the benchmark board did not boot: {result.message}")
    msgbuf = MsgBuf.for_startup(result.startup)
    msgbuf.append(result.console)
    return result, MemDevices(result.machine, result.startup, msgbuf, printf=lambda _t: None)


def read_bench(pairs: int) -> None:
    size = 256 * MIB
    result, devs = boot("512M")
    base = result.machine.profile.ram_base + 128 * MIB
    block = random.Random(1).randbytes(MIB)
    for off in range(0, size, MIB):                     # real pages, not the zero page
        result.machine.phys.write(base + off, block)
    region = result.machine.phys.find(base)
    assert region is not None and base + size <= region.end
    view = memoryview(region.host)
    root = _Root()
    for chunk in (MIB, 64 << 10):
        def ours(chunk=chunk) -> None:
            for off in range(0, size, chunk):
                devs.mem.d_read(root, base + off, chunk)

        def plain(chunk=chunk) -> None:
            start = base - region.base
            for off in range(0, size, chunk):
                bytes(view[start + off:start + off + chunk])

        assert devs.mem.d_read(root, base, chunk) == bytes(view[base - region.base:base - region.base + chunk])
        a, b = _pairs(ours, plain, pairs)
        mo, mr = statistics.median(a), statistics.median(b)
        rate_o, rate_r = size / MIB / mo, size / MIB / mr
        _line(f"/dev/mem read 256 MiB in {chunk // 1024} KiB reads (MiB/s vs copy)", rate_o / rate_r,
              f"{rate_o:.0f} MiB/s", f"{rate_r:.0f} MiB/s", pairs)


NBD_READER = """
import sys, time, nbd
uri, start, size, chunk, rounds = sys.argv[1], *map(int, sys.argv[2:6])
h = nbd.NBD()
h.connect_uri(uri)
buf = nbd.Buffer(chunk)
for _ in range(rounds):
    t = time.perf_counter()
    for off in range(start, start + size, chunk):
        h.aio_pread(buf, off)
        while h.aio_in_flight() > 16:
            h.poll(-1)
    while h.aio_in_flight():
        h.poll(-1)
    print(time.perf_counter() - t, flush=True)
h.shutdown()
"""
DEBIAN_PYTHON = "/usr/bin/python3"


def guest_dd_seconds(result, base: int, size: int, chunk: int, pairs: int) -> list[float]:
    """`dd if=/dev/mem of=/dev/null bs=CHUNK skip=... count=...` as a process of the booted kernel."""
    from kernel_sim.kern.sysapi import O_WRONLY
    from kernel_sim.kern.syscalls import Syscalls
    from kernel_sim.userland.commands import load

    init = Syscalls.for_init(result.startup.kernel)
    dd = load("dd")
    argv = ["dd", "if=/dev/mem", "of=/dev/null", f"bs={chunk}", f"skip={base // chunk}", f"count={size // chunk}",
            "status=none"]
    times = []
    for _ in range(pairs + 1):
        proc = init.spawn_kstack("dd")
        proc.dup2(proc.open("/dev/null", O_WRONLY), 1)
        start = time.perf_counter()
        status = dd(proc, argv)
        times.append(time.perf_counter() - start)
        proc.exit(status)
        if status != 0:
            raise SystemExit(f"the guest's dd of /dev/mem failed with status {status}")
    return times[1:]


def nbd_bench(pairs: int) -> None:
    """The mem export of the running board against /dev/mem inside it (see the module's docstring)."""
    if not Path(DEBIAN_PYTHON).exists() or subprocess.run([DEBIAN_PYTHON, "-c", "import nbd"],
                                                         capture_output=True).returncode != 0:
        print("NBD mem export: skipped (needs python3-libnbd for /usr/bin/python3)")
        return
    from tools.nbd.board_exports import BoardExports
    from tools.nbd.giant import Giant
    from tools.nbd.server import Address, NbdServer

    size = 256 * MIB
    result, devs = boot("512M", rc=True)
    ram_base = result.machine.profile.ram_base
    base = ram_base + 128 * MIB
    block = random.Random(1).randbytes(MIB)
    for off in range(0, size, MIB):
        result.machine.phys.write(base + off, block)
    giant = Giant()
    giant.hold()
    exports = BoardExports(giant)
    exports.attach_machine(result.machine)
    exports.attach_kernel(result.startup)
    root = _Root()
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "mem.sock"
        server = NbdServer(exports.catalogue, Address(path=str(sock)), log=lambda _m: None, giant=giant)
        server.start()
        try:
            for chunk in (MIB, 64 << 10):
                def devmem(chunk=chunk) -> None:
                    for off in range(0, size, chunk):
                        devs.mem.d_read(root, base + off, chunk)

                with giant.released():     # the board waits: its server serves the client
                    runs = subprocess.run([DEBIAN_PYTHON, "-c", NBD_READER, f"nbd+unix:///mem?socket={sock}",
                                           str(base - ram_base), str(size), str(chunk), str(pairs + 1)],
                                          capture_output=True, text=True, check=True)
                ours = [float(v) for v in runs.stdout.split()][1:]     # the first round warms up
                guest = guest_dd_seconds(result, base, size, chunk, pairs)
                host = []
                for _ in range(pairs):
                    t = time.perf_counter()
                    devmem()
                    host.append(time.perf_counter() - t)
                mo, mg, mh = statistics.median(ours), statistics.median(guest), statistics.median(host)
                rate_o, rate_g, rate_h = (size / MIB / v for v in (mo, mg, mh))
                _line(f"NBD mem export 256 MiB in {chunk // 1024} KiB reads (vs guest dd)", rate_o / rate_g,
                      f"{rate_o:.0f} MiB/s", f"{rate_g:.0f} MiB/s", pairs)
                _line(f"NBD mem export 256 MiB in {chunk // 1024} KiB reads (vs host d_read)", rate_o / rate_h,
                      f"{rate_o:.0f} MiB/s", f"{rate_h:.0f} MiB/s", pairs)
        finally:
            server.stop()
            giant.drop()


def fill(path: Path, size: int, seed: int = 6) -> None:
    """Text from a 2000-word vocabulary with 64 random runs of 16..512 bytes per MiB (fixed seed)."""
    rng = random.Random(seed)
    vocab = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    with path.open("wb") as f:
        done = 0
        while done < size:
            chunk = bytearray(b" ".join(rng.choices(vocab, k=200000))[:MIB])
            for _ in range(64):
                at = rng.randrange(len(chunk) - 512)
                n = rng.randint(16, 512)
                chunk[at:at + n] = rng.randbytes(n)
            chunk = chunk[:size - done]
            f.write(chunk)
            done += len(chunk)


def _host(argv: list[str], src: Path, dst: Path) -> Callable[[], None]:
    def run() -> None:
        with src.open("rb") as fin, dst.open("wb") as fout:
            subprocess.run(argv, stdin=fin, stdout=fout, check=True)
    return run


def _zstd_module(src: Path, dst: Path) -> Callable[[], None]:
    def run() -> None:
        import zstandard

        with src.open("rb") as fin, dst.open("wb") as fout:
            zstandard.ZstdCompressor(level=3).copy_stream(fin, fout)
    return run


def dump_bench(pairs: int, tmp: Path) -> None:
    data = tmp / "data.img"
    fill(data, 300 * MIB)
    # The tuning model's advice for this board: the image needs LOCORE_MAP_MB and NKPT2PG to cover it,
    # and vm.kmem_size must leave the clean map room (armboard boot says so when it does not fit).
    result, devs = boot("2G", data, overrides=["LOCORE_MAP_MB=320", "NKPT2PG=96"], tunables=[("vm.kmem_size", "340M")])
    sysctl = result.startup.sysctl
    raw = tmp / "vmcore.raw"

    def dump(compression: int, level: int, path: Path) -> Callable[[], None]:
        def run() -> None:
            sysctl.set("kern.kerneldump_gzlevel", level)
            with path.open("wb") as f:
                devs.dump_to(f, compression)
        return run

    dump(0, 6, raw)()
    # the raw minidump without its 512-byte trailer is "the same bytes" the compressors get
    same = tmp / "vmcore.bytes"
    with raw.open("rb") as fin, same.open("wb") as fout:
        size = raw.stat().st_size - 512
        shutil.copyfileobj(fin, fout)
        fout.truncate(size)
    zstd_cmd = shutil.which("zstd")
    zstd_ref = (_host([zstd_cmd, "-3", "-q", "-c"], same, tmp / "ref.zst"), "zstd -3") if zstd_cmd else (
        _zstd_module(same, tmp / "ref.zst"), "python zstandard level 3 (no zstd command)")
    cases = [
        ("none", 0, 6, _host(["cat"], same, tmp / "ref.raw"), "cat", tmp / "ref.raw"),
        ("gzip level 1", 1, 1, _host(["gzip", "-1", "-c"], same, tmp / "ref.gz"), "gzip -1", tmp / "ref.gz"),
        ("zstd level 3", 2, 3, zstd_ref[0], zstd_ref[1], tmp / "ref.zst"),
        ("gzip level 6 (FreeBSD default)", 1, 6, _host(["gzip", "-1", "-c"], same, tmp / "ref.gz"), "gzip -1",
         tmp / "ref.gz"),
        ("zstd level 6 (FreeBSD default)", 2, 6, zstd_ref[0], zstd_ref[1], tmp / "ref.zst"),
    ]
    print(f"{'':<60} board: virt, 2 GiB RAM, {size / MIB:.0f} MiB minidump ({size // 4096} pages)")
    for name, comp, level, ref, ref_name, ref_out in cases:
        ours_out = tmp / f"ours.{comp}.{level}"
        a, b = _pairs(dump(comp, level, ours_out), ref, pairs)
        mo, mr = statistics.median(a), statistics.median(b)
        _line(f"dump, {name}: time vs {ref_name}", mo / mr, f"{mo:.2f} s", f"{mr:.2f} s", pairs)
        so, sr = ours_out.stat().st_size, ref_out.stat().st_size
        _line(f"dump, {name}: size vs {ref_name}", so / sr, f"{so / MIB:.1f} MiB", f"{sr / MIB:.1f} MiB", 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5, help="pairs for the /dev/mem reads (default 5)")
    parser.add_argument("--dump-pairs", type=int, default=3, help="pairs for the dumps (default 3)")
    parser.add_argument("--skip-dump", action="store_true", help="only the /dev/mem reads")
    parser.add_argument("--skip-nbd", action="store_true", help="without the NBD mem export")
    args = parser.parse_args()
    read_bench(args.pairs)
    if not args.skip_nbd:
        nbd_bench(args.pairs)
    if not args.skip_dump:
        with tempfile.TemporaryDirectory() as tmp:
            dump_bench(args.dump_pairs, Path(tmp))


if __name__ == "__main__":
    main()
