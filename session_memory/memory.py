"""The library the CLI and the daemon stand on: settings, both stores, one method an action.

Like sqlite-utils' Database: every operation is a method here that tests can call directly;
`cli/` only parses options and prints.
"""

from __future__ import annotations

import bisect
import fcntl
import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from session_memory import formats, maintenance, readers, safe_write
from session_memory import ingest as ingest_mod
from session_memory.clock import Clock, SystemClock
from session_memory.config import Settings, Source
from session_memory.errors import EvictedError, NotFoundError, SessionMemoryError, UsageError
from session_memory.fswalk import OsWalker, Walker
from session_memory.store.tier1 import Cursor, Tier1

if TYPE_CHECKING:
    # Imported where used: analysis (its worker pool, the digest builder) would cost every
    # command's start-up 15 ms, ingest's too; Tier 2, retention, usage and prices another
    # 8 ms, which an ingest has no use for.
    from session_memory import retention
    from session_memory.analyze import run as analyze_run
    from session_memory.prices import PriceBook
    from session_memory.store.tier2 import Tier2

TIER1_FILE = "tier1.db"
TIER2_FILE = "tier2.db"
DAEMON_LOCK = "daemon.lock"
PRICE_CACHE_FILE = "prices-cache.json"
_IDS_A_QUERY = 500


class Memory:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 walker: Walker | None = None, read_only: bool = False) -> None:
        """`read_only`: the stores are opened only to read (the MCP server's view): they
        must exist already, and nothing here ever takes a write lock on them."""
        self.settings = settings
        self.read_only = read_only
        self.clock = clock or SystemClock()
        self.walker = walker
        self._tier1: Tier1 | None = None
        self._tier2: Tier2 | None = None
        self._ingestor: ingest_mod.Ingestor | None = None
        self._price_book: PriceBook | None = None

    # -- stores ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def tier1(self) -> Tier1:
        if self._tier1 is None:
            path = self.data_dir / TIER1_FILE
            if not self.read_only and not path.exists():
                # A new store has both tiers: the read-only views open both.
                _create_tier2(self.data_dir / TIER2_FILE)
            self._tier1 = Tier1(path, read_only=self.read_only)
            # A store from before runs were named by their start: renamed in place (Tier 2
            # opened only then: an ingest of a few new bytes has no use for it).
            if not self.read_only and maintenance.run_ids_to_migrate(self._tier1):
                maintenance.migrate_run_ids(self._tier1, lambda: self.tier2, self.settings)
        return self._tier1

    @property
    def tier2(self) -> Tier2:
        if self._tier2 is None:
            from session_memory.store.tier2 import Tier2

            self._tier2 = Tier2(self.data_dir / TIER2_FILE, read_only=self.read_only)
        return self._tier2

    def close(self) -> None:
        if self._ingestor is not None:
            self._ingestor.close()
            self._ingestor = None
        for store in (self._tier1, self._tier2):
            if store is not None:
                store.close()
        self._tier1 = self._tier2 = None

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def idle_before(self) -> float:
        """Sessions with no write since this moment have ended."""
        return self.clock.now() - self.settings.idle_seconds

    # -- ingest -----------------------------------------------------------------------

    @property
    def ingestor(self) -> ingest_mod.Ingestor:
        """One ingestor for the life of this object (the daemon's too): it remembers which
        odd files it has already logged, so a rescan does not repeat the same warning."""
        if self._ingestor is None:
            self._ingestor = ingest_mod.Ingestor(self.tier1, self.settings, clock=self.clock,
                                                 walker=self.walker)
        if self.walker is not None:
            self._ingestor.walker = self.walker
        self._ingestor.settings = self.settings  # a reloaded config reaches it here
        return self._ingestor

    def ingest(self, paths: list[Path] | None = None, *,
               progress: Callable[[int, int], None] | None = None) -> ingest_mod.IngestSummary:
        return self.ingestor.run(paths, progress=progress)

    def seal(self, *, workers: int = 1) -> int:
        """Recompress ended sessions into large frames (see Tier1.seal_session)."""
        return ingest_mod.seal_ended(self.tier1, self.settings, self.clock, workers=workers)

    def deep_seal(self, *, workers: int = 1) -> int:
        """Recompress sealed sessions harder (see Tier1.seal_session and DEEP_SEAL_LEVEL)."""
        return ingest_mod.deep_seal(self.tier1, self.clock, workers=workers)

    # -- sessions -------------------------------------------------------------------------

    def resolve_id(self, session_id: str) -> str:
        """An exact id, or a unique native id / prefix of one (for typing at a terminal)."""
        rows = self.tier1.ids_matching(session_id)
        if session_id in rows:
            return session_id
        if len(rows) == 1:
            return str(rows[0])
        if not rows:
            raise NotFoundError(f"no session {session_id!r}")
        raise NotFoundError(f"{session_id!r} matches several sessions: {', '.join(rows[:2])}, …")

    def short_ids(self, ids: Sequence[str], least: int = 8) -> dict[str, str]:
        """Each id cut to a beginning that `resolve_id` takes for it alone, with at least
        `least` characters of its native id (as git shortens hashes): for a table on a
        narrow terminal. An id Tier 1 does not hold stays whole."""
        stored = self.tier1.ids_and_native_ids()
        # As ids_matching matches a beginning: of an id or of a native id, without ASCII
        # case. One beginning longer than what an id shares with every other (its
        # neighbours in sorted order) is its alone. One lookup per id instead read every
        # session each time: a minute for `sessions` with 20,000 of them.
        folded_ids = sorted(_fold_case(sid) for sid, _ in stored)
        folded_natives = sorted(_fold_case(native) for _, native in stored)
        held = {sid for sid, _ in stored}
        short = {}
        for sid in ids:
            if sid not in held:
                short[sid] = sid
                continue
            folded = _fold_case(sid)
            at = bisect.bisect_left(folded_ids, folded)
            others = [*folded_ids[max(0, at - 1):at], *folded_ids[at + 1:at + 2]]
            at = bisect.bisect_left(folded_natives, folded)
            others += folded_natives[max(0, at - 1):at + 1]
            shared = max((len(os.path.commonprefix([folded, other])) for other in others),
                         default=0)
            short[sid] = sid[:max(sid.find(":") + 1 + least, shared + 1)]
        return short

    def sessions(self, *, state: str | None = None, source: str | None = None,
                 limit: int | None = None, project: str | None = None,
                 since: float | None = None) -> list[dict[str, Any]]:
        """Sessions, most recently written first; those with a digest with its `title` and
        `project`, and their `tokens` and `cost_usd` (from Tier 2's usage by the time of spend, so a
        response two sessions hold counts in one). `project` (a folder or a folder's name,
        see Tier2.session_ids) keeps analyzed sessions only: the digest knows the place.
        `since`: sessions still going at or after this time."""
        rows = [_public(s) for s in self._session_rows(state, source, limit, project, since)]
        return self._labelled(rows, [r["id"] for r in rows]
                              if limit is not None or project else None)

    def _labelled(self, rows: list[dict[str, Any]], ids: list[str] | None
                  ) -> list[dict[str, Any]]:
        """`rows` with their digest's `title` and `project`, `tokens` and `cost_usd` (see
        `sessions`); `ids`: theirs, or None for every session."""
        from session_memory import usage as usage_mod

        self.store_old_usage()
        spent = usage_mod.by_session(self.tier2.usage_by_session(ids), self.price_book)
        self.price_book.save()
        labels = self.tier2.labels(ids)
        for row in rows:
            row["title"], row["project"], started = labels.get(row["id"], (None, None, None))
            analyzed = row.get("analyzed_at") is not None
            if not analyzed and started is not None:
                # Digested while still running: its first record beats Tier 1's bound (its
                # earliest file's mtime, which is no start at all for a one-file session).
                row["started_at"] = started
            found = spent.get(row["id"])
            row["tokens"] = found["tokens"] if found else (
                dict.fromkeys(usage_mod.FIELDS, 0) if analyzed else None)
            row["cost_usd"] = found["cost_usd"] if found else (0.0 if analyzed else None)
        return rows

    def _session_rows(self, state: str | None, source: str | None, limit: int | None,
                      project: str | None, since: float | None) -> list[dict[str, Any]]:
        if project is None:
            return self.tier1.sessions(self.idle_before, state=state, source=source,
                                       limit=limit, since=since)
        with self.tier2.snapshot():
            ids = sorted(self.tier2.session_ids(project=project))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _IDS_A_QUERY):
            # The newest `limit` of all are among the newest `limit` of each batch.
            rows += self.tier1.sessions(self.idle_before, state=state, source=source,
                                        limit=limit, since=since,
                                        ids=ids[start:start + _IDS_A_QUERY])
        rows.sort(key=lambda r: (-r["last_write"], r["id"]))
        return rows[:limit]

    def show(self, session_id: str) -> dict[str, Any]:
        sid = self.resolve_id(session_id)
        with self.tier1.snapshot():  # the versions' figures add up to the session's
            session = self.tier1.session(sid, self.idle_before)
            # Each file's part of the session's stored bytes: of its chunks, of a pack, of
            # the session's frames.
            stored = self.tier1.stored_bytes_by_file(sid)
            versions = [
                {"path": f.path, "version": f.version, "base_offset": f.base_offset,
                 "raw_bytes": f.raw_bytes, "stored_bytes": stored.get(f.id, 0),
                 "chunks": f.chunks}
                for f in self.tier1.files(sid, latest_only=False)]
        row = self._labelled([_public(session)], [sid])[0]
        from session_memory.store.tier2 import linked  # as Tier2 is: when asked

        digest = self.tier2.get_digest(sid)
        # Other sessions named only while held (one forgotten since the digest was written).
        row["digest"] = digest and linked(digest, self.tier1.holds)
        row["versions"] = versions
        return row

    def pin(self, session_id: str, pinned: bool = True) -> str:
        sid = self.resolve_id(session_id)
        self.tier1.set_pinned(sid, pinned)
        return sid

    # -- export and restore -------------------------------------------------------------

    def _readable_files(self, sid: str, *, latest_only: bool = True) -> list[Any]:
        row = self.tier1.session(sid, self.idle_before)
        if row["state"] == "evicted":
            raise SessionMemoryError(
                f"{sid}: its raw bytes were evicted; only the digest remains (`show {sid}`)")
        return self.tier1.files(sid, latest_only=latest_only)

    def export(self, session_id: str, out_dir: Path, *, all_versions: bool = False
               ) -> list[Path]:
        """Write the session's files under out_dir at their paths relative to the source root.
        `all_versions`: also each version a file had before it was rewritten or cut short,
        at its path with `.v<N>` added (the newest keeps the path itself)."""
        sid = self.resolve_id(session_id)
        written = []
        with self.tier1.snapshot():
            files = self._readable_files(sid, latest_only=not all_versions)
            newest: dict[tuple[str, str], int] = {}
            for f in files:
                newest[f.source, f.path] = max(f.version, newest.get((f.source, f.path), 0))
            for f in files:
                path = f.path if f.version == newest[f.source, f.path] else f"{f.path}.v{f.version}"
                written.append(safe_write.write_file(out_dir, path, self.tier1.read_file(f.id),
                                                     overwrite=True))
        return written

    def restore(self, session_id: str, *, force: bool = False) -> list[Path]:
        """Put the files back where the agent tool keeps them. Files already there with the
        stored bytes are left alone; a file that differs is never overwritten unless forced."""
        sid = self.resolve_id(session_id)
        with self.tier1.snapshot():
            return self._restore(sid, force)

    def _restore(self, sid: str, force: bool) -> list[Path]:
        todo: list[tuple[Path, Any, list[Any] | None]] = []
        conflicts = []
        files = self._readable_files(sid)
        # A file made from a database row goes back where the tool's files were before
        # its database (formats/base.py, restore_path), in place of such a file, if any.
        back = {f.id: self._restore_path(f) for f in files}
        # Of such files that go back to one place (rows of one thing in two of a tool's
        # databases), the one written last, then the first by path.
        made: dict[tuple[str, str], Any] = {}
        for f in sorted((f for f in files if back[f.id] != f.path),
                        key=lambda f: (-(f.mtime or 0.0), f.path)):
            made.setdefault((f.source, back[f.id]), f)
        files = [f for f in files if back[f.id] == f.path or made[f.source, back[f.id]] is f]
        replaced = set(made)
        for f in files:
            if f.path == back[f.id] and (f.source, f.path) in replaced:
                continue
            source = self.settings.sources.get(f.source)
            if source is None:
                raise SessionMemoryError(f"{sid}: source {f.source!r} is not in the config")
            root = Path(os.path.realpath(source.root))
            target = root / safe_write.checked_relpath(back[f.id])
            pieces = self.tier1.pieces_of(f.source, f.path, f.version)
            if f.base_offset or len(pieces) > 1:
                # One run of a file that holds several: its slice, never the whole file.
                whole = self._slice_restore(sid, target, f, pieces)
                if whole is not None:
                    todo.append((root, f, whole))
                continue
            if os.path.lexists(target):
                if self._same_content(target, f.id):
                    continue
                conflicts.append(target)
            elif self._held_compressed(root, f):
                continue
            todo.append((root, f, None))
        if conflicts and not force:
            raise safe_write.TargetExistsError(
                f"{conflicts[0]} exists with other content; nothing restored "
                "(use --force to overwrite)")
        written = []
        for root, f, whole in todo:
            if whole is None:
                written.append(safe_write.write_file(root, back[f.id],
                                                     self.tier1.read_file(f.id), overwrite=force))
            else:
                written.append(safe_write.write_file(root, f.path, self._joined(whole),
                                                     overwrite=True))
        return written

    def _restore_path(self, f: Any) -> str:
        source = self.settings.sources.get(f.source)
        module = _format_module(source.format) if source is not None else None
        to: Callable[[str], str] | None = getattr(module, "restore_path", None)
        return to(f.path) if to is not None else str(f.path)

    def _slice_restore(self, sid: str, target: Path, f: Any, pieces: list[Any]
                       ) -> list[Any] | None:
        """How one run goes back into a file of runs without touching the others: None when
        it is there already; else the pieces to write, in order (a piece may be the Path of
        the file as it is, which the run then extends). Refuses, saying why, when the run
        cannot go back without overwriting other bytes; --force does not change that."""
        end = f.base_offset + f.raw_bytes
        if os.path.lexists(target):
            if target.is_symlink() or not target.is_file():
                raise SessionMemoryError(f"{target} is not a plain file; nothing restored")
            size = target.stat().st_size
            if size >= end and self._same_content(target, f.id, at=f.base_offset):
                return None
            if size == f.base_offset:
                return [target, f]  # the file ends where the run begins: put it back there
            if size < f.base_offset:
                raise SessionMemoryError(
                    f"{target} holds {size} bytes and {sid} begins at byte {f.base_offset}: "
                    "the runs before it are missing from the file; nothing restored")
            raise SessionMemoryError(
                f"{target} holds other bytes where {sid} belongs (bytes {f.base_offset}-{end}); "
                "writing it there would destroy other runs; nothing restored (`export` writes "
                "the run alone)")
        # The file is gone: it is rebuilt from every stored run of it, which must reach
        # from its first byte to the end of this run without a gap.
        chain: list[Any] = []
        pos = 0
        for piece in pieces:
            if piece.base_offset != pos or not piece.raw_bytes:
                break
            chain.append(piece)
            pos += piece.raw_bytes
        if pos < end:
            raise SessionMemoryError(
                f"{target} is gone and the runs before {sid} in it were evicted: restoring "
                "this run alone would put it at the wrong place; nothing restored (`export` "
                "writes the run alone)")
        return chain

    def _joined(self, pieces: list[Any]) -> Iterator[bytes]:
        for piece in pieces:
            if isinstance(piece, Path):
                with piece.open("rb") as f:
                    while block := f.read(1 << 20):
                        yield block
            else:
                yield from self.tier1.read_file(piece.id)

    def _held_compressed(self, root: Path, f: Any) -> bool:
        """Whether the file ingest last read for this stored path (its compressed twin, as a
        tool may archive a finished session) is there and holds the stored bytes."""
        cursor = self.tier1.cursor(f.source, f.path)
        if cursor is None or cursor.phys_path == f.path:
            return False
        twin = root / safe_write.checked_relpath(cursor.phys_path)
        if twin.is_symlink() or not twin.is_file():
            return False
        try:
            fd = os.open(twin, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            with readers.ZstdContent(fd) as content:
                return self._reads_as_stored(content, f.id, whole=True)
        except OSError:
            return False
        finally:
            os.close(fd)

    def _same_content(self, path: Path, file_id: int, at: int | None = None) -> bool:
        """Whether the file is the stored bytes; with `at`, whether it holds them there."""
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as existing:
            existing.seek(at or 0)
            return self._reads_as_stored(existing, file_id, whole=at is None)

    def _reads_as_stored(self, stream: Any, file_id: int, *, whole: bool) -> bool:
        """Whether `stream` reads as the stored file's bytes next; `whole`: and then ends."""
        for chunk in self.tier1.read_file(file_id):
            if stream.read(len(chunk)) != chunk:
                return False
        return not whole or stream.read(1) == b""

    def not_analyzed(self) -> int:
        """Sessions with raw bytes and no digest yet: usage does not count them until they
        are analyzed (when they end, or by `analyze --all`)."""
        digested = self.tier2.digest_ids()
        return sum(1 for s in self.tier1.sessions(self.idle_before)
                   if s["state"] not in ("analyzed", "evicted") and s["id"] not in digested)

    # -- status and health ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        from session_memory import retention

        ret = self.settings.retention
        free, total = retention.disk_space(self.data_dir)  # what the sweep's caps read
        return {
            "tier1": {"usage_bytes": self.tier1.usage_bytes(), "soft_cap_bytes": ret.raw_soft_cap,
                      "hard_cap_bytes": ret.raw_hard_cap, **self.tier1.totals()},
            "tier2": {"usage_bytes": self.tier2.usage_bytes(), "cap_bytes": ret.distilled_cap},
            "sessions": self.tier1.count_by_state(self.idle_before),
            "last_sweep": self.last_sweep(),
            "disk": {"free_bytes": free, "total_bytes": total},
            "daemon": daemon_status(self.data_dir),
            "data_dir": str(self.data_dir),
        }

    def last_sweep(self) -> dict[str, Any] | None:
        """The newest real sweep: a dry run changed nothing, so it is not the last sweep."""
        reports = self.tier2.reports(limit=1, real_only=True)
        return reports[0] if reports else None

    def check_warnings(self, limit: int = 50) -> list[str]:
        """What `check` notes without calling the stores unhealthy: a sweep another process
        is running now, sessions a tool keeps where no source reads them, and source files
        ingest skips (links, special files, unreadable)."""
        from session_memory import retention

        warnings: list[str] = []
        pending = retention.pending_sweep(self.tier1)
        if pending is not None and retention.sweep_running(self.tier1):
            warnings.append(f"sweep {pending['id']} is running in another process")
        odd: list[str] = []
        walker = self.walker or OsWalker()
        roots = {os.path.realpath(source.root) for source in self.settings.enabled_sources}
        for source in self.settings.enabled_sources:
            root = Path(os.path.realpath(source.root))
            # Where the tool keeps sessions that this source does not read (a format says),
            # unless another source reads them.
            unread = getattr(_format_module(source.format), "unread_places", None)
            if unread is not None:
                warnings += [f"{place}: {why}" for place, why in unread(root)
                             if os.path.realpath(place) not in roots]
            if not root.is_dir():
                continue
            fmt = formats.get(source.format)
            for entry in walker.walk(root, fmt.prune):
                if not ingest_mod.concerns(fmt, root, entry):
                    continue
                if entry.kind == "symlink":
                    odd.append(f"{root / entry.relpath}: symlink, not followed")
                elif entry.kind == "special":
                    odd.append(f"{root / entry.relpath}: not a regular file, skipped")
                elif entry.kind == "error":
                    odd.append(f"{root / entry.relpath}: {entry.detail}")
        warnings += odd[:limit]
        if len(odd) > limit:
            warnings.append(f"… and {len(odd) - limit} more odd source files")
        return warnings

    def check(self, *, repair: bool = False) -> list[str]:
        """Problems in either store and between them; `repair` first fixes what is safe."""
        if repair:
            self.repair()
        return (self.tier1.check() + self.tier2.check()
                + maintenance.cross_check(self.tier1, self.tier2))

    # -- analysis ---------------------------------------------------------------------

    def analyze(self, ids: list[str] | None = None, *, include_active: bool = False,
                force: bool = False) -> list[str]:
        """Digest sessions into Tier 2 (from Tier 1 raw only); returns the ids analyzed.
        No ids: ended, un-analyzed sessions (`include_active`: active ones too); `force`
        also redoes analyzed sessions whose raw bytes are still stored."""
        return self.analyze_report(ids, include_active=include_active, force=force).analyzed

    def analyze_report(self, ids: list[str] | None = None, *, include_active: bool = False,
                       force: bool = False, stop: Callable[[], bool] | None = None,
                       parallel: bool = True) -> analyze_run.AnalyzeResult:
        """As `analyze`, with what was skipped or failed, and why. `stop` and `parallel`:
        see analyze_run.analyze."""
        from session_memory.analyze import run as analyze_run

        resolved = [self.resolve_id(i) for i in ids] if ids else None
        result = analyze_run.analyze(self.tier1, self.tier2, self.settings, self.clock,
                                     self.idle_before, resolved, include_active=include_active,
                                     force=force, stop=stop, parallel=parallel)
        self.store_old_usage()
        return result

    def reanalyze_stale(self, limit: int = 64, *,
                        stop: Callable[[], bool] | None = None) -> list[str]:
        """Analyze again (from Tier 1) up to `limit` analyzed sessions whose digest an older
        analyzer made; evicted ones keep their digest. Returns the ids analyzed. The
        daemon's work: in this process, `stop` asked before each session."""
        from session_memory.analyze import run as analyze_run

        stale = self.tier2.stale_digest_ids(analyze_run.current_versions(self.settings))
        if not stale:
            return []
        ids = [r["id"] for r in self.tier1.sessions(self.idle_before, ids=sorted(stale))
               if r["state"] == "analyzed"][:limit]
        return self.analyze_report(ids, stop=stop, parallel=False).analyzed if ids else []

    def search(self, query: str, limit: int = 20, *, project: str | None = None,
               since: float | None = None) -> list[dict[str, Any]]:
        """Digests matching a full-text query, best first, each with a snippet; only those
        of `project` (a folder or a folder's name) and still going at or after `since`."""
        return self.tier2.search(query, limit, project=project, since=since)

    def transcript(self, session_id: str, offset: int = 0, limit: int = 50
                   ) -> dict[str, Any]:
        """A page of the session's messages and tool calls, in order, from its raw bytes in
        Tier 1: redacted as digests are, long tool output summarised (transcript.py)."""
        from session_memory import transcript
        from session_memory.analyze import run as analyze_run
        from session_memory.analyze import worker as analyze_worker

        sid = self.resolve_id(session_id)
        with self.tier1.snapshot():
            row = self.tier1.session(sid, self.idle_before)
            if row["state"] == "evicted":
                raise EvictedError(
                    f"{sid}: its raw transcript was evicted; only its digest remains "
                    f"(get_session, or `session-memory show {sid}`)")
            fmt = analyze_run.format_of(self.settings, row["source"])
            read = formats.transcript(fmt) if fmt else None
            if read is None:
                raise SessionMemoryError(f"{sid}: no transcript reader for source "
                                         f"{row['source']!r} (format {fmt or 'unknown'})")
            messages, more = transcript.page(
                read(analyze_worker.pieces(self.tier1, self.tier1.files(sid))), offset, limit)
        return {"id": sid, "messages": messages,
                "next_offset": offset + len(messages) if more else None}

    def usage(self, by: str = "day", since: str | float | None = None,
              until: str | float | None = None, *, project: str | None = None,
              breakdown: bool = False) -> list[dict[str, Any]]:
        """Tokens and cost per key of `by` (day, week, month: local time of TZ; model,
        source, project or session), counted in the quarter hour they were spent, from Tier 2
        alone: still there after the raw sessions are evicted. `since`/`until`: a date
        (YYYY-MM-DD, local, both ends inclusive), an ISO time, an age (7d) or epoch
        seconds. `project`: a substring of the project path, or a glob pattern.
        `breakdown`: each row's `models`. See usage.rows for the row shape."""
        from session_memory import usage as usage_mod

        if by not in usage_mod.BY:
            raise UsageError(f"usage by {by!r}: expected one of {', '.join(usage_mod.BY)}")
        start, end = self._usage_window(since, until)
        self.store_old_usage()
        groups, sessions = self.tier2.usage_groups(
            by, since_slot=_slot_floor(start), until_slot=_slot_ceil(end), project=project,
            offsets=usage_mod.local_offsets(*self.tier2.usage_slot_range()))
        rows = usage_mod.rows(groups, sessions, self.price_book, by, breakdown=breakdown)
        self.price_book.save()
        return rows

    def usage_blocks(self, since: str | float | None = None) -> list[dict[str, Any]]:
        """5-hour billing blocks (usage.blocks) over the sources whose format
        bills so, oldest first; the one running now is marked `active`."""
        from session_memory import usage as usage_mod

        start, _ = self._usage_window(since, None)
        sources = [s.name for s in self.settings.sources.values()
                   if getattr(_format_module(s.format), "BILLING_BLOCK_HOURS", None)]
        self.store_old_usage()
        slots = self.tier2.usage_by_slot(sources=sources, since_slot=_slot_floor(start))
        found = usage_mod.blocks(slots, self.price_book, self.clock.now())
        self.price_book.save()
        return found

    def _usage_window(self, since: str | float | None, until: str | float | None
                      ) -> tuple[float | None, float | None]:
        from session_memory import usage as usage_mod

        try:
            return (usage_mod.parse_when(since, now=self.clock.now()),
                    usage_mod.parse_when(until, end_of_day=True, now=self.clock.now()))
        except ValueError as e:
            raise UsageError(f"--since/--until {e}") from e

    @property
    def price_book(self) -> PriceBook:
        if self._price_book is None:
            from session_memory.prices import PriceBook

            self._price_book = PriceBook(self.settings.prices,
                                         self.data_dir / PRICE_CACHE_FILE
                                         if self.data_dir.is_dir() else None)
        return self._price_book

    def store_old_usage(self) -> int:
        """Give digests made before usage was kept by the hour (whose raw bytes are gone,
        so they cannot be analyzed again) their usage: each whole session in the slot of
        its start, marked as such. Returns how many. A read-only view leaves this to the next
        writer (the daemon does it after each analysis)."""
        if self.read_only:
            return 0
        found = self.tier2.digests_without_usage()
        if not found:  # as almost always: `sessions` and `usage` start without the analysis
            return 0
        from session_memory.analyze import run as analyze_run
        from session_memory.analyze.digest import whole_session_spend

        items = []
        for rowid, source, digest in found:
            fmt = analyze_run.format_of(self.settings, source)
            module = _format_module(fmt) if fmt else None
            items.append((rowid, whole_session_spend(
                digest, bool(getattr(module, "DIGEST_INPUT_INCLUDES_CACHE_READ", False)))))
        self.tier2.put_whole_session_usage(items)
        return len(items)

    # -- retention --------------------------------------------------------------------

    def sweep(self, *, dry_run: bool = False, parallel: bool = True,
              alive: Callable[[], None] | None = None,
              stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """One retention sweep (see retention.py); its report is stored in Tier 2.
        `parallel`: whether its overflow analysis may start worker processes (see
        analyze_run.analyze); the daemon's may not. `alive`: called before each session
        that analysis takes (the daemon feeds its watchdog there). The analysis is never
        stopped half-way: the evictions after it count on what it analyzed. `stop`: asked
        before each pass and each eviction; once it says so, the sweep ends there, what it
        evicted committed and reported."""
        from session_memory import retention

        def never_stop() -> bool:
            if alive is not None:
                alive()
            return False

        analyze: retention.Analyze = self.analyze_report
        if not parallel or alive is not None:
            analyze = functools.partial(self.analyze_report, parallel=parallel,
                                        stop=never_stop)
        return retention.Sweep(self.tier1, self.tier2, self.settings, self.clock.now(),
                               dry_run=dry_run, analyze=analyze, stop=stop).run()

    def reports(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Eviction reports, newest first."""
        return self.tier2.reports(limit)

    def report(self, report_id: str) -> dict[str, Any]:
        """One eviction report, by its id or a unique prefix of it."""
        found = self.tier2.report(report_id)
        if found is not None:
            return found
        ids = self.tier2.report_ids_starting(report_id)
        if len(ids) != 1:
            raise NotFoundError(f"no report {report_id!r}" if not ids else
                                f"{report_id!r} matches several reports")
        return self.tier2.report(ids[0]) or {}

    def forget(self, session_id: str) -> dict[str, Any]:
        """Remove a session's raw data and digest for good (secure delete, both tiers)."""
        try:
            sid = self.resolve_id(session_id)
        except NotFoundError:
            # Only a digest left (or a forget that was cut short): forget that.
            if not (self.tier2.has_digest(session_id)
                    or session_id in maintenance.pending_forgets(self.tier1)):
                raise
            sid = session_id
        cursors = self.tier1.cursors_of(sid)
        result = maintenance.forget(self.tier1, self.tier2, sid, self.clock.now())
        # The next ingest takes these again: the caller must say so.
        files, databases = self._read_again(cursors)
        return result | {"source_files": [str(p) for p in files],
                         "source_databases": [str(p) for p in databases]}

    def _read_again(self, cursors: list[Cursor]) -> tuple[list[Path], list[Path]]:
        """Of the files whose cursors a forgotten session held, those still where its agent
        tool keeps them that the next ingest reads again: those whose cursor went with it
        (not a file of runs, whose cursor passes to the run left before: the next ingest
        goes on from where it was, and only new bytes are stored). Then the databases that
        held its files made from rows (formats/base.py, VirtualFile), which still exist:
        the next ingest reads its rows again while the tool keeps them."""
        found: list[Path] = []
        databases: set[Path] = set()
        for cursor in cursors:
            source = self.settings.sources.get(cursor.source)
            if source is None or self.tier1.cursor(cursor.source, cursor.path) is not None:
                continue
            if (source.root / cursor.phys_path).is_file():
                found.append(source.root / cursor.phys_path)
            elif (database := self._database_of(source, cursor.phys_path)) is not None:
                databases.add(database)
        return sorted(found), sorted(databases)

    @staticmethod
    def _database_of(source: Source, phys_path: str) -> Path | None:
        """The database a stored file was made from, where it is one of a database's rows
        and that database is still there (a regular file: ingest reads no other)."""
        places = getattr(_format_module(source.format), "virtual_places", None)
        if places is None:
            return None
        first = phys_path.split("/", 1)[0]
        for place in places(Path(os.path.realpath(source.root))):
            if place.name == first and place.is_file() and not place.is_symlink():
                return Path(place)
        return None

    def repair(self) -> list[str]:
        """Fix what `check` finds between the tiers when that loses nothing; one line a fix."""
        return maintenance.repair(self.tier1, self.tier2, self.clock.now())


def _create_tier2(path: Path) -> None:
    from session_memory.store.tier2 import Tier2

    Tier2(path).close()


def _slot_floor(ts: float | None) -> int | None:
    from session_memory.store.tier2 import SLOT_SECONDS

    return None if ts is None else math.floor(ts / SLOT_SECONDS)


def _slot_ceil(ts: float | None) -> int | None:
    from session_memory.store.tier2 import SLOT_SECONDS

    return None if ts is None else math.ceil(ts / SLOT_SECONDS)


def _format_module(name: str) -> Any:
    """A format's module, or None for a format no longer built in."""
    try:
        return formats.get(name)
    except KeyError:
        return None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A session as the contract shows it (plus last_write): store internals left out."""
    return {k: v for k, v in row.items() if k not in ("native_id", "sealed")}


def daemon_status(data_dir: Path) -> dict[str, Any]:
    """Whether a daemon holds the lock on this data dir, and its pid."""
    lock = data_dir / DAEMON_LOCK
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {"running": False, "pid": None}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid_text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return {"running": True, "pid": int(pid_text) if pid_text.isdigit() else None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {"running": False, "pid": None}
    finally:
        os.close(fd)


_ASCII_CASE = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold_case(text: str) -> str:
    """`text` as SQLite's LIKE compares it: ASCII letters without case, nothing else."""
    return text.translate(_ASCII_CASE)
