"""Tier 2: digests, eviction reports and a full-text index. Small, kept for good."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from session_memory.store import db

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


class Tier2:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = db.connect(path, MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    def transaction(self, name: str = "tier2") -> Any:
        return db.transaction(self.conn, name)

    def usage_bytes(self) -> int:
        return db.file_footprint(self.path)

    # -- digests ----------------------------------------------------------------------

    def get_digest(self, session_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT digest FROM digests WHERE session_id = ?",
                                (session_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_digest(self, session_id: str, source: str, digest: dict[str, Any], now: float) -> None:
        """Store (or replace) a session's digest and its full-text row, in one transaction."""
        self.put_digests([(session_id, source, digest)], now)

    def put_digests(self, items: list[tuple[str, str, dict[str, Any]]], now: float) -> None:
        """Store (or replace) digests and their full-text rows, all in one transaction.
        A digest keeps its rowid when replaced; its FTS row shares that rowid, so replacing
        or deleting one never scans the index."""
        with self.transaction("digest"):
            for session_id, source, digest in items:
                self._put_digest(session_id, source, digest, now)

    def _put_digest(self, session_id: str, source: str, digest: dict[str, Any],
                    now: float) -> None:
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
        self.conn.execute("DELETE FROM digests_fts WHERE rowid = ?", (rowid,))
        self.conn.execute(
            "INSERT INTO digests_fts (rowid, session_id, title, prompts, files, commands, errors,"
            " last_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rowid, session_id, digest.get("title") or "",
             "\n".join(digest.get("prompts") or [digest.get("first_prompt") or ""]),
             "\n".join((digest.get("files_edited") or []) + (digest.get("files_read") or [])),
             "\n".join(digest.get("commands") or []),
             "\n".join(e.get("snippet", "") for e in digest.get("errors") or []),
             digest.get("last_assistant_message") or ""))

    def has_digest(self, session_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM digests WHERE session_id = ?",
                                 (session_id,)).fetchone() is not None

    def digest_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT session_id FROM digests")}

    def delete_digest(self, session_id: str) -> None:
        """Caller owns the transaction."""
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute("DELETE FROM digests_fts WHERE rowid IN (SELECT rowid FROM digests"
                          " WHERE session_id = ?)", (session_id,))
        self.conn.execute("DELETE FROM digests WHERE session_id = ?", (session_id,))

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Digests matching `query` (its words, all of them; OR between words allowed),
        best first by bm25 with the title weighted most, each with a snippet."""
        match = fts_query(query)
        if not match:
            return []
        rows = self.conn.execute(
            "SELECT f.session_id, d.source, d.title, d.project, d.started_at, d.outcome,"
            " snippet(digests_fts, -1, '[', ']', '…', 16),"
            " bm25(digests_fts, 0.0, 10.0, 4.0, 3.0, 2.0, 2.0, 1.0) AS score"
            " FROM digests_fts f JOIN digests d ON d.rowid = f.rowid"
            " WHERE digests_fts MATCH ? ORDER BY score LIMIT ?", (match, int(limit)))
        return [{"id": sid, "source": src, "title": title, "project": project,
                 "started_at": started, "outcome": outcome, "snippet": snip,
                 "score": round(-score, 4)}
                for sid, src, title, project, started, outcome, snip, score in rows]

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
