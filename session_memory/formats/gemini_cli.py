"""Gemini CLI: ~/.gemini/tmp/<project hash>/chats/session-*.jsonl (older: whole-file .json)."""

from __future__ import annotations

from pathlib import PurePosixPath

from session_memory.formats.base import FileRole, Head, first_match

NAME = "gemini-cli"
_SESSION_ID = rb'"sessionId"\s*:\s*"([^"]+)"'


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    parts = relpath.parts
    if "chats" not in parts[:-1]:
        return None
    below = parts[parts.index("chats") + 1 :]
    name = relpath.name
    if len(below) >= 2:
        # Subagents live in chats/<parentSessionId>/.
        return FileRole(below[0], str(relpath)) if name.endswith(".jsonl") else None
    if name.endswith(".jsonl"):
        return FileRole(first_match(_SESSION_ID, head) or relpath.stem, str(relpath))
    if name.endswith(".json"):
        native = first_match(_SESSION_ID, head) or relpath.stem
        return FileRole(native, str(relpath), snapshot=True)
    return None


def prune(dir_relpath: PurePosixPath) -> bool:
    return False
