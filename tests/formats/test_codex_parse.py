"""Codex digests: the last cumulative token_count, exit codes, patches, injected context."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from session_memory.analyze.digest import build
from session_memory.formats import codex
from session_memory.formats.events import Piece
from session_memory.memory import Memory
from tests.analyze.helpers import analyzed, digest_of, jsonl, write

CID = "bbbbbbbb-0000-4000-8000-000000000002"


def line(ts: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": f"2026-02-01T08:00:{ts}.000Z", "type": kind, "payload": payload}


def tokens(inp: int, cached: int, out: int, reasoning: int) -> dict[str, Any]:
    return {"type": "token_count", "info": {"total_token_usage": {
        "input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out,
        "reasoning_output_tokens": reasoning, "total_tokens": inp + out}}}


SHELL = {"type": "function_call", "name": "shell", "call_id": "c1",
         "arguments": json.dumps({"command": ["bash", "-lc", "pytest"]})}


def rollout() -> str:
    return jsonl(
        line("00", "session_meta", {"id": CID, "cwd": "/work/app", "cli_version": "0.40.0",
                                    "git": {"branch": "feature/x", "commit_hash": "abc"}}),
        line("01", "response_item", {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "# AGENTS.md instructions for /work/app\n\n"
                                           "<INSTRUCTIONS>be nice</INSTRUCTIONS>"}]}),
        line("01", "response_item", {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context>\n  <cwd>/work/app</cwd>"
                                           "\n</environment_context>"}]}),
        line("02", "turn_context", {"cwd": "/work/app", "model": "gpt-5"}),
        line("03", "event_msg", {"type": "user_message", "message": "add a --verbose flag"}),
        line("03", "response_item", {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "add a --verbose flag"}]}),
        line("04", "event_msg", {"type": "token_count", "info": None}),
        line("05", "event_msg", tokens(100, 40, 10, 5)),
        line("06", "response_item", SHELL),
        line("06", "response_item", SHELL),  # re-appended copy: one call
        line("07", "response_item", {"type": "function_call_output", "call_id": "c1",
                                     "output": json.dumps({"output": "E   assert 1 == 2\n"
                                                           "1 failed in 0.12s",
                                                           "metadata": {"exit_code": 1}})}),
        line("08", "response_item", {"type": "function_call", "name": "shell", "call_id": "c2",
                                     "arguments": json.dumps({"command": [
                                         "apply_patch", "*** Begin Patch\n*** Update File: "
                                         "src/a.py\n@@\n-x\n+y\n*** End Patch"]})}),
        line("09", "response_item", {"type": "function_call_output", "call_id": "c2",
                                     "output": json.dumps({"output": "Done",
                                                           "metadata": {"exit_code": 0}})}),
        line("10", "response_item", {"type": "custom_tool_call", "name": "apply_patch",
                                     "call_id": "c3", "input": "*** Begin Patch\n*** Add File: "
                                     "src/new.py\n+print(1)\n*** End Patch"}),
        "{broken",
        line("11", "something_new", {"x": 1}),
        line("12", "event_msg", tokens(300, 200, 50, 20)),
        line("13", "event_msg", {"type": "agent_message", "message": "Added the flag."}),
        line("14", "event_msg", {"type": "token_count", "info": None}),
    )


@pytest.fixture
def written(memory: Memory, sources: dict[str, Path]) -> dict[str, Any]:
    write(sources["codex"], f"sessions/2026/02/01/rollout-2026-02-01T08-00-00-{CID}.jsonl",
          rollout())
    return digest_of(memory, f"codex:{CID}")


def test_last_non_null_cumulative_token_count(written: dict[str, Any]) -> None:
    assert written["tokens"] == {"input": 300, "output": 50, "cache_creation": 0,
                                 "cache_read": 200, "reasoning": 20}
    assert written["tokens_by_model"] == {"gpt-5": written["tokens"]}


def test_injected_context_is_not_a_prompt(written: dict[str, Any]) -> None:
    assert written["user_turns"] == 1
    assert written["first_prompt"] == "add a --verbose flag"


def test_calls_patches_and_exit_codes(written: dict[str, Any]) -> None:
    assert written["tool_calls"] == {"shell": 2, "apply_patch": 1}
    assert written["files_edited"] == ["src/a.py", "src/new.py"]
    assert written["commands"] == ["bash -lc pytest"]
    assert written["tool_errors"] == 1
    assert written["errors"][0]["tool"] == "shell"
    assert written["errors"][0]["snippet"] == "1 failed in 0.12s"
    assert written["errors"][0]["fingerprint"] == "<n> failed in <n>s"
    assert written["malformed_lines"] == 1
    assert written["git_branch"] == "feature/x" and written["cwd"] == "/work/app"
    assert written["models"] == ["gpt-5"]
    assert written["last_assistant_message"] == "Added the flag."
    assert written["outcome"] == "success"
    assert written["duration_s"] == 14.0


def test_a_tool_output_that_only_looks_like_json_has_no_exit_code() -> None:
    """A number past a double's range makes the output no JSON: read whole or its text
    decoded only for an error, it has no exit code, and the parser does not fail."""
    data = jsonl(line("07", "response_item", {
        "type": "function_call_output", "call_id": "c1",
        "output": '{"output": 1e400, "metadata": {"exit_code": 1}}'}))
    piece = Piece(f"sessions/2026/02/01/rollout-2026-02-01T08-00-00-{CID}.jsonl",
                  lambda: [data.encode()])
    assert build("codex", functools.partial(codex.parse, [piece]), version=1)["tool_errors"] == 0


def test_fixture_rollout(fixtures: Memory) -> None:
    d = analyzed(fixtures, "codex:11111111-1111-4111-8111-111111111111")
    assert d["tool_calls"] == {"apply_patch": 1, "exec_command": 1, "mcp__synthetic__lookup": 1}
    assert d["files_edited"] == ["gamma.txt"]
    assert d["commands"] == ["find . -maxdepth 1 -type f"]
    assert d["user_turns"] == 1 and d["first_prompt"] == "List the synthetic files."
    assert d["models"] == ["synthetic-model"]
    assert d["last_assistant_message"] == "The synthetic files are alpha.txt and beta.txt."
    assert d["started_at"] == "2026-01-02T03:04:05.000Z"
    assert d["ended_at"] == "2026-01-02T03:04:16.000Z"
    assert d["malformed_lines"] == 0  # an unknown record type is skipped, not malformed


def test_subagent_thread_skips_the_replayed_parent_prefix(fixtures: Memory) -> None:
    d = analyzed(fixtures, "codex:33333333-3333-4333-8333-333333333333")
    assert d["user_turns"] == 0  # its only prompt was written by the parent agent
    assert d["tool_calls"] == {}  # the parent's spawn_agent call is the parent's
    assert d["title"] == "Inspect fixtures."
    assert d["started_at"] == "2026-01-03T04:05:10.000Z"


def test_legacy_and_malformed_rollouts(fixtures: Memory) -> None:
    legacy = analyzed(fixtures, "codex:44444444-4444-4444-8444-444444444444")
    assert legacy["user_turns"] == 1
    assert legacy["first_prompt"] == "Open the synthetic legacy session."
    assert legacy["last_assistant_message"] == "The synthetic legacy session is open."
    broken = analyzed(fixtures, "codex:66666666-6666-4666-8666-666666666666")
    assert broken["malformed_lines"] == 1
    assert broken["first_prompt"] == "Safe line before malformed input."
    assert broken["outcome"] == "abandoned"  # a prompt nobody answered


def test_a_token_count_written_twice_counts_once_under_codex_default_model(
        memory: Memory, sources: dict[str, Path]) -> None:
    """Codex 0.3x wrote each turn's token_count line twice, and no turn_context naming the
    model: each turn counts once, as gpt-5 (as ccusage counts them)."""
    def turn(ts: str, total: tuple[int, int, int], last: tuple[int, int, int]
             ) -> dict[str, Any]:
        def usage(inp: int, cached: int, out: int) -> dict[str, int]:
            return {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out,
                    "reasoning_output_tokens": 0, "total_tokens": inp + out}
        return line(ts, "event_msg", {"type": "token_count", "info": {
            "total_token_usage": usage(*total), "last_token_usage": usage(*last)}})

    write(sources["codex"], f"sessions/2026/02/01/rollout-2026-02-01T08-00-00-{CID}.jsonl",
          jsonl(line("00", "session_meta", {"id": CID, "cwd": "/work/app",
                                            "cli_version": "0.34.0"}),
                turn("01", (100, 40, 10), (100, 40, 10)),
                turn("02", (100, 40, 10), (100, 40, 10)),
                turn("03", (250, 140, 30), (150, 100, 20)),
                turn("04", (250, 140, 30), (150, 100, 20))))
    digest_of(memory, f"codex:{CID}")
    rows = memory.usage("model")
    assert [(r["key"], r["input"], r["cache_read"], r["output"], r["responses"])
            for r in rows] == [("gpt-5", 110, 140, 30, 2)]
