"""vfs_mountroot (sys/kern/vfs_mountroot.c): try each root specification, read-only first, then ask.

The specifications come, in order, from the loader's vfs.root.mountfrom (several may be given,
separated by spaces or ';'), the kernel's ROOTDEVNAME, and MD_ROOT's "ufs:/dev/md0" (md.c sets
rootdevnames[0] unless ROOTDEVNAME is given). As vfs_mountroot_conf0 writes it, the list ends in
`.ask`: the mountroot> prompt on the console (parse_dir_ask), where the user types a specification,
`?` for the disks, `.` to yield, or an empty line to give up; a failed mount asks again. Without
console input there is no one to answer (FreeBSD would wait at the prompt for ever), so the list
ends as an aborted prompt does: in the caller's panic (`.onfail panic`).

Once a root is mounted, devfs goes on its /dev (vfs_mountroot_shuffle), so init finds /dev/console.

With no specification at all and no disk holding a file system the kernel could mount as root, the
boot is armboard's kernel-only boot (the tuning scenarios, over blank stand-in images): the caller
does not ask for a root (`root_candidates` is empty) and halts after init's processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kernel_sim.fs.ufs import UfsError, UfsMount
from kernel_sim.fs.vfs import Mount, Vfs
from kernel_sim.geom.core import GeomError, Mesh
from kernel_sim.kern.sysapi import ENOENT, SysError

CNGETS_SIZE = 80            # parse_dir_ask: char name[80]; cngets keeps one byte for the NUL (kern_cons.c)
INVALID_SPEC = -1           # parse_token / parse_skipto: PE_EOF, no "<fstype>:" in the line

# parse_dir_ask's help text (FreeBSD 11's wording)
ASK_HELP = ("\nManual root filesystem specification:\n"
            "  <fstype>:<device> [options]\n"
            "      Mount <device> using filesystem <fstype>\n"
            "      and with the specified (optional) option list.\n"
            "\n"
            "    eg. ufs:/dev/da0s1a\n"
            "        zfs:tank\n"
            "        cd9660:/dev/cd0 ro\n"
            "          (which is equivalent to: mount -t cd9660 -o ro /dev/cd0 /)\n"
            "\n"
            "  ?               List valid disk boot devices\n"
            "  .               Yield 1 second (for background tasks)\n"
            "  <empty line>    Abort manual input\n")


def root_specs(env: dict[str, str], kernconf) -> list[str]:
    specs = [s for s in re.split(r"[\s;]+", env.get("vfs.root.mountfrom", "")) if s]
    rootdevname = kernconf.value("ROOTDEVNAME")
    if rootdevname:
        specs.append(str(rootdevname))
    elif kernconf.value("MD_ROOT"):
        specs.append("ufs:/dev/md0")
    return specs


def mountroot(vfs: Vfs, specs: list[str], printf: Callable[[str], None], *,
              ask: Callable[[], str] | None = None, env: dict[str, str] | None = None) -> Mount | None:
    """Mount the first specification that works, then (with console input, `ask`: one line, "" at
    its end) the mountroot> prompt; None when nothing mounted (the caller panics)."""
    for spec in specs:
        _error, root = parse_mount(vfs, spec, printf)
        if root is not None:
            return root
    if ask is not None:
        return ask_root(vfs, ask, printf, env or {})
    return None


def parse_mount(vfs: Vfs, line: str, printf: Callable[[str], None]) -> tuple[int, Mount | None]:
    """parse_mount: "<fstype>:<device> [options]" mounted read-only on /; (0, root), (errno, None), or
    (INVALID_SPEC, None) for a line without "<fstype>:"."""
    tokens = line.split()
    if not tokens or ":" not in tokens[0]:
        return INVALID_SPEC, None
    fstype, _, dev = normal_spec(tokens[0]).partition(":")
    opts = tokens[1] if len(tokens) > 1 else None
    printf(f"Trying to mount root from {fstype}:{dev} [{opts or 'ro'}]...\n")
    if fstype not in vfs.factories:                       # vfs_byname(fs) == NULL
        printf(f"Mounting from {fstype}:{dev} failed with error {ENOENT}: unknown file system.\n")
        return ENOENT, None
    try:
        root = vfs.mount(fstype, "/", {"from": dev, "ro": "", **mountroot_options(opts)})
    except SysError as exc:
        printf(f"Mounting from {fstype}:{dev} failed with error {exc.errno}.\n")
        return exc.errno, None
    try:
        vfs.mount("devfs", "/dev", {"from": "devfs"})
    except SysError as exc:
        printf(f"mountroot: unable to remount devfs under /dev (error {exc.errno}).\n")
    return 0, root


def normal_spec(spec: str) -> str:
    """"ufs:md0" as it is tried: "ufs:/dev/md0" (a device name without /dev/ is one of devfs's)."""
    fstype, _, dev = spec.partition(":")
    return f"{fstype}:{dev if dev.startswith('/dev/') else '/dev/' + dev}"


def mountroot_options(opts: str | None) -> dict[str, str]:
    """parse_mountroot_options: "name[=value],..." as mount options; rw and noro are dropped, since
    the root is mounted read-only first."""
    out: dict[str, str] = {}
    for item in (opts or "").split(","):
        if not item:
            break
        name, _, value = item.partition("=")
        if name not in ("rw", "noro"):
            out[name] = value
    return out


def ask_root(vfs: Vfs, read_line: Callable[[], str], printf: Callable[[str], None],
             env: dict[str, str]) -> Mount | None:
    """parse_dir_ask: the loader's variables, the help, then `mountroot> ` until a mount works (the
    root) or an empty line or the end of input (None)."""
    printf("\nLoader variables:\n")
    for var in ("vfs.root.mountfrom", "vfs.root.mountfrom.options"):
        if var in env:
            printf(f"  {var}={env[var]}\n")
    printf(ASK_HELP)
    while True:
        printf("\nmountroot> ")
        line = read_line()
        if not line:
            printf("\n")                                   # the input ended: as if Enter was pressed
            return None
        name = re.split(r"[\r\n]", line, maxsplit=1)[0][:CNGETS_SIZE - 1]   # cngets ends at CR or LF
        if not name:
            return None
        if name == "?":
            printf("\nList of GEOM managed disk devices:\n  " + " ".join(disk_names(vfs.mesh)) + "\n")
            continue
        if name == ".":                                    # pause("rmask", hz): nothing runs meanwhile
            continue
        error, root = parse_mount(vfs, name, printf)
        if error == INVALID_SPEC:
            printf("Invalid file system specification.\n")
        if root is not None:
            return root


def disk_names(mesh: Mesh) -> list[str]:
    """g_dev_print: the DEV class's geoms, one per live provider, newest first."""
    return [pp.name for gp in reversed(mesh.geoms) for pp in gp.providers if not pp.error]


def root_candidates(vfs: Vfs) -> list[str]:
    """The root specifications that would mount: "ufs:/dev/NAME" for each live provider (oldest first)
    whose superblock ffs would accept, "cd9660:/dev/NAME" for one with an ISO 9660 primary volume."""
    found = []
    for name in reversed(disk_names(vfs.mesh)):
        try:
            cp = vfs.mesh.open(name)
        except GeomError:
            continue
        try:
            fstype = _root_fstype(cp.read_bytes, cp.provider.mediasize)
        except GeomError:
            fstype = None
        finally:
            vfs.mesh.close(cp)
        if fstype is not None:
            found.append(f"{fstype}:/dev/{name}")
    return found


def _root_fstype(read: Callable[[int, int], bytes], size: int) -> str | None:
    try:
        UfsMount.open(read, size)
        return "ufs"
    except UfsError:
        pass
    from kernel_sim.fs.cd9660 import has_primary_volume  # the ISO 9660 code, only when UFS was not it

    return "cd9660" if has_primary_volume(read, size) else None
