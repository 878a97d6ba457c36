"""Tier 2's settings for a pass that puts many digests in a row."""

from __future__ import annotations

import calendar
import os
import signal
import subprocess
import sys
from array import array
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from session_memory import usage
from session_memory.analyze.digest import DigestBuilder
from session_memory.store import db, tier2
from session_memory.store.tier2 import Tier2
from tests.conftest import in_time_zone


def pragma(store: Tier2, name: str) -> int:
    return int(db.one(store.conn, f"PRAGMA {name}")[0])


def wal_frames(store: Tier2) -> int:
    """Frames in the WAL since it last started over (a passive checkpoint reports them)."""
    busy, frames, _ = db.one(store.conn, "PRAGMA wal_checkpoint(PASSIVE)")
    assert busy == 0
    return int(frames)


def put_batches(store: Tier2) -> None:
    """Ten commits of 150 digests, each a few hundred pages: a WAL past 2,000 pages."""
    blob = os.urandom(3000).hex()  # past a page each, and not compressible
    for batch in range(10):
        store.put_digests([(f"s{batch}-{i}", "src", {"title": blob, "analyzer_version": 1})
                           for i in range(150)], 1.0)


def test_bulk_writes_checkpoint_less_often_and_set_back_after(tmp_path: Path) -> None:
    store = Tier2(tmp_path / "tier2.db")
    try:
        names = ("cache_size", "wal_autocheckpoint", "journal_size_limit")
        before = tuple(pragma(store, name) for name in names)
        assert before[1] == db.CHECKPOINT_PAGES  # SQLite's default, as Tier 2 opens
        with store.bulk_writes():
            assert pragma(store, "wal_autocheckpoint") == tier2.BULK_CHECKPOINT_PAGES
            assert pragma(store, "cache_size") == -tier2.BULK_CACHE_KIB
            assert pragma(store, "journal_size_limit") == -1
        assert tuple(pragma(store, name) for name in names) == before
    finally:
        store.close()


def test_a_bulk_pass_checkpoints_its_batches_together(tmp_path: Path) -> None:
    store = Tier2(tmp_path / "tier2.db")
    try:
        with store.bulk_writes():
            put_batches(store)
            # Every batch's pages are still in the WAL: none was checkpointed at 1000.
            assert wal_frames(store) > 2 * db.CHECKPOINT_PAGES
        assert store.get_digest("s9-149") is not None
    finally:
        store.close()


def test_digests_without_usage_are_the_ones_put_without_spend(tmp_path: Path) -> None:
    store = Tier2(tmp_path / "tier2.db")
    try:
        # A new store has no digest from before usage was kept: no flag, so no look.
        assert store.conn.execute("SELECT 1 FROM meta WHERE key = 'usage_pending'"
                                  ).fetchone() is None
        assert store.digests_without_usage() == []
        with_spend = {"title": "new", "analyzer_version": 3, "spend": [], "spend_keyed": None}
        store.put_digests([(f"new{i}", "src", dict(with_spend)) for i in range(5)], 1.0)
        store.put_digests([("old-a", "codex", {"title": "a", "analyzer_version": 1}),
                           ("old-b", "aider", {"title": "b", "analyzer_version": 2})], 1.0)
        store.put_digests([("new9", "src", dict(with_spend))], 1.0)
        found = store.digests_without_usage()
        assert sorted((source, digest["title"]) for _, source, digest in found) == [
            ("aider", "b"), ("codex", "a")]
        rowids = {sid: rowid for sid, rowid in store.conn.execute(
            "SELECT session_id, rowid FROM digests")}
        assert sorted(rowid for rowid, _, _ in found) == sorted([rowids["old-a"],
                                                                 rowids["old-b"]])
        store.put_whole_session_usage([(rowid, []) for rowid, _, _ in found])
        assert store.digests_without_usage() == []
        # The flag is gone too: a digest without usage now is not looked for.
        assert store.conn.execute("SELECT 1 FROM meta WHERE key = 'usage_pending'"
                                  ).fetchone() is None
    finally:
        store.close()


def test_the_wal_a_bulk_pass_grew_is_cut_back_once_checkpointed(tmp_path: Path) -> None:
    """The WAL a bulk pass let grow is not kept at its largest (SQLite reuses the file
    without shrinking it): it counts in usage_bytes, against distilled_cap, for as long as
    the daemon keeps the store open."""
    store = Tier2(tmp_path / "tier2.db")
    wal = tmp_path / "tier2.db-wal"
    try:
        with store.bulk_writes():
            put_batches(store)
        grown = wal.stat().st_size
        limit = db.CHECKPOINT_PAGES * pragma(store, "page_size")
        assert grown > 2 * limit
        for n in range(3):  # the first checkpoints it all, the next starts it over
            store.put_digests([(f"t{n}", "src", {"title": "x", "analyzer_version": 1})], 1.0)
        assert wal.stat().st_size <= limit
    finally:
        store.close()


def test_a_checkpoint_in_a_bulk_pass_lets_the_next_commit_start_the_wal_over(
        tmp_path: Path) -> None:
    store = Tier2(tmp_path / "tier2.db")
    try:
        with store.bulk_writes():
            put_batches(store)
            store.checkpoint()
            store.put_digests([("last", "src", {"title": "x", "analyzer_version": 1})], 2.0)
            # The WAL holds the last commit's few pages, not the pass's thousands.
            assert 0 < wal_frames(store) < 100
        assert store.get_digest("s9-149") is not None and store.get_digest("last") is not None
    finally:
        store.close()


def test_a_store_from_before_usage_by_the_hour_looks_for_its_digests(tmp_path: Path) -> None:
    """Its digests get their usage (Memory.store_old_usage): the migration leaves the flag
    that says to look, where a new store has none."""
    path = tmp_path / "tier2.db"
    conn = db.connect(path, tier2.MIGRATIONS[:1])
    with db.transaction(conn):
        conn.execute("INSERT INTO digests (session_id, source, analyzer_version,"
                     " analyzed_at, digest) VALUES ('old', 'codex', 2, 0, '{\"title\": \"a\"}')")
    conn.close()
    store = Tier2(path)
    try:
        assert [(source, digest) for _, source, digest in store.digests_without_usage()] == [
            ("codex", {"title": "a"})]
    finally:
        store.close()


def test_digests_of_older_versions_are_read_as_made_by_each_parsers_first(
        tmp_path: Path) -> None:
    """A store from before parsers had versions: its digests' builder versions become
    (builder, parser 1), so only those an older builder made are stale."""
    path = tmp_path / "tier2.db"
    before = 3  # the migrations before the one that gave parsers versions
    conn = db.connect(path, tier2.MIGRATIONS[:before])
    with db.transaction(conn):
        for sid, source, version in (("a", "codex", 5), ("b", "codex", 4),
                                     ("c", "aider", 5)):
            conn.execute("INSERT INTO digests (session_id, source, analyzer_version,"
                         " analyzed_at, digest) VALUES (?, ?, ?, 0, '{}')",
                         (sid, source, version))
    conn.close()
    store = Tier2(path)
    try:
        assert dict(store.conn.execute("SELECT session_id, analyzer_version FROM digests")
                    ) == {"a": 5001, "b": 4001, "c": 5001}
        assert store.stale_digest_ids({"codex": 5001, "aider": 5001}) == {"b"}
        assert store.stale_digest_ids({"codex": 5002, "aider": 5001}) == {"a", "b"}
        assert store.stale_digest_ids({"aider": 6001}) == {"c"}  # codex's: not known now
        assert store.stale_digest_ids({}) == set()
    finally:
        store.close()


def test_response_claims_move_from_an_index_to_each_sessions_hashes(tmp_path: Path) -> None:
    """A store from before: usage_responses found a session's claims by an index on session.
    Migrated, each session keeps the hashes it claimed, and a session's usage taken out
    takes out its own claims alone."""
    path = tmp_path / "tier2.db"
    conn = db.connect(path, tier2.MIGRATIONS[:4])
    claims = {1: [-2**63, -5, 7, 2**63 - 1], 2: [11]}
    with db.transaction(conn):
        for session, hashes in claims.items():
            conn.execute("INSERT INTO digests (rowid, session_id, source, analyzer_version,"
                         " analyzed_at, digest) VALUES (?, ?, 'src', 5001, 0, '{}')",
                         (session, f"s{session}"))
            conn.execute("INSERT INTO usage_sessions (session, kind) VALUES (?, 1)", (session,))
            conn.executemany("INSERT INTO usage_responses VALUES (?, ?, 0.0, 1)",
                             [(h, session) for h in hashes])
        conn.execute("INSERT INTO usage_sessions (session, kind) VALUES (3, 1)")  # none
    conn.close()
    store = Tier2(path)
    try:
        kept = {session: None if blob is None else list(tier2._blob_hashes(blob))
                for session, blob in store.conn.execute(
                    "SELECT session, response_hashes FROM usage_sessions")}
        assert {s: sorted(h) for s, h in kept.items() if h is not None} == claims
        assert kept[3] is None
        # What a pass writes reads back the same way.
        assert list(tier2._blob_hashes(tier2._hash_blob(array("q", claims[1])))) == claims[1]
        assert list(store.conn.execute("PRAGMA index_list(usage_responses)")) == []
        with store.transaction():
            store.delete_digest("s1")
        assert list(store.conn.execute("SELECT hash, session FROM usage_responses")) == [
            (11, 2)]
    finally:
        store.close()


@pytest.fixture
def india(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, "Asia/Kolkata")


HOUR_18 = calendar.timegm((2026, 3, 5, 18, 0, 0)) // 3600
"""2026-03-05 18:00Z as an hour number: 23:30 in India, its next hour on the next day."""
# (session, hour, model, input, output, responses) as usage by the hour kept them.
HOURLY = [(1, HOUR_18, "m1", 5, 70, 2), (1, HOUR_18 + 1, "m1", 1, 10, 1),
          (2, HOUR_18, "m1", 3, 30, 1), (2, HOUR_18 + 30, "m2", 4, 40, 1),
          (3, HOUR_18 - 50, "m2", 9, 90, 0)]
KINDS = {1: 1, 2: 1, 3: tier2.USAGE_WHOLE_SESSION}
CLAIMED_AT = HOUR_18 * 3600 + 40 * 60  # session 1's response at 18:40Z: input 5, output 7


def _local_day(hour: int) -> str:
    return date.fromtimestamp(hour * 3600).isoformat()


def _hourly_store(path: Path, claimed: int) -> None:
    """A Tier 2 as the migrations before usage by the quarter hour left it, with HOURLY's
    usage, its totals and sessions as that version wrote them, and one response claim."""
    conn = db.connect(path, tier2.MIGRATIONS[:6])
    with db.transaction(conn):
        for session, kind in KINDS.items():
            conn.execute("INSERT INTO digests (rowid, session_id, source, analyzer_version,"
                         " analyzed_at, project, digest) VALUES (?, ?, 'src', 5001, 0, '/p',"
                         " '{}')", (session, f"s{session}"))
            hours = sorted(h for s, h, *_ in HOURLY if s == session)
            conn.execute("INSERT INTO usage_sessions (session, kind, first_hour, last_hour,"
                         " gapless, response_hashes) VALUES (?, ?, ?, ?, ?, ?)",
                         (session, kind, hours[0], hours[-1],
                          int(all(b - a < 23 for a, b in zip(hours, hours[1:], strict=False))),
                          tier2._hash_blob(array("q", [claimed])) if session == 1 else None))
        conn.executemany("INSERT INTO usage_hourly (session, hour, model, input, output,"
                         " responses, first_at, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [(*row, row[1] * 3600.0, row[1] * 3600.0 + 3599) for row in HOURLY])
        conn.execute("INSERT INTO usage_totals (hour, model, prompt_over, input, output,"
                     " responses) SELECT hour, model, prompt_over, sum(input), sum(output),"
                     " sum(responses) FROM usage_hourly GROUP BY 1, 2, 3")
        conn.execute("INSERT INTO usage_responses VALUES (?, 1, ?, 12)", (claimed, CLAIMED_AT))
    conn.close()


def _by_day(store: Tier2, **where: Any) -> tuple[dict[tuple[Any, Any], tuple[int, ...]],
                                                  dict[Any, tuple[int, int]]]:
    offsets = usage.local_offsets(*store.usage_slot_range())
    groups, sessions = store.usage_groups("day", offsets=offsets, **where)
    return {(day, model): (i, o, n) for day, model, _, i, o, _, _, _, _, n in groups}, sessions


def _totals_in_step(store: Tier2) -> None:
    """usage_totals holds what usage_slots adds up to by the hour, row for row."""
    summed = ", ".join(f"sum({f})" for f in tier2._SUMMED)
    assert set(store.conn.execute(f"SELECT slot / 4, model, prompt_over, {summed}"
                                  " FROM usage_slots GROUP BY 1, 2, 3")) == set(
        store.conn.execute(f"SELECT hour, model, prompt_over, {', '.join(tier2._SUMMED)}"
                           " FROM usage_totals"))


def test_usage_by_the_hour_becomes_slots_on_the_same_days(tmp_path: Path, india: str) -> None:
    """A store from before: each hour's row becomes its first quarter hour, so every
    total stays on the local day it was on (an hour's spend stays where it was counted:
    at 18:00Z, the day before India's midnight), sessions too; the totals kept in step.
    A response such a session holds, claimed by a session analyzed since, moves out of
    its hour's first slot."""
    builder = DigestBuilder("src", version=1)
    builder.spend("2026-03-05T18:35:00Z", "k1", "m1", input=5, output=7)
    keyed = builder.keyed_spend()
    path = tmp_path / "tier2.db"
    _hourly_store(path, keyed.hashes[0])
    days: dict[str, set[int]] = {}
    for session, hour, *_ in HOURLY:
        days.setdefault(_local_day(hour), set()).add(session)
    sums = {key: tuple(sum(r[k] for r in HOURLY if (_local_day(r[1]), r[2]) == key)
                       for k in (3, 4, 5)) for key in {(_local_day(r[1]), r[2]) for r in HOURLY}}
    sessions = {day: (len(s), len(s & {3})) for day, s in days.items()}
    assert sums[("2026-03-05", "m1")] == (8, 100, 3)  # 18:00Z before India's midnight
    assert sums[("2026-03-06", "m1")] == (1, 10, 1)
    store = Tier2(path)
    try:
        assert _by_day(store) == (sums, sessions)  # from the totals
        assert _by_day(store, sources=["src"]) == (sums, sessions)  # session by session
        assert sorted(store.conn.execute("SELECT session, first_slot, last_slot, gapless"
                                         " FROM usage_sessions")) == [
            (1, HOUR_18 * 4, (HOUR_18 + 1) * 4, 1), (2, HOUR_18 * 4, (HOUR_18 + 30) * 4, 0),
            (3, (HOUR_18 - 50) * 4, (HOUR_18 - 50) * 4, 1)]
        _totals_in_step(store)
        store.put_digests([("s4", "src", {"analyzer_version": 1, "spend": [],
                                          "spend_keyed": keyed})], 1.0)
        _totals_in_step(store)
        moved, _ = _by_day(store)
        assert moved[("2026-03-05", "m1")] == (8 - 5, 100 - 7, 3 - 1)
        assert moved[("2026-03-06", "m1")] == (1 + 5, 10 + 7, 1 + 1)  # 18:35Z: 00:05 local
    finally:
        store.close()


def test_totals_by_slot_become_totals_by_the_hour(tmp_path: Path, india: str) -> None:
    """A store as the first move to slots left it, its totals by slot: they become
    totals by the hour, in step with usage_slots, each slot still on its own day."""
    path = tmp_path / "tier2.db"
    _hourly_store(path, 7)
    conn = db.connect(path, tier2.MIGRATIONS[:7])
    with db.transaction(conn):
        for table in ("usage_slots", "usage_totals"):  # 18:45Z: 00:15 in India
            conn.execute(f"INSERT INTO {table} ({'session, ' if table == 'usage_slots' else ''}"
                         "slot, model, prompt_over, input, output, responses) VALUES"
                         f" ({'2, ' if table == 'usage_slots' else ''}?, 'm1', 0, 2, 20, 1)",
                         (HOUR_18 * 4 + 3,))
    conn.close()
    store = Tier2(path)
    try:
        _totals_in_step(store)
        sums, _ = _by_day(store)
        assert sums[("2026-03-05", "m1")] == (8, 100, 3)
        assert sums[("2026-03-06", "m1")] == (1 + 2, 10 + 20, 1 + 1)
    finally:
        store.close()


@pytest.mark.parametrize("point", ["before-commit:migrate", "after-commit:migrate"])
def test_a_kill_while_usage_becomes_slots_leaves_it_by_the_hour_or_by_slot_whole(
        tmp_path: Path, india: str, point: str) -> None:
    """SIGKILL as the migration commits: before, the next open migrates it all; after, it
    is migrated. Either way each total is on its day, the totals in step."""
    path = tmp_path / "tier2.db"
    _hourly_store(path, 7)
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from session_memory.store.tier2 import Tier2; Tier2(Path(sys.argv[1]))", str(path)],
        env={**os.environ, "SESSION_MEMORY_CRASH_AT": point}, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    conn = db.connect_read_only(path, tier2.MIGRATIONS[:6]) if point.startswith("before") \
        else None
    if conn is not None:  # still as it was: by the hour
        assert db.one(conn, "SELECT count(*) FROM usage_hourly")[0] == len(HOURLY)
        conn.close()
    store = Tier2(path)
    try:
        assert db.one(store.conn, "PRAGMA user_version")[0] == len(tier2.MIGRATIONS)
        sums, _ = _by_day(store)
        assert sums[("2026-03-05", "m1")] == (8, 100, 3)
        assert sums[("2026-03-06", "m1")] == (1, 10, 1)
        assert sum(n for _, _, n in sums.values()) == sum(r[5] for r in HOURLY)
        _totals_in_step(store)
    finally:
        store.close()


@pytest.fixture
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, request.param)


@pytest.mark.parametrize("zone", [
    "UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns",
    "Australia/Lord_Howe",  # +10:30, +11 in summer: its clocks change by half an hour
], indirect=True)
def test_days_from_the_hourly_totals_equal_days_slot_by_slot(tmp_path: Path,
                                                             zone: str) -> None:
    """A report over every session reads usage_totals by the hour, and by slot only the
    hours a local midnight, a change of offset or the window's edge splits; a report with
    a filter reads every slot. On random spend over two years and random windows, both
    say the same."""
    import random

    rng = random.Random(zone)
    start = calendar.timegm((2025, 1, 1, 0, 0, 0)) // tier2.SLOT_SECONDS
    span = 2 * 365 * 96
    store = Tier2(tmp_path / "tier2.db")
    try:
        for batch in range(4):
            digests = []
            for i in range(100):
                first = start + rng.randrange(span)
                spend = [(None, slot, rng.choice("ab"), 0, slot * 900.0, slot * 900.0,
                          rng.randint(1, 9), rng.randint(1, 9), 0, 0, 0, 0, 1)
                         for slot in sorted({first + rng.randrange(400) for _ in range(12)})]
                digests.append((f"s{batch}-{i}", "src", {"analyzer_version": 1,
                                                        "spend": spend, "spend_keyed": None}))
            store.put_digests(digests, 1.0)
        offsets = usage.local_offsets(*store.usage_slot_range())
        windows = [(None, None)] + [
            tuple(sorted(start + rng.randrange(span) for _ in range(2))) for _ in range(6)]
        for since, until in windows:
            every = store.usage_groups("day", since_slot=since, until_slot=until,
                                       offsets=offsets)
            filtered = store.usage_groups("day", since_slot=since, until_slot=until,
                                          offsets=offsets, sources=["src"])
            assert sorted(every[0]) == sorted(filtered[0]), (since, until)
            if since is None:  # (sessions by their first and last slot: whole days)
                assert every[1] == filtered[1]
        assert sum(row[4] for row in every[0]) > 0
    finally:
        store.close()


def test_a_snippet_shows_long_words_cut_and_its_match_whole(tmp_path: Path) -> None:
    """A prompt kept whole can be one 2,000-character word (a pasted blob): FTS5's snippet,
    cut to 16 words, showed all of it. Long words are cut, around the match where one holds
    it."""
    store = Tier2(tmp_path / "tier2.db")
    blob = "x" * 2000
    prompts = [f"{blob} needle after the blob", f"see /srv/{'d' * 300}/haystack/{'e' * 300}"]
    store.put_digests([("s1", "src", {"title": "t", "prompts": prompts,
                                      "analyzer_version": 1})], 1.0)
    [hit] = store.search("needle")
    assert "[needle]" in hit["snippet"] and len(hit["snippet"]) < 400, hit["snippet"]
    [hit] = store.search("haystack")
    assert "[haystack]" in hit["snippet"] and len(hit["snippet"]) < 400, hit["snippet"]
    store.close()


def test_forget_in_reports_names_no_other_session_that_holds_the_id(tmp_path: Path) -> None:
    """An Aider run's id begins the next run's of the same start (`…#T-2`), and a plain
    JSONL source's can end another source's: forgetting one must leave the other named."""
    store = Tier2(tmp_path / "tier2.db")
    try:
        gone, next_run = "aider:repo#20250602T114749", "aider:repo#20250602T114749-2"
        other_source = "work-mytool:s.jsonl"
        store.put_report({
            "id": "r1", "started_at_epoch": 1.0, "dry_run": False,
            "budget_evicted": [gone, next_run, other_source, "mytool:s.jsonl"],
            "warnings": [f"{gone}: too big", f"{next_run}: too big",
                         f"evicted {other_source}."]})
        with store.transaction("forget"):
            store.forget_in_reports(gone)
            store.forget_in_reports("mytool:s.jsonl")
        report = store.report("r1")
        assert report is not None
        assert report["budget_evicted"] == [tier2.FORGOTTEN, next_run, other_source,
                                            tier2.FORGOTTEN]
        assert report["warnings"] == [f"{tier2.FORGOTTEN}: too big", f"{next_run}: too big",
                                      f"evicted {other_source}."]
    finally:
        store.close()
