"""`armboard mkuzip`: mkuzip(8)'s flags, defaults and messages, output names, bad input as InputError."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kernel_sim.errors import InputError
from kernel_sim.geom import uzip_format as uf
from tools.cli import UsageError, _Parser
from tools.mkuzip_args import add_parser
from tools.mkuzip_cmd import cmd_mkuzip

try:
    import zstandard
except ImportError:                                     # pragma: no cover - a dependency
    zstandard = None
needs_zstd = pytest.mark.skipif(zstandard is None, reason="the zstandard package is not installed")


def run(argv: list[str]) -> int:
    """Parse as the main parser will (its _Parser raises UsageError) and run the command."""
    parser = _Parser(prog="armboard")
    add_parser(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    return cmd_mkuzip(parser.parse_args(["mkuzip", *argv]))


def sample(path: Path, size: int = 100_000, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    words = [b"freebsd", b"geom", b"uzip", b"\n", b"rootfs", b"flash"]
    text = bytearray()
    while len(text) < size // 2:
        text += rng.choice(words) + b" "
    data = bytes(text[: size // 2]) + bytes(size // 4) + rng.randbytes(size - size // 2 - size // 4)
    path.write_bytes(data)
    return data


def readback(path: Path) -> tuple[uf.CloopImage, bytes]:
    img, read = uf.open_image(path)
    return img, img.read(0, img.mediasize, read)


@pytest.mark.parametrize("flag,suffix,compressor,version", [
    ([], ".uzip", "zlib", "2"), (["-A", "zlib"], ".uzip", "zlib", "2"), (["-A", "lzma"], ".ulzma", "lzma", "3"),
    (["-L"], ".ulzma", "lzma", "3"), pytest.param(["-A", "zstd"], ".uzst", "zstd", "4", marks=needs_zstd)])
def test_default_output_name_and_format(tmp_path, flag, suffix, compressor, version):
    src = tmp_path / "root.img"
    data = sample(src)
    before = src.read_bytes()
    assert run([*flag, str(src)]) == 0
    out = tmp_path / ("root.img" + suffix)
    img, back = readback(out)
    assert (img.compressor, img.version, img.blksz, img.dedup) == (compressor, version, 16384, False)
    assert back[:len(data)] == data and back[len(data):] == bytes(len(back) - len(data))
    assert out.stat().st_size % 512 == 0
    assert src.read_bytes() == before                     # the input is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["root.img", out.name])   # no temporary left


@needs_zstd
def test_all_the_flags(tmp_path, capsys):
    src = tmp_path / "in.img"
    a = random.Random(2).randbytes(4096)
    data = a + bytes(4096) + a * 3 + b"tail"
    src.write_bytes(data)
    out = tmp_path / "custom.bin"
    assert run(["-A", "zstd", "-C", "3", "-s", "4096", "-d", "-j", "2", "-o", str(out), "-v", "-S", str(src)]) == 0
    img, back = readback(out)
    assert (img.compressor, img.dedup, img.blksz, img.nblocks) == ("zstd", True, 4096, 6)
    assert back[:len(data)] == data
    captured = capsys.readouterr()
    assert "cluster #3, in 4096 bytes, out len=0" in captured.err and "(backref'ed to #0)" in captured.err
    assert "data size 20484 bytes, number of clusters 6, index length 56 bytes" in captured.err
    assert "file size is not multiple of 4096, padding data" in captured.err
    assert captured.out.startswith("compressed data to ") and "decrease" in captured.out
    assert "compressed data to" not in captured.err           # -S sends the summary to stdout only
    # -Z: the zero cluster is compressed like any other
    assert run(["-Z", "-s", "4096", "-o", str(tmp_path / "z.uzip"), str(src)]) == 0
    img_z, back_z = readback(tmp_path / "z.uzip")
    assert all(img_z.block_extent(i)[1] > 0 for i in range(img_z.nblocks)) and back_z == back
    img_plain, _ = readback(tmp_path / "custom.bin")
    assert img_plain.block_extent(1)[1] == 0


def test_level_reaches_the_compressor(tmp_path):
    src = tmp_path / "in.img"
    sample(src, 200_000)
    run(["-C", "1", "-o", str(tmp_path / "fast.uzip"), str(src)])
    run(["-o", str(tmp_path / "best.uzip"), str(src)])
    assert (tmp_path / "fast.uzip").stat().st_size > (tmp_path / "best.uzip").stat().st_size


@pytest.mark.parametrize("argv,message,where", [
    (["-s", "1000"], "cluster size should be multiple of 512", "-s"),
    (["-s", "0"], "invalid cluster size specified: 0", "-s"),
    (["-s", "big"], "invalid cluster size specified: big", "-s"),
    (["-s", "131072"], "maximal compressed cluster size 131125 greater than MAXPHYS 131072", "-s"),
    (["-A", "lz4"], "invalid algorithm specified: lz4", "-A"),
    (["-C", "0"], "provided compression level 0 is invalid", "-C"),
    (["-A", "lzma", "-C", "10"], "provided compression level 10 is invalid", "-C"),
    (["-C", "x"], "invalid compression level: x", "-C"),
    (["-j", "0"], "invalid number of compression threads specified: 0", "-j"),
])
def test_bad_flags_are_input_errors(tmp_path, argv, message, where):
    src = tmp_path / "in.img"
    sample(src, 10_000)
    with pytest.raises(InputError) as info:
        run([*argv, str(src)])
    assert (info.value.message, info.value.where) == (message, where)
    assert str(info.value) == f"{where}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.img"]


def test_bad_files_are_input_errors(tmp_path):
    src = tmp_path / "in.img"
    sample(src, 10_000)
    cases = [
        ([str(tmp_path / "missing.img")], "cannot open input image: No such file or directory (ENOENT)"),
        ([str(tmp_path)], "input image is a directory"),
        (["/dev/zero"], "input image is not a regular file (character device)"),
        (["-o", str(src), str(src)], "the output would overwrite the input"),
        (["-o", str(tmp_path / "." / "in.img"), str(src)], "the output would overwrite the input"),
        (["-o", str(tmp_path / "nodir" / "x.uzip"), str(src)], "the output's directory does not exist"),
        (["-o", str(tmp_path), str(src)], "is a directory: give the output file name"),
    ]
    for argv, message in cases:
        with pytest.raises(InputError) as info:
            run(argv)
        assert info.value.message == message, argv
    (tmp_path / "empty.img").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        run([str(tmp_path / "empty.img")])
    link = tmp_path / "link.img"
    link.symlink_to(src)
    with pytest.raises(InputError, match="overwrite the input"):
        run(["-o", str(link), str(src)])
    assert src.read_bytes() == (tmp_path / "link.img").read_bytes()


def test_lzma_clusters_the_kernel_would_refuse(tmp_path):
    # xz's overhead on incompressible 4 KiB clusters exceeds what g_uzip_lzma.c accepts
    src = tmp_path / "random.img"
    src.write_bytes(random.Random(3).randbytes(8192))
    with pytest.raises(InputError, match="use a larger cluster size"):
        run(["-A", "lzma", "-s", "4096", str(src)])
    assert not (tmp_path / "random.img.ulzma").exists()
    assert run(["-A", "lzma", str(src)]) == 0


def test_usage_errors_come_from_the_parser(tmp_path):
    with pytest.raises(UsageError):
        run([])
    with pytest.raises(UsageError):
        run(["-q", str(tmp_path / "x")])


def test_an_existing_output_is_replaced_whole(tmp_path):
    src = tmp_path / "in.img"
    data = sample(src, 50_000)
    out = tmp_path / "in.img.uzip"
    out.write_bytes(b"old" * 100_000)
    assert run([str(src)]) == 0
    assert readback(out)[1][:len(data)] == data
