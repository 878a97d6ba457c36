"""Our day × model token totals against ccusage's, on the same files, in the same time zone.

Runs where `ccusage` (npm ccusage@20.0.24; .ci/run installs it) is on PATH, else skips
saying so. The files: the Claude Code and Codex fixtures and the hand-made sessions of
tests/usage_corpus.py, rewritten as the tools write them (compact JSON, millisecond times).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests import usage_corpus as corpus
from tests.conftest import FIXTURES, in_time_zone, sources_toml, write_config

CCUSAGE = shutil.which("ccusage")
pytestmark = pytest.mark.skipif(
    CCUSAGE is None, reason="ccusage is not installed (npm install -g ccusage@20.0.24)")


@pytest.fixture(params=["UTC", corpus.TZ])
def tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, request.param)


@pytest.fixture
def agents(home: Path) -> Path:
    """A home as the tools leave it: ~/.claude and ~/.codex."""
    data = home / "agents"
    claude, codex = data / ".claude" / "projects", data / ".codex"
    corpus.rewrite_tree(FIXTURES / "claude-code" / "projects", claude)
    corpus.rewrite_tree(FIXTURES / "codex", codex)
    corpus.write_claude_sessions(claude)
    corpus.write_codex_sessions(codex)
    write_config(home, sources_toml(claude_code=claude, codex=codex, gemini_cli=None,
                                    aider=None))
    return data


def ccusage(agents: Path, tz: str, *args: str) -> Any:
    env = {"PATH": os.environ["PATH"], "HOME": str(agents), "TZ": tz,
           "CLAUDE_CONFIG_DIR": str(agents / ".claude"), "CODEX_HOME": str(agents / ".codex"),
           "NO_COLOR": "1"}
    assert CCUSAGE is not None
    proc = subprocess.run([CCUSAGE, *args, "--json", "--offline", "--timezone", tz], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def ours(by: str = "day") -> Memory:
    memory = Memory(config.load(), clock=FixedClock(1_800_000_000.0))
    memory.ingest()
    assert not memory.analyze_report().failed
    return memory


def test_day_by_model_equals_ccusage_daily(agents: Path, tz: str) -> None:
    theirs = {(day["period"], m["modelName"]): (m["inputTokens"], m["outputTokens"],
                                                m["cacheCreationTokens"], m["cacheReadTokens"])
              for day in ccusage(agents, tz, "daily")["daily"] for m in day["modelBreakdowns"]}
    with ours() as memory:
        rows = memory.usage("day", breakdown=True)
    mine = {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"])
            for r in rows for m in r["models"]}
    assert mine == theirs
    # Both read the hand-made sessions, which cross midnight in New York.
    days = {day for day, model in mine if model == corpus.CODEX_MODEL}
    assert days == ({"2026-03-02"} if tz == "UTC" else {"2026-03-01", "2026-03-02"})


def test_blocks_equal_ccusage_blocks(agents: Path, tz: str) -> None:
    theirs = [(b["id"], b["isGap"], b["tokenCounts"]["inputTokens"],
               b["tokenCounts"]["outputTokens"], b["tokenCounts"]["cacheCreationInputTokens"],
               b["tokenCounts"]["cacheReadInputTokens"])
              for b in ccusage(agents, tz, "blocks")["blocks"]]
    with ours() as memory:
        mine = [(b["id"], b["gap"], b["input"], b["output"], b["cache_creation"],
                 b["cache_read"]) for b in memory.usage_blocks()]
    assert mine == theirs


def test_real_histories_equal_ccusage_daily(home: Path, tz: str) -> None:
    """Real people's histories as they left them (tests/fixtures/real): Claude Code
    transcripts in folders of their own under the projects folder, and Codex rollouts
    that write each turn's token_count line twice."""
    claude, codex = home / "agents" / ".claude" / "projects", home / "agents" / ".codex"
    shutil.copytree(FIXTURES / "real" / "claude-code", claude)
    for rollouts in (FIXTURES / "real" / "codex").glob("*/.codex/sessions"):
        shutil.copytree(rollouts, codex / "sessions" / rollouts.parts[-3])
    write_config(home, sources_toml(claude_code=claude, codex=codex, gemini_cli=None,
                                    aider=None))
    theirs = {(day["period"], m["modelName"]): (m["inputTokens"], m["outputTokens"],
                                                m["cacheCreationTokens"], m["cacheReadTokens"])
              for day in ccusage(home / "agents", tz, "daily")["daily"]
              for m in day["modelBreakdowns"]}
    with ours() as memory:
        rows = memory.usage("day", breakdown=True)
    mine = {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"])
            for r in rows for m in r["models"]}
    assert {model for _, model in theirs} >= {"gpt-5-codex", "claude-sonnet-4-5-20250929"}
    assert mine == theirs
