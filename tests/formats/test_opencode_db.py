"""OpenCode 1.2+: sessions read from its SQLite database, opencode.db, made here from the
real two-session fixture tree as OpenCode's own migration makes it (tests/formats/
opencode_db.py). Each row is stored as the JSON file OpenCode wrote for it before: the
same digest and usage as the JSON files give, a row changed by another process is a new
version, restore puts back the JSON layout, and a database that cannot be read (a link,
locked, damaged) is one log line, never a crash and never a write to it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.formats import opencode
from session_memory.memory import Memory
from session_memory.watch import Watcher
from tests.conftest import FIXTURES, write_config
from tests.formats import opencode_db

LEGACY = FIXTURES / "opencode" / "storage"
EDITED = "ses_53993b312ffeefelTsBlbUVXV8"
PLANNED = "ses_539950424ffev4SAECXTZKSubM"
PROJECT = "98f0326ae5594d769602840258229a7888e46ff5"
MIGRATED_AT_MS = 1_800_000_000_000
"""When the migration ran: the time_updated of the rows whose document has none."""
NOW = 2_000_000_000.0
PART = "prt_ac66c5292002SbCM7ar8NO0NND"  # a text part of EDITED's second message
PART_MESSAGE = "msg_ac66c4cf3002T0gm14NtIKnwOm"


def _data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "opencode"


@pytest.fixture
def db(home: Path) -> Path:
    """A home whose OpenCode keeps its sessions in opencode.db only (storage/ not there)."""
    data = _data_dir(home)
    data.mkdir(parents=True)
    counts = opencode_db.build(LEGACY, data / "opencode.db", MIGRATED_AT_MS)
    assert counts == {"project": 1, "session": 2, "message": 13, "part": 32}
    write_config(home, "")
    return data / "opencode.db"


def _memory(clock: float = NOW) -> Memory:
    return Memory(config.load(), clock=FixedClock(clock))


@pytest.fixture
def memory(db: Path) -> Iterator[Memory]:
    with _memory() as memory:
        yield memory


def _files(memory: Memory, native: str) -> dict[str, Any]:
    return {f.path: f for f in memory.tier1.files(f"opencode:{native}")}


def _bytes(memory: Memory, f: Any) -> bytes:
    return b"".join(memory.tier1.read_file(f.id))


def _fingerprint(db: Path) -> list[tuple[str, str]]:
    """The database and its WAL, byte for byte. Not the -shm (SQLite's shared index, which
    any reader of a WAL database maps), nor an empty WAL: SQLite makes one when it opens a
    WAL database that has none (OpenCode not running), as its own reader does."""
    return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(db.parent.glob("opencode.db*"))
            if not p.name.endswith("-shm") and p.stat().st_size]


def test_each_session_is_stored_as_the_json_files_opencode_wrote(memory: Memory,
                                                                  db: Path) -> None:
    before = _fingerprint(db)
    summary = memory.ingest()
    assert (summary.errors, summary.skipped) == (0, 0)
    assert _fingerprint(db) == before  # read, never written
    for native, messages, parts in ((EDITED, 8, 22), (PLANNED, 5, 10)):
        files = _files(memory, native)
        assert len(files) == 1 + messages + parts
        assert f"opencode.db/session/{PROJECT}/{native}.json" in files
        for path, f in files.items():
            legacy = LEGACY / opencode.restore_path(path)
            if "/session/" not in path:
                # Messages and parts: the document less its ids, the ids put back in
                # front, as OpenCode wrote it: byte for byte the JSON file.
                assert _bytes(memory, f) == legacy.read_bytes(), path
    session = json.loads(_bytes(memory, _files(memory, EDITED)[
        f"opencode.db/session/{PROJECT}/{EDITED}.json"]))
    legacy_session = json.loads((LEGACY / "session" / PROJECT / f"{EDITED}.json").read_bytes())
    for key in ("id", "projectID", "directory", "title", "version", "time", "summary"):
        assert session[key] == legacy_session[key], key


def _analyzed(home: Path, clock: float = NOW) -> dict[str, Any]:
    with _memory(clock) as memory:
        assert memory.ingest().errors == 0
        memory.analyze(include_active=True)
        digests = {}
        for native in (EDITED, PLANNED):
            digest = dict(memory.show(f"opencode:{native}")["digest"])
            digests[native] = {k: v for k, v in digest.items()
                               if k not in ("analyzed_at", "raw_bytes", "files")}
        usage = memory.usage(by="session")
        transcripts = {native: memory.transcript(f"opencode:{native}", limit=200)
                       for native in (EDITED, PLANNED)}
        return {"digests": digests, "usage": usage, "transcripts": transcripts}


def _legacy_home(home: Path) -> None:
    shutil.copytree(LEGACY, _data_dir(home) / "storage")


def test_digest_usage_and_transcript_from_the_database_equal_those_from_the_json_files(
        db: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_db = _analyzed(home)
    # The same sessions as JSON files only, in another home.
    other = tmp_path / "legacy-home"
    other.mkdir()
    from tests.conftest import home_environ
    for var, value in home_environ(other).items():
        monkeypatch.setenv(var, value)
    _legacy_home(other)
    write_config(other, "")
    from_json = _analyzed(other)
    assert from_db["digests"][EDITED]["tokens"]["output"] > 0
    assert len(from_db["transcripts"][EDITED]["messages"]) > 10
    assert from_db == from_json


def test_a_session_in_both_the_json_files_and_the_database_counts_once(
        db: Path, home: Path) -> None:
    """OpenCode's migration leaves the JSON files where they were."""
    only_db = _analyzed(home)
    _legacy_home(home)
    both = _analyzed(home)
    assert both == only_db
    with _memory() as memory:
        # Both copies are kept: the files and the rows.
        assert len(_files(memory, EDITED)) == 2 * (1 + 8 + 22) + 1  # and the session_diff


@pytest.mark.parametrize("clock", [NOW, MIGRATED_AT_MS / 1000 + 60],
                         ids=["long-ago", "just-written"])
def test_a_pass_with_nothing_changed_stores_nothing_and_makes_no_json(
        db: Path, clock: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Just written: every session's rows are compared again (RECHECK_MS), still none
    made into JSON."""
    with _memory(clock) as memory:
        assert memory.ingest().files_changed == 47
        made: list[str] = []
        real = opencode._json_file

        def counted(doc: dict[str, Any]) -> bytes:
            made.append(str(doc.get("id")))
            return real(doc)

        monkeypatch.setattr(opencode, "_json_file", counted)
        again = memory.ingest()
        assert (again.files_changed, again.bytes_added, again.new_versions) == (0, 0, 0)
        assert made == []


WRITER = """
import sqlite3, sys, json
part, message, session, at, text = sys.argv[2:7]
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("BEGIN IMMEDIATE")
# As OpenCode's part upsert does (drizzle sets time_updated on each update).
data = json.loads(conn.execute("SELECT data FROM part WHERE id = ?", (part,)).fetchone()[0])
data["text"] = text
conn.execute("UPDATE part SET data = ?, time_updated = ? WHERE id = ?",
             (json.dumps(data), int(at), part))
if session != "-":  # a step's end touches the session row too
    conn.execute("UPDATE session SET time_updated = ? WHERE id = ?", (int(at), session))
print("written", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("committed", flush=True)
"""


def _writer(db: Path, at_ms: int, touch_session: bool, text: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), PART, PART_MESSAGE,
         EDITED if touch_session else "-", str(at_ms), text],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    return proc


def _commit(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "committed\n"
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("touch_session", [True, False], ids=["session-touched", "part-only"])
def test_a_row_another_process_changes_is_a_new_version(db: Path, touch_session: bool) -> None:
    """The writer is a real process holding its write open while we ingest: we read the
    snapshot before it, then its commit. A part written with no touch of its session is
    found because the session was written within RECHECK_MS."""
    at_ms = MIGRATED_AT_MS + 120_000
    clock = at_ms / 1000 + 1 if not touch_session else NOW
    part_path = f"opencode.db/part/{PART_MESSAGE}/{PART}.json"
    with _memory(clock) as memory:
        memory.ingest()
        first = _bytes(memory, _files(memory, EDITED)[part_path])
        if not touch_session:
            # The session row written recently, with the ingest that stores it.
            _commit(_writer(db, at_ms, True, "a step that ended"))
            assert memory.ingest().new_versions == 2
        proc = _writer(db, at_ms + 1000, touch_session, "rewritten by another process")
        during = memory.ingest()  # the writer's transaction is open: nothing new to see
        assert (during.new_versions, during.errors) == (0, 0)
        _commit(proc)
        after = memory.ingest()
        assert after.errors == 0 and after.new_versions == (2 if touch_session else 1)
        f = _files(memory, EDITED)[part_path]
        assert f.version == (2 if touch_session else 3)
        now = json.loads(_bytes(memory, f))
        assert now["text"] == "rewritten by another process"
        assert now["id"] == PART and now["messageID"] == PART_MESSAGE
        assert json.loads(first)["text"] != now["text"]
        assert memory.ingest().new_versions == 0


def test_a_row_written_long_after_its_session_row_is_found_by_the_whole_walk(
        db: Path) -> None:
    """A step stopped an hour after it began writes its last rows with no write of its
    session row: past RECHECK_MS, a pass the watcher asks for (the WAL named) does not
    compare that session's rows; the whole walk, every few minutes, does."""
    session_at_ms = MIGRATED_AT_MS + 120_000
    part_path = f"opencode.db/part/{PART_MESSAGE}/{PART}.json"
    _commit(_writer(db, session_at_ms, True, "a step that began"))
    with _memory(session_at_ms / 1000 + 3600) as memory:
        memory.ingest()
        _commit(_writer(db, session_at_ms + 3_600_000, False, "stopped an hour later"))
        assert memory.ingest([db.with_name("opencode.db-wal")]).files_changed == 0
        assert memory.ingest().files_changed == 1
        stored = json.loads(_bytes(memory, _files(memory, EDITED)[part_path]))
        assert stored["text"] == "stopped an hour later"


def test_a_row_written_twice_in_one_millisecond_around_a_pass_is_read_again(
        db: Path) -> None:
    """Its time_updated is the same for both writes: the pass that read the first (taken
    in that millisecond) left the row to be read again, and the next pass stores the
    second; then the row is settled, and a pass reads nothing."""
    at_ms = MIGRATED_AT_MS + 120_000
    part_path = f"opencode.db/part/{PART_MESSAGE}/{PART}.json"
    with _memory(at_ms / 1000) as memory:
        _commit(_writer(db, at_ms, True, "the first write"))
        memory.ingest()
        _commit(_writer(db, at_ms, False, "the second write, the same millisecond"))
        assert isinstance(memory.clock, FixedClock)
        memory.clock.advance(5)
        assert memory.ingest().new_versions == 1
        stored = json.loads(_bytes(memory, _files(memory, EDITED)[part_path]))
        assert stored["text"] == "the second write, the same millisecond"
        assert memory.ingest().files_changed == 0


def test_restore_puts_back_the_json_layout(memory: Memory, home: Path) -> None:
    memory.ingest()
    storage = _data_dir(home) / "storage"
    restored = memory.restore(f"opencode:{EDITED}")
    assert len(restored) == 1 + 8 + 22
    assert all(p.is_relative_to(storage) for p in restored)
    for p in restored:
        rel = p.relative_to(storage)
        if rel.parts[0] != "session":
            assert p.read_bytes() == (LEGACY / rel).read_bytes(), rel
    assert json.loads((storage / "session" / PROJECT / f"{EDITED}.json").read_bytes())[
        "title"] == "Adding /story command to README"
    assert memory.restore(f"opencode:{EDITED}") == []  # all there already


def test_forget_leaves_no_trace(memory: Memory, db: Path) -> None:
    memory.ingest()
    memory.analyze(include_active=True)
    before = _fingerprint(db)
    memory.forget(f"opencode:{EDITED}")
    sid = f"opencode:{EDITED}"
    assert memory.tier1.files(sid) == []
    assert memory.tier1.cursors_of(sid) == []
    stamps = memory.tier1.cursor_stamps("opencode", opencode.VIRTUAL_PREFIX)
    assert not [p for p in stamps if EDITED in p or PART_MESSAGE in p]
    assert not memory.tier2.has_digest(sid)
    assert [s["id"] for s in memory.sessions(source="opencode")] == [f"opencode:{PLANNED}"]
    assert _fingerprint(db) == before


@pytest.mark.parametrize("data", ["not json {", b"\xff\xfe not UTF-8", 42])
def test_a_row_whose_data_is_no_json_is_stored_and_the_pass_goes_on(
        memory: Memory, db: Path, data: str | bytes | int) -> None:
    """Its text kept in the file's "data", as a row whose data is JSON but no object."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE part SET data = ? WHERE id = ?", (data, PART))
    conn.close()
    summary = memory.ingest()
    assert (summary.errors, summary.files_changed) == (0, 47)
    stored = json.loads(_bytes(memory, _files(memory, EDITED)[
        f"opencode.db/part/{PART_MESSAGE}/{PART}.json"]))
    assert stored["id"] == PART and stored["sessionID"] == EDITED
    assert stored["data"] == (data.decode("utf-8", "surrogateescape")
                              if isinstance(data, bytes) else data)
    assert memory.ingest().files_changed == 0
    memory.analyze(include_active=True)
    assert memory.tier2.has_digest(f"opencode:{EDITED}")


def test_forget_says_the_database_still_holds_the_session(memory: Memory, db: Path) -> None:
    """The next ingest takes its rows again (as it takes a forgotten session's files that
    are still there): said, naming the database, not as files to delete."""
    memory.ingest()
    gone = memory.forget(f"opencode:{EDITED}")
    assert (gone["source_files"], gone["source_databases"]) == ([], [str(db)])
    assert memory.ingest().files_changed == 1 + 8 + 22  # what it said: back again
    db.unlink()
    assert memory.forget(f"opencode:{EDITED}")["source_databases"] == []


def test_the_forget_command_warns_that_the_database_brings_it_back(db: Path) -> None:
    with _memory() as memory:
        memory.ingest()
    run = subprocess.run([sys.executable, "-m", "session_memory", "forget",
                          f"opencode:{EDITED}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"database {db} still holds the session" in run.stderr
    assert "still in the agent tool's folder" not in run.stderr


def test_a_row_whose_text_is_not_utf8_is_stored_too(memory: Memory, db: Path) -> None:
    """TEXT, not a BLOB, that is no UTF-8: SQLite keeps what it is given. The byte spoils
    its string, not the document."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE part SET data = CAST(? AS TEXT) WHERE id = ?",
                     (b'{"type": "text", "text": "caf\xe9"}', PART))
        assert conn.execute("SELECT typeof(data) FROM part WHERE id = ?",
                            (PART,)).fetchone() == ("text",)
    conn.close()
    summary = memory.ingest()
    assert (summary.errors, summary.files_changed) == (0, 47)
    stored = json.loads(_bytes(memory, _files(memory, EDITED)[
        f"opencode.db/part/{PART_MESSAGE}/{PART}.json"]))
    assert (stored["id"], stored["type"], stored["text"]) == (PART, "text", "caf\udce9")


def _logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict)
            and "database" in str(r.msg.get("event"))]


def test_a_linked_database_is_skipped(home: Path, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    opencode_db.build(LEGACY, elsewhere, MIGRATED_AT_MS)
    _data_dir(home).mkdir(parents=True)
    (_data_dir(home) / "opencode.db").symlink_to(elsewhere)
    write_config(home, "")
    with _memory() as memory:
        summary = memory.ingest()
        assert (summary.skipped, summary.errors, summary.files_changed) == (1, 0, 0)
        assert memory.sessions(source="opencode") == []
        assert [w for w in memory.check_warnings() if "opencode" in w] == [
            f"{_data_dir(home) / 'opencode.db'}: OpenCode's session database is a link, "
            "not followed: not read"]
    (line,) = _logged(caplog)
    assert "link" in line["reason"]


def test_a_locked_database_is_one_log_line_then_read_once_free(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    hold = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('PRAGMA locking_mode = EXCLUSIVE')\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "c.execute('DELETE FROM todo')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.readline()\n"
         "c.execute('COMMIT')\n", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert hold.stdout is not None and hold.stdout.readline() == "locked\n"
    with _memory() as memory:
        for _ in range(2):
            summary = memory.ingest()
            assert (summary.errors, summary.files_changed) == (1, 0)
        (line,) = _logged(caplog)
        assert line["reason"] == "locked by another process"
        assert hold.stdin is not None
        hold.stdin.write("\n")
        hold.stdin.flush()
        assert hold.wait(timeout=30) == 0
        summary = memory.ingest()
        assert (summary.errors, summary.files_changed) == (0, 47)


def test_a_damaged_database_is_a_clear_error_and_the_json_files_are_still_read(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    _legacy_home(home)
    (_data_dir(home) / "opencode.db").write_bytes(b"not a database at all " * 512)
    write_config(home, "")
    with _memory() as memory:
        summary = memory.ingest()
        assert summary.errors == 1
        assert len(memory.sessions(source="opencode")) == 2  # from the JSON files
    (line,) = _logged(caplog)
    assert line["reason"] == "not a database, or damaged"
    assert line["level"] == "error"


def test_the_watcher_watches_the_database_not_its_whole_folder(db: Path) -> None:
    settings = config.load()
    (source,) = [s for s in settings.enabled_sources if s.name == "opencode"]
    specs = [s for s in Watcher.specs([source], {}) if s.files is not None]
    assert [(s.path, s.recursive, s.files) for s in specs] == [
        (str(db.parent), False, frozenset({"opencode.db", "opencode.db-wal"}))]


def test_restore_of_a_session_in_both_puts_back_the_databases_copy(db: Path,
                                                                   home: Path) -> None:
    _legacy_home(home)
    storage = _data_dir(home) / "storage"
    with _memory() as memory:
        memory.ingest()
        mine = [p for p in storage.rglob("*") if p.is_file() and EDITED in p.read_text()
                and p.parts[-3] != "session_diff"]
        for p in mine:
            p.unlink()
        restored = memory.restore(f"opencode:{EDITED}")
    # One file a target (the session_diff, which only the JSON files hold, is there).
    assert len(restored) == len(set(restored)) == 1 + 8 + 22
    session = json.loads((storage / "session" / PROJECT / f"{EDITED}.json").read_bytes())
    assert session["slug"] == ""  # the database's document (fromRow), not the old file


def test_naming_the_database_or_its_wal_reads_it(memory: Memory, db: Path) -> None:
    """What the daemon does when the watcher sees them written, and `ingest PATH`."""
    wal = db.with_name("opencode.db-wal")
    assert memory.ingestor.outside_roots([db, wal]) == []
    summary = memory.ingest([wal])
    assert (summary.errors, summary.files_changed) == (0, 47)
    assert memory.ingest([db]).files_changed == 0


CHILD = """
from session_memory import config
from session_memory.memory import Memory
with Memory(config.load()) as memory:
    memory.ingest()
"""


def _stored(memory: Memory) -> dict[str, tuple[int, str]]:
    """Every stored file of the database's: its newest version and a hash of its bytes."""
    out: dict[str, tuple[int, str]] = {}
    for s in memory.sessions(source="opencode"):
        for f in memory.tier1.files(s["id"]):
            if f.path.startswith(opencode.VIRTUAL_PREFIX) and f.version >= out.get(
                    f.path, (0, ""))[0]:
                out[f.path] = (f.version, hashlib.sha256(_bytes(memory, f)).hexdigest())
    return out


def test_a_kill_mid_ingest_loses_nothing_and_stores_nothing_twice(
        home: Path, tmp_path: Path) -> None:
    """A real ingest process killed at its first group commit (before and after it) and
    after its second, then an ingest to the end: the same files as an ingest never killed,
    each once (version 1), and the stores consistent. A session's own file is stored after
    its rows, so a kill between them leaves it to be compared again."""
    storage = tmp_path / "made" / "storage"
    opencode_db.write_files(storage, opencode_db.sessions(40))  # 2,400 rows: 3 groups
    data = _data_dir(home)
    data.mkdir(parents=True)
    counts = opencode_db.build(storage, data / "opencode.db", MIGRATED_AT_MS)
    assert counts["part"] + counts["message"] + counts["session"] > 2 * 1000
    write_config(home, "")
    env = dict(os.environ)
    with _memory() as reference:
        reference.ingest()
        want = _stored(reference)
    for point, after in (("before-commit:ingest", 0), ("after-commit:ingest", 0),
                         ("after-commit:ingest", 1)):
        shutil.rmtree(Path(os.environ["XDG_DATA_HOME"]) / "session-memory")
        child = subprocess.run(
            [sys.executable, "-c", CHILD],
            env=env | {"SESSION_MEMORY_CRASH_AT": point, "SESSION_MEMORY_CRASH_AFTER": str(after)},
            capture_output=True, timeout=300)
        assert child.returncode == -9, (point, after, child.stderr[-2000:])
        with _memory() as memory:
            summary = memory.ingest()
            assert summary.errors == 0 and summary.new_versions == 0
            assert _stored(memory) == want, (point, after)
            assert memory.check() == [], (point, after)
            assert memory.ingest().files_changed == 0


def test_opencodes_move_to_its_database_changes_no_digest(home: Path) -> None:
    """A session stored and digested from its JSON files; then OpenCode 1.2 makes its
    database from them (the files stay): the rows are stored too, and the digest made
    again from both is the one the files gave."""
    _legacy_home(home)
    write_config(home, "")
    before = _analyzed(home)
    opencode_db.build(LEGACY, _data_dir(home) / "opencode.db", MIGRATED_AT_MS)
    with _memory() as memory:
        summary = memory.ingest()
        assert (summary.errors, summary.files_changed) == (0, 47)
        assert sorted(memory.analyze([f"opencode:{EDITED}", f"opencode:{PLANNED}"],
                                     force=True)) == [f"opencode:{EDITED}", f"opencode:{PLANNED}"]
    assert _analyzed(home) == before



class _InterruptedClock(FixedClock):
    """Ctrl-C the next time the time is asked, once `interrupt` is set."""

    interrupt = False

    def now(self) -> float:
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return super().now()


def _open_in_this_process(db: Path) -> list[str]:
    """The database's files (itself, its WAL, its shared index) this process holds open."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own)
        if target.startswith(str(db)):
            held.append(target)
    return held


def test_a_pass_cut_short_in_its_plan_ends_the_databases_snapshot(db: Path) -> None:
    """Ctrl-C while the plan compares the rows (the first time it asks the time): the
    snapshot ends with the pass, not at the next one (it would hold back OpenCode's
    checkpoints, its WAL growing, as long as the daemon waits)."""
    clock = _InterruptedClock(NOW)
    with Memory(config.load(), clock=clock) as memory:
        clock.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            memory.ingest()
        assert _open_in_this_process(db) == []
        assert memory.ingest().files_changed == 47
        assert _open_in_this_process(db) == []


def _set_text(db: Path, sql: str, *params: str | bytes) -> None:
    """An UPDATE whose `?`s are given as they are (bytes as TEXT that is no UTF-8: SQLite
    keeps what it is given)."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_a_session_title_that_is_not_utf8_is_stored_byte_for_byte(
        memory: Memory, db: Path) -> None:
    _set_text(db, "UPDATE session SET title = CAST(? AS TEXT) WHERE id = ?",
              b"caf\xe9 \xff", PLANNED)
    summary = memory.ingest()
    assert (summary.errors, summary.skipped, summary.files_changed) == (0, 0, 47)
    stored = _bytes(memory, _files(memory, PLANNED)[
        f"opencode.db/session/{PROJECT}/{PLANNED}.json"])
    title = json.loads(stored)["title"]
    assert title.encode("utf-8", "surrogateescape") == b"caf\xe9 \xff"
    assert memory.ingest().files_changed == 0


@pytest.mark.parametrize("table", ["part", "part's message", "message", "session"])
def test_a_row_whose_id_is_not_utf8_is_skipped_with_one_line_and_the_rest_read(
        db: Path, table: str, caplog: pytest.LogCaptureFixture) -> None:
    """An id names a file and a session, which are text: the row cannot be stored (a
    session's, with its messages and parts, which name it). Every other row is. (A part
    whose message id alone was no UTF-8 was skipped without a word.)"""
    bad = b"bad_\xff\xfe"
    if table == "part":
        _set_text(db, "UPDATE part SET id = CAST(? AS TEXT) WHERE id = ?", bad, PART)
        shown, left = f"part/{PART_MESSAGE}/bad_\\xff\\xfe.json", 47 - 1
    elif table == "part's message":
        _set_text(db, "UPDATE part SET message_id = CAST(? AS TEXT) WHERE id = ?", bad, PART)
        shown, left = f"part/bad_\\xff\\xfe/{PART}.json", 47 - 1
    elif table == "message":
        _set_text(db, "UPDATE message SET id = CAST(? AS TEXT) WHERE id = ?", bad, PART_MESSAGE)
        _set_text(db, "UPDATE part SET message_id = CAST(? AS TEXT) WHERE message_id = ?",
                  bad, PART_MESSAGE)
        shown, left = f"message/{EDITED}/bad_\\xff\\xfe.json", 47 - 1 - 5
    else:
        for sql in ("UPDATE session SET id = CAST(? AS TEXT) WHERE id = ?",
                    "UPDATE message SET session_id = CAST(? AS TEXT) WHERE session_id = ?",
                    "UPDATE part SET session_id = CAST(? AS TEXT) WHERE session_id = ?"):
            _set_text(db, sql, bad, EDITED)
        shown, left = f"session/{PROJECT}/bad_\\xff\\xfe.json", 1 + 5 + 10
    with _memory() as memory:
        summary = memory.ingest()
        assert (summary.errors, summary.skipped, summary.files_changed) == (0, 1, left)
        # Its session unchanged: not compared again (a session row with no stamp stored,
        # which has none to store, is: skipped again, as a file name that is no UTF-8).
        summary = memory.ingest()
        assert (summary.errors, summary.skipped, summary.files_changed) == (
            0, int(table == "session"), 0)
        stored = sum(len(memory.tier1.files(s["id"]))
                     for s in memory.sessions(source="opencode"))
        assert stored == left
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)
             and r.msg.get("event") == "row not read, skipped"]
    assert [line["path"] for line in lines] == [str(db.parent / "opencode.db" / shown)]
    assert "UTF-8" in lines[0]["reason"]


def _fresh_store() -> None:
    shutil.rmtree(Path(os.environ["XDG_DATA_HOME"]) / "session-memory")


def test_a_sessions_own_file_is_stored_after_its_rows_whatever_the_read_order(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its stamp is what a pass compares before a session's other rows: stored first, a
    pass stopped right after it would leave them never compared again (the session long
    unchanged). A read order that puts the session files first must not do that."""
    with _memory() as reference:
        reference.ingest()
        want = _stored(reference)
    _fresh_store()
    from session_memory import ingest

    def session_files_first(c: Any) -> tuple[str, list[str]]:
        return c.source.name, ["0" if "/session/" in str(c.relpath) else "1", str(c.relpath)]

    monkeypatch.setattr(ingest, "_read_key", session_files_first)
    with _memory() as memory:
        asked = iter(range(1000))
        stopped = memory.ingestor.run(stop=lambda: next(asked) >= 2)  # two files stored
        assert stopped.files_changed == 2
        assert memory.ingest().files_changed == 47 - 2
        assert _stored(memory) == want


def _overflow_page(db: Path, filler: bytes) -> tuple[int, bytes]:
    """Where in the file the first overflow page filled with `filler` begins that is not
    its chain's last (its first four bytes, the next page's number, are not zero), and
    those four bytes."""
    data = db.read_bytes()
    size = int.from_bytes(data[16:18], "big")
    for start in range(size, len(data), size):
        page = data[start:start + size]
        if set(page[4:]) <= set(filler) and page[:4] != b"\0\0\0\0":
            return start, page[:4]
    raise AssertionError("no overflow page found")


def test_a_row_that_cannot_be_read_leaves_its_session_to_be_compared_again(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged page under one part's data (its overflow chain names no page): that row
    is skipped with one line, and its session's own file is not stored either, so the
    next pass compares the session's rows again and, the page mended, stores the row."""
    filler = b"ZQXJ"
    text = (filler * 4000).decode()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE part SET data = ? WHERE id = ?",
                     (json.dumps({"type": "text", "text": text}), PART))
    conn.close()  # the last connection: the WAL is checkpointed into the file
    assert not db.with_name("opencode.db-wal").exists()
    at, pointer = _overflow_page(db, filler)
    with db.open("r+b") as f:
        f.seek(at)
        f.write(b"\xff\xff\xff\x00")
    part_path = f"opencode.db/part/{PART_MESSAGE}/{PART}.json"
    session_path = f"opencode.db/session/{PROJECT}/{EDITED}.json"
    with _memory() as memory:
        summary = memory.ingest()
        assert (summary.errors, summary.files_changed) == (1, 47 - 2)
        assert part_path not in _files(memory, EDITED)
        assert session_path not in _files(memory, EDITED)
        with db.open("r+b") as f:
            f.seek(at)
            f.write(pointer)
        summary = memory.ingest()
        assert (summary.errors, summary.files_changed) == (0, 2)
        stored = json.loads(_bytes(memory, _files(memory, EDITED)[part_path]))
        assert stored["text"] == text
        assert session_path in _files(memory, EDITED)
    (line,) = [r.msg for r in caplog.records if isinstance(r.msg, dict)
               and r.msg.get("event") == "cannot read the row, skipped"]
    assert "damaged" in line["reason"]


def test_another_channels_database_is_read_as_opencode_db(db: Path, home: Path) -> None:
    """A dev build (any channel but latest, beta and prod) keeps opencode-<channel>.db,
    the same tables: its rows are stored under its own name, the sessions keep their ids,
    and the digests, usage and transcripts are those opencode.db gives."""
    from_release = _analyzed(home)
    _fresh_store()
    dev = db.with_name("opencode-dev.db")
    db.rename(dev)
    with _memory() as memory:
        summary = memory.ingest()
        assert (summary.errors, summary.skipped, summary.files_changed) == (0, 0, 47)
        paths = {f.path.split("/", 1)[0] for s in memory.sessions(source="opencode")
                 for f in memory.tier1.files(s["id"])}
        assert paths == {"opencode-dev.db"}
        assert memory.ingest().files_changed == 0
    assert _analyzed(home) == from_release
    settings = config.load()
    (source,) = [s for s in settings.enabled_sources if s.name == "opencode"]
    specs = [s for s in Watcher.specs([source], {}) if s.files is not None]
    assert [s.files for s in specs] == [frozenset({
        "opencode.db", "opencode.db-wal", "opencode-dev.db", "opencode-dev.db-wal"})]


@pytest.mark.parametrize("newer", ["opencode-dev.db", "opencode.db"])
def test_a_session_in_two_channels_databases_counts_once_the_copy_written_last(
        db: Path, home: Path, newer: str) -> None:
    """The same sessions in both (each channel copies the JSON files into its own): read
    once. A part written later in one of them (whichever sorts first) is read, and
    restored, from that one."""
    from_release = _analyzed(home)
    shutil.copyfile(db, db.with_name("opencode-dev.db"))
    assert _analyzed(home) == from_release
    dev = db.with_name("opencode-dev.db")
    _commit(_writer(db.with_name(newer), MIGRATED_AT_MS + 120_000, True,
                    "written in the dev build"))
    with _memory() as memory:
        assert memory.ingest().files_changed == 2
        memory.analyze([f"opencode:{EDITED}"], force=True)
        texts = [m["text"] for m in memory.transcript(f"opencode:{EDITED}",
                                                      limit=200)["messages"]]
        assert "written in the dev build" in texts
        assert len(texts) == len(from_release["transcripts"][EDITED]["messages"])
        restored = memory.restore(f"opencode:{EDITED}")
        assert len(restored) == len(set(restored)) == 1 + 8 + 22
        part = _data_dir(home) / "storage" / "part" / PART_MESSAGE / f"{PART}.json"
        assert json.loads(part.read_bytes())["text"] == "written in the dev build"
        gone = memory.forget(f"opencode:{EDITED}")
        assert gone["source_databases"] == sorted([str(db), str(dev)])


def test_a_whole_walk_reads_no_cursor_of_the_databases_rows(
        memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their stamps are looked up by session (a walk never comes to them as files): a
    walk read all 71,000 of a large history's, 0.15 s every few minutes, for nothing."""
    assert memory.ingest().files_changed == 47
    read: list[str] = []
    every = memory.tier1.cursors

    def cursors(*args: Any, **kw: Any) -> list[Any]:
        found = every(*args, **kw)
        read.extend(c.path for c in found)
        return found

    monkeypatch.setattr(memory.tier1, "cursors", cursors)
    assert memory.ingest().files_changed == 0
    assert read == []
    assert len(every()) == 47


def test_a_row_nested_past_all_reason_is_stored_as_its_text(memory: Memory, db: Path) -> None:
    """JSON nested deeper than Python's json reads (a damaged or hostile row): kept as its
    text, as a row that is no JSON is; it stopped every pass, the other rows unread."""
    nested = "[" * 200_000
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE part SET data = ? WHERE id = ?", (nested, PART))
        conn.execute("UPDATE session SET revert = ? WHERE id = ?", (nested, PLANNED))
    conn.close()
    summary = memory.ingest()
    assert (summary.errors, summary.files_changed) == (0, 47)
    part = _files(memory, EDITED)[f"opencode.db/part/{PART_MESSAGE}/{PART}.json"]
    assert json.loads(_bytes(memory, part))["data"] == nested
    session = _files(memory, PLANNED)[f"opencode.db/session/{PROJECT}/{PLANNED}.json"]
    assert json.loads(_bytes(memory, session))["revert"] == nested


def test_a_byte_that_is_not_utf8_spoils_its_string_not_its_row(db: Path, home: Path) -> None:
    """Such a byte in a session's title, a message's data or a part's text: the row is
    stored (its string escaped) and read whole: the session's folder and title, every
    message's tokens, the part's text. The stored file held `\\udcNN`, which the analyzer
    refused: the session's record was lost (no folder, no title), and a message's data was
    kept as one string (no tokens)."""
    before = _analyzed(home)
    _fresh_store()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE session SET title = CAST(? AS TEXT) WHERE id = ?",
                     (b"caf\xe9 \xff", PLANNED))
        for mid, data in conn.execute("SELECT id, CAST(data AS BLOB) FROM message"
                                      " WHERE session_id = ?", (EDITED,)).fetchall():
            conn.execute("UPDATE message SET data = CAST(? AS TEXT) WHERE id = ?",
                         (data.rstrip(b"}") + b',"note":"\xfe"}', mid))
        (data,) = conn.execute("SELECT CAST(data AS BLOB) FROM part WHERE id = ?",
                               (PART,)).fetchone()
        text = json.loads(data)["text"]
        conn.execute("UPDATE part SET data = CAST(? AS TEXT) WHERE id = ?",
                     (json.dumps({**json.loads(data), "text": "\xff"}).encode()
                      .replace(b"\\u00ff", b"\xff"), PART))
    conn.close()
    after = _analyzed(home)
    planned, edited = after["digests"][PLANNED], after["digests"][EDITED]
    assert planned["title"] == "caf\ufffd \ufffd"
    assert planned["cwd"] == before["digests"][PLANNED]["cwd"] is not None
    assert planned["malformed_lines"] == edited["malformed_lines"] == 0
    assert after["usage"] == before["usage"]
    assert edited["tokens"] == before["digests"][EDITED]["tokens"]
    texts = [m["text"] for m in after["transcripts"][EDITED]["messages"]]
    assert "\ufffd" in texts and text not in texts
