"""kernel_sim.errors: InputError and the one check and text reader every file a user names goes through."""

from __future__ import annotations

import os
import socket

import pytest

from kernel_sim.errors import (
    TEXT_LIMIT,
    InputError,
    check_input_file,
    format_limit,
    read_input_bytes,
    read_text_file,
)


def test_read_text_file_reads_utf8_and_strips_bom(tmp_path) -> None:
    path = tmp_path / "conf"
    path.write_bytes(b"\xef\xbb\xbfident X\n")
    assert read_text_file(path, what="kernel config") == "ident X\n"


def test_read_text_file_missing_names_the_path(tmp_path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(InputError) as info:
        read_text_file(path, what="kernel config")
    assert info.value.where == str(path)
    assert info.value.message == "cannot open kernel config: No such file or directory (ENOENT)"


def test_read_text_file_with_where_names_the_path_in_the_message(tmp_path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(InputError) as info:
        read_text_file(path, what="included file", where="ARM:3")
    assert info.value.where == "ARM:3"
    assert info.value.message == f"cannot open included file {path}: No such file or directory (ENOENT)"


def test_read_text_file_directory(tmp_path) -> None:
    with pytest.raises(InputError) as info:
        read_text_file(tmp_path, what="hints file")
    assert str(info.value) == f"{tmp_path}: hints file is a directory"


def test_read_text_file_binary(tmp_path) -> None:
    path = tmp_path / "kernel.bin"
    path.write_bytes(b"\x7fELF\x01\x01\x00\x00")
    with pytest.raises(InputError, match=r"hints file is not a text file \(it contains NUL bytes\)"):
        read_text_file(path, what="hints file")


def test_read_text_file_invalid_utf8(tmp_path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes(b"ident caf\xe9\n")
    with pytest.raises(InputError, match=r"not a text file \(invalid UTF-8 at byte 9\)"):
        read_text_file(path, what="kernel config")


def test_read_text_file_nul_in_path() -> None:
    with pytest.raises(InputError, match="cannot open kernel config: the path contains a NUL byte"):
        read_text_file("bad\0name", what="kernel config")


def test_read_text_file_read_error(tmp_path, monkeypatch) -> None:
    path = tmp_path / "loader.conf"
    path.write_text("x=1\n")
    real_open = open

    def failing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise OSError(5, "Input/output error")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(InputError) as info:
        read_text_file(path, what="loader.conf")
    assert str(info.value) == f"{path}: cannot read loader.conf: Input/output error (EIO)"


def test_unreadable_file_is_permission_denied(tmp_path, monkeypatch) -> None:
    path = tmp_path / "flash.img"
    path.write_bytes(b"\xff" * 512)
    monkeypatch.setattr(os, "access", lambda p, mode: not mode & os.W_OK)   # root could write anything
    assert check_input_file(path, what="flash image").st_size == 512
    with pytest.raises(InputError) as info:
        check_input_file(path, what="flash image", where="--flash flash0=x", writable=True)
    assert str(info.value) == f"--flash flash0=x: cannot open flash image {path} for writing: Permission denied"


@pytest.mark.parametrize("path, kind", [("/dev/zero", "character device"), ("/dev/null", "character device")])
def test_devices_are_not_regular_files(path, kind) -> None:
    with pytest.raises(InputError) as info:
        check_input_file(path, what="module file", where="--mfsroot")
    assert str(info.value) == f"--mfsroot: module file {path} is not a regular file ({kind})"


def test_fifo_is_refused_without_being_opened(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)        # nobody writes: an open for reading would block this test forever
    with pytest.raises(InputError, match=r"kernel config is not a regular file \(FIFO\)"):
        read_text_file(fifo, what="kernel config")


def test_socket_is_named(tmp_path) -> None:
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(InputError, match=r"dump is not a regular file \(socket\)"):
            check_input_file(path, what="dump")


def test_block_devices_only_where_asked(tmp_path, monkeypatch) -> None:
    import stat as statmod

    path = tmp_path / "disk"
    path.write_bytes(b"x")
    real = os.stat_result(os.stat(path))
    fake = os.stat_result((statmod.S_IFBLK | 0o600, *tuple(real)[1:]))
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: fake if os.fspath(p) == str(path) else real_stat(p, *a, **k))
    with pytest.raises(InputError, match=r"is not a regular file \(block device\)"):
        check_input_file(path, what="flash image")
    assert check_input_file(path, what="input image", block_devices=True) is fake


def test_size_limit_is_named(tmp_path) -> None:
    path = tmp_path / "GENERIC"
    with path.open("wb") as f:
        f.truncate(TEXT_LIMIT + 1)
    with pytest.raises(InputError) as info:
        read_text_file(path, what="kernel config")
    assert info.value.message == (f"kernel config is {TEXT_LIMIT + 1} bytes, larger than the 1 MiB limit for a "
                                  "kernel config")
    assert read_input_bytes(path, what="part file", limit=TEXT_LIMIT + 1)[:4] == b"\0\0\0\0"


def test_a_file_that_grows_after_the_check_is_not_read_past_the_limit(tmp_path, monkeypatch) -> None:
    path = tmp_path / "layout.toml"
    path.write_bytes(b"x" * 100)
    import kernel_sim.errors as errors

    monkeypatch.setattr(errors, "check_input_file", lambda *a, **k: None)   # as if it grew after the stat
    with pytest.raises(InputError, match="larger than the 64 bytes limit for a flash layout"):
        read_input_bytes(path, what="flash layout", limit=64)


@pytest.mark.parametrize("n, text", [(1 << 20, "1 MiB"), (64 << 10, "64 KiB"), (3 << 30, "3 GiB"),
                                     (1000, "1000 bytes")])
def test_format_limit(n, text) -> None:
    assert format_limit(n) == text
