"""`restore`: each tool's files go back where the tool keeps them, byte-identical, private,
never through a link planted in the way, never over other content unless forced."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import zstandard

from session_memory.errors import SessionMemoryError, UnsafePathError
from session_memory.memory import Memory
from session_memory.safe_write import TargetExistsError

CODEX_ID = "11111111-1111-4111-8111-111111111111"
CODEX_NAME = f"rollout-2026-01-02T03-04-05-{CODEX_ID}.jsonl"
CODEX_BODY = (b'{"timestamp":"2026-01-02T03:04:05Z","type":"session_meta","payload":'
              b'{"id":"' + CODEX_ID.encode() + b'","cwd":"/w"}}\n'
              b'{"type":"event_msg","payload":{"type":"x"}}\n')


def _codex_zst(sources: dict[str, Path]) -> Path:
    """A rollout Codex has archived: only the .jsonl.zst is there."""
    day = sources["codex"] / "sessions" / "2026" / "01" / "02"
    day.mkdir(parents=True)
    packed = day / (CODEX_NAME + ".zst")
    packed.write_bytes(zstandard.ZstdCompressor().compress(CODEX_BODY))
    return packed


def test_codex_zst_restores_as_its_text_and_is_left_alone_when_there(
        memory: Memory, sources: dict[str, Path]) -> None:
    packed = _codex_zst(sources)
    memory.ingest()
    sid = f"codex:{CODEX_ID}"
    # The archive is still there with the stored bytes inside: nothing to restore (not a
    # second, plain copy beside it).
    assert memory.restore(sid) == []
    assert sorted(p.name for p in packed.parent.iterdir()) == [packed.name]
    # Gone: the session comes back as the text Codex wrote, byte for byte.
    packed.unlink()
    [written] = memory.restore(sid)
    assert written == packed.parent / CODEX_NAME
    assert written.read_bytes() == CODEX_BODY
    assert memory.ingest().bytes_added == 0  # ingest knows it for what it stored


def test_gemini_cli_session_and_its_subagent_restore(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    chats = sources["gemini-cli"] / "abc123" / "chats"
    (chats / "gem-1").mkdir(parents=True)
    main = chats / "session-2026-01-01T10-00-gem1.jsonl"
    main.write_text(json.dumps({"sessionId": "gem-1", "projectHash": "abc123",
                                "startTime": "2026-01-01T10:00:00Z"}) + "\n"
                    + json.dumps({"id": "m1", "type": "user", "content": "hi"}) + "\n")
    sub = chats / "gem-1" / "agent-1.jsonl"
    sub.write_text(json.dumps({"id": "s1", "type": "user", "content": "look"}) + "\n")
    memory.ingest()
    want = {p: p.read_bytes() for p in (main, sub)}
    for p in want:
        p.unlink()
    written = memory.restore("gemini-cli:gem-1")
    assert sorted(written) == sorted(want)
    assert {p: p.read_bytes() for p in want} == want


def test_restored_files_are_private_and_forced_ones_keep_their_mode(
        memory: Memory, sources: dict[str, Path]) -> None:
    root = sources["mytool"]
    (root / "team" / "a").mkdir(parents=True)
    f = root / "team" / "a" / "s.jsonl"
    f.write_bytes(b'{"a": 1}\n')
    memory.ingest()
    f.unlink()
    (root / "team" / "a").rmdir()
    (root / "team").rmdir()
    [written] = memory.restore("mytool:team/a/s.jsonl")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "team").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "team" / "a").stat().st_mode) == 0o700
    # A file of the user's, changed and group-readable: forced back, its mode kept.
    f.write_bytes(b"changed\n")
    f.chmod(0o640)
    with pytest.raises(TargetExistsError):
        memory.restore("mytool:team/a/s.jsonl")
    assert f.read_bytes() == b"changed\n"
    memory.restore("mytool:team/a/s.jsonl", force=True)
    assert f.read_bytes() == b'{"a": 1}\n'
    assert stat.S_IMODE(f.stat().st_mode) == 0o640


def test_a_symlink_planted_at_the_target_is_replaced_never_followed(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    root = sources["mytool"]
    f = root / "s.jsonl"
    f.write_bytes(b'{"a": 1}\n')
    memory.ingest()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious\n")
    f.unlink()
    f.symlink_to(outside)
    with pytest.raises(TargetExistsError):
        memory.restore("mytool:s.jsonl")
    memory.restore("mytool:s.jsonl", force=True)
    assert not f.is_symlink() and f.read_bytes() == b'{"a": 1}\n'
    assert outside.read_bytes() == b"precious\n"


def test_a_symlinked_folder_planted_in_the_target_is_refused(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    root = sources["mytool"]
    (root / "proj").mkdir()
    (root / "proj" / "s.jsonl").write_bytes(b'{"a": 1}\n')
    memory.ingest()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "proj" / "s.jsonl").unlink()
    (root / "proj").rmdir()
    (root / "proj").symlink_to(elsewhere, target_is_directory=True)
    for force in (False, True):
        with pytest.raises((UnsafePathError, SessionMemoryError)):
            memory.restore("mytool:proj/s.jsonl", force=force)
    assert list(elsewhere.iterdir()) == []


def test_an_evicted_session_cannot_be_restored(memory: Memory,
                                               sources: dict[str, Path]) -> None:
    (sources["mytool"] / "s.jsonl").write_bytes(b'{"a": 1}\n')
    memory.ingest()
    with memory.tier1.transaction("evict"):
        memory.tier1.evict("mytool:s.jsonl", memory.clock.now())
    with pytest.raises(SessionMemoryError, match="evicted"):
        memory.restore("mytool:s.jsonl")
    assert os.path.exists(sources["mytool"] / "s.jsonl")
