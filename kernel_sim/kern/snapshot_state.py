"""The Python kernel's state in a snapshot: its object graph, with the board referred to, not copied.

Between two steps of mi_startup no kernel frame is live, so the kernel *is* its objects: the
StartupRun and everything it reaches (pmap, kmem, GEOM, VFS, processes, sysctl tree). They are
pickled with three additions to the standard pickler:

* the board's parts (the Machine, its bus, regions, flash banks, console, swap store: Machine.parts())
  and the host's runtime objects (the console stream, the terminal's line reader, watchers) become
  references by name (calls of _ref), resolved against the restored board and the new run when
  loading: the board saves its own state in the same file (board/snapshot.py);
* what the standard pickler refuses but the kernel uses: closures and lambdas (sysctl handlers,
  callbacks; saved as their code's place in the source plus their cells, so a snapshot loads only
  into the same armboard), mapping proxies, struct.Struct, weak containers, itertools.count, locks
  nobody holds;
* anything that is a live thread of execution (a generator, a frame) or a host resource the kernel
  holds on its own (an open file, a lock, a socket) is refused with its type named: such a state
  cannot be saved, which is why init and /etc/rc, which run in live Python frames, cannot be
  snapshotted inside.

Loading accepts only classes and functions of armboard's own packages and a short list of standard
ones, never module objects or dunder attributes, so a foreign payload cannot call into the host. A
snapshot is still the user's own file, trusted as a QEMU image is: this is no security boundary.
"""

from __future__ import annotations

import importlib
import io
import itertools
import pickle
import struct
import threading
import types
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

PROTOCOL = 5
# Modules whose classes and functions a kernel state may name (prefix match on the dotted name).
ALLOWED_MODULES = ("kernel_sim", "board", "array", "collections", "pathlib", "copyreg", "functools", "weakref",
                   "_weakrefset", "struct", "itertools", "datetime", "enum", "re", "_operator", "operator",
                   "zlib", "_struct", "_collections", "types", "math", "posixpath")
ALLOWED_BUILTINS = {"set", "frozenset", "bytearray", "bytes", "slice", "range", "complex", "object", "dict",
                    "list", "tuple", "int", "float", "str", "bool", "type", "memoryview", "Ellipsis",
                    "NotImplemented", "ValueError", "KeyError", "OSError", "RuntimeError", "Exception"}
_LOCK_TYPE = type(threading.Lock())
# Where the nested functions and lambdas a kernel state holds may come from: armboard's own code.
FUNCTION_MODULES = ("kernel_sim", "board")
REFUSED_TYPES = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, types.FrameType,
                 types.TracebackType, io.IOBase)


class KernelStateError(Exception):
    """The kernel's state cannot be saved or loaded as it is (what and why, in one sentence)."""


# ---------------------------------------------------------------------- rebuilders (named in the pickle)
def _mappingproxy(d: dict) -> types.MappingProxyType:
    return types.MappingProxyType(d)


def _new_cell() -> types.CellType:
    return types.CellType()


def _set_cell(cell: types.CellType, state: tuple) -> types.CellType:
    if state:
        cell.cell_contents = state[0]
    return cell


def _module_functions(mod: types.ModuleType) -> list[types.FunctionType]:
    """The functions a module defines where a nested function or lambda can come from: its own
    functions and methods, their default values (a lambda as a default argument), and functions
    held in its module-level tables."""
    found: list[types.FunctionType] = []
    for value in vars(mod).values():
        if isinstance(value, type) and value.__module__ == mod.__name__:
            for attr in vars(value).values():
                for fn in (getattr(attr, "__func__", attr), getattr(attr, "fget", None), getattr(attr, "fset", None)):
                    if isinstance(fn, types.FunctionType):
                        found.append(fn)
        elif isinstance(value, dict):
            found.extend(v for v in value.values() if isinstance(v, types.FunctionType))
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, types.FunctionType))
        elif isinstance(value, types.FunctionType):
            found.append(value)
    for fn in list(found):
        found.extend(v for v in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values())
                     if isinstance(v, types.FunctionType))
    return [fn for fn in found if fn.__module__ == mod.__name__]


def _find_code(module: str, qualname: str, firstlineno: int) -> types.CodeType:
    """The code object of a nested function or lambda, found in its module's code by name and line."""
    todo = [fn.__code__ for fn in _module_functions(importlib.import_module(module))]
    seen: set[int] = set()
    while todo:
        code = todo.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        if code.co_qualname == qualname and code.co_firstlineno == firstlineno:
            return code
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    raise KernelStateError(f"the snapshot holds the function {module}.{qualname} (line {firstlineno}), which this "
                           "armboard does not have: it was saved by another version")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in prefixes)


def _new_function(module: str, qualname: str, firstlineno: int, cells: tuple) -> types.FunctionType:
    if not _within(module, FUNCTION_MODULES):
        raise KernelStateError(f"the kernel's state holds a function of {module}, outside armboard")
    code = _find_code(module, qualname, firstlineno)
    if len(cells) != len(code.co_freevars):
        raise KernelStateError(f"the function {module}.{qualname} has another closure in this armboard")
    fn = types.FunctionType(code, importlib.import_module(module).__dict__, code.co_name, None, cells or None)
    fn.__qualname__ = qualname
    return fn


def _set_function(fn: types.FunctionType, state: tuple) -> types.FunctionType:
    fn.__defaults__, fn.__kwdefaults__, extra = state
    fn.__dict__.update(extra)
    return fn


def _new_lock() -> object:
    return threading.Lock()


def _count(start: int, step: int) -> itertools.count:
    return itertools.count(start, step)


def _bound_method(obj: object, name: str) -> object:
    if isinstance(obj, types.ModuleType) or (name.startswith("__") and name.endswith("__")):
        raise KernelStateError(f"the snapshot asks for {name} of a {type(obj).__name__}: not a kernel method")
    return getattr(obj, name)


# ---------------------------------------------------------------------- saving
def _importable(fn: types.FunctionType) -> bool:
    """Whether pickle's own by-name reference finds this very function again."""
    if "<" in fn.__qualname__:
        return False
    try:
        obj: object = importlib.import_module(fn.__module__)
        for part in fn.__qualname__.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return False
    return obj is fn


_loading = threading.local()     # the names a loads() in progress resolves


def _ref(name: str) -> object:
    """A board part or host object by its name, from the board and run the state is loaded into."""
    try:
        return _loading.refs[name]
    except (AttributeError, KeyError, TypeError):
        raise KernelStateError(f"the kernel's state refers to {name!r}, which this board does not have") from None


# Objects pickle saves without asking reducer_override (its own fast path): they cannot be references.
_PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)


class _Pickler(pickle.Pickler):
    """A reference is a call of _ref(name), put in by reducer_override: unlike persistent_id, which
    pickle asks about every object, it is asked only about objects of classes (the board's parts are),
    so a kernel of half a million dicts, lists and numbers pays nothing for it."""

    def __init__(self, f, refs: dict[int, str]) -> None:
        super().__init__(f, protocol=PROTOCOL)
        self._refs = refs

    def reducer_override(self, obj: object):   # noqa: C901 - one branch per type the kernel uses
        name = self._refs.get(id(obj))
        if name is not None:
            return _ref, (name,)
        t = type(obj)
        if t is types.CellType:
            try:
                state: tuple = (obj.cell_contents,)
            except ValueError:
                state = ()
            return _new_cell, (), state, None, None, _set_cell
        if t is types.MappingProxyType:
            return _mappingproxy, (dict(obj),)
        if t is struct.Struct:
            return struct.Struct, (obj.format,)
        if t is weakref.WeakSet:
            return weakref.WeakSet, (list(obj),)
        if t is weakref.WeakValueDictionary:
            return weakref.WeakValueDictionary, (dict(obj),)
        if t is weakref.WeakKeyDictionary:
            return weakref.WeakKeyDictionary, (dict(obj),)
        if t is _LOCK_TYPE:
            if obj.locked():
                raise KernelStateError("the kernel holds a lock that is taken: a live thread of execution")
            return _new_lock, ()                  # an unlocked lock holds no state (the UZIP block cache's)
        if t is itertools.count:
            args = repr(obj)[len("count("):-1].split(", ")
            return _count, (int(args[0]), int(args[1]) if len(args) > 1 else 1)
        if t is types.BuiltinFunctionType and isinstance(obj.__self__, types.ModuleType):
            module = obj.__self__.__name__         # array._array_reconstructor and the like: by name, if allowed
            if (obj.__name__ in ALLOWED_BUILTINS) if module == "builtins" else _within(module, ALLOWED_MODULES):
                return NotImplemented
        if isinstance(obj, REFUSED_TYPES) or t in (types.BuiltinMethodType, types.ModuleType):
            what = getattr(obj, "__qualname__", None) or getattr(obj, "name", None) or t.__name__
            raise KernelStateError(f"the kernel holds a {t.__module__}.{t.__qualname__} ({what}), which cannot be "
                                   "saved: a live thread of execution or a host resource of its own")
        owner = obj.__self__ if t is types.MethodType else obj
        module = owner.__module__ if isinstance(owner, (type, types.FunctionType)) else type(owner).__module__
        if module and module != "builtins" and not _within(module, ALLOWED_MODULES):
            raise KernelStateError(_foreign(module, owner))   # refused now: the loader would refuse it
        if t is types.FunctionType:
            if _importable(obj):
                return NotImplemented
            code = obj.__code__
            return (_new_function, (obj.__module__, code.co_qualname, code.co_firstlineno, obj.__closure__ or ()),
                    (obj.__defaults__, obj.__kwdefaults__, dict(obj.__dict__)), None, None, _set_function)
        if t is types.MethodType:
            return _bound_method, (obj.__self__, obj.__func__.__name__)
        return NotImplemented


def _foreign(module: str, obj: object) -> str:
    what = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    if module.startswith("tools."):
        return (f"the kernel holds {module}.{what}, a watcher of the boot (a timeline, trace or report) hooked into "
                "it: save without it, or at a point before it hooks in")
    return f"the kernel holds {module}.{what}, which is not armboard's: a snapshot could not load it"


def dumps(obj: object, refs: Mapping[str, object]) -> bytes:
    """Pickle `obj`; each object in `refs` (by identity) is saved as its name only."""
    by_id = {id(value): name for name, value in refs.items() if not isinstance(value, _PLAIN)}
    buf = io.BytesIO()
    try:
        _Pickler(buf, by_id).dump(obj)
    except KernelStateError:
        raise
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise KernelStateError(f"the kernel's state cannot be saved: {exc}") from None
    return buf.getvalue()


# ---------------------------------------------------------------------- loading
class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if module == "builtins":
            if name not in ALLOWED_BUILTINS:
                raise KernelStateError(f"the kernel's state names builtins.{name}, which a kernel state never holds")
        elif not _within(module, ALLOWED_MODULES):
            raise KernelStateError(f"the kernel's state names {module}.{name}, outside armboard and the modules "
                                   "a kernel state may use")
        obj = super().find_class(module, name)
        if isinstance(obj, types.ModuleType):
            raise KernelStateError(f"the kernel's state names the module {module}.{name}")
        return obj


def loads(data: bytes, refs: Mapping[str, object]) -> object:
    """Unpickle a dumps() payload, resolving its names against `refs` (the new board and run)."""
    previous = getattr(_loading, "refs", None)
    _loading.refs = refs
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except KernelStateError:
        raise
    except Exception as exc:   # noqa: BLE001 - a payload that does not load is a damaged or foreign one
        raise KernelStateError(f"the kernel's state does not load: {type(exc).__name__}: {exc}") from None
    finally:
        _loading.refs = previous
