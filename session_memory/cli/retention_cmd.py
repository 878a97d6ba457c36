"""`sweep`, `reports`, `reports show`, `forget`."""

from __future__ import annotations

import sys
from typing import Any

import click

from session_memory import exitcodes
from session_memory.cli.common import (
    Context,
    data_command,
    echo,
    emit_json,
    fail,
    handle_errors,
    json_option,
    pass_ctx,
    print_table,
    rich_text,
)
from session_memory.humanize import human_bytes, human_count, human_time


@click.command()
@click.option("--dry-run", is_flag=True,
              help="Print what a sweep would evict now; change nothing (the report is kept).")
@data_command
def sweep(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """One retention sweep: backstop, budget, overflow; prints its eviction report."""
    with ctx.memory() as memory:
        report = memory.sweep(dry_run=dry_run)
    if as_json and report["errors"]:
        fail(f"the sweep had {human_count(len(report['errors']), 'error')}: "
             + "; ".join(report["errors"]), as_json=True, document=report)
    if as_json:
        emit_json(report)
    else:
        _print_report(report)
    if report["errors"]:
        sys.exit(exitcodes.ERROR)


@click.group(invoke_without_command=True)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many, newest first.")
@json_option
@pass_ctx
@click.pass_context
@handle_errors
def reports(click_ctx: click.Context, ctx: Context, limit: int, as_json: bool) -> None:
    """Eviction reports, newest first (`reports show RID` for one)."""
    if click_ctx.invoked_subcommand is not None:
        return
    with ctx.memory() as memory:
        rows = memory.reports(limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:  # not an empty table: say why there is nothing
        echo("no eviction reports yet: the daemon sweeps every sweep_interval, or run"
             " `session-memory sweep` (`sweep --dry-run` changes nothing)", err=True)
        return
    if not sys.stdout.isatty():
        for r in rows:
            echo(f"{r['id']}\t{'dry-run' if r['dry_run'] else 'sweep'}\t"
                       f"{_evicted_count(r)}\t{r.get('bytes_freed')}\t{r.get('final_usage_bytes')}"
                       f"\t{len(r.get('overflow_data_loss') or [])}\t{len(r.get('errors') or [])}")
        return
    print_table(("id", "when", "kind", "evicted", "freed", "usage after", "data loss", "errors"),
                [[r["id"], human_time(r.get("started_at_epoch")),
                  "dry run" if r["dry_run"] else "sweep", str(_evicted_count(r)),
                  human_bytes(r.get("bytes_freed")), human_bytes(r.get("final_usage_bytes")),
                  rich_text(str(loss), "red" if loss else ""), str(len(r.get("errors") or []))]
                 for r in rows for loss in [len(r.get("overflow_data_loss") or [])]],
                # The id holds the time too (in UTC); data loss and errors stay.
                dropped_first=("when", "usage after", "kind", "freed"))


@reports.command("show")
@click.argument("report_id")
@data_command
def reports_show(ctx: Context, report_id: str, as_json: bool) -> None:
    """One eviction report, by id (or a unique prefix of it)."""
    with ctx.memory() as memory:
        report = memory.report(report_id)
    if as_json:
        emit_json(report)
    else:
        _print_report(report)


@click.command()
@click.argument("session_id")
@data_command
def forget(ctx: Context, session_id: str, as_json: bool) -> None:
    """Remove a session's raw data and digest for good (secure delete).

    A session whose files are still in the agent tool's folder is ingested again on the
    next pass: delete or move those files first if they should go too.
    """
    with ctx.memory() as memory:
        result = memory.forget(session_id)
    if as_json:
        emit_json(result)
        _say_what_comes_back(result)
        return
    # A message, as pin's and unpin's are: stdout is for data (--json's document).
    echo(f"forgot {result['id']}: {human_bytes(result['raw_bytes'])} of raw data"
         f" ({human_bytes(result['stored_bytes'])} stored)"
         f"{' and its digest' if result['digest_removed'] else ''}", err=True)
    _say_what_comes_back(result)


def _say_what_comes_back(result: dict[str, Any]) -> None:
    still_there = result["source_files"]
    if still_there:
        n = len(still_there)
        echo(f"warning: {n} of its files {'is' if n == 1 else 'are'} still in the agent"
                   " tool's folder, and the next ingest (the daemon's within minutes) stores"
                   f" the session again; delete {'it' if n == 1 else 'them'} there to keep it"
                   " forgotten:", err=True)
        for path in still_there:
            echo(f"  {path}", err=True)
    for database in result["source_databases"]:
        # Not to be deleted: it holds the tool's other sessions too.
        echo(f"warning: the agent tool's database {database} still holds the session, and"
             " the next ingest (the daemon's within minutes) stores it again; delete the"
             " session in the agent tool to keep it forgotten", err=True)


def _evicted_count(report: dict[str, Any]) -> int:
    return sum(len(report.get(k) or []) for k in
               ("backstop_evicted", "budget_evicted", "overflow_data_loss",
                "evicted_unattributed"))


def _print_report(r: dict[str, Any]) -> None:
    kind = "dry run (nothing changed)" if r["dry_run"] else "sweep"
    echo(f"{kind} {r['id']} at {r['started_at']}")
    from session_memory.retention import pass_sentences  # here: `reports` lists without it

    did = pass_sentences(r)
    for sentence, ids in did:
        echo(f"  {sentence}:")
        for sid in ids:
            echo(f"    {sid}")
    if not did:
        echo(f"  no pass {'would evict' if r['dry_run'] else 'evicted'} or analyze"
                   f"{'' if r['dry_run'] else 'd'} anything")
    caps = r.get("caps") or {}
    freed, now = ("would free", "would be") if r["dry_run"] else ("freed", "now")
    echo(f"  {freed} {human_bytes(r.get('bytes_freed'))}; tier 1 {now} "
               f"{human_bytes(r.get('final_usage_bytes'))} (soft cap "
               f"{human_bytes(caps.get('effective_soft_cap_bytes'))}, hard cap "
               f"{human_bytes(caps.get('hard_cap_bytes'))})")
    for w in r.get("warnings") or []:
        echo(f"  warning: {w}")
    for e in r.get("errors") or []:
        echo(f"  error: {e}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(sweep)
    cli.add_command(reports)
    cli.add_command(forget)
