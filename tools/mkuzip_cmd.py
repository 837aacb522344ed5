"""`armboard mkuzip`: compress a disk image into a cloop image the kernel's UZIP class reads.

The flags and messages are mkuzip(8)'s (usr.bin/mkuzip/mkuzip.c): -A zlib|lzma|zstd, -C level,
-s cluster size (a multiple of 512, 16384 by default), -d (dedup), -Z (no zero-block detection),
-j threads, -o output, -v (per-cluster lines on stderr), -S (summary on stdout), -L (= -A lzma).
The default output is IMAGE plus .uzip, .ulzma or .uzst, as mkuzip names it. Bad input is an
InputError (one line, exit status 2); the input is never modified and a failed run leaves no output.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from pathlib import Path

from kernel_sim.errnos import describe_host
from kernel_sim.errors import InputError, check_input_file
from kernel_sim.geom import uzip_format as uf

MAX_WORKERS_AUTO = uf.MAX_WORKERS_AUTO     # usr.bin/mkuzip/mkuzip.h: the default -j is the CPU count, capped


def _int(text: str, message: str, where: str) -> int:
    """atoi() as mkuzip uses it, but a value that is not a number is an error rather than 0."""
    try:
        return int(text, 10)
    except ValueError:
        raise InputError(f"{message}: {text}", where) from None


def _settings(args: argparse.Namespace) -> tuple[str, int, int, int]:
    """(compressor, level, cluster, jobs) after mkuzip's checks, in its order."""
    compressor = "lzma" if args.legacy_lzma and args.algorithm is None else (args.algorithm or "zlib")
    if compressor not in uf.COMPRESSOR_LETTER:
        raise InputError(f"invalid algorithm specified: {compressor}", "-A")
    level = None if args.level is None else _int(args.level, "invalid compression level", "-C")
    cluster = _int(args.cluster, "invalid cluster size specified", "-s")
    if cluster <= 0:
        raise InputError(f"invalid cluster size specified: {args.cluster}", "-s")
    if args.jobs is None:
        jobs = min(os.cpu_count() or 1, MAX_WORKERS_AUTO)
    else:
        jobs = _int(args.jobs, "invalid number of compression threads specified", "-j")
        if jobs <= 0:
            raise InputError(f"invalid number of compression threads specified: {args.jobs}", "-j")
    try:
        level = uf.check_params(compressor, level, cluster)
    except ValueError as exc:
        where = "-C" if "level" in str(exc) else "-s"
        raise InputError(str(exc), where) from None
    return compressor, level, cluster, jobs


def _check_paths(image: Path, output: Path) -> None:
    """The input must be a readable file or block device (a disk, as mkuzip reads one; not a character
    device such as /dev/zero, which never ends, nor a FIFO, which would block the check), the output
    somewhere else, in a directory that exists."""
    st = check_input_file(image, what="input image", block_devices=True)
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise InputError("the input is empty: nothing to compress", str(image))
    if output.is_dir():
        raise InputError("is a directory: give the output file name", str(output))
    parent = output.parent
    if not parent.is_dir():
        raise InputError("the output's directory does not exist", str(output))
    same = output.resolve() == image.resolve()
    if not same and output.exists():
        try:
            same = output.samefile(image)
        except OSError:
            same = False
    if same:
        raise InputError("the output would overwrite the input", str(output))


def cmd_mkuzip(args: argparse.Namespace) -> int:
    """Run mkuzip: 0 on success; InputError for bad flags or files."""
    compressor, level, cluster, jobs = _settings(args)
    image: Path = args.image
    output: Path = args.output or image.with_name(image.name + uf.SUFFIX[compressor])
    _check_paths(image, output)
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
    start = time.perf_counter()
    try:
        stats = uf.write_image(image, output, compressor=compressor, level=level, cluster=cluster,
                               dedup=args.dedup, zero_detect=not args.no_zero, jobs=jobs, log=log)
    except OSError as exc:
        where = exc.filename or str(image)
        raise InputError(f"{describe_host(exc)}", str(where)) from None
    except ValueError as exc:
        raise InputError(str(exc), str(image)) from None
    if args.summary or args.verbose:
        # mkuzip prints it once: on stdout with -S, else on stderr
        elapsed = max(time.perf_counter() - start, 1e-9)
        saved = stats.input_size - stats.data_end
        decrease = 100.0 * saved / stats.input_size if stats.input_size else 0.0
        print(f"compressed data to {stats.data_end} bytes, saved {saved} bytes, {decrease:.2f}% decrease, "
              f"{stats.input_size / elapsed:.2f} bytes/sec.", file=sys.stdout if args.summary else sys.stderr)
    return 0
