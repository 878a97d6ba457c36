"""Claude Code digests: hand-computed values for written sessions and for the fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from session_memory.formats import claude_code
from session_memory.memory import Memory
from tests.analyze.helpers import analyzed, digest_of, jsonl, write

SID = "aaaaaaaa-0000-4000-8000-000000000001"
BASE = {"sessionId": SID, "cwd": "/repo", "gitBranch": "main", "version": "2.1.0"}


def user(ts: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {**BASE, "type": "user", "timestamp": ts, "message": {"role": "user",
                                                                 "content": content}, **extra}


def assistant(ts: str, mid: str, blocks: list[Any], usage: dict[str, int],
              model: str = "claude-opus-4-1", **extra: Any) -> dict[str, Any]:
    return {**BASE, "type": "assistant", "timestamp": ts,
            "message": {"id": mid, "model": model, "role": "assistant", "content": blocks,
                        "usage": usage}, **extra}


BASH = {"type": "tool_use", "id": "tu1", "name": "Bash", "input": {"command": "pytest -q"}}
USAGE_A_FINAL = {"input_tokens": 100, "output_tokens": 30, "cache_creation_input_tokens": 10,
                 "cache_read_input_tokens": 1000}


def main_transcript() -> str:
    return jsonl(
        {"type": "queue-operation", "operation": "enqueue"},  # unknown to us: skipped
        user("2026-01-01T10:00:00.000Z", "<command-name>/clear</command-name>"),
        user("2026-01-01T10:00:01.000Z", "Caveat: The messages below were generated ...",
             isMeta=True),
        user("2026-01-01T10:00:02.000Z", "Fix the failing test\n<system-reminder>be brief"
                                         "</system-reminder>"),
        # One response streamed as three lines sharing message.id; early copies interim.
        assistant("2026-01-01T10:00:03.000Z", "msg_A", [{"type": "text", "text": "Looking."}],
                  {**USAGE_A_FINAL, "output_tokens": 1}),
        assistant("2026-01-01T10:00:04.000Z", "msg_A", [BASH], {**USAGE_A_FINAL,
                                                                "output_tokens": 5}),
        assistant("2026-01-01T10:00:05.000Z", "msg_A", [BASH], USAGE_A_FINAL),
        "{this line is not json",
        "42",
        user("2026-01-01T10:00:06.000Z", [{"type": "tool_result", "tool_use_id": "tu1",
                                           "is_error": True,
                                           "content": "FAILED tests/test_x.py::test_a - "
                                                      "AssertionError: 3 != 4"}]),
        assistant("2026-01-01T10:00:07.000Z", "msg_B",
                  [{"type": "tool_use", "id": "tu2", "name": "Edit",
                    "input": {"file_path": "/repo/a.py", "old_string": "3", "new_string": "4"}},
                   {"type": "tool_use", "id": "tu4", "name": "Task",
                    "input": {"prompt": "look around", "subagent_type": "Explore"}}],
                  {"input_tokens": 5, "output_tokens": 7}),
        user("2026-01-01T10:00:08.000Z", [{"type": "tool_result", "tool_use_id": "tu2",
                                           "content": "ok"}]),
        # The Task result repeats the subagent's usage: never added again.
        user("2026-01-01T10:00:09.000Z", [{"type": "tool_result", "tool_use_id": "tu4",
                                           "content": "found it"}],
             toolUseResult={"totalTokens": 110, "usage": {"input_tokens": 50,
                                                          "output_tokens": 60}}),
        user("2026-01-01T10:00:10.000Z", [{"type": "text", "text": "<ide_opened_file>x"
                                                                   "</ide_opened_file>"},
                                          {"type": "text", "text": "now run it again"}]),
        user("2026-01-01T10:00:11.000Z", "This session is being continued ...",
             isCompactSummary=True),
        assistant("2026-01-01T10:00:12.000Z", "msg_D", [{"type": "text", "text": "All done."}],
                  {"input_tokens": 1, "output_tokens": 2}),
    )


def subagent_transcript() -> str:
    side = {"isSidechain": True, "agentId": "xyz"}
    return jsonl(
        user("2026-01-01T10:00:08.100Z", "look around", **side),  # the parent agent wrote it
        # A replay of a parent message: the same message.id is not counted twice.
        assistant("2026-01-01T10:00:05.000Z", "msg_A", [BASH], USAGE_A_FINAL, **side),
        assistant("2026-01-01T10:00:08.200Z", "msg_C",
                  [{"type": "tool_use", "id": "tu3", "name": "Read",
                    "input": {"file_path": "/repo/b.py"}}],
                  {"input_tokens": 50, "output_tokens": 60}, model="claude-haiku-4-5",
                  **side),
        assistant("2026-01-01T10:00:08.900Z", "msg_E", [{"type": "text", "text": "found it"}],
                  {"input_tokens": 0, "output_tokens": 0}, model="claude-haiku-4-5", **side),
    )


@pytest.fixture
def written(memory: Memory, sources: dict[str, Path]) -> dict[str, Any]:
    root = sources["claude-code"]
    write(root, f"-repo/{SID}.jsonl", main_transcript())
    write(root, f"-repo/{SID}/subagents/agent-xyz.jsonl", subagent_transcript())
    write(root, f"-repo/{SID}/subagents/agent-xyz.meta.json",
          '{"agentType": "Explore", "description": "Look around", "toolUseId": "tu4"}')
    write(root, f"-repo/{SID}/tool-results/big.txt", "not a transcript {\n")
    return digest_of(memory, f"claude-code:{SID}")


def test_usage_once_per_message_last_copy_subagents_included(written: dict[str, Any]) -> None:
    # msg_A (final copy) + msg_B + msg_C (subagent) + msg_D; msg_E is zero.
    assert written["tokens"] == {"input": 100 + 5 + 50 + 1, "output": 30 + 7 + 60 + 2,
                                 "cache_creation": 10, "cache_read": 1000, "reasoning": 0}
    assert written["tokens_by_model"]["claude-haiku-4-5"]["output"] == 60


def test_prompts_are_human_only(written: dict[str, Any]) -> None:
    assert written["user_turns"] == 2
    assert written["first_prompt"] == "Fix the failing test"
    assert written["prompts"] == ["Fix the failing test", "now run it again"]
    assert written["title"] == "Fix the failing test"


def test_tools_files_commands_errors(written: dict[str, Any]) -> None:
    assert written["tool_calls"] == {"Bash": 1, "Edit": 1, "Read": 1, "Task": 1}
    assert written["files_edited"] == ["/repo/a.py"]
    assert written["files_read"] == ["/repo/b.py"]
    assert written["commands"] == ["pytest -q"]
    assert written["tool_errors"] == 1
    [error] = written["errors"]
    assert error["tool"] == "Bash"
    assert error["snippet"] == "FAILED tests/test_x.py::test_a - AssertionError: 3 != 4"
    assert error["fingerprint"] == "FAILED <path>::test_a - AssertionError: <n> != <n>"


def test_session_facts(written: dict[str, Any]) -> None:
    assert written["cwd"] == "/repo" and written["git_branch"] == "main"
    assert written["models"] == ["claude-opus-4-1", "claude-haiku-4-5"]
    assert written["started_at"] == "2026-01-01T10:00:00.000Z"
    assert written["ended_at"] == "2026-01-01T10:00:12.000Z"
    assert written["duration_s"] == 12.0
    assert written["subagents"] == [{"id": "xyz", "type": "Explore",
                                     "description": "Look around"}]
    assert written["malformed_lines"] == 2
    assert written["last_assistant_message"] == "All done."
    assert written["outcome"] == "success"
    assert written["analyzer_version"] >= 1


# -- the shared fixtures ---------------------------------------------------------------


def test_showcase_with_two_subagents(fixtures: Memory) -> None:
    d = analyzed(fixtures, "claude-code:55550000-0000-4000-8000-000000000001")
    # Five main responses and three subagent ones, 120 in / 40 out each.
    assert d["tokens"] == {"input": 960, "output": 320, "cache_creation": 0, "cache_read": 0,
                           "reasoning": 0}
    assert d["user_turns"] == 1
    assert d["first_prompt"].startswith("Give me a tour of the repository")
    assert d["tool_calls"] == {
        "Agent": 2, "Grep": 1, "ScheduleWakeup": 1,
        "mcp__plugin_showcase_example__inspect_repository_structure": 1,
        "mcp__plugin_showcase_example__refresh_search_index": 1}
    assert sorted((s["id"], s["type"], s["description"]) for s in d["subagents"]) == [
        ("showcol1", "general-purpose", "Survey the web module"),
        ("showcol2", "general-purpose", "Survey the jobs module")]
    assert d["cwd"] == "/workspace/example-app"
    assert d["started_at"] == "2026-06-15T10:00:01.000Z"
    assert d["ended_at"] == "2026-06-15T10:00:17.000Z"
    assert d["last_assistant_message"].startswith("Both modules are surveyed")
    assert d["outcome"] == "success"


def test_real_session_with_streamed_copies_and_six_subagents(fixtures: Memory) -> None:
    d = analyzed(fixtures, "claude-code:ef958aa1-0e93-49f0-bb71-150f63befcd1")
    # 83 distinct message ids over the main file and six subagent files.
    assert d["tokens"] == {"input": 2546, "output": 53458, "cache_creation": 398573,
                           "cache_read": 2455695, "reasoning": 0}
    assert d["tool_calls"]["Bash"] == 40 and d["tool_calls"]["Edit"] == 10
    assert sum(d["tool_calls"].values()) == 117
    assert d["tool_errors"] == 3
    assert d["user_turns"] == 2  # /exit and its output are not prompts
    assert len(d["subagents"]) == 6
    assert d["models"] == ["claude-opus-4-7"]


def test_old_format_session(fixtures: Memory) -> None:
    d = analyzed(fixtures, "claude-code:71c9afe9-d9cc-4583-86b3-e62ba682b83a")
    assert d["tokens"] == {"input": 14, "output": 643, "cache_creation": 19749,
                           "cache_read": 36713, "reasoning": 0}
    assert d["tool_calls"] == {"Edit": 1, "Read": 1}
    # /clear, its stdout, bash input and bash output are all tag-wrapped; one real prompt.
    assert d["user_turns"] == 1
    assert d["cwd"] == "/Users/dain/workspace/claude-code-log"


def test_edge_cases_count_non_records_as_malformed(fixtures: Memory) -> None:
    d = analyzed(fixtures, "claude-code:edge_cases")
    assert d["malformed_lines"] == 3  # a string, 42 and [1]: valid JSON, not records
    assert d["tool_errors"] == 1


def test_reminder_inside_a_prompt_is_cut(fixtures: Memory) -> None:
    d = analyzed(fixtures, "claude-code:system_reminder")
    assert d["user_turns"] == 1  # the second message is only a reminder
    assert d["first_prompt"] == ("Please review the change.\n# Project notes\n"
                                 "The tail content still renders as user text.")
    assert d["tokens"]["output"] == 12


def test_long_tool_output_lines(memory: Memory, sources: dict[str, Path]) -> None:
    """Long successful results are skipped without being built; errors are read."""
    big = "x = 1\n" * 2000  # 12 KB of tool output
    sid = "aaaaaaaa-0000-4000-8000-0000000000b1"
    base = {"sessionId": sid, "cwd": "/big"}
    write(sources["claude-code"], f"-big/{sid}.jsonl", jsonl(
        {**base, "type": "user", "timestamp": "2026-01-02T00:00:00Z",
         "message": {"role": "user", "content": "dump the file"}},
        {**base, "type": "assistant", "timestamp": "2026-01-02T00:00:01Z",
         "message": {"id": "m1", "model": "m", "content": [
             {"type": "tool_use", "id": "r1", "name": "Read", "input": {"file_path": "/a"}},
             {"type": "tool_use", "id": "r2", "name": "Read", "input": {"file_path": "/b"}}],
             "usage": {"input_tokens": 1, "output_tokens": 1}}},
        {**base, "type": "user", "timestamp": "2026-01-02T00:00:02Z",
         "message": {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": "r1", "is_error": True,
              "content": "PermissionError: /a\n" + big}]}},
        # Output that quotes JSON keys is escaped: it cannot fake the record's own keys.
        {**base, "type": "user", "timestamp": "2026-01-02T00:00:03Z",
         "message": {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": "r2",
              "content": '{"is_error":true, "timestamp": "1999-01-01"}\n' + big}]}},
    ))
    d = digest_of(memory, f"claude-code:{sid}")
    assert d["tool_errors"] == 1
    assert d["errors"][0]["snippet"].startswith("PermissionError: /a x = 1")
    assert d["errors"][0]["tool"] == "Read"
    assert d["started_at"] == "2026-01-02T00:00:00Z"
    assert d["ended_at"] == "2026-01-02T00:00:03Z"
    assert d["outcome"] == "unknown"  # prompted, never answered in words, last tool worked


def test_absurd_token_counts_are_stored_within_sqlite_range(memory: Memory,
                                                          sources: dict[str, Path]) -> None:
    sid = "aaaaaaaa-0000-4000-8000-0000000000b2"
    base = {"sessionId": sid, "cwd": "/big"}
    write(sources["claude-code"], f"-big/{sid}.jsonl", jsonl(*(
        {**base, "type": "assistant", "timestamp": f"2026-01-02T00:00:0{i}Z",
         "message": {"id": f"m{i}-{sid}", "model": "m", "content": [], "usage": {
             "input_tokens": 10**30, "output_tokens": 2**62, "cache_read_input_tokens": "9",
             "cache_creation_input_tokens": True}}} for i in range(3))))
    d = digest_of(memory, f"claude-code:{sid}")
    assert d["tokens"]["input"] == d["tokens"]["output"] == 2**48  # past any real session
    assert d["tokens"]["cache_read"] == d["tokens"]["cache_creation"] == 0  # not integers
    for n in range(3):  # and many such sessions still add up
        other = f"aaaaaaaa-0000-4000-8000-0000000001{n:02d}"
        write(sources["claude-code"], f"-big/{other}.jsonl", (
            sources["claude-code"] / f"-big/{sid}.jsonl").read_text().replace(sid, other))
        digest_of(memory, f"claude-code:{other}")
    rows = memory.usage(by="model")
    assert [(r["sessions"], r["input"]) for r in rows] == [(4, 4 * 2**48)]


def test_a_prompt_that_begins_with_a_tag_is_counted(memory: Memory,
                                                   sources: dict[str, Path]) -> None:
    write(sources["claude-code"], f"-repo/{SID}.jsonl", jsonl(
        user("2026-01-01T10:00:00.000Z", "<command-name>/clear</command-name>"),
        user("2026-01-01T10:00:01.000Z", "<div> is misaligned, please fix the CSS"),
        user("2026-01-01T10:00:02.000Z", [{"type": "text", "text": "<bash-input>ls"
                                                                   "</bash-input>"}]),
    ))
    d = digest_of(memory, f"claude-code:{SID}")
    assert d["user_turns"] == 1
    assert d["first_prompt"] == "<div> is misaligned, please fix the CSS"


PARENT = "bbbbbbbb-0000-4000-8000-000000000002"


@pytest.mark.parametrize(("path", "head", "session"), [
    # The projects layout, as Claude Code writes it.
    (f"-repo/{SID}.jsonl", b"", SID),
    ("-repo/agent-a1.jsonl", b'{"sessionId": "%s"}' % PARENT.encode(), PARENT),
    (f"-repo/{SID}/subagents/agent-a1.jsonl", b"", SID),
    (f"-repo/{SID}/subagents/workflows/wf1/agent-a2.jsonl", b'{"sessionId": "x#y"}', SID),
    (f"-repo/{SID}/tool-results/t1.txt", b"", SID),
    ("-repo/s1/subagents/agent-a1.jsonl", b'{"sessionId": "x"}', "s1"),
    ("-repo/s1/tool-results/t1.txt", b"", "s1"),
    # Transcripts deeper under the root: a copy of a projects folder, an archive of sessions.
    (f"backup/.claude/projects/-repo/{SID}.jsonl", b"", SID),
    (f"backup/.claude/projects/-repo/{SID}/subagents/agent-a1.jsonl", b"", SID),
    (f"notes/Archives/{SID}.jsonl", b"", SID),
    ("notes/Archives/agent-a1.jsonl", b'{"sessionId": "%s"}' % PARENT.encode(), PARENT),
    ("notes/Archives/agent-a1.jsonl", b"{}", "agent-a1"),
    ("notes/Archives/todo.jsonl", b"", "Archives"),
])
def test_a_file_belongs_to_the_session_its_folder_or_name_says(path: str, head: bytes,
                                                              session: str) -> None:
    role = claude_code.identify(PurePosixPath(path), lambda: head)
    assert role is not None
    assert (role.native_id, role.logical_path) == (session, path)


def test_a_folder_named_like_a_session_above_the_projects_keeps_each_session_its_own(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A root above copies of projects folders, one of them in a folder a tool named by a
    UUID: each transcript is still its own session, with its prompts, and its subagent's
    transcript its own."""
    host = "cccccccc-0000-4000-8000-000000000003"
    root = sources["claude-code"]
    write(root, f"backup/{host}/projects/-repo/{SID}.jsonl", jsonl(
        user("2026-01-01T10:00:00.000Z", "Fix the failing test")))
    write(root, f"backup/{host}/projects/-repo/{PARENT}.jsonl", jsonl(
        user("2026-01-01T11:00:00.000Z", "Write the changelog")))
    write(root, f"backup/{host}/projects/-repo/{PARENT}/subagents/agent-a1.jsonl", jsonl(
        user("2026-01-01T11:00:01.000Z", "Look around", isSidechain=True)))
    for path, session in [(f"backup/{host}/projects/-repo/{SID}.jsonl", SID),
                          (f"backup/{host}/projects/-repo/{PARENT}/subagents/agent-a1.jsonl",
                           PARENT)]:
        role = claude_code.identify(PurePosixPath(path), lambda: b"")
        assert role is not None and role.native_id == session
    assert digest_of(memory, f"claude-code:{SID}")["first_prompt"] == "Fix the failing test"
    parent = digest_of(memory, f"claude-code:{PARENT}")
    assert (parent["first_prompt"], parent["user_turns"]) == ("Write the changelog", 1)


def relayed(ts: str, mid: str, request: str, usage: dict[str, int]) -> dict[str, Any]:
    """A progress record as Claude Code 2.1 writes it into the parent's transcript while a
    subagent runs: the subagent's response inside `data.message`, the conversation so far
    again in `normalizedMessages`."""
    reply = {"type": "assistant", "timestamp": ts, "requestId": request,
             "message": {"id": mid, "model": "claude-haiku-4-5", "role": "assistant",
                         "content": [{"type": "tool_use", "id": "tu9", "name": "Read",
                                      "input": {"file_path": "/repo/c.py"}}],
                         "usage": usage}}
    return {**BASE, "type": "progress", "timestamp": ts,
            "data": {"type": "agent_progress", "message": reply,
                     "normalizedMessages": [reply, reply]}}


def cli_json(*args: str) -> Any:
    run = subprocess.run([sys.executable, "-m", "session_memory", *args, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("subagent_file", [False, True])
def test_a_subagent_response_a_progress_record_relays_counts_once(
        sources: dict[str, Path], subagent_file: bool) -> None:
    """ccusage counts the usage progress records relay (on the real histories it found
    15,459 cache-write tokens more than we did, all of them there); with the subagent's
    transcript beside it, its copy of the response is the same response (once, its last
    copy's counts)."""
    early = {"input_tokens": 2, "output_tokens": 6, "cache_creation_input_tokens": 3209,
             "cache_read_input_tokens": 0}
    final = {**early, "output_tokens": 90}
    root = sources["claude-code"]
    write(root, f"-repo/{SID}.jsonl", jsonl(
        user("2026-01-01T10:00:00.000Z", "Read c.py with a subagent"),
        assistant("2026-01-01T10:00:01.000Z", "msg_P", [{"type": "text", "text": "Sure."}],
                  {"input_tokens": 10, "output_tokens": 5}, requestId="req_P"),
        relayed("2026-01-01T10:00:02.000Z", "msg_S", "req_S", early),
        relayed("2026-01-01T10:00:03.000Z", "msg_S", "req_S", early)))
    if subagent_file:
        write(root, f"-repo/{SID}/subagents/agent-s1.jsonl", jsonl(assistant(
            "2026-01-01T10:00:04.000Z", "msg_S", [BASH], final, model="claude-haiku-4-5",
            isSidechain=True, agentId="s1", requestId="req_S")))
    cli_json("ingest")
    cli_json("analyze", "--all")
    sub = final if subagent_file else early
    digest = cli_json("show", f"claude-code:{SID}")["digest"]
    assert digest["tokens"] == {
        "input": 10 + sub["input_tokens"], "output": 5 + sub["output_tokens"],
        "cache_creation": sub["cache_creation_input_tokens"], "cache_read": 0,
        "reasoning": 0}
    assert "claude-haiku-4-5" in digest["models"]
    [row] = cli_json("usage", "--by", "session")
    assert (row["input"], row["output"], row["cache_creation"], row["cache_read"]) == (
        10 + sub["input_tokens"], 5 + sub["output_tokens"],
        sub["cache_creation_input_tokens"], 0)
