"""vfs_mountroot (sys/kern/vfs_mountroot.c): try each root specification, read-only first.

The specifications come, in order, from the loader's vfs.root.mountfrom (several may be given,
separated by spaces or ';'), the kernel's ROOTDEVNAME, and MD_ROOT's "ufs:/dev/md0" (md.c sets
rootdevnames[0] unless ROOTDEVNAME is given). With none at all nothing is tried. Once a root is
mounted, devfs goes on its /dev (vfs_mountroot_shuffle), so init finds /dev/console there.
"""

from __future__ import annotations

import re

from kernel_sim.fs.vfs import Mount, Vfs
from kernel_sim.kern.sysapi import SysError


def root_specs(env: dict[str, str], kernconf) -> list[str]:
    specs = [s for s in re.split(r"[\s;]+", env.get("vfs.root.mountfrom", "")) if s]
    rootdevname = kernconf.value("ROOTDEVNAME")
    if rootdevname:
        specs.append(str(rootdevname))
    elif kernconf.value("MD_ROOT"):
        specs.append("ufs:/dev/md0")
    return specs


def mountroot(vfs: Vfs, specs: list[str], printf) -> Mount | None:
    """Mount the first specification that works; None when every one failed (the caller panics)."""
    for spec in specs:
        fstype, _, dev = spec.partition(":")
        dev = dev if dev.startswith("/dev/") else f"/dev/{dev}"
        printf(f"Trying to mount root from {fstype}:{dev} [ro]...\n")
        try:
            root = vfs.mount(fstype, "/", {"from": dev, "ro": ""})
        except SysError as exc:
            printf(f"Mounting from {fstype}:{dev} failed with error {exc.errno}.\n")
            continue
        try:
            vfs.mount("devfs", "/dev", {"from": "devfs"})
        except SysError as exc:
            printf(f"mountroot: unable to remount devfs under /dev (error {exc.errno}).\n")
        return root
    return None
