"""`sessions`, `show`, `export`, `restore`, `pin`, `unpin`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from session_memory.cli.common import (
    Context,
    data_command,
    echo,
    emit_json,
    print_table,
    rich_text,
    table_fits,
)
from session_memory.humanize import (
    human_bytes,
    human_cost,
    human_count,
    human_duration,
    human_time,
)
from session_memory.store.tier1 import STATES

if TYPE_CHECKING:
    from rich.text import Text

    from session_memory.memory import Memory


@click.command()
@click.option("--state", type=click.Choice(STATES), help="Only sessions in this state.")
@click.option("--source", help="Only sessions from this source.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@data_command
def sessions(ctx: Context, state: str | None, source: str | None, limit: int | None,
             as_json: bool) -> None:
    """List sessions, most recently written first."""
    with ctx.memory() as memory:
        rows = memory.sessions(state=state, source=source, limit=limit)
        cells = _table_cells(memory, rows) if not as_json and sys.stdout.isatty() else None
    if as_json:
        emit_json(rows)
        return
    if not rows:  # not an empty table: say why there is nothing
        names = ctx.settings.sources
        echo(f"no sessions match: no source is named {source!r} (sources: "
             f"{', '.join(names)})" if source and source not in names else
             "no sessions match" if state or source else
             "no sessions stored yet: `session-memory ingest` (or the daemon) stores them",
             err=True)
        return
    if cells is None:
        # Tab-separated, one line a session; the title last, its tabs and line breaks as
        # spaces.
        for r in rows:
            title = " ".join((r["title"] or "").split())
            echo(f"{r['id']}\t{r['state']}\t{r['raw_bytes']}\t{r['stored_bytes']}\t"
                       f"{human_time(r['started_at'])}\t{'pinned' if r['pinned'] else ''}\t"
                       f"{title}")
        return
    # As Text: a prompt's brackets ("[/]", "list[str]") are no rich markup.
    titled: list[list[str | Text]] = [[*c, rich_text(r["title"] or "")]
                                      for r, c in zip(rows, cells, strict=True)]
    print_table(HEADERS, titled, dropped_first=("stored", "pin", "raw"), flexible="title")


HEADERS = ("id", "state", "started", "raw", "stored", "cost", "pin", "title")


def _table_cells(memory: Memory, rows: list[dict[str, Any]]) -> list[list[str]]:
    """The table's cells before the title; on a line too narrow for whole ids, each id cut
    to what `show` and the others still take for it alone."""
    cells = [[r["id"], r["state"], human_time(r["started_at"]), human_bytes(r["raw_bytes"]),
              human_bytes(r["stored_bytes"]), human_cost(r["cost_usd"]),
              "📌" if r["pinned"] else ""] for r in rows]
    if not table_fits(HEADERS, [[*c, ""] for c in cells], flexible="title"):
        short = memory.short_ids([r["id"] for r in rows])
        for c in cells:
            c[0] = short[c[0]]
    return cells


@click.command()
@click.argument("session_id")
@data_command
def show(ctx: Context, session_id: str, as_json: bool) -> None:
    """One session: its metadata and digest."""
    with ctx.memory() as memory:
        row = memory.show(session_id)
    if as_json:
        emit_json(row)
        return
    _print_session(row)


def _print_session(row: dict[str, Any]) -> None:
    echo(f"{row['id']}  [{row['state']}{', pinned' if row['pinned'] else ''}]")
    echo(f"  raw {human_bytes(row['raw_bytes'])}, stored {human_bytes(row['stored_bytes'])}"
               f"; started {human_time(row['started_at'])}, ended {human_time(row['ended_at'])}"
               # Its sizes are 0 since: say when, and that the digest is what is left.
               + (f"; raw bytes evicted {human_time(row['evicted_at'])}, digest kept"
                  if row["evicted_at"] is not None and row["state"] == "evicted" else ""))
    for path in row["files"]:
        echo(f"  file  {path}")
    digest = row.get("digest")
    if not digest:
        echo("  (not analyzed yet)")
        return
    for key in ("title", "cwd", "git_branch", "outcome", "user_turns"):
        if digest.get(key) not in (None, "", []):
            echo(f"  {key}: {digest[key]}")
    if digest.get("duration_s") is not None:
        echo(f"  duration: {human_duration(digest['duration_s'])}")
    if digest.get("models"):
        echo(f"  models: {', '.join(digest['models'])}")
    # What `usage` counts and the cost below is priced from (input without cache reads,
    # a response two sessions hold counted once); the digest's own are as the tool wrote
    # them (one tool's input includes its cache reads).
    tokens = row.get("tokens") or digest.get("tokens") or {}
    if tokens:
        echo("  tokens: " + ", ".join(f"{k} {v:,}" for k, v in tokens.items()))
    if row["cost_usd"] is not None:
        echo(f"  cost: {human_cost(row['cost_usd'])}")
    if digest.get("tool_calls"):
        echo("  tools: " + ", ".join(f"{k}×{v}" for k, v in digest["tool_calls"].items()))
    for key in ("files_edited", "commands"):
        for item in (digest.get(key) or [])[:20]:
            echo(f"  {key[:-1] if key.endswith('s') else key}: {item}")
    for err in (digest.get("errors") or [])[:10]:
        echo(f"  error ({err.get('tool')}): {err.get('snippet')}")
    if digest.get("malformed_lines"):
        # Lines the analyzer could not read (not JSON, cut short): the digest leaves them
        # out, export and restore give them back as they were while the raw bytes are kept.
        echo(f"  malformed lines: {digest['malformed_lines']:,} (left out of this digest"
             + ("; evicted with the raw bytes)" if row["state"] == "evicted"
                else "; kept byte for byte, `export` gives them back)"))
    if digest.get("first_prompt"):
        echo(f"  first prompt: {digest['first_prompt'][:500]}")
    if digest.get("last_assistant_message"):
        echo(f"  last message: {digest['last_assistant_message'][:500]}")


@click.command()
@click.argument("session_id")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path,
              file_okay=False), help="Folder to write the files under.")
@click.option("--all-versions", is_flag=True,
              help="Also each version a file had before it was rewritten (as PATH.vN).")
@data_command
def export(ctx: Context, session_id: str, out_dir: Path, all_versions: bool,
           as_json: bool) -> None:
    """Write a session's files, byte-identical, under DIR at their source-relative paths."""
    with ctx.memory() as memory:
        written = memory.export(session_id, out_dir, all_versions=all_versions)
    if as_json:
        emit_json({"files": [str(p) for p in written]})
    else:
        for p in written:
            echo(str(p))
    echo(f"exported {human_count(len(written), 'file')}", err=True)


@click.command()
@click.argument("session_id")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@data_command
def restore(ctx: Context, session_id: str, force: bool, as_json: bool) -> None:
    """Put a session's files back where the agent tool keeps them."""
    with ctx.memory() as memory:
        written = memory.restore(session_id, force=force)
    if as_json:
        emit_json({"files": [str(p) for p in written]})
    else:
        for p in written:
            echo(str(p))
    # Files in place with the stored bytes are left alone: say so, not only "0 files".
    echo(f"restored {human_count(len(written), 'file')}" if written else
               "restored nothing: its files are in place already, with the stored bytes",
               err=True)


def _pin_command(name: str, pinned: bool, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("session_id")
    @data_command
    def command(ctx: Context, session_id: str, as_json: bool) -> None:
        with ctx.memory() as memory:
            sid = memory.pin(session_id, pinned)
        if as_json:
            emit_json({"id": sid, "pinned": pinned})
        echo(f"{sid} {'pinned' if pinned else 'unpinned'}", err=True)

    return command


def register(cli: click.Group) -> None:
    for command in (sessions, show, export, restore):
        cli.add_command(command)
    cli.add_command(_pin_command("pin", True, "Exempt a session from eviction."))
    cli.add_command(_pin_command("unpin", False, "Let a pinned session be evicted again."))
