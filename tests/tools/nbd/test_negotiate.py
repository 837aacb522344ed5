"""The handshake, option by option, as nbdkit 1.32 answers it (server/protocol-handshake-newstyle.c)."""

from __future__ import annotations

import pytest

from tools.nbd import protocol as p
from tools.nbd.exports import BlockSize, Catalogue, Export


class Fixed(Export):
    """A tiny read-only export with block size constraints and a description."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = 1 << 20
        self.readonly = True
        self.description = f"the {name} disk"
        self.block_size = BlockSize(512, 4096, 1 << 20)
        self.can_trim = self.can_zero = self.can_fast_zero = self.can_fua = False

    def read(self, offset: int, length: int):
        return [bytes(length)]


def two_exports() -> Catalogue:
    c = Catalogue()
    for name in ("flash0", "md0"):
        c.add(name, lambda requested, ro: Fixed(requested.partition(",")[0]), f"the {name} disk")
    return c


def test_greeting_and_flags(serve, memory) -> None:
    s = serve(memory())
    c = s.raw()
    c.greet()
    assert c.handshake_flags == p.NBD_FLAG_FIXED_NEWSTYLE | p.NBD_FLAG_NO_ZEROES
    replies = c.option_replies(p.NBD_OPT_GO, p.info_request("", [p.NBD_INFO_NAME, p.NBD_INFO_BLOCK_SIZE]))
    kinds = [(r.type, p.U16.unpack_from(r.data)[0]) for r in replies[:-1]]
    # NBD_INFO_EXPORT first, always; the name because it was asked; no block size: the memory plugin has none.
    assert kinds == [(p.NBD_REP_INFO, p.NBD_INFO_EXPORT), (p.NBD_REP_INFO, p.NBD_INFO_NAME)]
    _, size, flags = p.INFO_EXPORT.unpack(replies[0].data)
    assert size == 16 << 20
    assert flags == (p.NBD_FLAG_HAS_FLAGS | p.NBD_FLAG_SEND_FLUSH | p.NBD_FLAG_SEND_FUA | p.NBD_FLAG_SEND_TRIM
                     | p.NBD_FLAG_SEND_WRITE_ZEROES | p.NBD_FLAG_CAN_MULTI_CONN | p.NBD_FLAG_SEND_CACHE
                     | p.NBD_FLAG_SEND_FAST_ZERO)                       # no SEND_DF: no structured replies
    assert replies[1].data == p.U16.pack(p.NBD_INFO_NAME)             # the default export's name is ""
    assert replies[-1].type == p.NBD_REP_ACK


def test_list_info_and_go_with_block_size_and_description(serve) -> None:
    s = serve(two_exports())
    c = s.raw()
    c.greet()
    listing = c.option_replies(p.NBD_OPT_LIST)
    assert [(r.type, r.data) for r in listing] == [
        (p.NBD_REP_SERVER, p.U32.pack(6) + b"flash0the flash0 disk"),
        (p.NBD_REP_SERVER, p.U32.pack(3) + b"md0the md0 disk"), (p.NBD_REP_ACK, b"")]
    # A second NBD_OPT_LIST is refused, as nbdkit does.
    assert c.option_replies(p.NBD_OPT_LIST)[-1].type == p.NBD_REP_ERR_INVALID
    info = c.option_replies(p.NBD_OPT_INFO, p.info_request("md0", [p.NBD_INFO_BLOCK_SIZE, p.NBD_INFO_DESCRIPTION]))
    got = {p.U16.unpack_from(r.data)[0]: r.data[2:] for r in info[:-1]}
    assert got[p.NBD_INFO_BLOCK_SIZE] == p.INFO_BLOCK_SIZE.pack(3, 512, 4096, 1 << 20)[2:]
    assert got[p.NBD_INFO_DESCRIPTION] == b"the md0 disk"
    unknown = c.option_replies(p.NBD_OPT_GO, p.info_request("md9"))
    assert unknown[-1].type == p.NBD_REP_ERR_UNKNOWN and b"flash0, md0" in unknown[-1].data
    c.option_replies(p.NBD_OPT_STRUCTURED_REPLY)
    go = c.option_replies(p.NBD_OPT_GO, p.info_request("flash0,mode=nor"))
    assert go[-1].type == p.NBD_REP_ACK
    flags = p.INFO_EXPORT.unpack(go[0].data)[2]
    assert flags & p.NBD_FLAG_READ_ONLY and flags & p.NBD_FLAG_SEND_DF
    assert not flags & (p.NBD_FLAG_SEND_TRIM | p.NBD_FLAG_SEND_WRITE_ZEROES | p.NBD_FLAG_SEND_FUA)
    assert c.read(0, 4096).data == bytes(4096)


@pytest.mark.parametrize("option, payload, reply", [
    (p.NBD_OPT_STARTTLS, b"", p.NBD_REP_ERR_POLICY),          # TLS is out of scope (nbdkit --tls=off)
    (p.NBD_OPT_STARTTLS, b"x", p.NBD_REP_ERR_INVALID),
    (p.NBD_OPT_STRUCTURED_REPLY, b"x", p.NBD_REP_ERR_INVALID),
    (p.NBD_OPT_LIST, b"x", p.NBD_REP_ERR_INVALID),
    (p.NBD_OPT_PEEK_EXPORT, b"abc", p.NBD_REP_ERR_UNSUP),
    (0x7777, b"\0" * 100, p.NBD_REP_ERR_UNSUP),
    (p.NBD_OPT_GO, b"\0\0", p.NBD_REP_ERR_INVALID),             # shorter than the 6 bytes it needs
    (p.NBD_OPT_GO, p.U32.pack(99) + b"ab" + b"\0\0", p.NBD_REP_ERR_INVALID),   # name length past the data
    (p.NBD_OPT_GO, p.info_request("", [1, 2])[:-2], p.NBD_REP_ERR_INVALID),   # fewer infos than counted
    (p.NBD_OPT_INFO, p.U32.pack(2) + b"a\0" + p.U16.pack(0), p.NBD_REP_ERR_INVALID),  # NUL in the name
    (p.NBD_OPT_SET_META_CONTEXT, p.meta_context_request("", [p.BASE_ALLOCATION]), p.NBD_REP_ERR_INVALID),
    (p.NBD_OPT_LIST_META_CONTEXT, b"\0" * 7, p.NBD_REP_ERR_INVALID),
])
def test_bad_or_unknown_options_get_an_error_and_the_session_goes_on(serve, memory, option, payload, reply) -> None:
    s = serve(memory())
    c = s.raw()
    c.greet()
    assert c.option_replies(option, payload)[-1].type == reply
    # The stream is still in step: the next option is answered normally.
    assert c.option_replies(p.NBD_OPT_GO, p.info_request(""))[-1].type == p.NBD_REP_ACK
    assert c.read(0, 512).data == bytes(512)


def test_meta_contexts(serve, memory) -> None:
    s = serve(memory())
    c = s.raw()
    c.greet()
    assert c.option_replies(p.NBD_OPT_STRUCTURED_REPLY)[-1].type == p.NBD_REP_ACK
    listed = c.option_replies(p.NBD_OPT_LIST_META_CONTEXT, p.meta_context_request("", []))
    assert [(r.type, r.data) for r in listed] == [(p.NBD_REP_META_CONTEXT, p.U32.pack(0) + b"base:allocation"),
                                                  (p.NBD_REP_ACK, b"")]
    listed = c.option_replies(p.NBD_OPT_LIST_META_CONTEXT,
                              p.meta_context_request("", ["base:", "qemu:dirty-bitmap:x", "nope:"]))
    assert [r.type for r in listed] == [p.NBD_REP_META_CONTEXT, p.NBD_REP_ACK]
    chosen = c.option_replies(p.NBD_OPT_SET_META_CONTEXT, p.meta_context_request("", ["base:allocation"]))
    assert [(r.type, r.data) for r in chosen] == [(p.NBD_REP_META_CONTEXT, p.U32.pack(1) + b"base:allocation"),
                                                  (p.NBD_REP_ACK, b"")]
    # A good query then a malformed one: the reply for the good one, then NBD_REP_ERR_INVALID (as nbdkit).
    bad = p.U32.pack(0) + p.U32.pack(2) + p.U32.pack(15) + b"base:allocation" + p.U32.pack(999)
    assert [r.type for r in c.option_replies(p.NBD_OPT_SET_META_CONTEXT, bad)] == [
        p.NBD_REP_META_CONTEXT, p.NBD_REP_ERR_INVALID]


def test_block_status_needs_the_context_for_the_export_that_was_chosen(serve, memory) -> None:
    s = serve(memory())
    c = s.raw()
    c.greet()
    c.option_replies(p.NBD_OPT_STRUCTURED_REPLY)
    c.option_replies(p.NBD_OPT_SET_META_CONTEXT, p.meta_context_request("other", [p.BASE_ALLOCATION]))
    c.option_replies(p.NBD_OPT_GO, p.info_request(""))
    assert c.block_status(0, 4096).error == p.NBD_EINVAL


@pytest.mark.parametrize("first, why", [
    (p.CLIENT_FLAGS.pack(1 << 7), "unknown flags 0x80"),
    (p.CLIENT_FLAGS.pack(1) + p.OPTION.pack(0x1234, p.NBD_OPT_GO, 0), "bad option magic"),
    (p.CLIENT_FLAGS.pack(1) + p.OPTION.pack(p.IHAVEOPT, p.NBD_OPT_GO, (64 << 20) + 1), "longer than"),
    (p.CLIENT_FLAGS.pack(1) + p.option(p.NBD_OPT_EXPORT_NAME, b"no-such-export"), "no export named"),
])
def test_hard_disconnects_where_nbdkit_gives_up(serve, first, why) -> None:
    s = serve(two_exports())
    c = s.raw()
    c.recv(p.HANDSHAKE.size)
    c.send(first)
    assert c.closed_by_server()
    assert any(why in line for line in s.log), s.log


def test_export_name_and_no_zeroes(serve) -> None:
    s = serve(two_exports())
    for flags, tail in ((p.NBD_FLAG_C_FIXED_NEWSTYLE, 124), (p.NBD_FLAG_C_FIXED_NEWSTYLE | p.NBD_FLAG_C_NO_ZEROES, 0)):
        c = s.raw()
        c.greet(flags)
        c.option(p.NBD_OPT_EXPORT_NAME, b"md0")
        size, eflags = p.EXPORT_NAME_REPLY.unpack(c.recv(10))
        assert size == 1 << 20 and eflags & p.NBD_FLAG_READ_ONLY
        assert c.recv(tail) == bytes(tail)
        assert c.read(0, 512).data == bytes(512)


def test_option_budget_and_abort(serve, memory) -> None:
    s = serve(memory())
    c = s.raw()
    c.greet()
    for _ in range(32):
        assert c.option_replies(0x7777)[-1].type == p.NBD_REP_ERR_UNSUP
    assert c.closed_by_server()
    assert any("32 options" in line for line in s.log)
    c = s.raw()
    c.greet()
    assert c.option_replies(p.NBD_OPT_ABORT)[-1].type == p.NBD_REP_ACK
    assert c.closed_by_server()


def test_a_client_without_fixed_newstyle_may_only_send_export_name(serve, memory) -> None:
    s = serve(memory())
    c = s.raw()
    c.greet(0)
    assert c.option_replies(p.NBD_OPT_LIST, b"junk")[-1].type == p.NBD_REP_ERR_INVALID
    c.option(p.NBD_OPT_EXPORT_NAME, b"")
    assert p.EXPORT_NAME_REPLY.unpack(c.recv(10))[0] == 16 << 20
