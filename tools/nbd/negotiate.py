"""The fixed newstyle handshake and option haggling, answered as nbdkit's server does.

Modelled on nbdkit's server/protocol-handshake-newstyle.c (1.32, the version Debian ships and the
differential test compares against): the same replies in the same order for every option, the same
limit of 32 options (plus 32 per export after NBD_OPT_LIST), NBD_INFO_EXPORT always sent before the
requested infos, base:allocation as the only metadata context (id 1), and a hard disconnect exactly
where nbdkit gives up (bad magic, unknown client flags, NBD_OPT_EXPORT_NAME of an unknown export).
Two deliberate differences: a client without fixed newstyle gets its option data consumed before the
NBD_REP_ERR_INVALID (nbdkit leaves it in the stream), and errors carry a message for the user.
TLS is out of scope: NBD_OPT_STARTTLS is refused with NBD_REP_ERR_POLICY, as nbdkit --tls=off does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from tools.nbd import protocol as p
from tools.nbd.exports import MAX_REQUEST, Catalogue, Export, ExportError, UnknownExport
from tools.nbd.wire import PeerGone, Wire

MAX_NR_OPTIONS = 32                     # server/protocol-handshake-newstyle.c
BASE_ALLOCATION_ID = 1                  # server/internal.h base_allocation_id
HANDSHAKE_FLAGS = p.NBD_FLAG_FIXED_NEWSTYLE | p.NBD_FLAG_NO_ZEROES


class NegotiationEnded(Exception):
    """The handshake ended without an export: the client aborted, left, or broke the protocol.

    `error` is False for an ending that is the client's right (NBD_OPT_ABORT, a close between options)."""

    def __init__(self, message: str, *, error: bool = True) -> None:
        super().__init__(message)
        self.error = error


@dataclass
class Session:
    """What the handshake settled: the open export and the features of the transmission phase."""

    export: Export
    name: str
    flags: int
    structured: bool
    base_allocation: bool


def transmission_flags(export: Export, structured: bool) -> int:
    """protocol_common_open's eflags: one bit per feature the export has."""
    flags = p.NBD_FLAG_HAS_FLAGS
    if export.readonly:
        flags |= p.NBD_FLAG_READ_ONLY
    if export.can_zero and not export.readonly:
        flags |= p.NBD_FLAG_SEND_WRITE_ZEROES
        if export.can_fast_zero:
            flags |= p.NBD_FLAG_SEND_FAST_ZERO
    if export.can_trim and not export.readonly:
        flags |= p.NBD_FLAG_SEND_TRIM
    if export.can_fua and not export.readonly:
        flags |= p.NBD_FLAG_SEND_FUA
    if export.can_flush:
        flags |= p.NBD_FLAG_SEND_FLUSH
    if export.can_multi_conn:
        flags |= p.NBD_FLAG_CAN_MULTI_CONN
    if export.can_cache:
        flags |= p.NBD_FLAG_SEND_CACHE
    if structured:
        flags |= p.NBD_FLAG_SEND_DF
    return flags


class Negotiation:
    """One client's handshake. `run()` returns the Session or raises NegotiationEnded / PeerGone."""

    def __init__(self, wire: Wire, catalogue: Catalogue, *, readonly: bool = False,
                 log: Callable[[str], None] = lambda _m: None, shutting_down: Callable[[], bool] = lambda: False):
        self.wire = wire
        self.catalogue = catalogue
        self.readonly = readonly
        self.log = log
        self.shutting_down = shutting_down
        self.client_flags = 0
        self.structured = False
        self.base_allocation = False
        self.meta_export: str | None = None      # the export name of the last NBD_OPT_SET_META_CONTEXT

    # -- replies ----------------------------------------------------------------------------------------
    def _reply(self, option: int, reply: int, message: str = "") -> None:
        if reply & p.NBD_REP_FLAG_ERROR and message:
            self.log(f"{p.option_name(option)}: {message}")
        self.wire.send(p.rep_error(option, reply, message) if reply & p.NBD_REP_FLAG_ERROR
                       else p.option_reply(option, reply))

    # -- the handshake ------------------------------------------------------------------------------------
    def run(self) -> Session:
        self.wire.send(p.handshake(HANDSHAKE_FLAGS))
        try:
            (self.client_flags,) = p.CLIENT_FLAGS.unpack(self.wire.recv(4, boundary=True))
        except PeerGone as exc:
            raise NegotiationEnded(f"no client flags: {exc}", error=not exc.clean) from None
        if self.client_flags & ~HANDSHAKE_FLAGS:
            raise NegotiationEnded(f"the client sent unknown flags 0x{self.client_flags:x} "
                                   f"(the server offers 0x{HANDSHAKE_FLAGS:x})")
        budget = MAX_NR_OPTIONS
        list_seen = False
        while budget > 0:
            budget -= 1
            try:
                magic, option, length = p.OPTION.unpack(self.wire.recv(p.OPTION.size, boundary=True))
            except PeerGone as exc:
                raise NegotiationEnded(f"the client left during option haggling: {exc}",
                                       error=not exc.clean) from None
            if magic != p.IHAVEOPT:
                raise NegotiationEnded(f"bad option magic 0x{magic:016x} (expected IHAVEOPT 0x{p.IHAVEOPT:016x})")
            if length > MAX_REQUEST:
                raise NegotiationEnded(f"{p.option_name(option)}: option data of {length} bytes is longer than "
                                       f"the {MAX_REQUEST} the server accepts")
            data = self.wire.recv_limited(length, MAX_REQUEST)
            if not self.client_flags & p.NBD_FLAG_C_FIXED_NEWSTYLE and option != p.NBD_OPT_EXPORT_NAME:
                self._reply(option, p.NBD_REP_ERR_INVALID, "only NBD_OPT_EXPORT_NAME is valid without fixed newstyle")
                continue
            if self.shutting_down() and option != p.NBD_OPT_ABORT:
                self._reply(option, p.NBD_REP_ERR_SHUTDOWN, "the server is shutting down")
                continue
            if option == p.NBD_OPT_EXPORT_NAME:
                return self._export_name(data)
            if option == p.NBD_OPT_ABORT:
                # The client may close without reading the ACK (proto.md allows both); not an error.
                with contextlib.suppress(PeerGone):
                    self._reply(option, p.NBD_REP_ACK)
                raise NegotiationEnded("the client sent NBD_OPT_ABORT", error=False)
            if option == p.NBD_OPT_LIST:
                if data:
                    self._reply(option, p.NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data")
                elif list_seen:
                    self._reply(option, p.NBD_REP_ERR_INVALID, "the export list was already sent")
                else:
                    budget += MAX_NR_OPTIONS * self._list(option)
                    list_seen = True
            elif option == p.NBD_OPT_STARTTLS:
                if data:
                    self._reply(option, p.NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data")
                else:
                    self._reply(option, p.NBD_REP_ERR_POLICY, "TLS is not offered by this server")
            elif option in (p.NBD_OPT_INFO, p.NBD_OPT_GO):
                session = self._info_or_go(option, data)
                if session is not None:
                    return session
            elif option == p.NBD_OPT_STRUCTURED_REPLY:
                if data:
                    self._reply(option, p.NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data")
                else:
                    self._reply(option, p.NBD_REP_ACK)
                    self.structured = True
            elif option in (p.NBD_OPT_LIST_META_CONTEXT, p.NBD_OPT_SET_META_CONTEXT):
                self._meta_context(option, data)
            else:
                self._reply(option, p.NBD_REP_ERR_UNSUP, f"{p.option_name(option)} is not supported")
        raise NegotiationEnded(f"the client sent {MAX_NR_OPTIONS} options without selecting an export")

    # -- options ---------------------------------------------------------------------------------------------
    def _open(self, name: str) -> tuple[str, Export]:
        canonical, opener = self.catalogue.resolve(name)
        return canonical, opener(name, self.readonly)

    def _export_name(self, data: bytes) -> Session:
        """NBD_OPT_EXPORT_NAME: no way to answer an error but to hang up."""
        try:
            name = p.parse_export_name(data)
            canonical, export = self._open(name)
        except (p.OptionInvalid, UnknownExport, ExportError) as exc:
            raise NegotiationEnded(f"NBD_OPT_EXPORT_NAME: {exc}") from None
        session = self._session(name, export)
        self.wire.send(p.export_name_reply(export.size, session.flags,
                                           bool(self.client_flags & p.NBD_FLAG_C_NO_ZEROES)))
        return session

    def _session(self, name: str, export: Export) -> Session:
        if self.meta_export is not None and self.meta_export != name:
            self.base_allocation = False      # the context was chosen for another export
        return Session(export, name, transmission_flags(export, self.structured), self.structured,
                       self.base_allocation)

    def _list(self, option: int) -> int:
        entries = self.catalogue.listing()
        for name, description in entries:
            self.wire.send(p.rep_server(option, name, description))
        self._reply(option, p.NBD_REP_ACK)
        return len(entries)

    def _info_or_go(self, option: int, data: bytes) -> Session | None:
        try:
            name, infos = p.parse_info_request(data)
        except p.OptionInvalid as exc:
            self._reply(option, p.NBD_REP_ERR_INVALID, str(exc))
            return None
        try:
            canonical, export = self._open(name)
        except (UnknownExport, ExportError) as exc:
            self._reply(option, p.NBD_REP_ERR_UNKNOWN, str(exc))
            return None
        try:
            session = self._session(name, export)
            self.wire.send(p.rep_info_export(option, export.size, session.flags))
            for info in infos:
                if info == p.NBD_INFO_NAME:
                    self.wire.send(p.rep_info_string(option, p.NBD_INFO_NAME, name or canonical))
                elif info == p.NBD_INFO_DESCRIPTION and export.description:
                    self.wire.send(p.rep_info_string(option, p.NBD_INFO_DESCRIPTION, export.description))
                elif info == p.NBD_INFO_BLOCK_SIZE and export.block_size is not None:
                    b = export.block_size
                    self.wire.send(p.rep_info_block_size(option, b.minimum, b.preferred, b.maximum))
            self._reply(option, p.NBD_REP_ACK)
        except BaseException:
            export.close()
            raise
        if option == p.NBD_OPT_INFO:
            export.close()
            return None
        return session

    def _meta_context(self, option: int, data: bytes) -> None:
        """LIST/SET_META_CONTEXT, query by query as nbdkit answers them (a bad query after good ones
        ends the already sent replies with NBD_REP_ERR_INVALID)."""
        setting = option == p.NBD_OPT_SET_META_CONTEXT
        if setting and not self.structured:
            self._reply(option, p.NBD_REP_ERR_INVALID, "NBD_OPT_SET_META_CONTEXT needs structured replies first")
            return
        try:
            name, queries = p.parse_meta_context_request(data)
            if setting:
                self.meta_export = name
                self.base_allocation = False
            asked = False
            for query in queries:
                asked = True
                if not setting and query == "base:":
                    self.wire.send(p.rep_meta_context(option, 0, p.BASE_ALLOCATION))
                elif query == p.BASE_ALLOCATION:
                    self.wire.send(p.rep_meta_context(option, BASE_ALLOCATION_ID if setting else 0,
                                                      p.BASE_ALLOCATION))
                    if setting:
                        self.base_allocation = True
            if not asked and not setting:     # no queries: list every context there is
                self.wire.send(p.rep_meta_context(option, 0, p.BASE_ALLOCATION))
        except p.OptionInvalid as exc:
            self._reply(option, p.NBD_REP_ERR_INVALID, str(exc))
            return
        self._reply(option, p.NBD_REP_ACK)
