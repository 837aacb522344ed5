"""Fuzzing the server: random byte streams into the handshake, random valid-but-extreme requests.

Whatever a client sends, the server answers within the socket's timeout or closes the connection,
never logs an internal error, and the next well-behaved client is served as if nothing happened.
Every case has a bounded time: each socket read times out after TIMEOUT seconds (a hang fails).
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board.storage import MAX_SIZE, open_allocator
from tools.nbd import protocol as p
from tools.nbd.client import ClientError, NbdClient
from tools.nbd.exports import BlockSize, Catalogue, StoreExport, memory_catalogue
from tools.nbd.server import Address, NbdServer

TIMEOUT = 10.0
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A 2^63-1 byte sparse disk (nbdkit's largest) and a 512-byte-sector disk, served all module long."""
    tmp = tmp_path_factory.mktemp("fuzz")
    log: list[str] = []
    huge = memory_catalogue(open_allocator("sparse", MAX_SIZE))
    store = open_allocator("sparse", 1 << 20)
    aligned = Catalogue()

    def opener(name: str, readonly: bool):
        export = StoreExport("sectors", store)
        export.block_size = BlockSize(512, 4096, 1 << 20)
        return export

    aligned.add("sectors", opener)
    started = []
    for name, cat in (("huge", huge), ("sectors", aligned)):
        server = NbdServer(cat, Address(path=str(tmp / f"{name}.sock")), log=log.append)
        server.start()
        started.append(server)
    yield {"huge": str(tmp / "huge.sock"), "sectors": str(tmp / "sectors.sock"), "log": log}
    for server in started:
        server.stop()


def drain(sock: socket.socket) -> None:
    """Read until the server closes or stops sending; a read that blocks for TIMEOUT is a hang."""
    sock.settimeout(TIMEOUT)
    while True:
        try:
            if not sock.recv(65536):
                return
        except ConnectionResetError:
            return


def still_serves(path: str, name: str = "") -> None:
    c = NbdClient.connect(path, timeout=TIMEOUT)
    c.go(name)
    assert c.read(0, 512).error == 0
    c.disconnect()


def no_internal_errors(log: list[str]) -> None:
    bad = [line for line in log if "internal error" in line]
    assert not bad, bad[:3]


valid_prefix = st.sampled_from([
    b"",
    p.CLIENT_FLAGS.pack(p.NBD_FLAG_C_FIXED_NEWSTYLE),
    p.CLIENT_FLAGS.pack(3) + struct.pack(">Q", p.IHAVEOPT),
    p.CLIENT_FLAGS.pack(1) + p.option(p.NBD_OPT_STRUCTURED_REPLY),
    p.CLIENT_FLAGS.pack(1) + p.option(p.NBD_OPT_GO, p.info_request("")),
])


@FUZZ
@given(prefix=valid_prefix, junk=st.binary(max_size=600),
       options=st.lists(st.tuples(st.integers(0, 20), st.binary(max_size=64)), max_size=6))
def test_random_handshakes_end_cleanly(servers, prefix, junk, options) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(servers["huge"])
    sock.recv(p.HANDSHAKE.size, socket.MSG_WAITALL)
    body = prefix + b"".join(p.option(opt, data) for opt, data in options) + junk
    try:
        sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass                      # the server already hung up on what it read
    drain(sock)
    sock.close()
    still_serves(servers["huge"])
    no_internal_errors(servers["log"])


commands = st.sampled_from([p.NBD_CMD_READ, p.NBD_CMD_WRITE, p.NBD_CMD_FLUSH, p.NBD_CMD_TRIM, p.NBD_CMD_CACHE,
                            p.NBD_CMD_WRITE_ZEROES, p.NBD_CMD_BLOCK_STATUS, 8, 0x7FFF, 0xFFFF])
offsets = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, MAX_SIZE, MAX_SIZE - 1, 2**63, 2**64 - 1,
                                                               MAX_SIZE - 32768, 511, 512, 1 << 20]))
lengths = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 511, 512, 65536, 2**32 - 1, (64 << 20) + 1]))


@FUZZ
@given(name=st.sampled_from(["huge", "sectors"]), structured=st.booleans(),
       requests=st.lists(st.tuples(commands, st.integers(0, 0xFFFF), offsets, lengths), min_size=1, max_size=8))
def test_extreme_requests_get_replies_in_step(servers, name, structured, requests) -> None:
    export = "sectors" if name == "sectors" else ""
    c = NbdClient.connect(servers[name], timeout=TIMEOUT)
    c.go(export, structured=structured)
    allowed = {0, p.NBD_EPERM, p.NBD_EIO, p.NBD_ENOMEM, p.NBD_EINVAL, p.NBD_ENOSPC, p.NBD_ENOTSUP}
    for type_, flags, offset, length in requests:
        if type_ == p.NBD_CMD_WRITE:
            length = min(length, 1 << 16)            # the payload is really sent
            data = bytes([offset % 251]) * length
        else:
            data = b""
        try:
            r = c.call(type_, offset, length, flags=flags, data=data)
        except ClientError:
            break                                      # the server may hang up on what it cannot follow
        assert r.error in allowed, r
        if r.error == 0 and type_ == p.NBD_CMD_READ:
            assert len(r.data) == length
        if r.error == 0 and type_ == p.NBD_CMD_BLOCK_STATUS:
            assert r.extents and all(n > 0 for n, _ in r.extents)
            if flags & p.NBD_CMD_FLAG_REQ_ONE:
                assert len(r.extents) == 1 and r.extents[0][0] <= length
    c.close()
    still_serves(servers[name], export)
    no_internal_errors(servers["log"])


@FUZZ
@given(cut=st.integers(1, p.REQUEST.size + 4096 - 1), type_=commands)
def test_a_client_leaving_mid_request_leaves_the_disk_and_the_server_alone(servers, cut, type_) -> None:
    c = NbdClient.connect(servers["sectors"], timeout=TIMEOUT)
    c.go("sectors")
    c.send((p.request(type_, 0, 4096, cookie=9) + b"\xee" * 4096)[:cut])
    c.sock.shutdown(socket.SHUT_WR)
    drain(c.sock)
    c.close()
    d = NbdClient.connect(servers["sectors"], timeout=TIMEOUT)
    d.go("sectors")
    assert b"\xee" not in d.read(0, 4096).data       # the write never arrived whole: nothing of it is on disk
    d.disconnect()
    no_internal_errors(servers["log"])
