"""`analyze [ID…] [--all] [--force]`, `search QUERY`, `usage [--by …] [--since DATE]`."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import click
from rich.table import Table

from session_memory import config
from session_memory.cli.common import (
    Context,
    data_command,
    emit_json,
    fail,
    human_time,
    stdout,
)
from session_memory.errors import ConfigError
from session_memory.exitcodes import USAGE

USAGE_KEYS = ("day", "model", "source", "project")


@click.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "include_active", is_flag=True, help="Also sessions still active.")
@click.option("--force", is_flag=True, help="Redo analyzed sessions whose raw bytes remain.")
@data_command
def analyze(ctx: Context, ids: tuple[str, ...], include_active: bool, force: bool,
            as_json: bool) -> None:
    """Digest ended, un-analyzed sessions (or the IDs named) into Tier 2."""
    with ctx.memory() as memory:
        result = memory.analyze_report(list(ids) or None, include_active=include_active,
                                       force=force)
    if as_json:
        emit_json({"analyzed": result.analyzed, "skipped": result.skipped,
                   "failed": result.failed})
    else:
        for sid in result.analyzed:
            click.echo(sid)
        for sid, why in result.skipped.items():
            click.echo(f"skipped {sid}: {why}", err=True)
        for sid, why in result.failed.items():
            click.echo(f"failed {sid}: {why}", err=True)
        click.echo(f"analyzed {len(result.analyzed)} sessions", err=True)
    if result.failed:
        raise SystemExit(1)


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many results.")
@data_command
def search(ctx: Context, query: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Full-text search over digests: titles, prompts, files, commands, errors, replies."""
    with ctx.memory() as memory:
        hits = memory.search(" ".join(query), limit)
    if as_json:
        emit_json(hits)
        return
    for hit in hits:
        click.echo(f"{hit['id']}  {human_time(hit['started_at'])}  {hit['title'] or ''}")
        click.echo(f"    {hit['snippet']}")
    if not hits:
        click.echo("no matches", err=True)


def parse_since(text: str, now: float) -> float:
    """A date (YYYY-MM-DD, UTC), an ISO 8601 time, or an age such as 7d or 12h."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            return now - config.parse_duration(text, "--since")
        except ConfigError:
            fail(f"--since {text!r}: expected a date (2025-01-31), a time or an age (7d)",
                 USAGE)
            raise
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@click.command()
@click.option("--by", type=click.Choice(USAGE_KEYS), default="day", show_default=True,
              help="One row per day (UTC), model, source or project.")
@click.option("--since", help="Only sessions started since: 2025-01-31, an ISO time, or 7d.")
@data_command
def usage(ctx: Context, by: str, since: str | None, as_json: bool) -> None:
    """Token totals from digests (kept after raw sessions are evicted)."""
    start = parse_since(since, time.time()) if since else None
    with ctx.memory() as memory:
        rows = memory.usage(by, start)
    if as_json:
        emit_json(rows)
        return
    columns = ("sessions", "input", "output", "cache_creation", "cache_read", "reasoning")
    if not sys.stdout.isatty():
        for r in rows:
            click.echo("\t".join(str(r[k]) for k in ("key", *columns)))
        return
    table = Table(by, "sessions", "input", "output", "cache write", "cache read", "reasoning")
    for r in rows:
        table.add_row(str(r["key"]), *(f"{r[k]:,}" for k in columns))
    stdout.print(table)


def register(cli: click.Group) -> None:
    for command in (analyze, search, usage):
        cli.add_command(command)
