"""The `armboard mkuzip` command line, apart from tools/mkuzip_cmd.py so that building the main
parser (on every `armboard boot`) does not import the compressors."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CLSTSIZE = 16384   # usr.bin/mkuzip/mkuzip.c: DEFAULT_CLSTSIZE


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `mkuzip` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "mkuzip", help="compress a disk image into a uzip (cloop) image, as FreeBSD's mkuzip(8)",
        description="Compress IMAGE into a cloop image for GEOM UZIP (mkuzip(8)'s format, flags and defaults).")
    p.add_argument("image", type=Path, metavar="IMAGE", help="the image to compress")
    p.add_argument("-A", dest="algorithm", default=None, metavar="zlib|lzma|zstd",
                   help="compression algorithm (default zlib)")
    p.add_argument("-L", dest="legacy_lzma", action="store_true", help="same as -A lzma (mkuzip's old flag)")
    p.add_argument("-C", dest="level", default=None, metavar="LEVEL",
                   help="compression level (default: zlib 9, lzma 6, zstd 9)")
    p.add_argument("-s", dest="cluster", default=str(DEFAULT_CLSTSIZE), metavar="CLUSTER",
                   help=f"cluster size in bytes, a multiple of 512 (default {DEFAULT_CLSTSIZE})")
    p.add_argument("-d", dest="dedup", action="store_true", help="store repeated clusters once (back-references)")
    p.add_argument("-Z", dest="no_zero", action="store_true", help="compress all-zero clusters instead of eliding them")
    p.add_argument("-j", dest="jobs", default=None, metavar="N", help="compression threads (default: CPU count)")
    p.add_argument("-o", dest="output", type=Path, default=None, metavar="OUT",
                   help="output file (default IMAGE.uzip, .ulzma or .uzst)")
    p.add_argument("-v", dest="verbose", action="store_true", help="print what happens to every cluster")
    p.add_argument("-S", dest="summary", action="store_true", help="print a summary on stdout")
    return p
