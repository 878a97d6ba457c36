"""Agent end-of-session hooks: store the session now and mark it ended, so it is analyzed
at once instead of after idle_seconds. Claude Code's SessionEnd sends
`{"session_id", "transcript_path", "cwd", "reason", …}` on stdin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from session_memory import log
from session_memory.errors import SessionMemoryError
from session_memory.formats import claude_code
from session_memory.memory import Memory

logger = log.get("session_memory.hook")


def session_end(memory: Memory, payload: dict[str, Any]) -> dict[str, Any]:
    """Ingest the transcript (and its subagent folder), mark the session ended, analyze it
    if the analyzer is there. Raises SessionMemoryError for a payload it cannot use."""
    native = payload.get("session_id")
    transcript = payload.get("transcript_path")
    if not isinstance(native, str) or not native:
        raise SessionMemoryError("hook payload has no session_id")
    paths: list[Path] = []
    if isinstance(transcript, str) and transcript:
        path = Path(os.path.expanduser(transcript))
        # Subagent transcripts and tool results live in <session>/ beside <session>.jsonl.
        paths = [p for p in (path, path.with_suffix("")) if p.exists()]
    summary = memory.ingest(paths) if paths else None
    candidates = [f"{s.name}:{native}" for s in memory.settings.enabled_sources
                  if s.format == claude_code.NAME]
    ids = [sid for sid in candidates if memory.tier1.session_state(sid) is not None]
    for sid in ids:
        memory.tier1.mark_ended(sid)
    analyzed: list[str] = []
    analyze = getattr(memory, "analyze", None)
    if analyze is not None and ids:
        analyzed = list(analyze(ids) or [])
    if not ids:
        logger.warning("hook: no stored session matches", session_id=native,
                       transcript=transcript)
    return {"session_ids": ids, "ingested": summary.as_dict() if summary else None,
            "analyzed": analyzed}
