"""A session's transcript as a reader pages through it: turns from its format's reader,
redacted as digests are, long text shortened with a note of how much was cut."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from session_memory.analyze.redact import redact
from session_memory.formats.base import Turn

TOOL_CHARS = 2_000
"""Tool output (and arguments) beyond this is summarised: its head and tail are kept."""
TEXT_CHARS = 12_000
"""What a person or the agent wrote beyond this (a pasted log) is shortened the same way."""
MAX_LIMIT = 200


def shorten(text: str, most: int) -> str:
    """`text`, or its head and tail with a note of how many characters were cut."""
    if len(text) <= most:
        return text
    tail = most // 5
    head = most - tail
    cut = len(text) - head - tail
    return (f"{text[:head]}\n[… {cut:,} of {len(text):,} characters cut …]\n"
            f"{text[len(text) - tail:]}")


def message(turn: Turn) -> dict[str, Any]:
    """A turn as the reader sees it. Redacted whole before it is shortened, so a cut never
    leaves half a secret that no pattern would recognise."""
    text = shorten(redact(turn.text), TEXT_CHARS if turn.role in ("user", "assistant")
                   else TOOL_CHARS)
    out: dict[str, Any] = {"role": turn.role, "text": text, "timestamp": turn.timestamp}
    if turn.tool:
        out["tool"] = redact(turn.tool)
    if turn.subagent:
        out["subagent"] = True
    return out


def page(turns: Iterable[Turn], offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Turns [offset, offset + limit) as messages, and whether more follow. Stops reading
    one turn past the page: a page near the start of a long session is cheap."""
    if offset < 0 or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"offset must be 0 or more and limit 1 to {MAX_LIMIT}")
    out: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if i < offset:
            continue
        if len(out) == limit:
            return out, True
        out.append(message(turn))
    return out, False
