"""The digest builder alone: outcome heuristic, caps, usage keys, parallel = serial."""

from __future__ import annotations

from pathlib import Path

import pytest

from session_memory.analyze import events as ev
from session_memory.analyze import run
from session_memory.analyze.digest import MAX_LIST, build
from session_memory.memory import Memory
from tests.analyze.helpers import jsonl, write


@pytest.mark.parametrize(("stream", "outcome"), [
    ([], "unknown"),
    ([ev.Prompt("do it")], "abandoned"),
    ([ev.Prompt("do it"), ev.AssistantText("done")], "success"),
    ([ev.Prompt("do it"), ev.AssistantText("on it"), ev.Failure("interrupted")], "abandoned"),
    ([ev.Prompt("x"), ev.AssistantText("y"), ev.Failure("api_error", "overloaded")], "fail"),
    ([ev.Prompt("x"), ev.ToolResult("c", True, "boom"), ev.AssistantText("I give up")], "fail"),
    ([ev.Prompt("x"), ev.ToolResult("c", True, "boom"), ev.ToolResult("d", False),
      ev.AssistantText("fixed")], "success"),
    # A subagent's failure does not decide how the session ended.
    ([ev.Prompt("x"), ev.AssistantText("ok"), ev.Failure("api_error", "e", sidechain=True)],
     "success"),
])
def test_outcome(stream: list[ev.Event], outcome: str) -> None:
    assert build("claude-code", stream)["outcome"] == outcome


def test_usage_keys_replace_and_none_adds() -> None:
    d = build("x", [ev.Usage("m1", "a", 10, 1), ev.Usage("m1", "a", 10, 5),
                    ev.Usage(None, "b", 3, 3), ev.Usage(None, "b", 3, 3),
                    ev.Usage("m2", None, 1, 1, 2, 4, 8)])
    assert d["tokens"] == {"input": 17, "output": 12, "cache_creation": 2, "cache_read": 4,
                           "reasoning": 8}
    assert d["tokens_by_model"]["unknown"]["reasoning"] == 8


def test_lists_are_capped_and_calls_counted_once() -> None:
    stream: list[ev.Event] = [ev.ToolCall(f"c{i}", "Edit", edited=[f"/f{i}"])
                              for i in range(MAX_LIST + 50)]
    stream += [ev.ToolCall("c0", "Edit", edited=["/f0"])]
    d = build("x", stream)
    assert d["tool_calls"] == {"Edit": MAX_LIST + 50}
    assert len(d["files_edited"]) == MAX_LIST and d["truncated"]["files_edited"] == 50


def test_parallel_workers_give_the_serial_digests(memory: Memory, sources: dict[str, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(4):
        sid = f"pa{n:02d}"
        write(sources["claude-code"], f"-p/{sid}.jsonl", jsonl(
            {"type": "user", "sessionId": sid, "timestamp": "2026-01-01T00:00:00Z",
             "message": {"role": "user", "content": f"task {n}"}},
            {"type": "assistant", "sessionId": sid, "timestamp": "2026-01-01T00:00:09Z",
             "message": {"id": f"m{n}", "model": "m", "content": [], "usage": {
                 "input_tokens": n, "output_tokens": 1}}}))
    memory.ingest()
    ids = sorted(memory.analyze())
    serial = {sid: memory.tier2.get_digest(sid) for sid in ids}
    monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
    assert sorted(memory.analyze(force=True)) == ids
    assert {sid: memory.tier2.get_digest(sid) for sid in ids} == serial
    assert serial["claude-code:pa03"]["tokens"]["input"] == 3  # type: ignore[index]


def test_bounded_memory_still_counts_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from session_memory.analyze import digest as digest_mod

    monkeypatch.setattr(digest_mod._Window, "WINDOW", 8)
    stream: list[ev.Event] = []
    for i in range(100):  # each message streamed twice, the last copy final
        stream += [ev.Usage(f"m{i}", "a", 1, 1), ev.Usage(f"m{i}", "a", 1, 10),
                   ev.ToolCall(f"c{i}", "Bash")]
    # A subagent file replays early messages and calls long after they left the window.
    stream += [ev.Usage("m0", "a", 1, 10), ev.Usage("m1", "a", 1, 10), ev.ToolCall("c0", "Bash")]
    builder = digest_mod.DigestBuilder("x").feed(stream)
    d = builder.digest()
    assert d["tokens"]["input"] == 100 and d["tokens"]["output"] == 1000
    assert d["tool_calls"] == {"Bash": 100}
    assert len(builder.usage.recent) == 8 and len(builder.calls.recent) == 8


def test_seen_filter_is_fixed_size_with_no_false_negatives() -> None:
    """Retired ids of a huge session are remembered in fixed memory: every id added is
    found again, and ids never added are rarely taken for seen."""
    from session_memory.analyze.digest import _SeenFilter

    seen = _SeenFilter()
    size = len(seen.bits)
    added = [f"msg_{i:012x}" for i in range(200_000)]
    for key in added:
        seen.add(key)
    assert all(key in seen for key in added)
    false = sum(f"other_{i}" in seen for i in range(100_000))
    assert false < 20  # expected about 0.3 at this fill
    assert len(seen.bits) == size == 4 * 2**20
