"""Writing a session into a source root, ingesting it and reading back its digest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from session_memory.memory import Memory

OLD_MTIME = 1_700_000_000  # long before the test clock: the session has ended


def jsonl(*records: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def write(root: Path, relpath: str, text: str | bytes) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    os.utime(path, (OLD_MTIME, OLD_MTIME))
    return path


def digest_of(memory: Memory, session_id: str) -> dict[str, Any]:
    """Ingest what the roots hold, analyze one session and return its stored digest."""
    memory.ingest()
    assert memory.analyze([session_id], force=True) == [session_id]
    digest = memory.tier2.get_digest(session_id)
    assert digest is not None
    return digest


def analyzed(memory: Memory, session_id: str) -> dict[str, Any]:
    """Analyze one already ingested session and return its stored digest."""
    assert memory.analyze([session_id]) == [session_id]
    digest = memory.tier2.get_digest(session_id)
    assert digest is not None
    return digest
