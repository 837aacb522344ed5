"""FreeBSD's errno numbers, names and strerror texts, in one table for the whole kernel and the tools.

Why one table: the guest's commands print strerror (FreeBSD's wording, "Operation not permitted"),
the monitor and the command line add the name a developer greps for (EPERM), and every layer that
returns an errno (GEOM, md, the file systems) must agree on the numbers, which are FreeBSD's, not
the host's (EOPNOTSUPP is 45 here, 95 on Linux).
"""

from __future__ import annotations

import errno as _host

# sys/sys/errno.h (number, name) and lib/libc/gen/errlst.c (text), FreeBSD 12.
_TABLE = (
    (1, "EPERM", "Operation not permitted"), (2, "ENOENT", "No such file or directory"),
    (3, "ESRCH", "No such process"), (4, "EINTR", "Interrupted system call"), (5, "EIO", "Input/output error"),
    (6, "ENXIO", "Device not configured"), (7, "E2BIG", "Argument list too long"),
    (8, "ENOEXEC", "Exec format error"), (9, "EBADF", "Bad file descriptor"), (10, "ECHILD", "No child processes"),
    (11, "EDEADLK", "Resource deadlock avoided"), (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"), (14, "EFAULT", "Bad address"), (15, "ENOTBLK", "Block device required"),
    (16, "EBUSY", "Device busy"), (17, "EEXIST", "File exists"), (18, "EXDEV", "Cross-device link"),
    (19, "ENODEV", "Operation not supported by device"), (20, "ENOTDIR", "Not a directory"),
    (21, "EISDIR", "Is a directory"), (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"), (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"), (26, "ETXTBSY", "Text file busy"),
    (27, "EFBIG", "File too large"), (28, "ENOSPC", "No space left on device"), (29, "ESPIPE", "Illegal seek"),
    (30, "EROFS", "Read-only file system"), (31, "EMLINK", "Too many links"), (32, "EPIPE", "Broken pipe"),
    (33, "EDOM", "Numerical argument out of domain"), (34, "ERANGE", "Result too large"),
    (35, "EAGAIN", "Resource temporarily unavailable"), (36, "EINPROGRESS", "Operation now in progress"),
    (37, "EALREADY", "Operation already in progress"), (38, "ENOTSOCK", "Socket operation on non-socket"),
    (39, "EDESTADDRREQ", "Destination address required"), (40, "EMSGSIZE", "Message too long"),
    (41, "EPROTOTYPE", "Protocol wrong type for socket"), (42, "ENOPROTOOPT", "Protocol not available"),
    (43, "EPROTONOSUPPORT", "Protocol not supported"), (44, "ESOCKTNOSUPPORT", "Socket type not supported"),
    (45, "EOPNOTSUPP", "Operation not supported"), (46, "EPFNOSUPPORT", "Protocol family not supported"),
    (47, "EAFNOSUPPORT", "Address family not supported by protocol family"),
    (48, "EADDRINUSE", "Address already in use"), (49, "EADDRNOTAVAIL", "Can't assign requested address"),
    (50, "ENETDOWN", "Network is down"), (51, "ENETUNREACH", "Network is unreachable"),
    (52, "ENETRESET", "Network dropped connection on reset"),
    (53, "ECONNABORTED", "Software caused connection abort"), (54, "ECONNRESET", "Connection reset by peer"),
    (55, "ENOBUFS", "No buffer space available"), (56, "EISCONN", "Socket is already connected"),
    (57, "ENOTCONN", "Socket is not connected"), (58, "ESHUTDOWN", "Can't send after socket shutdown"),
    (59, "ETOOMANYREFS", "Too many references: can't splice"), (60, "ETIMEDOUT", "Operation timed out"),
    (61, "ECONNREFUSED", "Connection refused"), (62, "ELOOP", "Too many levels of symbolic links"),
    (63, "ENAMETOOLONG", "File name too long"), (64, "EHOSTDOWN", "Host is down"),
    (65, "EHOSTUNREACH", "No route to host"), (66, "ENOTEMPTY", "Directory not empty"),
    (67, "EPROCLIM", "Too many processes"), (68, "EUSERS", "Too many users"), (69, "EDQUOT", "Disc quota exceeded"),
    (70, "ESTALE", "Stale NFS file handle"), (71, "EREMOTE", "Too many levels of remote in path"),
    (72, "EBADRPC", "RPC struct is bad"), (73, "ERPCMISMATCH", "RPC version wrong"),
    (74, "EPROGUNAVAIL", "RPC prog. not avail"), (75, "EPROGMISMATCH", "Program version wrong"),
    (76, "EPROCUNAVAIL", "Bad procedure for program"), (77, "ENOLCK", "No locks available"),
    (78, "ENOSYS", "Function not implemented"), (79, "EFTYPE", "Inappropriate file type or format"),
    (80, "EAUTH", "Authentication error"), (81, "ENEEDAUTH", "Need authenticator"),
    (82, "EIDRM", "Identifier removed"), (83, "ENOMSG", "No message of desired type"),
    (84, "EOVERFLOW", "Value too large to be stored in data type"), (85, "ECANCELED", "Operation canceled"),
    (86, "EILSEQ", "Illegal byte sequence"), (87, "ENOATTR", "Attribute not found"),
    (88, "EDOOFUS", "Programming error"), (89, "EBADMSG", "Bad message"), (90, "EMULTIHOP", "Multihop attempted"),
    (91, "ENOLINK", "Link has been severed"), (92, "EPROTO", "Protocol error"),
    (93, "ENOTCAPABLE", "Capabilities insufficient"), (94, "ECAPMODE", "Not permitted in capability mode"),
    (95, "ENOTRECOVERABLE", "State not recoverable"), (96, "EOWNERDEAD", "Previous owner died"),
    (97, "EINTEGRITY", "Integrity check failed"),
)

NUMBER: dict[str, int] = {name: number for number, name, _ in _TABLE}
NAME: dict[int, str] = {number: name for number, name, _ in _TABLE}
TEXT: dict[int, str] = {number: text for number, _, text in _TABLE}


def strerror(errno: int) -> str:
    """libc's strerror(3): the text FreeBSD's tools print."""
    return TEXT.get(errno, f"Unknown error: {errno}")


def describe(errno: int) -> str:
    """The text and the name, for armboard's own messages: "Operation not permitted (EPERM)"."""
    name = NAME.get(errno)
    return f"{strerror(errno)} ({name})" if name else strerror(errno)


def describe_host(exc: OSError) -> str:
    """A host OSError as "Permission denied (EACCES)": the host's own text and name, for host files."""
    name = _host.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


_from_host: dict[int, int] = {}


def from_host(host_errno: int, default: int = 5) -> int:
    """A host OSError's errno (Linux numbering) as FreeBSD's number, by name; EIO if FreeBSD has none.

    Looked up through every FreeBSD name the host also defines, so aliases (Linux's EOPNOTSUPP is
    its ENOTSUP, EWOULDBLOCK its EAGAIN) land on FreeBSD's number too."""
    if not _from_host:
        _from_host.update({getattr(_host, name): number for name, number in NUMBER.items() if hasattr(_host, name)})
    return _from_host.get(host_errno, default)
