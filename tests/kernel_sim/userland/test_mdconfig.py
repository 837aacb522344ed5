"""mdconfig(8) over the md driver: attach, list formats, detach, usage and errors as the real tool."""

from __future__ import annotations

import pytest

from kernel_sim.dev.md import MD_COMPRESS, MdDriver
from kernel_sim.geom.core import Mesh
from kernel_sim.userland.commands.mdconfig import USAGE, humanize, mdconfig


@pytest.fixture
def drv() -> MdDriver:
    live: set[int] = set()

    def alloc(nbytes: int, zone: str) -> int:
        live.add(len(live) + 1)
        return len(live)

    return MdDriver(Mesh(), sector_alloc=alloc, sector_free=lambda h: None)


def test_attach_malloc_prints_unit_and_defaults_to_compress(drv: MdDriver) -> None:
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "10m"]) == (0, "md0\n", "")
    assert drv.query(0)["options"] == MD_COMPRESS and drv.query(0)["mediasize"] == 10 << 20
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "2048", "-n"]) == (0, "1\n", "")
    assert drv.query(1)["mediasize"] == 2048 * 512
    assert mdconfig(drv, ["-a", "-t", "null", "-s", "1g", "-u", "md7"]) == (0, "", "")   # -u: nothing printed


def test_list_and_verbose_list(drv: MdDriver, tmp_path) -> None:
    assert mdconfig(drv, ["-l"]) == (0, "", "")
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(1536 * 1024))
    mdconfig(drv, ["-a", "-t", "malloc", "-s", "10m", "-L", "scratch"])
    mdconfig(drv, ["-s", "64k"])                                  # -s alone: swap
    assert mdconfig(drv, ["-f", str(img)]) == (0, "md2\n", "")
    assert mdconfig(drv, ["-l"]) == (0, "md0 md1 md2 \n", "")
    assert mdconfig(drv, ["-l", "-n"])[1] == "0 1 2 \n"
    assert mdconfig(drv, ["-l", "-v"]) == (0, (
        "md0\tmalloc\t   10M\t-\tscratch\n"
        "md1\tswap\t   64K\t-\t\n"
        f"md2\tvnode\t 1536K\t{img}\t\n"), "")
    assert mdconfig(drv, ["-l", "-u", "2"]) == (0, f"md2\tvnode\t 1536K\t{img}\t\n", "")
    assert mdconfig(drv, ["-l", "-f", str(img)]) == (0, "md2 \n", "")
    assert mdconfig(drv, ["-l", "-u", "9"]) == (255, "", "")


def test_humanize_number_format() -> None:
    assert [humanize(n) for n in (0, 512, 9999, 10 << 20, 1 << 30, 10240000, 100000)] == \
        ["0B", "512B", "9999B", "10M", "1024M", "9.8M", "98K"]


def test_detach_and_errors(drv: MdDriver) -> None:
    mdconfig(drv, ["-a", "-t", "malloc", "-s", "1m"])
    assert mdconfig(drv, ["-d", "-u", "md0"]) == (0, "", "")
    assert drv.list() == []
    assert mdconfig(drv, ["-d", "-u", "0"]) == (1, "", "mdconfig: ioctl(/dev/mdctl): No such file or directory\n")
    assert mdconfig(drv, ["-d"]) == (1, "", "mdconfig: -d requires -u\n")
    assert mdconfig(drv, ["-a", "-t", "swap", "-s", "1000b"]) == \
        (1, "", "mdconfig: ioctl(/dev/mdctl): Numerical argument out of domain\n")
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "1m", "-o", "readonly"])[2].endswith("Invalid argument\n")
    assert mdconfig(drv, ["-a", "-t", "malloc"]) == (1, "", "mdconfig: must specify -s for -t malloc, -t swap, "
                                                            "or -t null\n")
    assert mdconfig(drv, ["-a", "-t", "floppy"]) == (1, "", "mdconfig: unknown type: floppy\n")
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "1q"]) == (1, "", "mdconfig: unknown suffix on -s argument\n")
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "1m", "-o", "turbo"]) == \
        (1, "", "mdconfig: unknown option: turbo\n")
    assert mdconfig(drv, ["-a", "-l"]) == (1, "", "mdconfig: -l is mutually exclusive with -a, -r, and -d\n")
    assert mdconfig(drv, ["-d", "-u", "x1"]) == (1, "", "mdconfig: bad unit: x1\n")
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "1m", "-v"]) == (1, "", "mdconfig: -v can only be used with -l\n")
    assert mdconfig(drv, ["-r", "-u", "0"]) == (1, "", "mdconfig: must specify -s for -r\n")


def test_bad_flags_print_usage_and_exit_1(drv: MdDriver) -> None:
    assert mdconfig(drv, []) == (1, "", USAGE)
    assert mdconfig(drv, ["-q"]) == (1, "", "mdconfig: illegal option -- q\n" + USAGE)
    assert mdconfig(drv, ["-a", "-t"]) == (1, "", "mdconfig: option requires an argument -- t\n" + USAGE)
    assert mdconfig(drv, ["-b", "x"]) == (1, "", USAGE)
    assert USAGE.startswith("usage: mdconfig -a -t type [-n] [-o [no]option] ... [-f file]\n")
    assert "%d (512 byte blocks)" in USAGE


def test_vnode_from_host_file_and_resize(drv: MdDriver, tmp_path) -> None:
    img = tmp_path / "img"
    img.write_bytes(b"\x5a" * 8192)
    assert mdconfig(drv, ["-a", "-t", "vnode", "-f", str(img), "-u", "3"]) == (0, "", "")
    assert drv.read(3, 0, 512) == b"\x5a" * 512
    assert mdconfig(drv, [str(img)]) == (0, "md0\n", "")            # "mdconfig file"
    assert mdconfig(drv, ["-r", "-u", "3", "-s", "32k"]) == (0, "", "")
    assert drv.query(3)["mediasize"] == 32768
    assert mdconfig(drv, ["-r", "-u", "3", "-s", "4k"]) == (1, "", "mdconfig: ioctl(/dev/mdctl): Device busy\n")
    assert mdconfig(drv, ["-r", "-u", "3", "-s", "4k", "-o", "force"]) == (0, "", "")
    assert mdconfig(drv, ["-f", str(tmp_path / "nope")]) == (1, "", "mdconfig: realpath: No such file or directory\n")
    assert mdconfig(drv, ["-f", str(tmp_path)]) == (1, "", f"mdconfig: {tmp_path} is not a regular file\n")
    assert mdconfig(drv, ["-a", "-t", "malloc", "-s", "1m", "-f", str(img)]) == \
        (1, "", "mdconfig: only -t vnode can be used with file name\n")
