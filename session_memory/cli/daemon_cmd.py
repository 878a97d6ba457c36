"""`daemon`, `service install/uninstall/status`, `hook session-end`."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from types import FrameType
from typing import Any

import click

from session_memory.cli.common import (
    Context,
    data_command,
    emit_json,
    handle_errors,
    json_option,
    pass_ctx,
)

HOOK_STDIN_SECONDS = 5.0
HOOK_BUDGET_SECONDS = 20.0  # agents wait on their hooks: give up well before their timeout


@click.command()
@pass_ctx
@handle_errors
def daemon(ctx: Context) -> None:
    """Run in the foreground: watch, ingest, analyze and sweep on schedule (systemd Type=notify)."""
    from session_memory import log
    from session_memory.daemon import Daemon

    log.ensure_setup()  # before the watcher starts: watchdog's own records go through it too
    settings = ctx.settings  # a bad config exits 78 here, before anything starts
    sys.exit(Daemon(settings, config_path=ctx.config_path).run())


@click.group()
def service_group() -> None:
    """The systemd user unit."""


@service_group.command("install")
@click.option("--no-start", is_flag=True, help="Only write the unit; do not enable or start it.")
@data_command
def service_install(ctx: Context, no_start: bool, as_json: bool) -> None:
    """Write the user unit to ~/.config/systemd/user/ and enable it where systemd answers."""
    from session_memory import service

    result = service.install(ctx.settings, config_path=ctx.config_path, start=not no_start)
    if as_json:
        emit_json(result)
        return
    # Messages, on stderr as dashboard's "wrote" is: stdout is for data (--json's).
    click.echo(f"wrote {result['unit_path']}", err=True)
    for ran in result["ran"]:
        state = "ok" if ran["returncode"] == 0 else f"failed: {ran['output']}"
        click.echo(f"ran {ran['command']}: {state}", err=True)
    if not result["ran"]:
        click.echo("not started (--no-start); to start it, run:" if no_start
                   else "no systemd user manager answered; to start it, run:", err=True)
        for cmd in result["commands"]:
            click.echo(f"  {cmd}", err=True)
    else:
        click.echo(f"to keep it running while you are logged out: {result['commands'][1]}",
                   err=True)


@service_group.command("uninstall")
@json_option
@handle_errors
def service_uninstall(as_json: bool) -> None:
    """Stop and disable the user unit, and remove its file."""
    from session_memory import service

    result = service.uninstall()
    if as_json:
        emit_json(result)
        return
    click.echo(f"removed {result['unit_path']}" if result["removed"]
               else f"no unit at {result['unit_path']}", err=True)


@service_group.command("status")
@data_command
def service_status(ctx: Context, as_json: bool) -> None:
    """Whether the unit is installed, enabled and running."""
    from session_memory import service

    result = service.status(ctx.settings)
    if as_json:
        emit_json(result)
        return
    installed = "installed" if result["installed"] else "not installed"
    click.echo(f"unit {result['unit_path']} {installed}")
    if result["manager"]:
        click.echo(f"systemd: {result['active']}, {result['enabled']}")
    else:
        click.echo("systemd: no user manager answers")
    d = result["daemon"]
    click.echo(f"daemon {'running, pid ' + str(d['pid']) if d['running'] else 'not running'}")


@click.group("hook")
def hook_group() -> None:
    """Entry points for agent tools' hooks."""


class _OutOfTime(BaseException):  # not an Exception: no inner handler may swallow it
    pass


def _out_of_time(signum: int, frame: FrameType | None) -> None:
    raise _OutOfTime


def _read_stdin(timeout: float) -> str:
    """All of stdin, or what came before the deadline: a hook must not hang on an open pipe."""
    deadline = time.monotonic() + timeout
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test runner's stdin)
        return sys.stdin.read()
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


@hook_group.command("session-end")
@json_option
@pass_ctx
def hook_session_end(ctx: Context, as_json: bool) -> None:
    """An agent tool's end-of-session hook: store the session now and mark it ended.
    Reads the hook's JSON on stdin. Never fails the agent: errors are logged, exit 0."""
    from session_memory import hook, log  # here: other commands start without the library

    logger = log.get("session_memory.hook")
    result: dict[str, Any] = {"ok": False}
    previous = signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, HOOK_BUDGET_SECONDS)
    try:
        payload = json.loads(_read_stdin(HOOK_STDIN_SECONDS) or "null")
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object on stdin")
        with ctx.memory() as memory:
            result = {"ok": True, **hook.session_end(memory, payload)}
    except _OutOfTime:
        logger.error("hook ran out of time; the daemon picks the session up later",
                     budget_seconds=HOOK_BUDGET_SECONDS)
    except (Exception, KeyboardInterrupt) as e:  # the agent must never see us fail
        logger.error("hook failed; the daemon picks the session up later",
                     error=f"{type(e).__name__}: {e}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if as_json:
        emit_json(result)
    sys.exit(0)


def register(cli: click.Group) -> None:
    cli.add_command(daemon)
    cli.add_command(service_group, "service")
    cli.add_command(hook_group, "hook")
