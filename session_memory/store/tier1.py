"""Tier 1: every byte of every session file, as checksummed zstd chunks in SQLite."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import zstandard

from session_memory.errors import NotFoundError, SessionMemoryError
from session_memory.store import db
from session_memory.store.tier1_schema import MIGRATIONS

INGEST_LEVEL = 3
SEAL_LEVEL = 12
SEAL_FRAME_BYTES = 16 * 1024 * 1024
STATES = ("active", "ended", "analyzed", "evicted")


class CorruptChunkError(SessionMemoryError):
    pass


@dataclass
class Cursor:
    """Where ingest stands in one source file (the logical path; a Codex .zst maps to .jsonl)."""

    source: str
    path: str
    phys_path: str
    session_id: str
    file_id: int
    version: int
    run: int
    offset: int
    head_fp: bytes | None
    tail_fp: bytes | None
    dev: int | None
    ino: int | None
    size: int | None
    mtime_ns: int | None

    def same_stat(self, dev: int, ino: int, size: int, mtime_ns: int) -> bool:
        return (self.dev, self.ino, self.size, self.mtime_ns) == (dev, ino, size, mtime_ns)


_CURSOR_COLS = ("source, path, phys_path, session_id, file_id, version, run, offset, head_fp, "
                "tail_fp, dev, ino, size, mtime_ns")


@dataclass(frozen=True)
class StoredFile:
    id: int
    session_id: str
    source: str
    path: str
    version: int
    base_offset: int
    raw_bytes: int
    stored_bytes: int
    chunks: int
    mtime: float | None


_FILE_COLS = ("id, session_id, source, path, version, base_offset, raw_bytes, stored_bytes, "
              "chunks, mtime")


def state_sql(idle_before: str = ":idle_before") -> str:
    """The user-facing state, derived from the stored one and the time of the last write."""
    return (f"CASE WHEN state != 'open' THEN state "
            f"WHEN ended_hint = 0 AND last_write > {idle_before} THEN 'active' ELSE 'ended' END")


class Tier1:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = db.connect(path, MIGRATIONS)
        self._decompressor = zstandard.ZstdDecompressor()

    def close(self) -> None:
        self.conn.close()

    def transaction(self, name: str = "tier1") -> Any:
        return db.transaction(self.conn, name)

    # -- accounting ---------------------------------------------------------------

    def usage_bytes(self) -> int:
        return db.file_footprint(self.path)

    def totals(self) -> dict[str, int]:
        raw, stored, chunks = self.conn.execute(
            "SELECT raw_bytes, stored_bytes, chunks FROM totals").fetchone()
        return {"raw_bytes": raw, "stored_bytes": stored, "chunks": chunks}

    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- cursors --------------------------------------------------------------------

    def cursors(self, source: str | None = None) -> list[Cursor]:
        sql = f"SELECT {_CURSOR_COLS} FROM cursors"
        rows = (self.conn.execute(sql + " WHERE source = ?", (source,)) if source
                else self.conn.execute(sql))
        return [Cursor(*row) for row in rows]

    def cursor(self, source: str, path: str) -> Cursor | None:
        row = self.conn.execute(f"SELECT {_CURSOR_COLS} FROM cursors WHERE source = ? AND path = ?",
                                (source, path)).fetchone()
        return Cursor(*row) if row else None

    def cursor_at(self, source: str, phys_path: str) -> Cursor | None:
        row = self.conn.execute(
            f"SELECT {_CURSOR_COLS} FROM cursors WHERE source = ? AND phys_path = ?",
            (source, phys_path)).fetchone()
        return Cursor(*row) if row else None

    def base_offset(self, file_id: int) -> int:
        row = self.conn.execute("SELECT base_offset FROM files WHERE id = ?", (file_id,)).fetchone()
        return int(row[0]) if row else 0

    def session_state(self, session_id: str) -> str | None:
        row = self.conn.execute("SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return str(row[0]) if row else None

    def save_cursor(self, c: Cursor) -> None:
        self.conn.execute(
            f"INSERT OR REPLACE INTO cursors ({_CURSOR_COLS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.source, c.path, c.phys_path, c.session_id, c.file_id, c.version, c.run, c.offset,
             c.head_fp, c.tail_fp, c.dev, c.ino, c.size, c.mtime_ns))

    # -- sessions and files -------------------------------------------------------------

    def ensure_session(self, session_id: str, source: str, native_id: str, now: float,
                       last_write: float) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO sessions (id, source, native_id, first_seen, last_write) "
            "VALUES (?, ?, ?, ?, ?)", (session_id, source, native_id, now, last_write))

    def session_grew(self, session_id: str, mtime: float) -> None:
        """New bytes arrived: the session is open again and must be re-sealed and re-analyzed."""
        self.conn.execute(
            "UPDATE sessions SET last_write = max(last_write, ?), state = 'open', ended_hint = 0, "
            "sealed = 0 WHERE id = ?", (mtime, session_id))

    def revive_evicted(self, session_id: str) -> None:
        """An evicted session grew again: re-read all its files from the source, from byte 0."""
        self.conn.execute(
            "UPDATE cursors SET offset = 0, version = version + 1, head_fp = NULL, tail_fp = NULL, "
            "dev = NULL, ino = NULL, size = NULL, mtime_ns = NULL, file_id = 0 "
            "WHERE session_id = ?", (session_id,))
        self.conn.execute("UPDATE sessions SET state = 'open', evicted_at = NULL WHERE id = ?",
                          (session_id,))

    def new_file(self, session_id: str, source: str, path: str, version: int, base_offset: int,
                 mtime: float, now: float) -> int:
        self.conn.execute(
            "INSERT INTO files (session_id, source, path, version, base_offset, mtime, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, source, path, version, base_offset, mtime, now))
        return int(self.conn.last_insert_rowid())

    def set_file_mtime(self, file_id: int, mtime: float) -> None:
        self.conn.execute("UPDATE files SET mtime = ? WHERE id = ?", (mtime, file_id))

    def drop_older_versions(self, source: str, path: str, version: int) -> None:
        """A whole-file snapshot supersedes what came before it."""
        old = [r[0] for r in self.conn.execute(
            "SELECT id FROM files WHERE source = ? AND path = ? AND version < ?",
            (source, path, version))]
        for file_id in old:
            self.conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
            self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def add_chunk(self, file_id: int, offset: int, raw: bytes | memoryview, data: bytes,
                  level: int) -> None:
        self.conn.execute(
            "INSERT INTO chunks (file_id, offset, raw_len, crc, level, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (file_id, offset, len(raw), zlib.crc32(raw), level, data))

    def session(self, session_id: str, idle_before: float) -> dict[str, Any]:
        rows = self.sessions(idle_before, ids=[session_id])
        if not rows:
            raise NotFoundError(f"no session {session_id!r}")
        return rows[0]

    def sessions(self, idle_before: float, *, state: str | None = None,
                 source: str | None = None, limit: int | None = None,
                 ids: list[str] | None = None) -> list[dict[str, Any]]:
        where, args = [], {"idle_before": idle_before}
        if state:
            where.append(f"({state_sql()}) = :state")
            args["state"] = state
        if source:
            where.append("source = :source")
            args["source"] = source
        if ids is not None:
            where.append(f"id IN ({', '.join(f':id{i}' for i in range(len(ids)))})")
            args.update({f"id{i}": sid for i, sid in enumerate(ids)})
        sql = (f"SELECT id, source, native_id, {state_sql()}, pinned, raw_bytes, stored_bytes, "
               "first_seen, last_write, started_at, ended_at, analyzed_at, evicted_at, sealed "
               "FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY last_write DESC, id" + (f" LIMIT {int(limit)}" if limit else ""))
        out = []
        for (sid, src, native, st, pinned, raw, stored, first_seen, last_write, started, ended,
             analyzed, evicted, sealed) in self.conn.execute(sql, args):
            out.append({
                "id": sid, "source": src, "native_id": native, "state": st,
                "files": self.file_paths(sid),
                "raw_bytes": raw, "stored_bytes": stored,
                "started_at": started if started is not None else first_seen,
                "ended_at": (ended if ended is not None else last_write)
                if st != "active" else None,
                "analyzed_at": analyzed, "evicted_at": evicted, "pinned": bool(pinned),
                "last_write": last_write, "sealed": bool(sealed),
            })
        return out

    def count_by_state(self, idle_before: float) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for st, n in self.conn.execute(f"SELECT {state_sql()}, count(*) FROM sessions GROUP BY 1",
                                       {"idle_before": idle_before}):
            counts[st] = n
        counts["pinned"] = self.conn.execute(
            "SELECT count(*) FROM sessions WHERE pinned").fetchone()[0]
        counts["total"] = self.conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        return counts

    def files(self, session_id: str, *, latest_only: bool = True) -> list[StoredFile]:
        """The session's stored pieces; by default only each path's newest version."""
        sql = f"SELECT {_FILE_COLS} FROM files f WHERE session_id = ?"
        if latest_only:
            sql += (" AND version = (SELECT max(version) FROM files g "
                    "WHERE g.source = f.source AND g.path = f.path AND g.session_id = f.session_id)")
        return [StoredFile(*row) for row in self.conn.execute(sql + " ORDER BY path, id",
                                                               (session_id,))]

    def file_paths(self, session_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT path FROM files WHERE session_id = ? ORDER BY path", (session_id,))]

    def set_pinned(self, session_id: str, pinned: bool) -> None:
        with self.transaction("pin"):
            if self.conn.execute("UPDATE sessions SET pinned = ? WHERE id = ? RETURNING id",
                                 (int(pinned), session_id)).fetchone() is None:
                raise NotFoundError(f"no session {session_id!r}")

    def mark_analyzed(self, session_id: str, now: float, *, started_at: float | None,
                      ended_at: float | None, seen_raw_bytes: int) -> bool:
        """Record that the digest (already committed in Tier 2) covers the session as it was.
        False when the session grew meanwhile: it stays open and is analyzed again later."""
        with self.transaction("mark-analyzed"):
            row = self.conn.execute(
                "UPDATE sessions SET state = 'analyzed', analyzed_at = ?, "
                "started_at = coalesce(?, started_at), ended_at = coalesce(?, ended_at) "
                "WHERE id = ? AND state = 'open' AND raw_bytes = ? RETURNING id",
                (now, started_at, ended_at, session_id, seen_raw_bytes)).fetchone()
        return row is not None

    def mark_ended(self, session_id: str) -> None:
        with self.transaction("mark-ended"):
            self.conn.execute("UPDATE sessions SET ended_hint = 1 WHERE id = ?", (session_id,))

    # -- reading --------------------------------------------------------------------

    def read_file(self, file_id: int) -> Iterator[bytes]:
        """The stored content of one file piece, chunk by chunk, each checked against its crc."""
        expected = 0
        for offset, raw_len, crc, data in self.conn.execute(
                "SELECT offset, raw_len, crc, data FROM chunks WHERE file_id = ? ORDER BY offset",
                (file_id,)):
            if offset != expected:
                raise CorruptChunkError(f"file {file_id}: gap in chunks at byte {expected}")
            try:
                raw = self._decompressor.decompress(data, max_output_size=raw_len)
            except zstandard.ZstdError as e:
                raise CorruptChunkError(f"file {file_id}: chunk at {offset}: {e}") from e
            if len(raw) != raw_len or zlib.crc32(raw) != crc:
                raise CorruptChunkError(f"file {file_id}: chunk at {offset} fails its checksum")
            expected += raw_len
            yield raw

    # -- sealing ----------------------------------------------------------------------

    def unsealed_ended(self, idle_before: float) -> list[str]:
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM sessions WHERE sealed = 0 AND state != 'evicted' "
            f"AND ({state_sql()}) != 'active'", {"idle_before": idle_before})]

    def seal_session(self, session_id: str, level: int = SEAL_LEVEL,
                     frame_bytes: int = SEAL_FRAME_BYTES) -> int:
        """Recompress an ended session's chunks into large frames; returns bytes saved.

        Each group of chunks is replaced in its own transaction, so the file stays whole
        and readable at every commit and a long seal never holds the store for long.
        """
        saved = 0
        compressor = zstandard.ZstdCompressor(level=level)
        for file_id in [r[0] for r in self.conn.execute(
                "SELECT id FROM files WHERE session_id = ?", (session_id,))]:
            for group in self._seal_groups(file_id, level, frame_bytes):
                saved += self._reseal_group(file_id, group, compressor, level)
        with self.transaction("seal"):
            self.conn.execute("UPDATE sessions SET sealed = 1 WHERE id = ? AND state != 'evicted' "
                              "AND NOT EXISTS (SELECT 1 FROM chunks c JOIN files f "
                              "ON c.file_id = f.id WHERE f.session_id = ? AND c.level < ?)",
                              (session_id, session_id, level))
        return saved

    def _seal_groups(self, file_id: int, level: int, frame_bytes: int) -> list[list[int]]:
        groups: list[list[int]] = []
        current: list[int] = []
        size = 0
        for offset, raw_len, chunk_level in list(self.conn.execute(
                "SELECT offset, raw_len, level FROM chunks WHERE file_id = ? ORDER BY offset",
                (file_id,))):
            if chunk_level >= level and raw_len >= frame_bytes // 2:
                if current:
                    groups.append(current)
                current, size = [], 0
                continue
            if current and size + raw_len > frame_bytes:
                groups.append(current)
                current, size = [], 0
            current.append(offset)
            size += raw_len
        if current:
            groups.append(current)
        return [g for g in groups if len(g) > 1 or self._chunk_level(file_id, g[0]) < level]

    def _chunk_level(self, file_id: int, offset: int) -> int:
        return int(self.conn.execute("SELECT level FROM chunks WHERE file_id = ? AND offset = ?",
                                     (file_id, offset)).fetchone()[0])

    def _reseal_group(self, file_id: int, offsets: list[int],
                      compressor: zstandard.ZstdCompressor, level: int) -> int:
        first, last = offsets[0], offsets[-1]
        with self.transaction("seal"):
            rows = list(self.conn.execute(
                "SELECT offset, raw_len, crc, data FROM chunks WHERE file_id = ? "
                "AND offset BETWEEN ? AND ? ORDER BY offset", (file_id, first, last)))
            if [r[0] for r in rows] != offsets:
                return 0  # the file changed under us; the next seal will see it
            parts = []
            for offset, raw_len, crc, data in rows:
                raw = self._decompressor.decompress(data, max_output_size=raw_len)
                if zlib.crc32(raw) != crc:
                    raise CorruptChunkError(f"file {file_id}: chunk at {offset} fails its checksum")
                parts.append(raw)
            raw = b"".join(parts)
            packed = compressor.compress(raw)
            before = sum(len(r[3]) for r in rows)
            self.conn.execute("DELETE FROM chunks WHERE file_id = ? AND offset BETWEEN ? AND ?",
                              (file_id, first, last))
            self.add_chunk(file_id, first, raw, packed, level)
        return before - len(packed)

    # -- eviction and forgetting --------------------------------------------------------

    def evict(self, session_id: str, now: float) -> int:
        """Drop a session's raw bytes, keep its row; returns the stored bytes freed.
        The caller owns the transaction."""
        freed = self.conn.execute(
            "SELECT stored_bytes FROM sessions WHERE id = ?", (session_id,)).fetchone()
        self.conn.execute(
            "DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE session_id = ?)",
            (session_id,))
        self.conn.execute("UPDATE sessions SET state = 'evicted', evicted_at = ?, sealed = 0 "
                          "WHERE id = ?", (now, session_id))
        return int(freed[0]) if freed else 0

    def forget(self, session_id: str) -> None:
        """Remove every trace of a session, its cursors included (caller owns the transaction)."""
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute(
            "DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE session_id = ?)",
            (session_id,))
        self.conn.execute("DELETE FROM files WHERE session_id = ?", (session_id,))
        self.conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def reclaim(self) -> None:
        """Give freed pages back to the file system so the file really shrinks."""
        self.conn.execute("PRAGMA incremental_vacuum")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- health -------------------------------------------------------------------------

    def check(self) -> list[str]:
        problems: list[str] = []
        for (msg,) in self.conn.execute("PRAGMA integrity_check"):
            if msg != "ok":
                problems.append(f"tier1 integrity: {msg}")
        raw, stored, chunks = self.conn.execute(
            "SELECT coalesce(sum(raw_len), 0), coalesce(sum(length(data)), 0), count(*) "
            "FROM chunks").fetchone()
        totals = self.totals()
        if (raw, stored, chunks) != (totals["raw_bytes"], totals["stored_bytes"],
                                     totals["chunks"]):
            problems.append(f"tier1 accounting: totals {totals} but chunks hold "
                            f"raw={raw} stored={stored} chunks={chunks}")
        for sid, _n in self.conn.execute(
                "SELECT s.id, 1 FROM sessions s LEFT JOIN (SELECT session_id, sum(raw_bytes) r, "
                "sum(stored_bytes) st FROM files GROUP BY session_id) f ON f.session_id = s.id "
                "WHERE s.raw_bytes != coalesce(f.r, 0) OR s.stored_bytes != coalesce(f.st, 0)"):
            problems.append(f"tier1 accounting: session {sid} totals differ from its files")
        for fid, in self.conn.execute(
                "SELECT f.id FROM files f LEFT JOIN (SELECT file_id, sum(raw_len) r, "
                "sum(length(data)) st, count(*) n FROM chunks GROUP BY file_id) c "
                "ON c.file_id = f.id WHERE f.raw_bytes != coalesce(c.r, 0) "
                "OR f.stored_bytes != coalesce(c.st, 0) OR f.chunks != coalesce(c.n, 0)"):
            problems.append(f"tier1 accounting: file {fid} totals differ from its chunks")
        for fid, in self.conn.execute(
                "SELECT DISTINCT file_id FROM chunks WHERE file_id NOT IN (SELECT id FROM files)"):
            problems.append(f"tier1: chunks of file {fid} belong to no file")
        for fid, in list(self.conn.execute("SELECT id FROM files WHERE chunks > 0")):
            try:
                for _ in self.read_file(fid):
                    pass
            except CorruptChunkError as e:
                problems.append(f"tier1 chunk: {e}")
        return problems


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, apsw.BusyError)
