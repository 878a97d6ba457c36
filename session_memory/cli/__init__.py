"""The command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from session_memory import __version__, exitcodes
from session_memory.cli import (
    analyze_cmd,
    config_cmd,
    daemon_cmd,
    dashboard_cmd,
    ingest_cmd,
    mcp_cmd,
    retention_cmd,
    sessions_cmd,
    status_cmd,
    usage_cmd,
)
from session_memory.cli.common import Context, emit_error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SESSION_MEMORY_CONFIG",
              help="Config file (default: $XDG_CONFIG_HOME/session-memory/config.toml).")
@click.version_option(__version__, prog_name="session-memory")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Keep a lasting, compact memory of AI coding-agent sessions inside a disk budget."""
    ctx.obj = Context(config_path)


for module in (analyze_cmd, config_cmd, daemon_cmd, dashboard_cmd, ingest_cmd, mcp_cmd,
               retention_cmd, sessions_cmd, status_cmd, usage_cmd):
    module.register(cli)


def main() -> None:
    try:
        cli(prog_name="session-memory", standalone_mode=False)
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
