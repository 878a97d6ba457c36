"""Packs: small ended sessions compressed together (Tier1.pack_sessions), read back byte for
byte, evicted, compacted, forgotten without a trace, and left when a session grows."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
import zstandard

from session_memory.memory import Memory
from session_memory.store import tier1 as tier1_mod
from session_memory.store.tier1 import DEEP_SEAL_LEVEL, SEAL_LEVEL
from tests.conftest import stored_raw


@pytest.fixture(autouse=True)
def _small_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packs of the few small sessions a test has (the real threshold waits for 8 MiB)."""
    monkeypatch.setattr(tier1_mod, "PACK_MIN_RAW_BYTES", 0)


def _project_sessions(root: Path, n: int, *, marker: str = "", seed: int = 3,
                      prefix: str = "p") -> dict[str, bytes]:
    """Sessions that read the same files: a 24 KB file of random hex (which no session
    compresses below half on its own) shows up whole in every one of them."""
    rnd = random.Random(seed)
    shared = rnd.randbytes(12_000).hex()
    out = {}
    for s in range(n):
        lines = [json.dumps({"type": "user", "turn": 0, "content": f"task {s} {marker}"})]
        lines += [json.dumps({"type": "tool_result", "turn": t, "content": shared})
                  for t in (1, 2)]
        lines += [json.dumps({"type": "assistant", "turn": 3,
                              "content": rnd.randbytes(300).hex()})]
        path = root / f"{prefix}{seed}-{s}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        out[f"mytool:{path.name}"] = path.read_bytes()
    return out


def _packed(memory: Memory, data: dict[str, bytes]) -> dict[str, int]:
    """Ingest, seal and pack; the pack id of each session."""
    memory.ingest()
    memory.seal()
    memory.deep_seal()
    rows = dict(memory.tier1.conn.execute(
        "SELECT session_id, pack_id FROM pack_members WHERE live"))
    assert set(data) <= set(rows), "every small ended session is packed"
    return {sid: int(rows[sid]) for sid in data}


def _stored(memory: Memory) -> int:
    return memory.tier1.totals()["stored_bytes"]


def _reads_back(memory: Memory, data: dict[str, bytes]) -> None:
    for sid, raw in data.items():
        assert stored_raw(memory, sid) == raw, sid


def test_a_pack_stores_what_sessions_share_once(memory: Memory,
                                                sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 12)
    packs = _packed(memory, data)
    assert len(set(packs.values())) == 1
    _reads_back(memory, data)
    # Each session compressed alone holds the shared file; the pack holds it about once.
    alone = sum(len(zstandard.compress(raw, SEAL_LEVEL)) for raw in data.values())
    assert _stored(memory) < alone / 4, (_stored(memory), alone)
    assert memory.tier1.conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
    # A session's share of the pack is in its stored bytes; they add up to the store's.
    shares = sum(memory.show(sid)["stored_bytes"] for sid in data)
    assert shares == _stored(memory)
    assert memory.check() == []


def test_members_read_back_in_any_order(memory: Memory, sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 8)
    _packed(memory, data)
    backwards = dict(reversed(list(data.items())))
    _reads_back(memory, backwards)
    _reads_back(memory, data)


def test_evicting_members_frees_the_pack_with_the_last(memory: Memory,
                                                       sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 6)
    _packed(memory, data)
    full = _stored(memory)
    ids = list(data)
    shares = {sid: memory.show(sid)["stored_bytes"] for sid in ids}
    with memory.tier1.transaction():
        freed = [memory.tier1.evict(sid, memory.clock.now()) for sid in ids[:-1]]
        assert freed == [shares[sid] for sid in ids[:-1]], "each session's share"
        assert _stored(memory) == full, "the pack stays while a member lives"
        assert memory.tier1.dead_pack_bytes() == sum(freed)
        memory.tier1.evict(ids[-1], memory.clock.now())
    assert _stored(memory) == 0
    assert memory.tier1.conn.execute("SELECT count(*) FROM pack_members").fetchone()[0] == 0
    assert memory.check() == []


def test_compacting_frees_evicted_members(memory: Memory, sources: dict[str, Path]) -> None:
    """What the sweep does at the end of each batch: a pack holding evicted sessions is
    rewritten without them, so their bytes are really freed when it commits."""
    data = _project_sessions(sources["mytool"], 4)
    other = _project_sessions(sources["mytool"], 4, seed=9, prefix="o")
    _packed(memory, {**data, **other})
    before = _stored(memory)
    with memory.tier1.transaction():
        for sid in other:
            memory.tier1.evict(sid, memory.clock.now())
        assert memory.tier1.compact_packs() == 1
    assert memory.tier1.dead_pack_bytes() == 0
    # Rewritten quickly inside the transaction; the idle pass deepens it again.
    assert memory.tier1.conn.execute("SELECT level FROM packs").fetchall() == [(SEAL_LEVEL,)]
    assert _stored(memory) < before * 0.75, (_stored(memory), before)
    _reads_back(memory, data)
    assert memory.check() == []


def test_a_mostly_evicted_pack_is_compacted(memory: Memory, sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 6)
    _project_sessions(sources["mytool"], 1, seed=4)  # other content, to be compacted away
    _packed(memory, data)
    memory.deep_seal()  # ingest's pack, repacked at the deep level: nothing left to do
    assert memory.tier1.packs_to_repack() == []
    (pack_id,) = memory.tier1.conn.execute("SELECT id FROM packs").fetchone()
    ids = list(data)
    with memory.tier1.transaction():
        for sid in ids[:5]:
            memory.tier1.evict(sid, memory.clock.now())
    assert memory.tier1.packs_to_repack() == [pack_id]
    before = _stored(memory)
    memory.deep_seal()
    assert memory.tier1.packs_to_repack() == []
    assert _stored(memory) < before
    _reads_back(memory, {ids[5]: data[ids[5]]})
    assert memory.check() == []


def test_an_interrupted_pack_changes_nothing(memory: Memory, sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 4)
    for path in sources["mytool"].iterdir():  # still being written when ingested: chunks
        os.utime(path, (memory.clock.now(), memory.clock.now()))
    memory.ingest()
    memory.clock.advance(86400)
    memory.seal()  # frames of their own, at the sealing level: waiting to be packed
    before = _stored(memory)
    assert memory.tier1.pack_sessions(now=memory.clock.now(), interrupted=lambda: True) == 0
    assert memory.tier1.conn.execute("SELECT count(*) FROM packs").fetchone()[0] == 0
    assert _stored(memory) == before
    _reads_back(memory, data)
    assert memory.tier1.pack_sessions(now=memory.clock.now()) == len(data)
    (pack_id,) = memory.tier1.conn.execute("SELECT id FROM packs").fetchone()
    packed = _stored(memory)
    assert not memory.tier1.repack(pack_id, level=DEEP_SEAL_LEVEL, interrupted=lambda: True)
    assert memory.tier1.conn.execute("SELECT id FROM packs").fetchall() == [(pack_id,)]
    assert _stored(memory) == packed
    _reads_back(memory, data)


def test_the_idle_work_dates_its_packs_by_the_clock(memory: Memory,
                                                   sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 4)
    for path in sources["mytool"].iterdir():  # still being written when ingested: chunks
        os.utime(path, (memory.clock.now(), memory.clock.now()))
    memory.ingest()
    memory.clock.advance(86400)
    memory.seal()
    memory.deep_seal()  # the sealed sessions waiting are packed
    assert memory.tier1.conn.execute("SELECT created_at FROM packs").fetchall() == [
        (memory.clock.now(),)]
    _reads_back(memory, data)


def test_a_packed_session_that_grows_leaves_its_pack(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 4)
    _packed(memory, data)
    sid = next(iter(data))
    path = sources["mytool"] / sid.split(":", 1)[1]
    more = b'{"type": "user", "content": "one more thing"}\n'
    with path.open("ab") as f:
        f.write(more)
    memory.ingest()
    assert stored_raw(memory, sid) == data[sid] + more  # its pack, then the new chunk
    memory.seal()
    assert stored_raw(memory, sid) == data[sid] + more
    live = memory.tier1.conn.execute(
        "SELECT count(*) FROM pack_members WHERE session_id = ? AND live", (sid,)).fetchone()
    assert live == (0,), "sealed again into frames of its own"
    _reads_back(memory, {k: v for k, v in data.items() if k != sid})
    assert memory.check() == []


def test_forget_leaves_no_trace_in_a_pack(memory: Memory, sources: dict[str, Path]) -> None:
    """A string planted in packed sessions, some of them evicted first (their bytes stay in
    the pack until it goes): once all are forgotten, no file under the data directory
    holds it, and the pack's other sessions read back."""
    planted = "PLANTED-p4ck-9q3z-unique-marker"
    doomed = _project_sessions(sources["mytool"], 5, marker=planted, seed=5, prefix="d")
    kept = _project_sessions(sources["mytool"], 5, seed=5, prefix="k")
    _packed(memory, {**doomed, **kept})
    ids = list(doomed)
    with memory.tier1.transaction():
        for sid in ids[:2]:
            memory.tier1.evict(sid, memory.clock.now())
    for sid in ids:
        memory.forget(sid)
    _reads_back(memory, kept)
    assert memory.check() == []
    needle = planted.encode()
    for f in memory.settings.data_dir.rglob("*"):
        if f.is_file():
            assert needle not in f.read_bytes(), f


def test_a_damaged_pack_is_caught(memory: Memory, sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 3)
    _packed(memory, data)
    raw = bytearray(memory.tier1.conn.execute("SELECT data FROM packs").fetchone()[0])
    raw[len(raw) // 2] ^= 0xFF
    with memory.tier1.transaction():
        memory.tier1.conn.execute("UPDATE packs SET data = ?", (bytes(raw),))
    problems = memory.check()
    assert any("pack" in p for p in problems), problems


def test_packs_carry_no_zstd_checksum_of_their_own(memory: Memory,
                                                   sources: dict[str, Path]) -> None:
    """Each member's crc32 is what a read checks: zstd's checksum over the whole frame
    would only cost every read its hashing."""
    data = _project_sessions(sources["mytool"], 3)
    _packed(memory, data)
    for (frame,) in memory.tier1.conn.execute("SELECT data FROM packs"):
        assert zstandard.get_frame_parameters(frame).has_checksum is False
    _reads_back(memory, data)


def test_packs_written_with_a_zstd_checksum_still_read_and_are_rewritten_without(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A store's packs from before af39170 carry zstd's checksum: they read back and check
    clean as ever, and a pack rewritten without a session (forget) leaves it out."""
    data = _project_sessions(sources["mytool"], 4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tier1_mod, "_pack_params", lambda level, threads=0: (
            zstandard.ZstdCompressionParameters.from_level(
                level, window_log=tier1_mod._PACK_WINDOW_LOG, write_checksum=1)))
        _packed(memory, data)
    (old,) = memory.tier1.conn.execute("SELECT data FROM packs").fetchone()
    assert zstandard.get_frame_parameters(old).has_checksum is True
    _reads_back(memory, data)
    assert memory.check() == []
    gone = sorted(data)[0]
    memory.forget(gone)
    (new,) = memory.tier1.conn.execute("SELECT data FROM packs").fetchone()
    assert zstandard.get_frame_parameters(new).has_checksum is False
    _reads_back(memory, {sid: raw for sid, raw in data.items() if sid != gone})
    assert memory.check() == []


def test_a_member_whose_bytes_differ_from_its_crc_is_caught(memory: Memory,
                                                            sources: dict[str, Path]) -> None:
    """Members are checked against the crc32 zlib wrote for them, by a faster crc32 of the
    same polynomial: every good member reads back, and one whose crc is off fails."""
    data = _project_sessions(sources["mytool"], 3)
    _packed(memory, data)
    _reads_back(memory, data)
    with memory.tier1.transaction():
        memory.tier1.conn.execute(
            "UPDATE pack_members SET crc = (crc | 1) - (crc & 1) WHERE file_id = (SELECT"
            " min(file_id) FROM pack_members)")
    problems = memory.check()
    assert sum("fails its checksum" in p for p in problems) == 1, problems


def test_ingest_packs_a_history_as_it_stores_it(memory: Memory, sources: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files of ended sessions go into packs as they are read (compressed once);
    a file too large to pack keeps frames of its own, and an active one takes chunks."""
    data = _project_sessions(sources["mytool"], 6)
    big = sources["mytool"] / "big.jsonl"
    big.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(30000)))
    monkeypatch.setattr(tier1_mod, "PACK_MEMBER_MAX", big.stat().st_size - 1)
    active = sources["mytool"] / "active.jsonl"
    active.write_bytes(b'{"type": "user"}\n')
    later = memory.clock.now() + 3600
    os.utime(active, (later, later))
    memory.ingest()
    conn = memory.tier1.conn
    levels = dict(conn.execute("SELECT m.session_id, p.level FROM pack_members m "
                               "JOIN packs p ON p.id = m.pack_id WHERE m.live"))
    assert levels == dict.fromkeys(data, SEAL_LEVEL)
    assert conn.execute("SELECT count(DISTINCT session_id) FROM frames").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM frames WHERE session_id = 'mytool:big.jsonl'"
                        ).fetchone()[0] >= 1
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] >= 1
    _reads_back(memory, {**data, "mytool:big.jsonl": big.read_bytes(),
                         "mytool:active.jsonl": active.read_bytes()})
    assert memory.check() == []
    # The idle work packs them harder, together, and a session too large to pack is
    # recompressed in frames of its own; every byte still reads back.
    memory.seal()
    memory.deep_seal()
    assert {level for (level,) in conn.execute("SELECT level FROM packs")} == {DEEP_SEAL_LEVEL}
    _reads_back(memory, {**data, "mytool:big.jsonl": big.read_bytes()})
    assert memory.check() == []


def test_a_sessions_files_are_packed_one_after_another(memory: Memory,
                                                        sources: dict[str, Path]) -> None:
    """A transcript and the files in the folder of its name (its subagents') are read in
    a row, so that they land side by side in one pack: reading the session unpacks one."""
    proj = sources["claude-code"] / "-work-p"
    ids = ["0b7e5d8e-1111-4a4a-8b8b-000000000001", "0b7e5d8e-1111-4a4a-8b8b-000000000002"]
    for sid in ids:
        (proj / sid / "subagents").mkdir(parents=True)
        (proj / f"{sid}.jsonl").write_text(
            json.dumps({"type": "user", "sessionId": sid, "message": {"content": sid}}) + "\n")
        for agent in ("a", "b"):
            (proj / sid / "subagents" / f"agent-{agent}.jsonl").write_text(
                json.dumps({"type": "user", "sessionId": sid, "agentId": agent}) + "\n")
    memory.ingest()
    order = [str(sid) for (sid,) in memory.tier1.conn.execute(
        "SELECT session_id FROM pack_members WHERE live ORDER BY pack_id, offset")]
    assert order == [f"claude-code:{ids[0]}"] * 3 + [f"claude-code:{ids[1]}"] * 3, order



def test_a_copied_history_is_packed_by_the_times_its_records_carry(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A history copied without its mtimes (`cp`, `rsync` without -t) looks freshly written;
    its records' own times say it ended long ago, so ingest packs it all the same, and its
    session has ended as of its last record. A file whose newest record is recent is still
    being written: it takes chunks, and its session is active."""
    now = memory.clock.now()

    def stamp(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime(now - seconds_ago))

    files = {
        "old.jsonl": [{"type": "user", "timestamp": stamp(30 * 86400)},
                      {"type": "assistant", "timestamp": stamp(29 * 86400)}],
        "recent.jsonl": [{"type": "user", "timestamp": stamp(40 * 86400)},
                         {"type": "assistant", "timestamp": stamp(5)}],
        # An old time quoted inside a record's text is not the record's own time.
        "quotes.jsonl": [{"type": "tool_result",
                          "content": json.dumps({"at": stamp(30 * 86400)})}],
    }
    for name, records in files.items():
        path = sources["mytool"] / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.utime(path, (now, now))  # written just now, as far as the mtime tells
    memory.ingest()
    packed = {sid for (sid,) in memory.tier1.conn.execute(
        "SELECT session_id FROM pack_members WHERE live")}
    assert packed == {"mytool:old.jsonl"}
    chunked = {sid for (sid,) in memory.tier1.conn.execute(
        "SELECT DISTINCT f.session_id FROM chunks c JOIN files f ON f.id = c.file_id")}
    assert chunked == {"mytool:recent.jsonl", "mytool:quotes.jsonl"}
    states = {sid: memory.show(sid)["state"] for sid in (*packed, *chunked)}
    assert states == {"mytool:old.jsonl": "ended", "mytool:recent.jsonl": "active",
                      "mytool:quotes.jsonl": "active"}
    last_write = {sid: memory.tier1.session(sid, memory.idle_before)["last_write"]
                  for sid in states}
    assert last_write == {"mytool:old.jsonl": pytest.approx(now - 29 * 86400 + 0.123),
                          "mytool:recent.jsonl": now, "mytool:quotes.jsonl": now}
    _reads_back(memory, {f"mytool:{name}": (sources["mytool"] / name).read_bytes()
                         for name in files})
    assert memory.check() == []


def test_a_packed_snapshot_rewritten_leaves_its_pack(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    """A file its tool rewrites whole (a Gemini CLI `.json` session), packed, then written
    again: the new version replaces the old, whose bytes in the pack are dead (the session
    no longer counts them; the pack's compaction drops them), not a live member of no file."""
    chats = sources["gemini-cli"] / "proj" / "chats"
    chats.mkdir(parents=True)
    old = memory.clock.now() - 86400

    def write(name: str, turns: int) -> bytes:
        path = chats / f"session-{name}.json"
        path.write_text(json.dumps({"sessionId": name, "messages": [
            {"type": "user", "content": f"turn {i}", "timestamp": "2026-01-01T00:00:00Z"}
            for i in range(turns)]}, indent=2))
        os.utime(path, (old, old))
        return path.read_bytes()

    data = {f"gemini-cli:{name}": write(name, 3) for name in ("a", "b", "c")}
    packs = _packed(memory, data)
    assert len(set(packs.values())) == 1
    data["gemini-cli:a"] = write("a", 5)
    memory.ingest()
    assert memory.check() == []
    _reads_back(memory, data)
    files = memory.tier1.files("gemini-cli:a")
    assert [f.version for f in files] == [2]
    assert memory.tier1.session("gemini-cli:a", memory.idle_before)["stored_bytes"] == sum(
        f.stored_bytes for f in files)
    assert memory.tier1.dead_pack_bytes() > 0
    with memory.tier1.transaction():
        assert memory.tier1.compact_packs() == 1
    assert memory.tier1.dead_pack_bytes() == 0
    _reads_back(memory, data)
    assert memory.check() == []


def test_repair_frees_a_pack_member_left_without_its_file(memory: Memory,
                                                         sources: dict[str, Path]) -> None:
    """What an earlier version left of a packed file rewritten whole (its row gone, its pack
    member live): `check` names it, `check --repair` marks it dead, and the pack's other
    members read back."""
    data = _project_sessions(sources["mytool"], 3)
    _packed(memory, data)
    gone = next(iter(data))
    (file_id,) = [f.id for f in memory.tier1.files(gone)]
    with memory.tier1.transaction():
        memory.tier1.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
    assert f"tier1: file {file_id} and its bytes in a pack disagree" in memory.check()
    assert any(f"file {file_id}:" in fix for fix in memory.repair())
    assert memory.check() == []
    _reads_back(memory, {sid: raw for sid, raw in data.items() if sid != gone})


def test_quick_packs_take_level_1s_matcher_with_a_larger_table() -> None:
    """Packs at SEAL_LEVEL (ingest's, the sweep's and forget's rewrites) are compressed
    with zstd's fast strategy and a 2^17 table, on zstd's threads or not; the idle work's
    at DEEP_SEAL_LEVEL as that level is."""
    for threads in (0, 2):
        quick = tier1_mod._pack_params(SEAL_LEVEL, threads)
        assert (quick.strategy, quick.hash_log, quick.threads) == (
            zstandard.STRATEGY_FAST, 17, threads)
    deep = tier1_mod._pack_params(DEEP_SEAL_LEVEL)
    level_6 = zstandard.ZstdCompressionParameters.from_level(DEEP_SEAL_LEVEL)
    assert (deep.strategy, deep.hash_log) == (level_6.strategy, level_6.hash_log)
