"""`analyze [ID…] [--all] [--force]`, `search QUERY`."""

from __future__ import annotations

import re

import click

from session_memory.cli.common import Context, data_command, echo, emit_json, fail
from session_memory.humanize import human_count, human_time


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
        document = {"analyzed": result.analyzed, "skipped": result.skipped,
                    "failed": result.failed}
        if result.failed:
            fail(f"{human_count(len(result.failed), 'session')} failed: "
                 + "; ".join(f"{sid}: {why}" for sid, why in result.failed.items()),
                 as_json=True, document=document)
        emit_json(document)
    else:
        for sid in result.analyzed:
            echo(sid)
        for sid, why in result.skipped.items():
            echo(f"skipped {sid}: {why}", err=True)
        for sid, why in result.failed.items():
            echo(f"failed {sid}: {why}", err=True)
        echo(f"analyzed {human_count(len(result.analyzed), 'session')}", err=True)
    if result.failed:
        raise SystemExit(1)


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many results.")
@data_command
def search(ctx: Context, query: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Full-text search over digests: titles, prompts, files, commands, errors, replies."""
    text = " ".join(query)
    if not text.strip():
        raise click.UsageError("QUERY is empty: give the words to look for")
    with ctx.memory() as memory:
        hits = memory.search(text, limit)
    if as_json:
        emit_json(hits)
        return
    for hit in hits:
        echo(f"{hit['id']}  {human_time(hit['started_at'])}  {hit['title'] or ''}")
        # A snippet may span lines (a session's commands, one a line): one line a hit.
        echo(f"    {_LINE_BREAKS.sub(' · ', hit['snippet'].strip())}")
    if not hits:
        echo("no matches", err=True)


_LINE_BREAKS = re.compile(r"\s*[\r\n]\s*")


def register(cli: click.Group) -> None:
    for command in (analyze, search):
        cli.add_command(command)
