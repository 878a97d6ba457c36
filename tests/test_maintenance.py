"""Repairs between the tiers must never damage what is right: accounting of sealed
sessions (frames) included. Found by the crash harness: `check --repair` recounted the
totals from chunks alone and broke every sealed session's accounting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from session_memory import maintenance
from session_memory.memory import Memory


def test_repair_leaves_sealed_accounting_alone(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(3):
        (sources["mytool"] / f"s{i}.jsonl").write_bytes(b'{"type": "user"}\n' * 500)
    memory.ingest()
    assert memory.seal() == 3
    totals = memory.tier1.totals()
    assert memory.repair() == []
    assert memory.tier1.totals() == totals
    assert memory.check() == []


def test_repair_recounts_drift_with_frames(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(2):
        (sources["mytool"] / f"s{i}.jsonl").write_bytes(b'{"type": "user"}\n' * 500)
    memory.ingest()
    memory.seal()
    (sources["mytool"] / "s0.jsonl").open("ab").write(b'{"more": 1}\n')
    memory.ingest()  # s0: frames plus a new chunk
    good = memory.tier1.totals()
    memory.tier1.conn.execute("UPDATE totals SET raw_bytes = raw_bytes + 7, chunks = 99")
    memory.tier1.conn.execute("UPDATE sessions SET stored_bytes = 1")
    assert memory.check() != []
    assert any("recounted" in fix for fix in memory.repair())
    assert memory.tier1.totals() == good
    assert memory.check() == []


def test_a_forget_cut_short_is_finished_by_the_next_start(memory: Memory,
                                                          sources: dict[str, Path]) -> None:
    """Killed between the Tier 1 commit and the digest's removal, a forget leaves a
    marker; finish_interrupted (which the daemon runs at start) completes it."""
    (sources["mytool"] / "secret.jsonl").write_bytes(b'{"type": "user"}\n')
    memory.ingest()
    assert memory.analyze() == ["mytool:secret.jsonl"]
    memory.close()
    run = subprocess.run([sys.executable, "-m", "session_memory", "forget", "secret.jsonl"],
                         env=dict(os.environ, SESSION_MEMORY_CRASH_AT="after-commit:forget"),
                         capture_output=True, timeout=60)
    assert run.returncode == -signal.SIGKILL
    assert maintenance.pending_forgets(memory.tier1) == ["mytool:secret.jsonl"]
    assert memory.tier2.has_digest("mytool:secret.jsonl")
    assert maintenance.finish_interrupted(memory.tier1, memory.tier2) == [
        "finished forgetting mytool:secret.jsonl"]
    assert not memory.tier2.has_digest("mytool:secret.jsonl")
    assert maintenance.pending_forgets(memory.tier1) == []
    assert memory.check() == []
