"""Every fixture file goes in through ingest and comes back out byte-identical."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import FIXTURES, fixture_config


def _session_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_every_fixture_round_trips(home: Path, tmp_path: Path) -> None:
    fixture_config(home)
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        summary = memory.ingest()
        assert summary.errors == 0
        memory.seal()  # exports must read sealed frames back byte-exactly too
        ids = [s["id"] for s in memory.sessions()]
        assert all(s["sealed"] for s in memory.tier1.sessions(memory.idle_before))
        for sid in ids:
            source = sid.split(":", 1)[0]
            if source != "aider":
                memory.export(sid, tmp_path / "out" / source)
        # Aider runs are slices of one history file: their concatenation is the file.
        for repo in ("Monochromatic", "mozgoslav"):
            # Ids name each run by its header time (-2, … for a repeated one): in file order.
            runs = sorted((s for s in ids if s.startswith(f"aider:{repo}#")),
                          key=lambda s: (s.rsplit("#", 1)[1][:15],
                                         int(s.rsplit("#", 1)[1][16:] or 1)))
            joined = b"".join(
                b"".join(memory.tier1.read_file(f.id))
                for sid in runs for f in memory.tier1.files(sid))
            assert joined == (FIXTURES / "aider" / repo / ".aider.chat.history.md").read_bytes()
        assert memory.check() == []
    for source, root in (("claude-code", FIXTURES / "claude-code" / "projects"),
                         ("codex", FIXTURES / "codex")):
        out = tmp_path / "out" / source
        assert _session_files(out) == _session_files(root)
        for rel in _session_files(root):
            assert filecmp.cmp(out / rel, root / rel, shallow=False), rel


def test_aider_runs_are_sessions(home: Path) -> None:
    fixture_config(home)
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        memory.ingest()
        aider = [s["id"] for s in memory.sessions(source="aider")]
    mono = (FIXTURES / "aider" / "Monochromatic" / ".aider.chat.history.md").read_bytes()
    runs = mono.count(b"# aider chat started at")
    assert runs == 19
    times = re.findall(rb"^# aider chat started at (\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)$",
                       mono, re.MULTILINE)
    expected = [f"aider:Monochromatic#{y.decode()}{mo.decode()}{d.decode()}T"
                f"{h.decode()}{mi.decode()}{sec.decode()}" for y, mo, d, h, mi, sec in times]
    assert len(set(expected)) == runs  # no two runs of it started in the same second
    assert sorted(s for s in aider if s.startswith("aider:Monochromatic#")) == sorted(expected)


def test_reingest_is_idempotent(home: Path) -> None:
    fixture_config(home)
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        first = memory.ingest()
        totals = memory.tier1.totals()
        second = memory.ingest()
        assert first.bytes_added > 0
        assert second.bytes_added == 0 and second.files_changed == 0
        assert memory.tier1.totals() == totals
