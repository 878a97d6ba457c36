"""The analysis commands exist, have help, and take --json (the contract's surface)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from session_memory.cli import cli


@pytest.mark.parametrize("name", ["analyze", "search", "usage"])
def test_command_has_help_and_json(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)  # loads the command's module
    assert command is not None and command.help
    assert "--json" in [opt for p in command.params for opt in getattr(p, "opts", [])]
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0 and "--json" in result.output


def test_usage_rejects_an_unknown_key() -> None:
    assert CliRunner().invoke(cli, ["usage", "--by", "fortnight"]).exit_code == 2
