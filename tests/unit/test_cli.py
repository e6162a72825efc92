"""The ``tgfleet`` parser: a command loads its own area only, and help lists them all."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tgfleet.cli import AREA_COMMANDS, build_parser


def _commands(argv: list[str]) -> set[str]:
    sub = build_parser(argv)._subparsers
    assert sub is not None
    [action] = sub._group_actions
    return set(action.choices)  # type: ignore[arg-type]


def test_help_lists_every_area_s_commands_and_the_table_names_them_all() -> None:
    assert _commands(["--help"]) == set(AREA_COMMANDS) | {"ping", "flower"}


@pytest.mark.parametrize("command", sorted(AREA_COMMANDS))
def test_a_command_brings_its_own_area_only(command: str) -> None:
    same_area = {c for c, module in AREA_COMMANDS.items() if module == AREA_COMMANDS[command]}
    assert _commands([command, "--flag"]) == same_area | {"ping", "flower"}


def test_an_unknown_command_is_refused_with_every_choice() -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(["nope"]).parse_args(["nope"])
    assert exit_info.value.code == 2


def test_status_does_not_load_the_bot_framework_or_telethon() -> None:
    code = (
        "import sys; from tgfleet.cli import build_parser; build_parser(['status']); "
        "print(sorted(m for m in ('tgfleet.bots', 'telethon') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
