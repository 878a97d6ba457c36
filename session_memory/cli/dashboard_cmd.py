"""`dashboard`."""

from __future__ import annotations

from pathlib import Path

import click

from session_memory.cli.common import Context, data_command, emit_json
from session_memory.humanize import human_bytes, human_count

# The page's default name, here and not in the dashboard package: importing that loads the
# whole library, and every command would pay for it at start-up.
DEFAULT_FILE = "session-memory-dashboard.html"


@click.command("dashboard")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path, dir_okay=False),
              default=DEFAULT_FILE, show_default=True,
              help="Write the page here.")
@click.option("--open", "open_page", is_flag=True, help="Then open it in a web browser.")
@data_command
def dashboard_command(ctx: Context, output: Path, open_page: bool, as_json: bool) -> None:
    """Write one self-contained HTML page: Tier 1 over time against its caps, evictions by
    sweep and pass (data loss marked), sessions by state, the largest sessions, spend by day.

    Everything (scripts, styles, data) is inside the file: viewing it needs no network.
    It only reads the stores, so it runs while the daemon does.
    """
    from session_memory import dashboard
    from session_memory.memory import Memory

    with Memory(ctx.settings, read_only=True) as memory:
        written = dashboard.write(memory, output)
    if as_json:
        emit_json(written)
    else:
        click.echo(f"wrote {written['path']} ({human_bytes(written['bytes'])}: "
                   f"{human_count(written['sweeps'], 'sweep')}, "
                   f"{human_count(written['sessions'], 'session')})", err=True)
    if open_page:
        import webbrowser  # here: only --open needs it

        if not webbrowser.open(Path(written["path"]).as_uri()):
            click.echo(f"no web browser found to open it: open {written['path']} yourself",
                       err=True)


def register(cli: click.Group) -> None:
    cli.add_command(dashboard_command)
