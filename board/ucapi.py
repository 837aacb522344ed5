"""A lean ctypes binding of libunicorn for the board: only what the machine uses.

Why: the official Python binding costs about 30-45 ms to import (it pulls in inspect, pathlib and
prototypes for every API), a large share of a whole `armboard boot`, whose target is to come close
to qemu-system-arm's 50 ms. This module loads the same libunicorn.so.2 that the `unicorn` package
ships, declares the dozen functions the board calls and mirrors the method names of
`unicorn.Uc`, so the machine reads the same either way. Tests and tools that want the full API
still use the official package.

Constants are those of unicorn 2.1.4 (bindings/python/unicorn/unicorn_const.py and arm_const.py);
tests/board/test_ucapi.py checks each against the installed package.
"""

from __future__ import annotations

import ctypes
import os
import sys

TYPE_CHECKING = False   # typing costs an import on every boot; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# unicorn_const.py
UC_ARCH_ARM, UC_MODE_ARM = 1, 0
UC_ERR_OK, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED = 0, 6, 7, 8
UC_ERR_WRITE_PROT, UC_ERR_EXCEPTION = 12, 21
UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC, UC_PROT_ALL = 1, 2, 4, 7
UC_MEM_READ, UC_MEM_WRITE, UC_MEM_FETCH = 16, 17, 18
UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_UNMAPPED, UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_PROT = 19, 20, 21, 22
UC_HOOK_INTR, UC_HOOK_CODE, UC_HOOK_BLOCK = 1, 4, 8
UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE = 1024, 2048   # valid accesses (traces only: they slow every access)
UC_HOOK_MEM_READ_UNMAPPED, UC_HOOK_MEM_WRITE_UNMAPPED, UC_HOOK_MEM_FETCH_UNMAPPED = 16, 32, 64
UC_HOOK_MEM_WRITE_PROT, UC_HOOK_INSN_INVALID, UC_HOOK_TLB_FILL = 256, 16384, 131072
UC_CTL_IO_WRITE = 1
UC_CTL_UC_USE_EXITS, UC_CTL_UC_EXITS, UC_CTL_CPU_MODEL = 4, 6, 7
UC_CTL_TB_REMOVE_CACHE, UC_CTL_TB_FLUSH, UC_CTL_TLB_FLUSH, UC_CTL_TLB_TYPE = 9, 10, 11, 12
UC_TLB_CPU, UC_TLB_VIRTUAL = 0, 1
# arm_const.py
UC_CPU_ARM_CORTEX_A15 = 17
UC_ARM_REG_CPSR, UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_SP, UC_ARM_REG_SPSR = 3, 10, 11, 12, 13
UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3 = 66, 67, 68, 69   # R4..R12: 70..78
UC_ARM_REG_R7 = 73
UC_ARM_REG_CP_REG = 139
UC_ARM_REG_FPEXC, UC_ARM_REG_FPSCR, UC_ARM_REG_D0 = 4, 6, 14   # D0..D31: 14..45 (64-bit)

_u64, _u32, _int, _vp, _size = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t


def _library_path() -> str:
    """libunicorn.so.2 inside the installed `unicorn` package, found without importing it."""
    names = ("libunicorn.so.2", "libunicorn.so", "libunicorn.2.dylib", "libunicorn.dylib", "unicorn.dll")
    for entry in sys.path:
        for name in names:
            path = os.path.join(entry or ".", "unicorn", "lib", name)
            if os.path.exists(path):
                return path
    raise ImportError("libunicorn not found: install the 'unicorn' package (pip install unicorn)")


lib = ctypes.CDLL(_library_path())


def _proto(name: str, restype, *argtypes) -> Callable:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_uc_open = _proto("uc_open", _int, _int, _int, ctypes.POINTER(_vp))
_uc_close = _proto("uc_close", _int, _vp)
_uc_strerror = _proto("uc_strerror", ctypes.c_char_p, _int)
_uc_emu_start = _proto("uc_emu_start", _int, _vp, _u64, _u64, _u64, _size)
_uc_emu_stop = _proto("uc_emu_stop", _int, _vp)
_uc_reg_read = _proto("uc_reg_read", _int, _vp, _int, _vp)
_uc_reg_write = _proto("uc_reg_write", _int, _vp, _int, _vp)
_uc_mem_map_ptr = _proto("uc_mem_map_ptr", _int, _vp, _u64, _size, _u32, _vp)
_uc_mem_unmap = _proto("uc_mem_unmap", _int, _vp, _u64, _size)
_uc_mem_read = _proto("uc_mem_read", _int, _vp, _u64, _vp, _size)
_uc_mem_write = _proto("uc_mem_write", _int, _vp, _u64, _vp, _size)
_uc_mmio_map = _proto("uc_mmio_map", _int, _vp, _u64, _size, _vp, _vp, _vp, _vp)
_uc_hook_del = _proto("uc_hook_del", _int, _vp, _size)
_uc_hook_add = lib.uc_hook_add      # variadic: arguments converted per call
_uc_hook_add.restype = _int
_uc_ctl = lib.uc_ctl                # variadic
_uc_ctl.restype = _int


class UcError(Exception):
    def __init__(self, errno: int) -> None:
        super().__init__(_uc_strerror(errno).decode())
        self.errno = errno


def _check(status: int) -> None:
    if status != UC_ERR_OK:
        raise UcError(status)


class TlbEntry(ctypes.Structure):
    _fields_ = (("paddr", _u64), ("perms", _u32))


class _CpReg(ctypes.Structure):
    _fields_ = (("cp", _u32), ("is64", _u32), ("sec", _u32), ("crn", _u32), ("crm", _u32),
                ("opc1", _u32), ("opc2", _u32), ("val", _u64))


_HOOK_INTR = ctypes.CFUNCTYPE(None, _vp, _u32, _vp)
_HOOK_CODE = ctypes.CFUNCTYPE(None, _vp, _u64, _u32, _vp)
_HOOK_INSN_INVALID = ctypes.CFUNCTYPE(ctypes.c_bool, _vp, _vp)
_HOOK_MEM = ctypes.CFUNCTYPE(None, _vp, _int, _u64, _int, ctypes.c_int64, _vp)
_HOOK_MEM_INVALID = ctypes.CFUNCTYPE(ctypes.c_bool, _vp, _int, _u64, _int, ctypes.c_int64, _vp)
_HOOK_TLB_FILL = ctypes.CFUNCTYPE(ctypes.c_bool, _vp, _u64, _int, ctypes.POINTER(TlbEntry), _vp)
_MMIO_READ = ctypes.CFUNCTYPE(_u64, _vp, _u64, ctypes.c_uint, _vp)
_MMIO_WRITE = ctypes.CFUNCTYPE(None, _vp, _u64, ctypes.c_uint, _u64, _vp)
_MEM_HOOKS = (UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED
              | UC_HOOK_MEM_WRITE_PROT)


def _ctl_code(ctl: int, nargs: int) -> int:
    return (UC_CTL_IO_WRITE << 30) | (nargs << 26) | ctl


class Uc:
    """An ARM Unicorn engine with the subset of `unicorn.Uc`'s methods the board uses."""

    def __init__(self, arch: int, mode: int) -> None:
        self._uch = _vp()
        _check(_uc_open(arch, mode, ctypes.byref(self._uch)))
        self._keep: list[object] = []     # ctypes callbacks must outlive the engine
        self._reg = _u64()
        self._cp = _CpReg()

    def __del__(self) -> None:
        if getattr(self, "_uch", None):
            _uc_close(self._uch)
            self._uch = None

    # -- control
    def ctl_set_cpu_model(self, model: int) -> None:
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_CPU_MODEL, 1), _int(model)))

    def ctl_flush_tlb(self) -> None:
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_TLB_FLUSH, 0)))

    def ctl_set_tlb_mode(self, mode: int) -> None:
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_TLB_TYPE, 1), ctypes.c_uint(mode)))

    def ctl_exits_enabled(self, enable: bool) -> None:
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_UC_USE_EXITS, 1), _int(int(enable))))

    def ctl_set_exits(self, exits: Sequence[int]) -> None:
        arr = (_u64 * len(exits))(*exits)
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_UC_EXITS, 2), ctypes.cast(arr, _vp), _size(len(arr))))

    def ctl_flush_tb(self) -> None:
        """Drop every translated block: a hook added now reaches code translated before it."""
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_TB_FLUSH, 0)))

    def ctl_remove_cache(self, begin: int, end: int) -> None:
        _check(_uc_ctl(self._uch, _ctl_code(UC_CTL_TB_REMOVE_CACHE, 2), _u64(begin), _u64(end)))

    # -- registers
    def reg_read(self, reg: int) -> int:
        self._reg.value = 0
        _check(_uc_reg_read(self._uch, reg, ctypes.byref(self._reg)))
        return self._reg.value & 0xFFFFFFFF

    def reg_write(self, reg: int, value: int) -> None:
        self._reg.value = value & 0xFFFFFFFF
        _check(_uc_reg_write(self._uch, reg, ctypes.byref(self._reg)))

    def reg_read64(self, reg: int) -> int:
        """A 64-bit register (the VFP D registers)."""
        self._reg.value = 0
        _check(_uc_reg_read(self._uch, reg, ctypes.byref(self._reg)))
        return self._reg.value

    def reg_write64(self, reg: int, value: int) -> None:
        self._reg.value = value & 0xFFFFFFFFFFFFFFFF
        _check(_uc_reg_write(self._uch, reg, ctypes.byref(self._reg)))

    def cpr_read(self, coproc: int, opc1: int, crn: int, crm: int, opc2: int, sec: int, is_64: bool) -> int:
        cp = self._cp
        cp.cp, cp.is64, cp.sec, cp.crn, cp.crm, cp.opc1, cp.opc2, cp.val = (
            coproc, int(is_64), sec, crn, crm, opc1, opc2, 0)
        _check(_uc_reg_read(self._uch, UC_ARM_REG_CP_REG, ctypes.byref(cp)))
        return cp.val

    def cpr_write(self, coproc: int, opc1: int, crn: int, crm: int, opc2: int, sec: int, is_64: bool,
                  value: int) -> None:
        cp = self._cp
        cp.cp, cp.is64, cp.sec, cp.crn, cp.crm, cp.opc1, cp.opc2, cp.val = (
            coproc, int(is_64), sec, crn, crm, opc1, opc2, value)
        _check(_uc_reg_write(self._uch, UC_ARM_REG_CP_REG, ctypes.byref(cp)))

    # -- memory
    def mem_map_ptr(self, address: int, size: int, perms: int, ptr: int) -> None:
        _check(_uc_mem_map_ptr(self._uch, address, size, perms, ptr))

    def mem_unmap(self, address: int, size: int) -> None:
        _check(_uc_mem_unmap(self._uch, address, size))

    def mem_read(self, address: int, size: int) -> bytes:
        buf = ctypes.create_string_buffer(size)
        _check(_uc_mem_read(self._uch, address, buf, size))
        return buf.raw

    def mem_write(self, address: int, data: bytes) -> None:
        _check(_uc_mem_write(self._uch, address, data, len(data)))

    def mmio_map(self, address: int, size: int, read_cb: Callable, read_ud: object,
                 write_cb: Callable, write_ud: object) -> None:
        rcb = _MMIO_READ(lambda _h, off, sz, _u: read_cb(self, off, sz, read_ud))
        wcb = _MMIO_WRITE(lambda _h, off, sz, val, _u: write_cb(self, off, sz, val, write_ud))
        self._keep += [rcb, wcb]
        _check(_uc_mmio_map(self._uch, address, size, ctypes.cast(rcb, _vp), None, ctypes.cast(wcb, _vp), None))

    # -- hooks
    def hook_add(self, htype: int, callback: Callable, user_data: object = None, begin: int = 1,
                 end: int = 0) -> int:
        if htype == UC_HOOK_INTR:
            cb = _HOOK_INTR(lambda _h, intno, _u: callback(self, intno, user_data))
        elif htype in (UC_HOOK_CODE, UC_HOOK_BLOCK):
            cb = _HOOK_CODE(lambda _h, addr, size, _u: callback(self, addr, size, user_data))
        elif htype == UC_HOOK_INSN_INVALID:
            cb = _HOOK_INSN_INVALID(lambda _h, _u: bool(callback(self, user_data)))
        elif htype & (UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE) and not htype & ~(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE):
            cb = _HOOK_MEM(lambda _h, acc, addr, size, val, _u: callback(self, acc, addr, size, val, user_data))
        elif htype & _MEM_HOOKS and not htype & ~_MEM_HOOKS:
            cb = _HOOK_MEM_INVALID(lambda _h, acc, addr, size, val, _u:
                                   bool(callback(self, acc, addr, size, val, user_data)))
        elif htype == UC_HOOK_TLB_FILL:
            cb = _HOOK_TLB_FILL(lambda _h, va, acc, entry, _u: bool(callback(self, va, acc, entry.contents,
                                                                             user_data)))
        else:
            raise ValueError(f"hook type {htype:#x} is not supported by board.ucapi")
        handle = ctypes.c_size_t()
        self._keep.append(cb)
        _check(_uc_hook_add(self._uch, ctypes.byref(handle), _int(htype), ctypes.cast(cb, _vp), None,
                            _u64(begin), _u64(end)))
        return handle.value

    def hook_del(self, handle: int) -> None:
        """Remove a hook. Its ctypes callback stays in `_keep` until the engine closes: Unicorn frees a
        deleted hook only when the current emu_start returns, and may call it until then."""
        _check(_uc_hook_del(self._uch, handle))

    # -- running
    def emu_start(self, begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        _check(_uc_emu_start(self._uch, begin, until, timeout, count))

    def emu_stop(self) -> None:
        _check(_uc_emu_stop(self._uch))
