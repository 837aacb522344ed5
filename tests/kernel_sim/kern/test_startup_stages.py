"""mi_startup's named steps: who watches hears each before it runs, in FreeBSD's order, and a step
that ends the boot (a panic) is the last one heard."""

from __future__ import annotations

from kernel_sim import boot as boot_mod
from kernel_sim.kern.startup import STAGE_NAMES


def stages_of(**request) -> tuple[list[str], object]:
    heard: list[str] = []
    req = boot_mod.BootRequest(console=None, on_stage=lambda name, run: heard.append(name), **request)
    return heard, boot_mod.run(boot_mod.prepare(req))


def test_default_boot_passes_every_stage_in_order():
    heard, result = stages_of()
    assert result.exit_code == 0
    assert heard == [*STAGE_NAMES, "done"]
    assert STAGE_NAMES.index("geom_taste") < STAGE_NAMES.index("mountroot") < STAGE_NAMES.index("start_init")


def test_a_panic_ends_the_stages_at_its_step():
    heard, result = stages_of(tunables=[("vfs.root.mountfrom", "ufs:/dev/nosuchdisk")])
    assert result.exit_code == 1 and "mountroot" in result.message
    assert heard == [*STAGE_NAMES[:STAGE_NAMES.index("mountroot") + 1], "done"]


def test_the_run_is_at_the_named_step_when_heard():
    seen = {}

    def watch(name, run):
        seen[name] = (run.next_step, run.s is not None)

    boot_mod.run(boot_mod.prepare(boot_mod.BootRequest(console=None, on_stage=watch)))
    assert seen["kmeminit"] == (0, False)          # nothing built yet
    assert seen["mountroot"] == (STAGE_NAMES.index("mountroot"), True)
