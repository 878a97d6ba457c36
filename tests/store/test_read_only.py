"""Stores opened only to read (the MCP server's view): they never write or lock."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from session_memory.errors import NotFoundError, SessionMemoryError
from session_memory.store import db
from session_memory.store.tier1 import Tier1
from session_memory.store.tier2 import Tier2


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(NotFoundError, match="no store yet"):
        Tier1(data / "tier1.db", read_only=True)
    assert list(data.iterdir()) == []


def test_an_older_store_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "tier2.db"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(SessionMemoryError, match="older version"):
        Tier2(path, read_only=True)
    assert db.one(apsw.Connection(str(path)), "PRAGMA user_version")[0] == 0


def test_a_reader_never_writes_and_never_holds_up_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "tier1.db"
    writer = Tier1(path)
    reader = Tier1(path, read_only=True)
    with pytest.raises(apsw.ReadOnlyError):
        reader.conn.execute("DELETE FROM sessions")
    with reader.snapshot():
        assert reader.count_by_state(0)["total"] == 0
        writer.conn.set_busy_timeout(0)  # a writer that would have to wait fails at once
        with writer.transaction():
            writer.ensure_session("s:1", "s", "1", 1.0, 1.0)
        assert reader.count_by_state(0)["total"] == 0  # the snapshot holds
    assert reader.count_by_state(0)["total"] == 1
    reader.close()
    writer.close()
