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

import re
from dataclasses import dataclass, field
from pathlib import Path

from kernel_sim.errors import InputError, read_text_file
from kernel_sim.loader.sizes import split_lines

# stand/lua/config.lua: env names are [%w%p]+; module prefixes [%w_]+ (later releases add '-').
_LINE_RE = re.compile(r"\s*(?P<name>[^\s=\"#]+)\s*=\s*(?P<rest>.*)")
_MODULE_VAR_RE = re.compile(r"(?P<key>[-A-Za-z0-9_]+)_(?P<field>load|name|type|flags|before|after|error)")
_UNQUOTED_RE = re.compile(r"(?P<value>[^\s\"#]+)\s*(?:#.*)?")
_TRAILER_RE = re.compile(r"\s*(?:#.*)?")

# The module types md(4) attaches as preloaded disks (sys/dev/md/md.c md_preloaded / md_load_images).
MD_IMAGE_TYPES = ("md_image", "mfs_root")
# The module key of the root image in armboard's loader.conf (mfsroot_load=...): the one `--mfsroot FILE`
# (and sweep's generated `--mfsroot-size` image) replaces in place.
ROOT_MODULE = "mfsroot"


@dataclass(frozen=True)
class ModuleSpec:
    """A module loader(8) will preload: ``key`` is the loader.conf prefix (``X`` of ``X_load``).

    ``where`` is the line that named the file (``X_name``, else ``X_load``) for the load step's
    "no such file" message. ``name`` is the file name as written: the loader records it as the module's
    MODINFO_NAME, which md(4) prints ("Preloaded image </boot/mfsroot>").
    """

    key: str
    path: Path
    type: str | None
    where: str
    name: str = ""
    flags: str | None = None


@dataclass
class LoaderConf:
    """The modules to preload, in order, and the kernel environment, with where each variable was set."""

    modules: list[ModuleSpec] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def add_module(
        self,
        key: str,
        path: str | Path,
        *,
        type: str | None = "md_image",
        where: str,
        name: str | None = None,
        flags: str | None = None,
    ) -> ModuleSpec:
        """Add a module after parsing (the CLI's ``--mfsroot FILE``); it replaces one with the same key
        in place, so a command-line image overrides loader.conf's without changing the load order."""
        spec = ModuleSpec(key, Path(path), type, where, name if name is not None else str(path), flags)
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


@dataclass
class _ModuleVars:
    """The control variables seen for one module prefix: field -> (value, where)."""

    first_load_line: int
    fields: dict[str, tuple[str, str]] = field(default_factory=dict)


def _parse_value(rest: str, name: str, where: str) -> str:
    """The value after ``name =``: a quoted string or one word, followed only by a comment."""
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end < 0:
            raise InputError(f'unterminated quote in the value of {name}: " is never closed', where)
        if _TRAILER_RE.fullmatch(rest[end + 1 :]) is None:
            trailer = rest[end + 1 :].strip()
            extra = (trailer.split() or [trailer])[0]
            raise InputError(f"unexpected {extra!r} after the value of {name}", where)
        return rest[1:end]
    if not rest or rest.startswith("#"):
        raise InputError(f'{name} has no value: write {name}="value"', where)
    m = _UNQUOTED_RE.fullmatch(rest)
    if m is None:
        raise InputError(f'the value of {name} is malformed: quote it, as in {name}="value"', where)
    return m.group("value")


def parse_loader_conf_text(text: str, origin: str, *, base_dir: Path | None = None) -> LoaderConf:
    """Parse loader.conf text; ``origin`` names it in "origin:line", ``base_dir`` anchors module paths."""
    base = base_dir if base_dir is not None else Path(origin).parent
    conf = LoaderConf()
    modules: dict[str, _ModuleVars] = {}
    for lineno, line in enumerate(split_lines(text), start=1):
        where = f"{origin}:{lineno}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE_RE.fullmatch(line)
        if m is None:
            raise InputError(f"malformed line: expected name=\"value\", found {stripped!r}", where)
        name = m.group("name")
        value = _parse_value(m.group("rest"), name, where)
        conf.origin[name] = where
        if name == "exec":
            raise InputError("exec runs a loader command, which armboard does not support", where)
        mv = _MODULE_VAR_RE.fullmatch(name)
        if mv is None:
            conf.env[name] = value
            continue
        key, fld = mv.group("key"), mv.group("field")
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
        path = Path(name)
        if not path.is_absolute():
            path = base / path
        mod_type = fields["type"][0] if "type" in fields else None
        flags = fields["flags"][0] if "flags" in fields else None
        conf.modules.append(ModuleSpec(key, path, mod_type or None, where, name, flags))
    return conf


def parse_loader_conf(path: str | Path) -> LoaderConf:
    """Read a loader.conf file; module paths are resolved against its directory."""
    p = Path(path)
    conf = parse_loader_conf_text(read_text_file(p, what="loader.conf"), str(p), base_dir=p.parent)
    conf.path = p
    return conf
