"""cat, ls, mkdir, rm, cp, touch, sha256: what they do to the file system and how they report errors."""

from __future__ import annotations

import hashlib
import re

PASSWD = "root:*:0:0:Charlie &:/root:/bin/sh\noperator:*:2:5:System &:/:/usr/sbin/nologin\n"
GROUP = "wheel:*:0:root\noperator:*:5:root\n"


def test_cat_concatenates_and_reports_each_missing_file(board) -> None:
    board.write_file("/tmp/a", "A\n")
    board.write_file("/tmp/b", "B\n")
    assert board.run("cat /tmp/a /nope /tmp/b; echo $?") == (0, "A\ncat: /nope: No such file or directory\nB\n1\n")
    assert board.run("cat /tmp; echo $?") == (0, "cat: /tmp: Is a directory\n1\n")
    assert board.run("echo in | cat /tmp/a - /tmp/b") == (0, "A\nin\nB\n")
    assert board.run("cat -q") == (1, "cat: illegal option -- q\nusage: cat [-belnstuv] [file ...]\n")


def test_ls_long_format_is_freebsds(board) -> None:
    board.write_file("/etc/passwd", PASSWD)
    board.write_file("/etc/group", GROUP)
    board.run("mkdir /tmp/d; echo 12345 > /tmp/file")
    board.init.symlink("file", "/tmp/link")
    blocks = sum(board.init.lstat(f"/tmp/{n}").blocks for n in ("d", "file", "link"))
    status, out = board.run("ls -l /tmp")
    lines = out.splitlines()
    assert status == 0
    assert lines[:3] == [f"total {blocks}",
                         "drwxr-xr-x  2 root  wheel  0 Jan  1 00:00 d",
                         "-rw-r--r--  1 root  wheel  6 Jan  1 00:00 file"]
    assert re.fullmatch(r"lrwx[-r][-w][-x][-r][-w][-x]  1 root  wheel  4 Jan  1 00:00 link -> file", lines[3])


def test_ls_long_pads_columns_and_shows_devices_and_unknown_ids(board) -> None:
    board.write_file("/etc/passwd", PASSWD)
    board.write_file("/tmp/big", b"x" * 123456)
    fd = board.init.open("/tmp/small", 0x0001 | 0x0200, 0o600)
    board.init.close(fd)
    status, out = board.run("ls -l /tmp/big /tmp/small /dev/null")
    lines = out.splitlines()
    assert status == 0
    # operands sorted; links, owner, group and size columns each as wide as the widest
    assert lines[0].startswith("crw-rw-rw-  1 root  0  ") and lines[0].endswith(" Jan  1 00:00 /dev/null")
    assert lines[1] == "-rw-r--r--  1 root  0  123456 Jan  1 00:00 /tmp/big"
    assert lines[2] == "-rw-------  1 root  0       0 Jan  1 00:00 /tmp/small"


def test_ls_dates_follow_the_virtual_clock(board) -> None:
    board.kernel.clock.advance(3 * 86400 + 3600 * 5 + 60 * 7)
    board.write_file("/tmp/new", "x")
    board.kernel.clock.advance(400 * 86400)           # now more than six months later
    board.write_file("/tmp/newer", "y")
    out = board.run("ls -ln /tmp")[1].splitlines()
    assert out[1].endswith(" Jan  4  1970 new")          # older than six months: the year
    assert out[2].endswith(" Feb  8 05:07 newer")


def test_ls_names_hidden_files_and_errors(board) -> None:
    board.run("touch /tmp/.hidden /tmp/b /tmp/a")
    assert board.run("ls /tmp | cat") == (0, ".hidden\na\nb\n")          # root gets -A
    assert board.run("ls -a /tmp | cat") == (0, ".\n..\n.hidden\na\nb\n")
    assert board.run("ls /nope /tmp/a; echo $?") == (0, "ls: /nope: No such file or directory\n/tmp/a\n1\n")
    assert board.run("ls /tmp /dev | cat") == (0, "/dev:\nconsole\nnull\nzero\n\n/tmp:\n.hidden\na\nb\n")


def test_ls_columns_on_the_console(board) -> None:
    for i in range(12):
        board.write_file(f"/tmp/file{i:02d}", "")
    status, out = board.run("ls /tmp")
    assert status == 0
    assert out.splitlines()[0] == "file00\tfile02\tfile04\tfile06\tfile08\tfile10"
    assert len(out.splitlines()) == 2


def test_mkdir_rm(board) -> None:
    assert board.run("mkdir /tmp/a/b; echo $?") == (0, "mkdir: /tmp/a/b: No such file or directory\n1\n")
    assert board.run("mkdir -p /tmp/a/b/c && mkdir -p /tmp/a/b; echo $?; mkdir /tmp/a") == \
        (1, "0\nmkdir: /tmp/a: File exists\n")
    assert board.run("ls -ld /tmp/a/b/c")[1].startswith("drwxr-xr-x ")
    assert board.run("rm /tmp/a; echo $?") == (0, "rm: /tmp/a: is a directory\n1\n")
    assert board.run("rm /tmp/nope; rm -f /tmp/nope; echo $?") == (0, "rm: /tmp/nope: No such file or directory\n0\n")
    assert board.run("rm -r /tmp/a; ls /tmp | cat") == (0, "")
    assert board.run("rm /tmp/..") == (1, 'rm: "." and ".." may not be removed\n')
    assert board.run("rm") == (1, "usage: rm [-f | -i] [-dIPRrvWx] file ...\n       unlink [-h] file\n")


def test_cp_copies_contents_and_directories(board) -> None:
    data = bytes(range(256)) * 300
    board.write_file("/tmp/src", data, mode=0o640)
    assert board.run("cp /tmp/src /tmp/dst; mkdir /tmp/dir; cp /tmp/src /tmp/dst /tmp/dir") == (0, "")
    assert board.read_file("/tmp/dst") == data and board.read_file("/tmp/dir/src") == data
    assert board.init.stat("/tmp/dst").mode & 0o777 == 0o640
    assert board.run("cp /tmp/dir /tmp/d2; echo $?") == (0, "cp: /tmp/dir is a directory (not copied).\n1\n")
    assert board.run("cp -R /tmp/dir /tmp/d2; ls /tmp/d2 | cat") == (0, "dst\nsrc\n")
    assert board.run("cp /nope /tmp/x; cp /tmp/src /tmp/src; cp /tmp/src /tmp/dst /tmp/src") == (1, (
        "cp: /nope: No such file or directory\ncp: /tmp/src and /tmp/src are identical (not copied).\n"
        "cp: /tmp/src is not a directory\n"))


def test_touch_creates_files(board) -> None:
    assert board.run("touch /tmp/t1 /tmp/t2; touch -c /tmp/t3; ls /tmp | cat") == (0, "t1\nt2\n")
    assert board.run("touch /nope/x; echo $?") == (0, "touch: /nope/x: No such file or directory\n1\n")


def test_sha256(board) -> None:
    board.write_file("/tmp/h", b"armboard\n")
    digest = hashlib.sha256(b"armboard\n").hexdigest()
    assert board.run("sha256 /tmp/h /nope; echo $?") == \
        (0, f"SHA256 (/tmp/h) = {digest}\nsha256: /nope: No such file or directory\n1\n")
    assert board.run("sha256 < /tmp/h; sha256 -q /tmp/h; sha256 -r /tmp/h") == \
        (0, f"{digest}\n{digest}\n{digest} /tmp/h\n")
