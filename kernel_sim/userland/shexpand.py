"""Word expansion for sh: parameters, command substitution, arithmetic, field splitting, globbing.

Why a module of its own: expansion is where quoting matters (a quoted "$x" is one field, an unquoted
$x is split on IFS and globbed), and it is easier to check apart from the interpreter. The order is
POSIX's (and FreeBSD expand.c's): tilde, parameters/commands/arithmetic, field splitting, pathname
expansion, quote removal. The shell object supplies variables, $(...) and the file system.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from kernel_sim.kern.sysapi import S_IFDIR, S_IFMT, Sys, SysError
from kernel_sim.userland.shparse import Arith, CmdSub, Lit, Param, Word

Chunk = tuple[str, bool]        # text, quoted (quoted text never splits nor globs)


class ExpandError(Exception):
    """error() during expansion: the message sh prints (after its name) and the status 2."""


class ShellState(Protocol):
    sys: Sys

    def getvar(self, name: str) -> str | None: ...
    def setvar(self, name: str, value: str) -> None: ...
    def positional(self) -> list[str]: ...
    def command_subst(self, text: str, line: int) -> str: ...


class _Field:
    __slots__ = ("chunks", "marked")

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.marked = False       # holds a quoted (possibly empty) part, so it survives as a field


class Expander:
    def __init__(self, sh: ShellState) -> None:
        self.sh = sh

    # public ---------------------------------------------------------------------
    def fields(self, word: Word) -> list[str]:
        """A command's word: split and globbed, as many fields as it makes (maybe none)."""
        out: list[str] = []
        for f in self._expand(word, split=True):
            if not f.chunks and not f.marked:
                continue
            if any(not q and re.search(r"[*?\[]", t) for t, q in f.chunks):
                matches = self._glob(f.chunks)
                if matches:
                    out.extend(matches)
                    continue
            out.append("".join(t for t, _ in f.chunks))
        return out

    def string(self, word: Word) -> str:
        """An assignment's, redirection's or case word: no splitting, no globbing."""
        fs = self._expand(word, split=False)
        return " ".join("".join(t for t, _ in f.chunks) for f in fs)

    def pattern(self, word: Word) -> re.Pattern[str]:
        """A case or ${x%pat} pattern: quoted characters match themselves."""
        chunks: list[Chunk] = []
        for f in self._expand(word, split=False):
            chunks.extend(f.chunks)
        return re.compile(pattern_regex(chunks), re.S)

    # the work ---------------------------------------------------------------------
    def _expand(self, word: Word, split: bool) -> list[_Field]:
        fields = [_Field()]
        parts = list(word.parts)
        if parts and isinstance(parts[0], Lit) and not parts[0].quoted and parts[0].text.startswith("~"):
            head, sep, tail = parts[0].text.partition("/")
            if head == "~":
                home = self.sh.getvar("HOME") or "/"
                parts[0] = Lit(sep + tail, False)
                parts.insert(0, Lit(home, True))
        for part in parts:
            if isinstance(part, Lit):
                fields[-1].chunks.append((part.text, part.quoted))
                if part.quoted:
                    fields[-1].marked = True
                continue
            if isinstance(part, Param) and part.name == "@" and part.op is None and part.quoted:
                params = self.sh.positional()
                fields[-1].marked = fields[-1].marked or bool(params)
                for i, p in enumerate(params):
                    if i:
                        fields.append(_Field())
                        fields[-1].marked = True
                    fields[-1].chunks.append((p, True))
                continue
            value = self._value(part)
            if part.quoted or not split:
                fields[-1].chunks.append((value, True))
                fields[-1].marked = fields[-1].marked or part.quoted
                continue
            self._split_into(fields, value)
        return fields

    def _split_into(self, fields: list[_Field], value: str) -> None:
        ifs = self.sh.getvar("IFS")
        ifs = " \t\n" if ifs is None else ifs
        if not ifs:
            fields[-1].chunks.append((value, False))
            return
        pieces = re.split(f"[{re.escape(ifs)}]+", value)
        for i, piece in enumerate(pieces):
            if i and (fields[-1].chunks and any(t for t, _ in fields[-1].chunks) or fields[-1].marked):
                fields.append(_Field())
            if piece:
                fields[-1].chunks.append((piece, False))

    def _value(self, part: Param | CmdSub | Arith) -> str:
        if isinstance(part, CmdSub):
            return self.sh.command_subst(part.text, part.line)
        if isinstance(part, Arith):
            expr = self.string(part.expr)
            return str(arith(expr, self.sh.getvar))
        return self._param(part)

    def _param(self, p: Param) -> str:
        name = p.name
        if name in ("@", "*"):
            params = self.sh.positional()
            ifs = self.sh.getvar("IFS")
            sep = " " if ifs is None else ifs[:1]
            value: str | None = (sep if p.quoted else " ").join(params) if params else None
        else:
            value = self.sh.getvar(name)
        op = p.op
        if op is None:
            return value or ""
        if op == "len":
            return str(len(value or ""))
        if op in (":-", "-", ":=", "=", ":+", "+", ":?", "?"):
            unset = value is None or (op.startswith(":") and value == "")
            kind = op[-1]
            if kind == "-":
                return self.string(p.arg) if unset and p.arg else ("" if unset else value or "")
            if kind == "=":
                if unset:
                    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                        raise ExpandError(f"${{{name}}}: Bad substitution")
                    new = self.string(p.arg) if p.arg else ""
                    self.sh.setvar(name, new)
                    return new
                return value or ""
            if kind == "+":
                return "" if unset else (self.string(p.arg) if p.arg else "")
            if unset:                                                   # ? and :?
                msg = self.string(p.arg) if p.arg and p.arg.parts else ("parameter not set" if value is None
                                                                         else "parameter null or not set")
                raise ExpandError(f"{name}: {msg}")
            return value or ""
        # pattern removal: # ## % %%
        text = value or ""
        rx = self.pattern(p.arg) if p.arg else re.compile("")
        if op in ("#", "##"):
            ends = range(len(text) + 1) if op == "#" else range(len(text), -1, -1)
            for i in ends:
                if rx.fullmatch(text[:i]):
                    return text[i:]
            return text
        starts = range(len(text), -1, -1) if op == "%" else range(len(text) + 1)
        for i in starts:
            if rx.fullmatch(text[i:]):
                return text[:i]
        return text

    # pathname expansion -------------------------------------------------------------
    def _glob(self, chunks: list[Chunk]) -> list[str]:
        """Pathname expansion through readdir: components with unquoted *?[ match names (not a leading
        dot); the result is sorted, and a pattern that matches nothing stays as it is."""
        comps: list[list[Chunk]] = [[]]
        for text, quoted in chunks:
            pieces = text.split("/")
            for i, piece in enumerate(pieces):
                if i:
                    comps.append([])
                if piece:
                    comps[-1].append((piece, quoted))
        absolute = chunks[0][0].startswith("/") if chunks and chunks[0][0] else False
        bases = ["/" if absolute else ""]
        for ci, comp in enumerate(comps):
            if not comp:
                continue
            last = ci == len(comps) - 1
            text = "".join(t for t, _ in comp)
            magic = any(not q and re.search(r"[*?\[]", t) for t, q in comp)
            nxt: list[str] = []
            for base in bases:
                if not magic:
                    nxt.append(_join(base, text))
                    continue
                rx = re.compile(pattern_regex(comp), re.S)
                try:
                    names = self.sh.sys.readdir(base or ".")
                except SysError:
                    continue
                for name in names:
                    if name in (".", "..") or (name.startswith(".") and not text.startswith(".")):
                        continue
                    if rx.fullmatch(name):
                        path = _join(base, name)
                        if not last and not _is_dir(self.sh.sys, path):
                            continue
                        nxt.append(path)
            bases = nxt
        if not bases:
            return []
        trailing = chunks and chunks[-1][0].endswith("/")
        out = sorted(b + ("/" if trailing else "") for b in bases)
        return [p for p in out if _exists(self.sh.sys, p)]


def _join(base: str, name: str) -> str:
    if not base:
        return name
    return base + name if base.endswith("/") else base + "/" + name


def _is_dir(sys: Sys, path: str) -> bool:
    try:
        return sys.stat(path).mode & S_IFMT == S_IFDIR
    except SysError:
        return False


def _exists(sys: Sys, path: str) -> bool:
    try:
        sys.lstat(path.rstrip("/") or "/")
        return True
    except SysError:
        return False


def pattern_regex(chunks: list[Chunk]) -> str:
    """A shell pattern as a regular expression; quoted text is literal, unquoted * ? [...] are magic."""
    out: list[str] = []
    for text, quoted in chunks:
        if quoted:
            out.append(re.escape(text))
            continue
        i = 0
        while i < len(text):
            c = text[i]
            if c == "*":
                out.append(".*")
            elif c == "?":
                out.append(".")
            elif c == "[":
                j = i + 1
                if j < len(text) and text[j] in "!^":
                    j += 1
                if j < len(text) and text[j] == "]":
                    j += 1
                while j < len(text) and text[j] != "]":
                    j += 1
                if j >= len(text):
                    out.append(re.escape(c))
                else:
                    body = text[i + 1:j]
                    neg = body[:1] in ("!", "^")
                    body = body[1:] if neg else body
                    body = body.replace("\\", "\\\\").replace("^", "\\^")
                    out.append(f"[{'^' if neg else ''}{body}]")
                    i = j
            elif c == "\\" and i + 1 < len(text):
                i += 1
                out.append(re.escape(text[i]))
            else:
                out.append(re.escape(c))
            i += 1
    return "".join(out)


# ----------------------------------------------------------------------------- $(( ))
# Compiled on the first $(( )) (re keeps it in its cache), not when the shell loads on every boot.
_ARITH_TOKEN = (r"\s*(?:(0[xX][0-9a-fA-F]+|[0-9]+)|([A-Za-z_][A-Za-z0-9_]*)|"
                r"(<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%<>&^|!~?:()]))")
_BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="), ("<<", ">>"),
           ("+", "-"), ("*", "/", "%")]


def arith(expr: str, getvar: Callable[[str], str | None]) -> int:
    """$((expr)) in intmax_t; errors worded as FreeBSD's arith_yacc.c ("arithmetic expression: ...")."""
    toks: list[str] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = re.compile(_ARITH_TOKEN).match(text, pos)
        if not m or m.end() == pos:
            raise ExpandError(f'arithmetic expression: syntax error: "{expr}"')
        toks.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    state = {"i": 0}

    def fail(what: str) -> ExpandError:
        return ExpandError(f'arithmetic expression: {what}: "{expr}"')

    def peek() -> str | None:
        return toks[state["i"]] if state["i"] < len(toks) else None

    def take() -> str:
        tok = peek()
        if tok is None:
            raise fail("expecting primary")
        state["i"] += 1
        return tok

    def primary() -> int:
        tok = take()
        if tok == "(":
            v = ternary()
            if take() != ")":
                raise fail("expecting ')'")
            return v
        if tok in ("-", "+", "!", "~"):
            v = primary()
            return {"-": -v, "+": v, "!": int(not v), "~": ~v}[tok]
        if tok[0].isdigit():
            return int(tok, 16) if tok[:2].lower() == "0x" else int(tok, 8) if tok.startswith("0") and len(tok) > 1 \
                else int(tok)
        if tok[0].isalpha() or tok[0] == "_":
            raw = (getvar(tok) or "0").strip() or "0"
            try:
                return arith(raw, getvar) if not raw.lstrip("-").isdigit() else int(raw)
            except ExpandError:
                raise fail("expecting primary") from None
        raise fail("expecting primary")

    def binary(level: int) -> int:
        if level == len(_BINARY):
            return primary()
        v = binary(level + 1)
        while peek() in _BINARY[level]:
            op = take()
            w = binary(level + 1)
            if op in ("/", "%") and w == 0:
                raise fail("division by zero")
            v = _apply(op, v, w)
        return v

    def ternary() -> int:
        v = binary(0)
        if peek() == "?":
            take()
            a = ternary()
            if take() != ":":
                raise fail("expecting ':'")
            b = ternary()
            return a if v else b
        return v

    if not toks:
        return 0
    value = ternary()
    if peek() is not None:
        raise fail("syntax error")
    return value


def _apply(op: str, a: int, b: int) -> int:
    if op == "/":
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    if op == "%":
        return a - b * _apply("/", a, b)
    return {"||": lambda: int(bool(a or b)), "&&": lambda: int(bool(a and b)), "|": lambda: a | b,
            "^": lambda: a ^ b, "&": lambda: a & b, "==": lambda: int(a == b), "!=": lambda: int(a != b),
            "<": lambda: int(a < b), "<=": lambda: int(a <= b), ">": lambda: int(a > b), ">=": lambda: int(a >= b),
            "<<": lambda: a << b, ">>": lambda: a >> b, "+": lambda: a + b, "-": lambda: a - b,
            "*": lambda: a * b}[op]()
