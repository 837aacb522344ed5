"""The `armboard flash` command line: kept apart from tools/flash_cmd.py so that building the
main parser (on every `armboard boot`) does not import the layout and hints machinery."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_PROVIDER = "cfid0"
DEFAULT_SECTOR_SIZE = 4


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `flash build` and `flash map` under the main parser's subcommands."""
    flash = subparsers.add_parser("flash", help="build NOR flash images from a layout; split them as geom_map does")
    sub = flash.add_subparsers(dest="flash_command", required=True, metavar="{build,map}")
    build = sub.add_parser("build", help="write a flash image and its device.hints from a layout TOML")
    build.add_argument("layout", type=Path, metavar="LAYOUT.toml",
                       help="the layout (format: README \"Flash layout files\"; example: images/geom_map-example)")
    build.add_argument("-o", dest="flash_output", type=Path, required=True, metavar="FLASH.img",
                       help="the image to write")
    build.add_argument("-H", dest="flash_hints", type=Path, metavar="FILE",
                       help="where to write the device.hints (default FLASH.img.hints)")
    fmap = sub.add_parser("map", help="split a flash image by device.hints as the kernel's geom_map does")
    fmap.add_argument("image", type=Path, metavar="FLASH.img")
    fmap.add_argument("--hints", dest="flash_hints", type=Path, required=True, metavar="FILE",
                      help="device.hints with hint.map.N")
    fmap.add_argument("--provider", default=DEFAULT_PROVIDER, metavar="NAME",
                      help="the disk the hints' at names (default cfid0)")
    fmap.add_argument("-v", dest="verbose", action="store_true", help="print the MAP lines, as with bootverbose")
    fmap.add_argument("--sector-size", type=int, default=DEFAULT_SECTOR_SIZE, metavar="N",
                      help=f"the disk's sector size (default {DEFAULT_SECTOR_SIZE}, geom_map(4)'s cfid0)")
    fmap.add_argument("--erase-block", default=None, metavar="SIZE",
                      help="uniform erase blocks for the picture and the alignment warnings (default: the "
                           "bank's, from --profile or the bank of the image's size; else 64K, geom_map(4)'s)")
    fmap.add_argument("--picture", type=Path, metavar="FILE.svg|png", help="draw the partitions")
    fmap.add_argument("--profile", metavar="BOARD",
                      help="take the sector size and erase block from BOARD's first flash bank, as the booted "
                           "kernel's cfi driver sees it (e.g. embedded)")
    return flash
