"""sysctl, kenv, geom, uname, sleep, halt/poweroff/reboot, su and mdconfig through /dev/mdctl."""

from __future__ import annotations

import pytest

from kernel_sim.kern.sysapi import RB_AUTOBOOT, RB_HALT, RB_POWEROFF
from kernel_sim.kern.sysctl import SysctlTree
from kernel_sim.userland.commands.mdconfig import USAGE as MDCONFIG_USAGE

PASSWD = ("root:*:0:0:Charlie &:/root:/bin/sh\noperator:*:2:5:System &:/:/usr/sbin/nologin\n"
          "user:*:1001:1001:A user:/home/user:/bin/sh\n")


@pytest.fixture
def sysboard(make):
    tree = SysctlTree()
    tree.add("kern.ostype", "string", "FreeBSD", description="Operating system type")
    tree.add("kern.osrelease", "string", "12.4-RELEASE")
    tree.add("kern.hostname", "string", "armboard", readonly=False)
    tree.add("kern.maxfiles", "int", 1000, readonly=False)
    board = make(sysctl=tree, kenv={"hint.md.0.type": "malloc", "vfs.root.mountfrom": "ufs:md0"}, md=True)
    board.write_file("/etc/passwd", PASSWD)
    return board


def test_sysctl_reads_sets_and_refuses(sysboard) -> None:
    assert sysboard.run("sysctl kern.ostype kern.osrelease; sysctl -n kern.hostname") == \
        (0, "kern.ostype: FreeBSD\nkern.osrelease: 12.4-RELEASE\narmboard\n")
    assert sysboard.run("sysctl kern.hostname=box kern.maxfiles=2000; sysctl -n kern.hostname kern.maxfiles") == \
        (0, "kern.hostname: armboard -> box\nkern.maxfiles: 1000 -> 2000\nbox\n2000\n")
    assert sysboard.run("sysctl kern.nope; echo $?; sysctl -i kern.nope; echo $?") == \
        (0, "sysctl: unknown oid 'kern.nope'\n1\n0\n")
    assert sysboard.run("sysctl kern.ostype=Linux") == (1, "sysctl: oid 'kern.ostype' is read only\n")
    assert sysboard.run("sysctl kern.maxfiles=lots") == (1, "sysctl: kern.maxfiles=lots: Invalid argument\n")
    assert sysboard.run("su user -c 'sysctl kern.hostname=x'") == \
        (1, "sysctl: kern.hostname=x: Operation not permitted\n")
    assert sysboard.run("sysctl kern")[1].splitlines()[0] == "kern.ostype: FreeBSD"
    assert "vfs.tmpfs.memory_percent: " in sysboard.run("sysctl -a")[1]


def test_kenv(sysboard) -> None:
    assert sysboard.run("kenv") == (0, 'hint.md.0.type="malloc"\nvfs.root.mountfrom="ufs:md0"\n')
    assert sysboard.run("kenv hint.md.0.type; kenv nope; echo $?; kenv -q nope; echo $?") == \
        (0, "malloc\nkenv: unable to get nope\n1\n1\n")
    assert sysboard.run("kenv a=b; kenv a; kenv -u a; kenv -u a") == (1, 'a="b"\nb\nkenv: unable to unset a\n')
    assert sysboard.run("su user -c 'kenv x=y'") == (1, "kenv: unable to set x to y\n")


def test_uname(sysboard) -> None:
    assert sysboard.run("uname; uname -sr; uname -a") == \
        (0, "FreeBSD\nFreeBSD 12.4-RELEASE\nFreeBSD armboard 12.4-RELEASE unknown unknown\n")


def test_sleep_moves_the_virtual_clock(sysboard) -> None:
    assert sysboard.run("sleep 1.5; sleep 1m") == (0, "")
    assert sysboard.kernel.clock.now() == 61.5
    assert sysboard.run("sleep soon") == (1, "sleep: invalid time interval: soon\n")


def test_halt_poweroff_reboot(sysboard) -> None:
    assert sysboard.run("halt; poweroff; reboot; halt -p") == (0, "")
    assert sysboard.reboots == [RB_HALT, RB_POWEROFF, RB_AUTOBOOT, RB_POWEROFF]
    assert sysboard.run("su user -c halt") == (1, "halt: Operation not permitted\n")


def test_su(sysboard) -> None:
    assert sysboard.run("su user -c 'echo $0; touch /x; mkdir /tmp/u'; ls -ln /tmp | cat") == \
        (0, "sh\ntouch: /x: Permission denied\ntotal 0\ndrwxr-xr-x  2 1001  0  0 Jan  1 00:00 u\n")
    assert sysboard.run("su operator -c 'echo hi'; su -m operator -c 'echo hi'") == \
        (0, "This account is currently not available.\nhi\n")
    assert sysboard.run("su nobody -c true") == (1, "su: unknown login: nobody\n")
    assert sysboard.run("su user -c 'su root -c id'") == (1, "su: Sorry\n")


def test_geom(sysboard) -> None:
    sysboard.run("mdconfig -a -t malloc -s 1m -u 3")
    status, out = sysboard.run("geom md list")
    assert status == 0
    assert out.startswith("Geom name: md3\nProviders:\n1. Name: md3\n   Mediasize: 1048576 (1.0M)\n")
    assert sysboard.run("geom list")[1].count("Geom name: md3") == 1
    assert sysboard.run("geom floppy list") == (1, "geom: Class 'floppy' not found.\n")
    assert sysboard.run("geom") == (1, "usage: geom [CLASS] list [name ...]\n")


def test_mdconfig_in_the_guest_goes_through_dev_mdctl(sysboard) -> None:
    md = sysboard.kernel.mesh.md
    calls = []
    real = md.ioctl

    def spy(cmd, data, user=None):
        calls.append(cmd)
        return real(cmd, data, user)

    md.ioctl = spy
    assert sysboard.run("mdconfig -a -t malloc -s 4m -L scratch") == (0, "md0\n")
    assert calls                                            # the request went through /dev/mdctl's ioctl
    assert sysboard.run("mdconfig -l -v") == (0, "md0\tmalloc\t 4096K\t-\tscratch\n")
    assert sysboard.run("dd if=/dev/zero of=/dev/md0 bs=64k count=16 status=none; ls -l /dev/md0")[1].startswith(
        "crw-r-----  1 root  ")
    assert sysboard.run("mdconfig -d -u 0; mdconfig -l; mdconfig -d -u 0") == \
        (1, "mdconfig: ioctl(/dev/mdctl): No such file or directory\n")


def test_mdconfig_vnode_file_in_the_guest_vfs(sysboard) -> None:
    sysboard.write_file("/tmp/disk.img", bytes(64 * 1024))
    assert sysboard.run("cd /tmp; mdconfig -a -t vnode -f disk.img -u 1; mdconfig -l -u 1") == \
        (0, "md1\tvnode\t   64K\t/tmp/disk.img\t\n")
    assert sysboard.run("mdconfig -a -t vnode -f /tmp/nope") == \
        (1, "mdconfig: realpath: No such file or directory\n")
    assert sysboard.run("mdconfig -a -t vnode -f /tmp") == (1, "mdconfig: /tmp is not a regular file\n")


def test_mdconfig_usage_and_missing_driver(make, sysboard) -> None:
    assert sysboard.run("mdconfig -q") == (1, "mdconfig: illegal option -- q\n" + MDCONFIG_USAGE)
    board = make()                                          # no md driver: no /dev/mdctl
    assert board.run("mdconfig -l") == (1, "mdconfig: open(/dev/mdctl): No such file or directory\n")
