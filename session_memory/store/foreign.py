"""Another program's live SQLite database, read in one snapshot and never written.

A format whose tool keeps sessions in a database (formats/, which knows its tables) reads
it through this: opened read-only (no write to it, no lock held past the snapshot; where
the tool is not running, SQLite makes the WAL index and an empty WAL beside it, as any
reader of a WAL database does), a regular file only (a link is not followed), one read
transaction that the caller ends when its pass is done, so the tool's checkpoints are held
back no longer."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw

BUSY_TIMEOUT_MS = 200
"""A tool's own write is short; one that holds its lock longer is waited for on the next
pass, not in this one."""


class ForeignReadError(Exception):
    """The database cannot be read now (locked, not a database, not the expected tables):
    `reason` says why; the next pass tries again. `odd`: it is no regular file (a link),
    which is skipped, as ingest skips such source files."""

    def __init__(self, path: Path, reason: str, *, odd: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.odd = path, reason, odd


class ForeignDatabase:
    """Read-only, one snapshot from the first query to close()."""

    def __init__(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except OSError as e:
            raise ForeignReadError(path, e.strerror or str(e)) from e
        if not stat.S_ISREG(st.st_mode):
            raise ForeignReadError(path, "not a regular file (a link is not followed)",
                                   odd=True)
        self.path = path
        try:
            # NOFOLLOW as well: the lstat above and the open below are two steps.
            self.conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY
                                        | apsw.SQLITE_OPEN_NOFOLLOW)
            self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            self.conn.execute("PRAGMA query_only = ON")
            self.conn.execute("BEGIN")
        except apsw.Error as e:
            self.close()
            raise ForeignReadError(path, _reason(e)) from e

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """A query's rows, in the snapshot the first query took."""
        try:
            yield from self.conn.execute(sql, params)
        except apsw.Error as e:
            raise ForeignReadError(self.path, _reason(e)) from e
        except UnicodeDecodeError as e:  # TEXT that is no UTF-8: ask for it as a BLOB
            raise ForeignReadError(self.path, "text that is not UTF-8") from e

    def columns(self, table: str) -> list[str]:
        """The columns a table has, in its order (none where there is no such table): a
        tool's schema grows from release to release."""
        return [row[1] for row in self.rows(f"PRAGMA table_info({table})")]

    def close(self) -> None:
        """Ends the snapshot and the connection."""
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(apsw.Error):
                conn.close()

    def __enter__(self) -> ForeignDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(e: apsw.Error) -> str:
    if isinstance(e, apsw.BusyError | apsw.LockedError):
        return "locked by another process"
    if isinstance(e, apsw.NotADBError | apsw.CorruptError):
        return "not a database, or damaged"
    return str(e) or type(e).__name__
