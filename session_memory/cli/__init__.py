"""The command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

import click

from session_memory import __version__, exitcodes
from session_memory.cli.common import Context, emit_error

COMMAND_MODULES: dict[str, str] = {
    "analyze": "analyze_cmd", "search": "analyze_cmd",
    "config": "config_cmd",
    "daemon": "daemon_cmd", "service": "daemon_cmd", "hook": "daemon_cmd",
    "dashboard": "dashboard_cmd",
    "ingest": "ingest_cmd",
    "mcp": "mcp_cmd",
    "sweep": "retention_cmd", "reports": "retention_cmd", "forget": "retention_cmd",
    "sessions": "sessions_cmd", "show": "sessions_cmd", "export": "sessions_cmd",
    "restore": "sessions_cmd", "pin": "sessions_cmd", "unpin": "sessions_cmd",
    "status": "status_cmd", "check": "status_cmd",
    "usage": "usage_cmd",
}
"""Each command's module under session_memory.cli, which adds it with its `register`."""


class LazyGroup(click.Group):
    """Imports a command's module only when that command is looked up (click's lazy-loading
    pattern): a command starts without the other commands' modules and what they import.
    --help, which lists them all, still imports them all."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"{__name__}.{COMMAND_MODULES[cmd_name]}")
            module.register(self)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SESSION_MEMORY_CONFIG",
              help="Config file (default: $XDG_CONFIG_HOME/session-memory/config.toml).")
@click.version_option(__version__, prog_name="session-memory")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Keep a lasting, compact memory of AI coding-agent sessions inside a disk budget."""
    gc.enable()  # the console script loads without it (see __main__); the command runs with it
    ctx.obj = Context(config_path)


def config_first(args: list[str]) -> list[str]:
    """The arguments with `--config PATH` (or `--config=PATH`) moved to the front: it is the
    group's option, and a command line that gives it after the command (`session-memory
    status --config cfg.toml`, as DESIGN.md's "or --config PATH" reads too) means the same.
    Nothing after `--` is moved: that is a command's arguments."""
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--config" and i + 1 < len(args):
            moved.extend(args[i:i + 2])
            i += 2
            continue
        (moved if arg.startswith("--config=") else rest).append(arg)
        i += 1
    return moved + rest


def main() -> None:
    try:
        cli(args=config_first(sys.argv[1:]), prog_name="session-memory", standalone_mode=False)
    except click.ClickException as e:  # bad usage: an unknown option, a bad value
        if "--json" in sys.argv[1:]:
            emit_error(e.format_message(), e.exit_code)
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(exitcodes.INTERRUPTED)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
