"""The NBD protocol's numbers and wire layouts (NetworkBlockDevice/nbd doc/proto.md), with no I/O.

Everything here is bytes in, values out (or the other way), so the server, the test client and the
fuzzers share one definition of the wire. Names are the spec's. Integers on the wire are big-endian.
The fixed newstyle handshake, option haggling and the transmission phase with simple and structured
replies are covered; the experimental extended headers are not (their magics are listed as reserved).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# -- magics (proto.md "Newstyle negotiation", "Request message", "Simple reply message", ...) --------
NBD_MAGIC = 0x4E42444D41474943            # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054             # "IHAVEOPT": the newstyle version and the option magic
NBD_REP_MAGIC = 0x0003E889045565A9        # option replies
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_STRUCTURED_REPLY_MAGIC = 0x668E33EF
NBD_EXTENDED_REQUEST_MAGIC = 0x21E41C71    # reserved: the experimental EXTENDED_HEADERS extension

# -- handshake flags (server, 16 bits) and client flags (32 bits) ---------------------------------------
NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_NO_ZEROES = 1 << 1
NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_C_NO_ZEROES = 1 << 1

# -- transmission flags (16 bits) ----------------------------------------------------------------------
NBD_FLAG_HAS_FLAGS = 1 << 0
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_FLUSH = 1 << 2
NBD_FLAG_SEND_FUA = 1 << 3
NBD_FLAG_ROTATIONAL = 1 << 4
NBD_FLAG_SEND_TRIM = 1 << 5
NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
NBD_FLAG_SEND_DF = 1 << 7
NBD_FLAG_CAN_MULTI_CONN = 1 << 8
NBD_FLAG_SEND_RESIZE = 1 << 9
NBD_FLAG_SEND_CACHE = 1 << 10
NBD_FLAG_SEND_FAST_ZERO = 1 << 11

# -- options -------------------------------------------------------------------------------------------
NBD_OPT_EXPORT_NAME = 1
NBD_OPT_ABORT = 2
NBD_OPT_LIST = 3
NBD_OPT_PEEK_EXPORT = 4
NBD_OPT_STARTTLS = 5
NBD_OPT_INFO = 6
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8
NBD_OPT_LIST_META_CONTEXT = 9
NBD_OPT_SET_META_CONTEXT = 10
NBD_OPT_EXTENDED_HEADERS = 11

# -- option replies --------------------------------------------------------------------------------------
NBD_REP_ACK = 1
NBD_REP_SERVER = 2
NBD_REP_INFO = 3
NBD_REP_META_CONTEXT = 4
NBD_REP_FLAG_ERROR = 1 << 31
NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR | 1
NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR | 2
NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR | 3
NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR | 4
NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR | 5
NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR | 6
NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR | 7
NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR | 8
NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR | 9

# -- NBD_REP_INFO types ----------------------------------------------------------------------------------
NBD_INFO_EXPORT = 0
NBD_INFO_NAME = 1
NBD_INFO_DESCRIPTION = 2
NBD_INFO_BLOCK_SIZE = 3

# -- commands and command flags --------------------------------------------------------------------------
NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_FLUSH = 3
NBD_CMD_TRIM = 4
NBD_CMD_CACHE = 5
NBD_CMD_WRITE_ZEROES = 6
NBD_CMD_BLOCK_STATUS = 7

NBD_CMD_FLAG_FUA = 1 << 0
NBD_CMD_FLAG_NO_HOLE = 1 << 1
NBD_CMD_FLAG_DF = 1 << 2
NBD_CMD_FLAG_REQ_ONE = 1 << 3
NBD_CMD_FLAG_FAST_ZERO = 1 << 4
KNOWN_CMD_FLAGS = (NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE
                   | NBD_CMD_FLAG_FAST_ZERO)

# -- structured replies ----------------------------------------------------------------------------------
NBD_REPLY_FLAG_DONE = 1 << 0
NBD_REPLY_TYPE_NONE = 0
NBD_REPLY_TYPE_OFFSET_DATA = 1
NBD_REPLY_TYPE_OFFSET_HOLE = 2
NBD_REPLY_TYPE_BLOCK_STATUS = 5
NBD_REPLY_TYPE_ERROR = (1 << 15) | 1
NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

# -- base:allocation (proto.md "base:allocation metadata context") ----------------------------------------
BASE_ALLOCATION = "base:allocation"
NBD_STATE_HOLE = 1 << 0
NBD_STATE_ZERO = 1 << 1

# -- error values (proto.md "Error values"): the only numbers that may go on the wire ---------------------
NBD_SUCCESS = 0
NBD_EPERM = 1
NBD_EIO = 5
NBD_ENOMEM = 12
NBD_EINVAL = 22
NBD_ENOSPC = 28
NBD_EOVERFLOW = 75
NBD_ENOTSUP = 95
NBD_ESHUTDOWN = 108
ERROR_NAMES = {NBD_EPERM: "EPERM", NBD_EIO: "EIO", NBD_ENOMEM: "ENOMEM", NBD_EINVAL: "EINVAL",
               NBD_ENOSPC: "ENOSPC", NBD_EOVERFLOW: "EOVERFLOW", NBD_ENOTSUP: "ENOTSUP",
               NBD_ESHUTDOWN: "ESHUTDOWN"}

# Strings (export names, messages) "MUST be no longer than 4096 bytes" (proto.md "Conventions").
NBD_MAX_STRING = 4096

OPTION_NAMES = {NBD_OPT_EXPORT_NAME: "NBD_OPT_EXPORT_NAME", NBD_OPT_ABORT: "NBD_OPT_ABORT",
                NBD_OPT_LIST: "NBD_OPT_LIST", NBD_OPT_PEEK_EXPORT: "NBD_OPT_PEEK_EXPORT",
                NBD_OPT_STARTTLS: "NBD_OPT_STARTTLS", NBD_OPT_INFO: "NBD_OPT_INFO", NBD_OPT_GO: "NBD_OPT_GO",
                NBD_OPT_STRUCTURED_REPLY: "NBD_OPT_STRUCTURED_REPLY",
                NBD_OPT_LIST_META_CONTEXT: "NBD_OPT_LIST_META_CONTEXT",
                NBD_OPT_SET_META_CONTEXT: "NBD_OPT_SET_META_CONTEXT",
                NBD_OPT_EXTENDED_HEADERS: "NBD_OPT_EXTENDED_HEADERS"}
COMMAND_NAMES = {NBD_CMD_READ: "NBD_CMD_READ", NBD_CMD_WRITE: "NBD_CMD_WRITE", NBD_CMD_DISC: "NBD_CMD_DISC",
                 NBD_CMD_FLUSH: "NBD_CMD_FLUSH", NBD_CMD_TRIM: "NBD_CMD_TRIM", NBD_CMD_CACHE: "NBD_CMD_CACHE",
                 NBD_CMD_WRITE_ZEROES: "NBD_CMD_WRITE_ZEROES", NBD_CMD_BLOCK_STATUS: "NBD_CMD_BLOCK_STATUS"}


def option_name(option: int) -> str:
    return OPTION_NAMES.get(option, f"option {option}")


def command_name(command: int) -> str:
    return COMMAND_NAMES.get(command, f"command {command}")


# -- layouts ---------------------------------------------------------------------------------------------
HANDSHAKE = struct.Struct(">QQH")          # NBDMAGIC, IHAVEOPT, handshake flags
CLIENT_FLAGS = struct.Struct(">I")
OPTION = struct.Struct(">QII")             # IHAVEOPT, option, length
OPTION_REPLY = struct.Struct(">QIII")      # reply magic, option, reply type, length
EXPORT_NAME_REPLY = struct.Struct(">QH")   # size, transmission flags (then 124 zeroes unless NO_ZEROES)
INFO_EXPORT = struct.Struct(">HQH")        # NBD_INFO_EXPORT, size, transmission flags
INFO_BLOCK_SIZE = struct.Struct(">HIII")   # NBD_INFO_BLOCK_SIZE, minimum, preferred, maximum
REQUEST = struct.Struct(">IHHQQI")         # magic, command flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")       # magic, error, cookie
CHUNK = struct.Struct(">IHHQI")            # magic, flags, type, cookie, payload length
OFFSET = struct.Struct(">Q")
HOLE = struct.Struct(">QI")
ERROR = struct.Struct(">IH")               # error, message length
DESCRIPTOR = struct.Struct(">II")          # extent length, status flags
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
EXPORT_NAME_ZEROES = 124


class OptionInvalid(ValueError):
    """Option data the server answers with NBD_REP_ERR_INVALID (the session goes on)."""


# -- server side: encode ----------------------------------------------------------------------------------
def handshake(flags: int) -> bytes:
    return HANDSHAKE.pack(NBD_MAGIC, IHAVEOPT, flags)


def option_reply(option: int, reply: int, payload: bytes = b"") -> bytes:
    return OPTION_REPLY.pack(NBD_REP_MAGIC, option, reply, len(payload)) + payload


def rep_server(option: int, name: str, description: str = "") -> bytes:
    raw = name.encode()
    return option_reply(option, NBD_REP_SERVER, U32.pack(len(raw)) + raw + description.encode())


def rep_info_export(option: int, size: int, flags: int) -> bytes:
    return option_reply(option, NBD_REP_INFO, INFO_EXPORT.pack(NBD_INFO_EXPORT, size, flags))


def rep_info_string(option: int, info: int, text: str) -> bytes:
    return option_reply(option, NBD_REP_INFO, U16.pack(info) + text.encode())


def rep_info_block_size(option: int, minimum: int, preferred: int, maximum: int) -> bytes:
    return option_reply(option, NBD_REP_INFO, INFO_BLOCK_SIZE.pack(NBD_INFO_BLOCK_SIZE, minimum, preferred, maximum))


def rep_meta_context(option: int, context_id: int, name: str) -> bytes:
    return option_reply(option, NBD_REP_META_CONTEXT, U32.pack(context_id) + name.encode())


def rep_error(option: int, reply: int, message: str = "") -> bytes:
    return option_reply(option, reply, message.encode()[:NBD_MAX_STRING])


def export_name_reply(size: int, flags: int, no_zeroes: bool) -> bytes:
    return EXPORT_NAME_REPLY.pack(size, flags) + (b"" if no_zeroes else bytes(EXPORT_NAME_ZEROES))


def simple_reply(error: int, cookie: int) -> bytes:
    return SIMPLE_REPLY.pack(NBD_SIMPLE_REPLY_MAGIC, error, cookie)


def chunk_header(flags: int, type_: int, cookie: int, length: int) -> bytes:
    return CHUNK.pack(NBD_STRUCTURED_REPLY_MAGIC, flags, type_, cookie, length)


def chunk_offset_data_header(cookie: int, offset: int, length: int, *, done: bool = True) -> bytes:
    """The 20-byte chunk header and the 8-byte offset of an OFFSET_DATA chunk of `length` data bytes."""
    return chunk_header(NBD_REPLY_FLAG_DONE if done else 0, NBD_REPLY_TYPE_OFFSET_DATA, cookie,
                        OFFSET.size + length) + OFFSET.pack(offset)


def chunk_error(cookie: int, error: int, message: str = "") -> bytes:
    raw = message.encode()[:NBD_MAX_STRING]
    return chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, ERROR.size + len(raw)) \
        + ERROR.pack(error, len(raw)) + raw


def chunk_block_status(cookie: int, context_id: int, descriptors: list[tuple[int, int]]) -> bytes:
    body = U32.pack(context_id) + b"".join(DESCRIPTOR.pack(n, f) for n, f in descriptors)
    return chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, cookie, len(body)) + body


# -- server side: decode ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    magic: int
    flags: int
    type: int
    cookie: int
    offset: int
    length: int


def parse_request(raw: bytes | bytearray | memoryview) -> Request:
    return Request(*REQUEST.unpack(raw))


def parse_string(data: bytes, at: int, length: int, what: str) -> str:
    if length > NBD_MAX_STRING:
        raise OptionInvalid(f"{what} of {length} bytes is longer than the protocol's {NBD_MAX_STRING}")
    if at + length > len(data):
        raise OptionInvalid(f"{what} of {length} bytes runs past the option data")
    raw = data[at:at + length]
    if b"\0" in raw:
        raise OptionInvalid(f"{what} contains a NUL byte")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise OptionInvalid(f"{what} is not UTF-8") from None


def parse_export_name(data: bytes) -> str:
    """NBD_OPT_EXPORT_NAME: the whole option data is the name."""
    return parse_string(data, 0, len(data), "export name")


def parse_info_request(data: bytes) -> tuple[str, list[int]]:
    """NBD_OPT_INFO / NBD_OPT_GO data: (export name, information requests)."""
    if len(data) < 6:
        raise OptionInvalid(f"option data of {len(data)} bytes is shorter than the 6 it needs")
    (namelen,) = U32.unpack_from(data, 0)
    if namelen > len(data) - 6:
        raise OptionInvalid(f"export name length {namelen} does not fit the {len(data)}-byte option")
    name = parse_string(data, 4, namelen, "export name")
    (count,) = U16.unpack_from(data, 4 + namelen)
    if len(data) != 4 + namelen + 2 + 2 * count:
        raise OptionInvalid(f"{count} information requests do not fill the {len(data)}-byte option")
    infos = [U16.unpack_from(data, 6 + namelen + 2 * i)[0] for i in range(count)]
    return name, infos


def parse_meta_context_request(data: bytes) -> tuple[str, Iterator[str]]:
    """NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data: the export name, and the queries one
    by one (a malformed query raises OptionInvalid when it is reached, after the good ones before it,
    which is how nbdkit answers: replies for those, then NBD_REP_ERR_INVALID)."""
    if len(data) < 8:
        raise OptionInvalid(f"option data of {len(data)} bytes is shorter than the 8 it needs")
    (namelen,) = U32.unpack_from(data, 0)
    if namelen > len(data) - 8:
        raise OptionInvalid(f"export name length {namelen} does not fit the {len(data)}-byte option")
    name = parse_string(data, 4, namelen, "export name")

    def queries() -> Iterator[str]:
        at = 4 + namelen
        (count,) = U32.unpack_from(data, at)
        at += 4
        for _ in range(count):
            if at + 4 > len(data):
                raise OptionInvalid("a query length runs past the option data")
            (qlen,) = U32.unpack_from(data, at)
            at += 4
            yield parse_string(data, at, qlen, "meta context query")
            at += qlen

    return name, queries()


# -- client side (the test client and fuzzers use these too) ------------------------------------------------
def option(option_: int, payload: bytes = b"") -> bytes:
    return OPTION.pack(IHAVEOPT, option_, len(payload)) + payload


def info_request(name: str, infos: list[int] = ()) -> bytes:
    raw = name.encode()
    return U32.pack(len(raw)) + raw + U16.pack(len(infos)) + b"".join(U16.pack(i) for i in infos)


def meta_context_request(name: str, queries: list[str]) -> bytes:
    raw = name.encode()
    out = U32.pack(len(raw)) + raw + U32.pack(len(queries))
    for q in queries:
        qraw = q.encode()
        out += U32.pack(len(qraw)) + qraw
    return out


def request(type_: int, offset: int = 0, length: int = 0, *, flags: int = 0, cookie: int = 0) -> bytes:
    return REQUEST.pack(NBD_REQUEST_MAGIC, flags, type_, cookie, offset, length)
