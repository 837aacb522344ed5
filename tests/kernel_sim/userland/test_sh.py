"""sh: the grammar, expansion and FreeBSD sh's error wording, run against the real Syscalls."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim.userland.sh import Shell
from kernel_sim.userland.shparse import Parser, ShSyntaxError


def test_words_and_quoting(board) -> None:
    assert board.run("echo a   b 'c  d' \"e  f\" g\\ h") == (0, "a b c  d e  f g h\n")
    assert board.run("echo 'it''s' \"a'b\" 'a\"b' \\$HOME \"\\$x \\\\ \\`\"") == (0, "its a'b a\"b $HOME $x \\ `\n")
    assert board.run("echo '' x \"\" | cat") == (0, " x \n")     # empty quoted words stay words
    assert board.run("echo a\\\nb # a comment\n#only a comment") == (0, "ab\n")


def test_parameters(board) -> None:
    script = ('x=5 y="a b"; echo $x ${x} "$y" ${unset:-dflt} ${x:-no} ${x:+alt} ${#y} ${z:=set} $z\n'
              "set -- one 'two three' four; echo $# $1 \"$2\" $3; for a in \"$@\"; do echo \"[$a]\"; done\n"
              'p=/usr/local/lib.so.1; echo ${p##*/} ${p#*/} ${p%.*} ${p%%.*}\n'
              "echo $0 $((3 * (4 + 1) % 7)) $((x > 2 && 1)) $$")
    status, out = board.run(script)
    assert status == 0
    assert out.splitlines() == ["5 5 a b dflt 5 alt 3 set set", "3 one two three four", "[one]", "[two three]",
                                "[four]", "lib.so.1 usr/local/lib.so.1 /usr/local/lib.so /usr/local/lib",
                                f"/etc/rc 1 1 {board.init.pid}"]


def test_field_splitting_only_on_unquoted_expansions(board) -> None:
    assert board.run('v="1  2   3"; for i in $v; do echo "<$i>"; done; for i in "$v"; do echo "<$i>"; done') == \
        (0, "<1>\n<2>\n<3>\n<1  2   3>\n")
    assert board.run('e=; set -- $e; echo $#; set -- "$e"; echo $#') == (0, "0\n1\n")


def test_and_or_not_and_exit_status(board) -> None:
    assert board.run("false && echo no || echo yes; true && echo both; ! true; echo $?; ! false; echo $?") == \
        (0, "yes\nboth\n1\n0\n")
    assert board.run("false; echo $?; true; echo $?; exit 4") == (4, "1\n0\n")


def test_if_for_while_until_case(board) -> None:
    script = """
if false; then echo a
elif true; then echo b
else echo c
fi
for i in 1 2 3; do
    if [ $i -eq 2 ]; then continue; fi
    echo i=$i
done
n=0
while [ $n -lt 3 ]; do n=$((n + 1)); done; echo n=$n
until [ $n -eq 0 ]; do n=$((n - 1)); [ $n -eq 1 ] && break; done; echo n=$n
for w in alpha beta.txt "x y"; do
    case $w in
    a*) echo "$w: a-word";;
    *.txt|*.md) echo "$w: text";;
    *) echo "$w: other";;
    esac
done
"""
    assert board.run(script) == (0, "b\ni=1\ni=3\nn=3\nn=1\nalpha: a-word\nbeta.txt: text\nx y: other\n")


def test_functions_groups_subshells_and_command_substitution(board) -> None:
    script = ('f() { echo "f:$1:$#"; return 3; }; f a b; echo $?\n'
              "x=1; (x=2; echo in=$x); echo out=$x; { x=3; }; echo $x\n"
              'y=$(echo a; echo b); echo "$y" `echo bq` $(echo $(echo nested))')
    assert board.run(script) == (0, "f:a:2\n3\nin=2\nout=1\n3\na\nb bq nested\n")


def test_pipelines_run_in_sequence_through_a_buffer(board) -> None:
    assert board.run("echo one two | cat | cat") == (0, "one two\n")
    assert board.run("printf_x | cat; echo $?") == (0, "/etc/rc: printf_x: not found\n0\n")
    # the pipeline's status is the last command's; the elements are subshells
    assert board.run("x=1; echo a | x=2; echo $x; true | false; echo $?") == (0, "1\n1\n")


def test_not_found_is_127_and_printed_by_the_child_after_its_redirections(board) -> None:
    assert board.run("nosuch arg; echo $?") == (0, "/etc/rc: nosuch: not found\n127\n")
    assert board.run("nosuch 2>/dev/null; echo $?") == (0, "127\n")
    assert board.run("/tmp/nosuch; echo $?") == (0, "/etc/rc: /tmp/nosuch: not found\n127\n")
    assert board.run("/tmp; echo $?") == (0, "/etc/rc: /tmp: Permission denied\n126\n")


def test_set_e_stops_at_the_failing_command_and_records_its_line(board) -> None:
    sh = Shell(board.init, "/etc/rc")
    status = sh.run_script("set -e\necho one\nif false; then :; fi\nfalse || true\ncat /nope\necho never\n")
    assert status == 1
    assert board.text() == "one\ncat: /nope: No such file or directory\n"
    assert (sh.stop.line, sh.stop.what, sh.stop.status) == (5, "cat /nope", 1)


def test_set_x_traces_commands_with_quoting(board) -> None:
    assert board.run("set -x; v='a b'; echo $v \"$v\"") == (0, "+ v='a b'\n+ echo a b 'a b'\na b a b\n")


@pytest.mark.parametrize(("script", "message"), [
    ("echo start\nif true; then\n  echo x\n", '4: Syntax error: end of file unexpected (expecting "fi")'),
    ("for i in 1 2\ndo echo\n", '3: Syntax error: end of file unexpected (expecting "done")'),
    ("echo 'open\nquote\n", "1: Syntax error: Unterminated quoted string"),
    ("\n\nfi\n", '3: Syntax error: "fi" unexpected'),
    ("if true; echo; fi\n", '1: Syntax error: "fi" unexpected (expecting "then")'),
    ("echo a; ;\n", '1: Syntax error: ";" unexpected'),
    ("echo >\n", "1: Syntax error: newline unexpected"),
    ("for 9 in a; do :; done\n", "1: Syntax error: Bad for loop variable"),
    ("echo ${x!}\n", "1: Syntax error: Bad substitution"),
    ("case x in\n a) echo;;\n", '3: Syntax error: end of file unexpected (expecting ")")'),
])
def test_syntax_errors_stop_the_script_with_freebsd_wording(board, script: str, message: str) -> None:
    status, out = board.run(script)
    assert status == 2
    assert out.endswith(f"/etc/rc: {message}\n")
    assert "x\n" not in out                     # nothing of the broken command ran


def test_lines_before_a_syntax_error_have_run(board) -> None:
    status, out = board.run("echo first\necho second\ndone\necho never\n")
    assert (status, out) == (2, 'first\nsecond\n/etc/rc: 3: Syntax error: "done" unexpected\n')


def test_errors_in_expansions_and_special_builtins_end_the_script(board) -> None:
    assert board.run("echo ${x:?is required}; echo no") == (2, "/etc/rc: x: is required\n")
    assert board.run("shift 3; echo no") == (2, "shift: can't shift that many\n")
    assert board.run("exit foo") == (2, "exit: Illegal number: foo\n")
    assert board.run("echo $((1/0)); echo no") == (2, '/etc/rc: arithmetic expression: division by zero: "1/0"\n')
    # a regular builtin's error only sets the status
    assert board.run("cd /nope; echo $?; [ 1 -eq x ]; echo $?") == \
        (0, "cd: /nope: No such file or directory\n2\n[: x: bad number\n2\n")


def test_dot_and_sh_file(board) -> None:
    board.write_file("/etc/rc.conf", 'size="32m"\nnested=$size-x\n')
    board.write_file("/tmp/script", 'echo "script $0 $# $1"\nexit 5\n')
    board.write_file("/tmp/broken", "echo before\nif\n")
    assert board.run(". /etc/rc.conf; echo $size $nested; sh /tmp/script arg; echo $?") == \
        (0, "32m 32m-x\nscript /tmp/script 1 arg\n5\n")
    assert board.run("sh /tmp/nope; echo $?") == (0, "sh: cannot open /tmp/nope: No such file or directory\n127\n")
    assert board.run("sh /tmp/broken; echo $?") == \
        (0, 'before\n/tmp/broken: 3: Syntax error: end of file unexpected (expecting "then")\n2\n')
    # `.` reports a syntax error with the sourced file's name and line, and it ends the outer script
    assert board.run(". /tmp/broken\necho never") == \
        (2, 'before\n/tmp/broken: 3: Syntax error: end of file unexpected (expecting "then")\n')
    assert board.run(". /tmp/nope; echo never") == (2, ".: cannot open /tmp/nope: No such file or directory\n")
    assert board.run("sh -c 'echo in -c: $0 $1' name one; echo 'echo from stdin' | sh") == \
        (0, "in -c: name one\nfrom stdin\n")


def test_test_builtin(board) -> None:
    board.write_file("/tmp/f", "data")
    script = ('[ -f /tmp/f ] && echo f; [ -d /tmp ] && echo d; [ -e /nope ] || echo no-e; [ -s /tmp/f ] && echo s\n'
              '[ abc = abc -a 2 -gt 1 ] && echo and; [ -z "" ] && echo z; [ -n x ] && echo n\n'
              'test 3 -le 2 -o ! x = y && echo or; [ "(" x ")" ] && echo paren; [ ] || echo empty\n'
              '[ 1 -eq 1; echo $?; test 1 -eq; echo $?')
    assert board.run(script) == (0, "f\nd\nno-e\ns\nand\nz\nn\nor\nparen\nempty\n[: missing ]\n2\n"
                                    "test: -eq: argument expected\n2\n")


def test_interactive_shell_prompts_continues_and_survives_errors(board) -> None:
    lines = iter(["echo hi", "if true; then", "echo inside", "fi", "nosuch", "exit 3", "echo never"])
    sh = Shell(board.init)
    assert sh.interact(lambda: next(lines, None)) == 3
    assert board.text() == "# hi\n# > > inside\n# sh: nosuch: not found\n# "


def test_run_line_reports_errors_and_goes_on(board) -> None:
    sh = Shell(board.init)
    assert sh.run_line("echo 'unterminated") == 2
    assert sh.run_line("echo ok") == 0
    assert board.text() == "sh: Syntax error: Unterminated quoted string\nok\n"


def test_parser_reports_eof_for_continuation() -> None:
    with pytest.raises(ShSyntaxError) as exc:
        Parser("while true; do\n").parse_all()
    assert exc.value.at_eof and exc.value.message == 'end of file unexpected (expecting "done")'


def _single(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _double(s: str) -> str:
    return '"' + "".join("\\" + c if c in '\\"$`' else c for c in s) + '"'


def _backslashes(s: str) -> str:
    return "".join("'\n'" if c == "\n" else "\\" + c for c in s)


_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x2FF) | st.sampled_from("\n\t "),
                max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT, style=st.sampled_from([_single, _double, _backslashes]))
def test_quoting_round_trips_through_echo(board, text: str, style) -> None:
    """Any string quoted by the shell's rules comes back from echo unchanged."""
    status, out = board.run(f"echo x{style(text)}x")
    assert (status, out) == (0, f"x{text}x\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(_TEXT, max_size=5))
def test_quoted_words_stay_separate_arguments(board, words: list[str]) -> None:
    script = "set -- " + " ".join(_single(w) for w in words) + '\necho $#\nfor w in "$@"; do echo "[$w]"; done'
    status, out = board.run(script)
    assert status == 0
    assert out == f"{len(words)}\n" + "".join(f"[{w}]\n" for w in words)


def test_pathname_expansion(board) -> None:
    board.run("touch /tmp/a.txt /tmp/b.txt /tmp/c.md /tmp/.h.txt")
    assert board.run("echo /tmp/*.txt; echo /tmp/[ab]*; echo '/tmp/*.txt' \"/tmp/*\" /tmp/*.none") == \
        (0, "/tmp/a.txt /tmp/b.txt\n/tmp/a.txt /tmp/b.txt\n/tmp/*.txt /tmp/* /tmp/*.none\n")
    assert board.run("cd /tmp; echo *.md ?.txt; for d in /e*/; do echo $d; done") == (0, "c.md a.txt b.txt\n/etc/\n")


def test_read_and_command_substitution_status(board) -> None:
    board.write_file("/tmp/in", "l1 rest of it\nl2\n")
    assert board.run('read a b < /tmp/in; echo "$a|$b"; while read line; do echo "got $line"; done < /tmp/in') == \
        (0, "l1|rest of it\ngot l1 rest of it\ngot l2\n")
    assert board.run("x=$(false); echo $?; x=$(true); echo $?") == (0, "1\n0\n")
    assert board.run("set -e; x=$(exit 3); echo never") == (3, "")
