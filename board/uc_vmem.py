"""ctypes access to libunicorn's virtual-memory API (``uc_vmem_*``).

Why this exists: Unicorn 2.1.4 exports ``uc_vmem_translate``, ``uc_vmem_read`` and ``uc_vmem_write``
from libunicorn.so.2, but its Python binding wraps none of them, and ``mem_read``/``mem_write`` and the
memory hooks only take *physical* addresses.  The monitor, the debugger stub and the MMU agreement
test need "what does the CPU's own MMU say about this virtual address", so these thin wrappers bind
the three C functions on the library board.ucapi loaded (the same libunicorn.so.2 the official
binding uses, so engines from either binding work).

C signatures (unicorn 2.1.4 ``include/unicorn/unicorn.h``)::

    uc_err uc_vmem_translate(uc_engine *uc, uint64_t address, uc_prot prot, uint64_t *paddress);
    uc_err uc_vmem_read(uc_engine *uc, uint64_t address, uc_prot prot, void *bytes, size_t size);
    uc_err uc_vmem_write(uc_engine *uc, uint64_t address, uc_prot prot, const void *bytes, size_t size);

``prot`` must be exactly one of UC_PROT_READ / UC_PROT_WRITE / UC_PROT_EXEC (else UC_ERR_ARG).  The
walk uses the CPU's current translation regime and privilege (CPSR mode), i.e. the same MMU index a
guest access would use, and does not raise a guest exception when it faults.
"""

from __future__ import annotations

import ctypes

from .ucapi import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, UcError
from .ucapi import lib as uclib

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

    Uc = Any  # board.ucapi.Uc or unicorn.Uc: both keep the engine handle in `_uch`

__all__ = [
    "UC_PROT_EXEC",
    "UC_PROT_READ",
    "UC_PROT_WRITE",
    "vmem_read",
    "vmem_translate",
    "vmem_translate_or_raise",
    "vmem_write",
]

_UC_ERR_OK = 0
_VALID_PROT = (UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC)

# Prototypes built from (name, library) so the binding's own CDLL attributes are left untouched.
_translate_t = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)
)
_rw_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_uc_vmem_translate = _translate_t(("uc_vmem_translate", uclib))
_uc_vmem_read = _rw_t(("uc_vmem_read", uclib))
_uc_vmem_write = _rw_t(("uc_vmem_write", uclib))


def _handle(uc: Uc) -> ctypes.c_void_p:
    """The ``uc_engine *`` behind a Python ``Uc`` (the binding keeps it in ``_uch``)."""
    uch = getattr(uc, "_uch", None)
    if uch is None:
        raise ValueError("Uc object has no open engine handle")
    return uch


def _check_prot(prot: int) -> None:
    if prot not in _VALID_PROT:
        raise ValueError(f"prot must be one of UC_PROT_READ/WRITE/EXEC, got {prot!r}")


def vmem_translate(uc: Uc, va: int, prot: int) -> int | None:
    """Physical address the CPU's MMU gives ``va`` for an access of kind ``prot``; None if it faults."""
    _check_prot(prot)
    pa = ctypes.c_uint64(0)
    err = _uc_vmem_translate(_handle(uc), va & 0xFFFFFFFFFFFFFFFF, prot, ctypes.byref(pa))
    if err != _UC_ERR_OK:
        return None
    return pa.value


def vmem_read(uc: Uc, va: int, size: int, prot: int = UC_PROT_READ) -> bytes | None:
    """``size`` bytes at virtual ``va`` through the MMU, or None if any page of the range faults."""
    _check_prot(prot)
    if size < 0:
        raise ValueError("size must be >= 0")
    if size == 0:
        return b""
    buf = ctypes.create_string_buffer(size)
    err = _uc_vmem_read(_handle(uc), va, prot, buf, size)
    if err != _UC_ERR_OK:
        return None
    return buf.raw


def vmem_write(uc: Uc, va: int, data: bytes, prot: int = UC_PROT_WRITE) -> bool:
    """Write ``data`` at virtual ``va`` through the MMU; False if a page faults (a prefix may be written).

    The access check uses ``prot`` only for the translation: Unicorn then writes through
    ``uc_mem_write``, which ignores the physical region's own protection.
    """
    _check_prot(prot)
    if not data:
        return True
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    err = _uc_vmem_write(_handle(uc), va, prot, buf, len(data))
    return err == _UC_ERR_OK


def vmem_translate_or_raise(uc: Uc, va: int, prot: int) -> int:
    """Like :func:`vmem_translate` but raises ``UcError`` carrying Unicorn's error code on a fault."""
    _check_prot(prot)
    pa = ctypes.c_uint64(0)
    err = _uc_vmem_translate(_handle(uc), va & 0xFFFFFFFFFFFFFFFF, prot, ctypes.byref(pa))
    if err != _UC_ERR_OK:
        raise UcError(err)
    return pa.value
