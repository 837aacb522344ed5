"""--flash [BANK=]FILE: which bank each image lands on, as QEMU's -pflash fills its units in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from board.profile import load_profile
from kernel_sim.boot import _flash_banks
from kernel_sim.errors import InputError
from tools.cli import _flash_args, main

BANK = 64 << 20     # a virt bank (board/profiles/virt.toml)


@pytest.fixture
def images(tmp_path) -> list[Path]:
    out = []
    for n in range(3):
        path = tmp_path / f"f{n}.img"
        with path.open("wb") as f:
            f.truncate(BANK)
        out.append(path)
    return out


def test_bare_files_take_the_free_banks_in_order(images):
    virt = load_profile("virt")
    paths = [str(p) for p in images]
    assert _flash_banks(_flash_args(paths[:2]), virt) == {"flash0": paths[0], "flash1": paths[1]}
    # a named bank is taken first, wherever it stands on the command line
    assert _flash_banks(_flash_args([paths[0], f"flash0={paths[1]}"]), virt) == {"flash1": paths[0],
                                                                                 "flash0": paths[1]}


def test_more_images_than_banks_and_a_bank_twice_are_input_errors(images):
    virt = load_profile("virt")
    with pytest.raises(InputError, match="no free flash bank left"):
        _flash_banks(_flash_args([str(p) for p in images]), virt)
    with pytest.raises(InputError, match="flash bank flash1 is given twice"):
        _flash_banks(_flash_args([f"flash1={images[0]}", f"flash1={images[1]}"]), virt)


def test_a_file_name_with_an_equals_sign_is_a_file(tmp_path):
    assert _flash_args(["./a=b.img", "flash0=x.img"]) == [(None, "./a=b.img"), ("flash0", "x.img")]


def test_a_bare_flash_file_boots_on_the_first_bank(tmp_path, capsys):
    root = Path(__file__).resolve().parents[2]
    flash = tmp_path / "flash.img"
    assert main(["flash", "build", str(root / "images" / "geom_map-example" / "layout.toml"), "-o", str(flash)]) == 0
    capsys.readouterr()
    code = main(["boot", "--board", "embedded", "--kernconf", str(root / "images" / "EMBEDDED"), "--flash",
                 str(flash), "--hints", f"{flash}.hints", "--console", "/dev/null", "-x", "geom map list"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Name: map/rootfs" in out
