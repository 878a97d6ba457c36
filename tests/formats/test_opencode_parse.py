"""OpenCode: the real two-session storage tree of tests/fixtures/opencode, stored and
restored byte-exactly, digested field by field (expectations read off the files by hand);
files rewritten whole as new versions; a child session linked to its parent."""

from __future__ import annotations

import filecmp
import json
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from session_memory import config, formats
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import FIXTURES, write_config
from tests.formats.conftest import digest

ROOT = FIXTURES / "opencode" / "storage"
EDITED = "opencode:ses_53993b312ffeefelTsBlbUVXV8"  # the second run, in build mode
PLANNED = "opencode:ses_539950424ffev4SAECXTZKSubM"  # the first run, plan mode, an API error
DIR = "/Users/jpresley/workspace/mordant-software/claude-instructions"
PROMPT = ("Update README.md with a section called Comamnds. In that section put an "
          "explanation of `/story` develop user stories for a prd.md document")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def storage(home: Path, tmp_path: Path) -> Path:
    """A copy of the fixture tree: restore writes into it."""
    root = tmp_path / "opencode" / "storage"
    shutil.copytree(ROOT, root)
    write_config(home, f'[sources.opencode]\nroot = "{root}"\n')
    return root


@pytest.fixture
def opencode(storage: Path) -> Iterator[Memory]:
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        assert memory.ingest().errors == 0
        memory.analyze(include_active=True)
        yield memory


def test_sessions_are_their_files_across_the_three_folders(opencode: Memory) -> None:
    files = {s["id"]: s["files"] for s in opencode.sessions(source="opencode")}
    assert sorted(files) == sorted([EDITED, PLANNED])
    edited = files[EDITED]
    assert len(edited) == 1 + 8 + 22 + 1  # session, messages, parts, session_diff
    assert "session/98f0326ae5594d769602840258229a7888e46ff5/ses_53993b312ffeefelTsBlbUVXV8.json" \
        in edited
    assert "part/msg_ac66cc747002NIrz9VJhyVvXnk/prt_ac66cdb73001ai9GN5as49Fg78.json" in edited
    assert len(files[PLANNED]) == 1 + 5 + 10 + 1
    # project/ and migration belong to no session: nothing to store for them.
    assert not any(f.startswith("project/") for fs in files.values() for f in fs)


def test_export_and_restore_put_the_whole_tree_back(opencode: Memory, storage: Path,
                                                    tmp_path: Path) -> None:
    opencode.seal()
    for sid in (EDITED, PLANNED):
        opencode.export(sid, tmp_path / "out")
    want = _files(ROOT) - {"migration", "project/98f0326ae5594d769602840258229a7888e46ff5.json"}
    assert _files(tmp_path / "out") == want
    for rel in want:
        assert filecmp.cmp(tmp_path / "out" / rel, ROOT / rel, shallow=False), rel
    # Lose the session's tree, then restore it where OpenCode keeps it.
    mine = {s["id"]: s["files"] for s in opencode.sessions(source="opencode")}[EDITED]
    for rel in mine:
        (storage / rel).unlink()
    restored = opencode.restore(EDITED)
    assert sorted(str(p.relative_to(storage)) for p in restored) == sorted(mine)
    for rel in mine:
        assert filecmp.cmp(storage / rel, ROOT / rel, shallow=False), rel


def test_edited_session(opencode: Memory) -> None:
    d = digest(opencode, EDITED)
    assert d["title"] == "Adding /story command to README"
    assert d["first_prompt"] == PROMPT
    assert d["user_turns"] == 3
    assert d["prompts"] == [PROMPT, PROMPT, "quit"]
    assert d["cwd"] == DIR
    assert d["models"] == ["claude-sonnet-4-5-20250929"]
    assert d["started_at"] == "2025-11-27T17:46:17.709Z"  # session time.created
    assert d["ended_at"] == "2025-11-27T17:47:57.001Z"  # session time.updated
    assert d["duration_s"] == 99.292
    assert d["tool_calls"] == {"read": 2, "edit": 1}
    assert d["files_edited"] == [f"{DIR}/README.md"]  # the edit call and its patch part
    assert d["files_read"] == [f"{DIR}/README.md", f"{DIR}/commands/story.md"]
    assert d["commands"] == [] and d["tool_errors"] == 0 and d["errors"] == []
    # Each assistant message's tokens, as OpenCode recorded them (the step-finish parts
    # repeat them and are not added again): input 2+6+2+6+2, output 164+289+293+47+19,
    # cache write 121+1270+12330+315+462, cache read 9921+10042+0+12330+12238.
    assert d["tokens"] == {"input": 18, "output": 812, "cache_creation": 14498,
                           "cache_read": 44531, "reasoning": 0}
    assert d["last_assistant_message"] == ("Goodbye! Feel free to return anytime you need "
                                           "assistance with your project.")
    assert d["outcome"] == "success"
    assert d["tool_cost_usd"] == 0.0  # every message says "cost": 0 (a subscription)
    assert d["parent_session"] is None and d["malformed_lines"] == 0


def test_planned_session_with_an_api_error(opencode: Memory) -> None:
    d = digest(opencode, PLANNED)
    assert d["title"] == "Adding /story command to README"
    assert d["user_turns"] == 2 and d["prompts"] == [PROMPT, PROMPT]
    assert d["models"] == ["claude-opus-4-5", "claude-sonnet-4-5-20250929"]
    assert [(e["tool"], e["snippet"]) for e in d["errors"]] == [
        ("api_error", "Extra usage must be enabled to use Opus. Visit "
                      "https://claude.ai/settings/usage to enable it.")]
    assert d["tool_calls"] == {"read": 2} and d["files_edited"] == []
    assert d["tokens_by_model"] == {"claude-sonnet-4-5-20250929": {
        "input": 8, "output": 566, "cache_creation": 11345, "cache_read": 10075,
        "reasoning": 0}}  # the failed Opus request spent nothing
    assert d["last_assistant_message"].startswith("I can see that you're in READ-ONLY mode")
    assert (d["started_at"], d["ended_at"]) == ("2025-11-27T17:44:51.419Z",
                                                "2025-11-27T17:46:06.583Z")


def _json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def test_rewrites_are_new_versions_and_a_child_session_links_its_parent(
        home: Path, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    write_config(home, f'[sources.opencode]\nroot = "{root}"\n')
    parent, child = "ses_parent", "ses_child"
    _json(root / "session" / "p1" / f"{parent}.json",
          {"id": parent, "title": "New session", "directory": "/w", "time": {"created": 0}})
    _json(root / "session" / "p1" / f"{child}.json",
          {"id": child, "parentID": parent, "title": "Find the parser (@explore subagent)",
           "directory": "/w", "time": {"created": 1000, "updated": 2000}})
    _json(root / "message" / parent / "msg_1.json",
          {"id": "msg_1", "sessionID": parent, "role": "user", "time": {"created": 1}})
    _json(root / "part" / "msg_1" / "prt_1.json",
          {"id": "prt_1", "sessionID": parent, "messageID": "msg_1", "type": "text",
           "text": "where is the parser?"})
    _json(root / "message" / parent / "msg_2.json",
          {"id": "msg_2", "sessionID": parent, "role": "assistant", "modelID": "m",
           "cost": 0.0123, "time": {"created": 2},
           "tokens": {"input": 1, "output": 2, "reasoning": 0, "cache": {"read": 0, "write": 0}}})
    _json(root / "part" / "msg_2" / "prt_2.json",
          {"id": "prt_2", "sessionID": parent, "messageID": "msg_2", "type": "tool",
           "tool": "task", "callID": "call_1",
           "state": {"status": "completed", "input": {"subagent_type": "explore",
                                                      "description": "Find the parser"},
                     "metadata": {"sessionId": child}}})
    _json(root / "message" / child / "msg_3.json",
          {"id": "msg_3", "sessionID": child, "role": "user", "time": {"created": 1000}})
    _json(root / "part" / "msg_3" / "prt_3.json",
          {"id": "prt_3", "sessionID": child, "messageID": "msg_3", "type": "text",
           "text": "Find the parser module"})
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        memory.ingest()
        # OpenCode rewrites the session file as the title comes in: a new version of it.
        _json(root / "session" / "p1" / f"{parent}.json",
              {"id": parent, "title": "Where the parser lives", "directory": "/w",
               "time": {"created": 0, "updated": 5000}})
        assert memory.ingest().new_versions == 1
        stored = [f for f in memory.tier1.files(f"opencode:{parent}")
                  if f.path.startswith("session/")]
        assert [f.version for f in stored] == [2]  # the older version is gone
        memory.export(f"opencode:{parent}", tmp_path / "out")
        assert (tmp_path / "out" / "session" / "p1" / f"{parent}.json").read_bytes() == (
            root / "session" / "p1" / f"{parent}.json").read_bytes()
        memory.analyze(include_active=True)
        mine, theirs = (memory.show(f"opencode:{s}")["digest"] for s in (parent, child))
    assert mine["title"] == "Where the parser lives"
    assert mine["subagents"] == [{"id": child, "type": "explore",
                                  "description": "Find the parser",
                                  "session_id": f"opencode:{child}"}]
    assert mine["tokens"]["output"] == 2 and mine["user_turns"] == 1
    assert mine["tool_cost_usd"] == 0.0123 and theirs["tool_cost_usd"] is None
    assert theirs["parent_session"] == f"opencode:{parent}"
    assert theirs["user_turns"] == 0  # its prompt was written by the parent's agent
    assert theirs["title"] == "Find the parser (@explore subagent)"


def test_transcript_pages_through_messages_calls_and_results(opencode: Memory) -> None:
    page = opencode.transcript(EDITED, 0, 200)
    turns = [(m["role"], m["text"][:40]) for m in page["messages"]]
    assert turns[0] == ("user", PROMPT[:40])
    assert [t for t in turns if t[0] == "user"] == [("user", PROMPT[:40])] * 2 + [("user", "quit")]
    calls = [m for m in page["messages"] if m["role"] == "tool_call"]
    assert [c["tool"] for c in calls] == ["read", "read", "edit"]
    results = [m for m in page["messages"] if m["role"] == "tool_result"]
    assert results[0]["text"].startswith("<file>\n00001| # claude-instructions")
    assert page["messages"][-1]["text"].startswith("Goodbye!")


def test_which_files_belong_to_which_session() -> None:
    identify = formats.get("opencode").identify
    part_head = b'{\n  "id": "prt_1",\n  "sessionID": "ses_a",\n  "messageID": "msg_1"'
    cases = {
        "session/proj/ses_a.json": "ses_a",
        "message/ses_a/msg_1.json": "ses_a",
        "part/msg_1/prt_1.json": "ses_a",  # named by the part itself
        "part/ses_a/msg_1/prt_1.json": "ses_a",  # older releases' layout
        "session_diff/ses_a.json": "ses_a",
        "project/proj.json": None,
        "migration": None,
        "session/proj/ses_a.json.tmp": None,
    }
    for path, native in cases.items():
        role = identify(PurePosixPath(path), lambda: part_head)
        assert (role.native_id if role else None) == native, path
        assert role is None or role.snapshot, path  # every file is rewritten whole
    assert identify(PurePosixPath("part/msg_1/prt_1.json"), lambda: b"{}") is None


def test_parts_without_their_message_file_still_count(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    write_config(home, f'[sources.opencode]\nroot = "{root}"\n')
    _json(root / "session" / "p1" / "ses_o.json", {"id": "ses_o", "title": "Orphans"})
    _json(root / "part" / "msg_gone" / "prt_1.json",
          {"id": "prt_1", "sessionID": "ses_o", "messageID": "msg_gone", "type": "tool",
           "tool": "bash", "callID": "c1",
           "state": {"status": "error", "input": {"command": "make"}, "error": "exit 2"}})
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        memory.ingest()
        memory.analyze()
        d = memory.show("opencode:ses_o")["digest"]
    assert d["tool_calls"] == {"bash": 1} and d["commands"] == ["make"]
    assert d["tool_errors"] == 1 and d["errors"][0]["snippet"] == "exit 2"


def test_check_says_a_linked_database_is_not_read(home: Path, tmp_path: Path) -> None:
    """Newer OpenCode keeps sessions in opencode.db beside storage/ (which may not even
    exist then), another release channel in opencode-<channel>.db: both are read
    (test_opencode_db.py), but not through a link, and `check` says so, rather than
    nothing."""
    data = tmp_path / "share" / "opencode"
    data.mkdir(parents=True)
    write_config(home, f'[sources.opencode]\nroot = "{data / "storage"}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        assert not any("opencode" in w for w in memory.check_warnings())
        (data / "opencode.db").write_bytes(b"SQLite format 3\0")
        (data / "opencode-dev.db").write_bytes(b"SQLite format 3\0")
        (data / "opencode.db-wal").write_bytes(b"")
        (data / "opencode-local.db").symlink_to(data / "opencode-dev.db")
        assert [w for w in memory.check_warnings() if "opencode" in w] == [
            f"{data / 'opencode-local.db'}: OpenCode's session database is a link, "
            "not followed: not read"]
