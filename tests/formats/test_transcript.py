"""Each format's transcript reader, over the shared fixtures: the turns a reader pages
through agree with the digest the same bytes give."""

from __future__ import annotations

import pytest

from session_memory import formats
from session_memory.errors import EvictedError
from session_memory.memory import Memory


def test_every_format_reads_transcripts() -> None:
    assert all(formats.transcript(name) is not None for name in formats.names())


def test_first_user_turn_is_the_digests_first_prompt(fixtures: Memory) -> None:
    fixtures.analyze()
    checked = 0
    for session in fixtures.sessions():
        digest = fixtures.tier2.get_digest(session["id"])
        assert digest is not None
        page = fixtures.transcript(session["id"], 0, 200)
        messages = page["messages"]
        assert {m["role"] for m in messages} <= {"user", "assistant", "tool_call",
                                                 "tool_result"}
        users = [m["text"] for m in messages if m["role"] == "user" and not m.get("subagent")]
        if digest["first_prompt"]:
            assert users and users[0] == digest["first_prompt"][:len(users[0])], session["id"]
            checked += 1
        if page["next_offset"] is None and not any(m.get("subagent") for m in messages):
            calls = [m for m in messages if m["role"] == "tool_call"]
            assert len(calls) >= sum(digest["tool_calls"].values()), session["id"]
    assert checked >= 20


def test_paging_reads_the_same_turns(fixtures: Memory) -> None:
    sid = max(fixtures.sessions(), key=lambda s: s["raw_bytes"])["id"]
    whole = fixtures.transcript(sid, 0, 200)["messages"]
    paged, offset = [], 0
    while offset is not None:
        page = fixtures.transcript(sid, offset, 9)
        paged += page["messages"]
        offset = page["next_offset"]
    assert len(whole) == 200 and len(paged) > 200
    assert paged[:200] == whole


def test_an_evicted_session_has_no_transcript(fixtures: Memory) -> None:
    sid = fixtures.sessions(source="codex", limit=1)[0]["id"]
    fixtures.analyze([sid])
    with fixtures.tier1.transaction():
        fixtures.tier1.evict(sid, 0.0)
    with pytest.raises(EvictedError, match="only its digest remains"):
        fixtures.transcript(sid)
