"""Claude Code: ~/.claude/projects/<encoded-cwd>/<sessionId>.jsonl and <sessionId>/…"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

import orjson

from session_memory.analyze.events import (
    AssistantText,
    Event,
    Failure,
    Info,
    Malformed,
    Model,
    Piece,
    Prompt,
    Records,
    Subagent,
    Times,
    ToolCall,
    ToolResult,
    Usage,
    as_int,
    human_text,
    str_or_none,
    text_of,
)
from session_memory.formats.base import FileRole, Head, first_match

NAME = "claude-code"
# Older versions wrote subagents flat beside sessions; their lines carry the parent's id.
_SESSION_ID = rb'"sessionId"\s*:\s*"([^"]+)"'


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    parts = relpath.parts
    if len(parts) < 2:
        return None
    if len(parts) == 2:
        name = parts[1]
        if not name.endswith(".jsonl"):
            return None
        stem = name[: -len(".jsonl")]
        if stem.startswith("agent-"):
            return FileRole(first_match(_SESSION_ID, head) or stem, str(relpath))
        return FileRole(stem, str(relpath))
    # Everything under <project>/<sessionId>/ belongs to that session.
    return FileRole(parts[1], str(relpath))


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


# -- analysis: stored pieces to events -------------------------------------------------

_EDIT_TOOLS = {"Edit", "MultiEdit", "Write", "NotebookEdit"}
_READ_TOOLS = {"Read", "NotebookRead"}
_INTERRUPTED = "[Request interrupted by user"


def parse(pieces: Sequence[Piece]) -> Iterator[Event]:
    """Events of a session: its main transcript, then subagent transcripts and their
    sidecars. Tool results, workflow JSON and other non-JSONL files carry nothing new."""
    for piece in pieces:
        name = piece.path.rsplit("/", 1)[-1]
        if name.endswith(".meta.json"):
            yield from _subagent_meta(piece, name)
        elif name.endswith(".jsonl"):
            sidechain = "/" in piece.path.split("/", 1)[-1] or name.startswith("agent-")
            yield from _transcript(piece, sidechain)


def _subagent_meta(piece: Piece, name: str) -> Iterator[Event]:
    try:
        meta = orjson.loads(b"".join(piece.chunks()))
    except orjson.JSONDecodeError:
        yield Malformed(1)
        return
    if isinstance(meta, dict):
        yield Subagent(name[len("agent-"):-len(".meta.json")] if name.startswith("agent-")
                       else name[:-len(".meta.json")],
                       str_or_none(meta.get("agentType")), str_or_none(meta.get("description")))


_RESULT_MARKS = (b'"type":"tool_result"', b'"type": "tool_result"')
_ERROR_MARKS = (b'"is_error":true', b'"is_error": true')
_TIMESTAMP = re.compile(rb'"timestamp":\s*"([^"\\]+)"')


def _successful_results(line: bytes | memoryview) -> dict[str, Any] | None:
    """Tool output is most of a transcript's bytes and, when it succeeded, says nothing a
    digest keeps but its time. Such lines are read without parsing them: JSON escapes
    every quote inside strings, so these marks can only be the record's own keys."""
    if len(line) < 4096:
        return None  # short lines: parsing is cheap, and exact
    raw = bytes(line) if isinstance(line, memoryview) else line
    if not any(m in raw for m in _RESULT_MARKS) or any(m in raw for m in _ERROR_MARKS):
        return None
    ts = _TIMESTAMP.search(raw)
    return {"type": "tool-results-ok", "timestamp": ts.group(1).decode() if ts else None,
            "isSidechain": b'"isSidechain":true' in raw or b'"isSidechain": true' in raw}


def _transcript(piece: Piece, sidechain_file: bool) -> Iterator[Event]:
    records = Records(piece.chunks(), _successful_results)
    first = last = None
    have_place = have_agent = False
    for r in records:
        ts = r.get("timestamp")
        if isinstance(ts, str):
            first = first or ts
            last = ts
        side = sidechain_file or r.get("isSidechain") is True
        if not have_place and not side and isinstance(r.get("cwd"), str):
            have_place = True
            yield Info(cwd=r["cwd"], git_branch=str_or_none(r.get("gitBranch")))
        if side and not have_agent and isinstance(r.get("agentId"), str):
            have_agent = True
            yield Subagent(r["agentId"])
        kind = r.get("type")
        if kind == "tool-results-ok":
            yield ToolResult(None, False, sidechain=side)
        elif kind == "assistant":
            yield from _assistant(r, side)
        elif kind == "user":
            yield from _user(r, side)
        elif kind == "summary" and isinstance(r.get("summary"), str):
            yield Info(title=r["summary"])
        elif kind == "custom-title" and isinstance(r.get("customTitle"), str):
            yield Info(title=r["customTitle"])
        elif kind == "system" and r.get("subtype") == "api_error":
            yield Failure("api_error", text_of(r.get("content")), side)
    yield Times(first, last)
    if records.malformed:
        yield Malformed(records.malformed)


def _assistant(r: dict[str, Any], side: bool) -> Iterator[Event]:
    msg = r.get("message")
    if not isinstance(msg, dict):
        return
    model = str_or_none(msg.get("model"))
    if model == "<synthetic>":
        model = None
    if model:
        yield Model(model)
    usage = msg.get("usage")
    if isinstance(usage, dict):
        # One response is written as several lines sharing message.id; the last copy wins.
        yield Usage(str_or_none(msg.get("id")) or str_or_none(r.get("uuid")), model,
                    as_int(usage.get("input_tokens")), as_int(usage.get("output_tokens")),
                    as_int(usage.get("cache_creation_input_tokens")),
                    as_int(usage.get("cache_read_input_tokens")))
    if r.get("isApiErrorMessage"):
        yield Failure("api_error", text_of(msg.get("content")), side)
        return
    content = msg.get("content")
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            yield AssistantText(block["text"], side)
        elif kind == "tool_use" and isinstance(block.get("name"), str):
            yield _tool_call(block, side)


def _tool_call(block: dict[str, Any], side: bool) -> ToolCall:
    name = block["name"]
    args = block.get("input")
    call = ToolCall(str_or_none(block.get("id")), name, sidechain=side)
    if isinstance(args, dict):
        path = str_or_none(args.get("file_path")) or str_or_none(args.get("notebook_path"))
        if path and name in _EDIT_TOOLS:
            call.edited.append(path)
        elif path and name in _READ_TOOLS:
            call.read.append(path)
        elif name == "Bash":
            call.command = str_or_none(args.get("command"))
    return call


def _user(r: dict[str, Any], side: bool) -> Iterator[Event]:
    msg = r.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                error = block.get("is_error") is True
                yield ToolResult(str_or_none(block.get("tool_use_id")), error,
                                 text_of(block.get("content")) if error else "", sidechain=side)
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
    if not texts:
        return
    if any(t.startswith(_INTERRUPTED) for t in texts):
        if not side:
            yield Failure("interrupted", sidechain=side)
        return
    # Subagent prompts are written by an agent; meta and compact summaries are injected.
    if side or r.get("isMeta") or r.get("isCompactSummary") or r.get("isVisibleInTranscriptOnly"):
        return
    prompt = [t for t in map(human_text, texts) if t]
    if prompt:
        yield Prompt("\n".join(prompt))
