"""Incremental ingest: a cursor per source file, only new bytes read, rewrites detected.

A file is read from the cursor's offset to its end in blocks; each block becomes a zstd
chunk. The cursor, the chunks and the session's accounting commit together, so a kill at
any moment leaves the cursor exactly at the last stored byte.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import xxhash
import zstandard

from session_memory import formats, log
from session_memory.clock import Clock, SystemClock
from session_memory.config import Settings, Source
from session_memory.formats.base import (
    HEAD_BYTES,
    FileRole,
    Format,
    VirtualFile,
    VirtualReader,
    newest_record_time,
)
from session_memory.fswalk import Entry, OsWalker, Walker
from session_memory.readers import (
    BLOCK_BYTES,
    FP_BYTES,
    BytesContent,
    Content,
    PlainContent,
    RunSplitter,
    ZstdContent,
    first_run_header,
    head,
)
from session_memory.store import tier1 as tier1_store
from session_memory.store.foreign import ForeignReadError
from session_memory.store.tier1 import (
    DEEP_SEAL_LEVEL,
    INGEST_LEVEL,
    SEAL_LEVEL,
    AppendPoint,
    Cursor,
    PackWriter,
    Tier1,
    crc32,
)

COMMIT_BYTES = 64 * 1024 * 1024
PREFETCH_FILES = 16
PREFETCH_BYTES = 32 * 1024 * 1024  # read and compressed ahead at most: memory stays bounded
BLOCKS_AHEAD = 2  # of one large file, compressing while the current block is written
GROUP_COMMIT_BYTES = 8 * 1024 * 1024
GROUP_COMMIT_FILES = 1000
"""Files one group commits at most (GROUP_COMMIT_BYTES is reached first unless they are
small appends): a pass over a few hundred grown sessions commits once, rather than
writing the pages they share (totals, the indexes' last leaves) into the WAL twice."""
INLINE_BYTES = 256 * 1024
"""New bytes of a file that grew, up to this many: read and compressed by the thread that
stores them (see Ingestor.run)."""
RECORD_TAIL_BYTES = 64 * 1024
"""The last bytes of a file that its newest record's time is looked for in (see
Ingestor._last_write): a file with none there keeps its mtime."""

LOCATED_MAX = 100_000
"""Named paths an ingestor remembers the place (Ingestor._located) and the role
(Ingestor._identify) of, at most; past it, it works them out each time."""

logger = log.get("session_memory.ingest")


class _Compressors(threading.local):
    """One compressor per thread: a zstd context must never be used by two at once."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=INGEST_LEVEL)
        # Frames stored sealed at once carry zstd's own checksum, as the sealer's do.
        self.sealing = zstandard.ZstdCompressor(level=SEAL_LEVEL, write_checksum=True)


_compressors = _Compressors()


Packed = tuple[bytes, int, int]
"""A block compressed, the crc32 of its raw bytes (both computed off the main thread), and
the zstd level it was compressed at."""


def compress(data: bytes, level: int = INGEST_LEVEL) -> Packed:
    if level == SEAL_LEVEL:
        return _compressors.sealing.compress(data), crc32(data), level
    return _compressors.compressor.compress(data), crc32(data), INGEST_LEVEL


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


fingerprint: Callable[[bytes], bytes] = xxhash.xxh3_128_digest
"""What a cursor keeps of the first and the last FP_BYTES it has seen of a file, to tell a
file that grew from one rewritten. xxh3-128: an append computes three, and this is thirty
times quicker than the blake2b the cursors of earlier versions kept (the function itself,
not a wrapper: a call of Python's own would cost more than the hash of 4 KiB)."""


LEGACY_FP_BYTES = 8
"""The length of an earlier version's fingerprints (blake2b), still in the cursors of a
store it wrote: a cursor's next append checks them as they were made, then keeps new ones."""


def _legacy_fingerprint(data: bytes) -> bytes:
    import hashlib  # here: only a store an earlier version wrote needs it (OpenSSL loads: 4 ms)

    return hashlib.blake2b(data, digest_size=LEGACY_FP_BYTES).digest()


def _seen(cursor: Cursor, head: bytes | None, tail: bytes,
          fps: tuple[bytes, bytes] | None = None) -> bool:
    """Whether `head` and `tail` (the first and the last FP_BYTES before the cursor's
    offset; head None: the file is shorter now) are the bytes the cursor fingerprinted.
    `fps`: their fingerprints, computed already."""
    if head is None:
        return False
    head_fp, tail_fp = fps if fps is not None else (fingerprint(head), fingerprint(tail))
    return _matches(head, head_fp, cursor.head_fp) and _matches(tail, tail_fp, cursor.tail_fp)


def _tail_after(tail: bytes, new: bytes) -> bytes:
    """The last FP_BYTES (all, if fewer) of the bytes `tail` ends once `new` follows them."""
    return (tail + new[-FP_BYTES:])[-FP_BYTES:]


def _matches(data: bytes, fp: bytes, kept: bytes | None) -> bool:
    if kept is not None and len(kept) == LEGACY_FP_BYTES:
        return _legacy_fingerprint(data) == kept
    return fp == kept


# Structs, not dataclasses: see store.tier1.Cursor.
class IngestSummary(msgspec.Struct):
    files_seen: int = 0
    files_changed: int = 0
    bytes_added: int = 0
    new_versions: int = 0
    skipped: int = 0
    errors: int = 0
    sessions: set[str] = msgspec.field(default_factory=set)
    ended: set[str] = msgspec.field(default_factory=set)
    """Sessions whose tool wrote their end record in this pass."""
    new_sessions: set[str] = msgspec.field(default_factory=set)
    """Sessions this pass stored the first bytes of."""

    def as_dict(self) -> dict[str, Any]:
        return {"files_seen": self.files_seen, "files_changed": self.files_changed,
                "bytes_added": self.bytes_added, "new_versions": self.new_versions,
                "skipped": self.skipped, "errors": self.errors,
                "sessions_changed": len(self.sessions)}


# Not frozen: the append path makes one of these a file (see Prefetched).
class Candidate(msgspec.Struct):
    """A file whose stat differs from its cursor: it has to be opened."""

    source: Source
    relpath: PurePosixPath
    path: str
    """`relpath` under the source's resolved root: built once, for the read ahead and sync."""
    stat: os.stat_result
    pending_bytes: int
    offset: int
    point: AppendPoint | None = None
    """Its append point as the pass's plan read it (see Ingestor._planned_point)."""
    unseen: bool = False
    """A whole walk's plan found no cursor for it (see Ingestor._unseen)."""
    virtual: VirtualFile | None = None
    """A file its format makes from a database row, not one on disk (`path` is empty)."""


# Not frozen: one is made for every file an append pass stores (see Candidate).
class Prefetched(msgspec.Struct):
    """A file's next block, read and compressed ahead while the previous file commits,
    with the bytes the cursor's fingerprints are checked against (the first and the last
    FP_BYTES before `offset`) and the fingerprints, all computed off this thread. Used only
    if the file's stat and the cursor's offset are still what they were."""

    offset: int
    st: os.stat_result
    raw: bytes
    last_write: float
    ended: bool
    """Both as Ingestor._last_write tells them."""
    packed: Packed | None
    """None for a file that goes into a pack (compressed there, with the others)."""
    head: bytes
    tail: bytes
    head_fp: bytes
    tail_fp: bytes
    next_tail: tuple[bytes, bytes]
    """The last FP_BYTES once `raw` is stored, and their fingerprint."""


Progress = Callable[[int], None]


class Ingestor:
    def __init__(self, tier1: Tier1, settings: Settings, *, clock: Clock | None = None,
                 walker: Walker | None = None) -> None:
        self.tier1 = tier1
        self.settings = settings
        self.clock = clock or SystemClock()
        self.walker = walker or OsWalker()
        self._reported: set[tuple[str, str]] = set()
        self._roots: dict[str, Path] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="compress")
        self._packer: PackWriter | None = None
        """While `run` stores a group of small files in one transaction: their pack."""
        self._plan_version: int | None = None
        """The store's data_version when the plan read its append points; None once they
        may be out of date (see _planned_point)."""
        self._planned_current = False
        """Whether no other process has written since then (checked as a group begins)."""
        self._walk_version: int | None = None
        """The store's data_version when a whole walk's plan read every cursor; None once
        what it read may be out of date (see _unseen)."""
        self._walk_current = False
        """As _planned_current, for _walk_version."""
        self._walk_paths: set[tuple[str, str]] = set()
        """(source, path) of the cursors of compressed files (stored under their plain
        twin's path) the whole walk's plan read, and of those it has come to (see _unseen)."""
        self._located: dict[str, tuple[Source, Path, PurePosixPath, str]] = {}
        """Named paths as _locate placed them under `_located_roots`: the watcher names the
        same files pass after pass (parsing a path costs more than the rest of its plan)."""
        self._located_roots: list[tuple[Source, Path, str]] = []
        self._synced: set[tuple[str, str]] = set()
        """(source, logical path) of the files this pass has come to so far, kept only while
        its plan's append points may be used: a whole walk's would hold every file's."""
        self._roles: dict[tuple[str, str], FileRole | None] = {}
        """The roles of named files (by format and path) that their format told from
        the path alone (see _identify)."""
        self._readers: list[VirtualReader] = []
        """The databases this pass's plan read (formats/base.py, open_virtual), each in the
        snapshot its plan saw, until the pass ends."""
        self._unstored: set[tuple[str, str]] = set()
        """(source, session) of the files made from rows that this pass could not store:
        their session's covering file is not stored either (VirtualFile.covering)."""

    def close(self) -> None:
        self._close_readers()
        self._pool.shutdown()

    def _close_readers(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers = []

    def _root(self, source: Source) -> Path:
        """The source root with links resolved, once per pass rather than once per file."""
        root = self._roots.get(source.name)
        if root is None:
            root = self._roots[source.name] = Path(os.path.realpath(source.root))
        return root

    # -- finding what changed ---------------------------------------------------------

    def plan(self, paths: list[Path] | None = None,
             summary: IngestSummary | None = None) -> list[Candidate]:
        """Walk the sources (or the given paths) and keep the files whose stat changed."""
        summary = summary or IngestSummary()
        self._roots.clear()  # a pass resolves each root once, and sees a reloaded config
        self._close_readers()
        with_databases, paths = self._databases_named(paths)
        # A whole walk reads every cursor at once; named paths (the watcher's few changed
        # files) look up only their append points, in one query, so their cost does not grow
        # with the store (and their appends need not look them up again: see _planned_point).
        entries: Iterable[tuple[Source, Path, Entry]] = self._entries(paths, summary)
        self._synced.clear()
        self._unstored.clear()
        self._plan_version = self._walk_version = None
        self._walk_paths = set()
        points: dict[tuple[str, str], AppendPoint] = {}
        if paths is None:
            version = self.tier1.data_version()  # first, as for named paths below
            # Not the cursors of files made from databases' rows: no walk comes to them
            # (their stamps are looked up by session, see _virtual_candidates).
            fmts: dict[str, Any] = {s.name: formats.get(s.format) for s in with_databases}
            cursors = self.tier1.cursors(besides=[
                (source.name, place.name + "/") for source in with_databases
                for place in fmts[source.name].virtual_places(self._root(source))])
            known = {(c.source, c.phys_path): c for c in cursors}
            # A file it finds no cursor for is stored under its own path, which only the
            # cursor of a compressed twin (stored under its plain name) can hold.
            self._walk_paths = {(c.source, c.path) for c in cursors if c.phys_path != c.path}
            self._walk_version = version
        else:
            entries = list(entries)  # gone through twice; a whole walk streams instead
            # Read first: a write by another process after it, even one the query below
            # sees, makes the points count as out of date.
            version = self.tier1.data_version()
            points = self.tier1.append_points(
                (source.name, str(entry.relpath)) for source, _, entry in entries
                if entry.kind == "file" and _is_utf8(str(entry.relpath)))
            known = {key: point.cursor for key, point in points.items()}
            self._plan_version = version
        out: list[Candidate] = []
        for source, root, entry in entries:
            if not concerns(formats.get(source.format), root, entry):
                continue
            if entry.kind != "file":
                self._report_odd(source, root, entry, summary)
                continue
            assert entry.stat is not None
            summary.files_seen += 1
            phys = str(entry.relpath)
            if not _is_utf8(phys):
                # Session ids and stored paths are text: a name that is no UTF-8 cannot be one.
                self._once(_shown(source, entry.relpath), "file name is not valid UTF-8, skipped",
                           source=source.name)
                summary.skipped += 1
                continue
            st = entry.stat
            cursor = known.get((source.name, phys))
            if cursor and cursor.same_stat(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
                continue
            offset = cursor.offset if cursor else 0
            out.append(Candidate(source, entry.relpath, os.path.join(root, phys), st,
                                 max(st.st_size - offset, 0), offset,
                                 points.get((source.name, phys)),
                                 cursor is None and paths is None))
        for source in with_databases:
            out += self._virtual_candidates(source, summary, walk=paths is None)
        # Whatever the read order, a file whose stamp stands for others' (formats/base.py,
        # VirtualFile.covering) comes after them: its cursor commits with or after theirs.
        return sorted(_read_order(out), key=lambda c: c.virtual is not None and c.virtual.covering)

    def _path_roots(self) -> list[tuple[Source, Path, str]]:
        """Each enabled root, as configured and with links resolved, as _locate takes them."""
        return [(source, self._root(source), prefix.rstrip("/") + "/")
                for source in self.settings.enabled_sources
                for prefix in dict.fromkeys((os.path.abspath(source.root),
                                             str(self._root(source))))]

    def _placed(self, paths: list[Path]
                ) -> list[tuple[Path, tuple[Source, Path, PurePosixPath, str] | None]]:
        """Each of `paths` but a database a source reads (formats/base.py, virtual_places),
        with where it lies under an enabled source root (None: under none)."""
        roots = self._path_roots()
        _, paths_left = self._databases_named(paths)
        return [(p, _locate(os.path.abspath(p), roots)) for p in paths_left or []]

    def outside_roots(self, paths: list[Path]) -> list[Path]:
        """Those of `paths` under no enabled source root, nor a database a source reads:
        no pass would read them."""
        return [path for path, placed in self._placed(paths) if placed is None]

    def not_session_files(self, paths: list[Path]) -> list[tuple[Path, Source]]:
        """Files among `paths` (not folders: a walk judges what they hold) that the source
        whose root holds them takes for no session's file, with that source: a pass
        passes them by (a root may be wide: one format's is the home folder)."""
        found = []
        for path, placed in self._placed(paths):
            if placed is None:
                continue
            source, root, relpath, full = placed
            fmt = formats.get(source.format)
            try:
                fd = _open(full)  # a FIFO is not waited on for a writer
            except OSError:
                # A link, or unreadable: the pass reports it as it is, but a link its source
                # has no concern with (another name under a wide root), which it passes by.
                if os.path.islink(full) and not concerns(fmt, root, Entry(relpath, "symlink")):
                    found.append((path, source))
                continue
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode) and fmt.identify(
                        relpath, functools.partial(head, fd, relpath)) is None:
                    found.append((path, source))
            finally:
                os.close(fd)
        return found

    def _databases_named(self, paths: list[Path] | None
                         ) -> tuple[list[Source], list[Path] | None]:
        """The sources whose database (formats/base.py, open_virtual) this pass reads: all
        of them for a whole walk; else those one of whose virtual_places is named (the
        watcher saw it written), those paths taken out of the rest."""
        sources = [s for s in self.settings.enabled_sources
                   if hasattr(formats.get(s.format), "open_virtual")]
        if paths is None or not sources:
            return sources, paths
        places: dict[str, Source] = {}
        for source in sources:
            fmt: Any = formats.get(source.format)
            for place in fmt.virtual_places(self._root(source)):
                places[os.path.abspath(place)] = source
        named = {places[p].name: places[p] for p in map(os.path.abspath, paths) if p in places}
        return list(named.values()), [p for p in paths if os.path.abspath(p) not in places]

    def _virtual_candidates(self, source: Source, summary: IngestSummary, *,
                            walk: bool) -> list[Candidate]:
        """The files a source's databases hold that differ from those stored: compared by
        their stamps, none read yet (sync reads each, in the same snapshot)."""
        fmt: Any = formats.get(source.format)
        out: list[Candidate] = []
        for database in fmt.virtual_databases(self._root(source)):
            out += self._database_candidates(source, fmt, database, summary, walk=walk)
        return out

    def _database_candidates(self, source: Source, fmt: Any, database: Path,
                             summary: IngestSummary, *, walk: bool) -> list[Candidate]:
        out: list[Candidate] = []
        try:
            reader: VirtualReader = fmt.open_virtual(database)
            self._readers.append(reader)

            def stored(prefix: str, native: str | None) -> dict[str, int | None]:
                return self.tier1.cursor_stamps(
                    source.name, prefix, None if native is None else f"{source.name}:{native}")

            for vf in reader.changed(stored, self.clock.now(), walk=walk):
                summary.files_seen += 1
                if vf.unreadable is not None:
                    # Named as the row's file in the database's folder (db.parent/relpath).
                    self._once(str(reader.path.parent / vf.relpath), "row not read, skipped",
                               source=source.name, reason=vf.unreadable)
                    summary.skipped += 1
                    continue
                out.append(Candidate(source, PurePosixPath(vf.relpath), "", _virtual_stat(vf),
                                     0, 0, virtual=vf))
        except ForeignReadError as e:
            # Once until it is read again: a database locked for a while is one line.
            self._once(str(e.path), "database not read" if e.odd else
                       "cannot read the database now; the next pass tries again",
                       source=source.name, reason=e.reason,
                       level="warning" if e.odd else "error")
            if e.odd:
                summary.skipped += 1
            else:
                summary.errors += 1
            return out
        self._reported = {k for k in self._reported if k[0] != str(database)}
        return out

    def _entries(self, paths: list[Path] | None,
                 summary: IngestSummary) -> Iterator[tuple[Source, Path, Entry]]:
        sources = self.settings.enabled_sources
        if paths is None:
            for source in sources:
                root = self._root(source)
                if root.is_dir():
                    for entry in self.walker.walk(root, formats.get(source.format).prune):
                        yield source, root, entry
            return
        roots = self._path_roots()
        if roots != self._located_roots:
            self._located.clear()
            self._located_roots = roots
        for path in paths:
            name = os.fspath(path)
            found = self._located.get(name)
            if found is None:
                found = _locate(os.path.abspath(name), roots)
                if found is None:
                    logger.error("not under any enabled source root", path=name)
                    summary.errors += 1
                    continue
                # Where an absolute path lies does not change while the roots stay.
                if name.startswith("/") and len(self._located) < LOCATED_MAX:
                    self._located[name] = found
            source, root, rel, full = found
            try:
                st = os.lstat(full)
            except OSError as e:
                logger.error("cannot read path", path=_shown(source, rel), reason=e.strerror)
                summary.errors += 1
                continue
            if stat.S_ISDIR(st.st_mode):
                fmt = formats.get(source.format)
                for entry in self.walker.walk(root / rel, fmt.prune):
                    yield source, root, Entry(rel / entry.relpath, entry.kind, entry.stat,
                                              entry.detail)
            elif stat.S_ISREG(st.st_mode):
                yield source, root, Entry(rel, "file", st)
            elif stat.S_ISLNK(st.st_mode):
                yield source, root, Entry(rel, "symlink", st)
            else:
                yield source, root, Entry(rel, "special", st)

    def _report_odd(self, source: Source, root: Path, entry: Entry,
                    summary: IngestSummary) -> None:
        shown = _shown(source, entry.relpath)
        if entry.kind == "symlink":
            target = os.path.realpath(root / entry.relpath)
            inside = target == str(root) or target.startswith(str(root) + os.sep)
            self._once(shown, "symlink not followed", source=source.name,
                       target=target, outside_root=not inside)
        elif entry.kind == "special":
            self._once(shown, "not a regular file, skipped", source=source.name)
        else:
            self._once(shown, "skipped", source=source.name, reason=entry.detail, level="error")
            summary.errors += 1
            return
        summary.skipped += 1

    def _once(self, shown: str, message: str, level: str = "warning", **kw: Any) -> None:
        """One log line per file and reason, not one per rescan. `shown`: see _shown."""
        key = (shown, message)
        if key not in self._reported:
            self._reported.add(key)
            getattr(logger, level)(message, path=shown, **kw)

    # -- one pass ---------------------------------------------------------------------

    def run(self, paths: list[Path] | None = None, *,
            progress: Callable[[int, int], None] | None = None,
            stop: Callable[[], bool] | None = None) -> IngestSummary:
        """One pass: `session-memory ingest`'s and the daemon's alike. `stop` is asked
        before each file; once it says so, what is stored so far commits and the pass ends
        (the next one takes up the rest)."""
        summary = IngestSummary()
        # The databases' snapshots (opened by the plan) last one pass, no longer: closed
        # however the pass ends, in its plan too.
        try:
            todo = self.plan(paths, summary)
            total = sum(c.pending_bytes for c in todo)
            done = 0

            def step(n: int) -> None:
                nonlocal done
                done += n
                if progress:
                    progress(done, max(total, done))

            self._packer = PackWriter(self.tier1)
            try:
                self._run(todo, summary, step, self._packer, stop)
            finally:
                self._packer.close()
                self._packer = None
        finally:
            self._close_readers()
        return summary

    def _run(self, todo: list[Candidate], summary: IngestSummary, step: Progress,
             packer: PackWriter, stop: Callable[[], bool] | None) -> None:
        def store_pack(failed: type[BaseException] | None, *_: object) -> bool:
            """Before a group commits, the pack its files are in is stored with them."""
            if failed is None:
                packer.flush(self.clock.now())
            else:
                packer.discard()
            return False

        # Read and compress files ahead on the pool while this thread commits: enough of
        # them that the pool never waits for this thread's many small commits.
        ahead: deque[tuple[Future[Prefetched | None] | None, int]] = deque()
        ahead_bytes = submitted = 0
        group_bytes = group_files = 0
        with contextlib.ExitStack() as group:  # an error rolls the open group back
            for cand in todo:
                if stop is not None and stop():
                    break
                while submitted < len(todo) and (not ahead or (
                        len(ahead) < PREFETCH_FILES and ahead_bytes < PREFETCH_BYTES)):
                    nxt = todo[submitted]
                    size = min(nxt.pending_bytes, BLOCK_BYTES)
                    # A few new KB of a file that grew are read and compressed by sync, when
                    # their turn comes: in less time than a thread's round trip would take.
                    ahead.append((self._pool.submit(self._prefetch, nxt)
                                  if nxt.virtual is None and (size > INLINE_BYTES
                                                              or not nxt.offset) else None,
                                  size))
                    ahead_bytes += size
                    submitted += 1
                current, size = ahead.popleft()
                ahead_bytes -= size
                if cand.virtual is not None and cand.virtual.covering and (
                        cand.source.name, cand.virtual.session) in self._unstored:
                    continue  # its stamp would pass over the rows not stored
                # Small files commit together: one commit per file would write the same
                # metadata pages (totals, indexes) over and over for a few KB of data each.
                if cand.pending_bytes < GROUP_COMMIT_BYTES and not group_files:
                    group.enter_context(self.tier1.transaction("ingest"))
                    group.push(store_pack)
                    version = self.tier1.data_version()
                    self._planned_current = self._plan_version == version
                    self._walk_current = self._walk_version == version
                elif cand.pending_bytes >= GROUP_COMMIT_BYTES:
                    group.close()
                    group_bytes = group_files = 0
                if cand.virtual is not None:
                    self._sync_virtual(cand.source, cand.relpath, cand.virtual, summary, step)
                else:
                    self.sync(cand.source, cand.relpath, summary, on_bytes=step,
                              prefetched=current.result() if current is not None else None,
                              planned=cand.point, path=cand.path, unseen=cand.unseen)
                if cand.pending_bytes < GROUP_COMMIT_BYTES:
                    group_bytes += cand.pending_bytes
                    group_files += 1
                    # A pack is as large as a group can make it: its sessions share more.
                    if packer.raw_len >= tier1_store.PACK_RAW_BYTES or (
                            group_bytes - packer.raw_len >= GROUP_COMMIT_BYTES) or (
                            group_files >= GROUP_COMMIT_FILES and not packer.raw_len):
                        group.close()
                        group_bytes = group_files = 0

    def _prefetch(self, cand: Candidate) -> Prefetched | None:
        if cand.relpath.name.endswith(".zst"):
            return None
        try:
            fd = _open(cand.path)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            return self._read_ahead(fd, cand.offset, st, formats.get(cand.source.format))
        except OSError:
            return None
        finally:
            os.close(fd)

    def _read_ahead(self, fd: int, offset: int, st: os.stat_result,
                    fmt: Format) -> Prefetched | None:
        """The next block from `offset` compressed, with the bytes before it that the
        cursor's fingerprints cover; None when there is no new byte (or fewer than
        `offset`: the file was cut, which sync works out). The bytes are those `st` counts
        (new ones since are the next pass's: the stat stored with them differs by then)."""
        new = min(BLOCK_BYTES, st.st_size - offset)
        if new <= 0:
            return None
        start = max(0, offset - FP_BYTES)
        # No more than the stat says is there: a read allocates all it asks for.
        data = os.pread(fd, offset - start + new, start)
        tail, raw = data[:offset - start], data[offset - start:]
        if not raw:
            return None
        tail_fp = fingerprint(tail)
        if start:
            head = os.pread(fd, FP_BYTES, 0)
            head_fp = fingerprint(head)
        else:  # up to FP_BYTES from the start, the head is the tail: one fingerprint of both
            head, head_fp = tail, tail_fp
        last_write, ended = self._last_write(offset, st, fd, fmt,
                                             raw if len(raw) == st.st_size else None)
        next_tail = _tail_after(tail, raw)
        return Prefetched(offset, st, raw, last_write, ended,
                          None if self._packs(ended, st) else compress(raw, self._level(ended)),
                          head, tail, head_fp, tail_fp, (next_tail, fingerprint(next_tail)))

    def _taken_whole(self, data: bytes, st: os.stat_result, fmt: Format) -> Prefetched:
        """What _read_ahead gives for a file read whole from its start, for bytes in hand,
        compressed whether or not a pack takes them (a snapshot's never does)."""
        empty = fingerprint(b"")
        last_write, ended = self._last_write(0, st, None, fmt, data)
        next_tail = _tail_after(b"", data)
        return Prefetched(0, st, data, last_write, ended, compress(data, self._level(ended)),
                          b"", b"", empty, empty, (next_tail, fingerprint(next_tail)))

    def _last_write(self, offset: int, st: os.stat_result, fd: int | None,
                    fmt: Format, whole: bytes | None = None) -> tuple[float, bool]:
        """When the file was last written, as far as can be told, and whether its session
        has ended. The time is its mtime or, for a file read from its start of a tool that
        stamps its records, its newest record's time where that is older than
        idle_seconds. A history copied or restored without its mtimes (`cp`, `rsync`
        without -t) is no less old for that: its sessions are packed as they are read, and
        ended at once. A file read from its start, last written more than idle_seconds
        ago, belongs to a session that has ended (the backfill of a history). `whole`: all
        the bytes `st` counts, when read already (every small file of such a copy is: its
        end need not be read twice)."""
        if offset != 0:
            return st.st_mtime, False
        idle_before = self.clock.now() - self.settings.idle_seconds
        last_write = st.st_mtime
        if fmt.RECORD_TIMES and last_write > idle_before:
            if whole is not None:
                tail: bytes | None = whole[-RECORD_TAIL_BYTES:]
            elif fd is not None:
                tail = os.pread(fd, RECORD_TAIL_BYTES, max(0, st.st_size - RECORD_TAIL_BYTES))
            else:
                tail = None
            newest = None if tail is None else newest_record_time(tail)
            # Only a time that ends the session replaces the mtime: a record written
            # without a time (a summary line) may be newer than the newest stamped one.
            if newest is not None and newest <= idle_before:
                last_write = newest
        return last_write, last_write <= idle_before

    @staticmethod
    def _level(ended: bool) -> int:
        """An ended session's bytes are compressed once, in a pack or as sealed frames,
        not as chunks to be recompressed a moment later."""
        return SEAL_LEVEL if ended else INGEST_LEVEL

    def _packs(self, ended: bool, st: os.stat_result) -> bool:
        """A small file of an ended session, read from its start, goes into a pack (see
        PackWriter): on its own it would find little to compress that its project's other
        sessions do not hold too."""
        return self._packer is not None and ended and st.st_size <= tier1_store.PACK_MEMBER_MAX

    def sync(self, source: Source, relpath: PurePosixPath, summary: IngestSummary,
             on_bytes: Progress | None = None, prefetched: Prefetched | None = None,
             planned: AppendPoint | None = None, path: str | None = None,
             unseen: bool = False) -> None:
        """Bring one source file's stored copy up to date. Never raises for a bad file.
        `planned`: its append point as the pass's plan read it; `path`: `relpath` under
        the source's resolved root, where the plan built it already; `unseen`: a whole
        walk's plan found no cursor for it."""
        root = self._root(source)
        path = path or os.path.join(root, relpath)
        try:
            self._sync(source, root, relpath, path, summary, on_bytes, prefetched, planned,
                       unseen)
        except _CursorMovedError:
            logger.debug("stored meanwhile by another process; next pass",
                         path=_shown(source, relpath))
        except OSError as e:
            if e.errno == errno.ENOENT:
                logger.info("file vanished before it was read; stored copy kept",
                            path=_shown(source, relpath))
                return
            if e.errno == errno.ENOSPC:
                raise
            self._once(_shown(source, relpath), "cannot read file, skipped", level="error",
                       reason=e.strerror, errno=e.errno)
            summary.errors += 1

    def _sync_virtual(self, source: Source, relpath: PurePosixPath, vf: VirtualFile,
                      summary: IngestSummary, on_bytes: Progress | None) -> None:
        """sync for a file a database row makes: its bytes made now, in the snapshot the
        plan compared its stamp in, then stored as a file read whole is (a new version
        where they differ from the stored ones). Never raises for a bad row."""
        fmt = formats.get(source.format)
        phys = str(relpath)
        try:
            settled = self.tier1.in_transaction()
            point = self.tier1.append_point(source.name, phys)
            cursor = point.cursor if point else None
            if cursor is not None and cursor.mtime_ns == vf.stamp_ns:
                return  # stored meanwhile (by another process)
            data = vf.read()
            role = fmt.identify(relpath, lambda: data[:HEAD_BYTES])
            if role is None or not data:
                return
            if cursor is None or cursor.path != role.logical_path:
                cursor, point = self.tier1.cursor(source.name, role.logical_path), None
            summary.files_changed += 1
            st = _virtual_stat(vf, len(data))
            # A new file of a few KB (most rows): compressed here, in less time than a
            # thread's round trip takes (the bench of a database of 5,000 parts: the first
            # ingest took 3.1 s with the round trips, 2.1 s without).
            whole = (self._taken_whole(data, st, fmt) if cursor is None
                     and len(data) <= INLINE_BYTES else None)
            with BytesContent(data) as content:
                self._append(source, fmt, role, relpath, cursor, st, content, summary,
                             on_bytes, whole, settled, point)
        except _CursorMovedError:
            logger.debug("stored meanwhile by another process; next pass", path=phys)
        except ForeignReadError as e:
            self._once(_shown(source, relpath), "cannot read the row, skipped", level="error",
                       reason=str(e))
            summary.errors += 1
            self._unstored.add((source.name, vf.session))

    def _planned_point(self, source: Source, planned: AppendPoint | None) -> bool:
        """Whether the append point the plan read is still what the store holds, so that
        an append read inside its group's transaction need not read it again: no other
        process has written since (the store's data_version, which only another
        connection's commit changes, is what it was before the plan read), and this pass
        has not come to the same cursor already, nor brought back an evicted session
        (which moves the cursors of all its files)."""
        return (planned is not None and self._planned_current
                and (source.name, planned.cursor.path) not in self._synced)

    def _unseen(self, source: Source, phys: str, logical: str) -> bool:
        """Whether a file a whole walk's plan found no cursor for has none still, so that
        sync, inside its group's transaction, need not look for one (the two lookups were
        a quarter of the statements a backfill ran): no other process has written since
        the plan read every cursor (as for _planned_point), and no cursor is stored under
        the file's path for another file. Within a walk a path is come to once, but a
        compressed file is stored under its plain twin's path: once come to, that path is
        looked up again (sync notes it, see _walk_paths)."""
        return (logical == phys and self._walk_current
                and (source.name, phys) not in self._walk_paths)

    def _sync(self, source: Source, root: Path, relpath: PurePosixPath, path: str,
              summary: IngestSummary, on_bytes: Progress | None,
              prefetched: Prefetched | None, planned: AppendPoint | None = None,
              unseen: bool = False) -> None:
        """`path`: `relpath` under the resolved `root` (built by the plan, or by sync)."""
        fmt = formats.get(source.format)
        # A file the read ahead took whole (a new one: most of a backfill) is not opened
        # again: its bytes and the stat they match are in hand, as the file was then (a
        # change since is the next pass's, as one after a read here would be).
        whole = (prefetched if prefetched is not None and not prefetched.offset
                 and len(prefetched.raw) == prefetched.st.st_size else None)
        fd = None if whole is not None else _open(path)
        try:
            if whole is not None:
                st = whole.st
            else:
                assert fd is not None
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    self._once(_shown(source, relpath), "not a regular file, skipped",
                               source=source.name)
                    summary.skipped += 1
                    return
            phys = str(relpath)
            # Read inside the transaction that will store the bytes (a group's), the cursor
            # cannot change before they are: no need to read it again to compare.
            settled = self.tier1.in_transaction()
            unseen = unseen and settled and self._walk_current
            point = (None if unseen else planned if settled and self._planned_point(
                source, planned) else self.tier1.append_point(source.name, phys))
            cursor = point.cursor if point else None
            if cursor and cursor.same_stat(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
                return
            # The file's first bytes, where the pool read them from this file as it is now.
            known = (prefetched.raw if prefetched is not None and not prefetched.offset
                     and _stat_key(prefetched.st) == _stat_key(st) else None)
            role = self._identify(source, fmt, relpath, phys, fd, known)
            if role is None:
                return
            if self._plan_version is not None:
                self._synced.add((source.name, role.logical_path))
            if role.compressed and os.path.exists(root / role.logical_path):
                return  # the .jsonl twin is being written: it is the one we follow
            if role.logical_path != phys:
                # Every compressed file, whether or not the plan found its cursor, and
                # stored in a group or alone: its plain twin may come later in the walk.
                self._walk_paths.add((source.name, role.logical_path))
            if unseen and self._unseen(source, phys, role.logical_path):
                cursor, point = None, None
            elif cursor is None or cursor.path != role.logical_path:
                cursor, point = self.tier1.cursor(source.name, role.logical_path), None
            if cursor is None and st.st_size == 0:
                self._once(_shown(source, relpath), "empty file, nothing to store yet",
                           level="debug")
                return
            summary.files_changed += 1
            content: Content
            if whole is not None and not role.compressed:
                content = BytesContent(whole.raw)
            else:
                fd = fd if fd is not None else _open(path)  # the read ahead leaves .zst alone
                content = ZstdContent(fd) if role.compressed else PlainContent(fd)
            with content:
                self._append(source, fmt, role, relpath, cursor, st, content, summary, on_bytes,
                             prefetched, settled, point)
        finally:
            if fd is not None:
                os.close(fd)

    def _identify(self, source: Source, fmt: Format, relpath: PurePosixPath, phys: str,
                  fd: int | None, known: bytes | None = None) -> FileRole | None:
        """fmt.identify, remembered for a path it needed no bytes of the file to place (a
        format's identify is a function of the path and those bytes alone) in a pass over
        named paths: the watcher names the same files pass after pass, and parsing a path
        took 4% of an append's CPU. A whole walk's are not kept: a backfill's would be
        every file of the history. `known`: the file's first bytes (at least its head, or
        all of it), read already; without it, `fd` is the file's."""
        key = (source.format, phys)
        try:
            return self._roles[key]
        except KeyError:
            pass
        read = False

        def read_head() -> bytes:
            nonlocal read
            read = True
            if known is not None:
                return known[:HEAD_BYTES]
            assert fd is not None
            return head(fd, relpath)

        role = fmt.identify(relpath, read_head)
        if not read and self._plan_version is not None and len(self._roles) < LOCATED_MAX:
            self._roles[key] = role
        return role

    def _new_cursor(self, source: Source, role: FileRole, relpath: PurePosixPath) -> Cursor:
        return Cursor(source=source.name, path=role.logical_path, phys_path=str(relpath),
                      session_id=f"{source.name}:{role.native_id}", file_id=0, version=1, run=0,
                      offset=0, head_fp=None, tail_fp=None, dev=None, ino=None, size=None,
                      mtime_ns=None)

    def _append(self, source: Source, fmt: Format, role: FileRole, relpath: PurePosixPath,
                cursor: Cursor | None, st: os.stat_result, content: Content,
                summary: IngestSummary, on_bytes: Progress | None,
                prefetched: Prefetched | None = None, settled: bool = False,
                point: AppendPoint | None = None) -> None:
        """`settled`: the cursor was read in the transaction that stores the bytes. `point`:
        what was read with it (the session's state, the file row's base offset)."""
        if settled and prefetched is None and self._append_grown(
                source, role, relpath, point, st, content, summary, on_bytes):
            return
        expected = _cursor_state(cursor)
        base = point.base_offset if point is not None else None
        new_cursor = cursor is None
        if cursor is None:
            cursor = self._new_cursor(source, role, relpath)
            if role.run_marker:
                # Runs of the file stored, but no cursor: an earlier version's forget of
                # its last run deleted it. Read again from the start, the file is a new
                # version: over its stored runs it failed on their rows.
                cursor.version = self.tier1.last_version(source.name, role.logical_path) + 1
        elif (point.state if point is not None
              else self.tier1.session_state(cursor.session_id)) == "evicted":
            base = None
            # Bringing it back moves the cursors of all its files: what the plan read of
            # them is out of date.
            self._plan_version, self._planned_current = None, False
            self._walk_version, self._walk_current = None, False
            if _holds_only(content, cursor):
                # Touched, copied, moved or recompressed, but no new byte: the budget that
                # evicted it still holds. Only the new stat is remembered.
                self._remember_stat(cursor, relpath, st, expected)
                return
            content.rewind()
            resumed = self._resume_runs(role, cursor, content) if role.run_marker else None
            if resumed is not None:
                cursor, expected = resumed, _cursor_state(resumed)
            else:
                with self.tier1.transaction("ingest"):
                    self.tier1.revive_evicted(cursor.session_id)
                logger.info("evicted session grew: ingesting it again from its source",
                            session=cursor.session_id, path=_shown(source, relpath))
                cursor = self.tier1.cursor(source.name, role.logical_path) or cursor
                expected = _cursor_state(cursor)
        cursor.phys_path = str(relpath)
        pre = prefetched if (prefetched is not None and not role.compressed
                             and prefetched.offset == cursor.offset
                             and _stat_key(prefetched.st) == _stat_key(st)) else None
        if (pre is None and cursor.offset and isinstance(content, PlainContent)
                and st.st_size - cursor.offset <= INLINE_BYTES):
            pre = self._read_ahead(content.fd, cursor.offset, st, fmt)
        head: bytes | None
        fps: tuple[bytes, bytes] | None = None
        if pre is not None:  # the bytes before the offset, and their fingerprints, in hand
            head, tail, fps = pre.head, pre.tail, (pre.head_fp, pre.tail_fp)
            content.skip(cursor.offset)  # where prefix() would leave the reader
        else:
            head, tail = content.prefix(cursor.offset)
        if cursor.offset and not _seen(cursor, head, tail, fps):
            pre = None
            cursor.version += 1
            cursor.offset, cursor.file_id = 0, 0
            head, tail = b"", b""
            content.rewind()
            summary.new_versions += 1
            # A file its tool rewrites whole as it goes (a snapshot) grows so: no news.
            (logger.debug if role.snapshot else logger.info)(
                "file was rewritten or truncated: storing a new version",
                path=_shown(source, relpath), version=cursor.version)
        last_write, ended = (pre.last_write, pre.ended) if pre is not None else self._last_write(
            cursor.offset, st, content.fd if isinstance(content, PlainContent) else None, fmt,
            content.data if isinstance(content, BytesContent) else None)
        level = self._level(ended)
        # Runs cut out of one shared file, and whole-file snapshots that replace each other:
        # those keep to chunks, whose rows know their file.
        sealed = level == SEAL_LEVEL and not role.run_marker and not role.snapshot
        # Only inside a group's transaction, which stores the pack before it commits.
        packer = self._packer if (sealed and settled
                                  and self._packs(ended, st)) else None
        writer = _PieceWriter(self.tier1, source.name, role, cursor,
                              head or b"", tail, st, self.clock.now(), sealed,
                              base=base if cursor.file_id else 0, packer=packer,
                              last_write=last_write, new_cursor=new_cursor,
                              reopens=cursor.session_id if point is not None
                              and point.state != "open" else None)
        ready: tuple[bytes, Packed | None] | None = None
        if pre is not None and (packer is not None or (pre.packed is not None
                                                       and pre.packed[2] == level)):
            ready = (pre.raw, None if packer is not None else pre.packed)
            content.skip(len(pre.raw))
            writer.known_tail_fp = pre.next_tail
        if ready is not None and cursor.offset + len(ready[0]) >= st.st_size:
            whole, blocks = True, iter((ready,))  # all the stat counts: no read for the end
        else:
            whole, blocks = False, self._compressed_blocks(
                content, ready, None if packer is not None else level)
        first = True
        done = False
        while not done:
            # Every new byte in hand and the cursor read in the transaction that stores
            # them: nothing left to fail but the store itself, which ends that transaction
            # (a savepoint of its own would only undo a failed read of the source).
            with (contextlib.nullcontext() if whole and settled
                  else self.tier1.transaction("ingest")):
                if first and not settled and _cursor_state(
                        self.tier1.cursor(source.name, role.logical_path)) != expected:
                    # Another process (the daemon, a hook) stored these bytes since we
                    # read the cursor: appending them again would store them twice.
                    raise _CursorMovedError(_shown(source, relpath))
                if cursor.file_id == 0 and not role.run_marker:
                    writer.open_session(role.native_id)
                batch = 0
                for block, packed in blocks:
                    if first:
                        self._warn_if_binary(source, relpath, block, cursor.offset)
                        first = False
                    for piece, starts_run in writer.splitter.split(block):
                        writer.write(piece, packed if piece is block else None, starts_run)
                    batch += len(block)
                    if on_bytes:
                        on_bytes(len(block))
                    if batch >= COMMIT_BYTES:
                        break
                else:
                    done = True
                    for piece, starts_run in writer.splitter.flush():
                        writer.write(piece, None, starts_run)
                writer.save()
        if packer is not None:
            packer.end_file()
        summary.bytes_added += writer.written
        summary.sessions |= writer.touched
        summary.ended |= writer.ended
        summary.new_sessions |= writer.new_sessions

    def _append_grown(self, source: Source, role: FileRole, relpath: PurePosixPath,
                      point: AppendPoint | None, st: os.stat_result, content: Content,
                      summary: IngestSummary, on_bytes: Progress | None) -> bool:
        """What _append does for most of the files a watcher names: a few new KB at the end
        of a file of an open session, with its file row and the cursor read in the group's
        transaction. The same reads and rows as that path takes, without the steps such an
        append never needs (runs, packs, sealed frames, a version, a read in blocks): on the
        append bench those took a quarter of the pass's CPU. False, with nothing stored,
        for any other append, or when the bytes before the cursor are not the ones it saw:
        _append works out what happened."""
        if (point is None or point.state != "open" or role.run_marker is not None
                or not isinstance(content, PlainContent)):
            return False
        cursor = point.cursor
        offset, head_fp = cursor.offset, cursor.head_fp
        # Past the first FP_BYTES, the head the cursor fingerprinted is whole and stays so
        # (one an earlier version fingerprinted, _append fingerprints anew).
        if (not cursor.file_id or offset < FP_BYTES
                or not 0 < st.st_size - offset <= INLINE_BYTES
                or head_fp is None or len(head_fp) == LEGACY_FP_BYTES):
            return False
        start = offset - FP_BYTES
        # No more than the stat says is there (as _read_ahead); a tail read short: no `raw`.
        data = os.pread(content.fd, st.st_size - start, start)
        tail, raw = data[:FP_BYTES], data[FP_BYTES:]
        if (not raw or fingerprint(tail) != cursor.tail_fp
                or fingerprint(os.pread(content.fd, FP_BYTES, 0)) != head_fp):
            return False
        self._warn_if_binary(source, relpath, raw, offset)
        sid = cursor.session_id
        data, crc, level = compress(raw)
        self.tier1.add_chunk(cursor.file_id, offset - point.base_offset, raw, data, level, crc)
        cursor.phys_path = str(relpath)
        cursor.offset = offset + len(raw)
        cursor.tail_fp = fingerprint(_tail_after(tail, raw))
        cursor.dev, cursor.ino, cursor.size, cursor.mtime_ns = _stat_key(st)
        self.tier1.save_cursor(cursor)
        # As _last_write tells it for bytes after the start of a file: its mtime.
        self.tier1.session_grew(sid, st.st_mtime)
        if role.end_record is not None and _ends_in(role.end_record, tail[-256:], raw):
            self.tier1.mark_ended(sid)  # after session_grew, which clears the mark
            summary.ended.add(sid)
        if on_bytes:
            on_bytes(len(raw))
        summary.bytes_added += len(raw)
        summary.sessions.add(sid)
        return True

    def _resume_runs(self, role: FileRole, cursor: Cursor, content: Content) -> Cursor | None:
        """A file of runs grew after its last run was evicted. A new run (the new bytes
        start with a run header) is stored as such, the evicted runs stay evicted; new
        bytes of the evicted run itself bring that run back, read again from its own start.
        None when the bytes already stored changed: the file is read again as a new version."""
        marker = role.run_marker or b""
        head, tail = content.prefix(cursor.offset)
        if not _seen(cursor, head, tail):
            content.rewind()
            return None
        starts_new_run = tail.endswith(b"\n") and content.read(len(marker)) == marker
        content.rewind()
        if starts_new_run or not cursor.file_id:
            return cursor
        base = self.tier1.base_offset(cursor.file_id)
        head, tail = content.prefix(base)
        content.rewind()
        with self.tier1.transaction("ingest"):
            if _cursor_state(self.tier1.cursor(cursor.source, cursor.path)) != _cursor_state(
                    cursor):
                raise _CursorMovedError(cursor.path)
            self.tier1.reopen_run(cursor.session_id, cursor.file_id)
            cursor.offset, cursor.file_id = base, 0
            cursor.head_fp, cursor.tail_fp = fingerprint(head or b""), fingerprint(tail)
            cursor.dev = cursor.ino = cursor.size = cursor.mtime_ns = None
            self.tier1.save_cursor(cursor)
        logger.info("evicted run grew: ingesting it again from its source",
                    session=cursor.session_id)
        return cursor

    def _remember_stat(self, cursor: Cursor, relpath: PurePosixPath, st: os.stat_result,
                       expected: tuple[int, int, int] | None) -> None:
        with self.tier1.transaction("ingest"):
            if _cursor_state(self.tier1.cursor(cursor.source, cursor.path)) != expected:
                raise _CursorMovedError(str(relpath))
            cursor.phys_path = str(relpath)
            cursor.dev, cursor.ino, cursor.size, cursor.mtime_ns = _stat_key(st)
            self.tier1.save_cursor(cursor)

    def _compressed_blocks(self, content: Content,
                           first: tuple[bytes, Packed | None] | None = None,
                           level: int | None = INGEST_LEVEL
                           ) -> Iterator[tuple[bytes, Packed | None]]:
        """Blocks with their compressed form; the next blocks compress on the pool (GIL
        released) while the caller writes the current one. `level` None: blocks for a
        pack, which compresses them itself."""
        if first is not None:
            yield first
        if level is None:
            while block := content.read(BLOCK_BYTES):
                yield block, None
            return
        ahead: deque[tuple[bytes, Future[Packed]]] = deque()
        while True:
            while len(ahead) < BLOCKS_AHEAD and (block := content.read(BLOCK_BYTES)):
                ahead.append((block, self._pool.submit(compress, block, level)))
            if not ahead:
                return
            block, future = ahead.popleft()
            yield block, future.result()

    def _warn_if_binary(self, source: Source, relpath: PurePosixPath, block: bytes,
                        offset: int) -> None:
        sample = block[:FP_BYTES]
        if b"\x00" in sample:
            self._once(_shown(source, relpath), "binary content (NUL bytes): stored byte-exactly",
                       level="warning")
        elif offset == 0:
            try:
                sample.decode("utf-8")
            except UnicodeDecodeError as e:
                if e.start < len(sample) - 4:  # not just a character cut at the sample's end
                    self._once(_shown(source, relpath), "not UTF-8 text: stored byte-exactly",
                               level="warning")


def _virtual_stat(vf: VirtualFile, size: int = 0) -> os.stat_result:
    """A stat for a file a database row makes: a regular file, written at its stamp (the
    row's time, which the session's times follow), on no device."""
    seconds = vf.stamp_ns / 1e9
    return os.stat_result((stat.S_IFREG | 0o600, 0, 0, 1, 0, 0, size, seconds, seconds,
                           seconds), {"st_atime_ns": vf.stamp_ns, "st_mtime_ns": vf.stamp_ns,
                                      "st_ctime_ns": vf.stamp_ns})


def _read_order(todo: list[Candidate]) -> list[Candidate]:
    """The order a pass reads files in, which is the order packs hold them: by folder, a
    project's sessions together (they read the same files: on the workstation bench, packs
    by folder stored 0.54 of per-file zstd -3 after the idle work, packs by week 0.62),
    and a file right before the folder of its own name (a transcript, then its
    subagents'), so that a session's files share a pack."""
    return sorted(todo, key=_read_key)


def _read_key(c: Candidate) -> tuple[str, list[str]]:
    """(source, the folders of the file's path then its stem), from the path's text: a
    watcher's pass sorts a few hundred files, path objects would cost more than the sort."""
    parts = str(c.relpath).split("/")
    name = parts[-1]
    dot = name.rfind(".")
    parts[-1] = name[:dot] if 0 < dot < len(name) - 1 else name  # PurePath.stem
    return c.source.name, parts


def _locate(path: str, roots: list[tuple[Source, Path, str]]
            ) -> tuple[Source, Path, PurePosixPath, str] | None:
    """The source an absolute, normalized path lies under (the root itself included), its
    resolved root, the path relative to it, and that under the resolved root. `roots`:
    each with a prefix that ends in a slash."""
    for source, root, prefix in roots:
        if path.startswith(prefix):
            rel = PurePosixPath(path[len(prefix):])
            return source, root, rel, f"{root}/{rel}"
        if path == prefix[:-1]:
            return source, root, PurePosixPath(), f"{root}/."
    return None


def _run_started(native: str) -> float | None:
    """When a run began, from its id as run_native_id makes it (`…#<YYYYMMDDTHHMMSS, local
    time>[-N]`): before analysis, the only start a run has but the file's mtime, which all
    the runs of a history share."""
    stamp = native.rpartition("#")[2].split("-")[0]
    try:
        return time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%S"))
    except (ValueError, OverflowError):
        return None


class _CursorMovedError(Exception):
    pass


def _holds_only(content: Content, cursor: Cursor) -> bool:
    """Whether the file holds exactly the bytes the cursor has seen: the same length, and
    the fingerprints of their first and last FP_BYTES kept when they were read."""
    if not cursor.offset or cursor.head_fp is None or cursor.tail_fp is None:
        return False
    head, tail = content.prefix(cursor.offset)
    return _seen(cursor, head, tail) and not content.read(1)


def concerns(fmt: Format, root: Path, entry: Entry) -> bool:
    """Whether what a walk met under `root` may be (or lead to) a session file of `fmt`. A
    format that reads files of certain names only (its WATCH says which; its root may be the
    whole home folder) has no concern with any other file, link to one, socket or pipe: it
    is neither opened, counted nor reported. A link to a folder the walk would enter may
    lead to its files, and a folder it cannot list may hold them: those are its concern
    (not a link to a folder it leaves out, such as a hidden one: ~/.config made a link)."""
    if entry.kind == "error" or fmt.WATCH.wants_file(entry.relpath.name):
        return True
    return (entry.kind == "symlink" and not fmt.prune(entry.relpath)
            and os.path.isdir(root / entry.relpath))


def _shown(source: Source, relpath: PurePosixPath) -> str:
    """A source file's path as every ingest log message names it: as the user configured
    it, the source's root as configured (links not resolved) joined with the path relative
    to it; a name that is no UTF-8 with its odd bytes escaped. Built only for a message: an
    append has none."""
    return os.fsencode(os.path.join(source.root, relpath)).decode("utf-8", "backslashreplace")


def _open(path: str) -> int:
    """A source file, to read: never a link followed, nor a FIFO waited on."""
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


def _cursor_state(cursor: Cursor | None) -> tuple[int, int, int] | None:
    return None if cursor is None else (cursor.version, cursor.offset, cursor.file_id)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _PieceWriter:
    """Appends pieces to the current file row, opening a new session at each run marker,
    and keeps the cursor's offset and fingerprints in step."""

    def __init__(self, tier1: Tier1, source: str,
                 role: FileRole, cursor: Cursor, head: bytes, tail: bytes,
                 st: os.stat_result, now: float, sealed: bool = False, *,
                 last_write: float, base: int | None = None,
                 packer: PackWriter | None = None, reopens: str | None = None,
                 new_cursor: bool = False) -> None:
        """`base`: the cursor's file row's base offset, when known already. `last_write`:
        when the file was last written (Ingestor._last_write). `new_cursor`: the store
        holds no row for the cursor yet."""
        self.tier1, self.source, self.role = tier1, source, role
        self.sealed = sealed
        """New file rows take their bytes as sealed frames of their session, not chunks."""
        self.packer = packer
        """Or, sealed, into this pack."""
        self.cursor, self.head, self.tail, self.st, self.now = cursor, head, tail, st, now
        self.last_write = last_write
        self.reopens = reopens
        """The session of the cursor, when it was read in a state other than open."""
        self.new_cursor = new_cursor
        self.base = (base if base is not None else
                     tier1.base_offset(cursor.file_id) if cursor.file_id else 0)
        # A full head no write changes: its fingerprint is the cursor's already (unless
        # an earlier version made it: then save() keeps one of this version's).
        self.head_fp = (cursor.head_fp if cursor.offset and len(head) >= FP_BYTES
                        and cursor.head_fp is not None
                        and len(cursor.head_fp) != LEGACY_FP_BYTES else None)
        self.known_tail_fp: tuple[bytes, bytes] | None = None
        """Last FP_BYTES expected at save() and their fingerprint, computed ahead."""
        self.splitter = RunSplitter(role.run_marker, tail[-1:] if cursor.offset else b"",
                                    at_start=cursor.offset == 0)
        self.touched: set[str] = set()
        # Rows this writer created, already as save() would leave them.
        self.new_sessions: set[str] = set()
        self.new_file_ids: set[int] = set()
        self.ended: set[str] = set()
        """Sessions whose end record was among the bytes written."""
        self.written = 0

    def open_session(self, native: str, started_at: float | None = None) -> None:
        self.cursor.session_id = f"{self.source}:{native}"
        if self.tier1.ensure_session(self.cursor.session_id, self.source, native, self.now,
                                     self.last_write, started_at):
            self.new_sessions.add(self.cursor.session_id)

    def run_native_id(self, piece: bytes) -> str:
        """`<native id>#<run id>` for a run that starts with `piece`: the run id from its
        header line (the file's mtime where it has none), `-2`, `-3`, … for a later run of
        the same version of the file with the same one. It depends only on the bytes
        before the run, so reading the file again gives every run the id it had."""
        header = first_run_header(piece, self.role.run_marker or b"")
        run = self.role.run_id(header) if header is not None and self.role.run_id else None
        if run is None:
            run = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.st.st_mtime))
        base = f"{self.role.native_id}#{run}"
        same = re.compile(re.escape(base) + r"(-\d+)?")
        taken = sum(1 for native in self.tier1.run_ids(
            self.source, self.role.logical_path, self.cursor.version, self.cursor.offset)
            if same.fullmatch(native))
        return base if not taken else f"{base}-{taken + 1}"

    def write(self, piece: bytes, packed: Packed | None, starts_run: bool) -> None:
        c = self.cursor
        if starts_run or (self.role.run_marker and c.file_id == 0):
            if starts_run:
                c.run += 1
                if c.file_id:
                    # A run ends where the next begins: nothing is appended to it after.
                    self.ended.add(c.session_id)
            native = self.run_native_id(piece)
            self.open_session(native, _run_started(native))
            c.file_id = 0
        if c.file_id == 0:
            self.base = c.offset
            c.file_id = self.tier1.new_file(c.session_id, self.source, self.role.logical_path,
                                            c.version, self.base, self.last_write, self.now,
                                            sealed=self.sealed and self.packer is None)
            self.new_file_ids.add(c.file_id)
            if self.packer is not None:
                self.packer.begin_file(c.file_id, c.session_id)
            if self.role.snapshot:
                self.tier1.drop_older_versions(self.source, self.role.logical_path, c.version)
        if self.role.end_record is not None and _ends_in(self.role.end_record,
                                                         self.tail[-256:], piece):
            self.ended.add(c.session_id)
        if self.packer is not None and c.file_id in self.new_file_ids:
            self.packer.write(c.file_id, piece)
        elif self.sealed and c.file_id in self.new_file_ids:
            data, crc, level = packed if packed is not None else compress(piece, SEAL_LEVEL)
            self.tier1.add_sealed(c.file_id, len(piece), data, level, crc)
        else:
            data, crc, level = packed if packed is not None else compress(piece)
            self.tier1.add_chunk(c.file_id, c.offset - self.base, piece, data, level, crc)
        if len(self.head) < FP_BYTES:
            self.head += piece[: FP_BYTES - len(self.head)]
        self.tail = _tail_after(self.tail, piece)
        c.offset += len(piece)
        self.written += len(piece)
        self.touched.add(c.session_id)

    def save(self) -> None:
        """Cursor, stat and session times, in the transaction that holds the chunks."""
        c, st = self.cursor, self.st
        known = self.known_tail_fp
        c.head_fp = self.head_fp or fingerprint(self.head)
        c.tail_fp = known[1] if known and known[0] == self.tail else fingerprint(self.tail)
        c.dev, c.ino, c.size, c.mtime_ns = _stat_key(st)
        self.tier1.save_cursor(c, new=self.new_cursor)
        self.new_cursor = False
        for sid in self.touched - self.new_sessions:
            self.tier1.session_grew(sid, self.last_write, was_open=sid != self.reopens)
        for sid in self.ended:
            self.tier1.mark_ended(sid)  # after session_grew, which clears the mark
        # A file row keeps the mtime it had when first stored, about when its session
        # started (what `sessions` shows before analysis); the session row keeps the last.


def _ends_in(end_record: re.Pattern[bytes], before: bytes, piece: bytes) -> bool:
    """An end record that finishes within `piece` (one cut by a block boundary, begun in
    the bytes `before` it, counts; one wholly before it was seen already)."""
    if end_record.search(piece):
        return True
    seam = before + piece[:len(before)]
    return any(m.end() > len(before) for m in end_record.finditer(seam))


def seal_ended(tier1: Tier1, settings: Settings, clock: Clock, *, workers: int = 1,
               interrupted: Callable[[], bool] | None = None) -> int:
    """Recompress every ended session that is not sealed yet; returns how many. The pages
    their chunks held are given back, so the file shrinks to what the accounting says."""
    idle_before = clock.now() - settings.idle_seconds
    stored_sealed = tier1.mark_sealed_as_stored(idle_before)
    sessions = tier1.unsealed_ended(idle_before)
    _seal_each(tier1, sessions, SEAL_LEVEL, workers, interrupted)
    if sessions:
        tier1.reclaim()
    return stored_sealed + len(sessions)


def deep_seal(tier1: Tier1, clock: Clock, *, workers: int = 1,
              interrupted: Callable[[], bool] | None = None) -> int:
    """The idle work on sealed sessions: small ones are packed together (see pack), and
    every larger one below DEEP_SEAL_LEVEL is recompressed, oldest first; returns how many
    were packed or recompressed (one that grew meanwhile is not)."""
    packed = pack(tier1, clock, interrupted=interrupted)
    sessions = tier1.to_deepen()
    deepen(tier1, sessions, workers=workers, interrupted=interrupted)
    return packed + len(set(sessions) - set(tier1.to_deepen()))


def pack(tier1: Tier1, clock: Clock, *, interrupted: Callable[[], bool] | None = None) -> int:
    """Repack at DEEP_SEAL_LEVEL the packs ingest made and those evictions left mostly
    dead, then pack the small sealed sessions waiting (Tier1.pack_sessions); freed pages
    are given back. Returns how many sessions were packed."""
    repacked = 0
    for pack_id in tier1.packs_to_repack():
        if interrupted is not None and interrupted():
            break
        repacked += tier1.repack(pack_id, interrupted=interrupted)
    packed = tier1.pack_sessions(now=clock.now(), interrupted=interrupted)
    if packed or repacked:
        tier1.reclaim()
    return packed


def deepen(tier1: Tier1, sessions: list[str], *, workers: int = 1,
           interrupted: Callable[[], bool] | None = None) -> None:
    """Recompress these sealed sessions at DEEP_SEAL_LEVEL (the daemon does a few at a time
    when idle); freed pages are given back."""
    _seal_each(tier1, sessions, DEEP_SEAL_LEVEL, workers, interrupted)
    if sessions:
        tier1.reclaim()


def _seal_each(tier1: Tier1, sessions: list[str], level: int, workers: int,
               interrupted: Callable[[], bool] | None = None) -> None:
    """With workers > 1 (a one-off `ingest` of a large backlog, not the niced daemon), that
    many threads seal sessions side by side, each on its own connection: compression and
    decompression release the GIL, and every commit stays a short transaction of its own."""
    if workers <= 1 or len(sessions) < 2:
        for sid in sessions:
            if interrupted is not None and interrupted():
                return
            tier1.seal_session(sid, level, interrupted=interrupted)
        return
    todo = iter(sessions)
    lock = threading.Lock()

    def work() -> None:
        own = Tier1(tier1.path)
        try:
            while True:
                with lock:
                    sid = next(todo, None)
                if sid is None or (interrupted is not None and interrupted()):
                    return
                own.seal_session(sid, level, interrupted=interrupted)
        finally:
            own.close()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seal") as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
