"""The common event model every format parser produces, and the stream helpers they share.

A parser turns a session's stored pieces into a flat stream of these small events; the
digest builder folds the stream. Events carry only what a digest needs, never whole
records, so memory stays flat however large the session is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec


@dataclass(frozen=True, slots=True)
class Piece:
    """One stored file (or an Aider run's slice of one) of a session."""

    path: str
    """Relative to the source root."""
    chunks: Callable[[], Iterable[bytes]]
    """Opens the decompressed content afresh, chunk by chunk (a parser may read twice)."""


@dataclass(slots=True)
class Info:
    """Session facts; a field left None says nothing. `title` from the tool beats a prompt."""

    cwd: str | None = None
    git_branch: str | None = None
    title: str | None = None
    project: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    subagent_session: bool = False
    """This whole session is one agent's subagent: its prompts were written by an agent."""


@dataclass(slots=True)
class Times:
    """The first and last record timestamps (ISO 8601) seen in one piece."""

    first: str | None
    last: str | None


@dataclass(slots=True)
class Prompt:
    """Text a person wrote to the agent (injected and tag-wrapped text never gets here)."""

    text: str
    fallback: bool = False
    """Codex: a user response item, used only when the rollout has no user_message events."""


@dataclass(slots=True)
class Model:
    name: str


@dataclass(slots=True)
class ToolCall:
    call_id: str | None
    name: str
    command: str | None = None
    edited: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    sidechain: bool = False


@dataclass(slots=True)
class ToolResult:
    call_id: str | None
    is_error: bool
    text: str = ""
    """Only kept for errors."""
    tool: str | None = None
    """When the result names its tool itself; else the builder looks the call id up."""
    sidechain: bool = False


@dataclass(slots=True)
class Usage:
    """Token counts. A `key` seen again replaces the earlier counts (last copy wins);
    a None key adds (Aider's per-reply lines)."""

    key: str | None
    model: str | None
    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0
    reasoning: int = 0


@dataclass(slots=True)
class Files:
    """Files named outside any tool call (Aider's edit blocks and chat file list)."""

    edited: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)


@dataclass(slots=True)
class AssistantText:
    text: str
    sidechain: bool = False


@dataclass(slots=True)
class Failure:
    """The agent itself failed (an API error record, an aborted turn, an interrupt)."""

    kind: str
    text: str = ""
    sidechain: bool = False


@dataclass(slots=True)
class Subagent:
    agent_id: str
    agent_type: str | None = None
    description: str | None = None


@dataclass(slots=True)
class Malformed:
    lines: int


Event = (Info | Times | Prompt | Model | ToolCall | ToolResult | Usage | Files | AssistantText
         | Failure | Subagent | Malformed)


# -- stream helpers shared by the parsers ------------------------------------------------


def lines(chunks: Iterable[bytes]) -> Iterator[bytes | memoryview]:
    """Lines (without their newline) across chunk boundaries, holding only the unfinished
    line between chunks. Lines are memoryviews into the chunk where possible: no copies."""
    tail = b""
    for chunk in chunks:
        start = 0
        if tail:
            nl = chunk.find(b"\n")
            if nl < 0:
                tail += chunk
                continue
            yield tail + chunk[:nl]
            tail, start = b"", nl + 1
        view = memoryview(chunk)
        find = chunk.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            yield view[start:nl]
            start = nl + 1
        if start < len(chunk):
            tail = chunk[start:]
    if tail:
        yield tail


Scalar = str | int | float | bool | None
"""A JSON value that is neither an object nor an array. Typed records declare each nested
object as `Shape | Scalar | list[Any]`, so any valid JSON decodes: a field of an
unexpected type reads as that value (which parsers check), never as an error."""

JSON_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What decoding text that is not valid JSON (or nested past all reason) raises."""

json_value: Callable[[bytes | memoryview | str], Any] = msgspec.json.Decoder().decode

R = TypeVar("R")


class Records(Generic[R]):
    """JSON objects, one a line, decoded as `shape` (a msgspec Struct declaring only the
    fields a parser reads, so the rest is skipped unbuilt; `dict` for all of it). Blank
    lines are skipped; lines that are not JSON objects are counted in `malformed`."""

    def __init__(self, chunks: Iterable[bytes], shape: type[R]) -> None:
        self.chunks = chunks
        self.shape = shape
        self.malformed = 0
        self.line_no = 0

    def __iter__(self) -> Iterator[R]:
        decode, shape = _decoder(self.shape), self.shape
        for line in lines(self.chunks):
            self.line_no += 1
            try:
                record = decode(line)
            except JSON_ERRORS:
                if bytes(line).strip():
                    self.malformed += 1
                continue
            if isinstance(record, shape):
                yield record
            else:
                self.malformed += 1


_DECODERS: dict[type[Any], Callable[[bytes | memoryview], Any]] = {dict: json_value}


def _decoder(shape: type[Any]) -> Callable[[bytes | memoryview], Any]:
    decode = _DECODERS.get(shape)
    if decode is None:
        decode = _DECODERS[shape] = msgspec.json.Decoder(shape | Scalar | list[Any]).decode
    return decode


def text_of(content: Any) -> str:
    """The text of a message body: a string, or a list of parts holding `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_int(value: Any) -> int:
    """An integer count, or 0 for anything else (a bool, a float, one past SQLite's range)."""
    return value if type(value) is int and -_INT64 <= value < _INT64 else 0


_INT64 = 2**63


_TAG_WRAPPED = re.compile(r"\s*<([A-Za-z][\w:.-]*)(\s[^<>]*)?/?>")
_INJECTED_PREFIXES = ("# AGENTS.md instructions", "Caveat: The messages below were generated")
_EMBEDDED_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>\s*", re.DOTALL)


def human_text(text: str) -> str | None:
    """The prompt in a user message, or None when the text is not a person's prompt:
    anything tag-wrapped (slash commands, bash input, reminders, environment context)
    or a known injection such as AGENTS.md. Reminders embedded after real text are cut."""
    if not text.strip() or _TAG_WRAPPED.match(text) or text.lstrip().startswith(
            _INJECTED_PREFIXES):
        return None
    if "<system-reminder>" in text:
        text = _EMBEDDED_REMINDER.sub("", text)
    return text.strip() or None
