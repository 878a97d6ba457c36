"""Tier 2: digests, eviction reports and a full-text index. Small, kept for good."""

from __future__ import annotations

import contextlib
import json
import operator
import re
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw
import msgspec

from session_memory.store import db

if TYPE_CHECKING:
    from session_memory.analyze.digest import KeyedSpend

SLOT_SECONDS = 900
"""Usage is kept per UTC quarter hour, a slot (epoch seconds // SLOT_SECONDS): every UTC
offset in use is a whole number of quarter hours (+05:30, +05:45, -03:30), so each local
day begins where a slot does and a slot's responses are all on one local day."""
SLOTS_PER_HOUR = 3600 // SLOT_SECONDS
USAGE_FIELDS = ("input", "output", "cache_creation", "cache_creation_1h", "cache_read",
                "reasoning")
_SUMMED = (*USAGE_FIELDS, "responses")
"""The columns of usage_slots and usage_totals that add up."""
_ADD_TO_TOTALS = (
    f"INSERT INTO usage_totals (hour, model, prompt_over, {', '.join(_SUMMED)})"
    f" VALUES ({', '.join('?' * (3 + len(_SUMMED)))}) ON CONFLICT DO UPDATE SET "
    + ", ".join(f"{f} = {f} + excluded.{f}" for f in _SUMMED))
"""Adds a row of (hour, model, prompt_over, *_SUMMED) to usage_totals."""
_DROP_EMPTY_TOTAL = (
    "DELETE FROM usage_totals WHERE hour = ? AND model = ? AND prompt_over = ? AND "
    + " AND ".join(f"{f} = 0" for f in _SUMMED))
"""Drops the usage_totals row of (hour, model, prompt_over) if it holds nothing now."""

_HAS_USAGE = "SELECT " + " OR ".join(
    f"EXISTS (SELECT 1 FROM {table} WHERE session = ?1)"
    for table in ("usage_slots", "usage_sessions"))
"""Whether a session (a digest's rowid) has anything in the usage tables (one with response
claims has its usage_sessions row, written in the same transaction)."""

def _totals_table(name: str, key: str) -> str:
    """A table of all sessions' usage summed by `key` (a time bucket), model and prompt
    class, as the migrations have made usage_totals."""
    return (f"CREATE TABLE {name} ({key} INTEGER NOT NULL, model TEXT NOT NULL,"
            " prompt_over INTEGER NOT NULL,"
            f" {', '.join(f'{f} INTEGER NOT NULL DEFAULT 0' for f in _SUMMED)},"
            f" PRIMARY KEY ({key}, model, prompt_over)) WITHOUT ROWID")


MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID""",
        """CREATE TABLE digests (
            session_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            analyzer_version INTEGER NOT NULL,
            analyzed_at REAL NOT NULL,
            title TEXT,
            project TEXT,
            started_at REAL,
            ended_at REAL,
            models TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            outcome TEXT,
            digest TEXT NOT NULL)""",
        "CREATE INDEX digests_by_start ON digests (started_at)",
        """CREATE VIRTUAL TABLE digests_fts USING fts5 (
            session_id UNINDEXED, title, prompts, files, commands, errors, last_message,
            tokenize = 'porter unicode61')""",
        """CREATE TABLE reports (
            id TEXT PRIMARY KEY,
            started_at REAL NOT NULL,
            dry_run INTEGER NOT NULL,
            report TEXT NOT NULL)""",
        "CREATE INDEX reports_by_time ON reports (started_at)",
    ],
    [
        # Tokens by the hour they were spent: a session's (digest rowid) per UTC hour
        # (epoch seconds // 3600), model and prompt class (prices.PROMPT_TIERS).
        # first_at/last_at: its first and last response in that hour (for 5-hour blocks).
        """CREATE TABLE usage_hourly (
            session INTEGER NOT NULL,
            hour INTEGER NOT NULL,
            model TEXT NOT NULL,
            prompt_over INTEGER NOT NULL DEFAULT 0,
            input INTEGER NOT NULL DEFAULT 0,
            output INTEGER NOT NULL DEFAULT 0,
            cache_creation INTEGER NOT NULL DEFAULT 0,
            cache_creation_1h INTEGER NOT NULL DEFAULT 0,
            cache_read INTEGER NOT NULL DEFAULT 0,
            reasoning INTEGER NOT NULL DEFAULT 0,
            responses INTEGER NOT NULL DEFAULT 0,
            first_at REAL,
            last_at REAL,
            PRIMARY KEY (session, hour, model, prompt_over)) WITHOUT ROWID""",
        "CREATE INDEX usage_by_hour ON usage_hourly (hour)",
        # Which session counts a response that several sessions' files hold (by a 64-bit
        # hash of its key), with the time and token total of the copy it counts.
        """CREATE TABLE usage_responses (
            hash INTEGER PRIMARY KEY,
            session INTEGER NOT NULL,
            at REAL NOT NULL,
            tokens INTEGER NOT NULL)""",
        "CREATE INDEX usage_responses_by_session ON usage_responses (session)",
        # Sessions whose usage is stored: kind 1 by the hour of spend; kind 2 the whole
        # session at its start, from a digest made before usage was kept by the hour
        # (its raw bytes were gone when the analyzer changed).
        """CREATE TABLE usage_sessions (
            session INTEGER PRIMARY KEY,
            kind INTEGER NOT NULL)""",
    ],
    [
        # All sessions' usage per hour, model and prompt class, kept in step with
        # usage_hourly: a report over every session reads this, a row an hour and model.
        _totals_table("usage_totals", "hour"),
        f"""INSERT INTO usage_totals (hour, model, prompt_over, {", ".join(_SUMMED)})
            SELECT hour, model, prompt_over, {", ".join(f"sum({f})" for f in _SUMMED)}
            FROM usage_hourly GROUP BY 1, 2, 3""",
        # A session's first and last hour of spend; `gapless`: no 23 hours pass between
        # two of its hours, so it spent on every local day from its first to its last.
        "ALTER TABLE usage_sessions ADD COLUMN first_hour INTEGER",
        "ALTER TABLE usage_sessions ADD COLUMN last_hour INTEGER",
        "ALTER TABLE usage_sessions ADD COLUMN gapless INTEGER NOT NULL DEFAULT 1",
        """UPDATE usage_sessions SET
            first_hour = (SELECT min(hour) FROM usage_hourly h WHERE h.session =
                          usage_sessions.session),
            last_hour = (SELECT max(hour) FROM usage_hourly h WHERE h.session =
                         usage_sessions.session)""",
        """WITH gaps AS (SELECT session, hour - lag(hour) OVER (PARTITION BY session
                                                                 ORDER BY hour) AS gap
                         FROM (SELECT DISTINCT session, hour FROM usage_hourly))
           UPDATE usage_sessions SET gapless = 0
           WHERE session IN (SELECT session FROM gaps WHERE gap >= 23)""",
        "CREATE INDEX usage_sessions_gapped ON usage_sessions (gapless) WHERE gapless = 0",
        # Digests from before usage was kept by the hour get theirs (Memory.store_old_usage);
        # a new store has none to look for.
        "INSERT OR REPLACE INTO meta SELECT 'usage_pending', 1 WHERE EXISTS"
        " (SELECT 1 FROM digests)",
    ],
    [
        # A digest's analyzer_version was the builder's alone; now it is the builder's and
        # its parser's (analyze/digest.py's analyzer_version): the old ones were made by
        # each parser's first version.
        "UPDATE digests SET analyzer_version = analyzer_version * 1000 + 1"
        " WHERE analyzer_version < 1000",
    ],
    [
        # A session's response claims are found by the hashes it holds, kept with it (8
        # bytes each, big-endian), not by an index on usage_responses' session: keeping
        # that index up cost a third of each insert, a random one per response.
        "ALTER TABLE usage_sessions ADD COLUMN response_hashes BLOB",
        """UPDATE usage_sessions SET response_hashes = (
            SELECT unhex(group_concat(printf('%016x', hash), '')) FROM usage_responses r
            WHERE r.session = usage_sessions.session)""",
        "DROP INDEX usage_responses_by_session",
    ],
    [
        # stale_digest_ids looks at each source's older versions, never reading every
        # digest: the daemon asks after sessions end, and every five minutes.
        "CREATE INDEX digests_by_version ON digests (source, analyzer_version)",
    ],
    [
        # Usage by the UTC quarter hour (SLOT_SECONDS), not the hour: every UTC
        # offset in use is a whole number of quarter hours, so a local day begins where a
        # slot does (at +05:30 it began within an hour). An hour's row becomes its first
        # slot (hour * 4): its spend stays where it was, as exact as before. The tables are
        # copied, not updated in place: a key updated row by row could meet one not yet
        # updated.
        f"""CREATE TABLE usage_slots (
            session INTEGER NOT NULL,
            slot INTEGER NOT NULL,
            model TEXT NOT NULL,
            prompt_over INTEGER NOT NULL DEFAULT 0,
            {", ".join(f"{f} INTEGER NOT NULL DEFAULT 0" for f in _SUMMED)},
            first_at REAL,
            last_at REAL,
            PRIMARY KEY (session, slot, model, prompt_over)) WITHOUT ROWID""",
        f"""INSERT INTO usage_slots (session, slot, model, prompt_over, first_at, last_at,
                                     {", ".join(_SUMMED)})
            SELECT session, hour * 4, model, prompt_over, first_at, last_at,
                   {", ".join(_SUMMED)} FROM usage_hourly""",
        "DROP TABLE usage_hourly",
        "CREATE INDEX usage_by_slot ON usage_slots (slot)",
        _totals_table("usage_slot_totals", "slot"),
        f"""INSERT INTO usage_slot_totals (slot, model, prompt_over, {", ".join(_SUMMED)})
            SELECT hour * 4, model, prompt_over, {", ".join(_SUMMED)} FROM usage_totals""",
        "DROP TABLE usage_totals",
        "ALTER TABLE usage_slot_totals RENAME TO usage_totals",
        # A session's first and last slot of spend. `gapless` holds as it was: hours less
        # than 23 apart are slots less than 23 hours apart.
        "ALTER TABLE usage_sessions RENAME COLUMN first_hour TO first_slot",
        "ALTER TABLE usage_sessions RENAME COLUMN last_hour TO last_slot",
        "UPDATE usage_sessions SET first_slot = first_slot * 4, last_slot = last_slot * 4"
        " WHERE first_slot IS NOT NULL",
    ],
    [
        # usage_totals by the hour again: a report over every session sorts its rows by
        # local day, and by slot they were up to four times as many (usage --by day over
        # 100,000 sessions took 0.57 s, not 0.28). The hours a local midnight splits are
        # read from usage_slots (Tier2._usage_over_time).
        _totals_table("usage_hour_totals", "hour"),
        f"""INSERT INTO usage_hour_totals (hour, model, prompt_over, {", ".join(_SUMMED)})
            SELECT slot / 4, model, prompt_over, {", ".join(f"sum({f})" for f in _SUMMED)}
            FROM usage_totals GROUP BY 1, 2, 3""",
        "DROP TABLE usage_totals",
        "ALTER TABLE usage_hour_totals RENAME TO usage_totals",
    ],
]


def _epoch(value: Any) -> float | None:
    """Digest times are ISO 8601 strings; the indexed columns hold epoch seconds."""
    if value is None or isinstance(value, int | float):
        return value
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


BULK_CACHE_KIB = 32 * 1024
BULK_CHECKPOINT_PAGES = 16 * db.CHECKPOINT_PAGES
"""While many digests are put in a row, the WAL is copied into the database once it holds
this many pages, not SQLite's usual 1000: each batch writes most of the same pages again
(usage_responses' inserts land all over it), and each checkpoint would copy them again."""
USAGE_BY_SLOT = 1
USAGE_WHOLE_SESSION = 2
SPEND_COLUMNS = ("key_hash", "slot", "model", "prompt_over", "first_at", "last_at", *_SUMMED)
"""One entry of a digest's `spend` list (analyze/digest.py makes them): spend without a
response key, so key_hash is None; responses with a key come as `spend_keyed`."""
GAP_SLOTS = 23 * 3600 // SLOT_SECONDS
"""A session with no gap this long (23 hours) between its slots of spend spent on every
local day from its first to its last (no local day is shorter)."""
MAX_SLOT_COUNT = 2**48
"""No slot of one session comes near this: a count past it is a broken file's, clamped so
that millions of rows still add up within SQLite's integers."""


def _big_endian(hashes: array[int]) -> array[int]:
    """Response hashes (signed 64-bit) in the byte order usage_sessions.response_hashes
    keeps them, big-endian as the migration that made the column wrote them; or, given
    those, back in this machine's (a swap undoes itself)."""
    if sys.byteorder == "little":
        hashes = array("q", hashes)
        hashes.byteswap()
    return hashes


def _hash_blob(hashes: array[int]) -> bytes:
    """Response hashes as usage_sessions.response_hashes keeps them: 8 bytes each."""
    return _big_endian(hashes).tobytes()


def _blob_hashes(blob: bytes) -> array[int]:
    """The hashes _hash_blob keeps."""
    return _big_endian(array("q", blob))


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


_TIME_KEYS = {
    "day": "date(({day}) * 86400, 'unixepoch')",
    "week": "strftime('%G-W%V', ({day}) * 86400, 'unixepoch')",
    "month": "strftime('%Y-%m', ({day}) * 86400, 'unixepoch')",
}
"""SQL for the local day, ISO week and month of a local day number (days since 1970-01-01)."""
_USAGE_KEYS = {
    **_TIME_KEYS,
    "model": "u.model",
    "source": "d.source",
    "project": "coalesce(d.project, 'unknown')",
    "session": "d.session_id",
}
"""SQL for each key of `usage --by`."""


def _day_name(day: int) -> str:
    return (_EPOCH_DAY + timedelta(days=day)).isoformat()


def _week_name(day: int) -> str:
    year, week, _ = (_EPOCH_DAY + timedelta(days=day)).isocalendar()
    return f"{year}-W{week:02d}"


def _month_name(day: int) -> str:
    return (_EPOCH_DAY + timedelta(days=day)).strftime("%Y-%m")


_EPOCH_DAY = date(1970, 1, 1)
_DAY_NAMES = {"day": _day_name, "week": _week_name, "month": _month_name}


def _local_day(slot: str, offsets: Sequence[tuple[int, int]]) -> str:
    """SQL for the local day number of the slot `slot` (an SQL expression), given the
    UTC offsets in force from each slot on (integers: they are written into the SQL). A
    local day begins where a slot does, so the slot's start is on the day of its every
    response."""
    if not offsets:
        offsets = ((0, 0),)
    offset = str(int(offsets[-1][1]))
    if len(offsets) > 1:
        offset = "CASE " + " ".join(f"WHEN {slot} < {int(start)} THEN {int(prev)}" for (
            start, _), (_, prev) in zip(offsets[1:], offsets, strict=False)) + (
            f" ELSE {offset} END")
    return f"(({slot}) * {SLOT_SECONDS} + {offset}) / 86400"


def _split_hours(first: int | None, last: int | None, offsets: Sequence[tuple[int, int]],
                 since: int | None, until: int | None) -> list[int]:
    """The hours of slots [first, last] within the window [since, until) whose slots are
    not all on one local day (given `offsets` as _local_day takes them: a midnight of a
    zone whose offset is not whole hours, or a change of offset within an hour), or not
    all within the window: those usage_totals cannot place."""
    if first is None or last is None:
        return []
    lo = first if since is None else max(first, since)
    hi = last if until is None else min(last, until - 1)
    hours = {edge // SLOTS_PER_HOUR for edge in (since, until)
             if edge is not None and edge % SLOTS_PER_HOUR}
    hours.update(start // SLOTS_PER_HOUR for start, _ in offsets[1:]
                 if start % SLOTS_PER_HOUR)
    starts = [start for start, _ in offsets[1:]] + [hi + 1]
    for i, ((start, offset), end) in enumerate(zip(offsets or ((0, 0),), starts,
                                                   strict=False)):
        a, b = (lo if i == 0 else max(lo, start)), min(hi, end - 1)
        if a > b or offset % 3600 == 0:
            continue  # every midnight on an hour's start
        for day in range((a * SLOT_SECONDS + offset) // 86400 + 1,
                         (b * SLOT_SECONDS + offset) // 86400 + 1):
            midnight = day * 86400 - offset
            if midnight % 3600:
                hours.add(midnight // 3600)
    return sorted(hours)


_FTS_OPERATORS = {"OR", "AND", "NOT"}


def fts_query(text: str) -> str:
    """A user's words as a safe FTS5 query: each word a quoted phrase (so paths, dashes
    and quotes are literal), with OR/AND/NOT kept as operators between them."""
    out: list[str] = []
    for word in text.split():
        if word in _FTS_OPERATORS:
            if out and out[-1] not in _FTS_OPERATORS:
                out.append(word)
            continue
        out.append('"' + word.replace('"', '""') + '"')
    while out and out[-1] in _FTS_OPERATORS:
        out.pop()
    return " ".join(out)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _slot_window(since_column: str, until_column: str, since_slot: int | None,
                 until_slot: int | None) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their arguments) for a window of slots [since_slot, until_slot):
    `since_column` at or after the start, `until_column` before the end."""
    clauses: list[str] = []
    args: list[Any] = []
    if since_slot is not None:
        clauses.append(f"{since_column} >= ?")
        args.append(since_slot)
    if until_slot is not None:
        clauses.append(f"{until_column} < ?")
        args.append(until_slot)
    return clauses, args


FORGOTTEN = "(a forgotten session)"
"""What an eviction report says in place of a session that was forgotten since."""


def _renamed(value: Any, old: re.Pattern[str], new: str) -> Any:
    """`value` (decoded JSON) with each match of `old` in its strings replaced by `new`."""
    if isinstance(value, str):
        return old.sub(new, value)
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, old, new) for k, v in value.items()}
    return value


def _id_pattern(session_id: str) -> re.Pattern[str]:
    """`session_id` where it stands alone, not as a part of another id: the beginning of a
    history run's next id (`src:repo#20250602T114749-2`), or the end of another source's
    (`work-mytool:s.jsonl` holds `mytool:s.jsonl`)."""
    return re.compile(rf"(?<![\w-]){re.escape(session_id)}(?![\w#/-]|\.\w)")


SNIPPET_WORD_CHARS = 80
"""The longest word a snippet shows whole. FTS5 cuts a snippet to a count of tokens, and a
token can be as long as a whole prompt kept (a pasted blob, a minified line): 16 of those
made a search result, or an agent's MCP answer, tens of KB."""


def _clip_words(snippet: str) -> str:
    """`snippet` with each longer word cut to SNIPPET_WORD_CHARS, around its first match
    mark ('[') where it holds one, so that the match stays in sight."""
    def clip(m: re.Match[str]) -> str:
        word = m.group()
        start = max(0, min(word.find("[") - SNIPPET_WORD_CHARS // 2,
                           len(word) - SNIPPET_WORD_CHARS))
        end = start + SNIPPET_WORD_CHARS
        return ("…" if start else "") + word[start:end] + ("…" if end < len(word) else "")

    return re.sub(rf"\S{{{SNIPPET_WORD_CHARS + 1},}}", clip, snippet)


def _filters(project: str | None, since: float | None) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions on the digests table `d` for a project and a start time."""
    where: list[str] = []
    args: dict[str, Any] = {}
    if project:
        # The project column holds the tool's project name, else the session's cwd.
        if "/" in project:
            folder = project.rstrip("/") or "/"
            args["folder"], args["below"] = folder, _like(folder.rstrip("/")) + "/%"
            where.append("(d.project = :folder OR d.project LIKE :below ESCAPE '\\')")
        else:
            args["name"], args["tail"] = project, "%/" + _like(project)
            args["inside"] = "%/" + _like(project) + "/%"
            where.append("(d.project = :name OR d.project LIKE :tail ESCAPE '\\'"
                         " OR d.project LIKE :inside ESCAPE '\\')")
    if since is not None:
        args["since"] = since
        where.append("coalesce(d.ended_at, d.started_at) >= :since")
    return where, args


class Tier2:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """`read_only`: never creates, migrates or writes (see db.connect_read_only)."""
        self.path = path
        self.conn = (db.connect_read_only if read_only else db.connect)(path, MIGRATIONS)
        if not read_only:
            # Once checkpointed, a WAL that a bulk pass let grow (BULK_CHECKPOINT_PAGES) is cut
            # back to what a checkpoint leaves it at otherwise: SQLite reuses the file at its
            # largest, and it counts in usage_bytes for as long as the daemon keeps it open.
            (page_size,) = db.one(self.conn, "PRAGMA page_size")
            self.conn.execute(
                f"PRAGMA journal_size_limit = {db.CHECKPOINT_PAGES * int(page_size)}")
        self._totals: dict[tuple[int, str, int], list[int]] | None = None
        """While digests are put: what usage_totals gains, summed per row over the batch
        (its sessions share their slots), written once at the end of the transaction."""

    def close(self) -> None:
        self.conn.close()

    def transaction(self, name: str = "tier2") -> Any:
        return db.transaction(self.conn, name)

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Reads inside see one consistent state of the store (see Tier1.snapshot)."""
        return db.snapshot(self.conn)

    def usage_bytes(self) -> int:
        return db.file_footprint(self.path)

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """While many digests are put in a row (an analysis pass): up to BULK_CACHE_KIB of
        the file's pages cached, not SQLite's default 2 MiB, and the WAL checkpointed only
        past BULK_CHECKPOINT_PAGES. The usage tables' inserts land all over their keys;
        with the small cache each batch reads and writes the same pages again, and each
        checkpoint copies them again."""
        (default,) = db.one(self.conn, "PRAGMA cache_size")
        (checkpoint,) = db.one(self.conn, "PRAGMA wal_autocheckpoint")
        (size_limit,) = db.one(self.conn, "PRAGMA journal_size_limit")
        self.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {BULK_CHECKPOINT_PAGES}")
        self.conn.execute("PRAGMA journal_size_limit = -1")  # the pass reuses it whole
        try:
            yield
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(default)}")  # frees the pages over it
            # The next commit past it checkpoints (or closing the store does), and the one
            # after cuts the WAL back (see __init__).
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
            self.conn.execute(f"PRAGMA journal_size_limit = {int(size_limit)}")

    def checkpoint(self) -> None:
        """Copy the WAL into the database now, waiting for no one (a reader's snapshot keeps
        what it still needs). An analysis pass, which checkpoints only past
        BULK_CHECKPOINT_PAGES, does it while its workers finish their last sessions: left to
        the next commit, it would run after them, with nothing else to do meanwhile."""
        with contextlib.suppress(apsw.BusyError):  # another process's checkpoint under way
            self.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)

    # -- digests ----------------------------------------------------------------------

    def get_digest(self, session_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT digest FROM digests WHERE session_id = ?",
                                (session_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_digest(self, session_id: str, source: str, digest: dict[str, Any], now: float) -> None:
        """Store (or replace) a session's digest and its full-text row, in one transaction."""
        self.put_digests([(session_id, source, digest)], now)

    def put_digests(self, items: list[tuple[str, str, dict[str, Any]]], now: float, *,
                    known: Callable[[str], bool] | None = None) -> None:
        """Store (or replace) digests and their full-text rows, all in one transaction;
        `items` names each session once (its FTS row is written once, below). A digest
        keeps its rowid when replaced; its FTS row shares that rowid, so replacing or
        deleting one never scans the index. `known`: whether a session is still held (see
        linked), asked inside the transaction, so that a forget of a session either comes
        before it (the session is not known) or clears what it writes (forget_links).

        The FTS rows are written last, after every other statement of the transaction:
        FTS5 writes out the terms it holds whenever a statement opens a savepoint (an
        upsert does), so rows written between other statements would each become a
        segment of their own, to be merged again later; written together, they are one."""
        with self.transaction("digest"):
            self._totals = {}
            try:
                searchable = [self._put_digest(session_id, source, digest if known is None
                                               else linked(digest, known), now)
                              for session_id, source, digest in items]
                totals, self._totals = self._totals, None
                self._write_totals(totals)
            finally:
                self._totals = None
            self.conn.executemany("DELETE FROM digests_fts WHERE rowid = ?",
                                  [(row[0],) for row in searchable])
            self.conn.executemany(
                "INSERT INTO digests_fts (rowid, session_id, title, prompts, files, commands,"
                " errors, last_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", searchable)

    def _put_digest(self, session_id: str, source: str, digest: dict[str, Any],
                    now: float) -> tuple[Any, ...]:
        """Store a digest and its usage; returns its full-text row, for the caller to
        write (see put_digests)."""
        spend, keyed = digest.get("spend"), digest.get("spend_keyed")
        if spend is not None:
            digest = {k: v for k, v in digest.items() if k not in ("spend", "spend_keyed")}
        tokens = digest.get("tokens") or {}
        row = self.conn.execute(
            "INSERT INTO digests (session_id, source, analyzer_version, analyzed_at,"
            " title, project, started_at, ended_at, models, input_tokens, output_tokens,"
            " cache_creation_tokens, cache_read_tokens, reasoning_tokens, outcome, digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET source = excluded.source,"
            " analyzer_version = excluded.analyzer_version, analyzed_at = excluded.analyzed_at,"
            " title = excluded.title, project = excluded.project,"
            " started_at = excluded.started_at, ended_at = excluded.ended_at,"
            " models = excluded.models, input_tokens = excluded.input_tokens,"
            " output_tokens = excluded.output_tokens,"
            " cache_creation_tokens = excluded.cache_creation_tokens,"
            " cache_read_tokens = excluded.cache_read_tokens,"
            " reasoning_tokens = excluded.reasoning_tokens, outcome = excluded.outcome,"
            " digest = excluded.digest RETURNING rowid",
            (session_id, source, digest.get("analyzer_version", 0), now, digest.get("title"),
             digest.get("project") or digest.get("cwd"), _epoch(digest.get("started_at")),
             _epoch(digest.get("ended_at")), json.dumps(digest.get("models") or []),
             tokens.get("input", 0), tokens.get("output", 0),
             tokens.get("cache_creation", 0), tokens.get("cache_read", 0),
             tokens.get("reasoning", 0), digest.get("outcome"),
             msgspec.json.encode(digest).decode())).fetchone()
        assert row is not None  # RETURNING always yields the row written
        rowid = row[0]
        if spend is not None:
            self._put_usage(rowid, spend, USAGE_BY_SLOT, keyed)
        else:  # an older analyzer's digest: its usage comes from its totals (store_old_usage)
            self._drop_usage(rowid)
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('usage_pending', 1)")
        return (rowid, session_id, digest.get("title") or "",
                "\n".join(digest.get("prompts") or [digest.get("first_prompt") or ""]),
                "\n".join((digest.get("files_edited") or []) + (digest.get("files_read") or [])),
                "\n".join(digest.get("commands") or []),
                "\n".join(e.get("snippet", "") for e in digest.get("errors") or []),
                digest.get("last_assistant_message") or "")

    def _put_usage(self, session: int, spend: Sequence[Sequence[Any]], kind: int,
                   keyed: KeyedSpend | None = None) -> None:
        """Replace a session's usage by slot with `spend` (keyless, see SPEND_COLUMNS) and
        `keyed`'s responses. A response another session's file holds too is counted once,
        as ccusage counts it: the copy with more tokens, else the earlier one (a tie is
        moved from the other session's slot to this one's; a copy with other counts stays
        where it was first counted)."""
        conn = self.conn
        self._drop_usage(session)
        rows = {} if keyed is None else self._keyed_rows(session, keyed)
        for _, slot, model, prompt_over, first_at, last_at, *counts in spend:
            row = rows.get((slot, model, prompt_over))
            if row is None:
                rows[(slot, model, prompt_over)] = [first_at, last_at, *counts]
                continue
            row[0] = _min(row[0], first_at)
            row[1] = _max(row[1], last_at)
            for i, n in enumerate(counts, start=2):
                row[i] += n
        by_slot = [(session, slot, model, prompt_over, *(
                   row if max(row[2:]) <= MAX_SLOT_COUNT else
                   (*row[:2], *(min(n, MAX_SLOT_COUNT) for n in row[2:]))))
                   for (slot, model, prompt_over), row in rows.items()]
        conn.executemany(
            f"INSERT INTO usage_slots (session, slot, model, prompt_over, first_at, last_at,"
            f" {', '.join(_SUMMED)}) VALUES ({', '.join('?' * (6 + len(_SUMMED)))})", by_slot)
        self._add_totals([(r[1] // SLOTS_PER_HOUR, r[2], r[3], *r[6:]) for r in by_slot], 1)
        slots = sorted({r[1] for r in by_slot})
        gapless = all(b - a < GAP_SLOTS for a, b in zip(slots, slots[1:], strict=False))
        conn.execute("INSERT OR REPLACE INTO usage_sessions (session, kind, first_slot,"
                     " last_slot, gapless, response_hashes) VALUES (?, ?, ?, ?, ?, ?)",
                     (session, kind, slots[0] if slots else None,
                      slots[-1] if slots else None, int(gapless),
                      _hash_blob(keyed.hashes) if keyed is not None and keyed.hashes
                      else None))

    def _add_totals(self, rows: Sequence[Sequence[Any]], sign: int) -> None:
        """Add (sign 1) or take off (-1) rows of (hour, model, prompt_over, *_SUMMED) in
        usage_totals; a row left with nothing is dropped. While digests are put, only
        summed (see `_totals`)."""
        if not rows:
            return
        pending = self._totals
        if pending is not None:
            for r in rows:
                key = (r[0], r[1], r[2])
                row = pending.get(key)
                if row is None:
                    pending[key] = [sign * n for n in r[3:]] if sign < 0 else list(r[3:])
                elif sign > 0:
                    row[:] = map(operator.add, row, r[3:])
                else:
                    row[:] = map(operator.sub, row, r[3:])
            return
        self.conn.executemany(_ADD_TO_TOTALS, [(*r[:3], *(sign * n for n in r[3:])) for r in rows])
        if sign < 0:
            self.conn.executemany(_DROP_EMPTY_TOTAL, [tuple(r[:3]) for r in rows])

    def _write_totals(self, totals: dict[tuple[int, str, int], list[int]]) -> None:
        """Add what a batch summed (see `_totals`) to usage_totals; a row left with nothing
        is dropped."""
        self.conn.executemany(_ADD_TO_TOTALS,
                              [(*key, *row) for key, row in totals.items() if any(row)])
        self.conn.executemany(_DROP_EMPTY_TOTAL,
                              [key for key, row in totals.items() if min(row) < 0])

    def _drop_usage(self, session: int) -> None:
        """Take a session's usage out of every usage table (its response claims too)."""
        conn = self.conn
        if not db.one(conn, _HAS_USAGE, (session,))[0]:
            return  # a session analyzed for the first time: one look, not four statements
        self._add_totals(list(conn.execute(
            f"SELECT slot / {SLOTS_PER_HOUR}, model, prompt_over, {', '.join(_SUMMED)}"
            " FROM usage_slots"
            " WHERE session = ?", (session,))), -1)
        blob = conn.execute("SELECT response_hashes FROM usage_sessions WHERE session = ?",
                            (session,)).fetchone()
        if blob is not None and blob[0]:
            # Of the responses it holds, those it still claims (another session may have
            # taken some since).
            conn.executemany("DELETE FROM usage_responses WHERE hash = ? AND session = ?",
                             zip(_blob_hashes(blob[0]), repeat(session)))
        for table in ("usage_slots", "usage_sessions"):
            conn.execute(f"DELETE FROM {table} WHERE session = ?", (session,))

    def _keyed_rows(self, session: int, keyed: KeyedSpend
                    ) -> dict[tuple[int, str, int], list[Any]]:
        """`keyed`'s sums by (slot, model, prompt class), less the responses another
        session counts, each claimed for `session`."""
        before = self.conn.total_changes()
        self.conn.executemany(
            "INSERT INTO usage_responses (hash, session, at, tokens) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hash) DO NOTHING",
            zip(keyed.hashes, repeat(session), keyed.at, keyed.tokens))
        sums = [list(row) for row in keyed.sums]
        if self.conn.total_changes() - before != len(keyed.hashes):
            # Some hash was held already: by another session (or twice in this one).
            owned = {h for (h,) in self.conn.executemany(
                "SELECT hash FROM usage_responses WHERE hash = ? AND session = ?",
                zip(keyed.hashes, repeat(session)))}
            lost: set[int] = set()
            for i, key_hash in enumerate(keyed.hashes):
                if key_hash in owned:
                    owned.discard(key_hash)  # its first response here is the one inserted
                    continue
                _, model, prompt_over = keyed.cells[keyed.cell[i]]
                if not self._claim(session, key_hash, model, prompt_over, keyed.at[i],
                                   keyed.counts[6 * i: 6 * i + 6]):
                    lost.add(i)
            if lost:
                self._take_out(keyed, sums, lost)
        return {cell: row for cell, row in zip(keyed.cells, sums, strict=True) if row[8]}

    @staticmethod
    def _take_out(keyed: KeyedSpend, sums: list[list[Any]], lost: set[int]) -> None:
        """Take the `lost` responses out of `sums`; the first and last times of the cells
        they were in are those of the responses left."""
        changed = {keyed.cell[i] for i in lost}
        for i in lost:
            row = sums[keyed.cell[i]]
            for j, n in enumerate(keyed.counts[6 * i: 6 * i + 6], start=2):
                row[j] -= n
            row[8] -= 1
        for c in changed:
            sums[c][0] = sums[c][1] = None
        for i, c in enumerate(keyed.cell):
            if c in changed and i not in lost:
                row, at = sums[c], keyed.at[i]
                row[0], row[1] = _min(row[0], at), _max(row[1], at)

    def _claim(self, session: int, key_hash: int, model: str, prompt_over: int, at: float,
               counts: Sequence[int]) -> bool:
        """Whether `session` counts this response (and now owns it), one whose hash
        usage_responses holds already (`_keyed_rows` inserted the others); `counts` are its 6."""
        tokens = counts[0] + counts[1] + counts[2] + counts[4]
        held = self.conn.execute("SELECT session, at, tokens FROM usage_responses"
                                 " WHERE hash = ?", (key_hash,)).fetchone()
        assert held is not None  # _keyed_rows' insert found it
        other, other_at, other_tokens = held
        if other_tokens != tokens or other_at < at or (
                other_at == at and not self._started_before(session, other)):
            return False
        # The same counts, written earlier here: move the response to this session's slot.
        # The other counted it in the slot of its time, or, if its usage was kept by the
        # hour and migrated (its raw bytes gone), in the first slot of its hour.
        fields = ", ".join(f"{f} = {f} - ?" for f in USAGE_FIELDS)
        exact = int(other_at // SLOT_SECONDS)
        for other_slot in dict.fromkeys((exact, exact - exact % SLOTS_PER_HOUR)):
            if self.conn.execute(
                    f"UPDATE usage_slots SET {fields}, responses = responses - 1"
                    " WHERE session = ? AND slot = ? AND model = ? AND prompt_over = ?"
                    " RETURNING 1", (*counts, other, other_slot, model, prompt_over)
                    ).fetchone() is not None:
                self._add_totals([(other_slot // SLOTS_PER_HOUR, model, prompt_over, *counts,
                                   1)], -1)
                break
        self.conn.execute("DELETE FROM usage_slots WHERE session = ? AND responses <= 0 AND"
                          " input = 0 AND output = 0 AND cache_creation = 0 AND cache_read = 0",
                          (other,))
        self.conn.execute("UPDATE usage_responses SET session = ?, at = ? WHERE hash = ?",
                          (session, at, key_hash))
        return True

    def _started_before(self, session: int, other: int) -> bool:
        """Whether `session` began before `other` (then its copy of a response written at
        the same moment is the one counted, as ccusage reads the older file first)."""
        mine, theirs = (self.conn.execute(
            "SELECT coalesce(started_at, 0), session_id FROM digests WHERE rowid = ?",
            (rowid,)).fetchone() or (0.0, "") for rowid in (session, other))
        return bool(tuple(mine) < tuple(theirs))

    def digests_without_usage(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Digests with no usage stored yet (made before usage was kept by the time of spend):
        (rowid, source, digest). A flag says whether to look: the look reads every digest
        id, and after the first time there are seldom any."""
        if not self.conn.execute("SELECT 1 FROM meta WHERE key = 'usage_pending'").fetchone():
            return []
        found = [(rowid, source, json.loads(text)) for rowid, source, text in self.conn.execute(
            "SELECT rowid, source, digest FROM digests WHERE rowid NOT IN"
            " (SELECT session FROM usage_sessions)")]
        if not found:
            with self.transaction("usage-pending"):
                self.conn.execute("DELETE FROM meta WHERE key = 'usage_pending'")
        return found

    def put_whole_session_usage(self, items: Sequence[tuple[int, Sequence[Sequence[Any]]]]
                                ) -> None:
        """Usage of old digests, each whole session in one slot, in one transaction."""
        with self.transaction("usage-backfill"):
            for rowid, spend in items:
                self._put_usage(rowid, spend, USAGE_WHOLE_SESSION)

    def stale_digest_ids(self, versions: Mapping[str, int]) -> set[str]:
        """Sessions whose digest an older analyzer made: `versions` has each source's
        analyzer_version now (one not in it is never stale)."""
        if not versions:
            return set()
        current = ", ".join(["(?, ?)"] * len(versions))
        return {r[0] for r in self.conn.execute(
            f"WITH current (source, version) AS (VALUES {current}) SELECT d.session_id"
            " FROM digests d JOIN current c ON d.source = c.source"
            " WHERE d.analyzer_version < c.version", list(chain(*versions.items())))}

    def rename_sessions(self, renames: dict[str, str]) -> None:
        """Give digests new session ids (their rowid, which the usage tables and the
        full-text row key on, stays); an old id already renamed is skipped."""
        with self.transaction("rename"):
            for old, new in renames.items():
                if self.conn.execute("UPDATE digests SET session_id = ? WHERE session_id = ? "
                                     "RETURNING rowid", (new, old)).fetchone() is not None:
                    self.conn.execute("UPDATE digests_fts SET session_id = ? "
                                      "WHERE rowid = (SELECT rowid FROM digests "
                                      "WHERE session_id = ?)", (new, new))

    def digest_start(self, session_id: str) -> str | None:
        """The digest's `started_at` as it was written (ISO 8601), if any."""
        digest = self.get_digest(session_id)
        value = (digest or {}).get("started_at")
        return value if isinstance(value, str) else None

    def has_digest(self, session_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM digests WHERE session_id = ?",
                                 (session_id,)).fetchone() is not None

    def digest_times(self, session_id: str) -> tuple[str, float, float | None, float | None] | None:
        """(source, analyzed_at, started_at, ended_at) of a digest, or None."""
        row = self.conn.execute("SELECT source, analyzed_at, started_at, ended_at FROM digests "
                                "WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else (str(row[0]), float(row[1]), row[2], row[3])

    def digest_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT session_id FROM digests")}

    def report_ids_starting(self, prefix: str) -> list[str]:
        """Up to two report ids that begin with `prefix`."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT id FROM reports WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2", (prefix,))]

    def merge_search_index(self) -> None:
        """FTS5 keeps deleted terms in its segments until they merge: merge them now."""
        self.conn.execute("INSERT INTO digests_fts (digests_fts) VALUES ('optimize')")

    def delete_digest(self, session_id: str) -> None:
        """Caller owns the transaction."""
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute("DELETE FROM digests_fts WHERE rowid IN (SELECT rowid FROM digests"
                          " WHERE session_id = ?)", (session_id,))
        row = self.conn.execute("SELECT rowid FROM digests WHERE session_id = ?",
                                (session_id,)).fetchone()
        if row is not None:
            self._drop_usage(row[0])
        self.conn.execute("DELETE FROM digests WHERE session_id = ?", (session_id,))

    def forget_links(self, session_id: str) -> None:
        """Digests that name the session (as their parent, or as a subagent's session of its
        own) name it no more. Caller owns the transaction (under secure_delete)."""
        needle = msgspec.json.encode(session_id).decode()  # as _put_digest wrote it
        # A child is of its parent's source (its id names it): only those digests are read,
        # by the index on (source, analyzer_version), not every digest.
        source = session_id.split(":", 1)[0]
        self.conn.execute(
            "UPDATE digests SET digest = json_set(digest, '$.parent_session', NULL) "
            "WHERE source = ? AND instr(digest, ?) "
            "AND json_extract(digest, '$.parent_session') = ?",
            (source, needle, session_id))
        self.conn.execute(
            # json(): a subquery's value loses its JSON subtype, and would be set as text.
            "UPDATE digests SET digest = json_set(digest, '$.subagents', json("
            " (SELECT json_group_array(json(value)) FROM json_each(digest, '$.subagents')"
            "  WHERE json_extract(value, '$.session_id') IS NOT :sid))) "
            "WHERE source = :source AND instr(digest, :needle) AND EXISTS (SELECT 1 FROM"
            " json_each(digest, '$.subagents') WHERE json_extract(value, '$.session_id') = :sid)",
            {"sid": session_id, "source": source, "needle": needle})

    def search(self, query: str, limit: int = 20, *, project: str | None = None,
               since: float | None = None) -> list[dict[str, Any]]:
        """Digests matching `query` (its words, all of them; OR between words allowed),
        best first by bm25 with the title weighted most, then prompts, each with a snippet.
        `project`, `since`: as in `session_ids`."""
        match = fts_query(query)
        if not match:
            return []
        where, args = _filters(project, since)
        # Ordered by FTS5's own `rank` (bm25 with these weights), which FTS5 sorts itself:
        # the snippet is then made only for the rows returned, not for every match (a
        # fifth of the time for a common word over 100,000 digests).
        rows = self.conn.execute(
            "SELECT f.session_id, d.source, d.title, d.project, d.started_at, d.outcome,"
            " snippet(digests_fts, -1, '[', ']', '…', 16), f.rank"
            " FROM digests_fts f JOIN digests d ON d.rowid = f.rowid"
            " WHERE digests_fts MATCH :match"
            " AND f.rank MATCH 'bm25(0.0, 10.0, 4.0, 3.0, 2.0, 2.0, 1.0)'"
            + "".join(f" AND {w}" for w in where)
            + " ORDER BY f.rank LIMIT :limit", {"match": match, "limit": int(limit), **args})
        return [{"id": sid, "source": src, "title": title, "project": project,
                 "started_at": started, "outcome": outcome, "snippet": _clip_words(snip),
                 "score": round(-score, 4)}
                for sid, src, title, project, started, outcome, snip, score in rows]

    def usage_slot_range(self) -> tuple[int | None, int | None]:
        """The first and last slot anyone spent in."""
        first, last = self.conn.execute(
            f"SELECT min(hour) * {SLOTS_PER_HOUR}, (max(hour) + 1) * {SLOTS_PER_HOUR} - 1"
            " FROM usage_totals").fetchone() or (None, None)
        return first, last

    def usage_groups(self, by: str, *, since_slot: int | None = None,
                     until_slot: int | None = None, project: str | None = None,
                     sources: Sequence[str] | None = None,
                     offsets: Sequence[tuple[int, int]] = ((0, 0),)
                     ) -> tuple[list[tuple[Any, ...]], dict[Any, tuple[int, int]]]:
        """Token sums per key of `by`, model and prompt class, over slots in
        [since_slot, until_slot): rows of (key, model, prompt_over, *USAGE_FIELDS,
        responses); and per key, how many sessions spent in it and how many of those only
        as a whole (old digests). Days, weeks and months are local: `offsets` are
        (from_slot, UTC offset in seconds) in slot order, the first one also before."""
        if by not in _USAGE_KEYS:
            raise ValueError(f"usage by {by!r}: expected one of {', '.join(_USAGE_KEYS)}")
        if by in _TIME_KEYS and not project and not sources:
            return self._usage_over_time(by, since_slot, until_slot, offsets)
        key = _TIME_KEYS[by].format(day=_local_day("u.slot", offsets)) if by in _TIME_KEYS \
            else _USAGE_KEYS[by]
        where, args = self._usage_filter(since_slot, until_slot, project, sources)
        join = (" JOIN digests d ON d.rowid = u.session"
                if by in ("source", "project", "session") or project or sources else "")
        sums = ", ".join(f"sum(u.{f})" for f in _SUMMED)
        groups = list(self.conn.execute(
            f"SELECT {key}, u.model, u.prompt_over, {sums} FROM usage_slots u{join}{where}"
            " GROUP BY 1, 2, 3", args))
        sessions = {k: (n, whole) for k, n, whole in self.conn.execute(
            f"SELECT {key}, count(DISTINCT u.session), count(DISTINCT CASE WHEN s.kind = "
            f"{USAGE_WHOLE_SESSION} THEN u.session END) FROM usage_slots u{join}"
            f" JOIN usage_sessions s ON s.session = u.session{where} GROUP BY 1", args)}
        return groups, sessions

    def _usage_over_time(self, by: str, since_slot: int | None, until_slot: int | None,
                         offsets: Sequence[tuple[int, int]]
                         ) -> tuple[list[tuple[Any, ...]], dict[Any, tuple[int, int]]]:
        """usage_groups by day, week or month over every session: the sums from
        usage_totals (a row an hour and model), but for the hours a local midnight or the
        window's edge splits, read slot by slot; the sessions from each one's first and
        last slot (every local day between is one it spent in, unless it paused for a
        day or more: those few are read slot by slot)."""
        name = _DAY_NAMES[by]
        first, last = self.usage_slot_range()
        split = json.dumps(_split_hours(first, last, offsets, since_slot, until_slot))
        sums = ", ".join(f"sum(u.{f})" for f in _SUMMED)
        hour_window, hour_args = _slot_window(
            "u.hour", "u.hour", None if since_slot is None else since_slot // SLOTS_PER_HOUR,
            None if until_slot is None else -(-until_slot // SLOTS_PER_HOUR))
        slot_window, slot_args = _slot_window("u.slot", "u.slot", since_slot, until_slot)
        # Grouped by day number, named here: a few thousand names, not a date per row.
        by_day: dict[tuple[int, str, int], list[int]] = {}
        for day, model, prompt_over, *summed in chain(self.conn.execute(
                f"SELECT {_local_day(f'u.hour * {SLOTS_PER_HOUR}', offsets)}, u.model,"
                f" u.prompt_over, {sums} FROM usage_totals u WHERE "
                + " AND ".join([*hour_window, "u.hour NOT IN (SELECT value FROM json_each(?))"])
                + " GROUP BY 1, 2, 3", [*hour_args, split]), self.conn.execute(
                f"SELECT {_local_day('u.slot', offsets)}, u.model, u.prompt_over, {sums}"
                " FROM json_each(?) j JOIN usage_slots u"
                f" ON u.slot >= j.value * {SLOTS_PER_HOUR}"
                f" AND u.slot < (j.value + 1) * {SLOTS_PER_HOUR}"
                + "".join(f" AND {w}" for w in slot_window) + " GROUP BY 1, 2, 3",
                [split, *slot_args])):
            row = by_day.get((day, model, prompt_over))
            if row is None:
                by_day[(day, model, prompt_over)] = summed
            else:
                row[:] = map(operator.add, row, summed)
        names: dict[int, str] = {}
        groups = [((names.get(day) or names.setdefault(day, name(day))), model, prompt_over,
                   *row) for (day, model, prompt_over), row in by_day.items()]
        # A session is in the window when it ends at or after since and starts before until.
        window, window_args = _slot_window("s.last_slot", "s.first_slot", since_slot,
                                           until_slot)
        window.insert(0, "s.first_slot IS NOT NULL")
        lo = hi = None
        if since_slot is not None or until_slot is not None:
            bounds = self.conn.execute(
                f"SELECT {_local_day('?1', offsets)}, {_local_day('?2', offsets)}",
                (since_slot if since_slot is not None else 0,
                 until_slot - 1 if until_slot is not None else 2**40)).fetchone()
            lo, hi = bounds if bounds else (None, None)
        counts: dict[Any, list[int]] = {}
        spans = self.conn.execute(
            f"SELECT {_local_day('s.first_slot', offsets)}, "
            f"{_local_day('s.last_slot', offsets)}, s.kind = {USAGE_WHOLE_SESSION}, count(*)"
            f" FROM usage_sessions s WHERE s.gapless AND {' AND '.join(window)}"
            " GROUP BY 1, 2, 3", window_args)
        gapped = self.conn.execute(
            f"SELECT s.session, s.kind = {USAGE_WHOLE_SESSION},"
            f" group_concat(DISTINCT {_local_day('h.slot', offsets)}) FROM usage_sessions s"
            " JOIN usage_slots h ON h.session = s.session"
            f" WHERE NOT s.gapless AND {' AND '.join(window)} GROUP BY 1", window_args)
        day_lists: list[tuple[Sequence[int], Any, Any]] = [
            (range(first if lo is None else max(first, lo),
                   (last if hi is None else min(last, hi)) + 1), whole, n)
            for first, last, whole, n in spans]
        day_lists += [([int(d) for d in days.split(",") if (lo is None or int(d) >= lo)
                        and (hi is None or int(d) <= hi)], whole, 1)
                      for _, whole, days in gapped]
        for days, whole, n in day_lists:
            for k in {names.get(d) or names.setdefault(d, name(d)) for d in days}:
                count = counts.setdefault(k, [0, 0])
                count[0] += n
                count[1] += n if whole else 0
        return groups, {k: (n, whole) for k, (n, whole) in counts.items()}

    def usage_by_slot(self, *, sources: Sequence[str] | None = None,
                    since_slot: int | None = None) -> list[tuple[Any, ...]]:
        """Per slot and model, in time order: (slot, model, prompt_over, first_at, last_at,
        *USAGE_FIELDS, responses), for billing blocks."""
        where, args = self._usage_filter(since_slot, None, None, sources)
        join = " JOIN digests d ON d.rowid = u.session" if sources else ""
        sums = ", ".join(f"sum(u.{f})" for f in _SUMMED)
        return list(self.conn.execute(
            f"SELECT u.slot, u.model, u.prompt_over, min(u.first_at), max(u.last_at), {sums}"
            f" FROM usage_slots u{join}{where} GROUP BY 1, 2, 3 ORDER BY 1", args))

    def usage_by_session(self, session_ids: Sequence[str] | None = None
                         ) -> list[tuple[Any, ...]]:
        """(session_id, model, prompt_over, *USAGE_FIELDS) of the sessions named (all
        without a list)."""
        sums = ", ".join(f"sum(u.{f})" for f in USAGE_FIELDS)
        return self._of_sessions(
            f"SELECT d.session_id, u.model, u.prompt_over, {sums} FROM usage_slots u"
            " JOIN digests d ON d.rowid = u.session", session_ids, " GROUP BY 1, 2, 3")

    def labels(self, session_ids: Sequence[str] | None = None
               ) -> dict[str, tuple[str | None, str | None, float | None]]:
        """(title, project, started_at) of each session named that has a digest (all
        without a list)."""
        return {sid: (title or None, project, started) for sid, title, project, started
                in self._of_sessions("SELECT d.session_id, d.title, d.project, d.started_at "
                                     "FROM digests d", session_ids)}

    def _of_sessions(self, sql: str, session_ids: Sequence[str] | None, tail: str = ""
                     ) -> list[tuple[Any, ...]]:
        """The rows of `sql` (over `digests d`) for the sessions named, a few hundred ids
        a query, or for all without a list; `tail` follows the filter (GROUP BY ...)."""
        if session_ids is None:
            return list(self.conn.execute(sql + tail))
        out: list[tuple[Any, ...]] = []
        ids = list(session_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += self.conn.execute(
                sql + f" WHERE d.session_id IN ({', '.join('?' * len(chunk))})" + tail, chunk)
        return out

    @staticmethod
    def _usage_filter(since_slot: int | None, until_slot: int | None, project: str | None,
                      sources: Sequence[str] | None) -> tuple[str, list[Any]]:
        clauses, args = _slot_window("u.slot", "u.slot", since_slot, until_slot)
        if project:
            if any(c in project for c in "*?["):
                clauses.append("d.project GLOB ?")
                args.append(project)
            else:
                clauses.append("d.project LIKE ? ESCAPE '\\'")
                args.append("%" + _like(project) + "%")
        if sources is not None:
            clauses.append(f"d.source IN ({', '.join('?' * len(sources)) or 'NULL'})")
            args += list(sources)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
    def session_ids(self, *, project: str | None = None,
                    since: float | None = None) -> set[str]:
        """Sessions whose digest is in `project` (a folder: the session ran in it or below
        it; a bare name: one folder of the session's path is called that) and that were
        still going at or after `since` (epoch seconds)."""
        where, args = _filters(project, since)
        return {r[0] for r in self.conn.execute(
            "SELECT session_id FROM digests d" + (" WHERE " + " AND ".join(where)
                                                  if where else ""), args)}

    def usage(self, by: str = "day", since: float | None = None) -> list[dict[str, Any]]:
        """Token totals and session counts per key of `by`, from digests alone."""
        fields = ("input", "output", "cache_creation", "cache_read", "reasoning")
        where, args = ("WHERE d.started_at >= ?", [since]) if since is not None else ("", [])
        if by == "model":
            # Each session's tokens split by the model that spent them.
            sums = ", ".join(f"coalesce(sum(json_extract(m.value, '$.{f}')), 0)" for f in fields)
            sql = (f"SELECT m.key, count(DISTINCT d.session_id), {sums} FROM digests d,"
                   f" json_each(d.digest, '$.tokens_by_model') m {where} GROUP BY 1")
        else:
            key = {"day": "coalesce(date(d.started_at, 'unixepoch'), 'unknown')",
                   "source": "d.source", "project": "coalesce(d.project, 'unknown')"}.get(by)
            if key is None:
                raise ValueError(f"usage by {by!r}: expected day, model, source or project")
            sums = ", ".join(f"sum(d.{f}_tokens)" for f in fields)
            sql = f"SELECT {key}, count(*), {sums} FROM digests d {where} GROUP BY 1"
        rows = [{"key": r[0], "sessions": r[1], **dict(zip(fields, r[2:], strict=True))}
                for r in self.conn.execute(sql, args)]
        if by == "day":
            return sorted(rows, key=lambda r: r["key"])
        return sorted(rows, key=lambda r: (-sum(r[f] for f in fields), r["key"]))

    # -- reports ------------------------------------------------------------------------

    def put_report(self, report: dict[str, Any]) -> None:
        with self.transaction("report"):
            self.conn.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?)",
                              (report["id"], report["started_at_epoch"], int(report["dry_run"]),
                               json.dumps(report)))

    def forget_in_reports(self, session_id: str) -> None:
        """Each report that names the session names it FORGOTTEN instead (its lists, its
        warnings and errors): the report still counts it, and no longer says which it was.
        Caller owns the transaction (under secure_delete)."""
        needle = json.dumps(session_id)[1:-1]  # as put_report wrote it, escapes and all
        alone = _id_pattern(session_id)
        for rid, text in list(self.conn.execute(
                "SELECT id, report FROM reports WHERE instr(report, ?)", (needle,))):
            report = _renamed(json.loads(text), alone, FORGOTTEN)
            self.conn.execute("UPDATE reports SET report = ? WHERE id = ?",
                              (json.dumps(report), rid))

    def prune_reports(self, older_than: float) -> int:
        """Drop reports started before `older_than`, except those that record data loss
        (kept until forgotten); returns how many went."""
        with self.transaction("prune-reports"):
            self.conn.execute(
                "DELETE FROM reports WHERE started_at < ? AND coalesce(json_array_length("
                "report, '$.overflow_data_loss'), 0) = 0", (older_than,))
            return int(self.conn.changes())

    def reports(self, limit: int | None = None, *, real_only: bool = False
                ) -> list[dict[str, Any]]:
        sql = ("SELECT report FROM reports" + (" WHERE dry_run = 0" if real_only else "")
               + " ORDER BY started_at DESC, rowid DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self.conn.execute(sql)]

    def report(self, report_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT report FROM reports WHERE id = ?",
                                (report_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def check(self) -> list[str]:
        return [f"tier2 integrity: {msg}" for (msg,) in
                self.conn.execute("PRAGMA integrity_check") if msg != "ok"]


def linked(digest: dict[str, Any], known: Callable[[str], bool]) -> dict[str, Any]:
    """The digest naming other sessions (its `parent_session`, its subagents' own sessions)
    only where they are `known` (still held: forget keeps no list of the ids it removed,
    which would be a trace of its own, and a session's raw bytes name them still): a parent
    not held is null, a subagent whose session is not held left out."""
    parent = digest.get("parent_session")
    if isinstance(parent, str) and not known(parent):
        digest = {**digest, "parent_session": None}
    subagents = digest.get("subagents") or []
    held = [entry for entry in subagents
            if not isinstance(entry.get("session_id"), str) or known(entry["session_id"])]
    if len(held) != len(subagents):
        digest = {**digest, "subagents": held}
    return digest
