"""Aider: .aider.chat.history.md in each repository; each run is its own session."""

from __future__ import annotations

from pathlib import PurePosixPath

from session_memory.formats.base import FileRole, Head, is_hidden

NAME = "aider"
HISTORY = ".aider.chat.history.md"
RUN_MARKER = b"# aider chat started at"
# The root is usually a folder of repositories (or ~): don't wander into build trees.
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", "target", "dist", "build", "site-packages"}
MAX_DEPTH = 5


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    if relpath.name != HISTORY:
        return None
    repo = relpath.parent.name or "."
    return FileRole(repo, str(relpath), run_marker=RUN_MARKER)


def prune(dir_relpath: PurePosixPath) -> bool:
    return (
        len(dir_relpath.parts) > MAX_DEPTH
        or is_hidden(dir_relpath)
        or dir_relpath.name in _SKIP_DIRS
    )
