"""Packs: small ended sessions compressed together (Tier1.pack_sessions), read back byte for
byte, evicted, compacted, forgotten without a trace, and left when a session grows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from session_memory.memory import Memory
from session_memory.store import tier1 as tier1_mod
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
    memory.ingest()
    memory.seal()
    own_frames = _stored(memory)
    packs = _packed(memory, data)
    assert len(set(packs.values())) == 1
    _reads_back(memory, data)
    # Each session alone stores the shared file; the pack stores it about once.
    assert _stored(memory) < own_frames / 4, (_stored(memory), own_frames)
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
    with memory.tier1.transaction():
        freed = [memory.tier1.evict(sid, memory.clock.now()) for sid in ids]
    assert freed[:-1] == [0] * (len(ids) - 1), "the pack stays while a member lives"
    assert freed[-1] == full and _stored(memory) == 0
    assert memory.tier1.conn.execute("SELECT count(*) FROM pack_members").fetchone()[0] == 0
    assert memory.check() == []


def test_a_mostly_evicted_pack_is_compacted(memory: Memory, sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 6)
    _project_sessions(sources["mytool"], 1, seed=4)  # other content, to be compacted away
    _packed(memory, data)
    (pack_id,) = memory.tier1.conn.execute("SELECT id FROM packs").fetchone()
    ids = list(data)
    with memory.tier1.transaction():
        for sid in ids[:5]:
            memory.tier1.evict(sid, memory.clock.now())
    assert memory.tier1.packs_to_compact() == [pack_id]
    before = _stored(memory)
    memory.deep_seal()
    assert memory.tier1.packs_to_compact() == []
    assert _stored(memory) < before
    _reads_back(memory, {ids[5]: data[ids[5]]})
    assert memory.check() == []


def test_an_interrupted_pack_changes_nothing(memory: Memory, sources: dict[str, Path]) -> None:
    data = _project_sessions(sources["mytool"], 4)
    memory.ingest()
    memory.seal()
    before = _stored(memory)
    assert memory.tier1.pack_sessions(now=memory.clock.now(), interrupted=lambda: True) == 0
    assert memory.tier1.conn.execute("SELECT count(*) FROM packs").fetchone()[0] == 0
    assert _stored(memory) == before
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
