"""Which boot stage runs now, for the timeline and stage-filtered traces.

Guest stages (kernel_sim/guest/stages.py) are seen by a code hook on the first instruction of each,
installed only while a watch exists and removed once its stage has begun; the Python kernel's steps
come from the boot's on_stage. Stages only move forward: a stage's first instruction run again later
(a function called twice) does not start it again.
"""

from __future__ import annotations

from collections.abc import Callable

from board.machine import Machine
from board.trace import Events
from kernel_sim.guest.build import GuestImage
from kernel_sim.guest.stages import GUEST_STAGE_NAMES, stage_starts
from kernel_sim.kern.startup import STAGE_NAMES

ALL_STAGES = (*GUEST_STAGE_NAMES, *STAGE_NAMES)

# Called with the stage's name, the address it began at (None for the Python kernel's) and the
# StartupRun (None for the guest's).
StageListener = Callable[[str, "int | None", object], None]


class StageWatch:
    def __init__(self, machine: Machine, image: GuestImage) -> None:
        self.current: str | None = None
        self.listeners: list[StageListener] = []
        self._order = {name: i for i, name in enumerate(ALL_STAGES)}
        self.starts = dict(stage_starts(image))             # guest stage -> its first instruction
        bus = Events.of(machine)
        self._subs = {name: bus.subscribe("insn", lambda address, _size, name=name: self._begin(name, address, None),
                                          begin=address, end=address)
                      for name, address in self.starts.items()}

    def _begin(self, name: str, address: int | None, run: object) -> None:
        sub = self._subs.pop(name, None)
        if sub is not None:
            sub.cancel()
        if self.current is not None and self._order.get(name, len(ALL_STAGES)) <= self._order.get(self.current, -1):
            return
        self.current = name
        for listener in list(self.listeners):
            listener(name, address, run)

    def begin_at(self, address: int) -> None:
        """A block starts at `address`: if a stage begins there, begin it now, before the block's code
        hook would (a block hook runs first), so that what is said about the block follows the stage."""
        for name in [n for n in self._subs if self.starts[n] == address]:
            self._begin(name, address, None)

    def on_stage(self, name: str, run: object) -> None:
        """The boot's on_stage: each mi_startup step, then "done"."""
        self._begin(name, None, run)

    def close(self) -> None:
        for sub in self._subs.values():
            sub.cancel()
        self._subs.clear()
