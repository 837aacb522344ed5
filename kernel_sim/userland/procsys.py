"""Pipes for the sequential shell: a process's Sys with some descriptors bound to in-memory buffers.

Why: the kernel has no pipe(2) and runs one process at a time, so `a | b` runs `a` to completion with
its standard output going into a buffer, then `b` with that buffer as its standard input (sh.py says
so too). Command substitution captures output the same way. Every other descriptor is the kernel's: a
redirection is a real open/dup2, and a child spawned from a wrapped process inherits the buffers
bound to its descriptors 0-2 just as it inherits the kernel's descriptors 0-2.
"""

from __future__ import annotations

from typing import Any

from kernel_sim.kern.sysapi import EBADF, EINVAL, ENOTTY, ESPIPE, S_IFIFO, SEEK_SET, Stat, Sys, SysError


class PipeBuffer:
    """One pipe's bytes: the writer appends, the reader consumes from `pos`."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.pos = 0

    def getvalue(self) -> bytes:
        return bytes(self.data)


class PipeEnd:
    def __init__(self, buf: PipeBuffer, writing: bool) -> None:
        self.buf = buf
        self.writing = writing


class ProcSys:
    """A Sys whose descriptors in `pipes` are buffer ends; everything else goes to the wrapped Sys."""

    def __init__(self, inner: Sys, pipes: dict[int, PipeEnd] | None = None) -> None:
        self.inner = inner
        self.pipes: dict[int, PipeEnd] = dict(pipes or {})

    @property
    def uid(self) -> int:
        return self.inner.uid

    @property
    def pid(self) -> int:
        return self.inner.pid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # descriptors ---------------------------------------------------------------
    def read(self, fd: int, size: int) -> bytes:
        end = self.pipes.get(fd)
        if end is None:
            return self.inner.read(fd, size)
        if end.writing:
            raise SysError(EBADF, f"fd {fd} is the write end of a pipe")
        buf = end.buf
        chunk = bytes(buf.data[buf.pos:buf.pos + size])
        buf.pos += len(chunk)
        return chunk

    def write(self, fd: int, data: bytes) -> int:
        end = self.pipes.get(fd)
        if end is None:
            return self.inner.write(fd, data)
        if not end.writing:
            raise SysError(EBADF, f"fd {fd} is the read end of a pipe")
        end.buf.data += data
        return len(data)

    def close(self, fd: int) -> None:
        if self.pipes.pop(fd, None) is None:
            self.inner.close(fd)

    def dup2(self, fd: int, newfd: int) -> int:
        end = self.pipes.get(fd)
        if end is None:
            self.inner.dup2(fd, newfd)
            self.pipes.pop(newfd, None)
        else:
            self.pipes[newfd] = end
        return newfd

    def fstat(self, fd: int) -> Stat:
        if fd in self.pipes:
            return Stat(0, 0, S_IFIFO | 0o600, 1, self.inner.uid, 0, 0, 0, 0, 4096, 0.0, 0.0, 0.0)
        return self.inner.fstat(fd)

    def _real(self, fd: int, errno: int) -> None:
        if fd in self.pipes:
            raise SysError(errno, f"fd {fd} is a pipe")

    def lseek(self, fd: int, offset: int, whence: int = SEEK_SET) -> int:
        self._real(fd, ESPIPE)
        return self.inner.lseek(fd, offset, whence)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._real(fd, ESPIPE)
        return self.inner.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._real(fd, ESPIPE)
        return self.inner.pwrite(fd, data, offset)

    def ftruncate(self, fd: int, size: int) -> None:
        self._real(fd, EINVAL)
        self.inner.ftruncate(fd, size)

    def ioctl(self, fd: int, cmd: int, arg: bytes = b"", user: dict[int, bytearray] | None = None) -> bytes:
        self._real(fd, ENOTTY)
        return self.inner.ioctl(fd, cmd, arg, user)

    # processes -------------------------------------------------------------------
    def spawn_kstack(self, comm: str, uid: int | None = None) -> Sys:
        child = self.inner.spawn_kstack(comm, uid) if uid is not None else self.inner.spawn_kstack(comm)
        inherited = {fd: end for fd, end in self.pipes.items() if fd <= 2}
        return ProcSys(child, inherited) if inherited else child





def with_pipes(sys: Sys, pipes: dict[int, PipeEnd]) -> ProcSys:
    """`sys` with more descriptors bound to buffers (keeping those it already has)."""
    if isinstance(sys, ProcSys):
        return ProcSys(sys.inner, {**sys.pipes, **pipes})
    return ProcSys(sys, pipes)
