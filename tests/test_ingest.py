"""Incremental ingest against real files and a real Tier 1 database."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import pytest
import zstandard

from session_memory import config
from session_memory import ingest as ingest_mod
from session_memory.clock import FixedClock
from session_memory.formats.base import Format
from session_memory.fswalk import Entry, OsWalker
from session_memory.memory import Memory
from session_memory.store import tier1 as tier1_mod
from tests.conftest import evict, sources_toml, stored_raw, write_config

SID = "0b6f6b9e-2f57-4c3e-9d39-3a1f1d0c0001"


def claude_line(n: int, text: str = "hello") -> bytes:
    return (json.dumps({"type": "user", "sessionId": SID, "uuid": f"u{n}",
                        "message": {"role": "user", "content": f"{text} {n}"}}) + "\n").encode()


def exported(memory: Memory, sid: str, out: Path) -> dict[str, bytes]:
    memory.export(sid, out)
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_growth_appends_only_new_bytes(memory: Memory, sources: dict[str, Path],
                                       tmp_path: Path) -> None:
    f = sources["claude-code"] / "-home-ana-api" / f"{SID}.jsonl"
    f.parent.mkdir()
    f.write_bytes(claude_line(1))
    first = memory.ingest()
    with f.open("ab") as out:
        out.write(claude_line(2))
    second = memory.ingest()
    assert first.bytes_added == len(claude_line(1))
    assert second.bytes_added == len(claude_line(2))
    assert second.new_versions == 0
    files = exported(memory, f"claude-code:{SID}", tmp_path / "out")
    assert files == {f"-home-ana-api/{SID}.jsonl": f.read_bytes()}
    assert memory.check() == []


def test_unchanged_tree_opens_no_file(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(50):
        p = sources["mytool"] / f"d{i % 5}" / f"s{i}.jsonl"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b'{"a": 1}\n' * (i + 1))
    assert memory.ingest().files_changed == 50
    again = memory.ingest()
    assert (again.files_seen, again.files_changed, again.bytes_added) == (50, 0, 0)


def test_rewrite_and_truncation_become_new_versions(memory: Memory, sources: dict[str, Path],
                                                     tmp_path: Path) -> None:
    f = sources["mytool"] / "log.jsonl"
    f.write_bytes(b'{"n": 1}\n{"n": 2}\n')
    memory.ingest()
    f.write_bytes(b'{"n": 9}\n{"n": 2}\n{"n": 3}\n')  # same start length, different bytes
    rewritten = memory.ingest()
    f.write_bytes(b'{"n": 9}\n')  # shrunk
    truncated = memory.ingest()
    assert rewritten.new_versions == 1 and truncated.new_versions == 1
    sid = "mytool:log.jsonl"
    versions = memory.show(sid)["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["raw_bytes"] for v in versions] == [18, 27, 9]
    assert exported(memory, sid, tmp_path / "o") == {"log.jsonl": b'{"n": 9}\n'}


def test_same_size_rewrite_with_new_mtime_is_detected(memory: Memory,
                                                      sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "a.jsonl"
    f.write_bytes(b'{"x": "aaaa"}\n')
    memory.ingest()
    f.write_bytes(b'{"x": "bbbb"}\n')
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert memory.ingest().new_versions == 1


def test_gemini_json_snapshot_replaces_previous(memory: Memory, sources: dict[str, Path],
                                                tmp_path: Path) -> None:
    f = sources["gemini-cli"] / "abc123" / "chats" / "session-2026-01-01T10-00-deadbeef.json"
    f.parent.mkdir(parents=True)
    doc = {"sessionId": "deadbeef-1", "projectHash": "abc123", "messages": []}
    f.write_text(json.dumps(doc, indent=2))
    memory.ingest()
    doc["messages"] = [{"id": "m1", "type": "user", "content": "hi"}]
    f.write_text(json.dumps(doc, indent=2))
    memory.ingest()
    shown = memory.show("gemini-cli:deadbeef-1")
    assert [v["version"] for v in shown["versions"]] == [2]
    assert shown["raw_bytes"] == f.stat().st_size
    assert exported(memory, "gemini-cli:deadbeef-1", tmp_path / "o") == {
        "abc123/chats/session-2026-01-01T10-00-deadbeef.json": f.read_bytes()}


def test_codex_zst_twin_is_the_same_session(memory: Memory, sources: dict[str, Path],
                                            tmp_path: Path) -> None:
    day = sources["codex"] / "sessions" / "2026" / "01" / "02"
    day.mkdir(parents=True)
    name = "rollout-2026-01-02T03-04-05-11111111-1111-4111-8111-111111111111.jsonl"
    meta = (b'{"timestamp":"2026-01-02T03:04:05Z","type":"session_meta","payload":'
            b'{"id":"11111111-1111-4111-8111-111111111111","cwd":"/w"}}\n')
    body = meta + b'{"type":"event_msg","payload":{"type":"x"}}\n'
    (day / name).write_bytes(body)
    memory.ingest()
    # Codex archives it: the .jsonl becomes .jsonl.zst with the same content.
    (day / (name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(body))
    (day / name).unlink()
    flipped = memory.ingest()
    assert flipped.bytes_added == 0 and flipped.new_versions == 0
    # Resumed and recompressed with more lines: only the new bytes are added.
    more = body + b'{"type":"event_msg","payload":{"type":"y"}}\n'
    (day / (name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(more))
    grown = memory.ingest()
    assert grown.bytes_added == len(more) - len(body)
    sid = "codex:11111111-1111-4111-8111-111111111111"
    assert [s["id"] for s in memory.sessions()] == [sid]
    assert exported(memory, sid, tmp_path / "o") == {f"sessions/2026/01/02/{name}": more}


def test_claude_session_folder_belongs_to_the_session(memory: Memory, sources: dict[str, Path],
                                                      tmp_path: Path) -> None:
    proj = sources["claude-code"] / "-home-ana-api"
    sub = proj / SID / "subagents"
    sub.mkdir(parents=True)
    files = {
        f"-home-ana-api/{SID}.jsonl": claude_line(1),
        f"-home-ana-api/{SID}/subagents/agent-a1.jsonl": claude_line(2),
        f"-home-ana-api/{SID}/subagents/agent-a1.meta.json": b'{"agentType": "x"}',
        f"-home-ana-api/{SID}/tool-results/t1.txt": b"big output\n",
        f"-home-ana-api/{SID}/subagents/workflows/wf1/journal.jsonl": b"{}\n",
        # The same id under a second project folder is one session.
        f"-home-ana-other/{SID}.jsonl": claude_line(3),
        # An old-style flat subagent file carries its parent's sessionId.
        "-home-ana-api/agent-old1.jsonl": claude_line(4),
    }
    for rel, data in files.items():
        (sources["claude-code"] / rel).parent.mkdir(parents=True, exist_ok=True)
        (sources["claude-code"] / rel).write_bytes(data)
    memory.ingest()
    assert [s["id"] for s in memory.sessions()] == [f"claude-code:{SID}"]
    assert exported(memory, f"claude-code:{SID}", tmp_path / "o") == files


def test_vanished_files_stay_stored(memory: Memory, sources: dict[str, Path],
                                    tmp_path: Path) -> None:
    f = sources["mytool"] / "gone.jsonl"
    f.write_bytes(b'{"keep": "me"}\n')
    memory.ingest()
    f.unlink()
    memory.ingest()
    assert exported(memory, "mytool:gone.jsonl", tmp_path / "o") == {
        "gone.jsonl": b'{"keep": "me"}\n'}


def test_evicted_session_that_grows_is_ingested_again(memory: Memory, sources: dict[str, Path],
                                                      tmp_path: Path) -> None:
    f = sources["mytool"] / "s.jsonl"
    f.write_bytes(b'{"a": 1}\n')
    memory.ingest()
    with memory.tier1.transaction():
        memory.tier1.evict("mytool:s.jsonl", memory.clock.now())
    with f.open("ab") as out:
        out.write(b'{"a": 2}\n')
    memory.ingest()
    row = memory.show("mytool:s.jsonl")
    assert row["state"] != "evicted"
    assert exported(memory, "mytool:s.jsonl", tmp_path / "o") == {"s.jsonl": f.read_bytes()}
    assert memory.check() == []


def _stays_evicted(memory: Memory, sid: str) -> None:
    summary = memory.ingest()
    row = memory.show(sid)
    assert (row["state"], row["raw_bytes"], row["stored_bytes"]) == ("evicted", 0, 0)
    assert summary.bytes_added == 0 and memory.tier1.totals()["stored_bytes"] == 0
    assert memory.ingest().files_changed == 0  # the new stat is remembered: not read again
    assert memory.check() == []


def test_an_evicted_session_stays_evicted_when_only_touched(memory: Memory,
                                                            sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "s.jsonl"
    f.write_bytes(b'{"a": 1}\n' * 1000)
    memory.ingest()
    evict(memory, "mytool:s.jsonl")
    os.utime(f, (memory.clock.now() + 50, memory.clock.now() + 50))
    _stays_evicted(memory, "mytool:s.jsonl")


def test_an_evicted_session_stays_evicted_when_its_home_is_copied(memory: Memory,
                                                                  sources: dict[str, Path]
                                                                  ) -> None:
    root = sources["claude-code"]
    (root / "-p" / SID / "subagents").mkdir(parents=True)
    (root / "-p" / f"{SID}.jsonl").write_bytes(b"".join(claude_line(i) for i in range(50)))
    (root / "-p" / SID / "subagents" / "agent-a.jsonl").write_bytes(claude_line(99))
    memory.ingest()
    sid = f"claude-code:{SID}"
    evict(memory, sid)
    # A copy of the home folder: new inodes, and (a plain cp) new mtimes, same bytes.
    root.rename(root.with_name("old"))
    shutil.copytree(root.with_name("old"), root, copy_function=shutil.copyfile)
    _stays_evicted(memory, sid)


def test_an_evicted_codex_session_stays_evicted_when_compressed(memory: Memory,
                                                                sources: dict[str, Path],
                                                                tmp_path: Path) -> None:
    day = sources["codex"] / "sessions" / "2026" / "01" / "02"
    day.mkdir(parents=True)
    name = "rollout-2026-01-02T03-04-05-11111111-1111-4111-8111-111111111111.jsonl"
    body = (b'{"timestamp":"2026-01-02T03:04:05Z","type":"session_meta","payload":'
            b'{"id":"11111111-1111-4111-8111-111111111111","cwd":"/w"}}\n'
            + b'{"type":"event_msg","payload":{"type":"x"}}\n' * 500)
    (day / name).write_bytes(body)
    memory.ingest()
    sid = "codex:11111111-1111-4111-8111-111111111111"
    evict(memory, sid)
    (day / (name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(body))
    (day / name).unlink()
    _stays_evicted(memory, sid)
    # Really new content does come back, whole.
    more = body + b'{"type":"event_msg","payload":{"type":"y"}}\n'
    (day / (name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(more))
    memory.ingest()
    assert memory.show(sid)["state"] != "evicted"
    assert exported(memory, sid, tmp_path / "o") == {f"sessions/2026/01/02/{name}": more}


def test_an_evicted_session_rewritten_in_place_comes_back(memory: Memory,
                                                          sources: dict[str, Path],
                                                          tmp_path: Path) -> None:
    f = sources["mytool"] / "s.jsonl"
    f.write_bytes(b'{"a": 1}\n' * 100)
    memory.ingest()
    evict(memory, "mytool:s.jsonl")
    f.write_bytes(b'{"b": 2}\n' * 100)  # same size, other content
    memory.ingest()
    assert memory.show("mytool:s.jsonl")["state"] != "evicted"
    assert exported(memory, "mytool:s.jsonl", tmp_path / "o") == {"s.jsonl": f.read_bytes()}
    assert memory.check() == []


def test_session_state_follows_idle_time(memory: Memory, sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "live.jsonl"
    f.write_bytes(b"{}\n")
    mtime = memory.clock.now() - 60
    os.utime(f, (mtime, mtime))
    memory.ingest()
    assert memory.show("mytool:live.jsonl")["state"] == "active"
    memory.clock.advance(memory.settings.idle_seconds)  # type: ignore[attr-defined]
    assert memory.show("mytool:live.jsonl")["state"] == "ended"


def test_hook_end_marks_an_active_session_ended(memory: Memory, sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "live.jsonl"
    f.write_bytes(b"{}\n")
    os.utime(f, (memory.clock.now(), memory.clock.now()))
    memory.ingest()
    memory.tier1.mark_ended("mytool:live.jsonl")
    assert memory.show("mytool:live.jsonl")["state"] == "ended"


WRITER = textwrap.dedent("""
    import json, random, sys, time
    path, n = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(7)
    for i in range(n):
        with open(path, "ab") as f:  # like Claude Code: no handle held between writes
            line = json.dumps({"i": i, "pad": "x" * rnd.randrange(0, 20000)}) + "\\n"
            cut = rnd.randrange(len(line))
            f.write(line[:cut].encode()); f.flush()  # a half-written line now and then
            f.write(line[cut:].encode())
        time.sleep(rnd.random() / 200)
""")


def test_ingest_while_a_real_writer_appends(memory: Memory, sources: dict[str, Path],
                                            tmp_path: Path) -> None:
    f = sources["mytool"] / "w" / "live.jsonl"
    f.parent.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(f), "400"])
    passes = 0
    try:
        while writer.poll() is None:
            if f.exists():
                memory.ingest()
                passes += 1
    finally:
        writer.wait(timeout=60)
    memory.ingest()
    assert passes > 3
    assert exported(memory, "mytool:w/live.jsonl", tmp_path / "o") == {
        "w/live.jsonl": f.read_bytes()}
    assert memory.show("mytool:w/live.jsonl")["versions"][0]["version"] == 1
    assert memory.check() == []


class DeletingWalker(OsWalker):
    """Deletes each file right after the walk reports it: a file gone before it is read."""

    def walk(self, root: Path, prune: Callable[[PurePosixPath], bool]) -> Iterator[Entry]:
        for entry in super().walk(root, prune):
            if entry.kind == "file":
                (root / entry.relpath).unlink()
            yield entry


def test_file_deleted_between_walk_and_read(sources: dict[str, Path], memory: Memory) -> None:
    (sources["mytool"] / "x.jsonl").write_bytes(b"{}\n")
    memory.walker = DeletingWalker()
    summary = memory.ingest()
    assert summary.errors == 0 and summary.bytes_added == 0


def test_two_processes_never_store_the_same_bytes_twice(memory: Memory, sources: dict[str, Path],
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon and a hook (or a CLI ingest) may read the same cursor; the one that
    commits second must notice and leave the bytes to the first. (Small files are read
    inside their group's transaction; a large one is read before its own begins.)"""
    monkeypatch.setattr(ingest_mod, "GROUP_COMMIT_BYTES", 0)
    f = sources["mytool"] / "race.jsonl"
    f.write_bytes(b'{"a": 1}\n')
    other = Memory(memory.settings, clock=memory.clock)
    real_cursor = memory.tier1.cursor

    def stale_cursor(source: str, path: str):  # type: ignore[no-untyped-def]
        seen = real_cursor(source, path)
        memory.tier1.cursor = real_cursor  # type: ignore[method-assign]
        other.ingest()  # the other process stores the file between our read and our write
        return seen

    # Our reads of the cursor both happen before the other process commits.
    memory.tier1.append_point = lambda source, phys: None  # type: ignore[method-assign]
    memory.tier1.cursor = stale_cursor  # type: ignore[method-assign]
    summary = memory.ingest()
    other.close()
    assert summary.bytes_added == 0 and summary.errors == 0
    assert exported(memory, "mytool:race.jsonl", tmp_path / "o") == {"race.jsonl": f.read_bytes()}
    assert memory.check() == []


def test_an_end_record_ends_the_session_only_where_it_is_newly_written() -> None:
    _ends_in = ingest_mod._ends_in
    end = re.compile(rb'"type":"session\.shutdown"')
    record = b'{"type":"session.shutdown"}\n'
    assert _ends_in(end, b"", record)
    assert _ends_in(end, b'..{"type":"sess', b'ion.shutdown"}\n')  # cut by a block boundary
    assert not _ends_in(end, record, b'{"type":"user.message"}\n')  # resumed after it


def test_an_ended_session_is_stored_sealed_at_once(memory: Memory, sources: dict[str, Path],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A backfill: files last written before idle_seconds are of ended sessions. Their bytes
    are compressed once, straight into sealed frames, in the session's one stream (files
    too large to pack; tests/store/test_packs.py has the small ones)."""
    monkeypatch.setattr(tier1_mod, "PACK_MEMBER_MAX", 0)
    proj = sources["claude-code"] / "-p"
    (proj / SID / "subagents").mkdir(parents=True)
    files = {f"-p/{SID}.jsonl": b"".join(claude_line(i, "x" * (i % 90)) for i in range(3000)),
             f"-p/{SID}/subagents/agent-a.jsonl": b"".join(claude_line(i) for i in range(900))}
    for rel, data in files.items():
        (sources["claude-code"] / rel).write_bytes(data)
    old = memory.clock.now() - memory.settings.idle_seconds - 1
    for rel in files:
        os.utime(sources["claude-code"] / rel, (old, old))
    memory.ingest()
    conn = memory.tier1.conn
    sid = f"claude-code:{SID}"
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    layout = sorted(conn.execute("SELECT stream_offset, raw_len FROM frames"))
    assert layout == [(0, len(files[f"-p/{SID}.jsonl"])),
                      (len(files[f"-p/{SID}.jsonl"]),
                       len(files[f"-p/{SID}/subagents/agent-a.jsonl"]))]
    assert memory.check() == []
    assert exported(memory, sid, tmp_path / "a") == files
    before = memory.show(sid)["stored_bytes"]
    assert memory.seal() == 1  # marked sealed: nothing recompressed
    assert memory.show(sid)["stored_bytes"] == before
    # It grows again: the new bytes are chunks after the sealed ones, then sealed together.
    main = sources["claude-code"] / f"-p/{SID}.jsonl"
    with main.open("ab") as f:
        f.write(claude_line(5000))
    files[f"-p/{SID}.jsonl"] += claude_line(5000)
    memory.ingest()
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1
    assert exported(memory, sid, tmp_path / "b") == files
    memory.clock.advance(memory.settings.idle_seconds + 1)  # type: ignore[attr-defined]
    assert memory.seal() == 1
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    assert exported(memory, sid, tmp_path / "c") == files
    assert memory.check() == []


def test_before_analysis_a_backfill_starts_at_its_earliest_file_mtime(
        memory: Memory, sources: dict[str, Path]) -> None:
    folder = sources["claude-code"] / "-repo"
    folder.mkdir()
    main = folder / f"{SID}.jsonl"
    sub = folder / SID / "subagents" / "agent-1.jsonl"
    sub.parent.mkdir(parents=True)
    main.write_bytes(claude_line(1))
    sub.write_bytes(claude_line(2))
    old = memory.clock.now() - 10 * 86400
    os.utime(sub, (old, old))
    os.utime(main, (old + 3600, old + 3600))
    memory.ingest()
    row = memory.show(f"claude-code:{SID}")
    assert row["state"] == "ended"
    assert row["started_at"] == old  # not the time it was ingested
    assert row["ended_at"] == old + 3600
    assert row["started_at"] <= row["ended_at"]


def test_a_session_without_files_has_no_start(memory: Memory, sources: dict[str, Path]) -> None:
    with memory.tier1.transaction("bare"):
        memory.tier1.ensure_session("mytool:bare", "mytool", "bare", memory.clock.now(),
                                    memory.clock.now() - 100)
    assert memory.show("mytool:bare")["started_at"] is None


def test_a_stop_ends_the_pass_after_the_file_in_hand(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    """The daemon's stop callback: asked before each file; what was stored commits."""
    for i in range(5):
        (sources["mytool"] / f"s{i}.jsonl").write_bytes(b'{"a": %d}\n' % i)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    first = memory.ingestor.run(stop=stop)
    assert first.files_changed == 2 and len(memory.sessions()) == 2
    assert memory.check() == []
    rest = memory.ingest()
    assert rest.files_changed == 3 and len(memory.sessions()) == 5


def _lines(rnd: random.Random, n: int) -> bytes:
    return b"".join((json.dumps({"i": rnd.random(), "text": "word " * rnd.randrange(1, 300)})
                     + "\n").encode() for _ in range(n))


def test_a_pass_over_named_files_that_grew_stores_each_new_byte_once(
        memory: Memory, sources: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's pass: the files it names grew, most by a few KB (read and compressed
    where they are stored, in one group transaction), some by more (read ahead on the
    pool); one was rewritten at its start and one cut, which are new versions still."""
    monkeypatch.setattr(ingest_mod, "INLINE_BYTES", 4000)
    rnd = random.Random(5)
    root = sources["mytool"]
    files = [root / f"s{i}.jsonl" for i in range(24)]
    for i, f in enumerate(files):
        f.write_bytes(_lines(rnd, 1 + i))  # from under FP_BYTES to many times it
    memory.ingest()
    for f in files[:-2]:
        with f.open("ab") as out:
            out.write(_lines(rnd, rnd.randrange(1, 20)))
    old = files[-2].read_bytes()
    assert len(old) > 2 * ingest_mod.FP_BYTES
    files[-2].write_bytes(b"{}\n" + old[3:] + _lines(rnd, 2))  # only its first bytes differ
    files[-1].write_bytes(files[-1].read_bytes()[:50])
    summary = memory.ingest(files)
    assert (summary.files_changed, summary.new_versions, summary.errors) == (24, 2, 0)
    for f in files:
        assert exported(memory, f"mytool:{f.name}", tmp_path / f.name) == {
            f.name: f.read_bytes()}
    assert memory.check() == []
    with files[0].open("ab") as out:
        out.write(_lines(rnd, 1))
    assert memory.ingest([root]).files_changed == 1  # the root itself, named
    assert exported(memory, "mytool:s0.jsonl", tmp_path / "again") == {
        "s0.jsonl": files[0].read_bytes()}


def test_bytes_written_while_a_file_is_read_are_the_next_passes(
        memory: Memory, sources: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(6)
    f = sources["mytool"] / "live.jsonl"
    f.write_bytes(_lines(rnd, 5))
    memory.ingest()
    first, meanwhile = _lines(rnd, 3), _lines(rnd, 2)
    with f.open("ab") as out:
        out.write(first)
    read_ahead = ingest_mod.Ingestor._read_ahead

    def agent_writes_on(self: ingest_mod.Ingestor, fd: int, offset: int,
                        st: os.stat_result, fmt: Format) -> ingest_mod.Prefetched | None:
        got = read_ahead(self, fd, offset, st, fmt)
        with f.open("ab") as out:  # the agent's next line, once the new bytes are read
            out.write(meanwhile)
        return got

    monkeypatch.setattr(ingest_mod.Ingestor, "_read_ahead", agent_writes_on)
    assert memory.ingest([f]).bytes_added == len(first)
    monkeypatch.undo()
    assert memory.ingest([f]).bytes_added == len(meanwhile)
    assert exported(memory, "mytool:live.jsonl", tmp_path / "o") == {
        "live.jsonl": f.read_bytes()}
    assert memory.check() == []


def test_a_named_file_is_read_under_its_sources_root_as_it_resolves_at_each_pass(
        home: Path, clock: FixedClock, tmp_path: Path) -> None:
    """The watcher names the same paths pass after pass: where each lies is remembered,
    but not past a change of its source's root (here a link to it, pointed elsewhere)."""
    first, second = home / "first", home / "second"
    for folder, text in ((first, b'{"a": 1}\n'), (second, b'{"b": 2}\n{"c": 3}\n')):
        folder.mkdir()
        (folder / "s.jsonl").write_bytes(text)
    link = home / "sessions"
    link.symlink_to(first)
    write_config(home, sources_toml(claude_code=None, codex=None, gemini_cli=None, aider=None,
                                    copilot_cli=None, opencode=None)
                 + f'[sources.mytool]\nformat = "jsonl"\nroot = "{link}"\n')
    with Memory(config.load(), clock=clock) as memory:
        named = link / "s.jsonl"
        assert memory.ingest([named]).bytes_added == 9
        assert memory.ingest([named]).files_changed == 0
        link.unlink()
        link.symlink_to(second)
        assert memory.ingest([named]).new_versions == 1
        assert exported(memory, "mytool:s.jsonl", tmp_path / "o") == {
            "s.jsonl": (second / "s.jsonl").read_bytes()}


def test_every_log_message_names_a_file_under_its_root_as_configured(
        home: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    """The root a link, its files reached through the folder it points at: sync's
    messages, the append path's, the odd files' and a named path's all name a file as the
    user configured it, the root unresolved."""
    real = home / "real"
    real.mkdir()
    link = home / "sessions"
    link.symlink_to(real)
    write_config(home, sources_toml(claude_code=None, codex=None, gemini_cli=None, aider=None,
                                    copilot_cli=None, opencode=None)
                 + f'[sources.mytool]\nformat = "jsonl"\nroot = "{link}"\n')
    (real / "s.jsonl").write_bytes(b'{"a": 1}\n{"b": 2}\n')
    (real / "escape.jsonl").symlink_to(home / "elsewhere.jsonl")
    caplog.set_level("INFO")
    with Memory(config.load(), clock=clock) as memory:
        memory.ingest()
        (real / "s.jsonl").write_bytes(b'{"c": 3}\n')  # rewritten: a new version
        memory.ingest()
        memory.ingest([real / "missing.jsonl"])  # named through the resolved root
        source = memory.settings.sources["mytool"]
        memory.ingestor.sync(source, PurePosixPath("gone.jsonl"), ingest_mod.IngestSummary())
    logged = {r.msg["event"]: r.msg.get("path") for r in caplog.records
              if isinstance(r.msg, dict)}
    assert logged["file was rewritten or truncated: storing a new version"] == (
        f"{link}/s.jsonl")  # the append path
    assert logged["file vanished before it was read; stored copy kept"] == (
        f"{link}/gone.jsonl")  # sync
    assert logged["symlink not followed"] == f"{link}/escape.jsonl"  # an odd file
    assert logged["cannot read path"] == f"{link}/missing.jsonl"  # a path named


def test_a_session_that_grows_keeps_when_it_started(memory: Memory,
                                                    sources: dict[str, Path]) -> None:
    """Before analysis a session started no later than its file was first seen, and a
    later append moves only its last write."""
    path = sources["mytool"] / "grows.jsonl"
    path.write_text('{"type": "user", "content": "first"}\n')
    first = memory.clock.now() - 7200
    os.utime(path, (first, first))
    memory.ingest()
    with path.open("a") as f:
        f.write('{"type": "assistant", "content": "later"}\n')
    later = memory.clock.now() - 60
    os.utime(path, (later, later))
    memory.ingest()
    row = memory.show("mytool:grows.jsonl")
    assert row["started_at"] == first
    assert row["last_write"] == later


def test_a_pass_reads_files_by_folder_and_a_transcript_before_its_own_folder(
        memory: Memory, sources: dict[str, Path]) -> None:
    """The read order (which packs keep) is the path's folders, then its stem: as
    pathlib's parts and stem give them, for names with no, one, several or odd dots."""
    names = ["s1.jsonl", "s1/subagents/agent-b.jsonl", "s1/subagents/agent-a.jsonl",
             "a.tar.gz", ".hidden", "x.", "noext", "s0.jsonl", "s1.zst.jsonl", "b/s1.jsonl"]
    source = memory.settings.enabled_sources[0]
    todo = [ingest_mod.Candidate(source, PurePosixPath(n), str(sources[source.name] / n),
                                 os.stat(sources[source.name]), 0, 0) for n in names]
    assert [ingest_mod._read_key(c) for c in todo] == [
        (c.source.name, [*c.relpath.parent.parts, c.relpath.stem]) for c in todo]
    assert [str(c.relpath) for c in ingest_mod._read_order(todo)][:3] == [
        ".hidden", "a.tar.gz", "b/s1.jsonl"]


def test_a_named_pass_reads_again_what_another_process_stored_after_its_plan(
        memory: Memory, sources: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass over named files keeps the append points its plan read, unless another
    process wrote in between: then it reads them again, and finds the bytes stored."""
    f = sources["mytool"] / "race.jsonl"
    f.write_bytes(b'{"a": 1}\n' * 50)
    memory.ingest()
    with f.open("ab") as out:
        out.write(b'{"a": 2}\n')
    other = Memory(memory.settings, clock=memory.clock)
    ingestor = memory.ingestor
    plan = ingestor.plan

    def plan_then_other_stores(*args: Any, **kw: Any) -> list[ingest_mod.Candidate]:
        todo = plan(*args, **kw)
        assert [c.point for c in todo if c.point is not None]  # the point was read
        other.ingest([f])
        return todo

    monkeypatch.setattr(ingestor, "plan", plan_then_other_stores)
    summary = memory.ingest([f])
    other.close()
    assert summary.bytes_added == 0 and summary.errors == 0
    assert exported(memory, "mytool:race.jsonl", tmp_path / "o") == {"race.jsonl": f.read_bytes()}
    assert memory.check() == []


def test_a_walk_stores_new_files_without_looking_for_their_cursors(
        memory: Memory, sources: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole walk reads every cursor first: a file it found none for is stored without
    looking for one again, and a later walk finds them all."""
    files = {f"s{n}.jsonl": b'{"a": %d}\n' % n * 20 for n in range(5)}
    for name, data in files.items():
        (sources["mytool"] / name).write_bytes(data)
    looked: list[str] = []
    for name in ("cursor", "append_point"):
        lookup = getattr(memory.tier1, name)

        def counted(*args: Any, _lookup: Any = lookup, **kw: Any) -> Any:
            looked.append(args[1])
            return _lookup(*args, **kw)

        monkeypatch.setattr(memory.tier1, name, counted)
    assert memory.ingest().bytes_added == sum(map(len, files.values()))
    assert looked == []
    assert memory.ingest().files_changed == 0
    for name, data in files.items():
        assert exported(memory, f"mytool:{name}", tmp_path / name) == {name: data}
    assert memory.check() == []


def test_a_file_read_whole_ahead_is_stored_without_opening_it_again(
        memory: Memory, sources: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The read ahead takes small new files whole, with the stat they match: the thread
    that stores them opens none again (an open was a tenth of a backfill's time there),
    and what it stores is that read."""
    files = {f"s{n}.jsonl": b'{"a": %d}\n' % n * (n + 1) for n in range(8)}
    for name, data in files.items():
        (sources["mytool"] / name).write_bytes(data)
    opened: list[str] = []
    open_file = os.open

    def spied(path: str, *args: Any, **kw: Any) -> int:
        if threading.current_thread() is threading.main_thread() and str(path).startswith(
                str(sources["mytool"])):
            opened.append(str(path))
        return open_file(path, *args, **kw)

    monkeypatch.setattr(os, "open", spied)
    assert memory.ingest().bytes_added == sum(map(len, files.values()))
    assert opened == []
    for name, data in files.items():
        assert exported(memory, f"mytool:{name}", tmp_path / name) == {name: data}
    assert memory.ingest().files_changed == 0  # the stat stored is the file's
    assert memory.check() == []


def test_a_walk_reads_again_what_another_process_stored_after_its_plan(
        memory: Memory, sources: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the walk's plan found no cursor for, stored by another process before the
    walk comes to it, is found stored: not stored twice."""
    f = sources["mytool"] / "race.jsonl"
    f.write_bytes(b'{"a": 1}\n' * 50)
    other = Memory(memory.settings, clock=memory.clock)
    ingestor = memory.ingestor
    plan = ingestor.plan

    def plan_then_other_stores(*args: Any, **kw: Any) -> list[ingest_mod.Candidate]:
        todo = plan(*args, **kw)
        assert [c.unseen for c in todo] == [True]
        other.ingest([f])
        return todo

    monkeypatch.setattr(ingestor, "plan", plan_then_other_stores)
    summary = memory.ingest()
    other.close()
    assert summary.bytes_added == 0 and summary.errors == 0
    assert exported(memory, "mytool:race.jsonl", tmp_path / "o") == {"race.jsonl": f.read_bytes()}
    assert memory.check() == []


@pytest.mark.parametrize("zst_alone", [False, True])
def test_a_walk_stores_a_compressed_file_and_its_plain_twin_under_one_cursor(
        memory: Memory, sources: dict[str, Path], tmp_path: Path, zst_alone: bool) -> None:
    """A .jsonl.zst is stored under its .jsonl's path: when the walk comes to the .jsonl
    after the .zst (it appeared meanwhile), it finds the cursor the .zst made. Also where
    the .zst, too large for a group, is stored in a transaction of its own and the .jsonl
    in a group: that .jsonl took the path for one no cursor held, and the pass failed on a
    UNIQUE constraint."""
    day = sources["codex"] / "2025" / "01" / "02"
    day.mkdir(parents=True)
    plain = day / "rollout-2025-01-02T10-00-00-abc.jsonl"
    data = b'{"type": "session_meta", "payload": {"id": "abc"}}\n' + b"".join(
        b'{"a": "%s"}\n' % os.urandom(40).hex().encode() for _ in range(30))
    zst = day / (plain.name + ".zst")
    zst.write_bytes(zstandard.ZstdCompressor().compress(data))
    ingestor = memory.ingestor
    plan, sync = ingestor.plan, ingestor.sync

    def plan_with_the_plain_twin(*args: Any, **kw: Any) -> list[ingest_mod.Candidate]:
        todo = plan(*args, **kw)
        assert [c.unseen for c in todo] == [True]
        return [*todo, ingest_mod.Candidate(
            todo[0].source, plain.relative_to(sources["codex"]), str(plain), zst.stat(),
            1, 0, unseen=True)]

    def sync_then_plain_appears(*args: Any, **kw: Any) -> None:
        sync(*args, **kw)
        if not plain.exists():
            plain.write_bytes(data + b'{"a": 2}\n')

    with pytest.MonkeyPatch.context() as mp:
        if zst_alone:
            mp.setattr(ingest_mod, "GROUP_COMMIT_BYTES", zst.stat().st_size)
        mp.setattr(ingestor, "plan", plan_with_the_plain_twin)
        mp.setattr(ingestor, "sync", sync_then_plain_appears)
        summary = memory.ingest()
    assert summary.bytes_added == len(data) + 9 and summary.new_versions == 0
    assert exported(memory, "codex:abc", tmp_path / "o") == {
        str(plain.relative_to(sources["codex"])): plain.read_bytes()}
    assert memory.check() == []


def test_a_walk_finds_the_cursor_a_compressed_file_left_for_its_plain_twin(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    """A plain file a walk finds no cursor for under its own name may still have one,
    left by its compressed twin an earlier pass stored: its bytes are appended there."""
    day = sources["codex"] / "2025" / "01" / "02"
    day.mkdir(parents=True)
    plain = day / "rollout-2025-01-02T10-00-00-abc.jsonl"
    data = b'{"type": "session_meta", "payload": {"id": "abc"}}\n' + b'{"a": 1}\n' * 30
    zst = day / (plain.name + ".zst")
    zst.write_bytes(zstandard.ZstdCompressor().compress(data))
    assert memory.ingest().bytes_added == len(data)
    zst.unlink()
    plain.write_bytes(data + b'{"a": 2}\n')
    summary = memory.ingest()
    assert (summary.bytes_added, summary.new_versions) == (9, 0)
    assert exported(memory, "codex:abc", tmp_path / "o") == {
        str(plain.relative_to(sources["codex"])): plain.read_bytes()}
    assert memory.check() == []


def test_a_named_pass_over_an_evicted_sessions_files_brings_it_back_once(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    """The first of its files to be read brings the session back, which moves the cursors
    of the others: what the plan read of them is no longer used."""
    files = {f"-home-ana-api/{SID}.jsonl": claude_line(1),
             f"-home-ana-api/{SID}/subagents/agent-a1.jsonl": claude_line(2)}
    for rel, data in files.items():
        (sources["claude-code"] / rel).parent.mkdir(parents=True, exist_ok=True)
        (sources["claude-code"] / rel).write_bytes(data)
    memory.ingest()
    with memory.tier1.transaction():
        memory.tier1.evict(f"claude-code:{SID}", memory.clock.now())
    for n, rel in enumerate(files):
        files[rel] += claude_line(10 + n)
        (sources["claude-code"] / rel).write_bytes(files[rel])
    memory.ingest([sources["claude-code"] / rel for rel in files])
    assert memory.ingest().bytes_added == 0
    assert exported(memory, f"claude-code:{SID}", tmp_path / "o") == files
    assert memory.check() == []


def test_a_cursor_fingerprinted_by_an_earlier_version_takes_appends_and_new_fingerprints(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    """Stores written before fingerprints were xxh3 keep blake2b ones in their cursors: an
    append checks those as they were made (a rewrite is still told apart), then the cursor
    keeps fingerprints of this version."""
    fp = ingest_mod.FP_BYTES
    f = sources["mytool"] / "old.jsonl"

    def as_an_earlier_version_left_it() -> None:
        data = f.read_bytes()
        c = memory.tier1.cursor("mytool", "old.jsonl")
        assert c is not None and c.offset == len(data)
        c.head_fp = hashlib.blake2b(data[:fp], digest_size=8).digest()
        c.tail_fp = hashlib.blake2b(data[-fp:], digest_size=8).digest()
        with memory.tier1.transaction():
            memory.tier1.save_cursor(c)

    f.write_bytes(b'{"a": 1}\n' * 1000)
    memory.ingest()
    as_an_earlier_version_left_it()
    with f.open("ab") as out:
        out.write(b'{"a": 2}\n')
    grew = memory.ingest([f])
    assert (grew.bytes_added, grew.new_versions) == (9, 0)
    c = memory.tier1.cursor("mytool", "old.jsonl")
    assert c is not None and c.head_fp is not None and c.tail_fp is not None
    assert len(c.head_fp) == len(c.tail_fp) == 16
    as_an_earlier_version_left_it()
    f.write_bytes(b"[" + f.read_bytes()[1:] + b'{"a": 3}\n')  # its first byte rewritten
    rewritten = memory.ingest([f])
    assert (rewritten.bytes_added, rewritten.new_versions) == (len(f.read_bytes()), 1)
    assert exported(memory, "mytool:old.jsonl", tmp_path / "o") == {"old.jsonl": f.read_bytes()}
    assert memory.check() == []


def _rows(memory: Memory) -> dict[str, list[tuple[Any, ...]]]:
    """Every row an append writes, as the store holds it."""
    conn = memory.tier1.conn
    return {table: sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {table}"))
            for table in ("sessions", "files", "chunks", "cursors", "totals")}


def test_a_few_new_kb_of_an_open_session_take_the_short_path_and_write_the_same_rows(
        home: Path, clock: FixedClock, tmp_path: Path) -> None:
    """Most files a watcher names grew by a few KB at the end of an open session: those
    take Ingestor._append_grown, which must leave the store as the general path does
    (here: a store whose ingestor never takes it), through the appends a pass meets: to
    files shorter than FP_BYTES, with an end record, rewritten before their cursor."""
    roots = {"mytool": home / "src" / "mytool", "copilot-cli": home / "src" / "copilot"}
    for root in roots.values():
        root.mkdir(parents=True)
    write_config(home, sources_toml(claude_code=None, codex=None, gemini_cli=None, aider=None,
                                    opencode=None, copilot_cli=roots["copilot-cli"])
                 + f'[sources.mytool]\nformat = "jsonl"\nroot = "{roots["mytool"]}"\n')
    settings = config.load()
    short = Memory(settings, clock=clock)
    general = Memory(msgspec.structs.replace(settings, data_dir=tmp_path / "general"), clock=clock)
    general.ingestor._append_grown = lambda *_: False  # type: ignore[method-assign]
    taken: list[bool] = []
    append_grown = short.ingestor._append_grown

    def counted(*args: Any) -> bool:
        taken.append(append_grown(*args))
        return taken[-1]

    short.ingestor._append_grown = counted  # type: ignore[method-assign]
    rnd = random.Random(11)
    big, small = roots["mytool"] / "big.jsonl", roots["mytool"] / "small.jsonl"
    events = roots["copilot-cli"] / "c0ffee" / "events.jsonl"
    events.parent.mkdir()
    big.write_bytes(_lines(rnd, 40))
    small.write_bytes(b'{"a": 1}\n')
    events.write_bytes(_lines(rnd, 30))
    files = [big, small, events]
    for f in files:
        os.utime(f, (clock.now(), clock.now()))

    def grow(f: Path, data: bytes) -> None:
        with f.open("ab") as out:
            out.write(data)
        clock.advance(1)  # written now: the session is active, and its last write moves
        os.utime(f, (clock.now(), clock.now()))

    def both_ingest(named: list[Path] | None) -> None:
        for memory in (short, general):
            assert memory.ingest(named).errors == 0
        assert _rows(short) == _rows(general)

    both_ingest(None)
    for _ in range(2):
        for f in files:
            grow(f, _lines(rnd, rnd.randrange(1, 6)))
        both_ingest(files)
    assert taken.count(True) == 4  # the two larger files, twice; the small one is not
    grow(events, b'{"type": "session.shutdown", "data": {}}\n')
    both_ingest([events])
    assert short.show("copilot-cli:c0ffee")["state"] == "ended"
    data = big.read_bytes()
    big.write_bytes(data[:-10])  # cut before its cursor, then written on
    grow(big, b"x" * 10 + _lines(rnd, 2))
    both_ingest([big])
    grow(big, _lines(rnd, 3))
    both_ingest([big])
    assert taken[-2:] == [False, True]
    assert short.tier1.cursor("mytool", "big.jsonl").version == 2  # type: ignore[union-attr]
    for memory in (short, general):
        assert exported(memory, "mytool:big.jsonl", tmp_path / str(id(memory))) == {
            "big.jsonl": big.read_bytes()}
        assert memory.check() == []
        memory.close()


def test_a_role_told_from_the_path_alone_is_remembered_one_told_from_the_bytes_is_not(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher names the same files pass after pass: a file its format places by its
    path is identified once. One placed by its first bytes (a flat `agent-*` transcript,
    by the session id it names) is asked about each time: rewritten to name another
    session, it is stored as that session's."""
    from session_memory.formats import claude_code

    project = sources["claude-code"] / "-home-ana-api"
    project.mkdir()
    transcript, agent = project / f"{SID}.jsonl", project / "agent-a1.jsonl"
    other = "0b6f6b9e-2f57-4c3e-9d39-3a1f1d0c0002"
    transcript.write_bytes(claude_line(1))
    agent.write_bytes(claude_line(1))
    asked: list[str] = []
    identify = claude_code.identify

    def counted(relpath: PurePosixPath, head: Any) -> Any:
        asked.append(relpath.name)
        return identify(relpath, head)

    monkeypatch.setattr(claude_code, "identify", counted)
    for n in range(2, 5):
        for f in (transcript, agent):
            with f.open("ab") as out:
                out.write(claude_line(n))
        assert memory.ingest([transcript, agent]).errors == 0
    assert asked.count(transcript.name) == 1
    assert asked.count(agent.name) == 3
    agent.write_bytes(claude_line(1).replace(SID.encode(), other.encode()))
    memory.ingest([transcript, agent])
    assert stored_raw(memory, f"claude-code:{other}") == agent.read_bytes()
    assert transcript.read_bytes() in stored_raw(memory, f"claude-code:{SID}")  # and the
    # agent's bytes before it was rewritten, a version of its own


def test_a_history_whose_cursor_an_old_forget_deleted_is_read_again(
        memory: Memory, sources: dict[str, Path]) -> None:
    """An earlier version's forget of an Aider history's last run deleted the file's cursor
    with it, leaving the other runs stored: every later ingest read the file from its start
    over them and failed (UNIQUE constraint). It is now read again as a new version: the
    runs as they are in the file, the forgotten one too, since the tool still keeps it."""
    from tests.test_ingest_runs import FIRST, HISTORY, R1, R2, ids, put

    put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    first, last = ids(memory)
    with memory.tier1.transaction("forget as before"):
        memory.tier1.conn.execute("DELETE FROM cursors WHERE session_id = ?", (last,))
        memory.tier1.forget(last)
    assert ids(memory) == [first]

    summary = memory.ingest()

    assert summary.errors == 0
    assert ids(memory) == [first, last]
    assert stored_raw(memory, first) == FIRST + R1
    assert stored_raw(memory, last) == R2
    assert memory.check() == []
    memory.ingest()  # and the file is followed from there
    assert ids(memory) == [first, last]
