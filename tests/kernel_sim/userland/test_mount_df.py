"""mount, umount and df: FreeBSD's listing and column formats over the kernel's mount table."""

from __future__ import annotations


def test_mount_lists_like_freebsd(board) -> None:
    assert board.run("mount") == (0, "tmpfs on / (tmpfs, local)\ndevfs on /dev (devfs, local)\n")
    assert board.run("mount -t tmpfs -o size=1m,mode=1777 tmpfs /mnt; mount | cat") == \
        (0, "tmpfs on / (tmpfs, local)\ndevfs on /dev (devfs, local)\ntmpfs on /mnt (tmpfs, local)\n")
    assert board.run("ls -ld /mnt")[1].startswith("drwxrwxrwt ")
    assert board.run("mount -u -r /mnt; mount | cat")[1].endswith("tmpfs on /mnt (tmpfs, local, read-only)\n")
    assert board.run("echo x > /mnt/f; echo $?") == (0, "/etc/rc: cannot create /mnt/f: Read-only file system\n2\n")


def test_mount_and_umount_errors(board) -> None:
    assert board.run("mount -t nofs x /mnt") == (1, "mount: x: Operation not supported by device\n")
    assert board.run("mount /mnt") == (1, "mount: /mnt: unknown special file or file system\n")
    assert board.run("umount /mnt") == (1, "umount: /mnt: not a file system root directory\n")
    assert board.run("umount /nope") == (1, "umount: /nope: No such file or directory\n")
    assert board.run("mount -t tmpfs tmpfs /mnt && umount /mnt && mount | cat") == \
        (0, "tmpfs on / (tmpfs, local)\ndevfs on /dev (devfs, local)\n")


def test_a_user_may_not_mount(board) -> None:
    board.write_file("/etc/passwd", "root:*:0:0::/root:/bin/sh\nop:*:2:5::/:/bin/sh\n")
    assert board.run("su op -c 'mount -t tmpfs tmpfs /mnt'") == (1, "mount: tmpfs: Operation not permitted\n")


def test_df_columns(board) -> None:
    board.run("mount -t tmpfs -o size=1m tmpfs /mnt; dd if=/dev/zero of=/mnt/f bs=1k count=300 status=none")
    fs = board.init.statfs("/mnt")
    used = fs.blocks - fs.bfree
    blocks, used512, avail = fs.blocks * fs.bsize // 512, used * fs.bsize // 512, fs.bavail * fs.bsize // 512
    cap = f"{used / (used + fs.bavail) * 100:5.0f}%"
    status, out = board.run("df /mnt")
    w = max(len("512-blocks"), len(str(blocks)))
    assert (status, out) == (0, f"Filesystem {'512-blocks':>{w}} {'Used':>4} {'Avail':>5} Capacity  Mounted on\n"
                                f"{'tmpfs':<10} {blocks:>{w}} {used512:>4} {avail:>5} {cap}    /mnt\n")
    assert board.run("df -k /mnt")[1].splitlines()[0] == "Filesystem 1K-blocks Used Avail Capacity  Mounted on"


def test_df_human_readable(board) -> None:
    board.run("mount -t tmpfs -o size=1m tmpfs /mnt; dd if=/dev/zero of=/mnt/f bs=1k count=300 status=none")
    status, out = board.run("df -h /mnt /nope")
    assert status == 1
    assert out == ("df: /nope: No such file or directory\n"
                   "Filesystem    Size    Used   Avail Capacity  Mounted on\n"
                   "tmpfs         1.0M    304K    720K    30%    /mnt\n")
    lines = board.run("df")[1].splitlines()
    assert [ln.split()[-1] for ln in lines] == ["on", "/", "/dev", "/mnt"]
    assert lines[2].startswith("devfs ") and lines[2].endswith("100%    /dev")
