"""Every format adapter's parser, fed generated input: it may skip what it cannot read,
but never raise, and the digest is always built. A fixed, small budget in the suite;
longer on demand: SESSION_MEMORY_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/formats/test_fuzz.py
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory import formats
from session_memory.analyze.digest import build
from session_memory.formats.events import Piece

EXAMPLES = int(os.environ.get("SESSION_MEMORY_FUZZ_EXAMPLES", "150"))

# Where each tool keeps a session file: the parser looks at the path too.
PATHS = {
    "claude-code": ["proj/11111111-2222-3333-4444-555555555555.jsonl",
                    "proj/11111111-2222-3333-4444-555555555555/subagents/agent-a.jsonl"],
    "codex": ["sessions/2026/01/01/rollout-2026-01-01T00-00-00-abc.jsonl"],
    "gemini-cli": ["hash/chats/session-1.json", "hash/chats/session-1.jsonl"],
    "aider": ["repo/.aider.chat.history.md"],
    "jsonl": ["logs/a.jsonl"],
    "copilot-cli": ["5e55e5e5/events.jsonl", "5e55e5e5/workspace.yaml", "5e55e5e5.jsonl"],
    "opencode": ["session/p1/ses_1.json", "message/ses_1/msg_1.json", "part/msg_1/prt_1.json"],
}
KEYS = ["type", "role", "content", "message", "text", "id", "timestamp", "payload", "usage",
        "model", "sessionId", "parentUuid", "tool_use_id", "name", "input", "messages",
        "toolCalls", "tokens", "startTime", "lastUpdated", "$rewindTo", "is_error", "cwd",
        "data", "toolRequests", "arguments", "toolCallId", "modelMetrics", "success",
        "sessionID", "messageID", "parentID", "state", "time", "cache", "tool", "files"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=40),
                    st.sampled_from(["user", "assistant", "tool_use", "tool_result",
                                     "session_meta", "response_item", "event_msg", "gemini",
                                     "2026-01-01T00:00:00Z", "<command-name>", "user.message",
                                     "assistant.message", "tool.execution_complete",
                                     "session.shutdown", "msg_1", "text", "tool", "patch"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6)),
    max_leaves=25)


def _line(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


lines = st.one_of(values.map(_line), st.binary(max_size=60),
                  st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
                  st.sampled_from([b"#### a prompt", b"# aider chat started at 2026-01-01 00:00:00",
                                   b"> Tokens: 1.2k sent, 3 received.", b"<<<<<<< SEARCH",
                                   b"=======", b">>>>>>> REPLACE", b"```", b"{", b"[", b""]))
contents = st.lists(lines, max_size=12).map(lambda ls: b"\n".join(ls))


def _run(fmt_name: str, path: str, data: bytes, cut: int) -> None:
    cut = min(cut, len(data))
    parts = [data[:cut], data[cut:]]  # a record may span two stored chunks
    piece = Piece(path, lambda: iter(parts))
    digest = build(fmt_name, functools.partial(formats.get(fmt_name).parse, [piece]), version=1)
    # The digest must be storable as JSON (its keyed responses, packed, go to the usage
    # tables, not into the digest).
    json.dumps({k: v for k, v in digest.items() if k != "spend_keyed"})
    transcript = formats.transcript(fmt_name)
    if transcript is not None:  # a reader paging through it never fails either
        for turn in transcript([piece]):
            assert isinstance(turn.text, str)


def test_every_format_is_fuzzed() -> None:
    assert sorted(PATHS) == sorted(formats.names())


@pytest.mark.parametrize("fmt_name", sorted(PATHS))
def test_parsers_never_raise(fmt_name: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(PATHS[fmt_name]), data=contents, cut=st.integers(0, 200))
    def check(path: str, data: bytes, cut: int) -> None:
        _run(fmt_name, path, data, cut)

    check()


@pytest.mark.parametrize("fmt_name", sorted(PATHS))
def test_parsers_survive_hostile_records(fmt_name: str) -> None:
    """The named nasties, one record each, in every format."""
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    big = _line({"type": "user", "message": {"role": "user", "content": "x" * 5_000_000}})
    for data in (deep, big, b"[1, 2, 3]", b"\x00" * 100, b"\xff\xfe{}", b'{"a": 1}\r\n' * 3,
                 b"\xef\xbb\xbf" + _line({"type": "user"}), _line([{"type": "user"}] * 3),
                 _line({"message": {"content": [{"type": "text", "text": 1}]}}),
                 _line({"type": "response_item", "payload": []}),
                 _line({"type": []}), _line({"type": {"a": 1}, "role": []}),
                 _line({"id": 1, "type": [], "sessionId": "s"}),
                 _line({"id": 1, "type": "gemini", "toolCalls": [{"name": [], "args": {}}]}),
                 _line({"type": "assistant", "message": {"content": [
                     {"type": "tool_use", "name": {}, "input": {"file_path": "a"}}]}})):
        for path in PATHS[fmt_name]:
            _run(fmt_name, path, data, 7)


def test_a_gemini_record_whose_type_is_no_string_is_passed_by() -> None:
    """A copy the fuzz test found: a record whose `type` is a list (unhashable) made the
    fold of Gemini CLI's messages raise, and its session's analysis fail."""
    for path in PATHS["gemini-cli"]:
        _run("gemini-cli", path, b'{"type": [], "id": "a"}', 0)
        _run("gemini-cli", path, b'{"type": {"x": 1}, "id": "a"}\n{"type": "user", "id": "b"}', 0)
