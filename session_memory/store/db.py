"""Opening a store: private files, WAL, a busy timeout, migrations, one write transaction."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from session_memory.errors import (
    FULL_MESSAGE,
    NotFoundError,
    SessionMemoryError,
    StoreBusyError,
    StoreFullError,
)

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_PAGES = 1000
"""WAL pages after a commit that start a checkpoint (SQLite's own autocheckpoint default)."""
BEHIND_PAGES = 16 * CHECKPOINT_PAGES
"""WAL pages past which a writer does not begin another transaction before the WAL is
checkpointed (see Checkpointer.keep_up): whatever the checkpoints' luck, the WAL stays
bounded."""
Migration = Sequence[str]


def private_dir(path: Path) -> Path:
    """Create a 0700 folder (and parents); tighten an existing one that is ours."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    return path


def connect(path: Path, migrations: Sequence[Migration]) -> apsw.Connection:
    """A connection to a 0600 database at `path`, its schema brought up to date."""
    private_dir(path.parent)
    # The copy of a process killed while it made the store goes, whether or not it was
    # linked (then a second name of the store, which no later connect would otherwise
    # remove): one listing of the data folder.
    _remove_abandoned(path)
    if not os.path.lexists(path):
        _create(path, migrations)
    # Create the file ourselves so it is never world-readable, even for an instant;
    # SQLite gives its -wal and -shm files the database file's permissions.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        version = one(conn, "PRAGMA user_version")[0]
        if version == 0:
            # Must precede the first table: it decides whether freed pages can be returned.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Deleted rows are zeroed on the pages being written anyway, and a page taken from
        # the free list is cleared before reuse: what a seal, an eviction or a forget
        # deletes never lingers in the unused space of a live page. No extra I/O.
        conn.execute("PRAGMA secure_delete = FAST")
        migrate(conn, migrations)
    except apsw.BusyError as e:
        conn.close()
        raise StoreBusyError(f"{path}: the store is busy (locked by another process)") from e
    return conn


def _create(path: Path, migrations: Sequence[Migration]) -> None:
    """A new store, made whole under a name of its own, synced once, then linked into
    place: a kill or a power cut leaves no store or a whole one, so nothing needs to reach
    the disk before it is complete. Made in place, its first transactions took a rollback
    journal and 13 syncs (20-40 ms, most of a first ingest's waiting for the disk). If
    another process linked a store there first, that one stays; on a file system without
    hard links, connect makes it in place."""
    made = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.new")
    os.close(os.open(made, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600))
    linked = False
    try:
        conn = apsw.Connection(str(made))
        try:
            # A copy cut short is thrown away, not rolled back: no journal, no syncs.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
            migrate(conn, migrations)
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        _sync(made)
        crashpoint("before-link:new-store")
        with contextlib.suppress(FileExistsError):  # another process's: it stays
            os.link(made, path)
            linked = True
            crashpoint("after-link:new-store")
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise  # not a file system without hard links (a full disk, say)
    finally:
        os.unlink(made)
    if linked:
        _sync(path.parent)


def _remove_abandoned(path: Path) -> None:
    """Copies that _create began in processes that are gone (killed before they linked
    theirs), with whatever files SQLite had beside them."""
    prefix = f".{path.name}."
    for name in os.listdir(path.parent):
        if not name.startswith(prefix) or ".new" not in name:
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.parent / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def connect_read_only(path: Path, migrations: Sequence[Migration]) -> apsw.Connection:
    """A connection that can only read: it creates nothing, migrates nothing and never
    takes a write lock, so a writer (the daemon) never waits for it. In WAL mode a read
    sees one commit for as long as its transaction lasts."""
    if not path.is_file() or path.is_symlink():
        raise NotFoundError(f"{path}: no store yet (run `session-memory ingest` or start "
                            "the daemon)")
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    try:
        version = one(conn, "PRAGMA user_version")[0]
    except apsw.BusyError as e:
        conn.close()
        raise StoreBusyError(f"{path}: the store is busy (locked by another process)") from e
    if version < len(migrations):
        conn.close()
        raise SessionMemoryError(f"{path}: the store is of an older version; run any "
                                 "session-memory command (such as `status`) once to upgrade it")
    conn.execute("PRAGMA query_only = ON")
    return conn


def migrate(conn: apsw.Connection, migrations: Sequence[Migration]) -> None:
    """Each migration the store lacks, one transaction each. The version is read again
    inside each: two processes that open an older store at once (the daemon and a
    command) would otherwise both run a migration, the second failing (ALTER TABLE ADD
    COLUMN, CREATE INDEX) or setting the version back."""
    while one(conn, "PRAGMA user_version")[0] < len(migrations):
        with transaction(conn, "migrate"):
            version = one(conn, "PRAGMA user_version")[0]
            if version >= len(migrations):
                return  # another process ran the last one meanwhile
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


@contextlib.contextmanager
def transaction(conn: apsw.Connection, name: str = "") -> Iterator[apsw.Connection]:
    """One write transaction, taken up front so concurrent writers wait instead of failing.
    Inside another transaction it is a savepoint: it commits with the outer one."""
    if conn.in_transaction:
        savepoint = f"sp_{name.replace('-', '_') or 'inner'}"
        conn.execute(f"SAVEPOINT {savepoint}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {savepoint}")
            conn.execute(f"RELEASE {savepoint}")
            raise
        conn.execute(f"RELEASE {savepoint}")
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except apsw.BusyError as e:
        raise StoreBusyError("the store is busy: another process holds it; try again") from e
    try:
        yield conn
        crashpoint(f"before-commit:{name}")
        conn.execute("COMMIT")
    except BaseException as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(e, apsw.FullError):
            raise StoreFullError(FULL_MESSAGE) from e
        raise
    crashpoint(f"after-commit:{name}")


_CRASH_AT = os.environ.get("SESSION_MEMORY_CRASH_AT")
_crash_countdown = int(os.environ.get("SESSION_MEMORY_CRASH_AFTER", "0"))


def crashpoint(name: str) -> None:
    """Kill ourselves here when the crash harness asks for it (an environment-guarded hook)."""
    global _crash_countdown
    if _CRASH_AT is None or name != _CRASH_AT:
        return
    if _crash_countdown > 0:
        _crash_countdown -= 1
        return
    os.kill(os.getpid(), signal.SIGKILL)


class Checkpointer:
    """Checkpoints a writer connection's WAL on a thread and a connection of its own.

    SQLite's autocheckpoint copies the WAL into the database inside the commit that takes
    it past CHECKPOINT_PAGES: on the append path (a few hundred small appends a commit)
    every other commit, and a large share of the time they take and of its spread. Here
    that commit only wakes this thread, which runs a PASSIVE checkpoint: it waits for no
    one and no one waits for it (apsw releases the GIL while SQLite works). Once every page
    is copied, the next write transaction starts the WAL over from its beginning, so the
    WAL stays as bounded as before; a writer that finds it BEHIND_PAGES long anyway
    checkpoints before it writes more. Durability is as with autocheckpoint: a commit is in
    the WAL before it returns, and a checkpoint, cut short anywhere, is done again."""

    def __init__(self, conn: apsw.Connection, path: Path) -> None:
        self._conn, self._path = conn, path
        self.pages = 0
        """WAL pages after the writer's last commit."""
        self._wake = threading.Event()
        self._closing = False
        self._running = threading.Lock()  # held while a checkpoint runs, by either thread
        self._thread: threading.Thread | None = None
        conn.set_wal_hook(self._committed)  # replaces (and so turns off) the autocheckpoint

    def _committed(self, conn: apsw.Connection, name: str, pages: int) -> int:
        self.pages = pages
        if pages >= CHECKPOINT_PAGES:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="checkpoint",
                                                daemon=True)
                # No thread (the interpreter is exiting): keep_up still bounds the WAL.
                with contextlib.suppress(RuntimeError):
                    self._thread.start()
            self._wake.set()
        return apsw.SQLITE_OK  # anything else would fail the commit that has just succeeded

    def _run(self) -> None:
        try:
            conn = apsw.Connection(str(self._path), flags=apsw.SQLITE_OPEN_READWRITE)
        except apsw.Error:
            return  # out of file descriptors, say: keep_up still bounds the WAL
        try:
            conn.execute("PRAGMA synchronous = NORMAL")  # the writer's: what a checkpoint syncs
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                with self._running:
                    crashpoint("checkpoint")
                    # Busy (another checkpoint, a full disk): the next commit wakes us again.
                    with contextlib.suppress(apsw.Error):
                        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        finally:
            conn.close()  # never the last connection: the writer's closes after it

    def keep_up(self) -> None:
        """Before a write transaction: checkpoint first if the WAL is BEHIND_PAGES long
        (a checkpoint under way is waited for)."""
        if self.pages < BEHIND_PAGES or self._conn.in_transaction:
            return
        with self._running, contextlib.suppress(apsw.Error):
            self._conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        self.pages = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No background checkpoint runs meanwhile (one the caller runs itself would find
        the checkpoint lock taken, and give up)."""
        with self._running:
            yield

    def close(self) -> None:
        """Stops the thread (after the checkpoint under way, if one is)."""
        if self._closing:
            return
        self._closing = True
        self._conn.set_wal_hook(None)
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            self._thread.join()


@contextlib.contextmanager
def snapshot(conn: apsw.Connection) -> Iterator[None]:
    """A read transaction: reads inside see one commit, whatever writers do meanwhile.
    Inside another transaction it is that one."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def one(conn: apsw.Connection, sql: str, args: Any = ()) -> tuple[Any, ...]:
    """The one row a query must return (an aggregate, a pragma)."""
    row = conn.execute(sql, args).fetchone()
    if row is None:
        raise LookupError(f"no row from {sql!r}")
    return tuple(row)


def file_footprint(path: Path) -> int:
    """Bytes the database takes on disk, its WAL included."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


@contextlib.contextmanager
def secure_delete(conn: apsw.Connection) -> Iterator[None]:
    """secure_delete for one operation only: it slows every later delete on the connection
    (which goes back to what it was, FAST: see connect)."""
    before = int(one(conn, "PRAGMA secure_delete")[0])
    conn.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA secure_delete = {'FAST' if before == 2 else before}")


def reclaim(conn: apsw.Connection) -> None:
    """Free pages back to the file system, and the WAL emptied."""
    for sql in ("PRAGMA incremental_vacuum", "PRAGMA wal_checkpoint(TRUNCATE)"):
        for _ in conn.execute(sql):
            pass
