"""The command tree against the contract (DESIGN.md), as sqlite-utils' test_docs does:
every command exists, has help, is in the README, and takes --json where it prints data."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from session_memory.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()

CONTRACT = ["daemon", "ingest", "analyze", "sweep", "status", "sessions", "show", "export",
            "restore", "reports", "reports show", "search", "usage", "hook session-end", "pin",
            "unpin", "forget", "check", "config show", "config check", "service install",
            "service uninstall", "service status"]
# Commands that print data (the contract: "every command that prints data takes --json").
DATA = ["ingest", "analyze", "sweep", "status", "sessions", "show", "export", "restore",
        "reports", "reports show", "search", "usage", "pin", "unpin", "forget", "check",
        "config show", "config check", "service status"]


def command(path: str) -> click.Command:
    cmd: click.Command = cli
    for name in path.split():
        assert isinstance(cmd, click.Group), path
        sub = cmd.commands.get(name)
        assert sub is not None, f"missing command: {path}"
        cmd = sub
    return cmd


@pytest.mark.parametrize("path", CONTRACT)
def test_contract_command_exists_with_help(path: str) -> None:
    cmd = command(path)
    assert (cmd.help or "").strip(), f"{path} has no help"
    assert f"session-memory {path}" in README or f"`{path}" in README, f"{path} not in README"


@pytest.mark.parametrize("path", DATA)
def test_data_commands_take_json(path: str) -> None:
    assert any("--json" in p.opts for p in command(path).params), f"{path} lacks --json"


def test_every_command_has_help() -> None:
    def walk(cmd: click.Command, prefix: str) -> list[str]:
        missing = [] if (cmd.help or "").strip() else [prefix]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                missing += walk(sub, f"{prefix} {name}".strip())
        return missing

    assert walk(cli, "") == []
