"""Codex CLI: ${CODEX_HOME:-~/.codex}/sessions/YYYY/MM/DD/rollout-*.jsonl (and .jsonl.zst)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from session_memory.formats.base import FileRole, Head, first_match

NAME = "codex"
_ROLLOUT = re.compile(r"rollout-.*\.jsonl(\.zst)?")
_ANY_JSONL = re.compile(r".*\.jsonl(\.zst)?")
_SESSION_DIRS = {"sessions", "archived_sessions"}
_UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl")
# session_meta's payload id; legacy rollouts start with a bare {"id": …}.
_META_ID = rb'^\{[^\n]*?"type"\s*:\s*"session_meta"[^\n]*?"payload"\s*:\s*\{\s*"id"\s*:\s*"([^"]+)"'
_LEGACY_ID = rb'^\{\s*"id"\s*:\s*"([^"]+)"'


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    m = _ROLLOUT.fullmatch(relpath.name)
    if not m and relpath.parts[0] in _SESSION_DIRS:
        m = _ANY_JSONL.fullmatch(relpath.name)
    if not m:
        return None
    compressed = m.group(1) is not None
    logical = str(relpath)[: -len(".zst")] if compressed else str(relpath)
    native = first_match(_META_ID, head) or first_match(_LEGACY_ID, head)
    if native is None:
        by_name = _UUID.search(relpath.name)
        native = by_name.group(1) if by_name else logical
    return FileRole(native, logical, compressed=compressed)


def prune(dir_relpath: PurePosixPath) -> bool:
    # ~/.codex also holds logs, caches and sqlite state: only rollouts matter.
    return len(dir_relpath.parts) == 1 and dir_relpath.parts[0] in {"log", "cache", "tmp", ".tmp"}
