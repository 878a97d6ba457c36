"""Any other tool writing JSONL: one file is one session, named by its path."""

from __future__ import annotations

from pathlib import PurePosixPath

from session_memory.formats.base import FileRole, Head

NAME = "jsonl"


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    if not relpath.name.endswith(".jsonl"):
        return None
    return FileRole(str(relpath), str(relpath))


def prune(dir_relpath: PurePosixPath) -> bool:
    return False
