"""init: /etc/rc in a child, its failures explained with their line, the extra command, the console shells."""

from __future__ import annotations

from pathlib import Path

from kernel_sim.kern.proc import KstackFailure
from kernel_sim.kern.sysctl import SysctlTree
from kernel_sim.userland.init import init_main

ROOTFS = Path(__file__).resolve().parents[3] / "images" / "rootfs"


def _lines(*lines: str):
    it = iter(lines)
    return lambda: next(it, None)


def test_rc_runs_in_a_child_with_autoboot(board) -> None:
    board.write_file("/etc/rc", 'echo "rc $0 $1 pid $$"\n')
    assert init_main(board.init) == 0
    out = board.text()
    assert out.startswith("rc /etc/rc autoboot pid ") and out != f"rc /etc/rc autoboot pid {board.init.pid}\n"
    assert list(board.kernel.procs.procs) == [0, 1]          # the rc shell exited


def test_set_e_failure_names_the_line_and_the_command(board) -> None:
    board.write_file("/etc/rc", "set -e\necho start\nmount -t tmpfs tmpfs /mnt\ncat /nope\necho never\n")
    assert init_main(board.init) == 1
    assert board.text() == ("start\ncat: /nope: No such file or directory\n"
                            "/etc/rc: 4: cat /nope: exit status 1 (set -e)\n"
                            "init: /etc/rc exited with status 1 at line 4\n")


def test_syntax_error_then_the_extra_command(board) -> None:
    board.write_file("/etc/rc", "echo start\nif true; then\n echo x\n")
    assert init_main(board.init, command="echo after rc; exit 3") == 2
    assert board.text() == ('start\n/etc/rc: 4: Syntax error: end of file unexpected (expecting "fi")\n'
                            "init: /etc/rc exited with status 2 at line 4\nafter rc\n")


def test_missing_rc(board) -> None:
    messages: list[str] = []
    assert init_main(board.init, write_console=messages.append) == 127
    assert board.text() == "sh: cannot open /etc/rc: No such file or directory\n"
    assert messages == ["init: /etc/rc exited with status 127\n"]


def test_no_kernel_stack_for_rc(board) -> None:
    board.write_file("/etc/rc", "echo never\n")
    while True:
        try:
            board.kernel.procs.fork(1, "hog")
        except KstackFailure:
            break
    assert init_main(board.init) == 1
    assert board.text() == "init: can't fork for /bin/sh on /dev/console: Cannot allocate memory\n"


def test_single_user_shell(board) -> None:
    board.write_file("/etc/rc", "echo rc must not run\n")
    status = init_main(board.init, single_user=True, read_line=_lines("", "echo hi", "for i in 1 2; do", "echo $i",
                                                                        "done", "exit 3"))
    assert status == 3
    assert board.text() == "Enter full pathname of shell or RETURN for /bin/sh: # hi\n# > > 1\n2\n# "


def test_console_shell_after_rc_and_single_user_after_a_failed_rc(board) -> None:
    board.write_file("/etc/rc", "echo rc ok\n")
    assert init_main(board.init, read_line=_lines("echo typed", "nosuch")) == 0
    assert board.text() == "rc ok\n# typed\n# sh: nosuch: not found\n# "
    board.write_file("/etc/rc", "exit 1\n")
    assert init_main(board.init, read_line=_lines("", "echo rescue")) == 1
    assert board.text() == ("init: /etc/rc exited with status 1\n"
                            "Enter full pathname of shell or RETURN for /bin/sh: # rescue\n# ")


def test_the_shipped_etc_rc_runs(make) -> None:
    """images/rootfs's /etc/rc (set -e, . rc.conf, tmpfs, md, dd, ls, df, sh rc.local) runs to the end."""
    tree = SysctlTree()
    for name, value in (("kern.ostype", "FreeBSD"), ("kern.osrelease", "12.4-RELEASE"), ("kern.hostname", "armboard"),
                        ("kern.version", "FreeBSD 12.4-RELEASE armboard\n"), ("hw.machine", "arm")):
        tree.add(name, "string", value)
    for name in ("vm.kmem_size", "vm.kmem_map_size"):
        tree.add(name, "long", 64 << 20)
    board = make(sysctl=tree, md=True)
    for name in ("rc", "rc.conf", "rc.local", "motd", "passwd", "group"):
        board.write_file(f"/etc/{name}", (ROOTFS / "etc" / name).read_bytes())
    assert init_main(board.init) == 0
    out = board.text()
    assert "Mounting tmpfs on /tmp (size=32m)\n" in out
    assert "vm.kmem_size: 67108864\n" in out
    assert "16+0 records in\n16+0 records out\n1048576 bytes transferred in " in out
    assert "md9\tmalloc\t 4096K\t-\t\n" in out
    assert "/tmp/hello is there\n/tmp/motd is there\n" in out
    assert "Filesystem    Size    Used   Avail Capacity  Mounted on\n" in out
    assert "rc.local: site additions\nFreeBSD armboard 12.4-RELEASE FreeBSD 12.4-RELEASE armboard arm\n" in out
    assert out.endswith((ROOTFS / "etc" / "motd").read_text())
