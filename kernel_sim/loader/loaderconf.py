"""loader.conf(5): the modules loader(8) preloads and the variables it hands the kernel as its environment.

Syntax, as stand/lua/config.lua reads it: ``name="value"`` or ``name=value`` with optional spaces around
``=``, ``#`` comments outside quotes, blank lines. Anything else is a malformed line; the loader prints
"Malformed line" and carries on, we raise an InputError at file:line because a skipped line silently
changes what boots.

Module control variables ``X_load``, ``X_name``, ``X_type``, ``X_flags``, ``X_before``, ``X_after`` and
``X_error`` (``X`` made of letters, digits, ``_`` and ``-``) describe modules and are not exported. Every
module with ``X_load="YES"`` (any case) is loaded, in the file order of the ``_load`` lines; its file is
``X_name`` (default ``X``), resolved against loader.conf's directory when relative; its type is
``X_type`` or None (a kernel module). ``X_before``/``X_after``/``X_error`` name loader commands and
are ignored. ``X_load`` values other than YES/NO are an error (the loader would treat them as NO).

Every other variable goes to the kernel environment, in file order (FreeBSD's loader ``setenv``s them
all and hands the environment to the kernel): ``vfs.root.mountfrom``, ``rootdev``, ``boot_verbose``,
``hint.*``, tunables such as ``vm.kmem_size``. A later assignment replaces an earlier one.
``exec="..."`` runs a loader command, which armboard does not have: it is an error.
"""

from __future__ import annotations

import os
from collections import namedtuple

from kernel_sim.errors import InputError, read_text_file
from kernel_sim.loader.sizes import split_lines

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from kernel_sim.errors import StrPath

# stand/lua/config.lua: env names are [%w%p]+; module prefixes [%w_]+ (later releases add '-').
_MODULE_FIELDS = frozenset(("load", "name", "type", "flags", "before", "after", "error"))
_KEY_CHARS = frozenset("-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NAME_STOP = frozenset('="#')


def _split_assignment(line: str) -> tuple[str, str] | None:
    """(name, rest) of `name = rest`, the name free of blanks, '=', '"' and '#'; None otherwise.
    (String tests, not `re`: every boot with a loader.conf reads it.)"""
    i, n = 0, len(line)
    while i < n and line[i].isspace():
        i += 1
    start = i
    while i < n and not line[i].isspace() and line[i] not in _NAME_STOP:
        i += 1
    name = line[start:i]
    rest = line[i:].lstrip()
    if not name or not rest.startswith("="):
        return None
    return name, rest[1:].lstrip()


def _module_variable(name: str) -> tuple[str, str] | None:
    """(key, field) of a module control variable `KEY_load`, `KEY_name`, ..., else None."""
    key, sep, fld = name.rpartition("_")
    if sep and key and fld in _MODULE_FIELDS and set(key) <= _KEY_CHARS:
        return key, fld
    return None


def _is_trailer(text: str) -> bool:
    """Blanks, then nothing or a comment."""
    rest = text.lstrip()
    return not rest or rest.startswith("#")

# The module types md(4) attaches as preloaded disks (sys/dev/md/md.c md_preloaded / md_load_images).
MD_IMAGE_TYPES = ("md_image", "mfs_root")
# The module key of the root image in armboard's loader.conf (mfsroot_load=...): the one `--mfsroot FILE`
# (and sweep's generated `--mfsroot-size` image) replaces in place.
ROOT_MODULE = "mfsroot"


class ModuleSpec(namedtuple("ModuleSpec", "key path type where name flags", defaults=("", None))):
    """A module loader(8) will preload: ``key`` is the loader.conf prefix (``X`` of ``X_load``).

    ``where`` is the line that named the file (``X_name``, else ``X_load``) for the load step's
    "no such file" message. ``name`` is the file name as written: the loader records it as the module's
    MODINFO_NAME, which md(4) prints ("Preloaded image </boot/mfsroot>").
    """

    __slots__ = ()

    key: str
    path: str
    type: str | None
    where: str
    name: str
    flags: str | None


class LoaderConf:
    """The modules to preload, in order, and the kernel environment, with where each variable was set."""

    __slots__ = ("modules", "env", "origin", "path")

    def __init__(self, modules: list[ModuleSpec] | None = None, env: dict[str, str] | None = None,
                 origin: dict[str, str] | None = None, path: str | None = None) -> None:
        self.modules = [] if modules is None else modules
        self.env = {} if env is None else env
        self.origin = {} if origin is None else origin
        self.path = path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def add_module(
        self,
        key: str,
        path: StrPath,
        *,
        type: str | None = "md_image",
        where: str,
        name: str | None = None,
        flags: str | None = None,
    ) -> ModuleSpec:
        """Add a module after parsing (the CLI's ``--mfsroot FILE``); it replaces one with the same key
        in place, so a command-line image overrides loader.conf's without changing the load order."""
        spec = ModuleSpec(key, os.fspath(path), type, where, name if name is not None else os.fspath(path), flags)
        for i, existing in enumerate(self.modules):
            if existing.key == key:
                self.modules[i] = spec
                return spec
        self.modules.append(spec)
        return spec

    def set_env(self, name: str, value: str, *, where: str) -> None:
        """Set one kernel environment variable (e.g. from the command line), recording where."""
        self.env[name] = value
        self.origin[name] = where

    def update(self, other: LoaderConf) -> None:
        """Merge a later file over this one, as the loader reads loader.conf then loader.conf.local."""
        for spec in other.modules:
            self.add_module(
                spec.key, spec.path, type=spec.type, where=spec.where, name=spec.name, flags=spec.flags
            )
        for name, value in other.env.items():
            self.env[name] = value
        self.origin.update(other.origin)

    def md_images(self) -> list[ModuleSpec]:
        """The modules md(4) attaches as preloaded disks (type md_image or mfs_root), in load order."""
        return [spec for spec in self.modules if spec.type in MD_IMAGE_TYPES]


class _ModuleVars:
    """The control variables seen for one module prefix: field -> (value, where)."""

    __slots__ = ("first_load_line", "fields")

    def __init__(self, first_load_line: int, fields: dict[str, tuple[str, str]] | None = None) -> None:
        self.first_load_line = first_load_line
        self.fields = {} if fields is None else fields

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


def _parse_value(rest: str, name: str, where: str) -> str:
    """The value after ``name =``: a quoted string or one word, followed only by a comment."""
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end < 0:
            raise InputError(f'unterminated quote in the value of {name}: " is never closed', where)
        if not _is_trailer(rest[end + 1 :]):
            trailer = rest[end + 1 :].strip()
            extra = (trailer.split() or [trailer])[0]
            raise InputError(f"unexpected {extra!r} after the value of {name}", where)
        return rest[1:end]
    if not rest or rest.startswith("#"):
        raise InputError(f'{name} has no value: write {name}="value"', where)
    end = 0
    while end < len(rest) and not rest[end].isspace() and rest[end] not in '"#':
        end += 1
    if not end or not _is_trailer(rest[end:]):
        raise InputError(f'the value of {name} is malformed: quote it, as in {name}="value"', where)
    return rest[:end]


def parse_loader_conf_text(text: str, origin: str, *, base_dir: StrPath | None = None) -> LoaderConf:
    """Parse loader.conf text; ``origin`` names it in "origin:line", ``base_dir`` anchors module paths."""
    base = os.fspath(base_dir) if base_dir is not None else os.path.dirname(origin)
    conf = LoaderConf()
    modules: dict[str, _ModuleVars] = {}
    for lineno, line in enumerate(split_lines(text), start=1):
        where = f"{origin}:{lineno}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assignment = _split_assignment(line)
        if assignment is None:
            raise InputError(f"malformed line: expected name=\"value\", found {stripped!r}", where)
        name, rest = assignment
        value = _parse_value(rest, name, where)
        conf.origin[name] = where
        if name == "exec":
            raise InputError("exec runs a loader command, which armboard does not support", where)
        module_var = _module_variable(name)
        if module_var is None:
            conf.env[name] = value
            continue
        key, fld = module_var
        if fld == "load" and value.upper() not in ("YES", "NO"):
            raise InputError(f'{name} must be "YES" or "NO", not "{value}"', where)
        entry = modules.setdefault(key, _ModuleVars(first_load_line=0))
        if fld == "load" and not entry.first_load_line:
            entry.first_load_line = lineno
        entry.fields[fld] = (value, where)
    loaded = [
        (entry.first_load_line, key, entry)
        for key, entry in modules.items()
        if "load" in entry.fields and entry.fields["load"][0].upper() == "YES"
    ]
    for _, key, entry in sorted(loaded, key=lambda t: t[0]):
        fields = entry.fields
        name, where = fields.get("name", (key, fields["load"][1]))
        if not name:
            raise InputError(f"{key}_name is empty: it must name the module's file", where)
        path = name if os.path.isabs(name) else os.path.join(base, name)
        mod_type = fields["type"][0] if "type" in fields else None
        flags = fields["flags"][0] if "flags" in fields else None
        conf.modules.append(ModuleSpec(key, path, mod_type or None, where, name, flags))
    return conf


def parse_loader_conf(path: StrPath) -> LoaderConf:
    """Read a loader.conf file; module paths are resolved against its directory."""
    p = os.fspath(path)
    conf = parse_loader_conf_text(read_text_file(p, what="loader.conf"), p, base_dir=os.path.dirname(p))
    conf.path = p
    return conf
