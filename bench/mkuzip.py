"""`armboard mkuzip` against cloop-utils' create_compressed_fs (issue 4): target time ratio 1.0 or better.

Both compress the same 64 MiB input (text with random bytes mixed in, generated from a fixed seed:
compressible, not trivially) with zlib level 9 into 16 KiB clusters, with two compression threads
(`-j 2` here, `-t 2` there; --jobs changes both). Our side runs write_image in a fresh Python
process, so interpreter start-up and imports are in the figure. Both outputs are checked once,
outside the timing, to read back as the input. Runs alternate (bench.common.pairs) so machine
noise hits both alike.

Usage: python bench/mkuzip.py [--pairs N] [--size MiB] [--jobs N]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pairs, report  # noqa: E402

CLUSTER = 16384
OURS = ("import sys; from kernel_sim.geom.uzip_format import write_image; "
        "write_image(sys.argv[1], sys.argv[2], compressor='zlib', cluster=int(sys.argv[3]), jobs=int(sys.argv[4]))")


def generate(path: Path, size: int, seed: int = 20240601) -> None:
    """Lines of words from a small vocabulary, with a random run of 16..256 bytes in about one in 20."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    written = 0
    with path.open("wb") as f:
        while written < size:
            chunk = bytearray()
            while len(chunk) < 1 << 20:
                chunk += b" ".join(rng.choices(words, k=12)) + b"\n"
                if rng.random() < 0.05:
                    chunk += rng.randbytes(rng.randint(16, 256))
            chunk = chunk[:size - written]
            f.write(chunk)
            written += len(chunk)


def same_content(ours: Path, ref: Path, source: Path) -> None:
    from kernel_sim.geom.uzip_format import open_image

    data = source.read_bytes()
    for path in (ours, ref):
        img, read = open_image(path)
        back = img.read(0, img.mediasize, read)
        if back[:len(data)] != data or back[len(data):].strip(b"\0"):
            raise SystemExit(f"{path.name} does not read back as the input")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="input size in MiB (default 64)")
    parser.add_argument("--jobs", type=int, default=2, help="compression threads on both sides (default 2)")
    args = parser.parse_args()
    tool = shutil.which("create_compressed_fs")
    if tool is None:
        print("create_compressed_fs (cloop-utils) is not installed: the mkuzip benchmark is skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        source, ours_out, ref_out = tmpdir / "input.img", tmpdir / "ours.uzip", tmpdir / "ref.cloop"
        generate(source, args.size << 20)
        ours_cmd = [sys.executable, "-c", OURS, str(source), str(ours_out), str(CLUSTER), str(args.jobs)]
        ref_cmd = [tool, "-q", "-B", str(CLUSTER), "-t", str(args.jobs), "-L", "9", str(source), str(ref_out)]
        ours, ref = pairs(ours_cmd, ref_cmd, args.pairs)
        same_content(ours_out, ref_out, source)
        report(f"mkuzip {args.size} MiB zlib-9 -s {CLUSTER} -j {args.jobs} (vs create_compressed_fs)",
               [w for w, _ in ours], [w for w, _ in ref])
        print(f"{'':<44} output: armboard {ours_out.stat().st_size} bytes, reference {ref_out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
