"""Giant: held by the kernel's thread, taken by the server's threads, let go at the board's waits."""

from __future__ import annotations

import threading

from tools.nbd.giant import Giant


def test_the_owner_never_blocks_on_itself_and_others_wait_for_a_release() -> None:
    g = Giant()
    g.hold()
    with g, g.held():                      # nested, in the thread that holds it: no-ops
        assert g.owned
    assert g.owned
    entered = threading.Event()

    def server_thread() -> None:
        with g:
            assert g.owned
            entered.set()

    t = threading.Thread(target=server_thread)
    t.start()
    t.join(0.3)
    assert not entered.is_set()            # the kernel's thread holds it
    with g.released():
        assert not g.owned
        t.join(10)
        assert entered.is_set()
    assert g.owned                          # taken back after the wait
    g.drop()
    assert not g.owned


def test_releasing_wraps_a_wait_and_drop_without_hold_is_harmless() -> None:
    g = Giant()
    g.drop()
    g.hold()
    seen = []
    wait = g.releasing(lambda: seen.append(g.owned) or "line\n")
    assert wait() == "line\n" and seen == [False] and g.owned
