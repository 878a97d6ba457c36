"""`ingest [PATH…]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from session_memory.cli.common import Context, console, data_command, emit_json
from session_memory.humanize import human_bytes, human_count


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@data_command
def ingest(ctx: Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """One pass over all sources (or the given files and folders)."""
    with ctx.memory() as memory:
        stray = memory.ingestor.outside_roots(list(paths))
        if stray:
            roots = ", ".join(f"{s.root} ({s.name})" for s in ctx.settings.enabled_sources)
            raise click.UsageError(f"{stray[0]} is under no enabled source root; they are: "
                                   f"{roots or 'none'}")
        passed_by = memory.ingestor.not_session_files(list(paths))
        if passed_by:
            path, source = passed_by[0]
            raise click.UsageError(f"{path} is no session file of {source.name} (whose root, "
                                   f"{source.root}, holds it): nothing of it would be stored")
        if sys.stderr.isatty():
            # Here: only an interactive ingest draws a bar; other commands start without it.
            from rich.progress import BarColumn, DownloadColumn, Progress

            # In KiB and MiB, as the line it ends with (rich's own speed is in kB, MB).
            with Progress("[progress.description]{task.description}", BarColumn(),
                          DownloadColumn(binary_units=True), "{task.fields[speed]}",
                          console=console(err=True), transient=True) as bar:
                task = bar.add_task("ingesting", total=None, speed="")

                def update(done: int, total: int) -> None:
                    speed = bar.tasks[0].speed
                    bar.update(task, completed=done, total=total,
                               speed="" if speed is None else f"{human_bytes(speed)}/s")

                summary = memory.ingest(list(paths) or None, progress=update)
        else:
            summary = memory.ingest(list(paths) or None)
        sealed = memory.seal(workers=os.cpu_count() or 1)
    result = summary.as_dict() | {"sessions_sealed": sealed}
    if as_json:
        emit_json(result)
    click.echo(f"ingested {human_bytes(summary.bytes_added)} from "
               f"{human_count(summary.files_changed, 'changed file')} "
               f"({summary.files_seen:,} seen, "
               f"{human_count(summary.new_versions, 'new version')}, {summary.skipped:,} skipped, "
               f"{human_count(summary.errors, 'error')}); "
               f"{human_count(len(summary.sessions), 'session')} changed, {sealed:,} sealed",
               err=True)


def register(cli: click.Group) -> None:
    cli.add_command(ingest)
