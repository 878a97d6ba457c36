"""The store's connection helpers against real SQLite files: the WAL's checkpoints, and
how a new store is made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from session_memory.store import db
from session_memory.store.tier1 import Tier1
from session_memory.store.tier1_schema import MIGRATIONS

PAGE = 4096


def _fill(tier1: Tier1, key: str, pages: int) -> None:
    """One commit that writes about `pages` pages."""
    with tier1.transaction():
        tier1.set_meta(key, os.urandom(pages * PAGE))


def _size(path: str | Path) -> int:
    return os.stat(path).st_size


def _wait_for(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60  # a loaded machine; the test waits, it does not time
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_commit_leaves_the_checkpoint_to_a_thread_and_the_wal_starts_over(
        tmp_path: Path) -> None:
    tier1 = Tier1(tmp_path / "t.db")
    wal = f"{tier1.path}-wal"
    try:
        assert tier1._checkpointer is not None
        with tier1._checkpointer.paused():  # the thread waits: this shows what commits do alone
            _fill(tier1, "a", db.CHECKPOINT_PAGES + 100)
            after_first = _size(wal)
            _fill(tier1, "b", 100)
            # SQLite's autocheckpoint would have copied the WAL into the database in the
            # first commit, and the second would have written over its start.
            assert _size(wal) > after_first
            assert _size(tier1.path) < db.CHECKPOINT_PAGES * PAGE
        _wait_for(lambda: _size(tier1.path) > (db.CHECKPOINT_PAGES + 200) * PAGE)
        with tier1._checkpointer.paused():  # the checkpoint under way has finished
            before = _size(wal)
            _fill(tier1, "c", 10)
            assert _size(wal) == before  # every page was copied: the WAL started over
        assert tier1.get_meta("a") is not None and len(tier1.get_meta("b")) == 100 * PAGE
    finally:
        tier1.close()
    assert not os.path.exists(wal)  # the last connection closed checkpoints it away, as before
    assert not [t for t in threading.enumerate() if t.name == "checkpoint"]


def test_a_writer_checkpoints_before_it_lets_the_wal_grow_past_its_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "BEHIND_PAGES", 50)  # below CHECKPOINT_PAGES: no thread wakes
    tier1 = Tier1(tmp_path / "t.db")
    wal = f"{tier1.path}-wal"
    try:
        _fill(tier1, "a", 100)
        assert _size(tier1.path) < 100 * PAGE
        with tier1.transaction():  # the next write waits for a checkpoint first
            assert _size(tier1.path) > 100 * PAGE
        before = _size(wal)
        _fill(tier1, "b", 10)
        assert _size(wal) == before
    finally:
        tier1.close()


def test_an_explicit_checkpoint_still_empties_the_wal(tmp_path: Path) -> None:
    tier1 = Tier1(tmp_path / "t.db")
    try:
        for i in range(3):  # each wakes the thread: the explicit one must not lose to it
            _fill(tier1, str(i), db.CHECKPOINT_PAGES)
            tier1.checkpoint()
            assert _size(f"{tier1.path}-wal") == 0
    finally:
        tier1.close()


# -- a new store: made under a name of its own, then linked into place ------------------


def _store_files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_new_store_is_linked_into_place_whole_and_nothing_else_is_left(
        tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "data" / "s.db", MIGRATIONS)
    try:
        assert db.one(conn, "PRAGMA user_version")[0] == len(MIGRATIONS)
        assert db.one(conn, "PRAGMA auto_vacuum")[0] == 2  # incremental
        assert db.one(conn, "PRAGMA journal_mode")[0] == "wal"
        assert db.one(conn, "PRAGMA integrity_check")[0] == "ok"
    finally:
        conn.close()
    assert _store_files(tmp_path / "data") == ["s.db"]
    assert os.stat(tmp_path / "data" / "s.db").st_mode & 0o777 == 0o600


def test_a_store_another_process_linked_first_is_the_one_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data" / "s.db"
    link = os.link

    def theirs_first(src: str | Path, dst: str | Path) -> None:
        monkeypatch.setattr(os, "link", link)
        other = db.connect(path, MIGRATIONS)  # made (and written to) meanwhile
        with db.transaction(other):
            other.execute("INSERT INTO meta VALUES ('theirs', 1)")
        other.close()
        link(src, dst)

    monkeypatch.setattr(os, "link", theirs_first)
    conn = db.connect(path, MIGRATIONS)
    try:
        assert db.one(conn, "SELECT value FROM meta WHERE key = 'theirs'")[0] == 1
    finally:
        conn.close()
    assert _store_files(path.parent) == ["s.db"]


def test_a_store_whose_making_fails_leaves_nothing_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: apsw.Connection, migrations: object) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise apsw.FullError("database or disk is full")

    monkeypatch.setattr(db, "migrate", broken)
    with pytest.raises(apsw.FullError):
        db.connect(tmp_path / "data" / "s.db", MIGRATIONS)
    assert _store_files(tmp_path / "data") == []


def test_copies_of_processes_killed_while_making_a_store_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    folder = tmp_path / "data"
    folder.mkdir()
    for name in (f".s.db.{dead}.0a0b0c0d.new", f".s.db.{dead}.0a0b0c0d.new-wal",
                 f".s.db.{os.getpid()}.0e0f0a0b.new"):  # ours: still being made
        (folder / name).write_bytes(b"x")
    db.connect(folder / "s.db", MIGRATIONS).close()
    assert _store_files(folder) == [f".s.db.{os.getpid()}.0e0f0a0b.new", "s.db"]


@pytest.mark.parametrize("point", ["before-link:new-store", "after-link:new-store"])
def test_a_kill_while_a_store_is_made_leaves_none_or_a_whole_one(tmp_path: Path,
                                                                 point: str) -> None:
    """SIGKILL before the copy is linked: no store, and the next process makes one; after:
    the linked store is whole and is the one used. Either way its copy is removed."""
    path = tmp_path / "data" / "s.db"
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from session_memory.store import db; "
         "from session_memory.store.tier1_schema import MIGRATIONS; "
         "db.connect(Path(sys.argv[1]), MIGRATIONS)", str(path)],
        env={**os.environ, "SESSION_MEMORY_CRASH_AT": point}, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = _store_files(path.parent)
    assert ("s.db" in left) == (point == "after-link:new-store")
    assert any(name.endswith(".new") for name in left)  # the killed process's copy
    conn = db.connect(path, MIGRATIONS)
    try:
        assert db.one(conn, "PRAGMA integrity_check")[0] == "ok"
        assert db.one(conn, "PRAGMA user_version")[0] == len(MIGRATIONS)
        assert db.one(conn, "PRAGMA journal_mode")[0] == "wal"
        with db.transaction(conn):
            conn.execute("INSERT INTO meta VALUES ('after', 1)")
    finally:
        conn.close()
    assert _store_files(path.parent) == ["s.db"]


def test_a_store_another_process_migrates_meanwhile_is_migrated_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes open an older store at once: the second, which read the old version
    before the first migrated, runs no migration again (Tier 2's ALTER TABLE failed with
    a duplicate column, and its version went back)."""
    from session_memory.store import tier2

    path = tmp_path / "tier2.db"
    old = apsw.Connection(str(path))
    db.migrate(old, tier2.MIGRATIONS[:-3])
    old.close()
    late, first = apsw.Connection(str(path)), apsw.Connection(str(path))
    read_one = db.one
    overtaken = []

    def one_then_overtaken(conn: apsw.Connection, sql: str, args: object = ()) -> tuple:
        row = read_one(conn, sql, args)
        if conn is late and not overtaken:  # `late` has read the version: `first` migrates
            overtaken.append(row)
            monkeypatch.setattr(db, "one", read_one)
            db.migrate(first, tier2.MIGRATIONS)
            monkeypatch.setattr(db, "one", one_then_overtaken)
        return row

    monkeypatch.setattr(db, "one", one_then_overtaken)
    db.migrate(late, tier2.MIGRATIONS)

    assert overtaken == [(len(tier2.MIGRATIONS) - 3,)]
    for conn in (late, first):
        assert read_one(conn, "PRAGMA user_version") == (len(tier2.MIGRATIONS),)
        conn.close()
