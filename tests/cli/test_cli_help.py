"""``--help`` of every command at 80 columns: each option name printed whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from opensti.cli import app


# Typer >= 0.29 bundles its own click, so groups are told by list_commands, not class.
# The root loads a command's module when asked for it, so its commands are listed and
# got through click's group interface, not read from a dict.
def _subcommands(command: Any) -> Iterator[tuple[str, Any]]:
    if not hasattr(command, "list_commands"):
        return
    ctx = command.context_class(command)
    for name in command.list_commands(ctx):
        yield name, command.get_command(ctx, name)


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in _subcommands(command):
        yield from _commands(sub, (*path, name))


def _command(path: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = dict(_subcommands(command))[name]
    return command


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_walked() -> None:
    assert ("cert", "add") in COMMANDS
    assert ("sandbox",) in COMMANDS
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_prints_every_option_name_whole_at_80_columns(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for param in _command(path).params:
        if getattr(param, "hidden", False):
            continue
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.output), (
                    name,
                    result.output,
                )
