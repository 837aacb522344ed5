"""Filters compose as nbdkit's do; the catalogue resolves names, options and the default export."""

from __future__ import annotations

import pytest

from board.storage import open_allocator
from tools.nbd.exports import Catalogue, ExportError, Offset, ReadOnly, StoreExport, UnknownExport

HZ = 3


def test_offset_and_readonly_over_a_store() -> None:
    store = open_allocator("sparse", 1 << 20)
    inner = StoreExport("disk", store)
    window = Offset(inner, 65536, 131072, name="part", description="a slice")
    assert (window.name, window.size, window.description) == ("part", 131072, "a slice")
    window.write(0, memoryview(b"hello"), fua=False)
    assert store.read(65536, 5) == b"hello"
    assert b"".join(bytes(b) for b in window.read(0, 5)) == b"hello"
    # Extents come back in the window's offsets, clipped to it.
    assert window.extents(0, 131072, req_one=False) == [(0, 32768, 0), (32768, 98304, HZ)]
    ro = ReadOnly(window, "part is read-only")
    assert ro.readonly and not ro.can_trim and not ro.can_zero and ro.size == 131072 and ro.name == "part"
    with pytest.raises(ExportError) as exc:
        ro.write(0, memoryview(b"x"), fua=False)
    assert exc.value.errno_name == "EPERM" and "read-only" in str(exc.value)
    assert b"".join(bytes(b) for b in ro.read(0, 5)) == b"hello"
    with pytest.raises(ValueError):
        Offset(inner, 1 << 20, 1)


def test_catalogue_names_options_defaults_and_providers() -> None:
    cat = Catalogue(default="flash0")
    cat.add("flash0", lambda name, ro: name, "bank")                 # type: ignore[arg-type,return-value]
    live = [("md0", lambda name, ro: "md:" + name, "md")]
    cat.providers.append(lambda: iter(live))
    assert cat.listing() == [("flash0", "bank"), ("md0", "md")]
    assert cat.resolve("")[0] == "flash0"
    assert cat.resolve("flash0,mode=nor")[1]("flash0,mode=nor", False) == "flash0,mode=nor"
    assert cat.resolve("md0")[1]("md0", False) == "md:md0"
    live.clear()                                                      # the md unit was detached
    with pytest.raises(UnknownExport, match="exports: flash0"):
        cat.resolve("md0")


def test_static_exports_do_not_wait_for_the_providers_lock_and_late_ones_are_seen() -> None:
    """A client that connects while the kernel boots (Giant held) gets flash0 at once; a listing that
    had to wait sees the exports added meanwhile (the machine attached while it waited)."""
    from contextlib import contextmanager

    cat = Catalogue()

    @contextmanager
    def busy():
        cat.add("mem", lambda name, ro: name)                       # type: ignore[arg-type,return-value]
        yield

    cat.listing_lock = busy
    cat.add("flash0", lambda name, ro: name)                        # type: ignore[arg-type,return-value]
    cat.providers.append(lambda: iter([("md0", lambda name, ro: name, "")]))
    assert cat.resolve("flash0,mode=nor")[0] == "flash0,mode=nor"
    assert "mem" not in cat._static                                # the lock was not taken
    assert [name for name, _ in cat.listing()] == ["flash0", "mem", "md0"]
