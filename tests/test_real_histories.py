"""Real people's Claude Code and Codex histories (tests/fixtures/real/, a subset of
../shared/fixtures/real; see SOURCES.md): stored and exported byte-identically, analyzed
without a failure, and the lines a sanitiser broke counted as malformed, none lost."""

from __future__ import annotations

import filecmp
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import FIXTURES, write_config

REAL = FIXTURES / "real"
ROOTS = {
    "mclaude": ("claude-code", REAL / "claude-code" / "M-Thisness__M-Claude"),
    "smartagent": ("claude-code", REAL / "claude-code" / "Smartagent-so__Personal_AI_Infrastructure"
                   / ".claude" / "projects"),
    "rollouts": ("codex", REAL / "codex"),
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _not_json_objects(path: Path) -> int:
    """Lines that are not a JSON object, counted as the sanitiser left them."""
    bad = 0
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            bad += not isinstance(json.loads(line), dict)
        except ValueError:
            bad += 1
    return bad


@pytest.fixture
def real(home: Path) -> Iterator[Memory]:
    write_config(home, "[sources.claude-code]\nenabled = false\n[sources.codex]\nenabled = false\n"
                 + "".join(f'[sources.{name}]\nformat = "{fmt}"\nroot = "{root}"\n'
                           for name, (fmt, root) in ROOTS.items()))
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        summary = memory.ingest()
        assert (summary.errors, summary.skipped) == (0, 0)
        yield memory


def test_real_histories_export_byte_identical(real: Memory, tmp_path: Path) -> None:
    real.seal()
    for name, (_, root) in ROOTS.items():
        out = tmp_path / name
        for session in real.sessions(source=name):
            real.export(session["id"], out)
        assert _files(out) == _files(root), name
        for rel in _files(root):
            assert filecmp.cmp(out / rel, root / rel, shallow=False), rel
    assert real.check() == []


def test_real_histories_analyze_and_count_broken_lines(real: Memory) -> None:
    result = real.analyze_report(include_active=True)
    assert result.failed == {}
    sessions = real.sessions()
    assert {s["id"] for s in sessions} == set(result.analyzed)
    by_source = {name: [s for s in sessions if s["source"] == name] for name in ROOTS}
    # Old-style agent-*.jsonl files join the session their lines name (whose own file
    # may not be in the subset): 16 files are 15 sessions, 17 are 9.
    assert {name: len(rows) for name, rows in by_source.items()} == {
        "mclaude": 15, "smartagent": 9, "rollouts": 14}
    assert sum(len(s["files"]) for s in by_source["mclaude"]) == 16
    assert sum(len(s["files"]) for s in by_source["smartagent"]) == 17
    broken = 0
    for session in by_source["mclaude"]:
        digest = real.show(session["id"])["digest"]
        want = sum(_not_json_objects(ROOTS["mclaude"][1] / f) for f in session["files"])
        assert digest["malformed_lines"] == want, session["id"]
        broken += want
    assert broken == 87  # in the ten broken files taken (see SOURCES.md)
    for name in ("smartagent", "rollouts"):
        for session in by_source[name]:
            assert real.show(session["id"])["digest"]["malformed_lines"] == 0, session["id"]


def test_a_root_above_the_transcripts_reads_the_same_sessions(real: Memory, home: Path) -> None:
    """The same transcripts read through a root two or four folders further up (the whole
    tree of real/claude-code): the same sessions, the same digests but for their paths."""
    def digests(memory: Memory, sources: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        memory.analyze_report(include_active=True)
        found = {}
        for source in sources:
            for session in memory.sessions(source=source):
                digest = dict(memory.show(session["id"])["digest"])
                for key in ("source", "analyzer_version"):
                    digest.pop(key)
                found[session["id"].split(":", 1)[1]] = digest
        return found

    near = digests(real, ("mclaude", "smartagent"))
    write_config(home, "[sources.codex]\nenabled = false\n[sources.claude-code]\n"
                 f'root = "{REAL / "claude-code"}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        assert memory.ingest().errors == 0
        far = digests(memory, ("claude-code",))
    assert far == near
    assert sum(d["user_turns"] for d in far.values()) > 0
