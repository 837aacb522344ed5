"""What an executor runs (a task function) and what it streams back (events); see the package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

TaskFn = Callable[[object, list, Path], Iterator[tuple[int, str, object]]]


@dataclass(frozen=True)
class Item:
    index: int
    kind: str
    value: object


@dataclass(frozen=True)
class Failed:
    index: int
    why: str


@dataclass(frozen=True)
class Note:
    text: str


Event = Item | Failed | Note
