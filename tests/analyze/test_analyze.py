"""Analysis end to end: which sessions, from Tier 1 only, durability order, search, usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from click.testing import CliRunner

from session_memory.cli import cli
from session_memory.memory import Memory
from tests.analyze.helpers import jsonl, write

GHP = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def claude_session(root: Path, sid: str, prompt: str, *, day: str = "2026-01-05",
                   command: str = "make test", model: str = "claude-opus-4-1",
                   tokens: tuple[int, int] = (100, 10)) -> Path:
    base = {"sessionId": sid, "cwd": f"/src/{sid[:4]}", "gitBranch": "main"}
    return write(root, f"-src/{sid}.jsonl", jsonl(
        {**base, "type": "user", "timestamp": f"{day}T09:00:00Z",
         "message": {"role": "user", "content": prompt}},
        {**base, "type": "assistant", "timestamp": f"{day}T09:00:05Z",
         "message": {"id": f"m-{sid}", "model": model, "role": "assistant",
                     "content": [{"type": "tool_use", "id": f"t-{sid}", "name": "Bash",
                                  "input": {"command": command}},
                                 {"type": "text", "text": "Ran it."}],
                     "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]}}},
    ))


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def state(memory: Memory, sid: str) -> str:
    return str(memory.tier1.session(sid, memory.idle_before)["state"])


def test_picks_ended_unanalyzed_sessions_only(memory: Memory, sources: dict[str, Path]) -> None:
    root = sources["claude-code"]
    claude_session(root, "old1", "first task")
    now = memory.clock.now()
    fresh = claude_session(root, "new1", "still typing",
                           day=time.strftime("%Y-%m-%d", time.gmtime(now)))
    os.utime(fresh, (now, now))  # written just now: active
    memory.ingest()
    assert memory.analyze() == ["claude-code:old1"]
    assert state(memory, "claude-code:old1") == "analyzed"
    assert memory.analyze() == []  # nothing left to do
    # --all digests the active one too, but it stays active: analyzed again once it ends.
    assert memory.analyze(include_active=True) == ["claude-code:new1"]
    assert memory.tier2.get_digest("claude-code:new1") is not None
    assert state(memory, "claude-code:new1") == "active"
    # --force redoes analyzed ones from their raw bytes.
    assert memory.analyze(force=True) == ["claude-code:old1"]


def test_reads_tier1_only(memory: Memory, sources: dict[str, Path]) -> None:
    path = claude_session(sources["claude-code"], "gone1", "what was asked")
    memory.ingest()
    path.unlink()  # Claude Code deleted it after 30 days
    assert memory.analyze(["claude-code:gone1"]) == ["claude-code:gone1"]
    digest = memory.tier2.get_digest("claude-code:gone1")
    assert digest is not None and digest["first_prompt"] == "what was asked"


def test_evicted_sessions_keep_digest_usage_and_search(memory: Memory,
                                                      sources: dict[str, Path]) -> None:
    claude_session(sources["claude-code"], "ev01", "tune the flux capacitor", tokens=(7, 3))
    memory.ingest()
    memory.analyze()
    before = run("usage", "--by", "source")
    with memory.tier1.transaction():
        memory.tier1.evict("claude-code:ev01", memory.clock.now())
    assert state(memory, "claude-code:ev01") == "evicted"
    assert run("usage", "--by", "source") == before == [
        {"key": "claude-code", "sessions": 1, "input": 7, "output": 3, "cache_creation": 0,
         "cache_read": 0, "reasoning": 0, "responses": 1,
         "cost_usd": 0.00033,  # claude-opus-4-1: 7 × $15 + 3 × $75 per million
         "prices": {"claude-opus-4-1": f"genai-prices {genai_prices.__version__}:"
                                       " anthropic/claude-opus-4-1"}}]
    assert [h["id"] for h in run("search", "flux", "capacitor")] == ["claude-code:ev01"]
    # --force cannot redo it: the raw bytes are gone.
    assert memory.analyze(["claude-code:ev01"], force=True) == []
    assert run("show", "claude-code:ev01")["digest"]["first_prompt"] == "tune the flux capacitor"


def test_digest_first_then_mark_survives_a_kill_between(memory: Memory,
                                                       sources: dict[str, Path]) -> None:
    claude_session(sources["claude-code"], "kill1", "survive a crash")
    memory.ingest()
    env = dict(os.environ, SESSION_MEMORY_CRASH_AT="after-commit:digest")
    proc = subprocess.run([sys.executable, "-m", "session_memory", "analyze"], env=env,
                          capture_output=True, check=False)
    assert proc.returncode == -9  # killed right after the Tier 2 commit
    assert memory.tier2.get_digest("claude-code:kill1") is not None
    assert state(memory, "claude-code:kill1") == "ended"  # not marked: will be redone
    assert memory.analyze() == ["claude-code:kill1"]
    assert state(memory, "claude-code:kill1") == "analyzed"


def test_a_stop_ends_the_pass_between_sessions_and_the_next_takes_up_the_rest(
        memory: Memory, sources: dict[str, Path]) -> None:
    ids = [f"claude-code:stp{i}" for i in range(3)]
    for sid in ids:
        claude_session(sources["claude-code"], sid.split(":")[1], f"task {sid}")
    memory.ingest()
    asked = 0

    def second_time() -> bool:
        nonlocal asked
        asked += 1
        return asked >= 2

    first = memory.analyze_report(stop=second_time).analyzed
    assert len(first) == 1 and asked == 2
    assert [state(memory, sid) for sid in ids].count("ended") == 2
    assert sorted(first + memory.analyze()) == ids


def test_a_stop_takes_effect_before_the_next_session_is_parsed(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from session_memory.formats import claude_code

    ids = [f"claude-code:prs{i}" for i in range(4)]
    for sid in ids:
        claude_session(sources["claude-code"], sid.split(":")[1], f"task {sid}")
    memory.ingest()
    parsed: list[str] = []
    real_parse = claude_code.parse

    def counted_parse(pieces: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(pieces[0].path)
        return real_parse(pieces, *args, **kwargs)

    monkeypatch.setattr(claude_code, "parse", counted_parse)
    asked = 0

    def after_two_sessions() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    analyzed = memory.analyze_report(stop=after_two_sessions, parallel=False).analyzed
    assert len(parsed) == 2  # no third session parsed only to be dropped
    assert len(analyzed) == 2
    assert [state(memory, sid) for sid in ids].count("analyzed") == 2


def test_a_pass_kept_in_its_process_starts_no_worker(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """As the daemon runs it: however large the pass."""
    from session_memory.analyze import run as analyze_run
    from session_memory.analyze import worker

    def no_workers(*args: Any) -> None:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(analyze_run, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(worker, "SharedPass", no_workers)
    ids = [f"claude-code:inp{i}" for i in range(3)]
    for sid in ids:
        claude_session(sources["claude-code"], sid.split(":")[1], f"task {sid}")
    memory.ingest()
    assert sorted(memory.analyze_report(parallel=False).analyzed) == ids


def test_secrets_never_reach_tier2(memory: Memory, sources: dict[str, Path]) -> None:
    raw = claude_session(sources["claude-code"], "sec1", f"use token {GHP} to push",
                         command=f"GITHUB_TOKEN={GHP} git push").read_bytes()
    memory.ingest()
    memory.analyze()
    memory.tier2.close()
    memory._tier2 = None  # the file on disk, not a cache, is what must be clean
    tier2_bytes = b"".join((memory.data_dir / name).read_bytes() for name in os.listdir(
        memory.data_dir) if name.startswith("tier2.db"))
    assert GHP.encode() not in tier2_bytes
    digest = memory.tier2.get_digest("claude-code:sec1")
    assert digest is not None
    assert digest["first_prompt"] == "use token [REDACTED:github_token] to push"
    assert digest["commands"] == ["GITHUB_TOKEN=[REDACTED:github_token] git push"]
    [f] = memory.tier1.files("claude-code:sec1")
    assert b"".join(memory.tier1.read_file(f.id)) == raw  # Tier 1 stays exact


def test_search_ranks_and_snips(memory: Memory, sources: dict[str, Path]) -> None:
    root = sources["claude-code"]
    claude_session(root, "s001", "migrate the billing database to postgres",
                   command="alembic upgrade head")
    claude_session(root, "s002", "fix the flaky login test", command="pytest tests/login.py")
    claude_session(root, "s003", "write docs", command="mkdocs build  # not billing related")
    memory.ingest()
    assert len(memory.analyze()) == 3
    hits = run("search", "billing")
    # The title match outranks a mention in a command.
    assert [h["id"] for h in hits] == ["claude-code:s001", "claude-code:s003"]
    assert "[billing]" in hits[0]["snippet"]
    assert run("search", "tests/login.py")[0]["id"] == "claude-code:s002"
    assert len(run("search", "login", "OR", "postgres")) == 2
    assert run("search", 'unbalanced "quote') == []
    assert run("search", "alembic")[0]["title"] == "migrate the billing database to postgres"


def test_usage_by_every_key(memory: Memory, sources: dict[str, Path]) -> None:
    root = sources["claude-code"]
    claude_session(root, "u001", "a", day="2026-01-05", model="claude-opus-4-1",
                   tokens=(100, 10))
    claude_session(root, "u002", "b", day="2026-01-05", model="claude-haiku-4-5",
                   tokens=(20, 2))
    claude_session(root, "u003", "c", day="2026-01-07", model="claude-opus-4-1",
                   tokens=(300, 30))
    memory.ingest()
    memory.analyze()
    zero = {"cache_creation": 0, "cache_read": 0, "reasoning": 0}
    assert tokens(run("usage")) == [
        {"key": "2026-01-05", "sessions": 2, "input": 120, "output": 12, **zero},
        {"key": "2026-01-07", "sessions": 1, "input": 300, "output": 30, **zero}]
    assert tokens(run("usage", "--by", "model")) == [
        {"key": "claude-opus-4-1", "sessions": 2, "input": 400, "output": 40, **zero},
        {"key": "claude-haiku-4-5", "sessions": 1, "input": 20, "output": 2, **zero}]
    assert [r["key"] for r in run("usage", "--by", "project")] == ["/src/u003", "/src/u001",
                                                                   "/src/u002"]
    assert tokens(run("usage", "--since", "2026-01-06")) == [
        {"key": "2026-01-07", "sessions": 1, "input": 300, "output": 30, **zero}]


def tokens(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Usage rows without their cost and price columns."""
    keep = ("key", "sessions", "input", "output", "cache_creation", "cache_read", "reasoning")
    return [{k: r[k] for k in keep} for r in rows]


def test_cli_analyze_json_and_bad_since(sources: dict[str, Path]) -> None:
    claude_session(sources["claude-code"], "c001", "hello")
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    out = run("analyze")
    assert out == {"analyzed": ["claude-code:c001"], "skipped": {}, "failed": {}}
    again = run("analyze", "c001")
    assert again["skipped"] == {"claude-code:c001": "already analyzed (use --force)"}
    assert run("analyze", "c001", "--force")["analyzed"] == ["claude-code:c001"]
    bad = runner.invoke(cli, ["usage", "--since", "last tuesday"])
    assert bad.exit_code == 2


@pytest.mark.parametrize("by", ["day", "model", "source", "project"])
def test_usage_on_an_empty_store(sources: dict[str, Path], by: str) -> None:
    assert run("usage", "--by", by) == []
