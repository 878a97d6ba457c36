"""Tier 1 against a real SQLite file: accounting, sealing, checksums."""

from __future__ import annotations

import json
import random
from pathlib import Path

from session_memory.memory import Memory
from session_memory.store.tier1 import SEAL_LEVEL


def _grow(path: Path, memory: Memory, appends: int) -> bytes:
    rnd = random.Random(3)
    for i in range(appends):
        with path.open("ab") as f:
            f.write((json.dumps({"i": i, "text": "word " * rnd.randrange(1, 200)}) + "\n").encode())
        memory.ingest()
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
    assert after["versions"][0]["chunks"] == 1
    assert after["raw_bytes"] == before["raw_bytes"] == len(data)
    assert after["stored_bytes"] < before["stored_bytes"] / 3
    level = memory.tier1.conn.execute("SELECT level FROM chunks").fetchone()[0]
    assert level == SEAL_LEVEL
    memory.export(sid, tmp_path / "o")
    assert (tmp_path / "o" / "s.jsonl").read_bytes() == data
    assert memory.check() == []
    assert memory.seal() == 0  # sealed sessions are left alone


def test_growth_after_seal_reopens_the_session(memory: Memory, sources: dict[str, Path]) -> None:
    f = sources["mytool"] / "s.jsonl"
    _grow(f, memory, 3)
    memory.seal()
    _grow(f, memory, 2)
    assert memory.show("mytool:s.jsonl")["versions"][0]["chunks"] == 3
    assert memory.seal() == 1
    assert memory.show("mytool:s.jsonl")["versions"][0]["chunks"] == 1


def test_accounting_is_exact(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(5):
        (sources["mytool"] / f"{i}.jsonl").write_bytes(b'{"x": 1}\n' * (i + 1) * 100)
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
    memory.ingest()
    conn = memory.tier1.conn
    with memory.tier1.transaction():
        conn.execute("DROP TRIGGER chunk_added")  # only to forge damage for the test
        conn.execute("UPDATE chunks SET crc = crc + 1")
        conn.execute("UPDATE totals SET raw_bytes = raw_bytes + 5")
    problems = memory.check()
    assert any("fails its checksum" in p for p in problems)
    assert any("tier1 accounting" in p for p in problems)
