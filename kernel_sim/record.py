"""Mutable records of the Python kernel: equality and repr by their fields, as a dataclass gives them.

Why not dataclasses: importing it pulls in inspect, ast, dis, re and enum, and each decorated class
compiles its methods when the module loads; the Python kernel has about fifty such records on the
default boot's path, about 30 ms of every boot (issue 11). A record here declares its fields as its
`__slots__` (a subclass adds its own after its base's, in dataclass order) and writes its `__init__`;
frozen records are namedtuples instead. `"__dict__"` or `"__weakref__"` in `__slots__` are not fields.
"""

from __future__ import annotations

_FIELDS: dict[type, tuple[str, ...]] = {}
_IN_REPR: set[int] = set()
_NOT_FIELDS = ("__dict__", "__weakref__")


def record_fields(cls: type) -> tuple[str, ...]:
    """The fields of a record class: the `__slots__` of its bases first, then its own."""
    names = _FIELDS.get(cls)
    if names is None:
        found: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            found.extend(s for s in ((slots,) if isinstance(slots, str) else slots) if s not in _NOT_FIELDS)
        names = _FIELDS[cls] = tuple(found)
    return names


class Record:
    """A base giving `==` (same class, equal fields) and `repr` (`Name(field=value, ...)`) from the fields;
    unhashable, as a mutable dataclass is."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = record_fields(self.__class__)
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    __hash__ = None    # type: ignore[assignment]

    def __repr__(self) -> str:
        key = id(self)
        if key in _IN_REPR:            # a record that reaches itself, as dataclasses' recursive_repr shows it
            return "..."
        _IN_REPR.add(key)
        try:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in record_fields(self.__class__))
        finally:
            _IN_REPR.discard(key)
        return f"{self.__class__.__qualname__}({inner})"
