"""Gemini CLI digests: records folded by id (last copy wins), `$rewindTo` applied first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from session_memory.memory import Memory
from tests.analyze.helpers import digest_of, jsonl, write

GID = "gggggggg-0000-4000-8000-000000000003"
CHATS = "tmp/0f0f/chats"


def msg(mid: str, kind: str, minute: int, **fields: Any) -> dict[str, Any]:
    return {"id": mid, "type": kind, "timestamp": f"2026-03-01T09:{minute:02d}:00.000Z",
            **fields}


def gemini(mid: str, minute: int, tokens: tuple[int, int, int, int], calls: list[Any],
           content: str = "") -> dict[str, Any]:
    inp, out, cached, thoughts = tokens
    return msg(mid, "gemini", minute, model="gemini-2.5-pro", content=content, toolCalls=calls,
               tokens={"input": inp, "output": out, "cached": cached, "thoughts": thoughts,
                       "tool": 0, "total": inp + out})


def call(cid: str, name: str, status: str = "success", **args: Any) -> dict[str, Any]:
    return {"id": cid, "name": name, "args": args, "status": status,
            "result": "Error: old_string not found in /p/utils.py" if status == "error" else "ok"}


READ = call("t1", "read_file", absolute_path="/p/utils.py")


def chat() -> str:
    return jsonl(
        {"sessionId": GID, "projectHash": "0f0f", "startTime": "2026-03-01T09:00:00.000Z",
         "lastUpdated": "2026-03-01T09:00:00.000Z", "kind": "main"},
        msg("u1", "user", 1, content=[{"text": "refactor utils"}]),
        gemini("g1", 2, (100, 10, 20, 5), [READ]),
        # The same message appended again as it changed: this copy wins.
        gemini("g1", 3, (100, 30, 20, 7), [READ, call("t2", "replace", "error",
                                                      file_path="/p/utils.py")]),
        {"$set": {"lastUpdated": "2026-03-01T09:05:00.000Z"}},
        msg("u2", "user", 6, content="also delete the build folder"),
        gemini("g2", 7, (500, 500, 0, 0), [call("t3", "run_shell_command",
                                                command="rm -rf build")]),
        {"$rewindTo": "g1"},  # u2 and g2 never happened
        msg("u3", "user", 8, content="<session_context>cwd: /p</session_context>"),
        msg("i1", "info", 8, content="Switched model"),
        msg("u4", "user", 9, content="try again differently"),
        "{not json",
        gemini("g3", 10, (50, 5, 0, 1), [call("t4", "write_file", file_path="/p/new.py")],
               content="Done differently."),
        {"$set": {"lastUpdated": "2026-03-01T09:10:00.000Z"}},
    )


def subagent_chat() -> str:
    return jsonl(
        {"sessionId": "sub-1", "projectHash": "0f0f", "startTime": "2026-03-01T09:02:30.000Z",
         "lastUpdated": "2026-03-01T09:02:40.000Z", "kind": "subagent"},
        msg("s1", "user", 2, content="list the python files"),  # written by the agent
        gemini("s2", 2, (7, 3, 0, 0), [call("t9", "glob", pattern="*.py")]),
    )


def test_fold_rewind_and_count(memory: Memory, sources: dict[str, Path]) -> None:
    write(sources["gemini-cli"], f"{CHATS}/session-2026-03-01T09-00-gggggggg.jsonl", chat())
    write(sources["gemini-cli"], f"{CHATS}/{GID}/session-sub.jsonl", subagent_chat())
    d = digest_of(memory, f"gemini-cli:{GID}")
    # g1 (last copy) + g3 + the subagent's s2; g2 was rewound away.
    assert d["tokens"] == {"input": 100 + 50 + 7, "output": 30 + 5 + 3, "cache_creation": 0,
                           "cache_read": 20, "reasoning": 7 + 1}
    assert d["user_turns"] == 2
    assert d["prompts"] == ["refactor utils", "try again differently"]
    assert d["tool_calls"] == {"glob": 1, "read_file": 1, "replace": 1, "write_file": 1}
    assert d["files_edited"] == ["/p/utils.py", "/p/new.py"]
    assert d["files_read"] == ["/p/utils.py"]
    assert d["commands"] == []
    assert d["tool_errors"] == 1
    assert d["errors"][0]["tool"] == "replace"
    assert d["errors"][0]["fingerprint"] == "Error: old_string not found in <path>"
    assert d["started_at"] == "2026-03-01T09:00:00.000Z"
    assert d["ended_at"] == "2026-03-01T09:10:00.000Z"
    assert d["malformed_lines"] == 1
    assert d["models"] == ["gemini-2.5-pro"]
    assert d["last_assistant_message"] == "Done differently."
    assert d["outcome"] == "success"


def test_rewind_to_the_first_message_leaves_only_it(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    write(sources["gemini-cli"], f"{CHATS}/session-2026-03-02T10-00-hhhhhhhh.jsonl", jsonl(
        {"sessionId": "hhhh", "startTime": "2026-03-02T10:00:00Z",
         "lastUpdated": "2026-03-02T10:00:00Z"},
        msg("u1", "user", 1, content="first"),
        gemini("g1", 2, (10, 10, 0, 0), []),
        msg("u2", "user", 3, content="second"),
        {"$rewindTo": "u1"},
        msg("u1", "user", 4, content="first, edited"),
    ))
    d = digest_of(memory, "gemini-cli:hhhh")
    assert d["tokens"]["input"] == 0
    assert d["prompts"] == ["first, edited"]
    assert d["outcome"] == "abandoned"


def test_whole_file_json_of_older_versions(memory: Memory, sources: dict[str, Path]) -> None:
    doc = {"sessionId": "old-1", "projectHash": "0f0f", "startTime": "2025-05-01T08:00:00Z",
           "lastUpdated": "2025-05-01T08:30:00Z", "messages": [
               msg("u1", "user", 1, content="explain the cache"),
               gemini("g1", 2, (40, 4, 0, 0), [], content="It is an LRU."),
           ]}
    write(sources["gemini-cli"], f"{CHATS}/session-old-1.json", json.dumps(doc, indent=2))
    d = digest_of(memory, "gemini-cli:old-1")
    assert d["first_prompt"] == "explain the cache"
    assert d["tokens"]["input"] == 40 and d["tokens"]["output"] == 4
    assert d["duration_s"] == 1800.0
    assert d["malformed_lines"] == 0


def test_usage_by_hour_takes_cached_input_off_and_bills_thoughts_as_output(
        memory: Memory, sources: dict[str, Path]) -> None:
    write(sources["gemini-cli"], f"{CHATS}/session-2026-03-01T09-00-gggggggg.jsonl", chat())
    write(sources["gemini-cli"], f"{CHATS}/{GID}/session-sub.jsonl", subagent_chat())
    digest_of(memory, f"gemini-cli:{GID}")
    (row,) = memory.usage("model", breakdown=True)
    # g1 (its last copy: 100 in of which 20 cached, 30 out + 7 thoughts), g3 (50 in,
    # 5 out + 1 thought) and the subagent's s2 (7 in, 3 out); g2 was rewound away.
    assert (row["key"], row["input"], row["output"], row["cache_read"], row["reasoning"]) == (
        "gemini-2.5-pro", 80 + 50 + 7, 37 + 6 + 3, 20, 8)
    assert row["responses"] == 3


def test_a_line_only_a_full_decode_rejects_loses_no_message_after_it(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A line with a value no decode takes (a byte that is no UTF-8, a number no float
    holds) where the parser reads it is malformed; in a value it skips (a field it does not
    read, a tool's output), the line is read. Either way the messages after it are
    reported as they are: the fold and the report decode the lines alike."""
    cases = ((b'{"note": "\xff"}', 0), (b'{"note": 1e400}', 0),
             (b'{"id": "x1", "type": "user", "content": "\xff"}', 1),
             (b'{"id": "x2", "type": "gemini", "tokens": {"input": 1e400}}', 1),
             (b'{"id": "x3", "type": "info", "toolCalls": [{"name": "glob", "result": "\xff"}]}',
              0))
    for n, (bad, malformed) in enumerate(cases):
        sid = f"bad{n}"
        text = jsonl({"sessionId": sid, "startTime": "2026-03-02T10:00:00Z",
                      "lastUpdated": "2026-03-02T10:00:00Z"},
                     msg("u1", "user", 1, content="first ask")).encode()
        text += bad + b"\n" + jsonl(gemini("g1", 2, (10, 10, 0, 0), [],
                                           content="answer one")).encode()
        write(sources["gemini-cli"], f"{CHATS}/session-2026-03-02T10-0{n}-{sid}.jsonl", text)
        d = digest_of(memory, f"gemini-cli:{sid}")
        assert d["prompts"] == ["first ask"], bad
        assert d["last_assistant_message"] == "answer one", bad
        assert d["tokens"]["input"] == 10, bad
        assert d["malformed_lines"] == malformed, bad


def test_a_failed_tools_output_is_its_error_whatever_its_shape(
        memory: Memory, sources: dict[str, Path]) -> None:
    """Outputs are skipped unread, and decoded only for a call that failed: text, parts
    with text, or anything else as its JSON."""
    results = ["Error: no such file", [{"text": "Error: parts"}], {"code": 7}, None]
    calls = [{"id": f"t{n}", "name": "read_file", "args": {"absolute_path": "/p/a.py"},
              "status": "error", "result": result} for n, result in enumerate(results)]
    write(sources["gemini-cli"], f"{CHATS}/session-2026-03-03T10-00-iiiiiiii.jsonl", jsonl(
        {"sessionId": "iiii", "startTime": "2026-03-03T10:00:00Z"},
        msg("u1", "user", 1, content="read it"),
        gemini("g1", 2, (10, 1, 0, 0), calls)))
    d = digest_of(memory, "gemini-cli:iiii")
    assert d["tool_errors"] == 4
    assert sorted(e["snippet"] for e in d["errors"]) == sorted(
        ["Error: no such file", "Error: parts", '{"code":7}', ""])


def test_a_set_line_speaks_for_the_session_only_when_it_names_its_times_or_id(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A `$set` (or any line) that holds sessionId, startTime or lastUpdated, whatever their
    values (null too), is a session line: its summary titles the session. Without any of
    the three, it says nothing."""
    write(sources["gemini-cli"], f"{CHATS}/session-2026-03-04T10-00-jjjjjjjj.jsonl", jsonl(
        {"sessionId": "jjjj", "startTime": "2026-03-04T10:00:00Z"},
        msg("u1", "user", 1, content="first ask"),
        {"$set": {"summary": "Not a session line"}},
        {"$set": {"lastUpdated": None, "summary": "The session's title"}},
        {"$set": {"summary": "Not one either"}}))
    assert digest_of(memory, "gemini-cli:jjjj")["title"] == "The session's title"


def test_transcript_holds_what_survives_the_fold(memory: Memory,
                                                 sources: dict[str, Path]) -> None:
    """The conversation is the folded one: g1's last copy, nothing a rewind took out."""
    write(sources["gemini-cli"], f"{CHATS}/session-2026-03-01T09-00-gggggggg.jsonl", chat())
    digest_of(memory, f"gemini-cli:{GID}")
    page = memory.transcript(f"gemini-cli:{GID}", 0, 200)
    assert page["next_offset"] is None
    said = [(m["role"], m.get("tool"), m["text"]) for m in page["messages"]
            if m["role"] in ("user", "assistant", "tool_call")]
    assert [t for t in said if t[0] == "user"] == [
        ("user", None, "refactor utils"), ("user", None, "try again differently")]
    assert [t[1] for t in said if t[0] == "tool_call"] == ["read_file", "replace", "write_file"]
    assert ("assistant", None, "Done differently.") in said
    assert not any("rm -rf build" in (t[2] or "") for t in said)
