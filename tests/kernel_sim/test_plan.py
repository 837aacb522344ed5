"""`armboard plan` predicts what `armboard boot` does: the same stage, the same exit status."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from kernel_sim import boot as boot_mod
from kernel_sim.guest.abi import MIB
from kernel_sim.plan import plan_boot

PHYSMEM = ["64M", "256M", "2G"]
IMAGES = [0, 60, 200]
WINDOWS = [["LOCORE_MAP_MB=64"], ["LOCORE_MAP_MB=256"]]
TABLES = [["NKPT2PG=17"], ["NKPT2PG=64"], ["NKPT2PG=17", "INVARIANTS=0"]]
KMEM = [[], ["VM_KMEM_SIZE_SCALE=5"], ["VM_KMEM_SIZE_SCALE=8"], 'vm.kmem_size="420M"', 'vm.kmem_size="600M"']
LOAD = ["", 'debug.init_procs="2000"\n', 'debug.kmem_stress="300M"\n']
GRID = list(itertools.product(PHYSMEM, IMAGES, WINDOWS, TABLES, KMEM, LOAD))
# The root image inside the kernel instead of a module: makeoptions MFS_IMAGE with MD_ROOT, in the mfs
# section (no MD_ROOT_SIZE: the kernel grows by the image) or in the oldmfs array (MD_ROOT_SIZE, bigger
# than the image). The images are the default UFS root grown to the size, so md0 mounts as root.
EMBEDDINGS = ["mfs", "oldmfs"]
EMBEDDED_GRID = list(itertools.product(PHYSMEM, IMAGES[1:], WINDOWS, TABLES, KMEM[:2], LOAD[:2], EMBEDDINGS))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    out = {}
    for size in IMAGES[1:]:
        path = root / f"root-{size}M.img"
        with path.open("wb") as f:
            f.truncate(size * MIB)
        out[size] = path
    return out


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("roots")
    out = {}
    for size in IMAGES[1:]:
        path = root / f"ufs-{size}M.img"
        shutil.copyfile(Path(boot_mod.IMAGES, "rootfs.img"), path)
        with path.open("r+b") as f:
            f.truncate(size * MIB + 12345)      # not a whole number of pages: the mfs section is exact
        out[size] = path
    return out


def embedded_request(roots, tmp_path, physmem, image, window, tables, kmem, load, embedding):
    conf = tmp_path / "MDROOT"
    size = roots[image].stat().st_size
    md_root_size = f"options MD_ROOT_SIZE={-(-size // 1024) + 3000}\n" if embedding == "oldmfs" else ""
    conf.write_text(f'include "{boot_mod.DEFAULT_KERNCONF}"\nident MDROOT\noptions MD_ROOT\n{md_root_size}'
                    f"makeoptions MFS_IMAGE={roots[image]}\n")
    req = request({}, tmp_path, physmem, 0, window, tables, kmem, load)
    req.kernconf = conf
    return req


def request(images, tmp_path, physmem, image, window, tables, kmem, load) -> boot_mod.BootRequest:
    conf = tmp_path / "loader.conf"
    conf.write_text((kmem + "\n" if isinstance(kmem, str) else "") + load)
    overrides = [*window, *tables, *(kmem if isinstance(kmem, list) else [])]
    return boot_mod.BootRequest(physmem=physmem, kernel_footprint="9M", mfsroot=images.get(image),
                                overrides=overrides, loader_conf=conf, console=None)


def check(images, tmp_path, point, make_request=request) -> None:
    try:
        prep = boot_mod.prepare(make_request(images, tmp_path, *point))
    except Exception as exc:   # an input the loader refuses (module bigger than RAM): both refuse it
        from kernel_sim.errors import InputError

        assert isinstance(exc, InputError), exc
        return
    plan = plan_boot(prep)
    result = boot_mod.run(prep)
    assert (plan.exit_code, plan.stage) == (result.exit_code, result.stage), (point, plan.stages, result.message)
    if result.startup is not None and result.startup.procs is not None:
        started = len(result.startup.procs.procs) - 1      # every process but proc0
        assert plan.kstacks_started == started, point


SAMPLE = random.Random(2026).sample(GRID, 24)


@pytest.mark.parametrize("point", SAMPLE, ids=[str(i) for i in range(len(SAMPLE))])
def test_plan_matches_boot_on_a_sample_of_the_grid(images, tmp_path, point):
    check(images, tmp_path, point)


@pytest.mark.slow
@pytest.mark.parametrize("point", GRID, ids=[str(i) for i in range(len(GRID))])
def test_plan_matches_boot_on_the_whole_grid(images, tmp_path, point):
    check(images, tmp_path, point)


EMBEDDED_SAMPLE = random.Random(2026).sample(EMBEDDED_GRID, 12)


@pytest.mark.parametrize("point", EMBEDDED_SAMPLE, ids=[str(i) for i in range(len(EMBEDDED_SAMPLE))])
def test_plan_matches_boot_with_an_embedded_root_image(roots, tmp_path, point):
    check(roots, tmp_path, point, embedded_request)


@pytest.mark.slow
@pytest.mark.parametrize("point", EMBEDDED_GRID, ids=[str(i) for i in range(len(EMBEDDED_GRID))])
def test_plan_matches_boot_with_an_embedded_root_image_on_the_whole_grid(roots, tmp_path, point):
    check(roots, tmp_path, point, embedded_request)


def test_plan_command_prints_stages_and_predicts_the_exit(capsys, images, tmp_path):
    from tools.cli import main

    picture = tmp_path / "kva.svg"
    code = main(["plan", "--physmem", "2G", "--kernel-footprint", "9M", "--mfsroot", str(images[200]),
                 "-o", "LOCORE_MAP_MB=256", "-o", "NKPT2PG=64", "--picture", str(picture)])
    out = capsys.readouterr().out
    assert code == 0
    assert "prediction: the board boots (exit 0)" in out
    assert "smallest LOCORE_MAP_MB that covers kernel, modules and metadata: 210" in out
    assert "kmem arena" in out and "v_page_count / scale * PAGE_SIZE" in out
    svg = picture.read_text()                         # matplotlib's SVG (tools/pictures.py), text kept as text
    assert "<svg" in svg and "kmem arena" in svg and "LOCORE_MAP_MB window end 0xd0000000" in svg
    code = main(["plan", "--json", "--physmem", "2G", "--kernel-footprint", "9M", "--mfsroot", str(images[200])])
    import json

    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["stage"] == "initarm" and data["min_locore_map_mb"] == 210


def test_plan_command_shows_the_embedded_root_image(capsys, roots, tmp_path):
    import json

    from tools.cli import main

    req = embedded_request(roots, tmp_path, "1G", 60, [], [], [], "", "mfs")
    argv = ["plan", "--no-loader-conf", "--kernconf", str(req.kernconf), "--kernel-footprint", "9M", "--physmem", "1G"]
    assert main(argv) == 1
    size = roots[60].stat().st_size
    assert f"({size // 1024} KiB of it MD_ROOT's embedded image, section mfs)" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["embedded_md"]["section"] == "mfs" and data["embedded_md"]["size"] == size
    assert data["kernel_size"] == 9 * MIB + size and data["min_locore_map_mb"] == 70
