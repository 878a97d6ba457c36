"""The common event model every format parser reports to, and the helpers they share.

A parser reads a session's stored pieces as a stream and reports each fact a digest needs
as a call on a Sink, as it reads: nothing is collected on the way, so memory stays flat
however large the session is, and no event object is built only to be taken apart again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

import msgspec


class Piece(msgspec.Struct, frozen=True):  # not a dataclass: see store.tier1.Cursor
    """One stored file (or an Aider run's slice of one) of a session."""

    path: str
    """Relative to the source root."""
    chunks: Callable[[], Iterable[bytes]]
    """Opens the decompressed content afresh, chunk by chunk (a parser may read twice)."""
    mtime: float | None = None
    """When the file was last written, as stored (for a file made from a database row,
    the row's time of writing)."""


class Sink(Protocol):
    """What a parser reports, one call per fact, in the order it reads them. The digest
    builder is the sink that counts (analyze/digest.py)."""

    def info(self, *, cwd: str | None = None, git_branch: str | None = None,
             title: str | None = None, project: str | None = None,
             started_at: str | None = None, ended_at: str | None = None,
             subagent_session: bool = False, parent: str | None = None) -> None:
        """Session facts; None says nothing. A `title` from the tool beats a prompt.
        `subagent_session`: the whole session is one agent's subagent, so an agent, not a
        person, wrote its prompts. `parent`: the native id of the session that started
        this one, where that is a session of its own."""

    def times(self, first: str | None, last: str | None) -> None:
        """The first and last record timestamps (ISO 8601) of one piece."""

    def prompt(self, text: str, fallback: bool = False) -> None:
        """Text a person wrote to the agent (injected and tag-wrapped text never gets here).
        `fallback`: a Codex user response item, used only when the rollout has no
        user_message events."""

    def model(self, name: str) -> None:
        """A model the session used (said again whenever it may have changed)."""

    def tool_call(self, call_id: str | None, name: str, command: str | None = None,
                  edited: Sequence[str] = (), read: Sequence[str] = (),
                  sidechain: bool = False) -> None:
        """A tool the agent called; a call id seen before is a copy of the same call."""

    def tool_result(self, call_id: str | None, is_error: bool, text: str = "",
                    tool: str | None = None, sidechain: bool = False) -> None:
        """`text` is only kept for errors; `tool` when the result names its tool itself
        (else the call id says which)."""

    def usage(self, key: str | None, model: str | None, input: int = 0, output: int = 0,
              cache_creation: int = 0, cache_read: int = 0, reasoning: int = 0) -> None:
        """Token counts. A `key` seen again replaces the earlier counts (the last copy
        wins); usage without a key adds (Aider's per-reply lines)."""

    def spend(self, at: str | None, key: str | None, model: str | None, input: int = 0,
              output: int = 0, cache_creation: int = 0, cache_read: int = 0,
              reasoning: int = 0, cache_creation_1h: int = 0, sidechain: bool = False) -> None:
        """One response's tokens, at `at` (ISO 8601), for usage by the time of spend.
        Unlike `usage`: `input` never includes cache reads; `output` is every output token
        billed, reasoning included (`reasoning` says how many of them were); and
        `cache_creation_1h` is the part of `cache_creation` written for an hour. `key`
        names the response in every file of every session (Claude Code: message.id and
        requestId): a copy of it is counted once, the copy with the most tokens (from the
        main thread before a sidechain) winning, as ccusage counts it. Without a key, each
        call adds."""

    def cost(self, usd: float) -> None:
        """What the tool itself says a response cost (OpenCode writes it on each message),
        added up as the tool's own figure for the session."""

    def files(self, edited: Sequence[str] = (), read: Sequence[str] = ()) -> None:
        """Files named outside any tool call (Aider's edit blocks and chat file list)."""

    def assistant_text(self, text: str, sidechain: bool = False) -> None:
        """What the agent said."""

    def failure(self, kind: str, text: str = "", sidechain: bool = False) -> None:
        """The agent itself failed (an API error record, an aborted turn, an interrupt)."""

    def subagent(self, agent_id: str, agent_type: str | None = None,
                 description: str | None = None, session: bool = False) -> None:
        """A subagent ran within the session; `session`: as a session of its own, of this
        source, `agent_id` its id there (OpenCode's children)."""

    def malformed(self, lines: int) -> None:
        """Lines that were not the JSON (or text) the format promises."""


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
    lines are skipped; lines that are not JSON objects are counted in `malformed`.

    Lines are decoded a block at a time, about a MiB of them in one call; a block with a
    line that is not JSON is decoded again line by line, to keep the others."""

    def __init__(self, chunks: Iterable[bytes], shape: type[R]) -> None:
        self.chunks = chunks
        self.shape = shape
        self.malformed = 0

    def __iter__(self) -> Iterator[R]:
        for records in self.blocks():
            yield from records

    def blocks(self) -> Iterator[list[R]]:
        """The records a block at a time, in order: a parser that loops over each list
        itself takes a record for less than a step of a generator costs."""
        decode, decode_lines = _decoders(self.shape)
        shape = self.shape
        for block in line_blocks(self.chunks):
            try:
                decoded = decode_lines(block)
            except JSON_ERRORS:
                decoded = self._each_line(block, decode)
            records = [record for record in decoded if type(record) is shape]
            if len(records) != len(decoded):
                self.malformed += len(decoded) - len(records)
            yield records

    def _each_line(self, block: bytes | memoryview,
                   decode: Callable[[bytes], Any]) -> list[Any]:
        decoded = []
        for line in bytes(block).split(b"\n"):
            try:
                decoded.append(decode(line))
            except JSON_ERRORS:
                if line.strip():
                    self.malformed += 1
        return decoded


_BLOCK_BYTES = 1024 * 1024


def line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes | memoryview]:
    """Whole lines, about _BLOCK_BYTES of them at a time (or one longer line), across
    chunk boundaries; only an unfinished line is held between chunks. Each block is its
    lines joined by newlines: splitting every block at them gives what `lines` gives."""
    unfinished: list[bytes] = []
    for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:
            unfinished.append(chunk)
            continue
        start = 0
        if unfinished:
            start = chunk.find(b"\n") + 1
            yield b"".join([*unfinished, chunk[:start - 1]])
            unfinished = []
        view = memoryview(chunk)
        while start <= end:
            stop = chunk.find(b"\n", start + _BLOCK_BYTES, end) if (
                end - start > _BLOCK_BYTES) else -1
            stop = end if stop < 0 else stop
            yield view[start:stop]
            start = stop + 1
        if end + 1 < len(chunk):
            unfinished.append(chunk[end + 1:])
    if tail := b"".join(unfinished):
        yield tail


_DECODERS: dict[type[Any], Any] = {}


def _decoders(shape: type[Any]) -> tuple[Callable[[bytes], Any],
                                         Callable[[bytes | memoryview], list[Any]]]:
    """The decoders of `shape` (or any JSON value else, so that a record of another
    type is counted, not fatal): one line, and many."""
    decoder = _DECODERS.get(shape)
    if decoder is None:
        decoder = _DECODERS[shape] = msgspec.json.Decoder(
            Any if shape is dict else shape | Scalar | list[Any])
    return decoder.decode, decoder.decode_lines


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
    """An integer count, or 0 for anything else (a bool, a float, a string)."""
    return value if type(value) is int else 0


_OPEN_TAG = re.compile(r"\s*<([A-Za-z][\w:.-]*)(?:\s[^<>]*)?(/?)>")
_INJECTED_PREFIXES = ("# AGENTS.md instructions", "Caveat: The messages below were generated")
_EMBEDDED_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>\s*", re.DOTALL)


def _tag_wrapped(text: str) -> bool:
    """Whether the text is nothing but tag-wrapped blocks (`<command-name>/x</command-name>
    <command-args>…</command-args>`): what a tool injects. A prompt that merely begins with
    a tag (`<div> is misaligned`) has text of its own outside any block."""
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _OPEN_TAG.match(text, pos)
        if m is None:
            return False
        if m[2]:  # self-closing
            pos = m.end()
            continue
        close = text.find(f"</{m[1]}>", m.end())
        if close < 0:
            return False
        pos = close + len(m[1]) + 3
        while pos < end and text[pos].isspace():
            pos += 1
    return pos > 0


def human_text(text: str) -> str | None:
    """The prompt in a user message, or None when the text is not a person's prompt:
    anything tag-wrapped (slash commands, bash input, reminders, environment context)
    or a known injection such as AGENTS.md. Reminders embedded after real text are cut."""
    if not text.strip() or _tag_wrapped(text) or text.lstrip().startswith(
            _INJECTED_PREFIXES):
        return None
    if "<system-reminder>" in text:
        text = _EMBEDDED_REMINDER.sub("", text)
    return text.strip() or None
