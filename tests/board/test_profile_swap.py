"""[swap] in board profiles and the --swap SIZE[:ALLOCATOR] spec: parsing, clear errors, machine.swap."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from board.profile import (
    PROFILE_DIR,
    ProfileError,
    SwapSpec,
    available_profiles,
    load_profile,
    parse_swap_spec,
)


def profile_with(tmp_path: Path, swap_toml: str, name: str = "board.toml") -> Path:
    """The shipped embedded profile plus `swap_toml` (a top-level `swap = ...` key goes first)."""
    path = tmp_path / name
    base = Path(PROFILE_DIR, "embedded.toml").read_text()
    path.write_text(swap_toml + base if swap_toml.startswith("swap =") else base + "\n" + swap_toml)
    return path


def test_shipped_profiles_have_no_swap():
    assert all(load_profile(name).swap is None for name in available_profiles())


@pytest.mark.parametrize("toml,spec", [
    ('[swap]\nsize = "256m"\n', SwapSpec(256 << 20, "sparse")),
    ('[swap]\nsize = 1048576\nallocator = "malloc"\nmlock = false\n', SwapSpec(1 << 20, "malloc", (("mlock", False),))),
    ('[swap]\nsize = "1G"\nallocator = "zstd"\nlevel = 9\n', SwapSpec(1 << 30, "zstd", (("level", 9),))),
    ('[swap]\nsize = "0x100000"\n', SwapSpec(1 << 20, "sparse")),
])
def test_swap_table(tmp_path, toml, spec):
    assert load_profile(str(profile_with(tmp_path, toml))).swap == spec


@pytest.mark.parametrize("toml,key,says", [
    ('[swap]\nsize = "12q"\n', "[swap] size", "could not parse size"),
    ('[swap]\nsize = "8k"\n', "[swap] size", "smaller than the 12288 bytes"),
    ("[swap]\nsize = -5\n", "[swap] size", "negative"),
    ("[swap]\nsize = true\n", "[swap] size", "expected bytes"),
    ('[swap]\nallocator = "zstd"\n', "[swap] size", "missing"),
    ('[swap]\nsize = "1m"\nallocator = "file"\n', "[swap] allocator", "expected one of sparse, malloc, zstd"),
    ('[swap]\nsize = "1m"\nallocator = "zstd"\nmlock = true\n', "[swap] mlock", "only allocator=malloc"),
    ('[swap]\nsize = "1m"\nallocator = "malloc"\nmlock = "yes"\n', "[swap] mlock", "true or false"),
    ('[swap]\nsize = "1m"\nallocator = "zstd"\nlevel = 40\n', "[swap] level", "from 1 to 22"),
    ('[swap]\nsize = "1m"\nlevel = 3\n', "[swap] level", "only allocator=zstd"),
    ('[swap]\nsize = "1m"\ncompression = 3\n', "[swap] compression", "unknown option"),
    ('swap = "1m"\n', "swap", "expected a [swap] table"),
])
def test_bad_swap_names_the_file_and_the_key(tmp_path, toml, key, says):
    path = profile_with(tmp_path, toml, "bad.toml")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: {key}") and says in message
    assert "malformed board profile" not in message


def test_machine_opens_the_swap_store(tmp_path):
    from board.machine import Machine

    profile = load_profile(str(profile_with(tmp_path, '[swap]\nsize = "64m"\nallocator = "zstd"\nlevel = 1\n')))
    machine = Machine(profile, profile.ram_min)
    assert machine.swap is not None and machine.swap.kind == "zstd" and machine.swap.size == 64 << 20
    assert machine.swap.resident_bytes == 0                  # sparse layout: nothing until written
    override = Machine(profile, profile.ram_min, swap=parse_swap_spec("1m:malloc"))
    assert override.swap is not None and override.swap.kind == "malloc" and override.swap.size == 1 << 20
    assert Machine(load_profile("embedded"), profile.ram_min).swap is None


# ------------------------------------------------------------------ --swap
@pytest.mark.parametrize("text,spec", [
    ("256m", SwapSpec(256 << 20)),
    ("1g:zstd", SwapSpec(1 << 30, "zstd")),
    ("1g:zstd,level=19", SwapSpec(1 << 30, "zstd", (("level", 19),))),
    ("64M:malloc,mlock=true", SwapSpec(64 << 20, "malloc", (("mlock", True),))),
    ("2097152:sparse", SwapSpec(2 << 20)),
])
def test_parse_swap_spec(text, spec):
    assert parse_swap_spec(text) == spec


@pytest.mark.parametrize("text,says", [
    ("", "could not parse size"),
    ("lots", "could not parse size"),
    ("64m:tmpfs", "unknown allocator 'tmpfs'"),
    ("64m:malloc,mlock", "expected KEY=VALUE"),
    ("64m:zstd,mlock=true", "only allocator=malloc takes mlock"),
    ("64m:zstd,level=fast", "expected a zstd level"),
    ("4k", "smaller than"),
])
def test_parse_swap_spec_errors_say_what_and_where(text, says):
    with pytest.raises(ProfileError) as err:
        parse_swap_spec(text)
    assert str(err.value).startswith("--swap") and says in str(err.value)


specs = st.builds(
    lambda size, kind, opt: SwapSpec(size, kind, opt.get(kind, ())),
    st.integers(12288, 1 << 44),
    st.sampled_from(["sparse", "malloc", "zstd"]),
    st.fixed_dictionaries({"malloc": st.sampled_from([(), (("mlock", True),), (("mlock", False),)]),
                           "zstd": st.sampled_from([(), *((("level", n),) for n in (1, 3, 22))])}),
)


@given(specs)
def test_a_spec_prints_as_it_parses(spec):
    assert parse_swap_spec(str(spec)) == spec
