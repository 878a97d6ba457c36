"""The store's connection helpers against real SQLite files: the WAL's checkpoints."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from session_memory.store import db
from session_memory.store.tier1 import Tier1

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
