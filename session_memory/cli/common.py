"""What every command shares: loading settings, the --json option, errors to exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import apsw
import click

from session_memory import config, exitcodes
from session_memory.errors import FULL_MESSAGE, SessionMemoryError
from session_memory.humanize import shown

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from session_memory.memory import Memory

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def console(*, err: bool = False) -> Console:
    """rich's console for stdout (or stderr), made on first use: rich costs a command 30 ms
    of start-up, and only tables, progress bars and error messages need it."""
    from rich.console import Console

    return Console(stderr=err, soft_wrap=True)


FLEXIBLE_MIN_WIDTH = 12
"""A table's flexible column (see print_table) gets at least this many characters."""


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str | Text]], *,
                footers: Sequence[str] | None = None, dropped_first: Sequence[str] = (),
                flexible: str | None = None) -> None:
    """A table on stdout, each column as wide as its widest cell: a number or an id is
    never cut short, a header may wrap at its spaces. The `flexible` column takes what
    the others leave of the line, its cells cut with an ellipsis. While the
    line is too narrow, the columns `dropped_first` names (those it has) are left out in
    turn."""
    from rich.table import Table

    if footers is not None:
        footers = [*footers, *[""] * (len(headers) - len(footers))]
    keep = list(range(len(headers)))
    for name in (n for n in dropped_first if n in headers):
        if table_fits([headers[i] for i in keep], [[r[i] for i in keep] for r in rows],
                      footers=footers and [footers[i] for i in keep], flexible=flexible):
            break
        keep.remove(headers.index(name))
    headers = [headers[i] for i in keep]
    rows = [[r[i] for i in keep] for r in rows]
    footers = footers and [footers[i] for i in keep]
    widths = _widths(headers, rows, footers)
    fits = table_fits(headers, rows, footers=footers, flexible=flexible)
    table = Table(show_footer=footers is not None)
    for i, (header, width) in enumerate(zip(headers, widths, strict=True)):
        footer = footers[i] if footers else ""
        if header == flexible:
            others = _line_width(widths) - widths[i] - 3
            table.add_column(header, footer, no_wrap=True, overflow="ellipsis", max_width=max(
                FLEXIBLE_MIN_WIDTH, console().width - others - 4))
        elif fits:
            # As wide as its widest cell and no wider: its header wraps at its spaces. (A
            # least width let rich widen it to the header's one line, "cost (USD)", past
            # what the flexible column was left, and the line ran past the terminal.)
            table.add_column(header, footer, width=max(width, 1))
        else:
            # Too narrow a line for the columns never left out: the table runs past it,
            # its numbers whole, rather than cut them to fit.
            table.add_column(header, footer, min_width=width)
    for row in rows:
        # Each str as Text: an id or a path may hold brackets ("[wip] notes.jsonl"), which
        # are no rich markup (read as such, they were left out, or a traceback).
        table.add_row(*(rich_text(cell) if isinstance(cell, str) else cell for cell in row))
    console().print(table)


def table_fits(headers: Sequence[str], rows: Sequence[Sequence[str | Text]], *,
               footers: Sequence[str] | None = None, flexible: str | None = None) -> bool:
    """Whether print_table's table of these fits the line without leaving columns out."""
    widths = _widths(headers, rows, footers)
    if flexible is not None:
        widths[headers.index(flexible)] = FLEXIBLE_MIN_WIDTH
    return _line_width(widths) + 1 <= console().width


def _widths(headers: Sequence[str], rows: Sequence[Sequence[str | Text]],
            footers: Sequence[str] | None) -> list[int]:
    from rich.cells import cell_len

    return [max([*(cell_len(word) for word in header.split()), *(
        cell_len(str(r[i])) for r in rows), cell_len(footers[i]) if footers else 0])
            for i, header in enumerate(headers)]


def _line_width(widths: Sequence[int]) -> int:
    """The width of columns this wide, with their padding and rules (not the last rule)."""
    return sum(w + 3 for w in widths)


def rich_text(text: str, style: str = "") -> Text:
    """Text in a rich style, for a table's cell (rich loads here, as for `console`); its
    control characters shown, not sent (see `shown`)."""
    from rich.text import Text

    return Text(shown(text), style=style)


def echo(text: str, *, err: bool = False) -> None:
    """click.echo of a line that may hold what a session holds (see `shown`)."""
    click.echo(shown(text), err=err)


class Context:
    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._settings: config.Settings | None = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load(self.config_path)
        return self._settings

    def memory(self) -> Memory:
        # Imported here: a command that needs no store (mcp, config, service) starts
        # without loading the whole library.
        from session_memory.memory import Memory

        return Memory(self.settings)


pass_ctx = click.make_pass_decorator(Context)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print exactly one JSON document on stdout.")(f)


def data_command(f: F) -> F:
    """What every command that prints data shares: --json, the context, error handling."""
    return json_option(pass_ctx(handle_errors(f)))  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def emit_error(message: str, code: int) -> None:
    """The error document --json prints on stdout, so a caller that reads JSON always gets one."""
    emit_json({"error": message, "exit_code": code})


def fail(message: str, code: int = exitcodes.ERROR, *, as_json: bool = False,
         document: dict[str, Any] | None = None) -> NoReturn:
    """The message on stderr and exit `code`; with --json, also the error document: the
    command's own `document` (check's, a sweep's report) with the error in it, where the
    command has one, so that stdout still holds exactly one document."""
    if as_json:
        emit_json({**(document or {}), "error": message, "exit_code": code})
    from rich.markup import escape

    # The message names what it was given (an id, a path): its brackets are no markup.
    console(err=True).print(f"[red]error:[/red] {escape(shown(message))}", highlight=False,
                            markup=True)
    sys.exit(code)


def handle_errors(f: F) -> F:
    """Known failures become one message on stderr and their exit code."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "as_json" in kwargs and not kwargs["as_json"]:
            # --json given to the group (`reports --json show RID`) is the subcommand's too.
            parent = getattr(click.get_current_context(silent=True), "parent", None)
            kwargs["as_json"] = bool(parent is not None and parent.params.get("as_json"))
        as_json = bool(kwargs.get("as_json"))
        try:
            return f(*args, **kwargs)
        except SessionMemoryError as e:
            fail(str(e), e.exit_code, as_json=as_json)
        except apsw.BusyError:
            fail("the store is busy (another process holds it); try again", exitcodes.BUSY,
                 as_json=as_json)
        except apsw.FullError:  # a write outside the transaction helper (a checkpoint…)
            fail(FULL_MESSAGE, as_json=as_json)
        except apsw.IOError as e:  # e.g. no room to create a store's shared-memory file
            fail(f"the store could not be read or written ({e}); if the disk is full, "
                 "free some space and try again", as_json=as_json)
        except BrokenPipeError:
            raise  # stdout closed early (`| head`): nothing to tell it
        except OSError as e:  # a folder or file the system refused: no traceback for that
            where = f"{e.filename}: " if e.filename is not None else ""
            fail(f"{where}{e.strerror or e}", as_json=as_json)
        except KeyboardInterrupt:
            if as_json:
                emit_error("interrupted", exitcodes.INTERRUPTED)
            console(err=True).print("interrupted")
            sys.exit(exitcodes.INTERRUPTED)
        return None

    return wrapper  # type: ignore[return-value]
