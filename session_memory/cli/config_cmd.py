"""`config show`, `config check`."""

from __future__ import annotations

import click

from session_memory import config
from session_memory.cli.common import (
    Context,
    data_command,
    emit_json,
)


@click.group("config")
def config_group() -> None:
    """Show or validate the configuration."""


@config_group.command("show")
@click.option("--defaults", is_flag=True,
              help="Show the built-in defaults, not the effective config.")
@data_command
def show(ctx: Context, defaults: bool, as_json: bool) -> None:
    """Print the effective configuration (defaults merged under your file)."""
    if defaults and not as_json:
        click.echo(config.default_config_text(), nl=False)
        return
    settings = config.load(defaults_only=True) if defaults else ctx.settings
    doc = config.as_document(settings)
    if as_json:
        emit_json(doc)
        return
    for section, values in doc.items():
        if section == "sources":
            for name, table in values.items():
                click.echo(f"\n[sources.{name}]")
                for key, value in table.items():
                    click.echo(f"{key} = {_toml(value)}")
            continue
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {_toml(value)}")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # as the config file writes it: 45 days, not 45.0
    return str(value)


@config_group.command("check")
@data_command
def check(ctx: Context, as_json: bool) -> None:
    """Validate the configuration; exit 78 when it is bad."""
    settings = ctx.settings
    path = ctx.config_path or config.user_config_path()
    if as_json:
        emit_json({"ok": True, "path": str(path), "exists": path.exists(),
                   "sources": [s.name for s in settings.enabled_sources]})
    else:
        click.echo(f"config ok ({path if path.exists() else 'defaults only'})", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
