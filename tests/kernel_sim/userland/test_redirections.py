"""Redirections, pipelines and process creation: real open/dup2 in child processes, FreeBSD's messages."""

from __future__ import annotations

from kernel_sim.kern.proc import KstackFailure


def test_output_append_input_and_stderr(board) -> None:
    status, out = board.run("echo one > /tmp/f; echo two >> /tmp/f; cat < /tmp/f; cat /tmp/f /nope > /tmp/g 2>&1; "
                            "cat /tmp/g; cat /nope 2> /tmp/err; echo status $?")
    assert status == 0
    assert out == "one\ntwo\n" + "one\ntwo\ncat: /nope: No such file or directory\n" + "status 1\n"
    assert board.read_file("/tmp/err") == b"cat: /nope: No such file or directory\n"


def test_redirection_order_matters(board) -> None:
    # 2>&1 before >file: stderr stays on the console; after: both go to the file
    assert board.run("cat /nope 2>&1 > /tmp/a; cat /tmp/a") == (0, "cat: /nope: No such file or directory\n")
    assert board.run("cat /nope > /tmp/b 2>&1; cat /tmp/b") == (0, "cat: /nope: No such file or directory\n")


def test_builtins_and_compound_commands_get_the_shell_fds_back(board) -> None:
    status, out = board.run("echo to-file > /tmp/e; { echo a; echo b; } > /tmp/g; "
                            "for i in 1 2; do echo $i; done >> /tmp/g; echo console; cat /tmp/e /tmp/g")
    assert (status, out) == (0, "console\nto-file\na\nb\n1\n2\n")
    assert sorted(board.init.fds) == [0, 1, 2]          # nothing leaked, nothing saved above 9 left over


def test_here_documents(board) -> None:
    script = "x=world\ncat <<EOF\nhello $x\n  \\$literal\nEOF\ncat <<'EOF'\nno $x here\nEOF\necho after"
    assert board.run(script) == (0, "hello world\n  $literal\nno $x here\nafter\n")


def test_redirection_errors_are_freebsd_wording(board) -> None:
    assert board.run("echo x > /nope/f; echo $?") == \
        (0, "/etc/rc: cannot create /nope/f: No such file or directory\n2\n")
    assert board.run("cat < /nope; echo $?") == (0, "/etc/rc: cannot open /nope: No such file or directory\n2\n")
    assert board.run("echo x > /dev; echo $?") == (0, "/etc/rc: cannot create /dev: Is a directory\n2\n")


def test_pipes_carry_bytes_and_stderr_bypasses_them(board) -> None:
    board.write_file("/tmp/bin", bytes(range(256)) * 64)
    status, out = board.run("cat /tmp/bin | cat > /tmp/copy; cat /nope | cat; sha256 /tmp/bin | cat")
    assert status == 0
    assert board.read_file("/tmp/copy") == bytes(range(256)) * 64
    assert out.startswith("cat: /nope: No such file or directory\nSHA256 (/tmp/bin) = ")


def test_each_external_command_is_a_process_with_a_kernel_stack(board) -> None:
    procs = board.kernel.procs
    before = procs.kstacks_allocated
    seen: list[int] = []
    real_fork = procs.fork

    def fork(parent: int, comm: str):
        proc = real_fork(parent, comm)
        seen.append(proc.pid)
        return proc

    procs.fork = fork                           # type: ignore[method-assign]
    assert board.run("echo builtin; true; cat /dev/null; ls /tmp > /dev/null") == (0, "builtin\n")
    assert len(seen) == 2                       # cat and ls; echo and true are builtins
    assert procs.kstacks_allocated == before    # every child exited and gave its stack back


def test_no_kernel_stack_means_cannot_fork(board) -> None:
    procs = board.kernel.procs
    held = []
    while True:
        try:
            held.append(procs.fork(1, "hog"))
        except KstackFailure:
            break
    status, out = board.run("echo builtins still work; cat /etc/passwd; echo never")
    assert (status, out) == (2, "builtins still work\n/etc/rc: Cannot fork: Cannot allocate memory\n")
