"""The kernel's identity strings, as sys/conf/newvers.sh writes them into vers.c.

Why a module of its own: the banner (mi_startup), kern.version and a crash dump's header
(mem(4)'s minidump) all print them, and none of those should need another's module to do so.
"""

from __future__ import annotations

ARMBOARD_VERSION = "0.1.0"      # pyproject.toml's version (a test holds them equal)
VERSION = f"armboard {ARMBOARD_VERSION} (synthetic FreeBSD 12 armv7 kernel)"
OSRELEASE = "12.0-ARMBOARD"      # the branch word says what this is: FreeBSD 12's interfaces, armboard's kernel
OSRELDATE = 1200086             # sys/sys/param.h __FreeBSD_version of 12.0-RELEASE
