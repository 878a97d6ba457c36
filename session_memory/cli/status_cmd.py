"""`status`, `check`."""

from __future__ import annotations

import sys

import click

from session_memory import exitcodes
from session_memory.cli.common import Context, data_command, echo, emit_json, fail
from session_memory.humanize import human_bytes, human_count, human_time


@click.command()
@data_command
def status(ctx: Context, as_json: bool) -> None:
    """Tier usage against caps, sessions by state, last sweep, disk, daemon."""
    with ctx.memory() as memory:
        st = memory.status()
    if as_json:
        emit_json(st)
        return
    t1, t2, s = st["tier1"], st["tier2"], st["sessions"]
    click.echo(f"tier 1  {human_bytes(t1['usage_bytes'])} of {human_bytes(t1['soft_cap_bytes'])}"
               f" (hard cap {human_bytes(t1['hard_cap_bytes'])}); raw "
               f"{human_bytes(t1['raw_bytes'])} stored as {human_bytes(t1['stored_bytes'])}")
    click.echo(f"tier 2  {human_bytes(t2['usage_bytes'])} of {human_bytes(t2['cap_bytes'])}")
    click.echo("sessions " + ", ".join(f"{k} {s[k]}" for k in
                                        ("active", "ended", "analyzed", "evicted", "pinned",
                                         "total")))
    last = st["last_sweep"]
    click.echo(f"last sweep {human_time(last.get('started_at_epoch')) if last else 'never'}")
    click.echo(f"disk free {human_bytes(st['disk']['free_bytes'])} of "
               f"{human_bytes(st['disk']['total_bytes'])}")
    d = st["daemon"]
    click.echo(f"daemon {'running, pid ' + str(d['pid']) if d['running'] else 'not running'}")


@click.command()
@click.option("--repair", is_flag=True,
              help="First fix what can be fixed without losing data; then check.")
@data_command
def check(ctx: Context, repair: bool, as_json: bool) -> None:
    """Check both stores; exit 1 with the list of problems when unhealthy."""
    with ctx.memory() as memory:
        repaired = memory.repair() if repair else []
        problems = memory.check()
        warnings = memory.check_warnings()
    if as_json:
        document = ({"ok": not problems, "problems": problems, "warnings": warnings}
                    | ({"repaired": repaired} if repair else {}))
        if problems:
            fail(f"unhealthy: {human_count(len(problems), 'problem')}", as_json=True,
                 document=document)
        emit_json(document)
    else:
        for fix in repaired:
            echo(f"repaired: {fix}")
        for p in problems:
            echo(p)
        for w in warnings:
            echo(f"warning: {w}")
        click.echo(human_count(len(problems), "problem") if problems else "stores healthy",
                   err=True)
    if problems:
        sys.exit(exitcodes.ERROR)


def register(cli: click.Group) -> None:
    cli.add_command(status)
    cli.add_command(check)
