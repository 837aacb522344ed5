"""The command line's common path without argparse: the options of each subcommand, read from a cache.

Why: argparse (with the re, gettext and shutil it imports) and building every subcommand's parser
cost about as much as the guest's whole early boot. The parser in tools/cli.py stays the one
definition of the command line: its options are extracted once into a table, cached by the content
hash of the modules that built it (tools/cli.py and what its build_parser() imported), and this
module reads that table. It handles the plain forms (`--opt VALUE`, `--opt=VALUE`, `-o VALUE`,
`-oVALUE`, flags, repeatable options, choices, str/int/float values) and `SUBCOMMAND --help`; for
anything else (an abbreviation, an unknown option, a missing value, a positional argument) it
returns None and argparse parses, so usage and error messages are argparse's own.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from types import SimpleNamespace

TABLE_VERSION = 1
# The argparse actions this reader knows; a subcommand with any other is left to argparse.
_VALUE, _FLAG, _APPEND, _HELP = "value", "flag", "append", "help"
_TYPES = {"str": str, "int": int, "float": float}


def _source_key(paths: list[str]) -> str | None:
    """CRC-32 and Adler-32 of the sources that define the command line (None if one is unreadable)."""
    data = bytearray()
    for path in paths:
        try:
            with open(path, "rb") as f:
                data += path.encode() + b"\0" + f.read() + b"\0"
        except OSError:
            return None
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _cache_path(anchor: str) -> str:
    """One table per checkout (`anchor` is the file of the module that builds the parser): the cache
    root is shared, and another checkout's unchanged sources must not answer for this one's."""
    from kernel_sim.guest.build import cache_root

    tree = f"{zlib.crc32(os.path.abspath(anchor).encode()):08x}"
    return os.path.join(cache_root(), "cli",
                        f"table-v{TABLE_VERSION}-{sys.version_info[0]}{sys.version_info[1]}-{tree}")


def _action_kind(action) -> tuple[str, str] | None:
    """(kind, type name) of an argparse action, or None for one this reader does not model."""
    import argparse

    if isinstance(action, argparse._HelpAction):
        return _HELP, "str"
    if isinstance(action, argparse._StoreTrueAction):
        return _FLAG, "str"
    kinds = {argparse._StoreAction: _VALUE, argparse._AppendAction: _APPEND}
    kind = kinds.get(type(action))
    if kind is None or action.nargs is not None:
        return None
    type_name = {None: "str", str: "str", int: "int", float: "float"}.get(action.type)
    return (kind, type_name) if type_name is not None else None


def _marshallable(value: object) -> bool:
    try:
        marshal.dumps(value)
    except ValueError:
        return False
    return True


def extract(parser) -> dict:
    """The table of a built top-level parser: per subcommand, its options and defaults, or None
    where a subcommand takes positional arguments (it then always goes to argparse)."""
    import argparse

    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    table: dict[str, dict | None] = {}
    for name, sub in subparsers.choices.items():
        options: dict[str, list] = {}
        defaults: dict[str, object] = {}
        usable = True
        for action in sub._actions:
            if not action.option_strings or not _marshallable(action.default):
                usable = False              # a positional argument, or a default the cache cannot hold
                break
            kind = _action_kind(action)
            choices = list(action.choices) if action.choices is not None else None
            if kind is not None and _marshallable(choices):
                for option in action.option_strings:
                    options[option] = [action.dest, kind[0], kind[1], choices]
            # an option this reader does not model stays out of `options`: given, it sends argv to argparse
            if kind is None or kind[0] != _HELP:
                defaults[action.dest] = action.default
        table[name] = {"options": options, "defaults": defaults} if usable else None
    return {"commands": table, "dest": subparsers.dest}


def _load_cache(build_parser) -> tuple[str, dict]:
    """(cache file, its entry: key, sources, table, help texts), rebuilt when a source changed."""
    anchor = sys.modules[build_parser.__module__].__file__
    path = _cache_path(anchor)
    try:
        with open(path, "rb") as f:
            cached = marshal.load(f)
        if anchor in cached["sources"] and cached["key"] == _source_key(cached["sources"]):
            return path, cached
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        pass
    before = set(sys.modules)
    parser = build_parser()
    built_by = [sys.modules[name] for name in sys.modules.keys() - before if name.startswith("tools.")]
    sources = sorted({m.__file__ for m in built_by if getattr(m, "__file__", None)} | {anchor})
    cached = {"key": _source_key(sources), "sources": sources, "table": extract(parser), "help": {}}
    _store(path, cached)
    return path, cached


def _store(path: str, cached: dict) -> None:
    if cached["key"] is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump(cached, f)
        os.replace(tmp, path)
    except OSError:
        pass                      # a read-only cache only costs the parse next time


def load_table(build_parser) -> dict:
    """The cached table when its sources are unchanged, else built from `build_parser()` and cached."""
    return _load_cache(build_parser)[1]["table"]


def _help_columns() -> int:
    """The width argparse formats help for: shutil.get_terminal_size()'s columns (COLUMNS when set,
    else the terminal's, else 80), computed here so that a cached help needs no shutil (and its re)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def help_text(argv: list[str], build_parser) -> str | None:
    """`SUBCOMMAND --help` as argparse prints it, from the cache (rendered by argparse once per width
    and sources), or None for any other argv."""
    if len(argv) != 2 or argv[1] not in ("-h", "--help"):
        return None
    path, cached = _load_cache(build_parser)
    if cached["table"]["commands"].get(argv[0], "absent") == "absent":
        return None
    key = f"{argv[0]}:{_help_columns()}"
    text = cached.get("help", {}).get(key)
    if text is None:
        import argparse

        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
        text = sub.format_help()
        cached.setdefault("help", {})[key] = text
        _store(path, cached)
    return text


def parse(argv: list[str], table: dict) -> SimpleNamespace | None:
    """The namespace argparse would give for `argv`, or None where argparse must decide."""
    if not argv or argv[0] not in table["commands"]:
        return None
    command = table["commands"][argv[0]]
    if command is None:
        return None
    options = command["options"]
    values = {dest: list(default) if isinstance(default, list) else default
              for dest, default in command["defaults"].items()}
    values[table["dest"]] = argv[0]
    i = 1
    while i < len(argv):
        token = argv[i]
        i += 1
        if token.startswith("--"):
            name, eq, attached = token.partition("=")
            spec = options.get(name)
            value = attached if eq else None
        elif token.startswith("-") and len(token) == 2:
            spec, value = options.get(token), None      # "-oVALUE" and "-vx" are argparse's to read
        else:
            return None                      # a positional argument, or "-"
        if spec is None:
            return None                      # unknown, abbreviated or combined: argparse says what it is
        dest, kind, type_name, choices = spec
        if kind == _HELP:
            return None
        if kind == _FLAG:
            if value is not None:
                return None
            values[dest] = True
            continue
        if value is None:
            if i >= len(argv) or argv[i].startswith("-"):
                return None                  # argparse decides what a leading '-' means
            value = argv[i]
            i += 1
        try:
            converted = _TYPES[type_name](value)
        except ValueError:
            return None
        if choices is not None and converted not in choices:
            return None
        if kind == _APPEND:
            values[dest] = [*(values[dest] or []), converted]
        else:
            values[dest] = converted
    return SimpleNamespace(**values)
