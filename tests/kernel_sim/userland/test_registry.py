"""The command registry: every name leads to a module with main(sys, argv); /bin/NAME finds it too."""

from __future__ import annotations

import importlib
import inspect

from kernel_sim.userland.commands import COMMANDS


def test_every_registered_command_has_a_main() -> None:
    for name, module in COMMANDS.items():
        main = importlib.import_module(module).main
        assert list(inspect.signature(main).parameters) == ["sys", "argv"], name


def test_paths_in_the_binary_directories_name_registered_commands(board) -> None:
    assert board.run("/bin/echo via path; /usr/bin/true && echo ok; /opt/bin/ls") == \
        (127, "via path\nok\n/etc/rc: /opt/bin/ls: not found\n")
