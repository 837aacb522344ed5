"""sh(1): the guest's shell, a POSIX-sh subset that behaves and words its errors as FreeBSD's /bin/sh.

Why it matters: init runs /etc/rc with it and a user types at it on the console, so scripts written for
FreeBSD work here and fail with the messages a FreeBSD user knows ("/etc/rc: 12: Syntax error: end of file
unexpected (expecting "fi")", "/etc/rc: foo: not found" with status 127, "Cannot fork: Cannot allocate
memory" when no kernel stack is left).

How it runs things: builtins (cd, echo, test/[, set, export, `.`, exit, ...) run in the shell; every
other command runs in a child process from `sys.spawn_kstack` (which takes a real kernel stack), with
its redirections made by open/dup2 in the child, then `main(child, argv)` of the command module, then
`child.exit(status)`. A pipeline `a | b` runs *sequentially*: `a` runs to completion with its standard
output buffered, and the buffer is `b`'s standard input (procsys.py); the kernel has no pipe(2) and
runs one process at a time. Each element of a multi-command pipeline, `( ... )` and `$(...)` run in a
subshell (a copy of the shell's variables), as FreeBSD forks for them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from kernel_sim.kern.sysapi import (
    EBADF,
    O_APPEND,
    O_CREAT,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    S_IFMT,
    S_IFREG,
    Sys,
    SysError,
    strerror,
)
from kernel_sim.record import Record
from kernel_sim.userland import builtins, commands
from kernel_sim.userland.commands._util import UMASK
from kernel_sim.userland.procsys import PipeBuffer, PipeEnd, ProcSys, with_pipes
from kernel_sim.userland.shcommon import FuncReturn, LoopControl, ShellError, ShellExit, quote, read_file
from kernel_sim.userland.shexpand import Expander, ExpandError
from kernel_sim.userland.shparse import (
    AndOr,
    Case,
    CmdList,
    For,
    FuncDef,
    Group,
    If,
    Lexer,
    Node,
    Parser,
    Pipeline,
    Redir,
    ShSyntaxError,
    Simple,
    While,
    Word,
    is_name,
)

SPECIAL_BUILTINS = frozenset({":", ".", "break", "continue", "eval", "exit", "export", "readonly", "return",
                              "set", "shift", "unset"})
REGULAR_BUILTINS = frozenset({"cd", "pwd", "echo", "test", "[", "true", "false", "read"})
BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin")   # where the registry's commands "live"


class Stop(Record):
    """Why a script stopped early: the line and what happened there (init reports it)."""

    __slots__ = ("line", "what", "status")

    def __init__(self, line: int, what: str, status: int) -> None:
        self.line = line
        self.what = what
        self.status = status


class Shell:
    """One shell. `script_name` is $0 and the name in front of its messages (None: an interactive "sh")."""

    def __init__(self, sys: Sys, script_name: str | None = None, args: list[str] | tuple[str, ...] = (),
                 *, interactive: bool = False) -> None:
        self.sys = sys
        self.commandname = script_name
        self.arg0 = script_name or "sh"
        self.params = list(args)
        self.vars: dict[str, str] = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "IFS": " \t\n", "PS4": "+ ",
                                     "PS1": "# " if sys.uid == 0 else "$ ", "PS2": "> ", "HOME": "/"}
        self.exported: set[str] = {"PATH", "HOME"}
        self.functions: dict[str, Node] = {}
        self.status = 0
        self.errexit = False
        self.xtrace = False
        self.interactive = interactive
        self.lineno = 0
        self.exited = False
        self.stop: Stop | None = None
        self.expander = Expander(self)
        self._cmdsub_status: int | None = None
        self._last_command = ""

    # ------------------------------------------------------------------ entry points
    def run_script(self, text: str) -> int:
        """Run a whole script as `sh FILE` does: command by command; a syntax error, an error in a special
        builtin or a failure under `set -e` ends it. Returns the exit status."""
        try:
            self._loop(Parser(text))
        except ShellExit as exc:
            self.status = exc.status
            self.exited = True
        return self.status

    def run_line(self, text: str) -> int:
        """Run one line (or several) as an interactive shell would: errors are reported and the shell
        goes on; `exit` sets `exited`."""
        saved = self.interactive
        self.interactive = True
        try:
            self._loop(Parser(text))
        except ShellExit as exc:
            self.status = exc.status
            self.exited = True
        finally:
            self.interactive = saved
        return self.status

    def interact(self, read_line: Callable[[], str | None], prompt: str = "# ") -> int:
        """The console loop: PS1 (`prompt`) on standard error, a line from `read_line` (None is end of
        file), PS2 ("> ") while a command is unfinished. Returns the last status when input ends or on exit."""
        pending = ""
        self.interactive = True
        while not self.exited:
            self._write(2, prompt if not pending else self.vars.get("PS2", "> "))
            line = read_line()
            if line is None:
                if pending:
                    self._run_interactive(pending)
                break
            pending += line if line.endswith("\n") else line + "\n"
            try:
                Parser(pending).parse_all()
            except ShSyntaxError as exc:
                if exc.at_eof:
                    continue
            text, pending = pending, ""
            self._run_interactive(text)
        return self.status

    def _run_interactive(self, text: str) -> None:
        try:
            self._loop(Parser(text))
        except ShellExit as exc:
            self.status = exc.status
            self.exited = True

    # ------------------------------------------------------------------ the command loop
    def _loop(self, parser: Parser) -> None:
        while True:
            try:
                cmd = parser.parse_command()
            except ShSyntaxError as exc:
                self._synerror(exc)
                if not self.interactive:
                    self.stop = Stop(exc.line, f"Syntax error: {exc.message}", 2)
                    raise ShellExit(2) from None
                self.status = 2
                return
            if cmd is None:
                return
            self._run_top(cmd)

    def _run_top(self, cmd: CmdList) -> None:
        try:
            self.run_list(cmd)
        except ShellError as exc:
            self._warn(exc)
            self.status = exc.status
            if not self.interactive:
                self.stop = Stop(self.lineno, exc.message, exc.status)
                raise ShellExit(exc.status) from None
        except LoopControl:
            pass
        except FuncReturn as exc:
            self.status = exc.status

    def _synerror(self, exc: ShSyntaxError) -> None:
        """parser.c synerror(): "name: LINE: Syntax error: MSG" for a script, "sh: Syntax error: MSG" else."""
        if self.commandname:
            self._write(2, f"{self.commandname}: {exc.line}: Syntax error: {exc.message}\n")
        else:
            self._write(2, f"{self.arg0}: Syntax error: {exc.message}\n")

    def _warn(self, exc: ShellError) -> None:
        self._write(2, f"{exc.prefix or self.commandname or self.arg0}: {exc.message}\n")

    def _write(self, fd: int, text: str) -> None:
        with suppress(SysError):
            self.sys.write(fd, text.encode("utf-8", "surrogateescape"))

    # ------------------------------------------------------------------ variables
    def getvar(self, name: str) -> str | None:
        if name == "?":
            return str(self.status)
        if name == "#":
            return str(len(self.params))
        if name == "$":
            return str(self.sys.pid)
        if name == "0":
            return self.arg0
        if name.isdigit():
            i = int(name)
            return self.params[i - 1] if 0 < i <= len(self.params) else None
        if name == "-":
            return ("e" if self.errexit else "") + ("x" if self.xtrace else "") + ("i" if self.interactive else "")
        if name == "!":
            return None
        if name == "LINENO":
            return str(self.lineno)
        return self.vars.get(name)

    def setvar(self, name: str, value: str) -> None:
        self.vars[name] = value

    def positional(self) -> list[str]:
        return list(self.params)

    def command_subst(self, text: str, line: int) -> str:
        """$(...): the commands run in a subshell whose standard output is captured; trailing newlines go."""
        buf = PipeBuffer()
        sub = self._subshell(with_pipes(self.sys, {1: PipeEnd(buf, True)}))

        def run() -> int:
            sub._loop(Parser(text, line))
            return sub.status

        self._cmdsub_status = sub._in_subshell(run)
        return buf.getvalue().decode("utf-8", "surrogateescape").rstrip("\n")

    # ------------------------------------------------------------------ execution
    def run_list(self, cl: CmdList, tested: bool = False) -> int:
        status = 0
        for ao in cl.items:
            status = self._and_or(ao, tested)
        return status

    def _and_or(self, ao: AndOr, tested: bool) -> int:
        status = self._pipeline(ao.first, tested or bool(ao.rest))
        for i, (op, pl) in enumerate(ao.rest):
            if (op == "&&") == (status == 0):
                status = self._pipeline(pl, tested or i < len(ao.rest) - 1)
        self.status = status
        return status

    def _pipeline(self, pl: Pipeline, tested: bool) -> int:
        self.lineno = pl.line
        if len(pl.cmds) == 1:
            status = self.run_command(pl.cmds[0], tested or pl.negate)
            checked = isinstance(pl.cmds[0], Simple) or (isinstance(pl.cmds[0], Group) and pl.cmds[0].subshell)
        else:
            source: PipeBuffer | None = None
            texts = []
            status = 0
            for i, cmd in enumerate(pl.cmds):
                pipes: dict[int, PipeEnd] = {}
                if source is not None:
                    pipes[0] = PipeEnd(source, False)
                out = PipeBuffer() if i < len(pl.cmds) - 1 else None
                if out is not None:
                    pipes[1] = PipeEnd(out, True)
                sub = self._subshell(with_pipes(self.sys, pipes))
                status = sub._in_subshell(lambda sub=sub, cmd=cmd: sub.run_command(cmd, False))
                texts.append(sub._last_command)
                source = out
            self._last_command = " | ".join(texts)
            checked = True
        if pl.negate:
            status = int(status == 0)
        self.status = status
        if status and self.errexit and checked and not tested and not pl.negate:
            self.stop = Stop(pl.line, self._last_command, status)
            raise ShellExit(status)
        return status

    def run_command(self, node: Node, tested: bool = False) -> int:
        if isinstance(node, Simple):
            return self._simple(node)
        if isinstance(node, FuncDef):
            self.functions[node.name] = node.body
            return 0
        with self._redirected(node.redirs):
            if isinstance(node, If):
                for cond, body in node.branches:
                    if self.run_list(cond, True) == 0:
                        return self.run_list(body, tested)
                return self.run_list(node.orelse, tested) if node.orelse else 0
            if isinstance(node, While):
                return self._while(node, tested)
            if isinstance(node, For):
                return self._for(node, tested)
            if isinstance(node, Case):
                return self._case(node, tested)
            if isinstance(node, Group):
                if node.subshell:
                    sub = self._subshell(self.sys)
                    status = sub._in_subshell(lambda: sub.run_list(node.body, tested))
                    self._last_command = sub._last_command
                    return status
                return self.run_list(node.body, tested)
        raise AssertionError(node)

    def _while(self, node: While, tested: bool) -> int:
        status = 0
        while True:
            if (self.run_list(node.cond, True) == 0) == node.until:
                break
            try:
                status = self.run_list(node.body, tested)
            except LoopControl as ctl:
                if ctl.count > 1:
                    raise LoopControl(ctl.kind, ctl.count - 1) from None
                if ctl.kind == "break":
                    break
        return status

    def _for(self, node: For, tested: bool) -> int:
        items = self.params[:] if node.words is None else [f for w in node.words for f in self._fields(w)]
        status = 0
        for item in items:
            self.vars[node.var] = item
            try:
                status = self.run_list(node.body, tested)
            except LoopControl as ctl:
                if ctl.count > 1:
                    raise LoopControl(ctl.kind, ctl.count - 1) from None
                if ctl.kind == "break":
                    break
        return status

    def _case(self, node: Case, tested: bool) -> int:
        subject = self._string(node.word)
        for pats, body in node.arms:
            for pat in pats:
                try:
                    rx = self.expander.pattern(pat)
                except ExpandError as exc:
                    raise ShellError(str(exc)) from None
                if rx.fullmatch(subject):
                    return self.run_list(body, tested) if body else 0
        return 0

    def _fields(self, word: Word) -> list[str]:
        try:
            return self.expander.fields(word)
        except ExpandError as exc:
            raise ShellError(str(exc)) from None

    def _string(self, word: Word) -> str:
        try:
            return self.expander.string(word)
        except ExpandError as exc:
            raise ShellError(str(exc)) from None

    def _simple(self, node: Simple) -> int:
        self.lineno = node.line
        self._cmdsub_status = None
        argv = [f for w in node.words for f in self._fields(w)]
        assigns = [(name, self._string(w)) for name, w in node.assigns]
        self._last_command = " ".join(argv) if argv else " ".join(f"{n}={v}" for n, v in assigns)
        if self.xtrace:
            shown = [f"{n}={quote(v)}" for n, v in assigns] + [quote(a) for a in argv]
            self._write(2, self.vars.get("PS4", "+ ") + " ".join(shown) + "\n")
        if not argv:
            for name, value in assigns:
                self.vars[name] = value
            status = self._cmdsub_status or 0
            if node.redirs:
                try:
                    with self._redirected(node.redirs):
                        pass
                except ShellError as exc:
                    self._warn(exc)
                    return exc.status
            return status
        name = argv[0]
        if name in self.functions:
            return self._call(name, argv, assigns, node.redirs)
        if name in SPECIAL_BUILTINS:
            for var, value in assigns:
                self.vars[var] = value
            with self._redirected(node.redirs) as io:
                return self._builtin(name, io, argv)
        if name in REGULAR_BUILTINS:
            saved = {var: self.vars.get(var) for var, _ in assigns}
            self.vars.update(dict(assigns))
            try:
                with self._redirected(node.redirs) as io:
                    return self._builtin(name, io, argv)
            except ShellError as exc:
                self._warn(exc)
                return exc.status
            finally:
                for var, old in saved.items():
                    if old is None:
                        self.vars.pop(var, None)
                    else:
                        self.vars[var] = old
        return self._external(argv, node.redirs)

    def _call(self, name: str, argv: list[str], assigns: list[tuple[str, str]], redirs: list[Redir]) -> int:
        saved = self.params
        self.params = argv[1:]
        for var, value in assigns:
            self.vars[var] = value
        try:
            with self._redirected(redirs):
                return self.run_command(self.functions[name])
        except FuncReturn as ret:
            return ret.status
        finally:
            self.params = saved

    # ------------------------------------------------------------------ external commands
    def _external(self, argv: list[str], redirs: list[Redir]) -> int:
        comm = argv[0].rsplit("/", 1)[-1]
        try:
            child = self.sys.spawn_kstack(comm)
        except SysError as exc:
            raise ShellError(f"Cannot fork: {strerror(exc.errno)}") from None   # jobs.c forkshell()
        status = 2
        try:
            try:
                io = self._apply_redirs(child, redirs, None)
            except ShellError as exc:
                _say(child, f"{exc.prefix or self.commandname or self.arg0}: {exc.message}\n")
            else:
                status = self._exec(io, argv)
        finally:
            child.exit(status)
        return status

    def _exec(self, io: Sys, argv: list[str]) -> int:
        """shellexec(): run the command in the child; "not found" (127) is printed by the child, after its
        redirections, as FreeBSD's sh does."""
        name = argv[0]
        prefix = self.commandname or self.arg0
        main: Callable[[Sys, list[str]], int] | None = None
        if "/" not in name:
            if name in commands.COMMANDS:
                main = _load(name)
        else:
            base = name.rsplit("/", 1)[-1]
            if name.rsplit("/", 1)[0] in BIN_DIRS and base in commands.COMMANDS:
                main = _load(base)
            else:
                try:
                    st = io.stat(name)
                except SysError as exc:
                    if exc.errno in (2, 20):       # ENOENT, ENOTDIR
                        _say(io, f"{prefix}: {name}: not found\n")
                        return 127
                    _say(io, f"{prefix}: {name}: {strerror(exc.errno)}\n")
                    return 126
                if st.mode & S_IFMT != S_IFREG:
                    _say(io, f"{prefix}: {name}: Permission denied\n")
                    return 126
                main = _script_main                 # ENOEXEC: the shell runs the file as a script
        if main is None:
            _say(io, f"{prefix}: {name}: not found\n")
            return 127
        try:
            return int(main(io, argv)) & 0xFF
        except SysError as exc:
            _say(io, f"{argv[0]}: {strerror(exc.errno)}\n")
            return 1

    # ------------------------------------------------------------------ redirections
    @contextmanager
    def _redirected(self, redirs: list[Redir]) -> Iterator[Sys]:
        """Redirections for a builtin or compound command in the shell itself: the shell's descriptors
        are saved above 9 and put back afterwards (FreeBSD's redirect(REDIR_PUSH))."""
        if not redirs:
            yield self.sys
            return
        base = self.sys
        io: Sys = ProcSys(base.inner, dict(base.pipes)) if isinstance(base, ProcSys) else ProcSys(base)
        saves: list[tuple[int, int | None]] = []
        try:
            io = self._apply_redirs(io, redirs, saves)
            self.sys = io
            yield io
        finally:
            self.sys = base
            real = base.inner if isinstance(base, ProcSys) else base
            for fd, saved in reversed(saves):
                try:
                    if saved is None:
                        real.close(fd)
                    else:
                        real.dup2(saved, fd)
                        real.close(saved)
                except SysError:
                    pass

    def _apply_redirs(self, io: Sys, redirs: list[Redir], saves: list[tuple[int, int | None]] | None) -> Sys:
        for r in redirs:
            fd = r.fd
            if saves is not None and not any(s[0] == fd for s in saves):
                saves.append((fd, _save_fd(io, fd)))
            if r.op in ("<<", "<<-"):
                body = r.heredoc or ""
                if not r.heredoc_quoted:
                    body = self._heredoc(body)
                io = with_pipes(io, {fd: PipeEnd(PipeBuffer(body.encode("utf-8", "surrogateescape")), False)})
                continue
            target = self._string(r.target)
            if r.op in (">&", "<&"):
                if target == "-":
                    with suppress(SysError):
                        io.close(fd)
                    continue
                if not target.isdigit():
                    raise ShellError(f"{target}: Bad file descriptor")
                if int(target) != fd:
                    try:
                        io.dup2(int(target), fd)
                    except SysError as exc:
                        raise ShellError(f"{target}: {strerror(exc.errno)}") from None
                continue
            flags = {">": O_WRONLY | O_CREAT | O_TRUNC, ">|": O_WRONLY | O_CREAT | O_TRUNC,
                     ">>": O_WRONLY | O_CREAT | O_APPEND, "<": O_RDONLY, "<>": O_RDWR | O_CREAT}[r.op]
            try:
                newfd = io.open(target, flags, 0o666 & ~UMASK)
            except SysError as exc:
                verb = "open" if r.op == "<" else "create"      # redir.c openredirect()
                raise ShellError(f"cannot {verb} {target}: {strerror(exc.errno)}") from None
            if newfd != fd:
                io.dup2(newfd, fd)
                io.close(newfd)
            elif isinstance(io, ProcSys):
                io.pipes.pop(fd, None)
        return io

    def _heredoc(self, body: str) -> str:
        lex = Lexer(body)
        try:
            word = lex.read_heredoc_body()
            return self.expander.string(word)
        except (ShSyntaxError, ExpandError) as exc:
            raise ShellError(str(exc)) from None

    # ------------------------------------------------------------------ subshells
    def _subshell(self, sys: Sys) -> Shell:
        sub = copy.copy(self)
        sub.sys = sys
        sub.vars = dict(self.vars)
        sub.exported = set(self.exported)
        sub.functions = dict(self.functions)
        sub.params = list(self.params)
        sub.expander = Expander(sub)
        sub.interactive = False
        sub.exited = False
        return sub

    def _in_subshell(self, fn: Callable[[], int]) -> int:
        try:
            return fn()
        except ShellExit as exc:
            return exc.status
        except ShellError as exc:
            self._warn(exc)
            return exc.status
        except FuncReturn as exc:
            return exc.status
        except LoopControl:
            return self.status

    # ------------------------------------------------------------------ builtins
    def _builtin(self, name: str, io: Sys, argv: list[str]) -> int:
        return builtins.run(self, name, io, argv)

    def evaluate(self, text: str) -> int:
        """`eval`: the words as commands in this shell, at the current line."""
        self._loop(Parser(text, self.lineno))
        return self.status

    def source(self, text: str, name: str) -> int:
        """`.`: the file's commands in this shell; its messages carry its own name (FreeBSD's dotcmd)."""
        saved = self.commandname
        self.commandname = name
        try:
            self._loop(Parser(text))
        except FuncReturn as exc:
            self.status = exc.status
        finally:
            self.commandname = saved
        return self.status


def _load(name: str) -> Callable[[Sys, list[str]], int] | None:
    """The registry's command, or None while its module is not written yet (memctl until it lands)."""
    try:
        return commands.load(name)
    except ModuleNotFoundError as exc:
        if exc.name == commands.COMMANDS[name]:
            return None
        raise


def _say(io: Sys, text: str) -> None:
    with suppress(SysError):
        io.write(2, text.encode("utf-8", "surrogateescape"))


def _save_fd(io: Sys, fd: int) -> int | None:
    """dup `fd` to the first free descriptor from 10 (None when `fd` is not open)."""
    real = io.inner if isinstance(io, ProcSys) else io
    try:
        real.fstat(fd)
    except SysError:
        return None
    k = 10
    while True:
        try:
            real.fstat(k)
        except SysError as exc:
            if exc.errno != EBADF:
                raise
            break
        k += 1
    real.dup2(fd, k)
    return k


def run_file(sys: Sys, path: str, args: list[str], *, errexit: bool = False, xtrace: bool = False) -> int:
    """`sh FILE ARGS`: FreeBSD's "cannot open" (127 when missing, 126 otherwise) or the script's status."""
    try:
        text = read_file(sys, path)
    except SysError as exc:
        _say(sys, f"sh: cannot open {path}: {strerror(exc.errno)}\n")
        return 127 if exc.errno in (2, 20) else 126
    shell = Shell(sys, path, args)
    shell.errexit, shell.xtrace = errexit, xtrace
    return shell.run_script(text)


def _script_main(sys: Sys, argv: list[str]) -> int:
    return run_file(sys, argv[0], argv[1:])


__all__ = ["Shell", "ShellError", "ShellExit", "Stop", "quote", "read_file", "run_file", "is_name"]
