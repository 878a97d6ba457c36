"""`usage [--by …] [--since DATE] [--until DATE] [--project P] [--breakdown]`, `usage blocks`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from session_memory import usage as usage_mod
from session_memory.cli.common import (
    Context,
    data_command,
    echo,
    emit_json,
    print_table,
    rich_text,
    table_fits,
)
from session_memory.humanize import human_cost, human_count

if TYPE_CHECKING:
    from rich.text import Text

BAR_WIDTH = 24
_COLUMNS = usage_mod.FIELDS
_HEADERS = ("input", "output", "cache write", "cache read", "reasoning")
NARROW_LEFT_OUT = ("tokens", "reasoning", "cache write", "sessions", "cache read")
"""The columns a usage table leaves out, in turn, while the line is too narrow for it (as
ccusage's compact tables leave out the cache columns): never the key, input, output or cost."""


@click.group(invoke_without_command=True)
@click.option("--by", type=click.Choice(usage_mod.BY), default="day", show_default=True,
              help="One row per day, ISO week or month (local time of TZ), model, source, "
                   "project or session.")
@click.option("--since", help="From this day on (YYYY-MM-DD, local time), an ISO time or an "
                              "age (7d).")
@click.option("--until", help="Up to and including this day (YYYY-MM-DD), an ISO time or "
                              "an age (7d).")
@click.option("--project", help="Only projects whose path holds this (or matches this glob).")
@click.option("--breakdown", is_flag=True, help="Each model's part of every row.")
@data_command
def usage(ctx: Context, by: str, since: str | None, until: str | None, project: str | None,
          breakdown: bool, as_json: bool) -> None:
    """Tokens and cost, counted in the quarter hour they were spent (kept after raw is evicted).

    A session counts once it has a digest: the daemon digests a running one about a
    minute after it grows, and analyzes it again once it ends (`analyze --all` without it).
    `input` never includes cache reads; a response two sessions' files hold counts once.
    Cost comes from genai-prices' bundled table or the config's [prices]; a model priced
    nowhere has no cost (null)."""
    click_ctx = click.get_current_context()
    if (zone := unknown_time_zone()) is not None:  # `usage blocks` shows local times too
        echo(f"TZ={zone!r} is no time zone this system knows: local days and times "
                   "are UTC ones", err=True)
    if click_ctx.invoked_subcommand is not None:
        return  # its --json is the subcommand's too (cli/common.py, handle_errors)
    with ctx.memory() as memory:
        rows = memory.usage(by, since, until, project=project, breakdown=breakdown)
        waiting = memory.not_analyzed() if not rows and not as_json else 0
        table = _Table(by, rows, breakdown) if rows and not as_json and (
            sys.stdout.isatty()) else None
        if table is not None and by == "session" and not table.fits():
            # As `sessions` cuts them: the numbers need the line more than whole ids do.
            table = _Table(by, rows, breakdown, memory.short_ids([r["key"] for r in rows]))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo("no usage recorded" + (" in that window" if since or until else "")
                   + (f"; {human_count(waiting, 'session')} without a digest yet "
                      f"{'is' if waiting == 1 else 'are'} not counted (`analyze --all` "
                      "counts them now)" if waiting else ""), err=True)
        return
    if table is None:
        # With --breakdown, a model column after the key: empty on a row, the model's name
        # on each of its parts, which follow it (their sessions are not counted apart).
        for r in rows:
            model = ("",) if breakdown else ()
            echo("\t".join(str(v) for v in (r["key"], *model, r["sessions"],
                                            *(r[k] for k in _COLUMNS),
                                            human_cost(r["cost_usd"]))))
            for part in r.get("models", []) if breakdown else []:
                echo("\t".join(str(v) for v in (r["key"], part["model"], "",
                                                *(part[k] for k in _COLUMNS),
                                                human_cost(part["cost_usd"]))))
        return
    table.print()
    _notes(rows)


def unknown_time_zone() -> str | None:
    """TZ when it names a zone the system has no rules for (`America/NewYork`): the C
    library then keeps UTC without a word, and every day would be a UTC day. Looked for
    where the C library looks (TZDIR, else the system's zoneinfo folders), not in Python's
    tzdata package, which it never reads: a system without zone files (a slim container)
    keeps UTC for any name. A POSIX rule (`EST5EDT`, `CET-1CEST,M3.5.0,M10.5.0/3`) holds
    digits and is not checked, nor is a file's path."""
    import os
    import zoneinfo

    zone = os.environ.get("TZ", "")
    name = zone.removeprefix(":")
    if not name or name.startswith("/") or any(c.isdigit() for c in name):
        return None
    folders = [os.environ["TZDIR"]] if os.environ.get("TZDIR") else zoneinfo.TZPATH
    if any(os.path.isfile(os.path.join(folder, name)) for folder in folders):
        return None
    return zone


def _bar(value: int, largest: int) -> Text:
    """A bar of eighths: no plot library needed."""
    if largest <= 0 or value <= 0:
        return rich_text("")
    eighths = max(1, round(value / largest * BAR_WIDTH * 8))
    return rich_text("█" * (eighths // 8) + " ▏▎▍▌▋▊▉"[eighths % 8].strip(), "cyan")


class _Table:
    """A usage table: a row per key (`keys`: what to show for one, where not itself), the
    models' parts under it with --breakdown, the totals at the foot."""

    def __init__(self, by: str, rows: list[dict[str, Any]], breakdown: bool,
                 keys: dict[str, str] | None = None) -> None:
        timeline = by in ("day", "week", "month")
        self.headers = [by, "sessions", *_HEADERS, "cost (USD)",
                        *(["tokens"] if timeline else [])]
        # A project's path takes what the numbers leave of the line.
        self.flexible = by if by == "project" else None
        largest = max(usage_mod.tokens(r) for r in rows)
        self.cells: list[list[str | Text]] = []
        for r in rows:
            # As Text: a project's path may hold brackets, which are no rich markup.
            self.cells.append([rich_text((keys or {}).get(r["key"], str(r["key"]))),
                               f"{r['sessions']:,}", *(f"{r[k]:,}" for k in _COLUMNS),
                               human_cost(r["cost_usd"]),
                               *([_bar(usage_mod.tokens(r), largest)] if timeline else [])])
            for part in r.get("models", []) if breakdown else []:
                self.cells.append([rich_text(f"  └ {part['model']}", "dim"), "",
                                   *(rich_text(f"{part[k]:,}", "dim") for k in _COLUMNS),
                                   rich_text(human_cost(part["cost_usd"]), "dim"),
                                   *([""] if timeline else [])])
        total = usage_mod.totals(rows)
        self.footers = ["total", f"{total['sessions']:,}", *(f"{total[k]:,}" for k in _COLUMNS),
                        human_cost(total["cost_usd"])]

    def fits(self) -> bool:
        return table_fits(self.headers, self.cells, footers=self.footers,
                          flexible=self.flexible)

    def print(self) -> None:
        print_table(self.headers, self.cells, footers=self.footers,
                    dropped_first=NARROW_LEFT_OUT, flexible=self.flexible)


def _notes(rows: list[dict[str, Any]]) -> None:
    """What a reader of the table should know of its rows (on stderr)."""
    unpriced = sorted({m for r in rows for m in r.get("unpriced_models", [])})
    if unpriced:
        echo(f"no price known for {', '.join(unpriced)}: their rows show no cost "
                   "(set one under [prices] in the config)", err=True)
    whole = sum(r.get("whole_session_estimates", 0) for r in rows)
    if whole:
        echo(f"{human_count(whole, 'session')} analyzed before usage was kept by the "
                   "time of spend, raw bytes since evicted: each counted whole at its start",
             err=True)


@usage.command()
@click.option("--since", help="From this day on (YYYY-MM-DD, local time), or an age (7d).")
@click.option("--active", "active_only", is_flag=True, help="Only the block running now.")
@data_command
def blocks(ctx: Context, since: str | None, active_only: bool, as_json: bool) -> None:
    """5-hour billing blocks (sources that bill so): tokens and cost, the active one marked."""
    with ctx.memory() as memory:
        found = memory.usage_blocks(since)
    recorded = found
    if active_only:
        found = [b for b in found if b["active"]]
    if as_json:
        emit_json(found)
        return
    if not found:
        last = [b for b in recorded if not b["gap"]]
        echo(f"no block is running now; the last ended {_local(last[-1]['end'])}"
                   if last else "no billing blocks recorded", err=True)
        return
    if not sys.stdout.isatty():
        for b in found:
            echo("\t".join(str(v) for v in (
                b["start"], b["end"], "active" if b["active"] else "gap" if b["gap"] else "",
                *(b[k] for k in _COLUMNS), human_cost(b["cost_usd"]))))
        return
    largest = max(usage_mod.tokens(b) for b in found)
    print_table(["start (local)", "", *_HEADERS, "cost (USD)", "tokens", "models"], [
        [_local(b["start"]), rich_text("● active", "bold green") if b["active"] else (
            rich_text("gap", "dim") if b["gap"] else ""),
         *(f"{b[k]:,}" for k in _COLUMNS), human_cost(b["cost_usd"]),
         _bar(usage_mod.tokens(b), largest), rich_text(", ".join(b["models"]))]
        for b in found], dropped_first=NARROW_LEFT_OUT, flexible="models")


def _local(iso: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime(
        "%Y-%m-%d %H:%M")


def register(cli: click.Group) -> None:
    cli.add_command(usage)
