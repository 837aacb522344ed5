"""The sh(1) lexer and parser: text to a tree, one top-level command at a time.

Why one command at a time: FreeBSD's sh parses and runs a script command by command, so the lines before
a syntax error have already run when the error stops the script, and the error names the line where the
offending token starts ("/etc/rc: 12: Syntax error: end of file unexpected (expecting "fi")", parser.c
synerror/synexpect with startlinno). Token names in those messages are mktokens' (`"fi"`, `newline`,
`end of file`, `word`, `redirection`).

Words keep their structure (literal text with its quoting, $parameters, $(...) commands, $((...)))
so that expansion can tell quoted from unquoted text, as field splitting and globbing need.
"""

from __future__ import annotations

import re

from kernel_sim.record import Record

KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until",
                      "case", "esac", "{", "}", "!"})
# Tokens that end a command list (in command position).
_LIST_END = frozenset({"then", "else", "elif", "fi", "do", "done", "esac", "}"})
_OPERATORS = ("&&", "||", ";;", ";&", ">>", "<<", "<&", ">&", "<>", ">|", ";", "&", "|", "(", ")", "<", ">")
_REDIR_OPS = frozenset({">", ">>", "<", "<&", ">&", "<>", ">|", "<<"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SPECIAL_PARAMS = "@*#?-$!0123456789"


class ShSyntaxError(Exception):
    """A syntax error: `line` is where the offending token starts; `at_eof` tells an interactive
    shell that more input could complete the command (a PS2 continuation)."""

    def __init__(self, message: str, line: int, at_eof: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.at_eof = at_eof


# ----------------------------------------------------------------------------- word parts
class Lit(Record):
    __slots__ = ("text", "quoted")

    def __init__(self, text: str, quoted: bool) -> None:
        self.text = text
        self.quoted = quoted


class Param(Record):
    __slots__ = ("name", "op", "arg", "quoted")

    def __init__(self, name: str, op: str | None = None, arg: Word | None = None, quoted: bool = False) -> None:
        self.name = name
        self.op = op  # ":-", "-", ":=", "=", ":+", "+", ":?", "?", "#", "##", "%", "%%", "len"
        self.arg = arg
        self.quoted = quoted


class CmdSub(Record):
    __slots__ = ("text", "line", "quoted")

    def __init__(self, text: str, line: int, quoted: bool = False) -> None:
        self.text = text
        self.line = line
        self.quoted = quoted


class Arith(Record):
    __slots__ = ("expr", "quoted")

    def __init__(self, expr: Word, quoted: bool = False) -> None:
        self.expr = expr
        self.quoted = quoted


Part = Lit | Param | CmdSub | Arith


class Word(Record):
    __slots__ = ("parts", "line")

    def __init__(self, parts: list[Part], line: int = 0) -> None:
        self.parts = parts
        self.line = line

    def plain(self) -> str | None:
        """The word's text when it is one unquoted literal (how keywords and names are recognised)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Lit) and not self.parts[0].quoted:
            return self.parts[0].text
        return None

    def source(self) -> str:
        """An approximation of the word as written, for `set -x`-less diagnostics."""
        out = []
        for p in self.parts:
            if isinstance(p, Lit):
                out.append(p.text)
            elif isinstance(p, Param):
                out.append("${" + p.name + "}")
            elif isinstance(p, CmdSub):
                out.append("$(" + p.text + ")")
            else:
                out.append("$((" + p.expr.source() + "))")
        return "".join(out)


# ----------------------------------------------------------------------------- tree
class Redir(Record):
    __slots__ = ("fd", "op", "target", "heredoc", "heredoc_quoted")

    def __init__(self, fd: int, op: str, target: Word, heredoc: str | None = None,
                 heredoc_quoted: bool = False) -> None:
        self.fd = fd
        self.op = op
        self.target = target
        self.heredoc = heredoc  # the body of << (expanded unless the delimiter was quoted)
        self.heredoc_quoted = heredoc_quoted


class Simple(Record):
    __slots__ = ("assigns", "words", "redirs", "line")

    def __init__(self, assigns: list[tuple[str, Word]], words: list[Word], redirs: list[Redir], line: int) -> None:
        self.assigns = assigns
        self.words = words
        self.redirs = redirs
        self.line = line


class Pipeline(Record):
    __slots__ = ("cmds", "negate", "line")

    def __init__(self, cmds: list[Node], negate: bool, line: int) -> None:
        self.cmds = cmds
        self.negate = negate
        self.line = line


class AndOr(Record):
    __slots__ = ("first", "rest")

    def __init__(self, first: Pipeline, rest: list[tuple[str, Pipeline]]) -> None:
        self.first = first
        self.rest = rest


class CmdList(Record):
    __slots__ = ("items",)

    def __init__(self, items: list[AndOr]) -> None:
        self.items = items


class If(Record):
    __slots__ = ("branches", "orelse", "redirs", "line")

    def __init__(self, branches: list[tuple[CmdList, CmdList]], orelse: CmdList | None,
                 redirs: list[Redir] | None = None, line: int = 0) -> None:
        self.branches = branches
        self.orelse = orelse
        self.redirs = [] if redirs is None else redirs
        self.line = line


class For(Record):
    __slots__ = ("var", "words", "body", "redirs", "line")

    def __init__(self, var: str, words: list[Word] | None, body: CmdList, redirs: list[Redir] | None = None,
                 line: int = 0) -> None:
        self.var = var
        self.words = words  # None: "$@"
        self.body = body
        self.redirs = [] if redirs is None else redirs
        self.line = line


class While(Record):
    __slots__ = ("cond", "body", "until", "redirs", "line")

    def __init__(self, cond: CmdList, body: CmdList, until: bool, redirs: list[Redir] | None = None,
                 line: int = 0) -> None:
        self.cond = cond
        self.body = body
        self.until = until
        self.redirs = [] if redirs is None else redirs
        self.line = line


class Case(Record):
    __slots__ = ("word", "arms", "redirs", "line")

    def __init__(self, word: Word, arms: list[tuple[list[Word], CmdList | None]], redirs: list[Redir] | None = None,
                 line: int = 0) -> None:
        self.word = word
        self.arms = arms
        self.redirs = [] if redirs is None else redirs
        self.line = line


class Group(Record):
    __slots__ = ("body", "subshell", "redirs", "line")

    def __init__(self, body: CmdList, subshell: bool, redirs: list[Redir] | None = None, line: int = 0) -> None:
        self.body = body
        self.subshell = subshell
        self.redirs = [] if redirs is None else redirs
        self.line = line


class FuncDef(Record):
    __slots__ = ("name", "body", "line")

    def __init__(self, name: str, body: Node, line: int = 0) -> None:
        self.name = name
        self.body = body
        self.line = line


Node = Simple | If | For | While | Case | Group | FuncDef


class Token(Record):
    __slots__ = ("kind", "value", "line", "word")

    def __init__(self, kind: str, value: str, line: int, word: Word | None = None) -> None:
        self.kind = kind  # "word", "op", "ionum", "newline", "eof"
        self.value = value
        self.line = line
        self.word = word

    def keyword(self) -> str | None:
        if self.kind == "word" and self.word is not None:
            text = self.word.plain()
            if text in KEYWORDS:
                return text
        return None

    def name(self) -> str:
        """mktokens' name of the token, as synexpect prints it."""
        if self.kind == "eof":
            return "end of file"
        if self.kind == "newline":
            return "newline"
        if self.kind == "op":
            return "redirection" if self.value in _REDIR_OPS else f'"{self.value}"'
        if self.kind == "ionum":
            return "redirection"
        kw = self.keyword()
        return f'"{kw}"' if kw else "word"


# ----------------------------------------------------------------------------- lexer
class Lexer:
    """Reads tokens on demand from the whole text, counting lines as FreeBSD's plinno does."""

    def __init__(self, text: str, line: int = 1) -> None:
        self.src = text
        self.pos = 0
        self.line = line
        self.pending_heredocs: list[Redir] = []

    def error(self, message: str, line: int | None = None, at_eof: bool = False) -> ShSyntaxError:
        return ShSyntaxError(message, self.line if line is None else line, at_eof)

    def next(self) -> Token:
        src, n = self.src, len(self.src)
        while True:
            while self.pos < n and src[self.pos] in " \t":
                self.pos += 1
            if src.startswith("\\\n", self.pos):
                self.pos += 2
                self.line += 1
                continue
            if self.pos < n and src[self.pos] == "#":
                while self.pos < n and src[self.pos] != "\n":
                    self.pos += 1
            break
        if self.pos >= n:
            return Token("eof", "", self.line)
        c = src[self.pos]
        if c == "\n":
            tok = Token("newline", "\n", self.line)
            self.pos += 1
            self.line += 1
            if self.pending_heredocs:
                self._read_heredocs()
            return tok
        for op in _OPERATORS:
            if src.startswith(op, self.pos):
                self.pos += len(op)
                return Token("op", op, self.line)
        start_line = self.line
        word = self._read_word(start_line)
        text = word.plain()
        if text is not None and text.isdigit() and self.pos < n and src[self.pos] in "<>":
            return Token("ionum", text, start_line)
        return Token("word", text if text is not None else "", start_line, word)

    # words -----------------------------------------------------------------
    def _read_word(self, start_line: int, stop: str = " \t\n;&|<>()") -> Word:
        parts: list[Part] = []
        buf: list[str] = []
        src, n = self.src, len(self.src)

        def flush() -> None:
            if buf:
                parts.append(Lit("".join(buf), False))
                buf.clear()

        while self.pos < n:
            c = src[self.pos]
            if c in stop:
                break
            if c == "\\":
                if self.pos + 1 >= n:
                    buf.append("\\")
                    self.pos += 1
                    continue
                nxt = src[self.pos + 1]
                self.pos += 2
                if nxt == "\n":
                    self.line += 1
                    continue
                flush()
                parts.append(Lit(nxt, True))
            elif c == "'":
                end = src.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("Unterminated quoted string", start_line, at_eof=True)
                flush()
                text = src[self.pos + 1:end]
                self.line += text.count("\n")
                parts.append(Lit(text, True))
                self.pos = end + 1
            elif c == '"':
                flush()
                self.pos += 1
                parts.extend(self._read_dquote(start_line))
            elif c == "$":
                flush()
                parts.append(self._read_dollar(False, start_line))
            elif c == "`":
                flush()
                parts.append(self._read_backquote(False, start_line))
            else:
                buf.append(c)
                self.pos += 1
        flush()
        return Word(parts, start_line)

    def _read_dquote(self, start_line: int) -> list[Part]:
        parts: list[Part] = []
        buf: list[str] = []
        src, n = self.src, len(self.src)
        while True:
            if self.pos >= n:
                raise self.error("Unterminated quoted string", start_line, at_eof=True)
            c = src[self.pos]
            if c == '"':
                self.pos += 1
                break
            if c == "\\" and self.pos + 1 < n and src[self.pos + 1] in '$`"\\\n':
                nxt = src[self.pos + 1]
                self.pos += 2
                if nxt == "\n":
                    self.line += 1
                else:
                    buf.append(nxt)
            elif c == "$" or c == "`":
                if buf:
                    parts.append(Lit("".join(buf), True))
                    buf.clear()
                parts.append(self._read_dollar(True, start_line) if c == "$"
                             else self._read_backquote(True, start_line))
            else:
                if c == "\n":
                    self.line += 1
                buf.append(c)
                self.pos += 1
        if buf or not parts:
            parts.append(Lit("".join(buf), True))      # "" is a word even when empty
        return parts

    def _read_dollar(self, quoted: bool, start_line: int) -> Part:
        src, n = self.src, len(self.src)
        p = self.pos + 1
        if src.startswith("((", p):
            self.pos = p + 2
            return Arith(self._read_arith(start_line), quoted)
        if p < n and src[p] == "(":
            self.pos = p + 1
            line = self.line
            return CmdSub(self._read_balanced(start_line), line, quoted)
        if p < n and src[p] == "{":
            self.pos = p + 1
            return self._read_braced(quoted, start_line)
        if p < n and src[p] in _SPECIAL_PARAMS:
            self.pos = p + 1
            return Param(src[p], quoted=quoted)
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(src, p)
        if m:
            self.pos = m.end()
            return Param(m.group(), quoted=quoted)
        self.pos = p
        return Lit("$", quoted)

    def _read_braced(self, quoted: bool, start_line: int) -> Part:
        src, n = self.src, len(self.src)
        length = False
        if src.startswith("#", self.pos) and self.pos + 1 < n and src[self.pos + 1] != "}":
            length = True
            self.pos += 1
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!0-]").match(src, self.pos)
        if not m:
            if self.pos >= n:
                raise self.error("Missing '}'", start_line, at_eof=True)
            raise self.error("Bad substitution", start_line)
        name = m.group()
        self.pos = m.end()
        if length:
            if not src.startswith("}", self.pos):
                raise self.error("Bad substitution", start_line)
            self.pos += 1
            return Param(name, "len", None, quoted)
        if src.startswith("}", self.pos):
            self.pos += 1
            return Param(name, None, None, quoted)
        for op in (":-", ":=", ":+", ":?", "##", "%%", "-", "=", "+", "?", "#", "%"):
            if src.startswith(op, self.pos):
                self.pos += len(op)
                arg = self._read_param_arg(quoted, start_line)
                return Param(name, op, arg, quoted)
        if self.pos >= n:
            raise self.error("Missing '}'", start_line, at_eof=True)
        raise self.error("Bad substitution", start_line)

    def _read_param_arg(self, quoted: bool, start_line: int) -> Word:
        """The word inside ${X:-word} up to the matching '}' (quotes and nested ${} respected)."""
        parts: list[Part] = []
        buf: list[str] = []
        src, n = self.src, len(self.src)

        def flush() -> None:
            if buf:
                parts.append(Lit("".join(buf), quoted))
                buf.clear()

        while True:
            if self.pos >= n:
                raise self.error("Missing '}'", start_line, at_eof=True)
            c = src[self.pos]
            if c == "}":
                self.pos += 1
                break
            if c == "\\" and self.pos + 1 < n:
                flush()
                parts.append(Lit(src[self.pos + 1], True))
                self.pos += 2
            elif c == "'" and not quoted:
                end = src.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("Unterminated quoted string", start_line, at_eof=True)
                flush()
                parts.append(Lit(src[self.pos + 1:end], True))
                self.pos = end + 1
            elif c == '"':
                flush()
                self.pos += 1
                parts.extend(self._read_dquote(start_line))
            elif c == "$":
                flush()
                parts.append(self._read_dollar(quoted, start_line))
            elif c == "`":
                flush()
                parts.append(self._read_backquote(quoted, start_line))
            else:
                if c == "\n":
                    self.line += 1
                buf.append(c)
                self.pos += 1
        flush()
        return Word(parts, start_line)

    def _read_balanced(self, start_line: int) -> str:
        """The text of $(...) up to its matching ')': nested parentheses and quotes are skipped over."""
        src, n = self.src, len(self.src)
        depth, start = 1, self.pos
        while self.pos < n:
            c = src[self.pos]
            if c == "\\":
                self.pos += 2
                continue
            if c == "'":
                end = src.find("'", self.pos + 1)
                if end < 0:
                    break
                self.line += src.count("\n", self.pos, end)
                self.pos = end + 1
                continue
            if c == '"':
                self.pos += 1
                self._read_dquote(start_line)
                continue
            if c == "\n":
                self.line += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return src[start:self.pos - 1]
            self.pos += 1
        raise self.error('end of file unexpected (expecting ")")', self.line, at_eof=True)

    def _read_backquote(self, quoted: bool, start_line: int) -> CmdSub:
        src, n = self.src, len(self.src)
        self.pos += 1
        line = self.line
        buf: list[str] = []
        while True:
            if self.pos >= n:
                raise self.error("EOF in backquote substitution", start_line, at_eof=True)
            c = src[self.pos]
            if c == "`":
                self.pos += 1
                break
            if c == "\\" and self.pos + 1 < n and src[self.pos + 1] in "$`\\":
                buf.append(src[self.pos + 1])
                self.pos += 2
                continue
            if c == "\n":
                self.line += 1
            buf.append(c)
            self.pos += 1
        return CmdSub("".join(buf), line, quoted)

    def _read_arith(self, start_line: int) -> Word:
        """$(( expr )): the expression is a word (parameters expand inside) up to the matching '))'."""
        src, n = self.src, len(self.src)
        parts: list[Part] = []
        buf: list[str] = []
        depth = 0
        while True:
            if self.pos >= n:
                raise self.error("Missing '))'", start_line, at_eof=True)
            c = src[self.pos]
            if c == ")" and depth == 0:
                if not src.startswith("))", self.pos):
                    raise self.error("Missing '))'", start_line)
                self.pos += 2
                break
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            if c == "$":
                if buf:
                    parts.append(Lit("".join(buf), True))
                    buf.clear()
                parts.append(self._read_dollar(True, start_line))
                continue
            if c == "\n":
                self.line += 1
            buf.append(c)
            self.pos += 1
        if buf:
            parts.append(Lit("".join(buf), True))
        return Word(parts, start_line)

    # here-documents ----------------------------------------------------------
    def read_heredoc_body(self) -> Word:
        """An unquoted here-document's text as a word: $ and ` expand, \\ escapes only $ ` \\ newline."""
        parts: list[Part] = []
        buf: list[str] = []
        src, n = self.src, len(self.src)
        while self.pos < n:
            c = src[self.pos]
            if c == "\\" and self.pos + 1 < n and src[self.pos + 1] in "$`\\\n":
                if src[self.pos + 1] != "\n":
                    buf.append(src[self.pos + 1])
                self.pos += 2
            elif c in "$`":
                if buf:
                    parts.append(Lit("".join(buf), True))
                    buf.clear()
                parts.append(self._read_dollar(True, self.line) if c == "$" else self._read_backquote(True, self.line))
            else:
                if c == "\n":
                    self.line += 1
                buf.append(c)
                self.pos += 1
        if buf or not parts:
            parts.append(Lit("".join(buf), True))
        return Word(parts, 1)

    def _read_heredocs(self) -> None:
        for redir in self.pending_heredocs:
            delim = "".join(p.text for p in redir.target.parts if isinstance(p, Lit))
            strip_tabs = redir.op == "<<-"
            lines: list[str] = []
            while True:
                if self.pos >= len(self.src):
                    break
                end = self.src.find("\n", self.pos)
                end = len(self.src) if end < 0 else end
                line = self.src[self.pos:end]
                self.pos = min(end + 1, len(self.src))
                self.line += 1
                if strip_tabs:
                    line = line.lstrip("\t")
                if line == delim:
                    break
                lines.append(line + "\n")
            redir.heredoc = "".join(lines)
        self.pending_heredocs = []


# ----------------------------------------------------------------------------- parser
class Parser:
    """Recursive descent over FreeBSD sh's grammar (parser.c list/andor/pipeline/command/simplecmd)."""

    def __init__(self, text: str, line: int = 1) -> None:
        self.lex = Lexer(text, line)
        self.tok: Token | None = None

    # token helpers
    def peek(self) -> Token:
        if self.tok is None:
            self.tok = self.lex.next()
        return self.tok

    def take(self) -> Token:
        tok = self.peek()
        self.tok = None
        return tok

    def unexpected(self, expecting: str | None = None) -> ShSyntaxError:
        tok = self.peek()
        msg = f"{tok.name()} unexpected" + (f' (expecting "{expecting}")' if expecting else "")
        return ShSyntaxError(msg, tok.line, at_eof=tok.kind == "eof")

    def expect_kw(self, kw: str) -> Token:
        tok = self.peek()
        if tok.keyword() != kw:
            raise self.unexpected(kw)
        return self.take()

    def skip_newlines(self) -> None:
        while self.peek().kind == "newline":
            self.take()

    # grammar
    def parse_command(self) -> CmdList | None:
        """The next top-level command line, or None at the end of the text."""
        self.skip_newlines()
        if self.peek().kind == "eof":
            return None
        items = [self.and_or()]
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in (";", "&"):
                self.take()
                nxt = self.peek()
                if nxt.kind in ("newline", "eof"):
                    if nxt.kind == "newline":
                        self.take()
                    break
                items.append(self.and_or())
                continue
            if tok.kind == "newline":
                self.take()
                break
            if tok.kind == "eof":
                break
            raise self.unexpected()
        return CmdList(items)

    def parse_all(self) -> list[CmdList]:
        out = []
        while (cmd := self.parse_command()) is not None:
            out.append(cmd)
        return out

    def list_(self) -> CmdList:
        items: list[AndOr] = []
        while True:
            self.skip_newlines()
            tok = self.peek()
            if tok.kind == "eof" or (tok.kind == "op" and tok.value in (")", ";;", ";&")) \
                    or tok.keyword() in _LIST_END:
                break
            items.append(self.and_or())
            tok = self.peek()
            if tok.kind == "op" and tok.value in (";", "&"):
                self.take()
                continue
            if tok.kind == "newline":
                continue
            break
        return CmdList(items)       # may be empty: parser.c list() returns NULL before an end token

    def and_or(self) -> AndOr:
        first = self.pipeline()
        rest: list[tuple[str, Pipeline]] = []
        while (tok := self.peek()).kind == "op" and tok.value in ("&&", "||"):
            self.take()
            self.skip_newlines()
            rest.append((tok.value, self.pipeline()))
        return AndOr(first, rest)

    def pipeline(self) -> Pipeline:
        line = self.peek().line
        negate = False
        while self.peek().keyword() == "!":
            self.take()
            negate = not negate
        cmds = [self.command()]
        while (tok := self.peek()).kind == "op" and tok.value == "|":
            self.take()
            self.skip_newlines()
            cmds.append(self.command())
        return Pipeline(cmds, negate, line)

    def command(self) -> Node:
        tok = self.peek()
        kw = tok.keyword()
        line = tok.line
        node: Node
        if kw == "if":
            self.take()
            branches = [(self.list_(), self._then_body())]
            orelse = None
            while True:
                k = self.peek().keyword()
                if k == "elif":
                    self.take()
                    branches.append((self.list_(), self._then_body()))
                elif k == "else":
                    self.take()
                    orelse = self.list_()
                    self.expect_kw("fi")
                    break
                else:
                    self.expect_kw("fi")
                    break
            node = If(branches, orelse, line=line)
        elif kw in ("while", "until"):
            self.take()
            cond = self.list_()
            self.expect_kw("do")
            body = self.list_()
            self.expect_kw("done")
            node = While(cond, body, kw == "until", line=line)
        elif kw == "for":
            self.take()
            name_tok = self.take()
            name = name_tok.word.plain() if name_tok.word else None
            if name_tok.kind != "word" or not name or not _NAME.match(name):
                raise ShSyntaxError("Bad for loop variable", name_tok.line)
            words: list[Word] | None = None
            self.skip_newlines()
            if self.peek().keyword() == "in":
                self.take()
                words = []
                while self.peek().kind == "word":
                    words.append(self.take().word)   # type: ignore[arg-type]
                tok = self.peek()
                if tok.kind == "newline" or (tok.kind == "op" and tok.value == ";"):
                    self.take()
                else:
                    raise self.unexpected()
            elif self.peek().kind == "op" and self.peek().value == ";":
                self.take()
            self.skip_newlines()
            self.expect_kw("do")
            body = self.list_()
            self.expect_kw("done")
            node = For(name, words, body, line=line)
        elif kw == "case":
            node = self._case(line)
        elif kw == "{":
            self.take()
            body = self.list_()
            self.expect_kw("}")
            node = Group(body, False, line=line)
        elif tok.kind == "op" and tok.value == "(":
            self.take()
            body = self.list_()
            if not (self.peek().kind == "op" and self.peek().value == ")"):
                raise self.unexpected(")")
            self.take()
            node = Group(body, True, line=line)
        elif kw is not None and kw != "!" and kw != "in":
            raise self.unexpected()
        else:
            return self.simple()
        node.redirs.extend(self._trailing_redirs())
        return node

    def _then_body(self) -> CmdList:
        self.expect_kw("then")
        return self.list_()

    def _case(self, line: int) -> Case:
        self.take()
        tok = self.take()
        if tok.kind != "word":
            self.tok = tok
            raise self.unexpected()
        word = tok.word
        self.skip_newlines()
        self.expect_kw("in")
        arms: list[tuple[list[Word], CmdList | None]] = []
        while True:
            self.skip_newlines()
            if self.peek().keyword() == "esac":
                self.take()
                break
            if self.peek().kind == "op" and self.peek().value == "(":
                self.take()
            pats: list[Word] = []
            while True:
                t = self.take()
                if t.kind != "word":              # parser.c reads it as a pattern, then wants ")"
                    self.tok = t
                    raise self.unexpected(")")
                pats.append(t.word)   # type: ignore[arg-type]
                t = self.peek()
                if t.kind == "op" and t.value == "|":
                    self.take()
                    continue
                if t.kind == "op" and t.value == ")":
                    self.take()
                    break
                raise self.unexpected(")")
            self.skip_newlines()
            body = None
            t = self.peek()
            if not (t.kind == "op" and t.value in (";;", ";&")) and t.keyword() != "esac":
                body = self.list_()
            arms.append((pats, body))
            t = self.peek()
            if t.kind == "op" and t.value in (";;", ";&"):
                self.take()
                continue
            self.expect_kw("esac")
            break
        return Case(word, arms, line=line)   # type: ignore[arg-type]

    def _trailing_redirs(self) -> list[Redir]:
        out = []
        while (tok := self.peek()).kind == "ionum" or (tok.kind == "op" and tok.value in _REDIR_OPS):
            out.append(self._redir())
        return out

    def _redir(self) -> Redir:
        tok = self.take()
        fd = None
        if tok.kind == "ionum":
            fd = int(tok.value)
            tok = self.take()
        op = tok.value
        if op == "<<" and self.lex.src.startswith("-", self.lex.pos):
            self.lex.pos += 1
            op = "<<-"
        target = self.take()
        if target.kind != "word":
            self.tok = target
            raise self.unexpected()
        if fd is None:
            fd = 0 if op.startswith("<") else 1
        redir = Redir(fd, op, target.word)   # type: ignore[arg-type]
        if op in ("<<", "<<-"):
            redir.heredoc_quoted = any(isinstance(p, Lit) and p.quoted for p in target.word.parts)  # type: ignore
            self.lex.pending_heredocs.append(redir)
        return redir

    def simple(self) -> Simple:
        line = self.peek().line
        assigns: list[tuple[str, Word]] = []
        words: list[Word] = []
        redirs: list[Redir] = []
        while True:
            tok = self.peek()
            if tok.kind == "word":
                self.take()
                w = tok.word
                assert w is not None
                if not words and (split := _assignment(w)) is not None:
                    assigns.append(split)
                else:
                    words.append(w)
            elif tok.kind == "ionum" or (tok.kind == "op" and tok.value in _REDIR_OPS):
                redirs.append(self._redir())
            elif tok.kind == "op" and tok.value == "(" and len(words) == 1 and not assigns and not redirs:
                name = words[0].plain()
                if not name or not _NAME.match(name):
                    raise ShSyntaxError("Bad function name", tok.line)
                self.take()
                if not (self.peek().kind == "op" and self.peek().value == ")"):
                    raise self.unexpected(")")
                self.take()
                self.skip_newlines()
                body = self.command()
                return FuncDef(name, body, line)   # type: ignore[return-value]
            else:
                break
        if not words and not assigns and not redirs:
            raise self.unexpected()
        return Simple(assigns, words, redirs, line)


def _assignment(w: Word) -> tuple[str, Word] | None:
    first = w.parts[0] if w.parts else None
    if not isinstance(first, Lit) or first.quoted or "=" not in first.text:
        return None
    name, _, rest = first.text.partition("=")
    if not _NAME.match(name):
        return None
    parts: list[Part] = ([Lit(rest, False)] if rest else []) + list(w.parts[1:])
    return name, Word(parts, w.line)


def is_name(text: str) -> bool:
    return bool(_NAME.match(text))
