"""The cached option table reads argv as argparse does, and leaves to argparse what it does not model."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools import cli, cli_fast

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return cli_fast.extract(cli.build_parser())


def argparse_view(argv: list[str]) -> dict | None:
    try:
        return vars(cli.build_parser().parse_args(argv))
    except cli.UsageError:
        return None


boot_words = st.lists(st.sampled_from([
    "--physmem", "128M", "--abi", "none", "linux", "bogus", "-o", "LOCORE_MAP_MB=70", "NKPT2PG=40", "--json",
    "--no-loader-conf", "-x", "info mem", "--timeout", "2.5", "abc", "--stop-at", "handover", "-v", "--flash",
    "flash0=f.img", "--mfsroot=root.img", "--kernconf", "K", "--mmu", "python", "-c", "ls /", "--shell",
    "--md-image", "a.img", "b.img", "--phys", "-vx", "-oX=1", "--", "-",
]), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["boot", "plan"]), boot_words)
def test_fast_reading_is_argparse_reading_or_none(table, command, words):
    argv = [command, *words]
    fast = cli_fast.parse(argv, table)
    if fast is not None:                      # where it answers, it answers as argparse does
        assert vars(fast) == argparse_view(argv)


def test_the_common_boot_lines_take_the_fast_path(table):
    for argv in (["boot"], ["boot", "--abi", "none", "--no-loader-conf", "--stop-at", "handover", "--console",
                            "/dev/null", "--physmem", "128M"],
                 ["boot", "-o", "LOCORE_MAP_MB=70", "-o", "NKPT2PG=18", "--json"],
                 ["plan", "--physmem", "2G", "--kernel-footprint", "9M", "--mfsroot", "root-200M.img"]):
        assert cli_fast.parse(argv, table) is not None, argv


def test_help_errors_and_unmodelled_options_go_to_argparse(table):
    for argv in (["boot", "--help"], ["boot", "--phys", "1G"], ["boot", "--abi", "bogus"], ["boot", "--physmem"],
                 ["boot", "stray"], ["plan", "--picture", "kva.svg"], ["mkuzip", "x.img"], []):
        assert cli_fast.parse(argv, table) is None, argv


def test_a_changed_source_invalidates_the_cached_table(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_fast, "_cache_path", lambda anchor: str(tmp_path / "table"))
    calls = []

    def build():
        calls.append(1)
        return cli.build_parser()

    cli_fast.load_table(build)
    cli_fast.load_table(build)
    assert len(calls) == 1                               # the second start reads the cache
    source = tmp_path / "fake_source.py"
    source.write_text("x = 1\n")
    import marshal

    cached = marshal.loads((tmp_path / "table").read_bytes())
    cached["sources"] = [*cached["sources"], str(source)]
    cached["key"] = cli_fast._source_key(cached["sources"])
    (tmp_path / "table").write_bytes(marshal.dumps(cached))
    cli_fast.load_table(build)
    assert len(calls) == 1
    source.write_text("x = 2\n")                         # an edited source: the table is built again
    cli_fast.load_table(build)
    assert len(calls) == 2


def test_another_checkouts_table_does_not_answer_for_this_one(tmp_path, monkeypatch):
    """The cache root is shared by every checkout: a table whose sources are another tree's files
    (unchanged there) is not this tree's command line."""
    import marshal

    monkeypatch.setattr(cli_fast, "_cache_path", lambda anchor: str(tmp_path / "table"))
    calls = []

    def build():
        calls.append(1)
        return cli.build_parser()

    cli_fast.load_table(build)
    other = tmp_path / "other_cli.py"
    other.write_text("# another checkout's tools/cli.py\n")
    cached = marshal.loads((tmp_path / "table").read_bytes())
    cached["sources"] = [str(other)]
    cached["key"] = cli_fast._source_key(cached["sources"])
    cached["table"] = {"commands": {}, "dest": "command"}
    (tmp_path / "table").write_bytes(marshal.dumps(cached))
    assert cli_fast.load_table(build)["commands"]       # rebuilt from this tree, not the other's table
    assert len(calls) == 2
    monkeypatch.undo()
    assert cli_fast._cache_path("/a/tools/cli.py") != cli_fast._cache_path("/b/tools/cli.py")


def test_errors_are_argparse_errors_on_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "boot", "--abi", "bogus"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("armboard: argument --abi: invalid choice: 'bogus'")


def test_version_is_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout == f"armboard {version}\n"


@pytest.mark.parametrize("columns", ["60", "132"])
@pytest.mark.parametrize("command", ["boot", "plan", "sweep"])
def test_cached_help_is_argparse_help(command, columns):
    env = {"COLUMNS": columns, "PATH": "/usr/bin:/bin"}
    code = f"from tools.cli import build_parser; build_parser().parse_args([{command!r}, '--help'])"
    expected = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    for _ in range(2):                   # the first start renders and caches it, the second reads the cache
        proc = subprocess.run([sys.executable, "-m", "tools.cli", command, "--help"], capture_output=True,
                              text=True, cwd=ROOT, env=env)
        assert proc.returncode == 0 and proc.stdout == expected.stdout
