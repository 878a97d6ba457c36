"""Session files for the usage tests, written as the agent tools write them: compact JSON,
one record a line, timestamps in UTC with milliseconds.

- `rewrite_tree` copies a fixture tree so (the fixtures are pretty in places, or without
  milliseconds); files that are not JSONL are copied as they are.
- `write_claude_sessions` and `write_codex_sessions` make small sessions whose day × model
  totals are worked out by hand in CLAUDE_EXPECTED and CODEX_EXPECTED: they cross local
  midnight in America/New_York (TZ below), hold streaming copies of one response, and one
  response that two sessions' files both hold.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TZ = "America/New_York"  # UTC-5 in March: 04:30Z is 23:30 the day before


def iso_ms(value: str) -> str:
    """An ISO 8601 time as the tools write it: UTC, milliseconds, Z."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _retime(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_iso_or_same(v) if k == "timestamp" and isinstance(v, str) else _retime(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_retime(v) for v in value]
    return value


def _iso_or_same(value: str) -> str:
    try:
        return iso_ms(value)
    except ValueError:
        return value


def compact(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def rewrite_tree(src: Path, dst: Path) -> None:
    """Copy `src` to `dst`, every JSONL record in compact JSON with millisecond times."""
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not path.name.endswith(".jsonl"):
            target.write_bytes(path.read_bytes())
            continue
        out = []
        for line in path.read_text("utf-8").splitlines():
            try:
                out.append(compact(_retime(json.loads(line))))
            except ValueError:
                out.append(line)  # not JSON: kept, as a broken line in a real file
        target.write_text("\n".join(out) + "\n", "utf-8")
        os.utime(target, (1_700_000_000, 1_700_000_000))


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(compact(r) + "\n" for r in records), "utf-8")
    os.utime(path, (1_700_000_000, 1_700_000_000))


def _claude(sid: str, at: str, msg_id: str, req: str, model: str, usage: dict[str, int],
            *, sidechain: bool = False) -> dict[str, Any]:
    return {"type": "assistant", "timestamp": iso_ms(at), "sessionId": sid,
            "requestId": req, "version": "2.0.0", "cwd": "/work/app",
            "isSidechain": sidechain, "uuid": f"u-{msg_id}-{at}",
            "message": {"id": msg_id, "model": model, "role": "assistant", "type": "message",
                        "content": [{"type": "text", "text": "ok"}], "usage": usage}}


def _prompt(sid: str, at: str) -> dict[str, Any]:
    return {"type": "user", "timestamp": iso_ms(at), "sessionId": sid, "version": "2.0.0",
            "cwd": "/work/app", "uuid": f"p-{sid}-{at}",
            "message": {"role": "user", "content": "go on"}}


SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
CLAUDE_A = "aaaaaaaa-0000-4000-8000-00000000000a"
CLAUDE_B = "bbbbbbbb-0000-4000-8000-00000000000b"


def write_claude_sessions(projects: Path) -> None:
    """Two sessions. A runs from 23:40 to 00:20 New York time (04:40Z-05:20Z, 1-2 March):
    m1 streamed as two copies (the fuller one counts), m2 after midnight, and m3 with
    haiku. B, a resumed copy, repeats m2 (same message id and request id) and adds m4."""
    def usage(i: int, o: int, cw: int = 0, cr: int = 0) -> dict[str, int]:
        return {"input_tokens": i, "output_tokens": o, "cache_creation_input_tokens": cw,
                "cache_read_input_tokens": cr}

    _write(projects / "-work-app" / f"{CLAUDE_A}.jsonl", [
        _prompt(CLAUDE_A, "2026-03-02T04:39:00Z"),
        _claude(CLAUDE_A, "2026-03-02T04:40:00.125Z", "m1", "r1", SONNET, usage(10, 1, 1000, 0)),
        _claude(CLAUDE_A, "2026-03-02T04:40:02.250Z", "m1", "r1", SONNET,
                usage(10, 200, 1000, 0)),
        _claude(CLAUDE_A, "2026-03-02T05:10:00.500Z", "m2", "r2", SONNET,
                usage(5, 300, 100, 1000)),
        _claude(CLAUDE_A, "2026-03-02T05:20:00.000Z", "m3", "r3", HAIKU, usage(40, 4, 0, 0)),
    ])
    _write(projects / "-work-app" / f"{CLAUDE_B}.jsonl", [
        _claude(CLAUDE_B, "2026-03-02T05:10:00.500Z", "m2", "r2", SONNET,
                usage(5, 300, 100, 1000)),
        _prompt(CLAUDE_B, "2026-03-03T15:00:00Z"),
        _claude(CLAUDE_B, "2026-03-03T15:00:09.999Z", "m4", "r4", SONNET, usage(7, 70, 0, 500)),
    ])


CLAUDE_EXPECTED = {
    # (local day, model): (input, output, cache_creation, cache_read)
    ("2026-03-01", SONNET): (10, 200, 1000, 0),  # m1, its fuller copy
    ("2026-03-02", SONNET): (5, 300, 100, 1000),  # m2, once though two files hold it
    ("2026-03-02", HAIKU): (40, 4, 0, 0),  # m3
    ("2026-03-03", SONNET): (7, 70, 0, 500),  # m4
}

CODEX_MODEL = "gpt-5-codex"
CODEX_ID = "cccccccc-0000-4000-8000-00000000000c"


def _token_count(at: str, total: dict[str, int], last: dict[str, int] | None
                 ) -> dict[str, Any]:
    info: dict[str, Any] = {"total_token_usage": total, "model_context_window": 272000}
    if last is not None:
        info["last_token_usage"] = last
    return {"timestamp": iso_ms(at), "type": "event_msg",
            "payload": {"type": "token_count", "info": info, "rate_limits": None}}


def _counts(i: int, c: int, o: int, r: int) -> dict[str, int]:
    return {"input_tokens": i, "cached_input_tokens": c, "output_tokens": o,
            "reasoning_output_tokens": r, "total_tokens": i + o}


def write_codex_sessions(codex_home: Path) -> None:
    """One rollout from 23:50 to 00:10 New York time (04:50Z-05:10Z, 1-2 March): two
    turns, each reported with its own `last_token_usage`, the second also reported again
    (Codex repeats a token_count), and a third turn with a cumulative total only."""
    path = (codex_home / "sessions" / "2026" / "03" / "02"
            / f"rollout-2026-03-02T04-50-00-{CODEX_ID}.jsonl")
    _write(path, [
        {"timestamp": iso_ms("2026-03-02T04:50:00Z"), "type": "session_meta",
         "payload": {"id": CODEX_ID, "timestamp": iso_ms("2026-03-02T04:50:00Z"),
                     "cwd": "/work/app", "originator": "codex_cli_rs", "cli_version": "0.50.0"}},
        {"timestamp": iso_ms("2026-03-02T04:50:01Z"), "type": "turn_context",
         "payload": {"cwd": "/work/app", "model": CODEX_MODEL, "approval_policy": "never"}},
        {"timestamp": iso_ms("2026-03-02T04:50:02Z"), "type": "event_msg",
         "payload": {"type": "user_message", "message": "fix it"}},
        _token_count("2026-03-02T04:55:00Z", _counts(1000, 200, 50, 10),
                     _counts(1000, 200, 50, 10)),
        _token_count("2026-03-02T05:05:00Z", _counts(3000, 1700, 80, 10),
                     _counts(2000, 1500, 30, 0)),
        _token_count("2026-03-02T05:05:00Z", _counts(3000, 1700, 80, 10),
                     _counts(2000, 1500, 30, 0)),
        _token_count("2026-03-02T05:08:00Z", _counts(3500, 2000, 100, 15), None),
    ])


CODEX_EXPECTED = {
    # input is input_tokens - cached_input_tokens; the repeated report counts once.
    ("2026-03-01", CODEX_MODEL): (800, 50, 0, 200),
    # 2000-1500 = 500 and 30 out; then the total grew by 500 in (300 cached), 20 out.
    ("2026-03-02", CODEX_MODEL): (500 + 200, 30 + 20, 0, 1500 + 300),
}


GEMINI_PRO, GEMINI_FLASH = "gemini-2.5-pro", "gemini-2.5-flash"
GEMINI_REWOUND = "gemini-2.5-flash-lite"  # only the rewound response uses it
GEMINI_ID = "dddddddd-0000-4000-8000-00000000000d"
GEMINI_SUBAGENT = "ffffffff-0000-4000-8000-00000000000f"


def _gemini(mid: str, at: str, model: str, prompt: int, output: int, cached: int,
            thoughts: int, tool: int = 0) -> dict[str, Any]:
    """A `gemini` record as Gemini CLI writes it: `input` is the prompt count, cached and
    tool-use prompt tokens included; `total` is prompt + output + thoughts + tool."""
    return {"id": mid, "timestamp": iso_ms(at), "type": "gemini", "content": "ok",
            "thoughts": [], "model": model,
            "tokens": {"input": prompt, "output": output, "cached": cached,
                       "thoughts": thoughts, "tool": tool,
                       "total": prompt + output + thoughts + tool}}


def _gemini_user(mid: str, at: str) -> dict[str, Any]:
    return {"id": mid, "timestamp": iso_ms(at), "type": "user", "content": [{"text": "go on"}]}


def write_gemini_sessions(gemini_tmp: Path) -> None:
    """One chat recording from 23:30 to 00:21 New York time (04:30Z-05:21Z, 1-2 March): g1
    appended twice as it streamed (the last copy counts), g2 after midnight and then rewound
    away, g3 with another model, and a subagent's log with s2. And one whole-file .json
    session of an older version.
    The rewind drops g2 before anything is counted (DESIGN.md); it is the only response
    with its model, so what counts g2 anyway shows it as a model of its own."""
    chats = gemini_tmp / "0f0f0f0f" / "chats"
    _write(chats / "session-2026-03-02T04-30-dddddddd.jsonl", [
        {"sessionId": GEMINI_ID, "projectHash": "0f0f0f0f",
         "startTime": iso_ms("2026-03-02T04:30:00Z"),
         "lastUpdated": iso_ms("2026-03-02T04:30:00Z"), "kind": "main"},
        _gemini_user("u1", "2026-03-02T04:30:01Z"),
        _gemini("g1", "2026-03-02T04:30:05Z", GEMINI_PRO, 1000, 10, 0, 5),
        _gemini("g1", "2026-03-02T04:30:06.500Z", GEMINI_PRO, 1000, 50, 0, 20),
        _gemini_user("u2", "2026-03-02T04:59:00Z"),
        _gemini("g2", "2026-03-02T05:10:00Z", GEMINI_REWOUND, 3000, 70, 2000, 30, 7),
        {"$rewindTo": "g1"},
        _gemini_user("u3", "2026-03-02T05:20:00Z"),
        _gemini("g3", "2026-03-02T05:21:00Z", GEMINI_FLASH, 4000, 40, 3000, 0),
        {"$set": {"lastUpdated": iso_ms("2026-03-02T05:21:00Z")}},
    ])
    # A subagent's log, in chats/<parent sessionId>/: part of the parent's session.
    _write(chats / GEMINI_ID / "session-2026-03-02T05-14-ffffffff.jsonl", [
        {"sessionId": GEMINI_SUBAGENT, "projectHash": "0f0f0f0f",
         "startTime": iso_ms("2026-03-02T05:14:00Z"),
         "lastUpdated": iso_ms("2026-03-02T05:15:00Z"), "kind": "subagent"},
        _gemini_user("s1", "2026-03-02T05:14:00Z"),
        _gemini("s2", "2026-03-02T05:15:00Z", GEMINI_FLASH, 900, 9, 400, 3),
    ])
    old = {"sessionId": "eeeeeeee-0000-4000-8000-00000000000e", "projectHash": "0f0f0f0f",
           "startTime": iso_ms("2026-03-03T15:00:00Z"),
           "lastUpdated": iso_ms("2026-03-03T15:01:00Z"),
           "messages": [_gemini_user("o1", "2026-03-03T15:00:00Z"),
                        _gemini("o2", "2026-03-03T15:00:30Z", GEMINI_FLASH, 600, 60, 100, 6)]}
    path = chats / "session-2026-03-03T15-00-eeeeeeee.json"
    path.write_text(json.dumps(old, indent=2), "utf-8")
    os.utime(path, (1_700_000_000, 1_700_000_000))


GEMINI_EXPECTED = {
    # (local day, model): (input, output, cache_creation, cache_read, reasoning); input is
    # the prompt less its cached part plus tool-use prompts, output includes thoughts.
    ("2026-03-01", GEMINI_PRO): (1000, 50 + 20, 0, 0, 20),  # g1, its last copy
    ("2026-03-02", GEMINI_FLASH): (1000 + 500, 40 + 9 + 3, 0, 3000 + 400, 3),  # g3, s2
    ("2026-03-03", GEMINI_FLASH): (500, 60 + 6, 0, 100, 6),  # o2
}

GEMINI_EXPECTED_UTC = {  # g1 on 2 March
    ("2026-03-02", GEMINI_PRO): GEMINI_EXPECTED[("2026-03-01", GEMINI_PRO)],
    ("2026-03-02", GEMINI_FLASH): GEMINI_EXPECTED[("2026-03-02", GEMINI_FLASH)],
    ("2026-03-03", GEMINI_FLASH): GEMINI_EXPECTED[("2026-03-03", GEMINI_FLASH)],
}


OPENCODE_MODEL = "gpt-5"
OPENCODE_ID = "ses_0000handmade0000000000001"


def write_opencode_session(storage: Path) -> None:
    """One OpenCode session with a reasoning model, in OpenCode's storage layout: its
    `output` leaves reasoning out (OpenCode prices reasoning as output on its own)."""
    def put(rel: str, doc: dict[str, Any]) -> None:
        path = storage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2), "utf-8")
        os.utime(path, (1_700_000_000, 1_700_000_000))

    created = 1_772_428_500_000  # 2026-03-02T05:15:00Z
    put(f"session/proj0000/{OPENCODE_ID}.json", {
        "id": OPENCODE_ID, "version": "1.0.107", "projectID": "proj0000",
        "directory": "/work/app", "title": "Hand-made",
        "time": {"created": created, "updated": created + 60_000}})
    put(f"message/{OPENCODE_ID}/msg_0000handmade000000000001.json", {
        "id": "msg_0000handmade000000000001", "sessionID": OPENCODE_ID, "role": "user",
        "time": {"created": created}})
    put(f"message/{OPENCODE_ID}/msg_0000handmade000000000002.json", {
        "id": "msg_0000handmade000000000002", "sessionID": OPENCODE_ID, "role": "assistant",
        "modelID": OPENCODE_MODEL, "providerID": "openai", "mode": "build", "cost": 0,
        "time": {"created": created + 1_000, "completed": created + 9_000},
        "tokens": {"input": 1200, "output": 200, "reasoning": 300,
                   "cache": {"read": 800, "write": 0}}})
