"""Every file the command line takes, directly or through a file it names, is checked on stat(2) before
it is read: a directory, /dev/zero or a FIFO is one `armboard:` line and exit 2, never a hang, a
MemoryError or a traceback; oversized text inputs name their limit."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.cli import main

# The kinds of non-file, and the words the error must use for each.
KINDS = {"directory": "is a directory", "chardev": "is not a regular file (character device)",
         "fifo": "is not a regular file (FIFO)"}


@contextlib.contextmanager
def bounded_memory(extra: int = 512 << 20) -> Iterator[None]:
    """Cap the address space a little above what the process uses, so that a missing check that reads
    /dev/zero to its (never) end fails fast with MemoryError instead of filling the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def fifo_with_a_writer(path: Path) -> Iterator[Path]:
    """A FIFO whose writer connects and hangs up at once, so that a missing check that opens it reads
    an empty file (and fails the test) instead of blocking the test run forever."""
    os.mkfifo(path)

    def writer() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY))      # blocks until somebody opens the read end
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # release the writer if nobody read
        thread.join(5)
        os.close(fd)


@pytest.fixture(params=sorted(KINDS))
def bad_path(request, tmp_path) -> Iterator[tuple[Path, str]]:
    """(a path that is not a regular file, the words its error must contain)."""
    kind = request.param
    if kind == "directory":
        (tmp_path / "dir.toml").mkdir()
        yield tmp_path / "dir.toml", KINDS[kind]
    elif kind == "chardev":
        (tmp_path / "zero.toml").symlink_to("/dev/zero")   # the suffix: --board takes FILE.toml paths
        yield tmp_path / "zero.toml", KINDS[kind]
    else:
        with fifo_with_a_writer(tmp_path / "fifo.toml") as fifo:
            yield fifo, KINDS[kind]


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    with bounded_memory():
        code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("armboard: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


BOOT_OPTIONS: dict[str, Callable[[str], list[str]]] = {
    "--kernconf": lambda p: ["--kernconf", p],
    "--loader-conf": lambda p: ["--loader-conf", p],
    "--hints": lambda p: ["--hints", p],
    "--mfsroot": lambda p: ["--mfsroot", p],
    "--md-image": lambda p: ["--md-image", p],
    "--md-vnode": lambda p: ["--md-vnode", p],
    "--kernel": lambda p: ["--kernel", p],
    "--kernel-footprint": lambda p: ["--kernel-footprint", p],
    "--flash": lambda p: ["--flash", f"flash0={p}"],
    "--board": lambda p: ["--board", p],
}


@pytest.mark.parametrize("option", sorted(BOOT_OPTIONS))
def test_boot_file_options_are_checked_before_they_are_read(capsys, bad_path, option) -> None:
    path, words = bad_path
    code, err = run_cli(capsys, ["boot", "--timeout", "5", *BOOT_OPTIONS[option](str(path))])
    assert_one_line(code, err, str(path), words)


def _kernconf_include(tmp: Path, bad: str) -> list[str]:
    (tmp / "KERN").write_text(f'include "{bad}"\n')
    return ["boot", "--kernconf", str(tmp / "KERN")]


def _mfs_image(tmp: Path, bad: str) -> list[str]:
    (tmp / "KERN").write_text(f'include "{Path("images/GENERIC-VIRT").resolve()}"\noptions MD_ROOT\n'
                              f'options MD_ROOT_SIZE=4096\nmakeoptions MFS_IMAGE="{bad}"\n')
    return ["boot", "--kernconf", str(tmp / "KERN")]


def _loader_module(tmp: Path, bad: str) -> list[str]:
    (tmp / "loader.conf").write_text(f'disk_load="YES"\ndisk_type="md_image"\ndisk_name="{bad}"\n')
    return ["boot", "--loader-conf", str(tmp / "loader.conf")]


def _layout(tmp: Path, bad: str) -> list[str]:
    return ["flash", "build", bad, "-o", str(tmp / "f.img")]


def _layout_part(tmp: Path, bad: str) -> list[str]:
    (tmp / "layout.toml").write_text(f'[flash]\nsize = "1M"\nerase_block = "64K"\n\n'
                                     f'[[part]]\nname = "k"\nfile = "{bad}"\n')
    return ["flash", "build", str(tmp / "layout.toml"), "-o", str(tmp / "f.img")]


def _flash_map(tmp: Path, bad: str) -> list[str]:
    (tmp / "device.hints").write_text("")
    return ["flash", "map", bad, "--hints", str(tmp / "device.hints")]


NESTED: dict[str, Callable[[Path, str], list[str]]] = {
    "kernconf include": _kernconf_include,
    "makeoptions MFS_IMAGE": _mfs_image,
    "loader.conf module": _loader_module,
    "flash layout": _layout,
    "flash layout part file": _layout_part,
    "flash map image": _flash_map,
    "mkuzip input": lambda tmp, bad: ["mkuzip", "-o", str(tmp / "out.uzip"), bad],
    "dump show": lambda tmp, bad: ["dump", "show", bad],
    "flash map --profile": lambda tmp, bad: [*_flash_map(tmp, str(tmp / "flash.img")), "--profile", bad],
    "sweep --out": lambda tmp, bad: ["sweep", "-j", "1", "-g", "NKPT2PG=32", "--out", bad],
}


@pytest.mark.parametrize("case", sorted(NESTED))
def test_files_named_by_files_and_subcommands_are_checked_too(capsys, tmp_path, bad_path, case) -> None:
    path, words = bad_path
    work = tmp_path / "work"
    work.mkdir()
    code, err = run_cli(capsys, NESTED[case](work, str(path)))
    assert_one_line(code, err, str(path), words)


@pytest.mark.parametrize("option, what", [("--kernconf", "kernel config"), ("--loader-conf", "loader.conf"),
                                          ("--hints", "hints file")])
def test_text_inputs_are_read_with_a_size_bound_that_the_error_names(capsys, tmp_path, option, what) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate((1 << 20) + 1)                     # sparse: costs no disk
    code, err = run_cli(capsys, ["boot", option, str(big)])
    assert_one_line(code, err, str(big), f"{what} is {(1 << 20) + 1} bytes, larger than the 1 MiB limit for a {what}")


def test_monitor_host_files_are_checked_too(bad_path) -> None:
    """`mem write PADDR FILE` / `kmem write`: the host file is checked like a command-line one (a boot
    maps more memory than bounded_memory allows, so the reader is driven directly)."""
    from tools.monitor_errors import MonitorError
    from tools.monitor_mem import _read_host

    path, words = bad_path
    with bounded_memory(), pytest.raises(MonitorError) as info:
        _read_host(str(path))
    assert str(path) in str(info.value) and words in str(info.value)
