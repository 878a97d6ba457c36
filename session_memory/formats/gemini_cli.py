"""Gemini CLI: ~/.gemini/tmp/<project hash>/chats/session-*.jsonl (older: whole-file .json)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from session_memory.formats.base import (
    WHOLE_ROOT,
    FileRole,
    Head,
    Turn,
    arguments_text,
    first_match,
    no_hook,
)
from session_memory.formats.events import (
    JSON_ERRORS,
    Piece,
    Records,
    Scalar,
    Sink,
    as_int,
    human_text,
    json_value,
    str_or_none,
    text_of,
)

NAME = "gemini-cli"
WATCH = WHOLE_ROOT
RECORD_TIMES = True
PARSER_VERSION = 2  # bump when parse() reads a session differently (base.py)
# 2: log lines decoded as records of the fields read, tool results skipped unbuilt: a line
# whose skipped values are broken (bytes that are not UTF-8) is read, not malformed.
hook_target = no_hook
DIGEST_INPUT_INCLUDES_CACHE_READ = True
"""Its digests' `tokens.input` is input as the tool reports it, cached input included
(usage by the time of spend takes that off)."""
_SESSION_ID = rb'"sessionId"\s*:\s*"([^"]+)"'


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    parts = relpath.parts
    if "chats" not in parts[:-1]:
        return None
    below = parts[parts.index("chats") + 1 :]
    name = relpath.name
    if len(below) >= 2:
        # Subagents live in chats/<parentSessionId>/.
        return FileRole(below[0], str(relpath)) if name.endswith(".jsonl") else None
    if name.endswith(".jsonl"):
        return FileRole(first_match(_SESSION_ID, head) or relpath.stem, str(relpath))
    if name.endswith(".json"):
        native = first_match(_SESSION_ID, head) or relpath.stem
        return FileRole(native, str(relpath), snapshot=True)
    return None


def default_root() -> Path:
    return Path("~/.gemini/tmp").expanduser()


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


# -- analysis: stored pieces to events -------------------------------------------------

_MESSAGE_TYPES = {"user", "gemini", "info", "error", "warning"}
_EDIT_TOOLS = {"replace", "write_file", "edit"}
_READ_TOOLS = {"read_file", "read_many_files"}


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    for piece in pieces:
        if piece.path.endswith((".jsonl", ".json")):
            _log(piece, _subagent_log(piece.path), out)


def _subagent_log(path: str) -> bool:
    """A subagent's log: in a folder below chats/."""
    return "chats/" in path and path.split("chats/", 1)[1].count("/") > 0


# The fields a digest reads; everything else in a line is skipped without being built
# (see claude_code.py's records).
class _Meta(msgspec.Struct, gc=False):
    """A log's session facts, on its first line or in a `$set` line. UNSET: not there (a
    line that names any of the first three is a session line, whatever their values)."""

    sessionId: Any = msgspec.UNSET
    lastUpdated: Any = msgspec.UNSET
    startTime: Any = msgspec.UNSET
    summary: Any = None
    kind: Any = None


class _Tool(msgspec.Struct, gc=False):
    id: Any = None
    name: Any = None
    args: Any = None
    status: Any = None
    result: msgspec.Raw = msgspec.Raw()
    """The tool's output, most of a log's bytes: decoded only when it is an error's."""


class _Record(_Meta, gc=False):
    set: _Meta | Scalar | list[Any] = msgspec.field(default=None, name="$set")
    rewind_to: Any = msgspec.field(default=None, name="$rewindTo")
    id: Any = None
    type: Any = None
    timestamp: Any = None
    content: Any = None
    model: Any = None
    tokens: Any = None
    toolCalls: list[_Tool | Scalar | list[Any]] | Scalar | dict[str, Any] = None


_as_record: Any = msgspec.json.Decoder(_Record).decode


def _jsonl(piece: Piece, shape: type[Any]) -> Iterator[tuple[int, Any]]:
    records = Records(piece.chunks(), shape)
    yield from enumerate(records, start=1)
    if records.malformed:
        yield -records.malformed, None  # the count rides along at the end


def _records(piece: Piece) -> Iterator[tuple[int, _Record | None]]:
    """The log's records with their positions, whichever way the version wrote it."""
    if piece.path.endswith(".jsonl"):
        return _jsonl(piece, _Record)
    # Older versions' whole documents are small: their objects, decoded whole, are read
    # as records again.
    return ((pos, None if r is None else _as_record(msgspec.json.encode(r)))
            for pos, r in _whole(piece))


def _dicts(piece: Piece) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """As _records, each record decoded whole (for its transcript)."""
    return _jsonl(piece, dict) if piece.path.endswith(".jsonl") else _whole(piece)


def _whole(piece: Piece) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Older versions: one pretty-printed JSON document, rewritten whole (a snapshot, small)."""
    try:
        doc = json_value(b"".join(piece.chunks()))
    except JSON_ERRORS:
        yield -1, None
        return
    if not isinstance(doc, dict):
        yield -1, None
        return
    yield 0, {k: v for k, v in doc.items() if k != "messages"}
    messages = doc.get("messages")
    for n, message in enumerate(messages if isinstance(messages, list) else [], start=1):
        if isinstance(message, dict):
            yield n, message


def _log(piece: Piece, subagent: bool, out: Sink) -> None:
    """Two passes over the log: the first folds it (by id, the last copy wins; `$rewindTo`
    drops what follows its target) keeping only ids and positions; the second reports the
    copies that survived. Memory holds one small entry per message id, never the records."""
    winners = _winners((pos, r.id, r.type, r.rewind_to)
                       for pos, r in _records(piece) if r is not None)
    started = updated = first = last = None
    unset = msgspec.UNSET
    for pos, r in _records(piece):
        if r is None:
            out.malformed(-pos)
            continue
        meta: _Meta = r.set if type(r.set) is _Meta else r
        if meta.sessionId is not unset or meta.lastUpdated is not unset or (
                meta.startTime is not unset):
            if isinstance(meta.startTime, str) and started is None:
                started = meta.startTime
            if isinstance(meta.lastUpdated, str):
                updated = meta.lastUpdated
            if isinstance(meta.summary, str):
                out.info(title=meta.summary)
            subagent = subagent or meta.kind == "subagent"
        if pos in winners and r.id is not None and r.type in _MESSAGE_TYPES:
            if isinstance(r.timestamp, str):
                first = first or r.timestamp
                last = r.timestamp
            _message(r, subagent, out)
    out.times(first, last)
    if not subagent:
        out.info(started_at=started, ended_at=updated)


def _winners(records: Iterable[tuple[int, Any, Any, Any]]) -> set[int]:
    """The positions of the message copies that survive the fold (see `_log`), of the
    records' (position, id, type, `$rewindTo`)."""
    live: dict[str, int] = {}
    for pos, message_id, kind, target in records:
        if isinstance(target, str):
            if target in live:
                keys = list(live)
                for key in keys[keys.index(target) + 1:]:
                    del live[key]
        elif isinstance(message_id, str) and isinstance(kind, str) and kind in _MESSAGE_TYPES:
            live[message_id] = pos
    return set(live.values())


def _message(r: _Record, subagent: bool, out: Sink) -> None:
    kind = r.type
    if kind == "user":
        text = None if subagent else human_text(text_of(r.content))
        if text:
            out.prompt(text)
    elif kind == "gemini":
        model = str_or_none(r.model)
        if model:
            out.model(model)
        tokens = r.tokens
        if isinstance(tokens, dict):
            out.usage(str(r.id), model, as_int(tokens.get("input")),
                      as_int(tokens.get("output")), 0, as_int(tokens.get("cached")),
                      as_int(tokens.get("thoughts")))
            # Gemini's prompt count includes cached input and tool-use prompts; thoughts
            # are billed as output.
            cached, thoughts = as_int(tokens.get("cached")), as_int(tokens.get("thoughts"))
            out.spend(str_or_none(r.timestamp), str(r.id), model,
                      max(as_int(tokens.get("input")) - cached, 0) + as_int(tokens.get("tool")),
                      as_int(tokens.get("output")) + thoughts, 0, cached, thoughts)
        text = text_of(r.content)
        if text:
            out.assistant_text(text, subagent)
        calls = r.toolCalls
        for call in calls if isinstance(calls, list) else []:
            if type(call) is _Tool and isinstance(call.name, str):
                _tool(call, subagent, out)
    elif kind == "error":
        out.failure("api_error", text_of(r.content), subagent)


def _tool(call: _Tool, subagent: bool, out: Sink) -> None:
    name, args = call.name, call.args
    call_id = str_or_none(call.id)
    command: str | None = None
    edited: list[str] = []
    read: list[str] = []
    if isinstance(args, dict):
        path = (str_or_none(args.get("file_path")) or str_or_none(args.get("absolute_path"))
                or str_or_none(args.get("path")))
        if name in _EDIT_TOOLS and path:
            edited.append(path)
        elif name in _READ_TOOLS:
            paths = args.get("paths")
            read.extend([path] if path else
                        [p for p in paths if isinstance(p, str)]
                        if isinstance(paths, list) else [])
        elif name == "run_shell_command":
            command = str_or_none(args.get("command"))
    out.tool_call(call_id, name, command, edited, read, subagent)
    status = call.status
    if status is not None:
        error = status == "error"
        out.tool_result(call_id, error, _result_text(_value(call.result)) if error else "",
                        name, subagent)


def _value(raw: msgspec.Raw) -> Any:
    """A skipped value, decoded now (None where it was not there)."""
    try:
        return json_value(raw) if raw else None
    except JSON_ERRORS:
        return None  # text that is not JSON: it was skipped, not checked whole


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    return text_of(result) or msgspec.json.encode(result).decode()[:2000]


# -- transcript: stored pieces to turns -------------------------------------------------


def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """The messages that survive the fold, each gemini reply followed by its tool calls
    and their results."""
    for piece in pieces:
        if not piece.path.endswith((".jsonl", ".json")):
            continue
        subagent = _subagent_log(piece.path)
        winners = _winners((pos, r.get("id"), r.get("type"), r.get("$rewindTo"))
                           for pos, r in _dicts(piece) if r is not None)
        for pos, r in _dicts(piece):
            if r is None or pos not in winners:
                continue
            ts = str_or_none(r.get("timestamp"))
            if r.get("type") == "user" and (text := human_text(text_of(r.get("content")))):
                yield Turn("user", text, ts, subagent=subagent)
            elif r.get("type") == "gemini":
                if text := text_of(r.get("content")):
                    yield Turn("assistant", text, ts, subagent=subagent)
                calls = r.get("toolCalls")
                for call in calls if isinstance(calls, list) else []:
                    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                        continue
                    yield Turn("tool_call", arguments_text(call.get("args") or ""), ts,
                               call["name"], subagent)
                    if call.get("result") is not None:
                        yield Turn("tool_result", _result_text(call["result"]), ts,
                                   call["name"], subagent)
