"""Kernel config files (config(5) syntax) and the option registry they are checked against."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.loader.kernconf import KernelConfig, parse_kernconf
from kernel_sim.loader.options import (
    DEVICES,
    OPTIONS,
    OptionKind,
    check_device,
    lookup_option,
    parse_c_integer,
)

# md(4)'s example, with the lines a config needs around it.
MD4_EXAMPLE = """\
ident           ARM-MD
machine         arm armv7
cpu             CPU_CORTEXA
device          md
options         MD_ROOT                 # MD is a potential root device
options         MD_ROOT_READONLY        # disallow mounting root writeable
options         MD_ROOT_SIZE=8192       # 8MB ram disk
makeoptions     MFS_IMAGE=/h/foo/ARM-MD
options         ROOTDEVNAME=\\"ufs:md0\\"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def conf(tmp_path: Path, body: str, *, ident: bool = True) -> KernelConfig:
    text = ("ident TEST\n" if ident else "") + body
    return parse_kernconf(write(tmp_path, "TEST", text))


def error(tmp_path: Path, body: str, *, ident: bool = True) -> InputError:
    text = ("ident TEST\n" if ident else "") + body
    path = write(tmp_path, "TEST", text)
    with pytest.raises(InputError) as info:
        parse_kernconf(path)
    return info.value


# -- good input ----------------------------------------------------------------------------------


def test_md4_example_parses(tmp_path: Path) -> None:
    cfg = parse_kernconf(write(tmp_path, "ARM-MD", MD4_EXAMPLE))
    assert cfg.ident == "ARM-MD"
    assert cfg.machine == "arm armv7"
    assert cfg.cpus == ["CPU_CORTEXA"]
    assert cfg.devices == {"md"}
    assert cfg.options == {
        "MD_ROOT": True,
        "MD_ROOT_READONLY": True,
        "MD_ROOT_SIZE": 8192,
        "ROOTDEVNAME": "ufs:md0",
    }
    assert cfg.makeoptions == {"MFS_IMAGE": "/h/foo/ARM-MD"}
    assert Path(cfg.mfs_image) == Path("/h/foo/ARM-MD")
    assert cfg.origin["MD_ROOT_SIZE"] == f"{tmp_path / 'ARM-MD'}:7"
    assert cfg.origin["device md"] == f"{tmp_path / 'ARM-MD'}:4"
    assert Path(cfg.path) == tmp_path / "ARM-MD"


def test_values_are_typed_with_registry_defaults(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "options MD_ROOT, NKPT2PG=64\n")
    assert cfg.value("NKPT2PG") == 64
    assert cfg.value("LOCORE_MAP_MB") == 64  # default, sys/arm/arm/locore-v6.S
    assert cfg.value("VM_KMEM_SIZE_SCALE") == 3
    assert cfg.value("VM_KMEM_SIZE_MIN") == 12 * 1024 * 1024
    assert cfg.value("VM_KMEM_SIZE") is None
    assert cfg.value("MD_ROOT") is True
    assert cfg.value("MD_ROOT_READONLY") is False
    assert cfg.value("MD_ROOT_FSTYPE") == "ufs"
    assert cfg.value("ROOTDEVNAME") is None
    assert cfg.has("MD_ROOT") and cfg.has("NKPT2PG")
    assert not cfg.has("LOCORE_MAP_MB")
    assert cfg.origin_of("LOCORE_MAP_MB").startswith("default (sys/arm/arm/locore-v6.S")
    assert cfg.origin_of("NKPT2PG") == f"{tmp_path / 'TEST'}:2"


def test_value_of_unknown_option_is_a_programming_error(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "")
    with pytest.raises(KeyError):
        cfg.value("NOPE")
    with pytest.raises(KeyError):
        cfg.has("NOPE")
    with pytest.raises(KeyError):
        cfg.origin_of("NOPE")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("options VM_KMEM_SIZE_MIN=(12*1024*1024)", 12 * 1024 * 1024),
        ("options VM_KMEM_SIZE_MIN=(12 * 1024 * 1024)", 12 * 1024 * 1024),
        ("options VM_KMEM_SIZE_MIN=12*1024*1024", 12 * 1024 * 1024),
        ("options VM_KMEM_SIZE_MIN=((2)*(3*4))", 24),
        ("options VM_KMEM_SIZE_MIN=0x400000", 0x400000),
        ("options VM_KMEM_SIZE_MIN=(400UL*1024*1024)", 400 * 1024 * 1024),
        ("options VM_KMEM_SIZE_MIN=010", 8),
        ("options VM_KMEM_SIZE_MIN = 5", 5),
        ("options VM_KMEM_SIZE_MIN=0", 0),
        ("options VM_KMEM_SIZE_MIN=0xFFFFFFFF", 0xFFFF_FFFF),
    ],
)
def test_integer_values_as_c_reads_them(tmp_path: Path, line: str, expected: int) -> None:
    assert conf(tmp_path, line + "\n").value("VM_KMEM_SIZE_MIN") == expected


@pytest.mark.parametrize(
    "line",
    [
        'options ROOTDEVNAME=\\"ufs:/dev/md0\\"',
        'options ROOTDEVNAME="ufs:/dev/md0"',
        "options ROOTDEVNAME=ufs:/dev/md0",
        'options ROOTDEVNAME=\\"ufs:/dev/md0\\"  # comment "with quotes"',
    ],
)
def test_string_options_accept_escaped_plain_and_bare(tmp_path: Path, line: str) -> None:
    assert conf(tmp_path, line + "\n").value("ROOTDEVNAME") == "ufs:/dev/md0"


def test_hash_inside_quotes_is_not_a_comment(tmp_path: Path) -> None:
    cfg = conf(tmp_path, 'makeoptions COPTFLAGS="-O2 #x"\n')
    assert cfg.makeoptions["COPTFLAGS"] == "-O2 #x"


def test_comments_blank_lines_tabs_crlf(tmp_path: Path) -> None:
    body = "# a comment\r\n\r\n\toptions\tNKPT2PG=48\t# trailing   \r\n   \t\n  device\tmd   \n"
    cfg = conf(tmp_path, body)
    assert cfg.value("NKPT2PG") == 48
    assert cfg.devices == {"md"}


def test_later_lines_override_and_no_forms_remove(tmp_path: Path) -> None:
    body = """\
options NKPT2PG=40
options NKPT2PG=50
options MD_ROOT
nooptions MD_ROOT
device md, uart
nodevice uart
makeoptions DEBUG=-g
nomakeoptions DEBUG
cpu CPU_KRAIT
nocpu CPU_KRAIT
"""
    cfg = conf(tmp_path, body)
    assert cfg.value("NKPT2PG") == 50
    assert cfg.origin["NKPT2PG"].endswith(":3")
    assert not cfg.has("MD_ROOT") and "MD_ROOT" not in cfg.origin
    assert cfg.devices == {"md"}
    assert cfg.makeoptions == {}
    assert cfg.cpus == []


def test_keyword_aliases_and_comma_lists(tmp_path: Path) -> None:
    body = """\
option INVARIANTS, INVARIANT_SUPPORT, WITNESS, DDB, KDB, GDB, VERBOSE_SYSINIT
devices md, uart, pl011, cfi, cfid, geom_map, geom_uzip, geom_uncompress, mem, tmpfs
device random, loop, ether, bpf
options FFS, TMPFS, GEOM_MAP, GEOM_UZIP
nooption WITNESS
nodevices loop
makeoption A=1, B="two words"
nomakeoption A
"""
    cfg = conf(tmp_path, body)
    assert {"INVARIANTS", "INVARIANT_SUPPORT", "DDB", "KDB", "GDB", "VERBOSE_SYSINIT"} <= set(cfg.options)
    assert "WITNESS" not in cfg.options
    assert "loop" not in cfg.devices and "geom_uncompress" in cfg.devices
    assert cfg.makeoptions == {"B": "two words"}


def test_has_device_accepts_the_option_spelling(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "options GEOM_MAP\ndevice geom_uzip\n")
    assert cfg.has_device("geom_map")
    assert cfg.has_device("geom_uzip")
    assert not cfg.has_device("geom_uncompress")
    assert not cfg.has_device("md")


def test_makeoptions_append_and_mfs_image_relative_to_its_file(tmp_path: Path) -> None:
    write(tmp_path, "conf/sub/std.md", "makeoptions MFS_IMAGE=../images/root.ufs\n")
    body = """\
include "sub/std.md"
makeoptions CFLAGS=-O2
makeoptions CFLAGS+=-pipe
makeoptions CFLAGS += "-g -fno-common"
makeoptions NEW+=x
makeoptions EMPTY=
makeoptions BARE
"""
    top = write(tmp_path, "conf/TOP", "ident TOP\n" + body)
    cfg = parse_kernconf(top)
    assert Path(cfg.mfs_image) == tmp_path / "conf/sub/../images/root.ufs"
    assert cfg.makeoptions["MFS_IMAGE"] == "../images/root.ufs"
    assert cfg.makeoptions["CFLAGS"] == "-O2 -pipe -g -fno-common"
    assert cfg.makeoptions["NEW"] == "x"
    assert cfg.makeoptions["EMPTY"] == "" and cfg.makeoptions["BARE"] == ""
    assert cfg.origin["makeoptions MFS_IMAGE"] == f"{tmp_path / 'conf/sub/std.md'}:1"


def test_nomakeoptions_mfs_image_clears_it(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "makeoptions MFS_IMAGE=root.img\nnomakeoptions MFS_IMAGE\n")
    assert cfg.mfs_image is None


def test_includes_hints_and_files_resolve_against_the_including_file(tmp_path: Path) -> None:
    write(tmp_path, "conf/std/std.arm", "machine arm armv7\ncpu CPU_CORTEXA\ninclude common\n")
    write(tmp_path, "conf/std/common", 'options KERNVIRTADDR=0xc0000000\nhints "board.hints"\n')
    write(tmp_path, "conf/diamond", "options INVARIANTS\n")
    top = write(
        tmp_path,
        "conf/TOP",
        'ident TOP\ninclude std/std.arm\ninclude diamond\ninclude "diamond"\nfiles "files.arm"\n'
        f"hints {tmp_path / 'abs.hints'}\n",
    )
    cfg = parse_kernconf(top)
    assert cfg.value("KERNVIRTADDR") == 0xC000_0000
    assert [Path(p) for p in cfg.hints_files] == [tmp_path / "conf/std/board.hints", tmp_path / "abs.hints"]
    assert Path(cfg.hints_file) == tmp_path / "abs.hints"
    assert [Path(p) for p in cfg.files] == [tmp_path / "conf/files.arm"]
    assert cfg.origin["KERNVIRTADDR"] == f"{tmp_path / 'conf/std/common'}:1"
    assert Path(cfg.sources[0]) == top and len(cfg.sources) == 5  # the diamond include is read twice


def test_hints_file_is_none_without_hints(tmp_path: Path) -> None:
    assert conf(tmp_path, "").hints_file is None


def test_machine_armv6_and_maxusers(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "machine arm armv6\nmaxusers 0\n")
    assert cfg.machine == "arm armv6" and cfg.maxusers == 0
    assert conf(tmp_path, "machine arm\nmaxusers 0x10\n").maxusers == 16


def test_quoted_ident(tmp_path: Path) -> None:
    assert conf(tmp_path, 'ident "MY KERNEL"\n', ident=False).ident == "MY KERNEL"


def test_every_registered_default_is_in_range() -> None:
    for opt in OPTIONS.values():
        assert opt.source, opt.name
        if opt.kind in (OptionKind.INT, OptionKind.SIZE_KB, OptionKind.BYTES) and opt.default is not None:
            assert isinstance(opt.default, int)
            opt.check_range(opt.default, where=None)
        if opt.kind == OptionKind.FLAG:
            assert opt.default is False


def test_registry_ranges_fit_32_bits() -> None:
    assert OPTIONS["LOCORE_MAP_MB"].maximum == 1023
    assert 0xC000_0000 + 1023 * (1 << 20) <= 0xFFFF_0000
    assert OPTIONS["NKPT2PG"].maximum == 256
    assert OPTIONS["MD_ROOT_SIZE"].maximum == 1 << 20
    for opt in OPTIONS.values():
        if opt.maximum is not None:
            assert opt.maximum <= 0xFFFF_FFFF


def test_devices_listed() -> None:
    for name in (
        "md",
        "uart",
        "pl011",
        "cfi",
        "cfid",
        "geom_map",
        "geom_uzip",
        "geom_uncompress",
        "mem",
        "tmpfs",
        "random",
        "loop",
        "ether",
        "bpf",
    ):
        assert name in DEVICES
        assert check_device(name, where=None) == name


# -- errors: each one an InputError at file:line ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "wording"),
    [
        ("optoins MD_ROOT\n", 2, "unknown keyword 'optoins'; did you mean options?"),
        ("frobnicate\n", 2, "unknown keyword 'frobnicate'"),
        ("NKPT2PG=64\n", 2, "unknown keyword 'NKPT2PG': set options with 'options NKPT2PG=VALUE'"),
        ('"quoted"\n', 2, 'expected a keyword at the start of the line, found "quoted"'),
        ("= 3\n", 2, "expected a keyword at the start of the line, found '='"),
        ('env "kenv.txt"\n', 2, "env: static environment files are not supported; put kernel environment"),
        ("profile 2\n", 2, "profile: kernel profiling is not supported"),
        ("options NKPT2G=64\n", 2, "unknown option NKPT2G; did you mean NKPT2PG?"),
        ("options FROB\n", 2, "unknown option FROB"),
        (
            "options md_root\n",
            2,
            "unknown option md_root: option names are case-sensitive; did you mean MD_ROOT?",
        ),
        ("options md\n", 2, "unknown option md: md is a device; write 'device md'"),
        (
            "options BOOTVERBOSE\n",
            2,
            'bootverbose is a loader tunable; set boot_verbose="YES" in loader.conf',
        ),
        ("options MFS_IMAGE=x\n", 2, "MFS_IMAGE is a make option; write 'makeoptions MFS_IMAGE=path'"),
        ("nooptions NOPE\n", 2, "unknown option NOPE"),
        ("options NKPT2PG\n", 2, "NKPT2PG needs a value, e.g. options NKPT2PG=32"),
        ("options NKPT2PG=\n", 2, "NKPT2PG needs a value, e.g. options NKPT2PG=32"),
        ("options MD_ROOT_SIZE\n", 2, "MD_ROOT_SIZE needs a value, e.g. options MD_ROOT_SIZE=1"),
        (
            "options ROOTDEVNAME\n",
            2,
            'ROOTDEVNAME needs a value, e.g. options ROOTDEVNAME=\\"ufs:/dev/md0\\"',
        ),
        ('options ROOTDEVNAME=""\n', 2, "ROOTDEVNAME needs a non-empty value"),
        ('options ROOTDEVNAME="md0"\n', 2, 'ROOTDEVNAME="md0" is not valid: it must look like fstype:device'),
        ('options MD_ROOT_FSTYPE="u f s"\n', 2, "the file system type is one word"),
        (
            "options NKPT2PG=300\n",
            2,
            "NKPT2PG=300 is out of range: it must be between 1 and 256 (each page maps 4 MiB of KVA",
        ),
        ("options NKPT2PG=0\n", 2, "NKPT2PG=0 is out of range: it must be between 1 and 256"),
        ("options NKPT2PG=-1\n", 2, "NKPT2PG=-1 is out of range"),
        ("options NKPT2PG=0x200\n", 2, "NKPT2PG=0x200 (= 512) is out of range"),
        (
            "options LOCORE_MAP_MB=1024\n",
            2,
            "LOCORE_MAP_MB=1024 is out of range: it must be between 1 and 1023 (the window from "
            "KERNVIRTADDR 0xC0000000 must end below the high vector page 0xFFFF0000)",
        ),
        (
            "options MD_ROOT_SIZE=1048577\n",
            2,
            "MD_ROOT_SIZE=1048577 is out of range: it must be between 1 and 1048576",
        ),
        (
            "options VM_KMEM_SIZE_MAX=(4*1024*1024*1024)\n",
            2,
            "VM_KMEM_SIZE_MAX=(4*1024*1024*1024) (= 4294967296) is out of range: it must be between 1 and 4294967295",
        ),
        (
            "options VM_KMEM_SIZE_SCALE=0\n",
            2,
            "VM_KMEM_SIZE_SCALE=0 is out of range: it must be between 1 and",
        ),
        ("options KERNVIRTADDR=0x80000000\n", 2, "armboard's kernel is linked at 0xC0000000"),
        (
            "options NKPT2PG=abc\n",
            2,
            "NKPT2PG=abc is not an integer: use decimal, 0x hexadecimal, or a product",
        ),
        ("options NKPT2PG=12abc\n", 2, "NKPT2PG=12abc is not an integer ('12abc' is not a number"),
        ("options NKPT2PG=08\n", 2, "a leading 0 means octal"),
        ("options NKPT2PG=1.5\n", 2, "NKPT2PG=1.5 is not an integer"),
        ("options NKPT2PG=(3*4\n", 2, "NKPT2PG=(3*4 is not an integer (a '(' is not closed)"),
        ("options NKPT2PG=3*\n", 2, "NKPT2PG=3* is not an integer (it ends where a number was expected)"),
        ("options NKPT2PG=3)\n", 2, "NKPT2PG=3) is not an integer (unexpected ')')"),
        ("options NKPT2PG=()\n", 2, "NKPT2PG=() is not an integer (unexpected ')')"),
        ("options NKPT2PG=3 4\n", 2, "NKPT2PG=3 4 is not an integer (unexpected '4')"),
        ("options NKPT2PG=3+4\n", 2, "NKPT2PG=3+4 is not an integer"),
        ("options NKPT2PG=32k\n", 2, "NKPT2PG=32k is not an integer"),
        ('options NKPT2PG="64"\n', 2, 'NKPT2PG needs a number, not the quoted string "64"'),
        ('options NKPT2PG=8"x"\n', 2, "the value of NKPT2PG is malformed: quote the whole value"),
        ("options NKPT2PG+=8\n", 2, "options cannot be appended to with '+='"),
        ("options MD_ROOT=1\n", 2, "MD_ROOT is a flag and takes no value; write 'options MD_ROOT'"),
        ("options MD_ROOT=\n", 2, "MD_ROOT is a flag and takes no value"),
        (
            "options MD_ROOT MD_ROOT_READONLY\n",
            2,
            "unexpected 'MD_ROOT_READONLY' after MD_ROOT (separate options with ',')",
        ),
        ("options MD_ROOT,\n", 2, "a name is missing in the options list (stray ',')"),
        ("options , MD_ROOT\n", 2, "a name is missing in the options list"),
        ("options MD_ROOT,, INVARIANTS\n", 2, "a name is missing in the options list"),
        ("options\n", 2, "options needs at least one name"),
        ("options # nothing\n", 2, "options needs at least one name"),
        ('options "MD_ROOT"\n', 2, 'expected an option name, found "MD_ROOT"'),
        ("options 9LIVES\n", 2, "expected an option name, found '9LIVES'"),
        ("device frob\n", 2, "unknown device frob"),
        ("device mdd\n", 2, "unknown device mdd; did you mean md?"),
        ("device MD\n", 2, "unknown device MD: device names are case-sensitive; did you mean md?"),
        ("device MD_ROOT\n", 2, "unknown device MD_ROOT: MD_ROOT is an option; write 'options MD_ROOT'"),
        ("device ufs\n", 2, "unknown device ufs: UFS is compiled in with 'options FFS'"),
        ("device md uart\n", 2, "unexpected 'uart' after md (separate names with ',')"),
        ("device md=1\n", 2, "unexpected '=' after md"),
        ("nodevice nope\n", 2, "unknown device nope"),
        ("makeoptions MFS_IMAGE+=x\n", 2, "MFS_IMAGE names one file: write makeoptions MFS_IMAGE=PATH"),
        ("makeoptions MFS_IMAGE=\n", 2, "MFS_IMAGE needs a file name"),
        (
            "makeoptions CFLAGS=-O2 -g\n",
            2,
            "the value of make option CFLAGS must be one word or a quoted string",
        ),
        ('makeoptions CFLAGS "x"\n', 2, 'unexpected "x" after CFLAGS: write CFLAGS=VALUE'),
        ("makeoptions 1X=2\n", 2, "expected a make option name, found '1X'"),
        ("machine amd64\n", 2, "machine amd64 is not supported: this board is 'machine arm armv7'"),
        ("machine arm armv5\n", 2, "machine arm armv5 is not supported"),
        ("machine\n", 2, "machine takes a machine and an architecture"),
        ("machine arm armv7 extra\n", 2, "machine takes a machine and an architecture"),
        (
            "cpu CPU_XSCALE\n",
            2,
            "unknown cpu CPU_XSCALE: an armv7 kernel takes one of CPU_CORTEXA, CPU_KRAIT, CPU_MV_PJ4B",
        ),
        ("cpu\n", 2, "cpu needs a CPU class such as CPU_CORTEXA"),
        ("include\n", 2, "include needs a file name"),
        ('include ""\n', 2, 'include needs a file name, found ""'),
        ("include a b\n", 2, "unexpected 'b' after include 'a'"),
        ("hints ,\n", 2, "hints needs a file name, found ','"),
        ("maxusers many\n", 2, "'many' is not a number"),
        ("maxusers -1\n", 2, "maxusers -1 is out of range: it must be between 0 and 2147483647"),
        ("ident\n", 2, "ident needs a kernel name"),
        ("ident bad!name\n", 2, "ident 'bad!name' is not a valid name"),
        ('options ROOTDEVNAME="ufs:md0\n', 2, 'unterminated quote: " is never closed'),
        ('options ROOTDEVNAME=\\"ufs:md0\n', 2, 'unterminated quote: \\" is never closed'),
        ('options ROOTDEVNAME=\\"ufs:md0"\n', 2, 'a string opened with \\" must be closed with \\"'),
        ("options MD_ROOT\n\n\noptions NOPE\n", 5, "unknown option NOPE"),
    ],
)
def test_errors_name_file_line_and_say_what(tmp_path: Path, body: str, line: int, wording: str) -> None:
    err = error(tmp_path, body)
    assert err.where == f"{tmp_path / 'TEST'}:{line}"
    assert wording in err.message
    assert str(err) == f"{err.where}: {err.message}"


def test_missing_ident(tmp_path: Path) -> None:
    err = error(tmp_path, "options MD_ROOT\n", ident=False)
    assert err.where == str(tmp_path / "TEST")
    assert err.message == "no ident line specified; add a line such as 'ident ARMBOARD'"


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        parse_kernconf(tmp_path / "NOPE")
    assert info.value.where == str(tmp_path / "NOPE")
    assert info.value.message == "cannot open kernel config: No such file or directory (ENOENT)"


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=" is a directory"):
        parse_kernconf(tmp_path)


def test_binary_config(tmp_path: Path) -> None:
    path = tmp_path / "kernel"
    path.write_bytes(b"\x7fELF\x01\x01\x01\x00" + bytes(range(256)))
    with pytest.raises(InputError, match="kernel config is not a text file") as info:
        parse_kernconf(path)
    assert info.value.where == str(path)


def test_include_not_found_names_the_include_line(tmp_path: Path) -> None:
    err = error(tmp_path, '\ninclude "std.missing"\n')
    assert err.where == f"{tmp_path / 'TEST'}:3"
    assert err.message == f"cannot open included file {tmp_path / 'std.missing'}: No such file or directory (ENOENT)"


def test_include_of_a_binary_file(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"\xff\xfe\x00")
    err = error(tmp_path, "include blob\n")
    assert err.where == f"{tmp_path / 'TEST'}:2"
    assert "included file" in err.message and "is not a text file" in err.message


def test_error_inside_an_include_names_the_included_file(tmp_path: Path) -> None:
    write(tmp_path, "std.inc", "options MD_ROOT\noptions NKPT2PG=999\n")
    err = error(tmp_path, "include std.inc\n")
    assert err.where == f"{tmp_path / 'std.inc'}:2"
    assert "NKPT2PG=999 is out of range" in err.message


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.inc", "options MD_ROOT\ninclude b.inc\n")
    write(tmp_path, "b.inc", '\n\ninclude "a.inc"\n')
    err = error(tmp_path, "include a.inc\n")
    assert err.where == f"{tmp_path / 'b.inc'}:3"
    a, b = tmp_path / "a.inc", tmp_path / "b.inc"
    assert err.message == f"include cycle: {a} -> {b} -> {a}"


def test_self_include(tmp_path: Path) -> None:
    err = error(tmp_path, "include TEST\n")
    top = tmp_path / "TEST"
    assert err.where == f"{top}:2"
    assert err.message == f"include cycle: {top} -> {top}"


def test_unterminated_quote_is_reported_before_a_hash(tmp_path: Path) -> None:
    err = error(tmp_path, 'makeoptions X="a # b\n')
    assert err.message == 'unterminated quote: " is never closed'


# -- command-line overrides -----------------------------------------------------------------------


def test_overrides_set_values_and_record_where(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "options NKPT2PG=64\n")
    cfg.apply_override("NKPT2PG=128")
    cfg.apply_override("VM_KMEM_SIZE_SCALE = 5")
    cfg.apply_override("VM_KMEM_SIZE_MAX=(400*1024*1024)")
    cfg.apply_override('ROOTDEVNAME=\\"ufs:/dev/md1\\"')
    cfg.apply_override('MD_ROOT_FSTYPE="cd9660"')
    cfg.apply_override("MD_ROOT")
    assert cfg.value("NKPT2PG") == 128
    assert cfg.origin["NKPT2PG"] == "-o NKPT2PG=128"
    assert cfg.value("VM_KMEM_SIZE_SCALE") == 5
    assert cfg.value("VM_KMEM_SIZE_MAX") == 400 * 1024 * 1024
    assert cfg.value("ROOTDEVNAME") == "ufs:/dev/md1"
    assert cfg.value("MD_ROOT_FSTYPE") == "cd9660"
    assert cfg.value("MD_ROOT") is True
    assert cfg.origin_of("MD_ROOT") == "-o MD_ROOT"


@pytest.mark.parametrize("word", ["1", "yes", "YES", "on", "true", " True "])
def test_override_flag_on_words(tmp_path: Path, word: str) -> None:
    cfg = conf(tmp_path, "")
    cfg.apply_override(f"MD_ROOT={word}")
    assert cfg.value("MD_ROOT") is True


@pytest.mark.parametrize("word", ["0", "no", "NO", "off", "false"])
def test_override_flag_off_words_clear_it(tmp_path: Path, word: str) -> None:
    cfg = conf(tmp_path, "options MD_ROOT\n")
    cfg.apply_override(f"MD_ROOT={word}")
    assert cfg.value("MD_ROOT") is False
    assert not cfg.has("MD_ROOT")
    assert "MD_ROOT" not in cfg.origin


@pytest.mark.parametrize(
    ("spec", "wording"),
    [
        ("NKPT2PG=300", "NKPT2PG=300 is out of range: it must be between 1 and 256"),
        ("NKPT2PG=", "NKPT2PG needs a value, e.g. -o NKPT2PG=32"),
        ("NKPT2PG", "NKPT2PG needs a value, e.g. -o NKPT2PG=32"),
        ("ROOTDEVNAME", "ROOTDEVNAME needs a value, e.g. -o ROOTDEVNAME=ufs:/dev/md0"),
        ("MD_ROOT_FSTYPE=", "MD_ROOT_FSTYPE needs a value, e.g. -o MD_ROOT_FSTYPE=ufs"),
        ('ROOTDEVNAME=""', "ROOTDEVNAME needs a non-empty value"),
        ("NKPT2PG=lots", "NKPT2PG=lots is not an integer"),
        ('NKPT2PG="64"', 'NKPT2PG="64" is not an integer'),
        ("NKPT2G=64", "unknown option NKPT2G; did you mean NKPT2PG?"),
        ("MD_ROOT=maybe", "MD_ROOT is a flag: write -o MD_ROOT to set it or -o MD_ROOT=0 to clear it"),
        ("=5", "expected NAME=VALUE, or NAME alone for a flag option"),
        ("", "expected NAME=VALUE, or NAME alone for a flag option"),
        ("NK PT=1", "expected NAME=VALUE"),
    ],
)
def test_override_errors_name_the_override(tmp_path: Path, spec: str, wording: str) -> None:
    cfg = conf(tmp_path, "")
    with pytest.raises(InputError) as info:
        cfg.apply_override(spec)
    assert info.value.where == f"-o {spec}"
    assert wording in info.value.message


def test_copy_is_independent(tmp_path: Path) -> None:
    cfg = conf(tmp_path, "options NKPT2PG=64\ndevice md\n")
    other = cfg.copy()
    other.apply_override("NKPT2PG=128")
    other.devices.add("uart")
    assert cfg.value("NKPT2PG") == 64 and cfg.devices == {"md"}
    assert other.value("NKPT2PG") == 128


def test_default_constructed_config_uses_defaults() -> None:
    cfg = KernelConfig()
    assert cfg.value("NKPT2PG") == 32
    assert cfg.hints_file is None and cfg.mfs_image is None


# -- registry helpers -------------------------------------------------------------------------------


def test_lookup_option_and_check_device_raise_with_where() -> None:
    assert lookup_option("NKPT2PG", where=None).default == 32
    with pytest.raises(InputError) as info:
        lookup_option("UFS", where="x:1")
    assert str(info.value) == "x:1: unknown option UFS: UFS is compiled in with 'options FFS'"
    with pytest.raises(InputError) as info:
        check_device("zz", where="x:2")
    assert str(info.value) == "x:2: unknown device zz"


def test_parse_c_integer_directly() -> None:
    assert parse_c_integer("(1024 * (1024))", name="X", where=None) == 1 << 20
    assert parse_c_integer("0x10u * 2LL * 3lu", name="X", where=None) == 96
    with pytest.raises(InputError, match=r"^X needs a value$"):
        parse_c_integer("  ", name="X", where=None)


def test_far_out_of_range_products_do_not_print_huge_numbers(tmp_path: Path) -> None:
    big = "*".join(["0x" + "f" * 900] * 20)
    err = error(tmp_path, f"options NKPT2PG={big}\n")
    assert "is out of range" in err.message and len(err.message) < 20000


# -- generated configs -----------------------------------------------------------------------------

_INT_OPTIONS = [name for name, opt in OPTIONS.items() if opt.kind == OptionKind.INT and opt.minimum != opt.maximum]


@st.composite
def int_settings(draw: st.DrawFn) -> dict[str, int]:
    names = draw(st.lists(st.sampled_from(_INT_OPTIONS), unique=True, max_size=len(_INT_OPTIONS)))
    values = {}
    for name in names:
        opt = OPTIONS[name]
        values[name] = draw(st.integers(min_value=opt.minimum, max_value=opt.maximum))
    return values


def _spell(value: int, form: int) -> str:
    if form == 0:
        return str(value)
    if form == 1:
        return hex(value)
    if form == 2 and value % 1024 == 0 and value:
        return f"({value // 1024}*1024)"
    return f"{value}U"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(int_settings(), st.integers(min_value=0, max_value=3), st.booleans())
def test_generated_int_options_round_trip(tmp_path: Path, values: dict[str, int], form: int, one_line: bool) -> None:
    items = [f"{name}={_spell(value, form)}" for name, value in values.items()]
    if one_line and items:
        body = "options " + ", ".join(items) + "\n"
    else:
        body = "".join(f"options\t{item}  # set\n" for item in items)
    cfg = conf(tmp_path, body)
    assert cfg.options == values
    for name, value in values.items():
        assert cfg.value(name) == value


# -- nothing but InputError escapes ------------------------------------------------------------------

_CONF_ALPHABET = st.sampled_from(
    list('options device makeoptions include hints ident nooptions MD_ROOT NKPT2PG md =+,#"\\()*0x9 \t\r\n')
    + ["\x00", "\u00a0", "\u2028", "é"]
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(st.lists(_CONF_ALPHABET, max_size=80).map("".join) | st.text(max_size=80))
def test_arbitrary_text_raises_only_input_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "FUZZ"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        parse_kernconf(path)
    except InputError as err:
        assert err.where and err.message
    cfg = KernelConfig()
    try:
        cfg.apply_override(text)
    except InputError as err:
        assert err.where == f"-o {text}"
