"""Requests and replies: nbdkit's checks and errors, zero-copy reads, writes that arrive whole or not at all."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from board.storage import PAGE_SIZE
from tools.nbd import protocol as p
from tools.nbd.exports import BlockSize, Catalogue, Export

HZ = p.NBD_STATE_HOLE | p.NBD_STATE_ZERO
MIB = 1 << 20
SIZE = 128 * MIB


def test_write_read_zero_trim_and_block_status(serve, memory) -> None:
    s = serve(memory(size=8 * MIB))
    c = s.client()
    assert c.structured and c.size == 8 * MIB
    data = os.urandom(3 * PAGE_SIZE + 100)
    assert c.write(PAGE_SIZE - 50, data).error == 0
    assert c.read(PAGE_SIZE - 50, len(data)).data == data
    r = c.block_status(0, 8 * MIB)
    # Page granular, as the memory plugin: the first page holds 50 bytes of the write, so it is data.
    assert r.error == 0
    assert r.extents == [(5 * PAGE_SIZE, 0), (8 * MIB - 5 * PAGE_SIZE, HZ)]
    assert c.call(p.NBD_CMD_WRITE_ZEROES, PAGE_SIZE, 2 * PAGE_SIZE).error == 0
    assert c.read(PAGE_SIZE, 2 * PAGE_SIZE).data == bytes(2 * PAGE_SIZE)
    assert c.call(p.NBD_CMD_TRIM, 0, 8 * MIB).error == 0              # trim is zero in memory.c
    assert c.block_status(0, 8 * MIB).extents == [(8 * MIB, HZ)]
    assert c.call(p.NBD_CMD_FLUSH).error == 0
    assert c.call(p.NBD_CMD_CACHE, 0, 4096).error == 0
    c.disconnect()


def test_block_status_req_one_and_the_last_extent_running_past_the_request(serve, memory) -> None:
    s = serve(memory(size=8 * MIB))
    c = s.client()
    c.write(0, b"x" * 100)
    # The page holding the request is answered whole (nbdkit's sparse.c walks pages).
    assert c.block_status(10, 20).extents == [(PAGE_SIZE - 10, 0)]
    assert c.block_status(10, 20, p.NBD_CMD_FLAG_REQ_ONE).extents == [(20, 0)]
    assert c.block_status(10, 2 * PAGE_SIZE).extents == [(PAGE_SIZE - 10, 0), (2 * PAGE_SIZE, HZ)]


@pytest.mark.parametrize("type_, offset, length, flags, error", [
    (p.NBD_CMD_READ, SIZE - 10, 20, 0, p.NBD_EINVAL),                # past the end
    (p.NBD_CMD_WRITE, SIZE - 10, 20, 0, p.NBD_ENOSPC),
    (p.NBD_CMD_WRITE_ZEROES, SIZE, 1, 0, p.NBD_ENOSPC),
    (p.NBD_CMD_TRIM, 2**63, 1, 0, p.NBD_EINVAL),
    (p.NBD_CMD_BLOCK_STATUS, SIZE, 1, 0, p.NBD_EINVAL),
    (p.NBD_CMD_READ, 0, 0, 0, p.NBD_EINVAL),                         # zero length, as nbdkit 1.32
    (p.NBD_CMD_WRITE, 0, 0, 0, p.NBD_ENOSPC),
    (p.NBD_CMD_FLUSH, 1, 0, 0, p.NBD_EINVAL),
    (9, 0, 1, 0, p.NBD_EINVAL),                                      # unknown command
    (p.NBD_CMD_READ, 0, 1, 1 << 9, p.NBD_EINVAL),                    # unknown flag
    (p.NBD_CMD_READ, 0, 1, p.NBD_CMD_FLAG_NO_HOLE, p.NBD_EINVAL),
    (p.NBD_CMD_WRITE, 0, 1, p.NBD_CMD_FLAG_DF, p.NBD_EINVAL),
    (p.NBD_CMD_READ, 0, 1, p.NBD_CMD_FLAG_REQ_ONE, p.NBD_EINVAL),
    (p.NBD_CMD_TRIM, 0, 1, p.NBD_CMD_FLAG_FAST_ZERO, p.NBD_EINVAL),
    (p.NBD_CMD_READ, 0, (64 << 20) + 1, 0, p.NBD_ENOMEM),             # nbdkit's MAX_REQUEST_SIZE
    (p.NBD_CMD_WRITE, SIZE - 1, (64 << 20) + 1, 0, p.NBD_ENOSPC),     # the range check comes first
])
def test_refused_requests_get_nbdkits_errors_and_the_stream_stays_in_step(serve, memory, type_, offset, length,
                                                                          flags, error) -> None:
    s = serve(memory(size=SIZE))
    c = s.client()
    payload = bytes(length) if type_ == p.NBD_CMD_WRITE else b""
    r = c.call(type_, offset, length, flags=flags, data=payload)
    assert r.error == error
    if c.structured:
        assert r.message                           # errors say why, for the user
    assert c.read(0, 512).data == bytes(512)     # the next request is read from the right place
    assert any("(E" in line for line in s.log)


def test_an_oversized_write_is_skipped_then_answered(serve, memory) -> None:
    s = serve(memory(size=128 * MIB))
    c = s.client()
    payload = b"z" * ((64 << 20) + 4096)
    assert c.write(0, payload).error == p.NBD_ENOMEM
    assert c.read(0, 4096).data == bytes(4096)   # nothing of it was written
    # Beyond twice the limit the payload is not even skipped: the connection is dropped.
    c.request(p.NBD_CMD_WRITE, 0, (128 << 20) + 1)
    assert c.closed_by_server()


def test_simple_replies_without_structured_negotiation(serve, memory) -> None:
    s = serve(memory())
    c = s.client(structured=False)
    c.write(0, b"abc")
    r = c.read(0, 3)
    assert (r.error, r.data, r.chunks) == (0, b"abc", [])
    assert c.read(16 << 20, 1).error == p.NBD_EINVAL
    assert c.block_status(0, 512).error == p.NBD_EINVAL                 # needs structured replies
    assert c.read(0, 1, p.NBD_CMD_FLAG_DF).error == p.NBD_EINVAL          # DF too


def test_readonly_server_refuses_writes_with_eperm(serve, memory) -> None:
    s = serve(memory(), readonly=True)
    c = s.client()
    assert c.flags & p.NBD_FLAG_READ_ONLY
    for type_ in (p.NBD_CMD_WRITE, p.NBD_CMD_TRIM, p.NBD_CMD_WRITE_ZEROES):
        r = c.call(type_, 0, 512, data=bytes(512) if type_ == p.NBD_CMD_WRITE else b"")
        assert r.error == p.NBD_EPERM
    assert c.call(p.NBD_CMD_FLUSH).error == 0


class Aligned(Export):
    """A 4-byte-sector export (a flash bank's cfid) over a bytearray."""

    def __init__(self) -> None:
        self.name, self.size = "cfid0", 1 << 16
        self.block_size = BlockSize(4, 4096, 1 << 20)
        self.data = bytearray(self.size)

    def read(self, offset: int, length: int):
        return [memoryview(self.data)[offset:offset + length]]

    def write(self, offset: int, data: memoryview, *, fua: bool) -> None:
        self.data[offset:offset + len(data)] = data


def test_minimum_block_size_is_enforced(serve) -> None:
    cat = Catalogue()
    cat.add("cfid0", lambda name, ro: Aligned())
    s = serve(cat)
    c = s.client("cfid0")
    assert c.block_size == (4, 4096, 1 << 20)
    assert c.write(4, b"abcd").error == 0
    assert c.write(6, b"abcd").error == p.NBD_EINVAL
    assert c.read(4, 6).error == p.NBD_EINVAL
    assert "not aligned to the 4-byte block size of cfid0" in c.read(4, 6).message
    assert c.read(4, 4).data == b"abcd"
    # The default zero is a write of zeroes, never fast.
    assert c.call(p.NBD_CMD_WRITE_ZEROES, 4, 4).error == 0 and c.read(4, 4).data == bytes(4)
    assert c.call(p.NBD_CMD_WRITE_ZEROES, 4, 4, flags=p.NBD_CMD_FLAG_FAST_ZERO).error == p.NBD_ENOTSUP


def test_a_client_leaving_in_the_middle_of_a_write_changes_nothing(serve, memory) -> None:
    cat = memory()
    s = serve(cat)
    c = s.client()
    c.send(p.request(p.NBD_CMD_WRITE, 0, 1 << 20, cookie=7) + b"y" * 1000)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed_by_server()
    c.close()
    d = s.client()
    assert d.read(0, 1000).data == bytes(1000)
    assert cat.store.pages == 0
    assert any("1000 bytes into a 1048576-byte message" in line for line in s.log), s.log


def test_bad_request_magic_drops_the_connection_and_the_server_goes_on(serve, memory) -> None:
    s = serve(memory())
    c = s.client()
    c.send(b"\xde\xad\xbe\xef" + bytes(24))
    assert c.closed_by_server()
    assert s.client().read(0, 4).error == 0


def test_many_clients_at_once_see_one_disk(serve, memory) -> None:
    s = serve(memory(size=64 * MIB))
    clients = [s.client() for _ in range(4)]
    assert all(c.flags & p.NBD_FLAG_CAN_MULTI_CONN for c in clients)
    blocks = {i: os.urandom(256 << 10) for i in range(16)}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(k, 16, 4):
                assert clients[k].write(i * (1 << 20), blocks[i]).error == 0
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert clients[0].call(p.NBD_CMD_FLUSH).error == 0
    for i, block in blocks.items():
        assert clients[(i + 1) % 4].read(i * (1 << 20), len(block)).data == block
    assert len(s.server.clients()) == 4
    for c in clients:
        c.disconnect()


def test_reads_are_sent_from_the_stores_memory(serve, memory, monkeypatch) -> None:
    """Zero-copy: the buffers handed to sendmsg are views of the store's pages, not new bytes."""
    from tools.nbd import wire

    cat = memory(size=8 * MIB)
    seen: list[list] = []
    real = wire.Wire.send_buffers

    def spy(self, buffers):
        seen.append(list(buffers))
        return real(self, buffers)

    monkeypatch.setattr(wire.Wire, "send_buffers", spy)
    s = serve(cat)
    c = s.client()
    c.write(0, os.urandom(4 * PAGE_SIZE))
    assert len(c.read(0, 4 * PAGE_SIZE).data) == 4 * PAGE_SIZE
    head, *data = seen[-1]
    assert len(head) == 28 and len(data) == 4 and all(isinstance(b, memoryview) for b in data)
    page0 = cat.store._l1_dirs[0].pages[0]
    assert data[0].obj is page0                  # the page itself, not a copy
