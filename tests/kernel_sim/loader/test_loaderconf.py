"""loader.conf(5): preloaded modules and the kernel environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_sim.errors import InputError
from kernel_sim.loader.loaderconf import (
    LoaderConf,
    ModuleSpec,
    parse_loader_conf,
    parse_loader_conf_text,
)

EXAMPLE = """\
# the root file system, preloaded as an md(4) image
mfsroot_load="YES"
mfsroot_type="md_image"
mfsroot_name="/boot/mfsroot"

geom_uzip_load="yes"            # a kernel module, no type
vfs.root.mountfrom="ufs:/dev/md0"
rootdev = "disk0s1a"
vm.kmem_size=0x10000000
boot_verbose="YES"
hint.uart.0.at="fdt"
legacy_load="YES"
legacy_type="mfs_root"
legacy_name="images/legacy.ufs"
legacy_flags="-v"
legacy_before="echo before"
legacy_after="echo after"
legacy_error="echo failed"
unused_load="NO"
unused_name="never.ko"
"""


def write(tmp_path: Path, text: str, name: str = "loader.conf") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_example(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE, "boot/loader.conf")
    conf = parse_loader_conf(path)
    assert Path(conf.path) == path
    assert [m.key for m in conf.modules] == ["mfsroot", "geom_uzip", "legacy"]
    mfsroot, uzip, legacy = conf.modules
    assert mfsroot == ModuleSpec("mfsroot", "/boot/mfsroot", "md_image", f"{path}:4", "/boot/mfsroot", None)
    assert uzip.type is None
    assert Path(uzip.path) == tmp_path / "boot/geom_uzip"
    assert uzip.name == "geom_uzip"
    assert uzip.where == f"{path}:6"  # no _name line: the _load line
    assert legacy.type == "mfs_root"
    assert Path(legacy.path) == tmp_path / "boot/images/legacy.ufs"
    assert legacy.flags == "-v"
    assert legacy.where == f"{path}:14"
    assert conf.env == {
        "vfs.root.mountfrom": "ufs:/dev/md0",
        "rootdev": "disk0s1a",
        "vm.kmem_size": "0x10000000",
        "boot_verbose": "YES",
        "hint.uart.0.at": "fdt",
    }
    assert list(conf.env) == [
        "vfs.root.mountfrom",
        "rootdev",
        "vm.kmem_size",
        "boot_verbose",
        "hint.uart.0.at",
    ]
    assert conf.origin["vfs.root.mountfrom"] == f"{path}:7"
    assert conf.origin["mfsroot_name"] == f"{path}:4"
    assert [m.key for m in conf.md_images()] == ["mfsroot", "legacy"]


def test_module_order_follows_the_load_lines_not_the_name_lines(tmp_path: Path) -> None:
    text = 'b_name="bee"\na_load="YES"\nb_load="YES"\na_load="YES"\nc_load="NO"\nc_load="YES"\n'
    conf = parse_loader_conf(write(tmp_path, text))
    assert [m.key for m in conf.modules] == ["a", "b", "c"]


def test_last_load_value_wins(tmp_path: Path) -> None:
    conf = parse_loader_conf(write(tmp_path, 'a_load="YES"\na_load="NO"\nb_load="NO"\nb_load="Yes"\n'))
    assert [m.key for m in conf.modules] == ["b"]


def test_env_later_assignment_replaces(tmp_path: Path) -> None:
    path = write(tmp_path, 'x="1"\ny="2"\nx="3"\n')
    conf = parse_loader_conf(path)
    assert conf.env == {"x": "3", "y": "2"}
    assert conf.origin["x"] == f"{path}:3"


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ('a="b"', "a", "b"),
        ("a=b", "a", "b"),
        ("a = b", "a", "b"),
        ('  a\t=\t"b c"  ', "a", "b c"),
        ('a="b # not a comment"', "a", "b # not a comment"),
        ('a="b"# comment', "a", "b"),
        ("a=b # comment", "a", "b"),
        ("a=b#comment", "a", "b"),
        ('a=""', "a", ""),
        ("kern.cam.boot_delay=10000", "kern.cam.boot_delay", "10000"),
        ("a-b.c:d=1", "a-b.c:d", "1"),
        (
            'hint.map.0.end="search:0x100000:0x10000:#!/bin/sh"',
            "hint.map.0.end",
            "search:0x100000:0x10000:#!/bin/sh",
        ),
    ],
)
def test_line_forms(line: str, name: str, value: str) -> None:
    conf = parse_loader_conf_text(line + "\n", "t.conf", base_dir=Path("/b"))
    assert conf.env == {name: value}


def test_comments_blank_lines_crlf() -> None:
    conf = parse_loader_conf_text("# c\r\n\r\n   # indented\r\n  \t\r\na=1\r\n", "t")
    assert conf.env == {"a": "1"}


def test_relative_names_resolve_against_the_file_directory(tmp_path: Path) -> None:
    path = write(tmp_path, 'md_load="YES"\nmd_type="md_image"\nmd_name="../img/root.ufs"\n', "etc/loader.conf")
    (module,) = parse_loader_conf(path).modules
    assert Path(module.path) == tmp_path / "etc/../img/root.ufs"
    assert module.name == "../img/root.ufs"


def test_text_parser_default_base_dir_is_origin_directory() -> None:
    (module,) = parse_loader_conf_text('m_load="YES"\n', "/x/y/loader.conf").modules
    assert Path(module.path) == Path("/x/y/m")


def test_missing_module_file_is_not_checked_here(tmp_path: Path) -> None:
    (module,) = parse_loader_conf(write(tmp_path, 'm_load="YES"\nm_name="does/not/exist"\n')).modules
    assert not Path(module.path).exists()


def test_dashes_and_underscores_in_module_prefixes(tmp_path: Path) -> None:
    conf = parse_loader_conf(write(tmp_path, 'geom_map_load="YES"\nmy-mod_load="YES"\nhw.x_load="YES"\n'))
    assert [m.key for m in conf.modules] == ["geom_map", "my-mod"]
    assert conf.env == {"hw.x_load": "YES"}  # a dotted name is not a module control variable


def test_empty_type_is_none(tmp_path: Path) -> None:
    (module,) = parse_loader_conf(write(tmp_path, 'm_load="YES"\nm_type=""\n')).modules
    assert module.type is None


@pytest.mark.parametrize(
    ("text", "line", "wording"),
    [
        ("just words\n", 1, "malformed line: expected name=\"value\", found 'just words'"),
        ("load /boot/kernel/md.ko\n", 1, "malformed line"),
        ('"a"=1\n', 1, "malformed line"),
        ("=1\n", 1, "malformed line"),
        ("\n\na\n", 3, "malformed line: expected name=\"value\", found 'a'"),
        ('a="b\n', 1, 'unterminated quote in the value of a: " is never closed'),
        ('a="b" c\n', 1, "unexpected 'c' after the value of a"),
        ('a="b""c"\n', 1, "unexpected '\"c\"' after the value of a"),
        ("a=b c\n", 1, 'the value of a is malformed: quote it, as in a="value"'),
        ('a=b"c"\n', 1, "the value of a is malformed"),
        ("a=\n", 1, 'a has no value: write a="value"'),
        ("a= # nothing\n", 1, 'a has no value: write a="value"'),
        ('x=1\nmd_load="maybe"\n', 2, 'md_load must be "YES" or "NO", not "maybe"'),
        ('exec="echo hi"\n', 1, "exec runs a loader command, which armboard does not support"),
        ('m_load="YES"\nm_name=""\n', 2, "m_name is empty: it must name the module's file"),
    ],
)
def test_errors_name_file_line(tmp_path: Path, text: str, line: int, wording: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        parse_loader_conf(path)
    assert info.value.where == f"{path}:{line}"
    assert wording in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        parse_loader_conf(tmp_path / "loader.conf")
    assert str(info.value) == f"{tmp_path / 'loader.conf'}: cannot open loader.conf: No such file or directory (ENOENT)"


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "mfsroot"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(InputError, match="loader.conf is not a text file"):
        parse_loader_conf(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=" is a directory"):
        parse_loader_conf(tmp_path)


def test_add_module_appends_or_replaces_in_place(tmp_path: Path) -> None:
    conf = parse_loader_conf(write(tmp_path, 'mfsroot_load="YES"\nmfsroot_type="md_image"\nuzip_load="YES"\n'))
    spec = conf.add_module("mfsroot", "cli/root.img", where="--mfsroot cli/root.img")
    assert conf.modules[0] is spec
    assert spec == ModuleSpec("mfsroot", "cli/root.img", "md_image", "--mfsroot cli/root.img", "cli/root.img")
    extra = conf.add_module("other", Path("/x.img"), type="mfs_root", where="cli", name="/boot/x", flags="-q")
    assert conf.modules[-1] is extra and extra.name == "/boot/x" and extra.flags == "-q"
    assert [m.key for m in conf.modules] == ["mfsroot", "uzip", "other"]
    assert [m.key for m in conf.md_images()] == ["mfsroot", "other"]


def test_add_module_to_an_empty_conf() -> None:
    conf = LoaderConf()
    conf.add_module("mfsroot", "root.img", where="--mfsroot root.img")
    assert [(m.key, m.type) for m in conf.modules] == [("mfsroot", "md_image")]


def test_set_env_and_update(tmp_path: Path) -> None:
    base = parse_loader_conf_text('a="1"\nm_load="YES"\n', "loader.conf")
    local = parse_loader_conf_text('a="2"\nb="3"\nm_load="YES"\nm_name="other"\nn_load="YES"\n', "loader.conf.local")
    base.update(local)
    assert base.env == {"a": "2", "b": "3"}
    assert base.origin["a"] == "loader.conf.local:1"
    assert [(m.key, m.name) for m in base.modules] == [("m", "other"), ("n", "n")]
    base.set_env("vfs.root.mountfrom", "ufs:/dev/md0", where="-e vfs.root.mountfrom=ufs:/dev/md0")
    assert base.env["vfs.root.mountfrom"] == "ufs:/dev/md0"
    assert base.origin["vfs.root.mountfrom"].startswith("-e ")


_NAME = st.from_regex(r"[a-z][a-z0-9_.]{0,20}", fullmatch=True).filter(
    lambda n: (
        not n.startswith("exec")
        and not n.endswith(("_load", "_name", "_type", "_flags", "_before", "_after", "_error"))
        or "." in n
    )
)
_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"'), max_size=40)


@given(st.dictionaries(_NAME, _VALUE, max_size=12))
def test_generated_env_round_trips(env: dict[str, str]) -> None:
    text = "".join(f'{name}="{value}"  # set\n' for name, value in env.items())
    conf = parse_loader_conf_text(text, "gen.conf")
    assert conf.env == env
    assert list(conf.env) == list(env)
    assert conf.modules == []
    assert [conf.origin[name] for name in env] == [f"gen.conf:{i}" for i in range(1, len(env) + 1)]


@given(st.text(max_size=120) | st.lists(st.sampled_from(list('ab_load_name=" #\t\r\nYES.')), max_size=60).map("".join))
def test_arbitrary_text_raises_only_input_error(text: str) -> None:
    try:
        parse_loader_conf_text(text, "fuzz.conf")
    except InputError as err:
        assert err.where is not None and err.where.startswith("fuzz.conf:")


_OLD_LINE = __import__("re").compile(r"\s*(?P<name>[^\s=\"#]+)\s*=\s*(?P<rest>.*)")
_OLD_MODULE_VAR = __import__("re").compile(
    r"(?P<key>[-A-Za-z0-9_]+)_(?P<field>load|name|type|flags|before|after|error)")


@given(st.text(alphabet=' \t="#abc_-.lodaxyz1', max_size=16))
def test_assignment_split_matches_the_old_pattern(line):
    from kernel_sim.loader.loaderconf import _split_assignment

    m = _OLD_LINE.fullmatch(line)
    assert _split_assignment(line) == (None if m is None else (m.group("name"), m.group("rest")))


@given(st.from_regex(r"[-a-z0-9_]{0,8}(_(load|name|type|flags|before|after|error|x))?", fullmatch=True))
def test_module_variables_match_the_old_pattern(name):
    from kernel_sim.loader.loaderconf import _module_variable

    m = _OLD_MODULE_VAR.fullmatch(name)
    assert _module_variable(name) == (None if m is None else (m.group("key"), m.group("field")))
