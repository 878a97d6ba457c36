"""GitHub Copilot CLI: the three real sessions of tests/fixtures/copilot-cli (one of them only
its workspace.yaml, as upstream has it), stored byte-exactly and digested field by field.
The expectations were read off the fixture files by hand."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from session_memory import config, formats
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import FIXTURES, write_config
from tests.formats.conftest import digest

ROOT = FIXTURES / "copilot-cli" / "session-state"
BREAKDOWN = "copilot-cli:07c40cd0-ff51-4d6e-bdcd-ac2f90877203"
DRAIN = "copilot-cli:212435a2-8d62-4467-bb24-64bdcc8dbd59"  # workspace.yaml only
MCP = "copilot-cli:8baa78ec-b203-4c7f-b1d3-c1170ae84b7d"
REPO = "D:\\Source\\GitHub\\agent-engram"


@pytest.fixture
def copilot(home: Path) -> Iterator[Memory]:
    write_config(home, f'[sources.copilot-cli]\nroot = "{ROOT}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        summary = memory.ingest()
        assert summary.errors == 0
        memory.analyze(include_active=True)
        yield memory


def test_every_file_round_trips_byte_exactly(copilot: Memory, tmp_path: Path) -> None:
    ids = sorted(s["id"] for s in copilot.sessions(source="copilot-cli"))
    assert ids == sorted([BREAKDOWN, DRAIN, MCP])
    copilot.seal()
    for sid in ids:
        copilot.export(sid, tmp_path / "out")
    want = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()}
    got = {str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
           if p.is_file()}
    assert got == want and len(want) == 5
    for rel in want:
        assert filecmp.cmp(tmp_path / "out" / rel, ROOT / rel, shallow=False), rel


def test_a_session_folder_is_one_session(copilot: Memory) -> None:
    files = {s["id"]: sorted(s["files"]) for s in copilot.sessions(source="copilot-cli")}
    assert files[MCP] == ["8baa78ec-b203-4c7f-b1d3-c1170ae84b7d/events.jsonl",
                          "8baa78ec-b203-4c7f-b1d3-c1170ae84b7d/workspace.yaml"]
    assert files[DRAIN] == ["212435a2-8d62-4467-bb24-64bdcc8dbd59/workspace.yaml"]


def test_breakdown_session(copilot: Memory) -> None:
    d = digest(copilot, BREAKDOWN)
    assert d["title"] == "Break Down Feature 007"  # workspace.yaml's summary
    assert d["first_prompt"] == ("Using @.context\\backlog.md Break down Feature 007 into "
                                 "epics, tasks, and subtasks in beads for use by the "
                                 "harness-architect agent.")
    # 9 user.message records: 2 with empty content are the tool's own nudges
    # (transformedContent only), never prompts.
    assert d["user_turns"] == 7
    assert d["prompts"][1] == ("Also, make sure to notify me of your progress via "
                               "agent-intercom.")
    assert not any("<current_datetime>" in p or "<reminder>" in p for p in d["prompts"])
    assert d["cwd"] == REPO
    assert d["git_branch"] == "007-agent-engineering-refactor"
    assert d["project"] == "softwaresalt/agent-engram"
    assert d["models"] == ["claude-opus-4.6", "claude-sonnet-4.6"]
    assert d["started_at"] == "2026-03-20T20:37:18.254Z"  # workspace.yaml created_at
    assert d["ended_at"] == "2026-03-20T21:56:57.770Z"  # the last event
    assert d["tool_calls"] == {"powershell": 60, "report_intent": 9, "grep": 5,
                               "task_complete": 4, "view": 3, "ask_user": 2,
                               "store_memory": 2, "agent-intercom-broadcast": 1}
    assert d["files_edited"] == []
    assert d["files_read"] == [f"{REPO}\\.context\\backlog.md"]
    assert len(d["commands"]) == 60 and d["commands"][0] == "bd ready --json 2>&1 | head -50"
    assert d["tool_errors"] == 0
    assert [(e["tool"], e["snippet"]) for e in d["errors"]] == [
        ("api_error", "Error: read ENOTCONN")]
    # No session.shutdown in this file: Copilot wrote no token counts.
    assert d["tokens"] == {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0,
                           "reasoning": 0}
    assert d["last_assistant_message"].startswith('Broadcast message "Hello" sent successfully')
    assert d["outcome"] == "success"
    assert d["malformed_lines"] == 0 and d["tool_cost_usd"] is None


def test_half_present_session_is_digested_from_its_workspace(copilot: Memory) -> None:
    d = digest(copilot, DRAIN)
    assert d["title"] == "Enable Drain Mode"
    assert (d["cwd"], d["git_branch"], d["project"]) == (
        REPO, "007-agent-engineering-refactor", "softwaresalt/agent-engram")
    assert (d["started_at"], d["ended_at"]) == ("2026-03-20T21:58:29.206Z",
                                                "2026-03-21T00:53:50.159Z")
    assert d["user_turns"] == 0 and d["tool_calls"] == {} and d["outcome"] == "unknown"


def test_resumed_session(copilot: Memory) -> None:
    d = digest(copilot, MCP)
    assert d["title"] == "Fix MCP Config File"
    assert d["first_prompt"].startswith("I'm getting the following errors on load of the MCP "
                                        "servers.")
    # 9 user.message records: 2 empty nudges, and `/build-feature mode: drain`, a slash
    # command (counted as a call, not a prompt).
    assert d["user_turns"] == 6
    assert d["prompts"][1] == "How can I tell if the engram server has started up yet?"
    assert d["tool_calls"]["/build-feature"] == 1
    assert sum(d["tool_calls"].values()) == 269 + 1  # 269 distinct toolCallIds
    assert d["tool_calls"]["edit"] == 27 and d["tool_calls"]["powershell"] == 72
    assert d["files_edited"] == [f"{REPO}\\{p}" for p in (
        ".copilot\\mcp-config.json", "src\\shim\\transport.rs", "src\\server\\state.rs",
        "src\\tools\\lifecycle.rs", "src\\tools\\write.rs", "src\\tools\\read.rs",
        "tests\\contract\\read_test.rs", "tests\\contract\\lifecycle_test.rs",
        "tests\\integration\\smoke_test.rs", "tests\\integration\\performance_test.rs")]
    # 72 powershell calls, 61 different commands, two of them alike in their first 400
    # characters (as long as a digest keeps a command)
    assert len(d["commands"]) == 60
    assert d["tool_errors"] == 6
    assert ("edit", "No match found") in [(e["tool"], e["snippet"]) for e in d["errors"]]
    assert d["models"] == ["claude-opus-4.6", "claude-haiku-4.5", "claude-sonnet-4.6"]
    assert d["subagents"] == [{"id": "toolu_vrtx_01R27ZwYteU55tkfsFnfwttf", "type": "explore",
                               "description": "Fast codebase exploration and answering "
                                              "questions. Uses code intelligence, grep, glob, "
                                              "view, bash/powershell tools in a separate "
                                              "context window to search files and understand "
                                              "code structure. Safe to call in parallel.\n"}]
    # Two session.shutdown records (it was resumed in between), each counting its own run
    # of the process: the second says fewer output tokens (8545 < 12356) and 39 opus
    # requests, the 39 assistant.turn_start records between the resume and it. They add.
    #   1st: opus in 3832521 (cache read 3399168) out 12356; haiku in 364103 (311058) out 5463
    #   2nd: opus in 4137889 (cache read 3908170) out 8545
    assert d["tokens_by_model"] == {
        "claude-opus-4.6": {"input": 3832521 - 3399168 + 4137889 - 3908170,
                            "output": 12356 + 8545, "cache_creation": 0,
                            "cache_read": 3399168 + 3908170, "reasoning": 0},
        "claude-haiku-4.5": {"input": 364103 - 311058, "output": 5463, "cache_creation": 0,
                             "cache_read": 311058, "reasoning": 0}}
    assert d["started_at"] == "2026-03-20T19:08:04.310Z"
    assert d["ended_at"] == "2026-03-21T02:23:25.004Z"


def test_a_shutdown_record_ends_the_session_and_a_resume_reopens_it(home: Path) -> None:
    root = home / "state"
    session = root / "5e55e5e5-0000-4000-8000-000000000001"
    session.mkdir(parents=True)
    events = session / "events.jsonl"
    write_config(home, f'[sources.copilot-cli]\nroot = "{root}"\n[ingest]\nidle_seconds = "1h"\n')
    sid = f"copilot-cli:{session.name}"

    def record(kind: str, data: dict[str, Any]) -> str:  # stamped as it is written
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        return json.dumps({"type": kind, "data": data, "id": kind,
                           "timestamp": stamp, "parentId": None}) + "\n"

    events.write_text(record("user.message", {"content": "hi"}))
    with Memory(config.load(), clock=FixedClock(events.stat().st_mtime + 1)) as memory:
        memory.ingest()
        assert memory.show(sid)["state"] == "active"
        with events.open("a") as f:
            f.write(record("session.shutdown", {"modelMetrics": {}}))
        assert memory.ingest().ended == {sid}
        assert memory.show(sid)["state"] == "ended"
        with events.open("a") as f:
            f.write(record("session.resume", {}))
        assert memory.ingest().ended == set()
        assert memory.show(sid)["state"] == "active"


def test_transcript_pages_through_prompts_calls_and_results(copilot: Memory) -> None:
    messages: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = copilot.transcript(BREAKDOWN, offset, 200)
        messages += page["messages"]
        offset = page["next_offset"]
    users = [m["text"] for m in messages if m["role"] == "user"]
    assert users[0] == digest(copilot, BREAKDOWN)["first_prompt"] and len(users) == 7
    calls = [m for m in messages if m["role"] == "tool_call"]
    assert len(calls) == 86 and calls[0]["tool"] == "report_intent"
    assert sum(m["role"] == "tool_result" for m in messages) == 86


def test_which_files_belong_to_which_session() -> None:
    identify = formats.get("copilot-cli").identify
    flat = identify(PurePosixPath("0ld5e551-0000-4000-8000-000000000001.jsonl"), lambda: b"")
    assert flat is not None and flat.native_id == "0ld5e551-0000-4000-8000-000000000001"
    assert flat.end_record is not None and not flat.snapshot  # appended, ends on shutdown
    events = identify(PurePosixPath("abc/events.jsonl"), lambda: b"")
    assert events is not None and (events.native_id, events.snapshot) == ("abc", False)
    workspace = identify(PurePosixPath("abc/workspace.yaml"), lambda: b"")
    assert workspace is not None and (workspace.native_id, workspace.snapshot) == ("abc", True)
    plan = identify(PurePosixPath("abc/checkpoints/1.md"), lambda: b"")
    assert plan is not None and plan.native_id == "abc"  # everything in the folder
    assert identify(PurePosixPath("notes.txt"), lambda: b"") is None


def test_an_old_flat_session_file_is_a_session(home: Path) -> None:
    root = home / "state"
    root.mkdir()
    native = "0ld5e551-0000-4000-8000-000000000001"
    (root / f"{native}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"type": "session.start", "timestamp": "2025-10-01T10:00:00.000Z",
         "data": {"sessionId": native, "selectedModel": "gpt-5"}},
        {"type": "user.message", "timestamp": "2025-10-01T10:00:01.000Z",
         "data": {"content": "rename the flag"}},
        {"type": "assistant.message", "timestamp": "2025-10-01T10:00:05.000Z",
         "data": {"content": "Renamed.", "toolRequests": [
             {"toolCallId": "c1", "name": "bash", "arguments": {"command": "make test"}}]}})))
    write_config(home, f'[sources.copilot-cli]\nroot = "{root}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        memory.ingest()
        memory.analyze()
        d = memory.show(f"copilot-cli:{native}")["digest"]
    assert (d["first_prompt"], d["models"], d["commands"]) == (
        "rename the flag", ["gpt-5"], ["make test"])
    assert d["tool_calls"] == {"bash": 1} and d["duration_s"] == 5.0


def test_each_run_of_a_resumed_session_adds_its_own_shutdown_counts(home: Path) -> None:
    """A shutdown counts its own run of the process: a later, smaller one is not a running
    total gone backwards but a second run, and each run is spent on its shutdown's day."""
    root = home / "state"
    session = root / "5e55e5e5-0000-4000-8000-000000000002"
    session.mkdir(parents=True)

    def shutdown(rid: str, at: str, usage: dict[str, int]) -> str:
        return json.dumps({"type": "session.shutdown", "id": rid, "timestamp": at,
                           "parentId": None, "data": {"modelMetrics": {
                               "gpt-5": {"requests": {"count": 1}, "usage": usage}}}}) + "\n"

    (session / "events.jsonl").write_text(
        shutdown("s1", "2026-03-01T10:00:00.000Z", {
            "inputTokens": 1000, "outputTokens": 300, "cacheReadTokens": 800,
            "cacheWriteTokens": 100, "reasoningTokens": 50})
        + json.dumps({"type": "session.resume", "id": "r1", "parentId": "s1",
                      "timestamp": "2026-03-02T09:00:00.000Z", "data": {}}) + "\n"
        + shutdown("s2", "2026-03-02T10:00:00.000Z", {
            "inputTokens": 400, "outputTokens": 20, "cacheReadTokens": 300,
            "cacheWriteTokens": 0, "reasoningTokens": 5}))
    write_config(home, f'[sources.copilot-cli]\nroot = "{root}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        assert memory.ingest().errors == 0
        memory.analyze(include_active=True)
        d = digest(memory, f"copilot-cli:{session.name}")
        rows = memory.usage("day", breakdown=True)
    assert d["tokens"] == {"input": 100 + 100, "output": 320, "cache_creation": 100,
                           "cache_read": 1100, "reasoning": 55}
    days = {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"], m["reasoning"])
            for r in rows for m in r["models"]}
    assert days == {("2026-03-01", "gpt-5"): (100, 300, 100, 800, 50),
                    ("2026-03-02", "gpt-5"): (100, 20, 0, 300, 5)}


def test_a_runs_counts_are_priced_as_its_requests_not_as_one_long_prompt(home: Path) -> None:
    """40 requests whose prompts add up to 2M tokens are 40 prompts of 50k: none takes
    the price for prompts over 200k, which one response of 2M would."""
    session = home / "state" / "5e55e5e5-0000-4000-8000-000000000003"
    session.mkdir(parents=True)
    (session / "events.jsonl").write_text(json.dumps({
        "type": "session.shutdown", "id": "s1", "timestamp": "2026-03-05T10:00:00.000Z",
        "parentId": None, "data": {"modelMetrics": {"claude-sonnet-4.5": {
            "requests": {"count": 40, "cost": 40},
            "usage": {"inputTokens": 2_000_000, "outputTokens": 20_001,
                      "cacheReadTokens": 1_500_000, "cacheWriteTokens": 0}}}}}) + "\n")
    write_config(home, f'[sources.copilot-cli]\nroot = "{home / "state"}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        assert memory.ingest().errors == 0
        memory.analyze(include_active=True)
        (row,) = memory.usage("model")
    assert (row["input"], row["output"], row["cache_read"], row["responses"]) == (
        500_000, 20_001, 1_500_000, 40)
    # Sonnet 4.5 at $3 in, $15 out, $0.30 cache read a million (over 200k: 6, 22.5, 0.6).
    assert row["cost_usd"] == pytest.approx(0.5 * 3 + 0.020001 * 15 + 1.5 * 0.3, abs=1e-6)


def test_a_running_session_digested_shows_when_it_started(home: Path, tmp_path: Path) -> None:
    """Before a session ends, Tier 1 knows only its files' mtimes (here the time of its last
    record); once it is digested (`analyze --all`, or the daemon), its first record says when
    it started."""
    root = tmp_path / "state"
    shutil.copytree(ROOT / MCP.split(":", 1)[1], root / MCP.split(":", 1)[1])
    now = time.time()
    for copied in root.rglob("*"):
        os.utime(copied, (now, now))  # just written: the session is running
    write_config(home, f'[sources.copilot-cli]\nroot = "{root}"\n')
    with Memory(config.load(), clock=FixedClock(now)) as memory:
        assert memory.ingest().errors == 0
        before = memory.show(MCP)["started_at"]
        assert before == pytest.approx(1774059805.004)  # 2026-03-21T02:23:25.004Z, the end
        memory.analyze(include_active=True)
        row = memory.show(MCP)
        assert row["state"] == "active" and row["analyzed_at"] is None
        assert row["started_at"] == pytest.approx(1774033684.31)  # 2026-03-20T19:08:04.310Z
        (listed,) = memory.sessions()
        assert listed["started_at"] == row["started_at"]
