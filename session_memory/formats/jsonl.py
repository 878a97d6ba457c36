"""Any other tool writing JSONL: one file is one session, named by its path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from session_memory.formats.base import WHOLE_ROOT, FileRole, Head, Turn, no_hook
from session_memory.formats.events import (
    Piece,
    Records,
    Sink,
    as_int,
    human_text,
    str_or_none,
    text_of,
)

NAME = "jsonl"
WATCH = WHOLE_ROOT
RECORD_TIMES = True
PARSER_VERSION = 1  # bump when parse() reads a session differently (base.py)
hook_target = no_hook


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    if not relpath.name.endswith(".jsonl"):
        return None
    return FileRole(str(relpath), str(relpath))


def default_root() -> Path | None:
    return None  # any tool: the config names its root


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


# -- analysis: stored pieces to events -------------------------------------------------
# A generic reader: the commonest field names of chat logs, nothing tool-specific.

_TIME_KEYS = ("timestamp", "ts", "time", "created_at")


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    for piece in pieces:
        _log(piece, out)


def _read(r: dict[str, Any]) -> tuple[str | None, dict[str, Any], Any, str]:
    """A record's time, its message (the record itself where it nests none), role and
    text."""
    ts = next((r[k] for k in _TIME_KEYS if isinstance(r.get(k), str)), None)
    message: dict[str, Any] = r["message"] if isinstance(r.get("message"), dict) else r
    role = message.get("role") or r.get("type")
    return ts, message, role, text_of(message.get("content", message.get("text")))


def _log(piece: Piece, out: Sink) -> None:
    records = Records(piece.chunks(), dict)
    first = last = None
    for r in records:
        ts, message, role, text = _read(r)
        if ts:
            first = first or ts
            last = ts
        model = str_or_none(message.get("model"))
        if model:
            out.model(model)
        if role == "user" and (prompt := human_text(text)):
            out.prompt(prompt)
        elif role == "assistant" and text:
            out.assistant_text(text)
        usage = message.get("usage", r.get("usage"))
        if isinstance(usage, dict):
            counts = (as_int(usage.get("input_tokens", usage.get("prompt_tokens"))),
                      as_int(usage.get("output_tokens", usage.get("completion_tokens"))),
                      as_int(usage.get("cache_creation_input_tokens")),
                      as_int(usage.get("cache_read_input_tokens")))
            out.usage(str_or_none(message.get("id")), model, *counts)
            out.spend(ts, None, model, *counts)
    out.times(first, last)
    if records.malformed:
        out.malformed(records.malformed)


def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """Records with a user or assistant role and some text, in order."""
    for piece in pieces:
        for r in Records(piece.chunks(), dict):
            ts, _, role, text = _read(r)
            if role == "user" and (prompt := human_text(text)):
                yield Turn("user", prompt, ts)
            elif role == "assistant" and text:
                yield Turn("assistant", text, ts)
