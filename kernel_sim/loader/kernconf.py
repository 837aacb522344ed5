"""FreeBSD kernel configuration files (config(5) syntax), read into a ``KernelConfig``.

The statements are those of usr.sbin/config/lang.l: ``ident``, ``machine``, ``cpu``/``nocpu``,
``options``/``option``/``nooptions``, ``device``/``devices``/``nodevice``, ``makeoptions`` (``=`` and
``+=``)/``nomakeoptions``, ``include``, ``files``, ``hints`` and ``maxusers``; ``#`` starts a comment
outside quotes. Option and device names are checked against ``kernel_sim.loader.options``, values are
typed and range-checked there, and every error is an InputError at "file:line".

Choices where we differ from config(8), each to make mistakes visible rather than to change meaning:

* One statement per line. config(8) joins a line that starts with white space to the previous
  statement; here leading white space is ignored and a trailing ``,`` is an error.
* A value ends at a ``,`` (config(8) would take ``1,B=2`` as one value) and may contain spaces inside a
  product (``(12 * 1024)``).
* String options accept both config(8)'s escaped form ``ROOTDEVNAME=\\"ufs:md0\\"`` and a plain quoted
  or bare value; the quotes are not part of the value.
* A flag given a value (``options MD_ROOT=0``) is an error: config(8) would ``#define MD_ROOT 0``, which
  ``#ifdef MD_ROOT`` still takes as set.
* ``ident`` is required, as config(8) requires it ("no ident line specified").
* Relative paths (``include``, ``hints``, ``files``, ``makeoptions MFS_IMAGE``) are resolved against the
  directory of the file that names them.
* ``env`` and ``profile`` are FreeBSD keywords this kernel does not implement: an error says what to do.

Command-line overrides (``KernelConfig.apply_override``): ``-o NAME=VALUE`` sets an option, ``-o NAME``
sets a flag, ``-o NAME=0`` (or ``no``/``off``/``false``) clears a flag and ``-o NAME=1`` (``yes``/``on``/
``true``) sets it. A non-flag option always needs a value. Errors name ``-o NAME=VALUE`` as where.
"""

from __future__ import annotations

import os
from collections import namedtuple

from kernel_sim.errors import InputError, read_text_file
from kernel_sim.loader.options import (
    DEVICE_OPTION_ALIASES,
    INT_MAX,
    OPTIONS,
    OptionKind,
    OptionValue,
    check_device,
    lookup_option,
)
from kernel_sim.loader.sizes import parse_int, split_lines

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from kernel_sim.errors import StrPath

# usr.sbin/config/lang.l: ID [A-Za-z_][-A-Za-z_0-9]*
_ID_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_ID_CHARS = _ID_START | frozenset("-0123456789")


def is_config_identifier(text: str) -> bool:
    """config(8)'s ID: a letter or _, then letters, digits, _ and - (a plain test, not `re`, which
    every boot would otherwise import for it)."""
    return text[:1] in _ID_START and bool(text) and set(text) <= _ID_CHARS

# The arm CPU classes of sys/conf/options.arm that an armv7 kernel may name.
ARM_CPUS = frozenset({"CPU_CORTEXA", "CPU_KRAIT", "CPU_MV_PJ4B"})
# `machine arm <arch>`: pmap-v6 serves both (sys/arm/include/pmap-v6.h).
ARM_ARCHES = frozenset({"armv7", "armv6"})

_FLAG_ON = frozenset({"1", "yes", "on", "true"})
_FLAG_OFF = frozenset({"0", "no", "off", "false"})

_KEYWORDS = (
    "ident", "machine", "cpu", "nocpu", "options", "option", "nooptions", "nooption",
    "device", "devices", "nodevice", "nodevices", "makeoptions", "makeoption",
    "nomakeoptions", "nomakeoption", "include", "files", "hints", "maxusers",
)
_UNSUPPORTED = {
    "env": "static environment files are not supported; put kernel environment variables in loader.conf",
    "profile": "kernel profiling is not supported by this kernel",
    "config": "the old 'config kernel root on ...' statement is not supported; use options ROOTDEVNAME",
    "pseudo-device": "pseudo-device is pre-FreeBSD 5 syntax; write 'device NAME'",
}


class KernelConfig:
    """What a kernel config file set: the options, devices and make options that shape this kernel.

    ``options`` holds only the options that were set (flags as True); ``value()`` fills in defaults.
    ``origin`` says where each thing was last set, as "file:line" or "-o NAME=VALUE": keys are option
    names, "device NAME", "makeoptions NAME", "ident" and "hints".
    """

    __slots__ = (
        "ident", "options", "devices", "makeoptions", "hints_files", "origin", "path", "machine", "cpus", "maxusers",
        "mfs_image", "files", "sources",
    )

    def __init__(self, ident: str = "", options: dict[str, OptionValue] | None = None,
                 devices: set[str] | None = None, makeoptions: dict[str, str] | None = None,
                 hints_files: list[str] | None = None, origin: dict[str, str] | None = None,
                 path: str | None = None, machine: str | None = None, cpus: list[str] | None = None,
                 maxusers: int | None = None, mfs_image: str | None = None, files: list[str] | None = None,
                 sources: list[str] | None = None) -> None:
        self.ident = ident
        self.options = {} if options is None else options
        self.devices = set() if devices is None else devices
        self.makeoptions = {} if makeoptions is None else makeoptions
        self.hints_files = [] if hints_files is None else hints_files
        self.origin = {} if origin is None else origin
        self.path = path
        self.machine = machine  # e.g. "arm armv7"
        self.cpus = [] if cpus is None else cpus
        self.maxusers = maxusers
        self.mfs_image = mfs_image  # makeoptions MFS_IMAGE, resolved against its file's directory
        self.files = [] if files is None else files  # `files` lines, resolved, not read
        self.sources = [] if sources is None else sources  # the top file, then every included file

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def hints_file(self) -> str | None:
        """The static hints file (the last `hints` line's; ``hints_files`` lists all, in order)."""
        return self.hints_files[-1] if self.hints_files else None

    def value(self, name: str) -> OptionValue | None:
        """The option's value if set, else its default (None when FreeBSD computes it at boot)."""
        opt = OPTIONS.get(name)
        if opt is None:
            raise KeyError(f"unknown kernel option {name}")
        if name in self.options:
            return self.options[name]
        return opt.default

    def has(self, name: str) -> bool:
        """Whether the config (or an override) set option ``name``."""
        if name not in OPTIONS:
            raise KeyError(f"unknown kernel option {name}")
        return name in self.options

    def has_device(self, name: str) -> bool:
        """Whether device ``name`` is compiled in, by `device NAME` or its option spelling (GEOM_MAP)."""
        alias = DEVICE_OPTION_ALIASES.get(name)
        return name in self.devices or (alias is not None and alias in self.options)

    def origin_of(self, name: str) -> str:
        """Where option ``name`` got its value: "file:line", "-o ...", or "default (<FreeBSD source>)"."""
        if name in self.origin:
            return self.origin[name]
        opt = OPTIONS.get(name)
        if opt is None:
            raise KeyError(f"unknown kernel option {name}")
        return f"default ({opt.source})"

    def apply_override(self, spec: str) -> None:
        """Apply a command-line ``-o NAME=VALUE`` (or ``-o NAME`` for a flag) on top of the file."""
        where = f"-o {spec}"
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not is_config_identifier(name):
            raise InputError("expected NAME=VALUE, or NAME alone for a flag option", where)
        opt = lookup_option(name, where=where)
        if opt.kind == OptionKind.FLAG:
            word = text.strip().lower()
            if not sep or word in _FLAG_ON:
                self.options[name] = True
                self.origin[name] = where
            elif word in _FLAG_OFF:
                self.options.pop(name, None)
                self.origin.pop(name, None)
            else:
                raise InputError(
                    f"{name} is a flag: write -o {name} to set it or -o {name}=0 to clear it", where
                )
            return
        value_text = text.strip()
        if not sep or not value_text:
            raise InputError(f"{name} needs a value, e.g. -o {name}={opt.example_value()}", where)
        quoted = False
        if opt.kind == OptionKind.STRING:
            value_text, quoted = _unquote(value_text)
        self.options[name] = opt.parse_value(value_text, where=where, quoted=quoted)
        self.origin[name] = where

    def copy(self) -> KernelConfig:
        """An independent copy, so that a sweep can apply overrides to one config many times."""
        import copy  # only sweeps copy a config

        return copy.deepcopy(self)


class _Token(namedtuple("_Token", "kind text")):
    __slots__ = ()

    kind: str  # "word", "str", ",", "=", "+="
    text: str

    def shown(self) -> str:
        if self.kind == "word":
            return f"'{self.text}'"
        if self.kind == "str":
            return f'"{self.text}"'
        return f"'{self.kind}'"


_BLANK = " \t\f\v\r"
_WORD_STOP = frozenset(_BLANK + '#",=')


def _tokenize(line: str, where: str) -> list[_Token]:
    """Split one line into words, quoted strings and punctuation, dropping a trailing comment.

    A quoted string is ``"..."`` or config(8)'s escaped ``\\"...\\"``; ``#`` inside one is not a comment.
    """
    tokens: list[_Token] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in _BLANK:
            i += 1
        elif c == "#":
            break
        elif line.startswith('\\"', i):
            j = line.find('"', i + 2)
            if j < 0:
                raise InputError('unterminated quote: \\" is never closed', where)
            if line[j - 1] != "\\":
                raise InputError('a string opened with \\" must be closed with \\"', where)
            tokens.append(_Token("str", line[i + 2 : j - 1]))
            i = j + 1
        elif c == '"':
            j = line.find('"', i + 1)
            if j < 0:
                raise InputError('unterminated quote: " is never closed', where)
            tokens.append(_Token("str", line[i + 1 : j]))
            i = j + 1
        elif c in ",=":
            tokens.append(_Token(c, c))
            i += 1
        elif line.startswith("+=", i):
            tokens.append(_Token("+=", "+="))
            i += 2
        else:
            j = i
            while j < n and line[j] not in _WORD_STOP and not line.startswith(("+=", '\\"'), j):
                j += 1
            tokens.append(_Token("word", line[i:j]))
            i = j
    return tokens


def _split_list(args: list[_Token], keyword: str, where: str) -> list[list[_Token]]:
    """Split a statement's arguments at commas: ``options A, B=1`` -> [[A], [B, =, 1]]."""
    if not args:
        raise InputError(f"{keyword} needs at least one name", where)
    items: list[list[_Token]] = [[]]
    for tok in args:
        if tok.kind == ",":
            items.append([])
        else:
            items[-1].append(tok)
    if any(not item for item in items):
        raise InputError(f"a name is missing in the {keyword} list (stray ',')", where)
    return items


def _name(item: list[_Token], what: str, where: str, *, alone: bool) -> str:
    """The identifier that starts a list item; with ``alone``, the only token of the item."""
    tok = item[0]
    if tok.kind != "word" or not is_config_identifier(tok.text):
        raise InputError(f"expected {what} name, found {tok.shown()}", where)
    if alone and len(item) > 1:
        raise InputError(
            f"unexpected {item[1].shown()} after {tok.text} (separate names with ',')", where
        )
    return tok.text


def _single_arg(args: list[_Token], keyword: str, what: str, where: str) -> str:
    """The one word or quoted string a statement such as ``include`` takes."""
    if not args:
        raise InputError(f"{keyword} needs {what}", where)
    if len(args) > 1:
        raise InputError(f"unexpected {args[1].shown()} after {keyword} {args[0].shown()}", where)
    if args[0].kind not in ("word", "str") or not args[0].text:
        raise InputError(f"{keyword} needs {what}, found {args[0].shown()}", where)
    return args[0].text


class _Parser:
    """Reads one config file and its includes into a KernelConfig, remembering the include chain."""

    def __init__(self, config: KernelConfig) -> None:
        self.config = config
        self.stack: list[str] = []  # resolved paths of the files being read, for cycle detection
        self.chain: list[str] = []  # the same, as shown in messages

    def read(self, path: str, *, opened_at: str | None) -> None:
        resolved = _resolve(path)
        if resolved in self.stack:
            cycle = " -> ".join([*self.chain[self.stack.index(resolved):], str(path)])
            raise InputError(f"include cycle: {cycle}", opened_at)
        what = "included file" if opened_at else "kernel config"
        text = read_text_file(path, what=what, where=opened_at)
        self.config.sources.append(path)
        self.stack.append(resolved)
        self.chain.append(str(path))
        for lineno, line in enumerate(split_lines(text), start=1):
            where = f"{path}:{lineno}"
            tokens = _tokenize(line, where)
            if tokens:
                self.statement(tokens, path, where)
        self.stack.pop()
        self.chain.pop()

    def statement(self, tokens: list[_Token], path: str, where: str) -> None:
        head, args = tokens[0], tokens[1:]
        if head.kind != "word":
            raise InputError(f"expected a keyword at the start of the line, found {head.shown()}", where)
        keyword = head.text
        cfg = self.config
        if keyword in ("options", "option"):
            for item in _split_list(args, keyword, where):
                self.option(item, where)
        elif keyword in ("nooptions", "nooption"):
            for item in _split_list(args, keyword, where):
                name = _name(item, "an option", where, alone=True)
                lookup_option(name, where=where)
                cfg.options.pop(name, None)
                cfg.origin.pop(name, None)
        elif keyword in ("device", "devices"):
            for item in _split_list(args, keyword, where):
                name = check_device(_name(item, "a device", where, alone=True), where=where)
                cfg.devices.add(name)
                cfg.origin[f"device {name}"] = where
        elif keyword in ("nodevice", "nodevices"):
            for item in _split_list(args, keyword, where):
                name = check_device(_name(item, "a device", where, alone=True), where=where)
                cfg.devices.discard(name)
                cfg.origin.pop(f"device {name}", None)
        elif keyword in ("makeoptions", "makeoption"):
            for item in _split_list(args, keyword, where):
                self.makeoption(item, path, where)
        elif keyword in ("nomakeoptions", "nomakeoption"):
            for item in _split_list(args, keyword, where):
                name = _name(item, "a make option", where, alone=True)
                cfg.makeoptions.pop(name, None)
                cfg.origin.pop(f"makeoptions {name}", None)
                if name == "MFS_IMAGE":
                    cfg.mfs_image = None
        elif keyword == "ident":
            ident = _single_arg(args, keyword, "a kernel name", where)
            if args[0].kind == "word" and not is_config_identifier(ident):
                raise InputError(f"ident {ident!r} is not a valid name (letters, digits, _ and -)", where)
            cfg.ident = ident
            cfg.origin["ident"] = where
        elif keyword == "machine":
            self.machine(args, where)
        elif keyword in ("cpu", "nocpu"):
            cpu = _single_arg(args, keyword, "a CPU class such as CPU_CORTEXA", where)
            if cpu not in ARM_CPUS:
                known = ", ".join(sorted(ARM_CPUS))
                raise InputError(f"unknown cpu {cpu}: an armv7 kernel takes one of {known}", where)
            if keyword == "cpu" and cpu not in cfg.cpus:
                cfg.cpus.append(cpu)
            elif keyword == "nocpu" and cpu in cfg.cpus:
                cfg.cpus.remove(cpu)
        elif keyword == "include":
            name = _single_arg(args, keyword, "a file name", where)
            self.read(_relative_to(path, name), opened_at=where)
        elif keyword == "hints":
            cfg.hints_files.append(_relative_to(path, _single_arg(args, keyword, "a file name", where)))
            cfg.origin["hints"] = where
        elif keyword == "files":
            cfg.files.append(_relative_to(path, _single_arg(args, keyword, "a file name", where)))
        elif keyword == "maxusers":
            number = parse_int(_single_arg(args, keyword, "a number", where), where=where)
            if not 0 <= number <= INT_MAX:
                raise InputError(
                    f"maxusers {number} is out of range: it must be between 0 and {INT_MAX}", where
                )
            cfg.maxusers = number
        elif keyword in _UNSUPPORTED:
            raise InputError(f"{keyword}: {_UNSUPPORTED[keyword]}", where)
        else:
            raise InputError(_unknown_keyword(keyword, args), where)

    def option(self, item: list[_Token], where: str) -> None:
        name = _name(item, "an option", where, alone=False)
        opt = lookup_option(name, where=where)
        text: str | None = None
        quoted = False
        if len(item) > 1:
            sep, rest = item[1], item[2:]
            if sep.kind == "+=":
                raise InputError(f"options cannot be appended to with '+=': write {name}=VALUE", where)
            if sep.kind != "=":
                raise InputError(
                    f"unexpected {sep.shown()} after {name} (separate options with ',')", where
                )
            if len(rest) == 1 and rest[0].kind == "str":
                text, quoted = rest[0].text, True
            elif all(tok.kind == "word" for tok in rest):
                text = " ".join(tok.text for tok in rest)
            else:
                raise InputError(f"the value of {name} is malformed: quote the whole value", where)
        self.config.options[name] = opt.parse_value(text, where=where, quoted=quoted)
        self.config.origin[name] = where

    def makeoption(self, item: list[_Token], path: str, where: str) -> None:
        cfg = self.config
        name = _name(item, "a make option", where, alone=False)
        value = ""
        append = False
        if len(item) > 1:
            sep, rest = item[1], item[2:]
            if sep.kind not in ("=", "+="):
                raise InputError(f"unexpected {sep.shown()} after {name}: write {name}=VALUE", where)
            append = sep.kind == "+="
            if len(rest) > 1:
                raise InputError(
                    f"the value of make option {name} must be one word or a quoted string", where
                )
            if rest:
                value = rest[0].text
        if name == "MFS_IMAGE":
            if append:
                raise InputError("MFS_IMAGE names one file: write makeoptions MFS_IMAGE=PATH", where)
            if not value:
                raise InputError("MFS_IMAGE needs a file name: write makeoptions MFS_IMAGE=PATH", where)
            cfg.mfs_image = _relative_to(path, value)
        if append and cfg.makeoptions.get(name):
            value = f"{cfg.makeoptions[name]} {value}" if value else cfg.makeoptions[name]
        cfg.makeoptions[name] = value
        cfg.origin[f"makeoptions {name}"] = where

    def machine(self, args: list[_Token], where: str) -> None:
        if not args or len(args) > 2 or any(tok.kind != "word" for tok in args):
            raise InputError("machine takes a machine and an architecture: write 'machine arm armv7'", where)
        words = [tok.text for tok in args]
        if words[0] != "arm" or (len(words) == 2 and words[1] not in ARM_ARCHES):
            raise InputError(
                f"machine {' '.join(words)} is not supported: this board is 'machine arm armv7'", where
            )
        self.config.machine = " ".join(words)


def _unquote(text: str) -> tuple[str, bool]:
    """Strip one pair of quotes, \\"...\\" or "...", from a command-line string value."""
    for quote in ('\\"', '"'):
        if len(text) >= 2 * len(quote) and text.startswith(quote) and text.endswith(quote):
            return text[len(quote) : -len(quote)], True
    return text, False


def _relative_to(including: str, name: str) -> str:
    """A path named in ``including``, resolved against that file's directory when relative."""
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(including), name)


def _resolve(path: str) -> str:
    """An absolute, symlink-free form of ``path`` for cycle detection (the path itself if that fails)."""
    try:
        return os.path.realpath(path)
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(path)


def _unknown_keyword(keyword: str, args: list[_Token]) -> str:
    if args and args[0].kind in ("=", "+="):
        return f"unknown keyword {keyword!r}: set options with 'options {keyword}=VALUE'"
    import difflib  # only on the error path: it is slow to import

    close = difflib.get_close_matches(keyword, _KEYWORDS, n=1, cutoff=0.7)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown keyword {keyword!r}{hint}"


def parse_kernconf(path: StrPath) -> KernelConfig:
    """Read a kernel config file (and what it includes) into a KernelConfig; errors name file:line."""
    top = os.fspath(path)
    config = KernelConfig(path=top)
    _Parser(config).read(top, opened_at=None)
    if not config.ident:
        raise InputError("no ident line specified; add a line such as 'ident ARMBOARD'", str(top))
    return config
