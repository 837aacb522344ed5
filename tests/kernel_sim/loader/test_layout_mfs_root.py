"""MD_ROOT's embedded image in the kernel's footprint: the oldmfs array (MD_ROOT_SIZE) and the mfs section."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_sim.errors import InputError
from kernel_sim.guest.build import guest_image
from kernel_sim.loader import layout as layout_mod
from kernel_sim.loader.kernconf import parse_kernconf

MIB = 1 << 20


def kernconf(tmp_path: Path, body: str):
    path = tmp_path / "KERNCONF"
    path.write_text("ident MDROOT\n" + body)
    return parse_kernconf(path)


def image(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "mfs.img"
    with path.open("wb") as f:
        f.truncate(size)
    return path


def place(cfg, footprint: int | None = 9 * MIB) -> layout_mod.BootLayout:
    return layout_mod.plan(guest_image(), ram_base=0x40000000, ram_size=1024 * MIB, footprint=footprint,
                           embedded_md=layout_mod.mfs_root(cfg), modules=[], env={})


@pytest.mark.parametrize("footprint", [9 * MIB, None])   # page-aligned and the guest's own (unaligned) end
def test_without_md_root_size_the_kernel_grows_by_the_image_exactly(tmp_path, footprint):
    size = 5 * MIB + 1234                                      # not a multiple of anything
    plain = place(kernconf(tmp_path, "options MD_ROOT\n"), footprint)
    cfg = kernconf(tmp_path, f"options MD_ROOT\nmakeoptions MFS_IMAGE={image(tmp_path, size)}\n")
    embedded = place(cfg, footprint)
    md = embedded.embedded_md
    assert md.section == "mfs" and md.size == size and md.image_size == size
    assert md.where == f"{tmp_path / 'KERNCONF'}:3"
    assert md.va == plain.kernel_end_va                        # right after the kernel's own bytes
    assert embedded.kernel_size == plain.kernel_size + size    # no rounding to pages or to MD_ROOT_SIZE


def test_md_root_size_reserves_the_whole_array_whatever_the_image(tmp_path):
    plain = place(kernconf(tmp_path, "options MD_ROOT\n"))
    path = image(tmp_path, 3 * MIB + 5)
    cfg = kernconf(tmp_path, f"options MD_ROOT\noptions MD_ROOT_SIZE=10240\nmakeoptions MFS_IMAGE={path}\n")
    md = place(cfg).embedded_md
    assert md.section == "oldmfs" and md.size == 10 * MIB and md.image_size == 3 * MIB + 5
    assert place(cfg).kernel_size == layout_mod.round_page(plain.kernel_size) + 10 * MIB
    empty = place(kernconf(tmp_path, "options MD_ROOT\noptions MD_ROOT_SIZE=64\n")).embedded_md
    assert empty.section == "oldmfs" and empty.size == 64 * 1024 and empty.image is None


def test_md_root_without_image_or_size_embeds_nothing(tmp_path):
    # md.c: &mfs_root_end - &mfs_root of the weak symbols is 0, so g_md_init attaches no md0
    assert layout_mod.mfs_root(kernconf(tmp_path, "options MD_ROOT\n")) is None
    assert place(kernconf(tmp_path, "options MD_ROOT\n")).embedded_md is None


def test_a_big_embedded_image_is_mapped_from_its_file(tmp_path):
    path = image(tmp_path, 40 * MIB + 100)
    layout = place(kernconf(tmp_path, f"options MD_ROOT\nmakeoptions MFS_IMAGE={path}\n"))
    assert (layout.pa(layout.embedded_md.va), str(path)) in layout.overlays


@pytest.mark.parametrize("body, where_line, needle", [
    ("makeoptions MFS_IMAGE=mfs.img\n", 2, "makeoptions MFS_IMAGE needs options MD_ROOT"),
    ("options MD_ROOT\nmakeoptions MFS_IMAGE=missing.img\n", 3, "MFS_IMAGE"),
    ("options MD_ROOT\noptions MD_ROOT_SIZE=1024\nmakeoptions MFS_IMAGE=mfs.img\n", 3,
     "MFS image too large: MFS_IMAGE"),
])
def test_configs_freebsd_cannot_build_are_input_errors(tmp_path, body, where_line, needle):
    image(tmp_path, 2 * MIB)
    with pytest.raises(InputError) as err:
        layout_mod.mfs_root(kernconf(tmp_path, body))
    assert err.value.where == f"{tmp_path / 'KERNCONF'}:{where_line}"
    assert needle in err.value.message


def test_too_large_for_md_root_size_names_both_sizes(tmp_path):
    cfg = kernconf(tmp_path, f"options MD_ROOT\noptions MD_ROOT_SIZE=1024\n"
                             f"makeoptions MFS_IMAGE={image(tmp_path, 2 * MIB + 1)}\n")
    with pytest.raises(InputError) as err:
        layout_mod.mfs_root(cfg)
    text = err.value.message
    assert f"is {2 * MIB + 1} bytes" in text and "MD_ROOT_SIZE=1024 reserves 1048576 bytes (1024 KiB)" in text
    assert "MD_ROOT_SIZE=2049 or more" in text
