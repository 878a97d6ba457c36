"""Any other tool writing JSONL: one file is one session, named by its path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

from session_memory.analyze.events import (
    AssistantText,
    Event,
    Malformed,
    Model,
    Piece,
    Prompt,
    Records,
    Times,
    Usage,
    as_int,
    human_text,
    str_or_none,
    text_of,
)
from session_memory.formats.base import FileRole, Head

NAME = "jsonl"


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    if not relpath.name.endswith(".jsonl"):
        return None
    return FileRole(str(relpath), str(relpath))


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


# -- analysis: stored pieces to events -------------------------------------------------
# A generic reader: the commonest field names of chat logs, nothing tool-specific.

_TIME_KEYS = ("timestamp", "ts", "time", "created_at")


def parse(pieces: Sequence[Piece]) -> Iterator[Event]:
    for piece in pieces:
        yield from _log(piece)


def _log(piece: Piece) -> Iterator[Event]:
    records = Records(piece.chunks(), dict)
    first = last = None
    for r in records:
        ts = next((r[k] for k in _TIME_KEYS if isinstance(r.get(k), str)), None)
        if ts:
            first = first or ts
            last = ts
        message: dict[str, Any] = r["message"] if isinstance(r.get("message"), dict) else r
        role = message.get("role") or r.get("type")
        text = text_of(message.get("content", message.get("text")))
        model = str_or_none(message.get("model"))
        if model:
            yield Model(model)
        if role == "user" and (prompt := human_text(text)):
            yield Prompt(prompt)
        elif role == "assistant" and text:
            yield AssistantText(text)
        usage = message.get("usage", r.get("usage"))
        if isinstance(usage, dict):
            yield Usage(str_or_none(message.get("id")), model,
                        as_int(usage.get("input_tokens", usage.get("prompt_tokens"))),
                        as_int(usage.get("output_tokens", usage.get("completion_tokens"))),
                        as_int(usage.get("cache_creation_input_tokens")),
                        as_int(usage.get("cache_read_input_tokens")))
    yield Times(first, last)
    if records.malformed:
        yield Malformed(records.malformed)
