"""Claude Code: ~/.claude/projects/<encoded-cwd>/<sessionId>.jsonl and <sessionId>/…"""

from __future__ import annotations

from pathlib import PurePosixPath

from session_memory.formats.base import FileRole, Head, first_match

NAME = "claude-code"
# Older versions wrote subagents flat beside sessions; their lines carry the parent's id.
_SESSION_ID = rb'"sessionId"\s*:\s*"([^"]+)"'


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    parts = relpath.parts
    if len(parts) < 2:
        return None
    if len(parts) == 2:
        name = parts[1]
        if not name.endswith(".jsonl"):
            return None
        stem = name[: -len(".jsonl")]
        if stem.startswith("agent-"):
            return FileRole(first_match(_SESSION_ID, head) or stem, str(relpath))
        return FileRole(stem, str(relpath))
    # Everything under <project>/<sessionId>/ belongs to that session.
    return FileRole(parts[1], str(relpath))


def prune(dir_relpath: PurePosixPath) -> bool:
    return False
