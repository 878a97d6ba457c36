"""Tier 1 against a real SQLite file: accounting, sealing, checksums."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from session_memory.memory import Memory
from session_memory.store import tier1 as tier1_mod
from session_memory.store.tier1 import DEEP_SEAL_LEVEL, SEAL_LEVEL, AppendPoint, Cursor, Tier1
from tests.conftest import stored_raw
from tests.store import old_stores


def _active(memory: Memory, *paths: Path) -> None:
    """Written just now, as an agent writes a live session: its bytes come in as chunks.
    (A file last written before idle_seconds is of an ended session, stored sealed at once.)"""
    for path in paths:
        os.utime(path, (memory.clock.now(), memory.clock.now()))


def _grow(path: Path, memory: Memory, appends: int) -> bytes:
    rnd = random.Random(3)
    for i in range(appends):
        with path.open("ab") as f:
            f.write((json.dumps({"i": i, "text": "word " * rnd.randrange(1, 200)}) + "\n").encode())
        _active(memory, path)
        memory.ingest()
    memory.clock.advance(memory.settings.idle_seconds + 1)  # type: ignore[attr-defined]
    return path.read_bytes()


def test_many_small_appends_are_sealed_into_large_frames(memory: Memory,
                                                         sources: dict[str, Path],
                                                         tmp_path: Path) -> None:
    data = _grow(sources["mytool"] / "s.jsonl", memory, 60)
    sid = "mytool:s.jsonl"
    before = memory.show(sid)
    assert before["versions"][0]["chunks"] == 60
    assert memory.seal() == 1
    after = memory.show(sid)
    assert after["versions"][0]["chunks"] == 0
    assert after["raw_bytes"] == before["raw_bytes"] == len(data)
    assert after["stored_bytes"] < before["stored_bytes"] / 3
    frames = list(memory.tier1.conn.execute("SELECT level, raw_len FROM frames"))
    assert frames == [(SEAL_LEVEL, len(data))]
    memory.export(sid, tmp_path / "o")
    assert (tmp_path / "o" / "s.jsonl").read_bytes() == data
    assert memory.check() == []
    assert memory.seal() == 0  # sealed sessions are left alone


def test_growth_after_seal_reopens_the_session(memory: Memory, sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "s.jsonl"
    _grow(f, memory, 3)
    memory.seal()
    _grow(f, memory, 2)
    assert memory.show("mytool:s.jsonl")["versions"][0]["chunks"] == 2
    assert memory.show("mytool:s.jsonl")["state"] == "ended"
    assert memory.seal() == 1
    assert memory.show("mytool:s.jsonl")["versions"][0]["chunks"] == 0
    assert memory.tier1.conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 1
    assert b"".join(memory.tier1.read_file(memory.tier1.files("mytool:s.jsonl")[0].id)) \
        == f.read_bytes()
    assert memory.check() == []


def test_accounting_is_exact(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(5):
        (sources["mytool"] / f"{i}.jsonl").write_bytes(b'{"x": 1}\n' * (i + 1) * 100)
        _active(memory, sources["mytool"] / f"{i}.jsonl")
    memory.ingest()
    conn = memory.tier1.conn
    raw, stored = conn.execute("SELECT sum(raw_len), sum(length(data)) FROM chunks").fetchone()
    totals = memory.tier1.totals()
    assert (totals["raw_bytes"], totals["stored_bytes"]) == (raw, stored)
    assert raw == sum(9 * (i + 1) * 100 for i in range(5))
    assert sum(s["stored_bytes"] for s in memory.sessions()) == stored


def test_check_finds_a_corrupt_chunk_and_bad_accounting(memory: Memory,
                                                        sources: dict[str, Path]) -> None:
    (sources["mytool"] / "a.jsonl").write_bytes(b'{"x": 1}\n' * 100)
    _active(memory, sources["mytool"] / "a.jsonl")
    memory.ingest()
    conn = memory.tier1.conn
    with memory.tier1.transaction():
        conn.execute("DROP TRIGGER chunk_added")  # only to forge damage for the test
        conn.execute("UPDATE chunks SET crc = crc + 1")
        conn.execute("UPDATE totals SET raw_bytes = raw_bytes + 5")
    problems = memory.check()
    assert any("fails its checksum" in p for p in problems)
    assert any("tier1 accounting" in p for p in problems)
    # Named by its session and path, not by the store's own file id alone.
    assert any(p.startswith("tier1 chunk: mytool:a.jsonl, a.jsonl: ") for p in problems), \
        problems


def test_a_session_is_sealed_as_one_stream(memory: Memory, sources: dict[str, Path],
                                           tmp_path: Path) -> None:
    """A subagent transcript repeats its parent: sealed together, the repeat costs little."""
    proj = sources["claude-code"] / "-p"
    sid = "00000000-0000-4000-8000-0000000000aa"
    rnd = random.Random(2)
    words = [f"w{i}" for i in range(2000)]
    parent = b"".join(
        (json.dumps({"type": "user", "n": i, "text": " ".join(rnd.choices(words, k=40))})
         + "\n").encode() for i in range(800))
    (proj / sid / "subagents").mkdir(parents=True)
    (proj / f"{sid}.jsonl").write_bytes(parent)
    (proj / sid / "subagents" / "agent-1.jsonl").write_bytes(parent[: len(parent) // 2])
    _active(memory, proj / f"{sid}.jsonl", proj / sid / "subagents" / "agent-1.jsonl")
    memory.ingest()
    memory.clock.advance(memory.settings.idle_seconds + 1)  # type: ignore[attr-defined]
    unsealed = memory.show(f"claude-code:{sid}")["stored_bytes"]
    memory.seal()
    sealed = memory.show(f"claude-code:{sid}")["stored_bytes"]
    assert sealed < unsealed * 0.75
    memory.export(f"claude-code:{sid}", tmp_path / "o")
    assert (tmp_path / "o" / "-p" / f"{sid}.jsonl").read_bytes() == parent
    assert (tmp_path / "o" / "-p" / sid / "subagents" / "agent-1.jsonl").read_bytes() \
        == parent[: len(parent) // 2]
    assert memory.check() == []


def test_a_seal_killed_before_it_switches_loses_nothing(memory: Memory,
                                                        sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "s.jsonl"
    data = _grow(f, memory, 5)
    memory.close()
    env = dict(os.environ, SESSION_MEMORY_CRASH_AT="before-commit:seal")
    code = ("from session_memory import config; from session_memory.memory import Memory;"
            "from session_memory.clock import FixedClock;"
            f"Memory(config.load(), clock=FixedClock({memory.clock.now()!r})).seal()")
    run = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert run.returncode == -signal.SIGKILL
    conn = memory.tier1.conn
    assert conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 1  # staged, unused
    assert b"".join(memory.tier1.read_file(memory.tier1.files("mytool:s.jsonl")[0].id)) == data
    assert memory.check() == []
    assert memory.seal() == 1
    assert conn.execute("SELECT generation FROM frames").fetchall() == [(1,)]
    assert memory.check() == []


def test_sealing_with_several_workers(memory: Memory, sources: dict[str, Path],
                                      tmp_path: Path) -> None:
    files = {}
    for i in range(12):
        f = sources["mytool"] / f"s{i}.jsonl"
        files[f"s{i}.jsonl"] = _grow(f, memory, 2)
    assert memory.seal(workers=3) == 12
    assert memory.tier1.conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 12
    assert memory.tier1.conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    for name, data in files.items():
        memory.export(f"mytool:{name}", tmp_path / "o")
        assert (tmp_path / "o" / name).read_bytes() == data
    assert memory.check() == []


def _sealed_session(memory: Memory, sources: dict[str, Path]) -> tuple[str, bytes]:
    f = sources["mytool"] / "s.jsonl"
    rnd = random.Random(5)
    words = [f"w{i}" for i in range(300)]
    f.write_text("".join(json.dumps({"i": i, "text": " ".join(rnd.choices(words, k=60))}) + "\n"
                         for i in range(3000)))
    memory.ingest()
    assert memory.seal() == 1
    return "mytool:s.jsonl", f.read_bytes()


def _levels(memory: Memory) -> set[tuple[int, int]]:
    return set(memory.tier1.conn.execute(
        "SELECT f.level, s.seal_level FROM frames f JOIN sessions s ON s.id = f.session_id"))


def test_deep_seal_recompresses_sealed_sessions_harder(memory: Memory, sources: dict[str, Path],
                                                       tmp_path: Path) -> None:
    sid, data = _sealed_session(memory, sources)
    sealed = memory.show(sid)["stored_bytes"]
    assert _levels(memory) == {(SEAL_LEVEL, SEAL_LEVEL)}
    assert memory.tier1.to_deepen() == [sid]
    assert memory.deep_seal() == 1
    assert _levels(memory) == {(DEEP_SEAL_LEVEL, DEEP_SEAL_LEVEL)}
    assert memory.show(sid)["stored_bytes"] < sealed
    memory.export(sid, tmp_path / "o")
    assert (tmp_path / "o" / "s.jsonl").read_bytes() == data
    assert memory.check() == []
    assert memory.tier1.to_deepen() == [] and memory.deep_seal() == 0
    assert memory.seal() == 0  # a deeper seal is never undone by the ordinary one


def test_an_interrupted_deep_seal_changes_nothing(memory: Memory,
                                                  sources: dict[str, Path]) -> None:
    sid, data = _sealed_session(memory, sources)
    before = list(memory.tier1.conn.execute("SELECT id, generation, level FROM frames"))
    asked = []

    def interrupted() -> bool:
        asked.append(1)
        return True

    assert memory.tier1.seal_session(sid, DEEP_SEAL_LEVEL, interrupted=interrupted) == 0
    assert asked == [1]  # asked after the first MiB, and stopped there
    assert list(memory.tier1.conn.execute("SELECT id, generation, level FROM frames")) == before
    assert b"".join(memory.tier1.read_file(memory.tier1.files(sid)[0].id)) == data
    assert memory.tier1.to_deepen() == [sid] and memory.check() == []


def test_growth_after_a_deep_seal_starts_over(memory: Memory, sources: dict[str, Path]) -> None:
    sid, data = _sealed_session(memory, sources)
    memory.deep_seal()
    with (sources["mytool"] / "s.jsonl").open("ab") as f:
        f.write(b'{"i": "more"}\n')
    memory.ingest()
    assert memory.tier1.to_deepen() == []  # open again: not sealed
    assert memory.seal() == 1
    assert _levels(memory) == {(SEAL_LEVEL, SEAL_LEVEL)}
    assert memory.tier1.to_deepen() == [sid]
    assert b"".join(memory.tier1.read_file(memory.tier1.files(sid)[0].id)) \
        == data + b'{"i": "more"}\n'


def test_the_seal_level_migration_reads_it_from_the_frames(memory: Memory,
                                                           sources: dict[str, Path]) -> None:
    sid, _ = _sealed_session(memory, sources)
    conn = memory.tier1.conn
    _undo_dictionaries(conn)
    conn.execute("DROP INDEX sessions_by_seal_level")
    conn.execute("ALTER TABLE sessions DROP COLUMN seal_level")
    conn.execute("PRAGMA user_version = 1")
    memory.close()
    with Memory(memory.settings, clock=memory.clock) as again:
        assert _levels(again) == {(SEAL_LEVEL, SEAL_LEVEL)}
        assert again.tier1.to_deepen() == [sid]


def test_a_damaged_sealed_frame_is_caught_by_its_own_checksum(memory: Memory,
                                                              sources: dict[str, Path]) -> None:
    sid, _ = _sealed_session(memory, sources)
    conn = memory.tier1.conn
    data = bytearray(conn.execute("SELECT data FROM frames").fetchone()[0])
    assert data[4] & 0x04  # zstd's content checksum is in the frame
    data[-1] ^= 0xFF  # the checksum itself: the content decodes, and no longer matches it
    with memory.tier1.transaction():
        conn.execute("UPDATE frames SET data = ?", (bytes(data),))
    problems = memory.check()
    assert any("frame at 0" in p and "checksum" in p for p in problems), problems


def test_a_seal_racing_an_eviction_leaks_nothing(memory: Memory,
                                                 sources: dict[str, Path]) -> None:
    """The eviction commits (from another connection, as the sweep does) while the seal is
    staging frames: nothing of the staged frames may stay behind (issue 12, item 5)."""
    f = sources["mytool"] / "s.jsonl"
    rnd = random.Random(7)
    for _ in range(3):  # three chunks: the seal reads the later ones after the eviction
        with f.open("a") as out:
            out.write("".join(json.dumps({"i": i, "t": rnd.getrandbits(256)}) + "\n"
                              for i in range(15_000)))
        memory.ingest()
    sid = "mytool:s.jsonl"
    other = Tier1(memory.tier1.path)
    calls = []

    def evict_meanwhile() -> bool:
        calls.append(1)
        if len(calls) == 3:
            with other.transaction("evict"):
                other.evict(sid, memory.clock.now())
        return False

    try:
        assert memory.tier1.seal_session(sid, frame_bytes=256 * 1024,
                                         interrupted=evict_meanwhile) == 0
    finally:
        other.close()
    assert len(calls) >= 3
    row = memory.tier1.conn.execute(
        "SELECT state, raw_bytes, stored_bytes FROM sessions WHERE id = ?", (sid,)).fetchone()
    assert tuple(row) == ("evicted", 0, 0)
    assert memory.tier1.conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
    assert memory.tier1.totals()["stored_bytes"] == 0
    assert memory.check() == []


def test_check_sees_and_repair_frees_frames_leaked_by_an_evicted_session(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A store damaged by the old race: an evicted session still holding staged frames."""
    sid, _ = _sealed_session(memory, sources)
    conn = memory.tier1.conn
    with memory.tier1.transaction():
        memory.tier1.evict(sid, memory.clock.now())
        conn.execute("INSERT INTO frames (session_id, generation, stream_offset, raw_len, crc,"
                     " level, data) VALUES (?, 7, 0, 1000, 0, 15, zeroblob(5000))", (sid,))
    assert any("evicted" in p and sid in p for p in memory.check())
    fixed = memory.repair()
    assert any(sid in line for line in fixed)
    assert conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
    assert memory.show(sid)["stored_bytes"] == 0 and memory.tier1.totals()["stored_bytes"] == 0
    assert memory.check() == []


# -- dictionaries of stores made by earlier versions -----------------------------------------


def _unpacked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions keep frames of their own, as those too large to pack do (test_packs.py
    covers packs)."""
    monkeypatch.setattr(tier1_mod, "PACK_MEMBER_MAX", 0)


@pytest.fixture(autouse=True)
def _frames_only(monkeypatch: pytest.MonkeyPatch) -> None:
    _unpacked(monkeypatch)


def _similar_sessions(root: Path, n: int, marker: str = "", seed: int = 7) -> dict[str, bytes]:
    """Sessions of one tool in one project: the same keys and file contents over and over,
    which a dictionary learns and each session alone does not know yet."""
    rnd = random.Random(seed)
    shared = [" ".join(f"line{j} = value{j * 7 % 13}" for j in range(40)) for _ in range(20)]
    out = {}
    for s in range(n):
        lines = [json.dumps({"type": "tool_result", "session": s, "turn": t,
                             "content": rnd.choice(shared) + f" {marker} {s} {t}"})
                 for t in range(60)]
        path = root / f"sess{seed}-{s}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        out[f"mytool:{path.name}"] = path.read_bytes()
    return out


def _planted(memory: Memory, root: Path, n: int) -> tuple[dict[str, bytes], int]:
    """`n` similar sessions stored, sealed, deep-sealed and then recompressed with a
    dictionary trained on them, as an earlier version's idle work left them: their bytes
    by id, and the dictionary's id."""
    data = _similar_sessions(root, n)
    memory.ingest()
    memory.seal()
    memory.deep_seal()
    assert old_stores.frames_only(memory.tier1) == sorted(data)
    return data, old_stores.plant_dictionary(memory.tier1, sorted(data))


def _undo_packs(conn: Any) -> None:
    """The store as it was before the pack step of the schema (user_version 3)."""
    for sql in ("DROP TRIGGER pack_added", "DROP TRIGGER pack_removed",
                "DROP TRIGGER pack_member_added", "DROP TRIGGER pack_member_died",
                "DROP TRIGGER pack_member_removed", "DROP TABLE pack_members",
                "DROP TABLE packs", "PRAGMA user_version = 3"):
        conn.execute(sql)


def _undo_dictionaries(conn: Any) -> None:
    """The store as it was before the dictionary step of the schema (user_version 2)."""
    _undo_packs(conn)
    for sql in ("DROP TRIGGER dictionary_added", "DROP TRIGGER dictionary_removed",
                "DROP TRIGGER dictionary_unused", "DROP INDEX frames_by_dict",
                "ALTER TABLE frames DROP COLUMN dict_id",
                "DROP INDEX dictionary_sessions_by_session", "DROP TABLE dictionary_sessions",
                "DROP TABLE dictionaries", "PRAGMA user_version = 2"):
        conn.execute(sql)


def test_an_old_stores_dictionary_frames_read_back_and_new_frames_use_none(
        memory: Memory, sources: dict[str, Path]) -> None:
    data, dict_id = _planted(memory, sources["mytool"], 12)
    [d] = old_stores.dictionaries(memory.tier1)
    assert d == {"id": dict_id, "retired": False, "frames": len(data), "trained_on": len(data)}
    for sid, raw in data.items():
        assert stored_raw(memory, sid) == raw
    # Its bytes count in the store's totals, once, and the file says what they say.
    assert memory.check() == []
    # A second connection (a reader) decompresses with it too.
    with Memory(memory.settings, clock=memory.clock) as other:
        for sid, raw in data.items():
            assert stored_raw(other, sid) == raw
    # The idle work leaves frames that use a live dictionary as they are.
    assert memory.tier1.to_deepen() == []
    assert memory.deep_seal() == 0
    assert old_stores.dictionaries(memory.tier1)[0]["frames"] == len(data)
    # A session that grows is sealed again without it; so is every new one.
    grown = sorted(data)[0]
    with (sources["mytool"] / grown.split(":", 1)[1]).open("ab") as f:
        f.write(b'{"more": 1}\n')
    (sources["mytool"] / "new.jsonl").write_bytes(b'{"type": "user"}\n' * 500)
    memory.ingest()
    memory.clock.advance(memory.settings.idle_seconds + 1)  # type: ignore[attr-defined]
    memory.seal()
    memory.deep_seal()
    unused = {str(r[0]) for r in memory.tier1.conn.execute(
        "SELECT session_id FROM frames WHERE dict_id IS NULL")}
    assert unused == {grown, "mytool:new.jsonl"}
    assert stored_raw(memory, grown) == data[grown] + b'{"more": 1}\n'
    for sid, raw in data.items():
        if sid != grown:
            assert stored_raw(memory, sid) == raw
    assert old_stores.dictionaries(memory.tier1)[0]["frames"] == len(data) - 1
    assert memory.check() == []


def test_a_dictionary_goes_with_its_last_frame(memory: Memory, sources: dict[str, Path]) -> None:
    data, _ = _planted(memory, sources["mytool"], 10)
    sids = sorted(data)
    with memory.tier1.transaction():
        for sid in sids[:-1]:
            memory.tier1.evict(sid, memory.clock.now())
    assert old_stores.dictionaries(memory.tier1)[0]["frames"] == 1
    assert memory.check() == []
    with memory.tier1.transaction():
        memory.tier1.evict(sids[-1], memory.clock.now())
    assert old_stores.dictionaries(memory.tier1) == []
    assert memory.tier1.conn.execute("SELECT count(*) FROM dictionary_sessions"
                                     ).fetchone()[0] == 0
    assert memory.tier1.totals()["stored_bytes"] == 0
    assert memory.check() == []


def test_check_names_frames_whose_dictionary_is_gone(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    _, dict_id = _planted(memory, sources["mytool"], 10)
    assert memory.check() == []
    # Only a damaged file can lose one: foreign keys refuse it otherwise.
    memory.tier1.conn.execute("PRAGMA foreign_keys = OFF")
    memory.tier1.conn.execute("DROP TRIGGER dictionary_removed")
    memory.tier1.conn.execute("DELETE FROM dictionaries WHERE id = ?", (dict_id,))
    problems = memory.check()
    assert any(f"dictionary {dict_id}, which is gone" in p for p in problems)


def test_the_dictionary_migration_upgrades_a_store_in_place(
        memory: Memory, sources: dict[str, Path]) -> None:
    data = _similar_sessions(sources["mytool"], 10)
    memory.ingest()
    memory.seal()
    memory.deep_seal()
    _undo_dictionaries(memory.tier1.conn)
    memory.close()
    with Memory(memory.settings, clock=memory.clock) as again:
        assert again.check() == []
        for sid, raw in data.items():
            assert stored_raw(again, sid) == raw
        # At the deep level already: the idle work has nothing to redo.
        assert again.tier1.to_deepen() == []
        assert again.deep_seal() == 0
        assert old_stores.dictionaries(again.tier1) == []
        assert again.check() == []


def test_a_renamed_session_keeps_its_dictionary_link(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    """A forget of the session under its new id must still retire what it trained."""
    data, dict_id = _planted(memory, sources["mytool"], 10)
    old = next(iter(data))
    with memory.tier1.transaction():
        memory.tier1.move_session(old, "mytool:renamed", "renamed")
    assert memory.tier1.dictionaries_trained_on("mytool:renamed") == [dict_id]
    assert memory.tier1.dictionaries_trained_on(old) == []
    assert stored_raw(memory, "mytool:renamed") == data[old]
    assert memory.check() == []


def test_a_cursor_saved_again_stays_one_row_whatever_session_it_moves_to(
        tmp_path: Path) -> None:
    t = Tier1(tmp_path / "t1.db")
    c = Cursor("src", "a.jsonl", "a.jsonl.zst", "src:a", 0, 1, 0, 10, b"h", b"t", 1, 2, 10, 5)
    with t.transaction():
        t.save_cursor(c)
    c.offset, c.size = 20, 20  # moved along its session
    with t.transaction():
        t.save_cursor(c)
    assert t.cursors() == [c]
    with t.transaction():
        t.ensure_session("src:a#2", "src", "a#2", 0.0, 0.0)
        c.file_id = t.new_file("src:a#2", "src", "a.jsonl", 1, 7, 0.0, 0.0)
        c.session_id, c.run = "src:a#2", 1  # a new run of the file: another session
        t.save_cursor(c)
    assert t.cursors() == [c]
    # What an append reads first: the cursor, its session's state, its file's base offset.
    assert t.append_point("src", "a.jsonl.zst") == AppendPoint(c, "open", 7)
    assert t.append_point("src", "a.jsonl") is None  # the file it follows is the .zst
    assert t.append_point("src", "b.jsonl") is None
    t.close()


def test_append_points_finds_what_append_point_finds_for_many_files_at_once(
        tmp_path: Path) -> None:
    t = Tier1(tmp_path / "t1.db")
    zst = Cursor("src", "a.jsonl", "a.jsonl.zst", "src:a", 0, 1, 0, 10, b"h", b"t", 1, 2, 10, 5)
    plain = Cursor("src", "b.jsonl", "b.jsonl", "src:b", 0, 1, 0, 4, b"h", b"t", 1, 3, 4, 5)
    other = Cursor("dst", "b.jsonl", "b.jsonl", "dst:b", 0, 1, 0, 4, b"h", b"t", 1, 4, 4, 5)
    with t.transaction():
        t.ensure_session("src:b", "src", "b", 0.0, 0.0)
        plain.file_id = t.new_file("src:b", "src", "b.jsonl", 1, 3, 0.0, 0.0)
        for c in (zst, plain, other):
            t.save_cursor(c)
    asked = [("src", "a.jsonl.zst"), ("src", "a.jsonl"), ("src", "b.jsonl"),
             ("src", "c.jsonl"), ("dst", "b.jsonl"), ("dst", "a.jsonl.zst")]
    found = t.append_points(iter(asked))
    assert found == {("src", "a.jsonl.zst"): AppendPoint(zst, None, 0),
                     ("src", "b.jsonl"): AppendPoint(plain, "open", 3),
                     ("dst", "b.jsonl"): AppendPoint(other, None, 0)}
    assert all(found.get(key) == t.append_point(*key) for key in asked)
    assert t.append_points([]) == {}
    t.close()


def test_data_version_moves_with_another_connections_commits_only(tmp_path: Path) -> None:
    t, other = Tier1(tmp_path / "t1.db"), Tier1(tmp_path / "t1.db")
    before = t.data_version()
    with t.transaction():
        t.set_meta("k", 1)
    assert t.data_version() == before
    with other.transaction():
        other.set_meta("k", 2)
    assert t.data_version() != before
    t.close()
    other.close()


def test_a_session_that_grew_is_open_unsealed_not_ended_and_written_last_at_the_latest(
        tmp_path: Path) -> None:
    """session_grew takes a shorter way for a session that is open already; whatever the
    row said, and whatever it was told of it, it ends the same: open, unsealed, not ended,
    its last write the later one."""
    t = Tier1(tmp_path / "t1.db")
    cases = [(state, hint, sealed, last_write, told) for state in ("open", "analyzed", "evicted")
             for hint in (0, 1) for sealed in (0, 1) for last_write in (50.0, 100.0, 150.0)
             for told in (True, False)]
    with t.transaction():
        for i, (state, hint, sealed, last_write, _) in enumerate(cases):
            sid = f"src:{i}"
            t.ensure_session(sid, "src", str(i), 1.0, last_write)
            t.conn.execute("UPDATE sessions SET state = ?, ended_hint = ?, sealed = ?, "
                           "analyzed_at = 7.0 WHERE id = ?", (state, hint, sealed, sid))
    with t.transaction():
        for i, (*_, told) in enumerate(cases):  # told it was open or not, rightly or not
            t.session_grew(f"src:{i}", 100.0, was_open=told)
    for i, (_, _, _, last_write, _) in enumerate(cases):
        row = t.conn.execute("SELECT state, ended_hint, sealed, last_write, analyzed_at, "
                             "first_seen FROM sessions WHERE id = ?", (f"src:{i}",)).fetchone()
        assert row == ("open", 0, 0, max(last_write, 100.0), 7.0, 1.0), cases[i]
    assert t.check() == []
    t.close()


def test_forgetting_the_last_run_of_a_history_keeps_ingest_going(
        memory: Memory, sources: dict[str, Path]) -> None:
    """The run of an Aider history that owns the file's cursor (its last) is forgotten: the
    cursor passes to the last run left, so the next ingest goes on from there. Deleted with
    the run, it made the next ingest read the file again from its start, over runs still
    stored, and fail on every pass."""
    from tests.test_ingest_runs import FIRST, HISTORY, R1, R2, R3, ids, put

    path = put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    first, last = ids(memory)
    memory.forget(last)
    memory.ingest()
    assert ids(memory) == [first]
    assert stored_raw(memory, first) == FIRST + R1
    assert memory.check() == []

    put(sources["aider"], f"app/{HISTORY}", R3, append=True)  # the history goes on
    memory.ingest()
    assert ids(memory) == [first, "aider:app#20250604T103000"]
    assert stored_raw(memory, "aider:app#20250604T103000") == R3
    assert path.read_bytes() == FIRST + R1 + R2 + R3


def test_marking_a_batch_analyzed_leaves_the_sessions_that_grew(
        memory: Memory, sources: dict[str, Path]) -> None:
    for name in ("a", "b", "c"):
        _grow(sources["mytool"] / f"{name}.jsonl", memory, 1)
    rows = {r["id"]: r for r in memory.tier1.sessions(memory.idle_before)}
    ids = sorted(rows)
    marks = [(sid, 10.0, 20.0, rows[sid]["raw_bytes"] + (sid == ids[1])) for sid in ids]
    assert memory.tier1.mark_all_analyzed(marks, 30.0) == [ids[1]]  # its digest saw more
    after = {r["id"]: r for r in memory.tier1.sessions(memory.idle_before)}
    assert [after[sid]["state"] for sid in ids] == ["analyzed", "ended", "analyzed"]
    assert (after[ids[0]]["analyzed_at"], after[ids[0]]["started_at"]) == (30.0, 10.0)
    assert memory.tier1.mark_all_analyzed([], 40.0) == []


def test_more_of_a_forgotten_last_run_leaves_the_run_before_it_whole(
        memory: Memory, sources: dict[str, Path]) -> None:
    """The forgotten last run of an Aider history goes on (Aider still runs): its new bytes
    are a session of their own. Appended to the run left before it, whose file row the
    cursor had passed to, they left a gap where the forgotten bytes were, and that run's
    raw bytes could no longer be read (a corrupt chunk for analyze, export and check)."""
    from tests.test_ingest_runs import FIRST, HISTORY, R1, R2, ids, put

    put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    first, last = ids(memory)
    memory.forget(last)
    more = b"#### and more\n\nDone again.\n\n"
    put(sources["aider"], f"app/{HISTORY}", more, append=True)
    memory.ingest()

    assert stored_raw(memory, first) == FIRST + R1
    (more_of_it,) = set(ids(memory)) - {first}
    assert more_of_it != last and stored_raw(memory, more_of_it) == more
    assert memory.check() == []


def test_files_come_by_path_then_id_as_sqlite_orders_text(tmp_path: Path) -> None:
    """Sorted in Python, not by the query: the order SQLite's text comparison gives (UTF-8
    bytes), for paths beyond ASCII too, and each path's versions oldest first."""
    t = Tier1(tmp_path / "t1.db")
    paths = ["b.jsonl", "a/é.jsonl", "a/z.jsonl", "a/\U0001f600.jsonl", "a/\uffee.jsonl",
             "A.jsonl", "b.jsonl"]
    with t.transaction():
        t.ensure_session("src:s", "src", "s", 0.0, 0.0)
        for version, path in enumerate(paths):
            t.new_file("src:s", "src", path, version, 0, 0.0, 0.0)
    by_sqlite = [(str(p), int(i)) for i, p in t.conn.execute(
        "SELECT id, path FROM files ORDER BY path, id")]
    assert [(f.path, f.id) for f in t.files("src:s", latest_only=False)] == by_sqlite
    assert [f.path for f in t.files("src:s")] == [p for p, _ in by_sqlite if p != "b.jsonl"] + [
        "b.jsonl"]  # only the newest version of b.jsonl
    assert t.files("src:s")[-1].version == len(paths) - 1
    t.close()


def test_cursors_leaves_out_those_under_the_prefixes_it_is_told(tmp_path: Path) -> None:
    """What a whole walk asks: not the cursors of files made from a database's rows."""
    t = Tier1(tmp_path / "t1.db")
    paths = [("oc", "opencode.db/part/m/p.json"), ("oc", "opencode.db-x.json"),
             ("oc", "opencode.dbz/a.json"), ("oc", "session/p/s.json"),
             ("other", "opencode.db/part/m/p.json")]
    with t.transaction():
        for i, (source, path) in enumerate(paths):
            t.save_cursor(Cursor(source, path, path, f"{source}:s", 0, 1, 0, 1, b"h", b"t",
                                 1, i, 1, 5))
    assert sorted((c.source, c.path) for c in t.cursors()) == sorted(paths)
    left = t.cursors(besides=[("oc", "opencode.db/"), ("oc", "opencode-dev.db/")])
    assert sorted((c.source, c.path) for c in left) == sorted(paths[1:])
    assert [c.path for c in t.cursors("oc", besides=[("oc", "opencode.db/")])] == [
        p for s, p in sorted(paths[1:4])]
    t.close()


def test_a_blob_stored_from_pieces_holds_them_in_order_and_counts_their_length(
        tmp_path: Path) -> None:
    """Packs and frames are written into a zeroblob of their length, piece by piece (no
    join, no copy of the whole bound): what is stored is the pieces one after another, and
    the triggers count that length."""
    t = Tier1(tmp_path / "t1.db")
    pieces = [b"first ", b"", os.urandom(70_000), b" last"]
    with t.transaction():
        t.ensure_session("src:s", "src", "s", 0.0, 0.0)
        pack_id = t._insert_with_blob("packs", "created_at, raw_len, level", (0.0, 5, 3),
                                      pieces)
        t._insert_with_blob("frames", "session_id, generation, stream_offset, raw_len, crc, "
                            "level", ("src:s", 0, 0, 7, 0, 3), pieces[:1])
    whole = b"".join(pieces)
    assert t.conn.execute("SELECT data FROM packs WHERE id = ?", (pack_id,)).fetchone() == (
        whole,)
    assert t.conn.execute("SELECT data FROM frames").fetchone() == (pieces[0],)
    assert t.totals()["stored_bytes"] == len(whole) + len(pieces[0])
    assert t.byte_counts("src:s") == (0, len(pieces[0]))
    t.close()
