"""Tier 1: every byte of every session file, as checksummed zstd chunks in SQLite."""

from __future__ import annotations

import contextlib
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import apsw
import msgspec
import zstandard
from isal.isal_zlib import crc32 as crc32  # zlib's CRC-32 at 5x the speed; ingest's too

from session_memory.errors import NotFoundError, SessionMemoryError
from session_memory.store import db
from session_memory.store.tier1_schema import MIGRATIONS

INGEST_LEVEL = 1
"""New bytes: as fast as zstd goes while still compressing (3 would be 2.7% smaller and
12% slower), for chunks only live until their session ends and is sealed."""
SEAL_LEVEL = 3
"""When a session ends: about 400 MB/s a core. Measured on the workstation bench
(tests/bench/bench_tier1.py): level 15 was 8 MB/s for 7% less, a cost no laptop should pay
for every session it ever stores."""
DEEP_SEAL_LEVEL = 6
"""Later, when the daemon is idle: packs, and larger sessions, 3% smaller than at level 3
on the bench's large-session corpus. Over the bench's packs level 7 saved 0.2-2% more for
10-20% more CPU in the idle work (35-50% more in zstd itself), and level 9 2% more again
for 20-40% more: each took all the compression a GB receives in its life to 30 CPU
seconds or past on the large-session corpus or the real histories (level 19: 2.8 MB/s)."""
SEAL_FRAME_BYTES = 8 * 1024 * 1024
_SEAL_STEP = 1024 * 1024  # how much is compressed between two looks at `interrupted`
PACK_RAW_BYTES = 32 * 1024 * 1024
"""A pack's content, at most: zstd finds repeats across all of it (its window is as
large), and reading one member unpacks at most this much. On the workstation bench, 32 MiB
packs at level 7 stored small sessions in 0.49 of per-file zstd -3 (the whole store, after
the idle work: about 0.59, where each session deep-sealed on its own gave 0.80)."""
PACK_MEMBER_MAX = 8 * 1024 * 1024
"""Sessions up to this size are packed; a larger one finds enough to share in itself, and
keeps frames of its own, deep-sealed on its own."""
PACK_MIN_RAW_BYTES = 8 * 1024 * 1024
"""Less than this waits for more sessions to end: a small pack finds little to share."""
_PACK_WINDOW_LOG = 25  # 32 MiB: PACK_RAW_BYTES
_PACK_JOB_BYTES = 4 * 1024 * 1024
"""Of a pack ingest compresses on two threads, what each compresses at a time (seeing the
data before it). Against 8 MiB, on the bench's packs at level 3: 11-26% less CPU in zstd
and a shorter wait for a pack's last job, for 0.4-0.7% more bytes until the idle work
repacks them; `session-memory ingest` of the real histories took 11% less time (10
paired runs)."""
_INGEST_PACK_THREADS = 2
_QUICK_PACK_MATCHER_LEVEL, _QUICK_PACK_HASH_LOG = 1, 17
"""A pack at SEAL_LEVEL (ingest's, and the sweep's and forget's rewrites) is compressed
with level 1's matcher (zstd's fast strategy) and level 3's hash table, 2^17 entries: over
a pack's window it finds about what level 3's double-fast matcher finds, in 17-21% less
CPU (one stream of 48 MiB, medians of 7: the real histories 1.8% more bytes, the
workstation history's 0.6% more). `session-memory ingest`: 8% less CPU on the real
histories (12 paired runs), 12% less on the workstation history (3), where the pack's
compression is what the storing thread waits for; Tier 1 2.2% and 0.2% larger until the
idle work repacks it at DEEP_SEAL_LEVEL. A table of 2^18 was 0.4-1.3% smaller than level
3 for only 5-18% less; of 2^16, 4% larger; level 2, 4% larger; level 3 with a minimum
match of 6, 4% less CPU."""
_PACK_FEED_BYTES = 1024 * 1024
"""Of the files a pack takes at ingest, how many bytes are handed to its compressing thread
at once: a hand-over per file (most are small) cost the storing thread a thread switch
each, and zstd starts a job only once it has _PACK_JOB_BYTES anyway."""
_MAX_CHAIN_LOG, _MAX_HASH_LOG = 21, 20  # level 19's own tables would take 81 MiB a frame
_CONTENT_CHECKSUM = 0x04  # in a zstd frame header's descriptor byte, the fifth
STATES = ("active", "ended", "analyzed", "evicted")


class CorruptChunkError(SessionMemoryError):
    pass


class DictionaryInUseError(SessionMemoryError):
    """A forget found frames of other sessions using a dictionary trained on the session."""


# The classes a command loads are msgspec Structs, not dataclasses: Python builds a
# dataclass by running code it generates, 1-2 ms a class at every start-up (the 23 an
# ingest loaded took 18 ms of it); a Struct is built in C, and its instances are made
# faster too.
class Cursor(msgspec.Struct):
    """Where ingest stands in one source file (the logical path; a .jsonl.zst maps to .jsonl)."""

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


# phys_path is stored only where it differs from path (a .jsonl.zst): saves a path a file.
_CURSOR_COLS = ("source, path, coalesce(phys_path, path), session_id, file_id, version, run, "
                "offset, head_fp, tail_fp, dev, ino, size, mtime_ns")


# Subqueries, not joins: for a join SQLite may build a Bloom filter over the whole joined
# table first, five times the lookup's cost.
_APPEND_POINT_COLS = ("(SELECT state FROM sessions WHERE id = session_id), "
                      "coalesce((SELECT base_offset FROM files WHERE id = file_id), 0)")


# Not frozen: one is made for every file an append pass stores (see ingest.Candidate).
class AppendPoint(msgspec.Struct):
    """A cursor with what appending at it needs to know besides (see Tier1.append_point)."""

    cursor: Cursor
    state: str | None
    """Its session's stored state (None: no such session)."""
    base_offset: int
    """Where its file row starts in the source file (0 without one)."""


def _append_point(row: Sequence[Any]) -> AppendPoint:
    """An AppendPoint from a row of _CURSOR_COLS then _APPEND_POINT_COLS."""
    return AppendPoint(Cursor(*row[:14]), row[14], int(row[15]))


class StoredFile(msgspec.Struct, frozen=True):
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
    sealed_len: int
    stream_offset: int


_FILE_COLS = ("id, session_id, source, path, version, base_offset, raw_bytes, stored_bytes, "
              "chunks, mtime, sealed_len, stream_offset")
_path_then_id = operator.itemgetter(3, 0)
"""The order of a session's files (a row of _FILE_COLS): Python's order of strings is SQLite's
(code points, as UTF-8's bytes)."""


def _prefix_end(prefix: str) -> str:
    """The least string after every string that begins with `prefix` (for a range over an
    index)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def state_sql(idle_before: str = ":idle_before") -> str:
    """The user-facing state, derived from the stored one and the time of the last write."""
    return (f"CASE WHEN state != 'open' THEN state "
            f"WHEN ended_hint = 0 AND last_write > {idle_before} THEN 'active' ELSE 'ended' END")


class Tier1:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """`read_only`: never creates, migrates or writes (see db.connect_read_only)."""
        self.path = path
        self.conn = (db.connect_read_only if read_only else db.connect)(path, MIGRATIONS)
        self._appends = self.conn.cursor()
        """Runs the statements every append runs (a chunk, its cursor, its session's last
        write), which return no rows: Connection.execute makes a cursor a statement, a
        third of what a one-row UPDATE costs besides."""
        self._checkpointer = None if read_only else db.Checkpointer(self.conn, path)
        self._decompressor = zstandard.ZstdDecompressor()
        self._dict_decompressors: dict[int, zstandard.ZstdDecompressor] = {}
        self._last_frame: tuple[tuple[str, int, int, int, int], bytes] | None = None
        self._last_pack: _Unpacking | None = None
        self._pack_buffer: bytearray | None = None

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.conn.close()

    def transaction(self, name: str = "tier1") -> Any:
        if self._checkpointer is not None:
            self._checkpointer.keep_up()
        return db.transaction(self.conn, name)

    def in_transaction(self) -> bool:
        """Whether a transaction is open: what is read now stays so until it ends."""
        return bool(self.conn.in_transaction)

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Reads inside see one consistent state of the store, even while another process
        seals or evicts the session being read (for readers that do not write meanwhile)."""
        return db.snapshot(self.conn)

    # -- accounting ---------------------------------------------------------------

    def usage_bytes(self) -> int:
        return db.file_footprint(self.path)

    def totals(self) -> dict[str, int]:
        raw, stored, chunks = db.one(self.conn,
                                     "SELECT raw_bytes, stored_bytes, chunks FROM totals")
        return {"raw_bytes": raw, "stored_bytes": stored, "chunks": chunks}

    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def meta_keys(self, prefix: str) -> list[str]:
        """Keys that start with `prefix`, by a range over the primary key."""
        end = _prefix_end(prefix)
        return [str(r[0]) for r in self.conn.execute(
            "SELECT key FROM meta WHERE key >= ? AND key < ? ORDER BY key", (prefix, end))]

    def ids_and_native_ids(self) -> list[tuple[str, str]]:
        """(id, native id) of every session."""
        return [(str(i), str(n)) for i, n in self.conn.execute(
            "SELECT id, native_id FROM sessions")]

    def ids_matching(self, typed: str) -> list[str]:
        """[typed] when it is a session id; else up to 3 ids whose native id is `typed` or
        whose id or native id begins with it (for typing at a terminal)."""
        if self.conn.execute("SELECT 1 FROM sessions WHERE id = ?", (typed,)).fetchone():
            return [typed]
        prefix = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return [str(r[0]) for r in self.conn.execute(
            "SELECT id FROM sessions WHERE native_id = ?1 OR id LIKE ?2 ESCAPE '\\' "
            "OR native_id LIKE ?2 ESCAPE '\\' LIMIT 3", (typed, prefix))]

    def byte_counts(self, session_id: str) -> tuple[int, int] | None:
        """(raw bytes, stored bytes) of a session, or None."""
        row = self.conn.execute("SELECT raw_bytes, stored_bytes FROM sessions WHERE id = ?",
                                (session_id,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    # -- cursors --------------------------------------------------------------------

    def cursors(self, source: str | None = None, *,
                besides: Sequence[tuple[str, str]] = ()) -> list[Cursor]:
        """`besides`: (source, path prefix) of cursors left out (those of a format's files
        made from a database, which a walk never comes to: see formats.base.VirtualFile),
        neither read nor made objects."""
        where, args = (["source = ?"], [source]) if source else ([], [])
        for other, prefix in besides:
            where.append("NOT (source = ? AND path >= ? AND path < ?)")
            args += [other, prefix, _prefix_end(prefix)]
        return [Cursor(*row) for row in self.conn.execute(
            f"SELECT {_CURSOR_COLS} FROM cursors"
            + (" WHERE " + " AND ".join(where) if where else ""), args)]

    def cursor_stamps(self, source: str, prefix: str,
                      session_id: str | None = None) -> dict[str, int | None]:
        """The stored mtime_ns of every file of a source whose path begins with `prefix`
        (a format's files made from a database: see formats.base.VirtualFile), by path;
        with `session_id`, of that session's files only (looked up by session)."""
        end = _prefix_end(prefix)
        if session_id is None:
            rows = self.conn.execute("SELECT path, mtime_ns FROM cursors WHERE source = ?"
                                     " AND path >= ? AND path < ?", (source, prefix, end))
        else:
            rows = self.conn.execute("SELECT path, mtime_ns FROM cursors WHERE session_id = ?"
                                     " AND source = ? AND path >= ? AND path < ?",
                                     (session_id, source, prefix, end))
        return {str(path): mtime_ns for path, mtime_ns in rows}

    def cursor(self, source: str, path: str) -> Cursor | None:
        row = self.conn.execute(f"SELECT {_CURSOR_COLS} FROM cursors WHERE source = ? AND path = ?",
                                (source, path)).fetchone()
        return Cursor(*row) if row else None

    def cursors_of(self, session_id: str) -> list[Cursor]:
        """The cursors a session owns: the files whose next bytes, or whose bytes read again
        from the start, would go to it."""
        return [Cursor(*row) for row in self.conn.execute(
            f"SELECT {_CURSOR_COLS} FROM cursors WHERE session_id = ?", (session_id,))]

    def data_version(self) -> int:
        """A number that changes whenever another connection commits a change (this
        connection's own commits leave it as it is)."""
        return int(db.one(self.conn, "PRAGMA data_version")[0])

    def append_points(self, wanted: Iterable[tuple[str, str]]
                      ) -> dict[tuple[str, str], AppendPoint]:
        """append_point for many (source, physical path) pairs at once, by pair; pairs
        without a cursor are left out."""
        asked = set(wanted)
        paths: dict[str, set[str]] = {}
        for source, phys in asked:
            paths.setdefault(source, set()).update((phys, phys.removesuffix(".zst")))
        found: dict[tuple[str, str], AppendPoint] = {}
        for source, names in paths.items():
            for row in self.conn.execute(
                    f"SELECT {_CURSOR_COLS}, {_APPEND_POINT_COLS} FROM cursors WHERE "
                    "source = ? AND path IN (SELECT value FROM json_each(?))",
                    (source, json.dumps(sorted(names)))):
                point = _append_point(row)
                c = point.cursor
                # As append_point: the cursor under the file's own path comes first.
                if c.path == c.phys_path or (c.source, c.phys_path) not in found:
                    found[c.source, c.phys_path] = point
        return {key: point for key, point in found.items() if key in asked}

    def append_point(self, source: str, phys_path: str) -> AppendPoint | None:
        """The cursor that last read this physical file, with its session's state and its
        file row's base offset: what an append reads before it writes, in one lookup. A
        file is tracked under its own path, except a .jsonl.zst, which is tracked under its
        .jsonl twin's."""
        for path in dict.fromkeys((phys_path, phys_path.removesuffix(".zst"))):
            row = self.conn.execute(
                f"SELECT {_CURSOR_COLS}, {_APPEND_POINT_COLS} "
                "FROM cursors WHERE source = ? AND path = ?", (source, path)).fetchone()
            if row is not None and row[2] == phys_path:
                return _append_point(row)
        return None

    def base_offset(self, file_id: int) -> int:
        row = self.conn.execute("SELECT base_offset FROM files WHERE id = ?", (file_id,)).fetchone()
        return int(row[0]) if row else 0

    def session_state(self, session_id: str) -> str | None:
        row = self.conn.execute("SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return str(row[0]) if row else None

    def holds(self, session_id: str) -> bool:
        """Whether the session is here, evicted or not (a digest names only such sessions:
        see tier2.linked)."""
        return self.session_state(session_id) is not None

    def save_cursor(self, c: Cursor, *, new: bool = False) -> None:
        """`new`: the caller knows the store holds no row for the cursor yet."""
        # Most saves move a cursor along its session: updated in place, its index by
        # session untouched, that costs half of replacing the row.
        if not new:
            self._appends.execute(
                "UPDATE cursors SET phys_path = ?, file_id = ?, version = ?, run = ?, "
                "offset = ?, head_fp = ?, tail_fp = ?, dev = ?, ino = ?, size = ?, mtime_ns = ? "
                "WHERE source = ? AND path = ? AND session_id = ?",
                (None if c.phys_path == c.path else c.phys_path, c.file_id, c.version, c.run,
                 c.offset, c.head_fp, c.tail_fp, c.dev, c.ino, c.size, c.mtime_ns, c.source,
                 c.path, c.session_id))
            if self.conn.changes():
                return
        self.conn.execute(
            "INSERT OR REPLACE INTO cursors (source, path, phys_path, session_id, file_id, "
            "version, run, offset, head_fp, tail_fp, dev, ino, size, mtime_ns) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.source, c.path, None if c.phys_path == c.path else c.phys_path, c.session_id,
             c.file_id, c.version, c.run, c.offset, c.head_fp, c.tail_fp, c.dev, c.ino, c.size,
             c.mtime_ns))

    # -- sessions and files -------------------------------------------------------------

    def ensure_session(self, session_id: str, source: str, native_id: str, now: float,
                       last_write: float, started_at: float | None = None) -> bool:
        """True when the session is new: open, unsealed, written at `last_write`;
        `started_at` where the id says when it began (a run of a history)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO sessions (id, source, native_id, first_seen, last_write, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, source, native_id, now, last_write, started_at))
        return bool(self.conn.changes())

    def session_grew(self, session_id: str, mtime: float, *, was_open: bool = True) -> None:
        """New bytes arrived: the session is open again and must be re-sealed and re-analyzed.
        `was_open`: its state was 'open' when last read (a hint: the row ends the same)."""
        # Most appends find the session open, unsealed and not ended: only its last write
        # moves. Setting just that column leaves the indexes on the other columns alone and
        # skips the state column's CHECK (which builds a table for its IN list): a third of
        # the statement's cost. The full statement has the same effect on any row; after
        # the short one, only a row that is not open, or is sealed or ended, needs it.
        full = ("UPDATE sessions SET last_write = max(last_write, ?1), state = 'open', "
                "ended_hint = 0, sealed = 0 WHERE id = ?2")
        if not was_open:
            self._appends.execute(full, (mtime, session_id))
            return
        self._appends.execute(
            "UPDATE sessions SET last_write = ?1 WHERE id = ?2 AND state = 'open' "
            "AND ended_hint = 0 AND sealed = 0 AND last_write < ?1", (mtime, session_id))
        if not self.conn.changes():
            self._appends.execute(
                full + " AND NOT (state = 'open' AND ended_hint = 0 AND sealed = 0)",
                (mtime, session_id))

    def revive_evicted(self, session_id: str) -> None:
        """An evicted session grew again: re-read all its files from the source, from byte 0."""
        self.conn.execute(
            "UPDATE cursors SET offset = 0, version = version + 1, head_fp = NULL, tail_fp = NULL, "
            "dev = NULL, ino = NULL, size = NULL, mtime_ns = NULL, file_id = 0 "
            "WHERE session_id = ?", (session_id,))
        self.conn.execute("UPDATE sessions SET state = 'open', evicted_at = NULL WHERE id = ?",
                          (session_id,))

    def last_version(self, source: str, path: str) -> int:
        """The newest version of a file stored, 0 for none."""
        return int(db.one(self.conn, "SELECT coalesce(max(version), 0) FROM files"
                          " WHERE source = ? AND path = ?", (source, path))[0])

    def run_ids(self, source: str, path: str, version: int, before_offset: int) -> list[str]:
        """The native ids of the runs stored from one version of a file before an offset."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT DISTINCT s.native_id FROM files f JOIN sessions s ON s.id = f.session_id "
            "WHERE f.source = ? AND f.path = ? AND f.version = ? AND f.base_offset < ?",
            (source, path, version, before_offset))]

    def reopen_run(self, session_id: str, file_id: int) -> None:
        """An evicted run grew: its empty file row goes (the run is stored again from its
        start) and the session is open again. The caller owns the transaction."""
        self.conn.execute("DELETE FROM files WHERE id = ? AND session_id = ? AND raw_bytes = 0",
                          (file_id, session_id))
        self.conn.execute("UPDATE sessions SET state = 'open', evicted_at = NULL WHERE id = ?",
                          (session_id,))

    def new_file(self, session_id: str, source: str, path: str, version: int, base_offset: int,
                 mtime: float, now: float, *, sealed: bool = False) -> int:
        """A new file row. `sealed`: its bytes will come as frames (add_sealed), placed at
        the end of its session's sealed stream."""
        # Two statements: SQLite runs the subquery of a CASE even where it is not taken (it
        # depends on parameters only), which tripled the cost of every other new file.
        self.conn.execute(
            "INSERT INTO files (session_id, source, path, version, base_offset, mtime, created_at,"
            " stream_offset) VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT coalesce(max(stream_offset + "
            "raw_len), 0) FROM frames WHERE session_id = ?1 AND generation = (SELECT frame_gen "
            "FROM sessions WHERE id = ?1)))" if sealed else
            "INSERT INTO files (session_id, source, path, version, base_offset, mtime, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, source, path, version, base_offset, mtime, now))
        return int(self.conn.last_insert_rowid())

    def add_sealed(self, file_id: int, raw_len: int, data: bytes, level: int, crc: int) -> None:
        """Append a frame to a file stored sealed from its first byte: ingest's way for a
        session that has ended already (a history's backfill), so that its bytes are
        compressed once. The frame joins the session's current generation at the file's
        end of stream; a seal that was staging meanwhile sees the files change and stops."""
        session_id, start, sealed_len, chunks, gen = db.one(
            self.conn, "SELECT f.session_id, f.stream_offset, f.sealed_len, f.chunks, "
            "s.frame_gen FROM files f JOIN sessions s ON s.id = f.session_id WHERE f.id = ?",
            (file_id,))
        if chunks:
            raise CorruptChunkError(f"file {file_id}: sealed bytes cannot follow chunks")
        self._insert_with_blob(
            "frames", "session_id, generation, stream_offset, raw_len, crc, level",
            (session_id, gen, start + sealed_len, raw_len, crc, level), [data])
        self._count_sealed(file_id, raw_len)
        self._cap_seal_level(level, [session_id])

    def _insert_with_blob(self, table: str, columns: str, values: tuple[Any, ...],
                          data: Sequence[bytes]) -> int:
        """Insert a row of `table` (packs or frames) whose `data` is the pieces of `data`
        one after another; returns its rowid. The row is made with a zeroblob of their
        length and the pieces are written into it in place: bound as one bytes object, a
        blob is copied twice more before it reaches its pages (SQLite copies what is bound,
        then again into the record it builds), into memory touched for the first time, and
        the pieces would have to be joined first. A pack of 6 MiB: 18 CPU ms, not 24, and
        no page faults where there were 5,000. Triggers see the blob's length, as before.
        The caller owns the transaction: the row holds zeros until its pieces are written,
        and must commit with them or not at all."""
        self.conn.execute(
            f"INSERT INTO {table} ({columns}, data) VALUES "
            f"({', '.join('?' * len(values))}, zeroblob(?))",
            (*values, sum(len(piece) for piece in data)))
        rowid = int(self.conn.last_insert_rowid())
        with self.conn.blob_open("main", table, "data", rowid, True) as blob:
            for piece in data:
                blob.write(piece)
        return rowid

    def _count_sealed(self, file_id: int, raw_len: int) -> None:
        """A file stored sealed from its first byte (in frames or a pack) owns these more."""
        self.conn.execute("UPDATE files SET raw_bytes = raw_bytes + ?1, sealed_len = sealed_len "
                          "+ ?1 WHERE id = ?2", (raw_len, file_id))

    def _cap_seal_level(self, level: int, sessions: list[str]) -> None:
        """These sessions' bytes are now (at best) at `level`."""
        self.conn.execute(
            "UPDATE sessions SET seal_level = CASE WHEN seal_level = 0 OR seal_level > ? "
            f"THEN ? ELSE seal_level END WHERE id IN ({','.join('?' * len(sessions))})",
            (level, level, *sessions))

    def drop_older_versions(self, source: str, path: str, version: int) -> None:
        """A whole-file snapshot supersedes what came before it."""
        old = [r[0] for r in self.conn.execute(
            "SELECT id FROM files WHERE source = ? AND path = ? AND version < ?",
            (source, path, version))]
        for file_id in old:
            # Its bytes in a pack are dead, as an evicted session's: left live, they would
            # count in the session for good, and keep the pack, under a file that is gone.
            self.conn.execute("UPDATE pack_members SET live = 0 WHERE file_id = ? AND live",
                              (file_id,))
            self.conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
            self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def add_chunk(self, file_id: int, offset: int, raw: bytes | memoryview, data: bytes,
                  level: int, crc: int | None = None) -> None:
        self._appends.execute(
            "INSERT INTO chunks (file_id, offset, raw_len, crc, level, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (file_id, offset, len(raw), crc32(raw) if crc is None else crc, level, data))

    def session(self, session_id: str, idle_before: float) -> dict[str, Any]:
        rows = self.sessions(idle_before, ids=[session_id])
        if not rows:
            raise NotFoundError(f"no session {session_id!r}")
        return rows[0]

    def sessions(self, idle_before: float, *, state: str | None = None,
                 source: str | None = None, limit: int | None = None,
                 ids: list[str] | None = None, since: float | None = None
                 ) -> list[dict[str, Any]]:
        """Newest write first. `since`: only sessions still going at or after it."""
        where: list[str] = []
        args: dict[str, Any] = {"idle_before": idle_before}
        if since is not None:
            where.append("coalesce(ended_at, last_write) >= :since")
            args["since"] = since
        if state:
            where.append(f"({state_sql()}) = :state")
            args["state"] = state
        if source:
            where.append("source = :source")
            args["source"] = source
        if ids is not None:
            where.append(f"id IN ({', '.join(f':id{i}' for i in range(len(ids)))})")
            args.update({f"id{i}": sid for i, sid in enumerate(ids)})
        # The file list comes in the same statement: one query per listing, not per session.
        sql = (f"SELECT id, source, native_id, {state_sql()}, pinned, raw_bytes, stored_bytes, "
               # Before analysis, a session started no later than its earliest file's
               # mtime (the time it was ingested says nothing: a backfill ingests old files).
               "(SELECT min(mtime) FROM files WHERE session_id = sessions.id), "
               "last_write, started_at, ended_at, analyzed_at, evicted_at, sealed, "
               "(SELECT json_group_array(path) FROM (SELECT DISTINCT path FROM files "
               " WHERE session_id = sessions.id ORDER BY path)) "
               "FROM sessions" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY last_write DESC, id" + (f" LIMIT {int(limit)}" if limit else ""))
        out = []
        for (sid, src, native, st, pinned, raw, stored, first_mtime, last_write, started, ended,
             analyzed, evicted, sealed, paths) in self.conn.execute(sql, args):
            out.append({
                "id": sid, "source": src, "native_id": native, "state": st,
                "files": json.loads(paths),
                "raw_bytes": raw, "stored_bytes": stored,
                "started_at": started if started is not None else first_mtime,
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
        counts["pinned"] = db.one(self.conn, "SELECT count(*) FROM sessions WHERE pinned")[0]
        counts["total"] = db.one(self.conn, "SELECT count(*) FROM sessions")[0]
        return counts

    def files(self, session_id: str, *, latest_only: bool = True) -> list[StoredFile]:
        """The session's stored pieces; by default only each path's newest version."""
        # By path, then id, sorted here: an ORDER BY makes SQLite build a sorter for each
        # call, which, run between sessions' parses as analysis does, cost three times the
        # query itself (0.2 s of a 2,000-session pass).
        files = [StoredFile(*row) for row in sorted(self.conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE session_id = ?", (session_id,)),
            key=_path_then_id)]
        if not latest_only:
            return files
        # Chosen here, not by a correlated subquery: this runs once per analyzed session.
        newest: dict[tuple[str, str], int] = {}
        for f in files:
            newest[f.source, f.path] = max(f.version, newest.get((f.source, f.path), f.version))
        return [f for f in files if f.version == newest[f.source, f.path]]

    def stored_bytes_by_file(self, session_id: str) -> dict[int, int]:
        """Each file row's part of its session's stored bytes, counted as _SESSION_STORED
        counts the session's, so that they add up to it: the file's own chunks, its live
        pack member's share of its pack, and a share of the session's frames. The frames
        hold the sealed bytes of the files in no pack, one after another; each of those
        files takes a share in proportion to its sealed length, as a pack's members do
        (`shares`)."""
        rows = list(self.conn.execute(
            "SELECT f.id, f.stored_bytes, f.sealed_len, m.share FROM files f "
            "LEFT JOIN pack_members m ON m.file_id = f.id AND m.live "
            "WHERE f.session_id = ? ORDER BY f.stream_offset, f.id", (session_id,)))
        framed = [(file_id, sealed) for file_id, _, sealed, share in rows
                  if sealed and share is None]
        frame_bytes = int(db.one(self.conn, "SELECT coalesce(sum(length(data)), 0) "
                                 "FROM frames WHERE session_id = ?", (session_id,))[0])
        in_frames = dict(zip([file_id for file_id, _ in framed],
                             shares(frame_bytes, [sealed for _, sealed in framed]),
                             strict=True)) if framed else {}
        return {int(file_id): int(chunked) + int(share or 0) + in_frames.get(file_id, 0)
                for file_id, chunked, _, share in rows}

    def sessions_of_source(self, source: str) -> list[tuple[str, str, bool]]:
        """(id, native id, has frames) of every session of a source."""
        return [(str(r[0]), str(r[1]), bool(r[2])) for r in self.conn.execute(
            "SELECT id, native_id, EXISTS (SELECT 1 FROM frames WHERE session_id = s.id) "
            "FROM sessions s WHERE source = ? ORDER BY id", (source,))]

    def move_session(self, old: str, new: str, native_id: str,
                     file_ids: list[int] | None = None) -> None:
        """Give a session a new id (file_ids None), or move some of its files (no frames
        between them) to a new session of their own, made like it. The caller owns the
        transaction."""
        columns = [str(r[1]) for r in self.conn.execute("PRAGMA table_info(sessions)")]
        rest = [c for c in columns if c not in ("id", "native_id")]
        self.conn.execute(
            f"INSERT OR IGNORE INTO sessions (id, native_id, {', '.join(rest)}) "
            f"SELECT ?, ?, {', '.join(rest)} FROM sessions WHERE id = ?", (new, native_id, old))
        # A dictionary trained on the old session's bytes holds some of the new one's: a
        # forget of either must retire it.
        self.conn.execute("INSERT OR IGNORE INTO dictionary_sessions (dict_id, session_id) "
                          "SELECT dict_id, ? FROM dictionary_sessions WHERE session_id = ?",
                          (new, old))
        if file_ids is None:
            self.conn.execute("DELETE FROM dictionary_sessions WHERE session_id = ?", (old,))
            for table in ("files", "frames", "cursors", "pack_members"):
                self.conn.execute(f"UPDATE {table} SET session_id = ? WHERE session_id = ?",
                                  (new, old))
            self.conn.execute("DELETE FROM sessions WHERE id = ?", (old,))
            return
        marks = ", ".join("?" * len(file_ids))
        for table, key in (("files", "id"), ("pack_members", "file_id")):
            self.conn.execute(f"UPDATE {table} SET session_id = ? WHERE {key} IN ({marks})",
                              (new, *file_ids))
        for sid in (old, new):
            self.conn.execute(
                f"UPDATE sessions AS s SET raw_bytes = {_SESSION_RAW}, "
                f"stored_bytes = {_SESSION_STORED} WHERE id = ?", (sid,))

    def pieces_of(self, source: str, path: str, version: int) -> list[StoredFile]:
        """Every stored piece of one version of a file (the runs of a history), in order."""
        return [StoredFile(*row) for row in self.conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE source = ? AND path = ? AND version = ? "
            "ORDER BY base_offset", (source, path, version))]

    def set_pinned(self, session_id: str, pinned: bool) -> None:
        with self.transaction("pin"):
            if self.conn.execute("UPDATE sessions SET pinned = ? WHERE id = ? RETURNING id",
                                 (int(pinned), session_id)).fetchone() is None:
                raise NotFoundError(f"no session {session_id!r}")

    def mark_analyzed(self, session_id: str, now: float, *, started_at: float | None,
                      ended_at: float | None, seen_raw_bytes: int) -> bool:
        """Record that the digest (already committed in Tier 2) covers the session as it was.
        False when the session grew meanwhile: it stays open and is analyzed again later."""
        return not self.mark_all_analyzed([(session_id, started_at, ended_at, seen_raw_bytes)],
                                          now)

    def mark_all_analyzed(self, marks: list[tuple[str, float | None, float | None, int]],
                          now: float) -> list[str]:
        """mark_analyzed for each (session id, started at, ended at, raw bytes seen), in one
        transaction. Returns the ids of the sessions that grew meanwhile."""
        with self.transaction("mark-analyzed"):
            # One statement for the batch, its rows the sessions marked.
            marked = {sid for (sid,) in self.conn.executemany(
                "UPDATE sessions SET state = 'analyzed', analyzed_at = ?, "
                "started_at = coalesce(?, started_at), ended_at = coalesce(?, ended_at) "
                "WHERE id = ? AND state = 'open' AND raw_bytes = ? RETURNING id",
                [(now, started_at, ended_at, session_id, seen_raw_bytes)
                 for session_id, started_at, ended_at, seen_raw_bytes in marks])}
        return [m[0] for m in marks if m[0] not in marked]

    def mark_ended(self, session_id: str) -> None:
        with self.transaction("mark-ended"):
            self.conn.execute("UPDATE sessions SET ended_hint = 1 WHERE id = ?", (session_id,))

    # -- reading --------------------------------------------------------------------

    def _decompressor_for(self, dict_id: int | None) -> zstandard.ZstdDecompressor:
        if dict_id is None:
            return self._decompressor
        found = self._dict_decompressors.get(dict_id)
        if found is None:
            row = self.conn.execute("SELECT data FROM dictionaries WHERE id = ?",
                                    (dict_id,)).fetchone()
            if row is None:
                raise CorruptChunkError(f"dictionary {dict_id} is missing")
            found = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(row[0]))
            self._dict_decompressors[dict_id] = found
        return found

    def _unpack(self, data: bytes, raw_len: int, crc: int, where: str,
                dict_id: int | None = None) -> bytes:
        try:
            raw = self._decompressor_for(dict_id).decompress(data, max_output_size=raw_len)
        except zstandard.ZstdError as e:
            raise CorruptChunkError(f"{where}: {e}") from e
        # A frame written with its own content checksum was verified by zstd just now.
        if len(raw) != raw_len or (not data[4] & _CONTENT_CHECKSUM and crc32(raw) != crc):
            raise CorruptChunkError(f"{where} fails its checksum")
        return raw

    def _frame(self, session_id: str, frame_id: int, offset: int, raw_len: int,
               crc: int) -> bytes:
        """A sealed frame, decompressed. The last one is kept: a session's small files
        share frames, and reading them one after another must not unpack a frame again
        for each of them."""
        key = (session_id, frame_id, offset, raw_len, crc)
        if self._last_frame is not None and self._last_frame[0] == key:
            return self._last_frame[1]
        data, dict_id = db.one(self.conn, "SELECT data, dict_id FROM frames WHERE id = ?",
                               (frame_id,))
        raw = self._unpack(data, raw_len, crc, f"session {session_id} frame at {offset}",
                           dict_id)
        self._last_frame = (key, raw)
        return raw

    def read_file(self, file_id: int, known: StoredFile | None = None) -> Iterator[bytes]:
        """The stored content of one file piece, in pieces, each checked against its crc:
        first its part of the session's sealed frames, then the chunks appended since.
        `known`: the file's row, read in the same snapshot (it is not looked up again)."""
        if known is None:
            row = self.conn.execute(
                "SELECT session_id, sealed_len, stream_offset, chunks FROM files WHERE id = ?",
                (file_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no stored file {file_id}")
            session_id, sealed_len, start, chunks = row
        else:
            session_id, sealed_len, start, chunks = (known.session_id, known.sealed_len,
                                                     known.stream_offset, known.chunks)
        member = self.conn.execute(
            "SELECT pack_id, offset, raw_len, crc FROM pack_members WHERE file_id = ? AND live",
            (file_id,)).fetchone() if sealed_len else None
        if member is not None:
            yield self._member(file_id, *member)
        elif sealed_len:
            end, pos = start + sealed_len, start
            for frame_id, offset, raw_len, crc in list(self.conn.execute(
                    "SELECT id, stream_offset, raw_len, crc FROM frames WHERE session_id = ? "
                    "AND generation = (SELECT frame_gen FROM sessions WHERE id = ?) "
                    "AND stream_offset < ? AND stream_offset + raw_len > ? "
                    "ORDER BY stream_offset", (session_id, session_id, end, start))):
                if offset > pos:
                    raise CorruptChunkError(f"file {file_id}: gap in frames at {pos}")
                raw = self._frame(session_id, frame_id, offset, raw_len, crc)
                whole = pos == offset and end >= offset + raw_len
                if offset + raw_len <= end:
                    self._last_frame = None  # no later file of the session starts in it
                yield raw if whole else raw[pos - offset: end - offset]
                pos = min(end, offset + raw_len)
            if pos != end:
                raise CorruptChunkError(f"file {file_id}: frames end at {pos}, not {end}")
        if not chunks:
            return
        expected = sealed_len
        # Each blob is fetched by a statement of its own, so no read stays open while the
        # caller writes (a seal commits frames as it reads; an open read would pin a stale
        # snapshot and make its next write fail as busy).
        for chunk_id, offset, raw_len, crc in list(self.conn.execute(
                "SELECT id, offset, raw_len, crc FROM chunks WHERE file_id = ? ORDER BY offset",
                (file_id,))):
            if offset != expected:
                raise CorruptChunkError(f"file {file_id}: gap in chunks at byte {expected}")
            data = db.one(self.conn, "SELECT data FROM chunks WHERE id = ?", (chunk_id,))[0]
            yield self._unpack(data, raw_len, crc, f"file {file_id}: chunk at {offset}")
            expected += raw_len

    def _member(self, file_id: int, pack_id: int, offset: int, raw_len: int,
                crc: int) -> bytes:
        """A file's bytes in a pack, checked against their crc. The last pack read is kept,
        unpacked as far as reads have needed (PACK_RAW_BYTES at most): a member costs the
        unpacking of what comes before it, once, and its pack's other members read after it
        cost only what they add."""
        if self._last_pack is None or self._last_pack.pack_id != pack_id:
            self._last_pack = None  # its buffer is reused for the next pack (_pack_buffer)
            data, pack_raw_len = db.one(self.conn, "SELECT data, raw_len FROM packs WHERE id = ?",
                                        (pack_id,))
            self._last_pack = _Unpacking(pack_id, data, pack_raw_len, self._pack_buffer)
            self._pack_buffer = self._last_pack.buffer
        try:
            raw = self._last_pack.read(offset, raw_len)
        except zstandard.ZstdError as e:
            self._last_pack = None
            raise CorruptChunkError(f"file {file_id}: pack {pack_id}: {e}") from e
        if len(raw) != raw_len or crc32(raw) != crc:
            raise CorruptChunkError(f"file {file_id}: pack {pack_id} fails its checksum")
        return raw

    # -- sealing ----------------------------------------------------------------------

    def unsealed_ended(self, idle_before: float) -> list[str]:
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM sessions WHERE sealed = 0 AND state != 'evicted' "
            f"AND ({state_sql()}) != 'active'", {"idle_before": idle_before})]

    def mark_sealed_as_stored(self, idle_before: float, level: int = SEAL_LEVEL) -> int:
        """Mark sealed, in one transaction, the ended sessions whose bytes are all in frames
        of at least `level` already (stored sealed at ingest): nothing to recompress.
        Returns how many."""
        with self.transaction("seal-mark"):
            self.conn.execute(
                f"UPDATE sessions SET sealed = 1 WHERE sealed = 0 AND state != 'evicted' "
                f"AND seal_level >= :level AND ({state_sql()}) != 'active' AND NOT EXISTS "
                f"(SELECT 1 FROM files f WHERE f.session_id = sessions.id AND f.chunks > 0)",
                {"idle_before": idle_before, "level": level})
            return int(self.conn.changes())

    def to_deepen(self, level: int = DEEP_SEAL_LEVEL, max_raw_bytes: int | None = None,
                  limit: int | None = None) -> list[str]:
        """Sealed sessions whose frames are below `level`, oldest first: the least likely
        to grow again, so the work done on them lasts. Sessions small enough to pack are
        not (pack_sessions takes them). Also those with frames that use a retired dictionary
        (a forget cut short left them so)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM sessions s WHERE sealed = 1 AND raw_bytes > 0 AND raw_bytes <= "
            f":max AND (id IN ({_USES_RETIRED}) OR raw_bytes > :pack_max AND seal_level < :level) "
            "ORDER BY last_write LIMIT :limit",
            {"level": level, "pack_max": PACK_MEMBER_MAX,
             "max": max_raw_bytes if max_raw_bytes is not None else 2**62,
             "limit": -1 if limit is None else limit})]

    def drop_staged_frames(self, session_id: str | None = None) -> int:
        """Frames of a seal that was interrupted before it switched over (never read)."""
        sql = ("DELETE FROM frames WHERE generation != (SELECT frame_gen FROM sessions s "
               "WHERE s.id = frames.session_id)")
        with self.transaction("seal-clean"):
            if session_id is None:
                self.conn.execute(sql)
            else:
                self.conn.execute(sql + " AND session_id = ?", (session_id,))
            return int(self.conn.changes())

    def seal_session(self, session_id: str, level: int = SEAL_LEVEL,
                     frame_bytes: int = SEAL_FRAME_BYTES,
                     interrupted: Callable[[], bool] | None = None) -> int:
        """Recompress a session as one stream of large frames; returns bytes saved.

        An ended session is sealed once its chunks are all in; a sealed one is sealed again
        when `level` is above the level of its frames (see DEEP_SEAL_LEVEL).
        The new frames are staged, each in its own transaction, so a long seal never holds
        the store for long; one short transaction then switches the files over to them.
        If the session grew meanwhile, or `interrupted()` turns true (it is asked about
        once a MiB), the staged frames are dropped and the session stays as it was.
        Frames that use a retired dictionary are recompressed whatever their level (a
        forget retires a dictionary trained on the forgotten session's bytes); new frames
        use none.
        """
        self.drop_staged_frames(session_id)
        row = self.conn.execute(
            "SELECT frame_gen, stored_bytes, state, seal_level FROM sessions WHERE id = ?",
            (session_id,)).fetchone()
        if row is None or row[2] == "evicted":
            return 0
        gen, before, _, sealed_at = row
        if self.conn.execute(f"SELECT 1 FROM ({_USES_RETIRED}) WHERE session_id = ?",
                             (session_id,)).fetchone():
            sealed_at = 0
        snapshot = list(self.conn.execute(
            "SELECT id, raw_bytes, chunks FROM files WHERE session_id = ? ORDER BY id",
            (session_id,)))
        # Files in a pack stay there, unless they grew since.
        in_pack = {int(r[0]) for r in self.conn.execute(
            "SELECT file_id FROM pack_members WHERE session_id = ? AND live", (session_id,))}
        framed = [f for f in snapshot if f[0] not in in_pack or f[2]]
        if not any(chunks for _, _, chunks in framed) and (
                sealed_at >= level or not any(raw for _, raw, _ in framed)):
            with self.transaction("seal-mark"):
                self.conn.execute(
                    "UPDATE sessions SET sealed = 1, seal_level = CASE WHEN ? THEN "
                    "max(seal_level, ?) ELSE seal_level END WHERE id = ?",
                    (not any(raw for _, raw, _ in framed), level, session_id))
            return 0
        new_gen = gen + 1
        total = sum(raw for _, raw, _ in framed)
        writer = _FrameWriter(self, session_id, gen, new_gen, level, frame_bytes, total=total,
                              interrupted=interrupted or (lambda: False))
        layout = []
        offset = 0
        try:
            for file_id, raw_bytes, _ in framed:
                layout.append((file_id, offset, raw_bytes))
                offset += raw_bytes
                for piece in self.read_file(file_id):
                    writer.write(piece)
            writer.close()
        except BaseException as e:
            # Whatever stopped it, this seal's staged frames go now: left behind, they would
            # count against the session for good if it was evicted meanwhile (nothing seals
            # an evicted session again to clean them up).
            self._drop_generation(session_id, new_gen)
            if isinstance(e, (_Interrupted, _Abandoned)):
                return 0
            if isinstance(e, (LookupError, NotFoundError, CorruptChunkError)) and \
                    self._seal_base(session_id) != (gen, snapshot):
                return 0  # evicted, sealed or grown by another process meanwhile
            raise
        with self.transaction("seal"):
            staged = db.one(self.conn, "SELECT count(*), coalesce(sum(raw_len), 0) FROM frames "
                            "WHERE session_id = ? AND generation = ?", (session_id, new_gen))
            if self._seal_base(session_id) != (gen, snapshot) or staged != (
                    writer.frames, total):
                self.conn.execute("DELETE FROM frames WHERE session_id = ? AND generation = ?",
                                  (session_id, new_gen))
                return 0
            self.conn.execute("DELETE FROM frames WHERE session_id = ? AND generation = ?",
                              (session_id, gen))
            # A packed file that grew: its old bytes stay in the pack, dead, until the pack
            # is compacted or goes.
            self.conn.executemany("UPDATE pack_members SET live = 0 WHERE file_id = ? AND live",
                                  [(file_id,) for file_id, _, _ in layout])
            for file_id, start, length in layout:
                self.conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
                # The chunk trigger took their bytes off raw_bytes; put the sealed length back.
                self.conn.execute("UPDATE files SET raw_bytes = ?, sealed_len = ?, "
                                  "stream_offset = ? WHERE id = ?",
                                  (length, length, start, file_id))
            self.conn.execute("UPDATE sessions SET frame_gen = ?, sealed = 1, seal_level = ? "
                              "WHERE id = ?", (new_gen, level, session_id))
            after = db.one(self.conn, "SELECT stored_bytes FROM sessions WHERE id = ?",
                           (session_id,))[0]
        return int(before - after)

    # -- dictionaries ---------------------------------------------------------------------
    # Stores made by earlier versions hold zstd dictionaries (one per source, trained on
    # sampled sessions) and frames that use them. None is trained or used for new frames
    # any more (packs left them nothing to gain); what is here reads those frames and keeps
    # `forget` leaving no trace in those stores.

    def dictionaries_trained_on(self, session_id: str) -> list[int]:
        return [int(r[0]) for r in self.conn.execute(
            "SELECT dict_id FROM dictionary_sessions WHERE session_id = ? ORDER BY dict_id",
            (session_id,))]

    def retire_dictionaries(self, dict_ids: list[int]) -> None:
        """No new frame uses them (the caller owns the transaction)."""
        self.conn.executemany("UPDATE dictionaries SET retired = 1 WHERE id = ?",
                              [(d,) for d in dict_ids])

    def sessions_using(self, dict_ids: list[int], *, besides: str) -> list[str]:
        """Sessions other than `besides` with frames (current or staged) that use any of
        `dict_ids`."""
        marks = ",".join("?" * len(dict_ids))
        return [str(r[0]) for r in self.conn.execute(
            f"SELECT DISTINCT session_id FROM frames WHERE dict_id IN ({marks}) "
            "AND session_id != ? ORDER BY session_id", (*dict_ids, besides))]

    # -- packs ----------------------------------------------------------------------------

    def pack_candidates(self) -> list[tuple[str, int]]:
        """(id, raw bytes) of the sealed sessions small enough to pack and in no pack yet,
        in the order the sweep's age pass takes them: a pack then mostly goes whole."""
        return [(str(r[0]), int(r[1])) for r in self.conn.execute(
            f"SELECT id, raw_bytes FROM sessions s WHERE {_PACKABLE} "
            "ORDER BY coalesce(ended_at, last_write), id", {"max": PACK_MEMBER_MAX})]

    def pack_sessions(self, level: int = DEEP_SEAL_LEVEL, *, now: float,
                      interrupted: Callable[[], bool] | None = None,
                      min_raw_bytes: int | None = None) -> int:
        """Pack the candidates, PACK_RAW_BYTES at a time, as long as at least
        `min_raw_bytes` of them are waiting; returns how many sessions were packed. Each
        pack is compressed outside any transaction and switched to in one short one, like
        a seal; a session that changed meanwhile leaves its pack to a later pass."""
        interrupted = interrupted or (lambda: False)
        least = PACK_MIN_RAW_BYTES if min_raw_bytes is None else min_raw_bytes
        todo = self.pack_candidates()
        waiting = sum(raw for _, raw in todo)
        packed = taken = 0
        while taken < len(todo) and waiting >= least and not interrupted():
            group: list[str] = []
            size = 0
            while taken < len(todo) and (not group or size + todo[taken][1] <= PACK_RAW_BYTES):
                group.append(todo[taken][0])
                size += todo[taken][1]
                taken += 1
            waiting -= size
            packed += self._pack(group, level, now, interrupted)
        return packed

    def _pack(self, sessions: list[str], level: int, now: float,
              interrupted: Callable[[], bool]) -> int:
        bases = {sid: self._seal_base(sid) for sid in sessions}
        pieces = [(file_id, sid) for sid, base in bases.items() if base is not None
                  for file_id, raw, _ in base[1] if raw]
        try:
            built = _build_pack([(file_id, sid, self.read_file(file_id))
                                 for file_id, sid in pieces], level, interrupted)
        except (NotFoundError, CorruptChunkError, LookupError):
            built = None  # evicted or resealed meanwhile: a later pass packs the rest
        if built is None:
            return 0
        marks = ",".join("?" * len(sessions))
        with self.transaction("pack"):
            if any(self._seal_base(sid) != base for sid, base in bases.items()) or \
                    self.conn.execute(f"SELECT 1 FROM pack_members WHERE live AND session_id "
                                      f"IN ({marks})", sessions).fetchone():
                return 0
            self._store_pack(built, now)
            self.conn.execute(f"DELETE FROM frames WHERE session_id IN ({marks})", sessions)
            self.conn.execute(f"UPDATE sessions SET seal_level = ? WHERE id IN ({marks})",
                              (level, *sessions))
        return len(sessions)

    def _store_pack(self, built: _BuiltPack, now: float) -> None:
        """Insert a pack and its members, each member's share of its bytes in proportion
        to its length (the last takes what rounding leaves). The caller owns the
        transaction."""
        pack_id = self._insert_with_blob("packs", "created_at, raw_len, level",
                                         (now, built.raw_len, built.level), built.data)
        self.conn.executemany(
            "INSERT INTO pack_members (pack_id, offset, raw_len, crc, file_id, session_id, "
            "share) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(pack_id, m.offset, m.raw_len, m.crc, m.file_id, m.session_id, share)
             for m, share in zip(built.members, shares(
                 built.stored_len, [m.raw_len for m in built.members]), strict=True)])

    def pack_order(self) -> dict[str, int]:
        """A key for each packed session that sorts them as their packs hold them: read in
        that order, each pack is unpacked once."""
        return {str(sid): int(key) for sid, key in self.conn.execute(
            "SELECT session_id, min((pack_id << 36) + offset) FROM pack_members "
            "WHERE live GROUP BY session_id")}

    def dead_pack_bytes(self) -> int:
        """The shares of pack members evicted or resealed: what compact_packs frees, about."""
        return int(db.one(self.conn, "SELECT coalesce(sum(share), 0) FROM pack_members "
                          "WHERE NOT live")[0])

    def compact_packs(self) -> int:
        """Rewrite every pack holding dead members without them, at SEAL_LEVEL, inside the
        caller's transaction (the sweep's, so that what it evicts is really freed when it
        commits). Returns how many packs were rewritten."""
        dead = [int(r[0]) for r in self.conn.execute(
            "SELECT DISTINCT pack_id FROM pack_members WHERE NOT live ORDER BY pack_id")]
        for pack_id in dead:
            self._rewrite_now(pack_id)
        return len(dead)

    def _rewrite_now(self, pack_id: int, without: str | None = None) -> None:
        """Rewrite a pack inside the caller's transaction at SEAL_LEVEL (quick: the idle
        pass takes it to DEEP_SEAL_LEVEL again), with its live members less `without`'s."""
        built = self._rebuilt(pack_id, self._members_of(pack_id), SEAL_LEVEL, without=without)
        if built is None:
            raise CorruptChunkError(f"pack {pack_id} could not be rewritten")
        self._switch_pack(pack_id, built)

    def packs_to_repack(self, level: int = DEEP_SEAL_LEVEL) -> list[int]:
        """Packs below `level` (ingest's), and those whose live members hold less than half
        their bytes (the rest evicted), oldest first."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT p.id FROM packs p WHERE p.level < ? OR (SELECT coalesce(sum(raw_len), 0) "
            "FROM pack_members m WHERE m.pack_id = p.id AND m.live) * 2 < p.raw_len "
            "ORDER BY p.id", (level,))]

    def repack(self, pack_id: int, *, level: int = DEEP_SEAL_LEVEL,
               interrupted: Callable[[], bool] | None = None) -> bool:
        """Rewrite a pack at `level` with only its live members: compressed outside any
        transaction, switched to in a short one if its members are as they were. False if
        it was not (interrupted, or changed meanwhile)."""
        members = self._members_of(pack_id)
        built = self._rebuilt(pack_id, members, level, interrupted=interrupted)
        if built is None:
            return False
        with self.transaction("repack"):
            if self._members_of(pack_id) != members:
                return False
            self._switch_pack(pack_id, built)
        return True

    def _members_of(self, pack_id: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(
            "SELECT offset, raw_len, crc, file_id, session_id, live FROM pack_members "
            "WHERE pack_id = ? ORDER BY offset", (pack_id,))]

    def _rebuilt(self, pack_id: int, members: list[tuple[Any, ...]], level: int, *,
                 without: str | None = None, interrupted: Callable[[], bool] | None = None
                 ) -> _BuiltPack | _NoPack | None:
        """The pack at `level` with its live members, less session `without`'s."""
        keep = [m for m in members if m[5] and m[4] != without]
        if not keep:
            return _NoPack()
        return _build_pack([(file_id, sid, _lazily(self._member, file_id, pack_id, off, n, crc))
                            for off, n, crc, file_id, sid, _ in keep],
                           level, interrupted or (lambda: False))

    def _switch_pack(self, pack_id: int, built: _BuiltPack | _NoPack) -> None:
        """Replace a pack by its rebuilt form (the caller owns the transaction)."""
        if isinstance(built, _BuiltPack):
            created = db.one(self.conn, "SELECT created_at FROM packs WHERE id = ?",
                             (pack_id,))[0]
            self._store_pack(built, float(created))
        self.conn.execute("DELETE FROM packs WHERE id = ?", (pack_id,))

    def _seal_base(self, session_id: str) -> tuple[int, list[Any]] | None:
        """What a seal started from: the frame generation and the files' sizes. A seal may
        switch over only if these are unchanged, and the session is not evicted."""
        row = self.conn.execute("SELECT frame_gen, state FROM sessions WHERE id = ?",
                                (session_id,)).fetchone()
        if row is None or row[1] == "evicted":
            return None
        return int(row[0]), list(self.conn.execute(
            "SELECT id, raw_bytes, chunks FROM files WHERE session_id = ? ORDER BY id",
            (session_id,)))

    def _drop_generation(self, session_id: str, generation: int) -> None:
        with self.transaction("seal-drop"):
            self.conn.execute("DELETE FROM frames WHERE session_id = ? AND generation = ?",
                              (session_id, generation))

    def leaked_frames(self) -> list[tuple[str, int, int]]:
        """(session id, frame count, stored bytes) of frames no read can reach and no seal
        will switch to: those of an evicted session, and generations older than the
        session's current one. (Staged frames of a live seal are one generation newer.)"""
        return [(str(sid), int(n), int(size)) for sid, n, size in self.conn.execute(
            f"SELECT f.session_id, count(*), sum(length(f.data)) FROM {_LEAKED_FRAMES} "
            "GROUP BY f.session_id ORDER BY f.session_id")]

    def free_leaked_frames(self) -> list[tuple[str, int, int]]:
        """Delete the frames `leaked_frames` names (their trigger takes them off the
        totals). The caller owns the transaction."""
        leaked = self.leaked_frames()
        self.conn.execute(f"DELETE FROM frames WHERE id IN (SELECT f.id FROM {_LEAKED_FRAMES})")
        return leaked

    def kill_orphan_members(self) -> list[int]:
        """Mark dead the live pack members whose file row is gone (an earlier version left
        them so when a packed file its tool rewrites whole was written again), as
        drop_older_versions does now; returns their file ids. The caller owns the
        transaction."""
        return sorted(int(r[0]) for r in self.conn.execute(
            "UPDATE pack_members SET live = 0 WHERE live AND NOT EXISTS "
            "(SELECT 1 FROM files f WHERE f.id = pack_members.file_id) RETURNING file_id"))

    # -- eviction and forgetting --------------------------------------------------------

    def evict(self, session_id: str, now: float) -> int:
        """Drop a session's raw bytes, keep its row; returns its stored bytes (of a packed
        session, its share of the pack: freed once the pack is compacted). The caller owns
        the transaction."""
        freed = self.conn.execute(
            "SELECT stored_bytes FROM sessions WHERE id = ?", (session_id,)).fetchone()
        self.conn.execute(
            "DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE session_id = ?)",
            (session_id,))
        self.conn.execute("DELETE FROM frames WHERE session_id = ?", (session_id,))
        # Its bytes in a pack stay until the pack's last live member goes, or the pack is
        # rewritten without them (compact_packs).
        self.conn.execute("UPDATE pack_members SET live = 0 WHERE session_id = ? AND live",
                          (session_id,))
        self.conn.execute("UPDATE files SET raw_bytes = 0, sealed_len = 0, stream_offset = 0 "
                          "WHERE session_id = ?", (session_id,))
        self.conn.execute("UPDATE sessions SET state = 'evicted', evicted_at = ?, sealed = 0 "
                          "WHERE id = ?", (now, session_id))
        return int(freed[0]) if freed else 0

    def forget(self, session_id: str) -> None:
        """Remove every trace of a session, its cursors included (caller owns the transaction),
        and every dictionary trained on its bytes. DictionaryInUseError, before anything is
        deleted, if another session's frames still use one of those (see maintenance.forget:
        they are recompressed first)."""
        trained = self.dictionaries_trained_on(session_id)
        if trained and self.sessions_using(trained, besides=session_id):
            raise DictionaryInUseError(f"{session_id}: a dictionary trained on it is in use")
        self.conn.execute("PRAGMA secure_delete = ON")
        # Packs holding its bytes, its evicted ones too, are rewritten without them.
        for (pack_id,) in list(self.conn.execute(
                "SELECT DISTINCT pack_id FROM pack_members WHERE session_id = ?",
                (session_id,))):
            self._rewrite_now(pack_id, without=session_id)
        self.conn.execute(
            "DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE session_id = ?)",
            (session_id,))
        self.conn.execute("DELETE FROM frames WHERE session_id = ?", (session_id,))
        self.conn.execute("DELETE FROM files WHERE session_id = ?", (session_id,))
        # A file other sessions hold runs of too: its cursor passes to the
        # last run left, so the next ingest goes on from where the file was read to. Without
        # one it would read the file again from its start, over runs still stored. The
        # forgotten run then stays forgotten, like any other run of the file. No file row
        # is the cursor's (file_id 0): the next bytes begin one of their own (a new run, or
        # a session of their own for more of the forgotten run), not more of the last run
        # left's, which would then have a gap where the forgotten run's bytes were.
        self.conn.execute(
            "UPDATE cursors SET file_id = 0, session_id = ("
            " SELECT session_id FROM files WHERE files.source = cursors.source"
            " AND files.path = cursors.path AND files.version = cursors.version"
            " ORDER BY base_offset DESC LIMIT 1) "
            "WHERE session_id = ? AND EXISTS (SELECT 1 FROM files WHERE"
            " files.source = cursors.source AND files.path = cursors.path"
            " AND files.version = cursors.version)", (session_id,))
        self.conn.execute("DELETE FROM cursors WHERE session_id = ?", (session_id,))
        self.conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        self.conn.executemany("DELETE FROM dictionaries WHERE id = ?", [(d,) for d in trained])

    def reclaim(self, step_pages: int = 128) -> None:
        """Give freed pages back to the file system so the file really shrinks.

        The WAL is emptied first. On a full disk the WAL may have no room for the pages one
        pass over every free page moves (the sweep meant to make room would fail for want
        of it): then the pass is redone in small steps, each checkpointed away at once."""
        self.checkpoint()
        try:
            self._vacuum(0)  # 0: every free page
            self.checkpoint()
            return
        except apsw.FullError:
            pass
        free = db.one(self.conn, "PRAGMA freelist_count")[0]
        while free:
            self._vacuum(step_pages)
            self.checkpoint()
            free, before = db.one(self.conn, "PRAGMA freelist_count")[0], free
            if free >= before:
                break

    def _vacuum(self, pages: int) -> None:
        # incremental_vacuum frees one page per step: it must be stepped to the end.
        for _ in self.conn.execute(f"PRAGMA incremental_vacuum({int(pages)})"):
            pass

    # -- health -------------------------------------------------------------------------

    def check(self) -> list[str]:
        problems: list[str] = []
        for (msg,) in self.conn.execute("PRAGMA integrity_check"):
            if msg != "ok":
                problems.append(f"tier1 integrity: {msg}")
        raw, stored, chunks = db.one(self.conn, _STORE_SUMS)
        totals = self.totals()
        if (raw, stored, chunks) != (totals["raw_bytes"], totals["stored_bytes"],
                                     totals["chunks"]):
            problems.append(f"tier1 accounting: totals {totals} but chunks and frames hold "
                            f"raw={raw} stored={stored} count={chunks}")
        for (sid,) in self.conn.execute(
                f"SELECT s.id FROM sessions s WHERE s.raw_bytes != {_SESSION_RAW} "
                f"OR s.stored_bytes != {_SESSION_STORED}"):
            problems.append(f"tier1 accounting: session {sid} totals differ from its files")
        for (pack_id,) in self.conn.execute(
                "SELECT id FROM packs p WHERE NOT EXISTS (SELECT 1 FROM pack_members m "
                "WHERE m.pack_id = p.id AND m.live)"):
            problems.append(f"tier1: pack {pack_id} has no live member")
        for (fid,) in self.conn.execute(
                "SELECT m.file_id FROM pack_members m LEFT JOIN files f ON f.id = m.file_id "
                "WHERE m.live AND (f.id IS NULL OR f.session_id != m.session_id "
                "OR f.sealed_len != m.raw_len OR m.pack_id NOT IN (SELECT id FROM packs))"):
            problems.append(f"tier1: file {fid} and its bytes in a pack disagree")
        for (fid,) in self.conn.execute(
                "SELECT f.id FROM files f LEFT JOIN (SELECT file_id, sum(raw_len) r, "
                "sum(length(data)) st, count(*) n FROM chunks GROUP BY file_id) c "
                "ON c.file_id = f.id WHERE f.raw_bytes != f.sealed_len + coalesce(c.r, 0) "
                "OR f.stored_bytes != coalesce(c.st, 0) OR f.chunks != coalesce(c.n, 0)"):
            problems.append(f"tier1 accounting: file {fid} totals differ from its chunks")
        for (fid,) in self.conn.execute(
                "SELECT DISTINCT file_id FROM chunks WHERE file_id NOT IN (SELECT id FROM files)"):
            problems.append(f"tier1: chunks of file {fid} belong to no file")
        for (sid,) in self.conn.execute(
                "SELECT DISTINCT session_id FROM frames "
                "WHERE session_id NOT IN (SELECT id FROM sessions)"):
            problems.append(f"tier1: frames of {sid} belong to no session")
        for sid, dict_id in self.conn.execute(
                "SELECT DISTINCT session_id, dict_id FROM frames WHERE dict_id IS NOT NULL "
                "AND dict_id NOT IN (SELECT id FROM dictionaries)"):
            problems.append(f"tier1: frames of {sid} use dictionary {dict_id}, which is gone")
        for sid, n, size in self.leaked_frames():
            problems.append(f"tier1: session {sid} keeps {n} frames ({size} bytes) that no "
                            "read uses (evicted, or an older seal's); `check --repair` frees "
                            "them")
        # Packed files in the order their packs hold them: each pack is unpacked once.
        for fid, sid, path in list(self.conn.execute(
                "SELECT f.id, f.session_id, f.path FROM files f LEFT JOIN pack_members m "
                "ON m.file_id = f.id AND m.live WHERE f.chunks > 0 OR f.sealed_len > 0 "
                "ORDER BY m.pack_id, m.offset, f.id")):
            try:
                for _ in self.read_file(fid):
                    pass
            except CorruptChunkError as e:
                # The session and the path, which a user can act on (show, export, forget,
                # ingest again from the source); the store's own ids only follow.
                problems.append(f"tier1 chunk: {sid}, {path}: {e}")
        return problems


    # -- the sweep's candidates and its batched transactions (retention.py) ----------------

    def sweep_candidates(self, pass_name: str, params: dict[str, Any],
                         after: tuple[float, str], limit: int) -> list[tuple[str, int, int, float]]:
        """(id, raw bytes, stored bytes, order key) of the sessions a sweep pass may evict,
        in the order it takes them, after the keyset `after` (key, id). Passes: backstop
        (`cutoff`), budget, overflow (`idle_before`); each reads its own partial index."""
        return [(str(sid), int(raw), int(stored), float(key)) for sid, raw, stored, key in
                self.conn.execute(_SWEEP_SQL[pass_name], {**params, "after": after[0],
                                                          "after_id": after[1],
                                                          "limit": limit})]

    def ended_unanalyzed(self, idle_before: float) -> list[str]:
        """Ended, un-analyzed, unpinned sessions, oldest first (the overflow pass's)."""
        return [r[0] for r in self.conn.execute(_TO_ANALYZE_SQL, {"idle_before": idle_before})]

    def assume_analyzed(self, ids: list[str], now: float) -> None:
        """A dry run's stand-in for an analysis, inside its transaction."""
        self.conn.executemany("UPDATE sessions SET state = 'analyzed', analyzed_at = ? "
                              "WHERE id = ?", [(now, sid) for sid in ids])

    def evicted_at(self, when: float) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM sessions WHERE state = 'evicted' AND evicted_at = ? ORDER BY id",
            (when,))]

    def begin_write(self) -> None:
        """BEGIN IMMEDIATE, for a caller that batches its own transactions (the sweep);
        it raises apsw.BusyError when another process holds the store."""
        if self._checkpointer is not None:
            self._checkpointer.keep_up()
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def savepoint(self, name: str) -> Iterator[None]:
        """A savepoint inside the open transaction: undone alone if its block raises."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    def set_cache_spill(self, on: bool) -> None:
        """Off: uncommitted pages never reach the WAL (a dry run moves nothing on disk)."""
        self.conn.execute(f"PRAGMA cache_spill = {'ON' if on else 'OFF'}")

    def pragma_int(self, name: str) -> int:
        """page_size, page_count, freelist_count: what the sweep's projection reads."""
        if name not in ("page_size", "page_count", "freelist_count"):
            raise ValueError(name)
        return int(db.one(self.conn, f"PRAGMA {name}")[0])

    def checkpoint(self) -> None:
        """Empty the WAL into the database, and truncate it."""
        with (self._checkpointer.paused() if self._checkpointer is not None
              else contextlib.nullcontext()):
            for _ in self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"):
                pass

    # -- accounting checks and repairs (maintenance.py decides, these do) ------------------

    def accounting_drift(self) -> bool:
        """Whether any total differs from the chunks and frames it counts."""
        totals = self.conn.execute("SELECT raw_bytes, stored_bytes, chunks FROM totals"
                                   ).fetchone()
        sums = self.conn.execute(_STORE_SUMS).fetchone()
        if tuple(totals or ()) != tuple(sums or ()):
            return True
        return self.conn.execute(
            f"SELECT 1 FROM files f WHERE raw_bytes != {_FILE_RAW} "
            f"OR stored_bytes != {_FILE_STORED} OR chunks != {_FILE_CHUNKS} UNION ALL "
            f"SELECT 1 FROM sessions s WHERE raw_bytes != {_SESSION_RAW} "
            f"OR stored_bytes != {_SESSION_STORED} LIMIT 1").fetchone() is not None

    def recount(self) -> None:
        """Set every total from the chunks and frames themselves (files, sessions, the
        store). The caller owns the transaction."""
        self.conn.execute(f"UPDATE files AS f SET raw_bytes = {_FILE_RAW}, "
                          f"stored_bytes = {_FILE_STORED}, chunks = {_FILE_CHUNKS}")
        # The files trigger just moved session totals by each file's change: set them anew.
        self.conn.execute(f"UPDATE sessions AS s SET raw_bytes = {_SESSION_RAW}, "
                          f"stored_bytes = {_SESSION_STORED}")
        raw, stored, count = db.one(self.conn, _STORE_SUMS)
        self.conn.execute("UPDATE totals SET raw_bytes = ?, stored_bytes = ?, chunks = ?",
                          (raw, stored, count))

    def cross_tier_orphans(self, tier2_path: Path) -> tuple[list[str], list[str]]:
        """(digests whose session has no row here, analyzed sessions with no digest there),
        read with Tier 2 attached for the join."""
        self.conn.execute("ATTACH DATABASE ? AS t2", (str(tier2_path),))
        try:
            digests = [r[0] for r in self.conn.execute(
                "SELECT session_id FROM t2.digests WHERE session_id "
                "NOT IN (SELECT id FROM main.sessions) ORDER BY 1")]
            analyzed = [r[0] for r in self.conn.execute(
                "SELECT id FROM main.sessions WHERE state = 'analyzed' "
                "AND id NOT IN (SELECT session_id FROM t2.digests) ORDER BY 1")]
        finally:
            self.conn.execute("DETACH DATABASE t2")
        return digests, analyzed

    def files_without_session(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT session_id FROM files WHERE session_id NOT IN "
            "(SELECT id FROM sessions) ORDER BY 1")]

    def chunks_without_file(self) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT file_id FROM chunks WHERE file_id NOT IN (SELECT id FROM files) "
            "ORDER BY 1")]

    def restore_session_row(self, session_id: str) -> None:
        """A session row for stored files that lost theirs (caller owns the transaction)."""
        self.conn.execute(
            "INSERT INTO sessions (id, source, native_id, first_seen, last_write) "
            "SELECT session_id, min(source), ?, min(created_at), "
            "coalesce(max(mtime), min(created_at)) FROM files WHERE session_id = ? "
            "GROUP BY session_id", (session_id.split(":", 1)[-1], session_id))

    def delete_chunks_of(self, file_id: int) -> None:
        self.conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))

    def requeue_analysis(self, session_id: str) -> None:
        self.conn.execute("UPDATE sessions SET state = 'open', analyzed_at = NULL "
                          "WHERE id = ? AND state = 'analyzed'", (session_id,))

    def restore_evicted_row(self, session_id: str, source: str, *, analyzed_at: float,
                            started_at: float | None, ended_at: float | None,
                            now: float) -> None:
        """An evicted row for a digest that lost its session row."""
        self.conn.execute(
            "INSERT OR IGNORE INTO sessions (id, source, native_id, state, first_seen, "
            "last_write, started_at, ended_at, analyzed_at, evicted_at) "
            "VALUES (?, ?, ?, 'evicted', ?, ?, ?, ?, ?, ?)",
            (session_id, source, session_id.split(":", 1)[-1], analyzed_at,
             ended_at or analyzed_at, started_at, ended_at, analyzed_at, now))


# The sweep's candidates, in the order each pass takes them. A session's age runs from its
# end: the last record's time once analyzed, else its newest file's mtime (the end
# `sessions` shows) - so a backfill of old files is old at once.
_AGE = "coalesce(ended_at, last_write)"
_ENDED_OPEN = "NOT (ended_hint = 0 AND last_write > :idle_before)"
_SWEEP_SQL = {
    "backstop": (
        f"SELECT id, raw_bytes, stored_bytes, {_AGE} FROM sessions INDEXED BY sweep_by_age "
        f"WHERE state = 'analyzed' AND pinned = 0 AND {_AGE} < :cutoff "
        f"AND ({_AGE}, id) > (:after, :after_id) ORDER BY {_AGE}, id LIMIT :limit"),
    "budget": (
        "SELECT id, raw_bytes, stored_bytes, coalesce(analyzed_at, 0) FROM sessions "
        "INDEXED BY sweep_by_analyzed WHERE state = 'analyzed' AND pinned = 0 "
        "AND stored_bytes > 0 AND (coalesce(analyzed_at, 0), id) > (:after, :after_id) "
        "ORDER BY coalesce(analyzed_at, 0), id LIMIT :limit"),
    "overflow": (
        f"SELECT id, raw_bytes, stored_bytes, {_AGE} FROM sessions "
        f"INDEXED BY sweep_unanalyzed_by_age WHERE state = 'open' AND pinned = 0 "
        f"AND stored_bytes > 0 AND {_ENDED_OPEN} AND ({_AGE}, id) > (:after, :after_id) "
        f"ORDER BY {_AGE}, id LIMIT :limit"),
}
_TO_ANALYZE_SQL = (
    f"SELECT id FROM sessions INDEXED BY sweep_unanalyzed_by_age "
    f"WHERE state = 'open' AND pinned = 0 AND {_ENDED_OPEN} ORDER BY {_AGE}, id")


# The accounting rules, as Tier1.check states them: a file counts its chunks plus the part
# of its session's sealed stream or of a pack it owns (sealed_len); a session counts its
# files, its frames' compressed bytes and its live pack members' shares; the store counts
# every chunk, frame, pack and dictionary.
_FILE_RAW = ("(SELECT f.sealed_len + coalesce(sum(raw_len), 0) FROM chunks "
             "WHERE file_id = f.id)")
_FILE_STORED = "(SELECT coalesce(sum(length(data)), 0) FROM chunks WHERE file_id = f.id)"
_FILE_CHUNKS = "(SELECT count(*) FROM chunks WHERE file_id = f.id)"
_SESSION_RAW = "(SELECT coalesce(sum(raw_bytes), 0) FROM files WHERE session_id = s.id)"
_SESSION_STORED = ("((SELECT coalesce(sum(stored_bytes), 0) FROM files WHERE session_id = s.id)"
                   " + (SELECT coalesce(sum(length(data)), 0) FROM frames "
                   "WHERE session_id = s.id) + (SELECT coalesce(sum(share), 0) FROM "
                   "pack_members WHERE session_id = s.id AND live))")
# Sessions with frames that use a retired dictionary: a forget cut short left them so, and
# the idle recompression finishes its work.
_USES_RETIRED = ("SELECT DISTINCT session_id FROM frames WHERE dict_id IN "
                 "(SELECT id FROM dictionaries WHERE retired = 1)")
# A session (as `s`) a pack may take: sealed, small, in no pack, all its bytes in frames.
_PACKABLE = ("s.sealed = 1 AND s.state != 'evicted' AND s.raw_bytes BETWEEN 1 AND :max "
             "AND NOT EXISTS (SELECT 1 FROM pack_members m WHERE m.session_id = s.id "
             "AND m.live) AND NOT EXISTS (SELECT 1 FROM files f WHERE f.session_id = s.id "
             "AND f.chunks > 0)")
# Frames (as `f`) that no read can reach and no seal will switch to (see leaked_frames).
_LEAKED_FRAMES = ("frames f JOIN sessions s ON s.id = f.session_id "
                  "WHERE s.state = 'evicted' OR f.generation < s.frame_gen")
# A dictionary's bytes count in the store's stored bytes, not in a session's.
_STORE_SUMS = ("SELECT coalesce(sum(r), 0), coalesce(sum(st), 0) + (SELECT coalesce("
               "sum(length(data)), 0) FROM dictionaries), count(*) FROM ("
               "SELECT raw_len r, length(data) st FROM chunks "
               "UNION ALL SELECT raw_len, length(data) FROM frames "
               "UNION ALL SELECT raw_len, length(data) FROM packs)")


def shares(stored: int, raw_lengths: Sequence[int]) -> list[int]:
    """`stored` bytes shared out in proportion to `raw_lengths` (not all 0), the last
    taking what rounding leaves: what each member of a pack, or each file in its
    session's frames, counts of their compressed bytes."""
    total = sum(raw_lengths)
    parts = [stored * n // total for n in raw_lengths]
    parts[-1] += stored - sum(parts)
    return parts


def _frame_params(level: int, size: int) -> zstandard.ZstdCompressionParameters:
    # The exact frame size lets zstd size its tables to it, not to its maximum.
    params = zstandard.ZstdCompressionParameters.from_level(level, source_size=size)
    # Sealed frames carry zstd's own checksum: verified as they are decompressed, it
    # spares every read a second pass over the bytes for the crc.
    return zstandard.ZstdCompressionParameters.from_level(
        level, source_size=size, write_checksum=1,
        chain_log=min(params.chain_log, _MAX_CHAIN_LOG),
        hash_log=min(params.hash_log, _MAX_HASH_LOG))


class _Interrupted(Exception):
    pass


class _PackMember(msgspec.Struct, frozen=True):
    offset: int
    raw_len: int
    crc: int
    file_id: int
    session_id: str


class _BuiltPack(msgspec.Struct, frozen=True):
    raw_len: int
    data: list[bytes]
    """The compressed frame, in the pieces the compressor gave (stored without a join)."""
    members: list[_PackMember]
    level: int

    @property
    def stored_len(self) -> int:
        return sum(len(piece) for piece in self.data)


class _NoPack:
    """A pack rebuilt without members: it goes."""


class PackWriter:
    """Packs the small files of ended sessions as ingest stores them (a history's backfill),
    so that their bytes are compressed once, and what they share stored once.

    A file's bytes are counted in its row (sealed_len) as they are written, in ingest's
    transaction; they join the pack's stream when the file is done (`end_file`), and the
    pack is stored by `flush`, which must run in the same transaction: until then the rows
    claim bytes nothing holds. A file not ended (its savepoint rolled back) is dropped when
    the next one begins. The stream is compressed on a thread of its own (zstd releases
    the GIL), while ingest reads and stores the next files."""

    def __init__(self, tier1: Tier1, level: int = SEAL_LEVEL) -> None:
        self.tier1, self.level = tier1, level
        self._pending: tuple[int, str, list[bytes]] | None = None
        self._compressing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pack")
        # One for all the packs: its context keeps zstd's buffers (a pack's window and its
        # jobs, about 40 MiB), which a new one would allocate, and fault in, again.
        self._compressor = zstandard.ZstdCompressor(
            compression_params=_pack_params(level, _INGEST_PACK_THREADS))
        self._restart()

    def close(self) -> None:
        self._compressing.shutdown()

    def _restart(self) -> None:
        self._cobj = self._compressor.compressobj()
        self._out: list[bytes] = []
        # Each ended file: its id, its session and its length; their crcs come from the
        # batches they were handed over in, in order.
        self._files: list[tuple[int, str, int]] = []
        self._batches: list[Future[list[int]]] = []
        self._batch: list[list[bytes]] = []
        self._batch_len = 0
        self.raw_len = 0

    def begin_file(self, file_id: int, session_id: str) -> None:
        self._pending = (file_id, session_id, [])

    def write(self, file_id: int, piece: bytes) -> None:
        if self._pending is None or self._pending[0] != file_id:
            raise CorruptChunkError(f"file {file_id}: packed bytes before its file began")
        self.tier1._count_sealed(file_id, len(piece))  # noqa: SLF001 - its own store
        self._pending[2].append(piece)

    def end_file(self) -> None:
        if self._pending is None:
            return
        file_id, session_id, pieces = self._pending
        self._pending = None
        length = sum(len(piece) for piece in pieces)
        if length:
            self._files.append((file_id, session_id, length))
            self._batch.append(pieces)
            self._batch_len += length
            self.raw_len += length
            if self._batch_len >= _PACK_FEED_BYTES:
                self._hand_over()

    def _hand_over(self) -> None:
        """The files ended since the last hand-over go to the compressing thread (one: the
        files are compressed in the order they ended)."""
        if self._batch:
            self._batches.append(self._compressing.submit(
                _compress_into, self._cobj, self._out, self._batch))
            self._batch, self._batch_len = [], 0

    def discard(self) -> None:
        """Forget what was written since the last flush (its transaction rolled back)."""
        self._pending = None
        if self._files:
            wait(self._batches)
            self._restart()

    def flush(self, now: float) -> None:
        """Store the pack of the files ended so far (inside their transaction)."""
        self._pending = None
        if not self._files:
            return
        self._hand_over()
        crcs = [crc for batch in self._batches for crc in batch.result()]
        members, offset = [], 0
        for (file_id, session_id, length), crc in zip(self._files, crcs, strict=True):
            members.append(_PackMember(offset, length, crc, file_id, session_id))
            offset += length
        self._out.append(self._cobj.flush())
        built = _BuiltPack(self.raw_len, self._out, members, self.level)
        self.tier1._store_pack(built, now)  # noqa: SLF001 - its own store
        self.tier1._cap_seal_level(  # noqa: SLF001 - its own store
            self.level, sorted({m.session_id for m in members}))
        self._restart()


def _compress_into(cobj: Any, out: list[bytes], files: list[list[bytes]]) -> list[int]:
    """Feed files' pieces to a pack's compressor; returns each file's crc32."""
    crcs = []
    for pieces in files:
        crc = 0
        for piece in pieces:
            out.append(cobj.compress(piece))
            crc = crc32(piece, crc)
        crcs.append(crc)
    return crcs


def _pack_params(level: int, threads: int = 0) -> zstandard.ZstdCompressionParameters:
    # A window as large as a pack. zstd's long-distance matching found nothing more on
    # top of it (at level 7 or 9 on the bench's packs: the same size on the workstation
    # history, 2% larger on the large-session one) and at level 3 halved the speed.
    # `threads`: zstd's own, each compressing jobs of _PACK_JOB_BYTES.
    # No checksum of zstd's own: each member's crc32 is checked as it is read, while
    # zstd's covers the whole frame, is checked only by a read that reaches its end, and
    # is computed by every read (8% of unpacking a pack: 29.3 -> 27.2 ms for 32 MiB).
    # Packs written before keep theirs.
    quick = {"hash_log": _QUICK_PACK_HASH_LOG} if level == SEAL_LEVEL else {}
    return zstandard.ZstdCompressionParameters.from_level(
        _QUICK_PACK_MATCHER_LEVEL if quick else level, window_log=_PACK_WINDOW_LOG,
        write_checksum=0, threads=threads, job_size=_PACK_JOB_BYTES if threads else 0,
        **quick)


def _build_pack(pieces: list[tuple[int, str, Iterable[bytes]]], level: int,
                interrupted: Callable[[], bool]) -> _BuiltPack | None:
    """Compress files (file id, session id, their bytes) one after another into one zstd
    frame. None if `interrupted()` turned true (it is asked once a MiB) or there was
    nothing to pack. Only compressed output is held, and the
    window: memory stays flat whatever the files' sizes."""
    cobj = zstandard.ZstdCompressor(compression_params=_pack_params(level)).compressobj()
    out: list[bytes] = []
    members: list[_PackMember] = []
    pos = 0
    for file_id, session_id, content in pieces:
        crc = length = 0
        for piece in content:
            view = memoryview(piece)
            for at in range(0, len(view), _SEAL_STEP):
                step = view[at:at + _SEAL_STEP]
                out.append(cobj.compress(step))
                crc = crc32(step, crc)
                length += len(step)
                if interrupted():
                    return None
        members.append(_PackMember(pos, length, crc, file_id, session_id))
        pos += length
    if not pos:
        return None
    out.append(cobj.flush())
    return _BuiltPack(pos, out, members, level)


class _Unpacking:
    """A pack, unpacked as far as its reads have needed, straight into one buffer: no
    output is joined or copied on the way, only each member read. `buffer`: one a
    previous pack used, taken again if large enough (fresh memory costs a page fault a
    page, about a third of the unpacking)."""

    _STEP = 1024 * 1024  # raw bytes unpacked at a time: it stops soon after what is needed

    def __init__(self, pack_id: int, data: bytes, raw_len: int,
                 buffer: bytearray | None = None) -> None:
        self.pack_id = pack_id
        self.raw_len = raw_len
        self.buffer = buffer if buffer is not None and len(buffer) >= raw_len else (
            bytearray(raw_len))
        self._view = memoryview(self.buffer)
        self._unpacked = 0
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            data, read_size=self._STEP, read_across_frames=True)

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.raw_len)
        while self._unpacked < end:
            step = min(self._STEP, self.raw_len - self._unpacked)
            got = self._reader.readinto(self._view[self._unpacked:self._unpacked + step])
            if not got:
                break  # the pack holds less than it says: the caller's length check fails
            self._unpacked += got
        return bytes(self._view[offset:min(end, self._unpacked)])


def _lazily(read: Callable[..., bytes], *args: Any) -> Iterator[bytes]:
    """What `read(*args)` returns, read only when iterated."""
    yield read(*args)


class _Abandoned(Exception):
    """The session was evicted, or sealed by another process, while a seal staged frames."""


class _FrameWriter:
    """Streams a session into frames of `frame_bytes`, each staged in its own transaction.
    Only compressed output is held: memory stays flat however large the session is."""

    def __init__(self, tier1: Tier1, session_id: str, base_generation: int, generation: int,
                 level: int, frame_bytes: int, total: int,
                 interrupted: Callable[[], bool]) -> None:
        self.tier1, self.session_id, self.generation = tier1, session_id, generation
        self.base_generation = base_generation
        self.frames = 0
        self.level, self.frame_bytes, self.left = level, frame_bytes, total
        self.interrupted = interrupted
        self.stream_pos = 0
        self._start()

    def _start(self) -> None:
        self.size = min(self.frame_bytes, self.left)
        self.cobj = zstandard.ZstdCompressor(
            compression_params=_frame_params(self.level, self.size)).compressobj(size=self.size)
        self.out: list[bytes] = []
        self.taken = 0
        self.crc = 0

    def write(self, piece: bytes) -> None:
        view = memoryview(piece)
        while view:
            if self.size == 0:
                raise CorruptChunkError(f"session {self.session_id}: its files hold more "
                                        "bytes than their accounting says")
            take = view[: min(self.size - self.taken, _SEAL_STEP)]
            self.out.append(self.cobj.compress(take))
            if self.interrupted():
                raise _Interrupted
            self.crc = crc32(take, self.crc)
            self.taken += len(take)
            view = view[len(take):]
            if self.taken == self.size:
                self._finish()

    def _finish(self) -> None:
        if not self.taken:
            return
        self.out.append(self.cobj.flush())
        with self.tier1.transaction("seal-stage"):
            # Checked in the staging transaction itself: once an eviction has committed, no
            # frame of this seal can be added behind it.
            row = self.tier1.conn.execute("SELECT frame_gen, state FROM sessions WHERE id = ?",
                                          (self.session_id,)).fetchone()
            if row is None or row[1] == "evicted" or row[0] != self.base_generation:
                raise _Abandoned
            self.tier1._insert_with_blob(  # noqa: SLF001 - its own store
                "frames", "session_id, generation, stream_offset, raw_len, crc, level",
                (self.session_id, self.generation, self.stream_pos, self.taken, self.crc,
                 self.level), self.out)
        self.frames += 1
        self.stream_pos += self.taken
        self.left -= self.taken
        self._start()

    def close(self) -> None:
        if self.taken:
            raise CorruptChunkError(f"session {self.session_id}: its files held fewer bytes "
                                    "than their accounting says")
        if self.left:
            raise CorruptChunkError(f"session {self.session_id}: {self.left} bytes missing")


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, apsw.BusyError)
