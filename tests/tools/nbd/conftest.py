"""Servers for the NBD tests: in-process, on a unix socket in the test's tmp_path, stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from board.storage import open_allocator
from tools.nbd import exports
from tools.nbd.client import NbdClient
from tools.nbd.exports import Catalogue
from tools.nbd.server import Address, NbdServer


class Served:
    """A running server, the log lines it wrote, and a way to get connected clients."""

    def __init__(self, server: NbdServer, path: Path, log: list[str]) -> None:
        self.server = server
        self.path = path
        self.log = log

    def client(self, name: str = "", **go) -> NbdClient:
        c = NbdClient.connect(str(self.path))
        c.go(name, **go)
        return c

    def raw(self) -> NbdClient:
        return NbdClient.connect(str(self.path))


@pytest.fixture
def serve(tmp_path: Path):
    """serve(catalogue, readonly=False) -> Served; every server is stopped at the end of the test."""
    started: list[NbdServer] = []

    def start(catalogue: Catalogue, *, readonly: bool = False) -> Served:
        path = tmp_path / f"nbd{len(started)}.sock"
        log: list[str] = []
        server = NbdServer(catalogue, Address(path=str(path)), log=log.append, readonly=readonly)
        server.start()
        started.append(server)
        return Served(server, path, log)

    yield start
    for server in started:
        server.stop()


def memory_catalogue(kind: str = "sparse", size: int | str = 16 << 20, **options) -> Catalogue:
    """What `armboard nbd memory` serves; the store is kept on the catalogue for the tests' own checks."""
    store = open_allocator(kind, size, **options)
    catalogue = exports.memory_catalogue(store)
    catalogue.store = store      # type: ignore[attr-defined]
    return catalogue


@pytest.fixture
def memory() -> Callable[..., Catalogue]:
    return memory_catalogue
