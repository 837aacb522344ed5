"""`armboard plan` predicts what `armboard boot` does: the same stage, the same exit status."""

from __future__ import annotations

import itertools
import random

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


def request(images, tmp_path, physmem, image, window, tables, kmem, load) -> boot_mod.BootRequest:
    conf = tmp_path / "loader.conf"
    conf.write_text((kmem + "\n" if isinstance(kmem, str) else "") + load)
    overrides = [*window, *tables, *(kmem if isinstance(kmem, list) else [])]
    return boot_mod.BootRequest(physmem=physmem, kernel_footprint="9M", mfsroot=images.get(image),
                                overrides=overrides, loader_conf=conf, console=None)


def check(images, tmp_path, point) -> None:
    try:
        prep = boot_mod.prepare(request(images, tmp_path, *point))
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
    assert picture.read_text().startswith("<svg")
    code = main(["plan", "--json", "--physmem", "2G", "--kernel-footprint", "9M", "--mfsroot", str(images[200])])
    import json

    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["stage"] == "initarm" and data["min_locore_map_mb"] == 210
