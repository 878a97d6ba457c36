"""Agent end-of-session hooks: store the session now and mark it ended, so it is analyzed
at once instead of after idle_seconds. Each format says what its tool's hook payload names
(formats/base.py `hook_target`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from session_memory import formats, log
from session_memory.errors import SessionMemoryError
from session_memory.memory import Memory

logger = log.get("session_memory.hook")


def session_end(memory: Memory, payload: dict[str, Any]) -> dict[str, Any]:
    """Ingest the files the payload names, mark the session ended, analyze it if the
    analyzer is there. Raises SessionMemoryError for a payload no format can use."""
    native = payload.get("session_id")
    if not isinstance(native, str) or not native:
        raise SessionMemoryError("hook payload has no session_id")
    candidates: list[str] = []
    paths: list[Path] = []
    for source in memory.settings.enabled_sources:
        target = formats.get(source.format).hook_target(payload)
        if target is not None:
            candidates.append(f"{source.name}:{target.native_id}")
            paths += [p for p in dict.fromkeys(target.paths) if p not in paths]
    summary = memory.ingest(paths) if paths else None
    ids = [sid for sid in candidates if memory.tier1.session_state(sid) is not None]
    for sid in ids:
        memory.tier1.mark_ended(sid)
    analyzed: list[str] = []
    analyze = getattr(memory, "analyze", None)
    if analyze is not None and ids:
        analyzed = list(analyze(ids) or [])
    if not ids:
        logger.warning("hook: no stored session matches", session_id=native,
                       transcript=payload.get("transcript_path"))
    return {"session_ids": ids, "ingested": summary.as_dict() if summary else None,
            "analyzed": analyzed}
