"""Tier 2: digests, eviction reports and a full-text index. Small, kept for good."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
        tokens = digest.get("tokens") or {}
        with self.transaction("digest"):
            self.conn.execute(
                "INSERT OR REPLACE INTO digests (session_id, source, analyzer_version, analyzed_at,"
                " title, project, started_at, ended_at, models, input_tokens, output_tokens,"
                " cache_creation_tokens, cache_read_tokens, reasoning_tokens, outcome, digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, source, digest.get("analyzer_version", 0), now, digest.get("title"),
                 digest.get("cwd"), _epoch(digest.get("started_at")),
                 _epoch(digest.get("ended_at")), json.dumps(digest.get("models") or []),
                 tokens.get("input", 0), tokens.get("output", 0),
                 tokens.get("cache_creation", 0), tokens.get("cache_read", 0),
                 tokens.get("reasoning", 0), digest.get("outcome"), json.dumps(digest)))
            self.conn.execute("DELETE FROM digests_fts WHERE session_id = ?", (session_id,))
            self.conn.execute(
                "INSERT INTO digests_fts (session_id, title, prompts, files, commands, errors,"
                " last_message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, digest.get("title") or "", digest.get("first_prompt") or "",
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
        self.conn.execute("DELETE FROM digests WHERE session_id = ?", (session_id,))
        self.conn.execute("DELETE FROM digests_fts WHERE session_id = ?", (session_id,))

    # -- reports ------------------------------------------------------------------------

    def put_report(self, report: dict[str, Any]) -> None:
        with self.transaction("report"):
            self.conn.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?)",
                              (report["id"], report["started_at_epoch"], int(report["dry_run"]),
                               json.dumps(report)))

    def reports(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT report FROM reports ORDER BY started_at DESC, rowid DESC"
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
