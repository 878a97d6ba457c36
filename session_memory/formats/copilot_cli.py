"""GitHub Copilot CLI: ${COPILOT_HOME:-~/.copilot}/session-state/<sessionId>/events.jsonl and
workspace.yaml (and everything else in that folder); older versions wrote a flat
session-state/<sessionId>.jsonl."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from session_memory.formats.base import (
    WHOLE_ROOT,
    FileRole,
    Head,
    Turn,
    arguments_text,
    env_root,
    no_hook,
)
from session_memory.formats.events import (
    Piece,
    Records,
    Sink,
    as_int,
    human_text,
    lines,
    str_or_none,
)

NAME = "copilot-cli"
WATCH = WHOLE_ROOT
RECORD_TIMES = True
PARSER_VERSION = 1  # bump when parse() reads a session differently (base.py)
hook_target = no_hook
EVENTS = "events.jsonl"
WORKSPACE = "workspace.yaml"
# Newer versions end a session with this record (resuming it appends after it).
SHUTDOWN = re.compile(rb'"type"\s*:\s*"session\.shutdown"')


ROOT_VARIABLE = "COPILOT_HOME"  # names the folder the tool writes under, where set


def default_root() -> Path:
    return env_root(ROOT_VARIABLE, "~/.copilot", "session-state")


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    parts = relpath.parts
    if len(parts) == 1:
        if not relpath.name.endswith(".jsonl"):
            return None
        return FileRole(relpath.name[: -len(".jsonl")], str(relpath), end_record=SHUTDOWN)
    # Everything in <sessionId>/ is the session's: its event log grows by appends, the
    # rest (workspace.yaml, plans, checkpoints) is rewritten whole.
    if relpath.name.endswith(".jsonl"):
        return FileRole(parts[0], str(relpath), end_record=SHUTDOWN)
    return FileRole(parts[0], str(relpath), snapshot=True)


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


# -- analysis: stored pieces to events -------------------------------------------------

_EDIT_TOOLS = {"edit", "create", "write", "str_replace_editor", "write_file"}
_READ_TOOLS = {"view", "read", "read_file"}
_SHELL_TOOLS = {"bash", "powershell", "shell"}
_PATCH_FILE = re.compile(r"^\*\*\* (?:Update|Add) File: (.+)$", re.MULTILINE)


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    for piece in pieces:
        name = piece.path.rsplit("/", 1)[-1]
        if name == WORKSPACE:
            _workspace(piece, out)
        elif name.endswith(".jsonl"):
            _events(piece, out)


def _workspace(piece: Piece, out: Sink) -> None:
    """workspace.yaml: flat `key: value` lines, all a digest needs (and all there is for a
    session whose event log is gone)."""
    fields: dict[str, str] = {}
    for raw in lines(piece.chunks()):
        line = bytes(raw).decode("utf-8", "replace")
        key, sep, value = line.partition(":")
        if sep and key and not key[0].isspace():
            fields[key.strip()] = value.strip().strip("'\"")
    created, updated = fields.get("created_at") or None, fields.get("updated_at") or None
    out.info(cwd=fields.get("cwd") or None, git_branch=fields.get("branch") or None,
             title=fields.get("summary") or None, project=fields.get("repository") or None)
    out.times(created, updated)


MAX_SPREAD = 10_000
"""At most this many requests a shutdown's counts are spread over (a bound on a bad count)."""


def _shutdown(record_id: str | None, at: str | None, data: dict[str, Any], out: Sink) -> None:
    """`session.shutdown` carries each model's token counts for the process that is ending,
    not for the session: a resumed session's next shutdown starts again from nothing (its
    counts can be lower than the last one's, and its request count is its own run's
    turns). So every shutdown adds all it says, spent by the time of that shutdown.
    ccusage 20 takes them for running totals and subtracts each from the next.

    The counts are a run's many requests added up: spent as one response, their prompt
    would look millions of tokens long and take a long-context price no request paid. They
    are spent as `requests.count` responses of equal share instead, each prompt the run's
    average."""
    metrics = data.get("modelMetrics")
    if not isinstance(metrics, dict):
        return
    for model, entry in metrics.items():
        usage = entry.get("usage") if isinstance(entry, dict) else None
        if not isinstance(model, str) or not isinstance(usage, dict):
            continue
        cache_read = as_int(usage.get("cacheReadTokens"))
        cache_write = as_int(usage.get("cacheWriteTokens"))
        # inputTokens includes the cached ones; `input` never does.
        fresh = max(as_int(usage.get("inputTokens")) - cache_read - cache_write, 0)
        counts = (fresh, as_int(usage.get("outputTokens")), cache_write, cache_read,
                  as_int(usage.get("reasoningTokens")))
        out.model(model)
        if not any(counts):
            continue
        key = f"{record_id}:{model}" if record_id else None
        out.usage(key, model, *counts)
        requests = entry.get("requests")
        spread = min(max(as_int(requests.get("count")) if isinstance(requests, dict) else 0,
                         1), MAX_SPREAD)
        for n in range(spread):
            fresh_in, output, write, read, reasoning = (
                c * (n + 1) // spread - c * n // spread for c in counts)
            if fresh_in or output or write or read or reasoning:
                out.spend(at, f"{key}:{n}" if key and spread > 1 else key, model, fresh_in,
                          output, write, read, reasoning)


def _events(piece: Piece, out: Sink) -> None:
    records = Records(piece.chunks(), dict)
    first = last = None
    for r in records:
        ts = r.get("timestamp")
        if isinstance(ts, str):
            first = first or ts
            last = ts
        data = r.get("data")
        if isinstance(data, dict):
            _event(r.get("type"), str_or_none(r.get("id")), str_or_none(ts), data, out)
    out.times(first, last)
    if records.malformed:
        out.malformed(records.malformed)


def _event(kind: Any, record_id: str | None, at: str | None, data: dict[str, Any],
           out: Sink) -> None:
    sidechain = "parentToolCallId" in data  # a subagent's own turn
    if kind == "user.message":
        _user(data, out)
    elif kind == "assistant.message":
        text = data.get("content")
        if isinstance(text, str):
            out.assistant_text(text, sidechain=sidechain)
        for request in data.get("toolRequests") or ():
            if isinstance(request, dict):
                _call(request, out)
    elif kind == "tool.execution_complete":
        if model := str_or_none(data.get("model")):
            out.model(model)
        failed = data.get("success") is False
        error = data.get("error")
        text = str(error.get("message") or "") if isinstance(error, dict) else str(error or "")
        out.tool_result(str_or_none(data.get("toolCallId")), failed, text if failed else "",
                        sidechain=sidechain)
    elif kind in ("session.start", "session.resume"):
        context = data.get("context")
        if isinstance(context, dict):
            out.info(cwd=str_or_none(context.get("cwd")),
                     git_branch=str_or_none(context.get("branch")),
                     project=str_or_none(context.get("repository")))
        if model := str_or_none(data.get("selectedModel")):
            out.model(model)
    elif kind == "session.model_change":
        if model := str_or_none(data.get("newModel")):
            out.model(model)
    elif kind == "session.error":
        out.failure("api_error", str(data.get("message") or data.get("errorType") or ""))
    elif kind == "session.task_complete":
        if summary := str_or_none(data.get("summary")):
            out.assistant_text(summary)
    elif kind == "subagent.started":
        if call_id := str_or_none(data.get("toolCallId")):
            out.subagent(call_id, str_or_none(data.get("agentName")),
                         str_or_none(data.get("agentDescription")))
    elif kind == "session.shutdown":
        _shutdown(record_id, at, data, out)
        changes = data.get("codeChanges")
        modified = changes.get("filesModified") if isinstance(changes, dict) else None
        if isinstance(modified, list):
            out.files(edited=[p for p in modified if isinstance(p, str) and p])


def _user(data: dict[str, Any], out: Sink) -> None:
    """`content` is what the person typed; `transformedContent` adds the tool's injections
    (the time, reminders), and alone (empty content) it is the tool nudging the agent."""
    content = data.get("content")
    if not isinstance(content, str):
        return
    if content.startswith("/") and not content.startswith("//"):
        command = content.split(None, 1)[0]
        out.tool_call(None, command)  # a slash command, not a prompt
        return
    if prompt := human_text(content):
        out.prompt(prompt)


def _call(request: dict[str, Any], out: Sink) -> None:
    name = str_or_none(request.get("name")) or "unknown"
    args = request.get("arguments")
    edited: list[str] = []
    read: list[str] = []
    command: str | None = None
    if isinstance(args, dict):
        path = str_or_none(args.get("path")) or str_or_none(args.get("file_path"))
        if path and name in _EDIT_TOOLS:
            edited.append(path)
        elif path and name in _READ_TOOLS:
            read.append(path)
        if name in _SHELL_TOOLS:
            command = str_or_none(args.get("command"))
        patch = str_or_none(args.get("input")) or str_or_none(args.get("patch"))
        if name == "apply_patch" and patch:
            edited.extend(m.strip() for m in _PATCH_FILE.findall(patch))
    elif name == "apply_patch" and isinstance(args, str):
        edited.extend(m.strip() for m in _PATCH_FILE.findall(args))
    out.tool_call(str_or_none(request.get("toolCallId")), name, command, edited, read)


def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """The event log's prompts, replies, tool calls and their results, in order."""
    for piece in pieces:
        if not piece.path.endswith(".jsonl"):
            continue
        for r in Records(piece.chunks(), dict):
            data, ts = r.get("data"), str_or_none(r.get("timestamp"))
            if not isinstance(data, dict):
                continue
            sub = "parentToolCallId" in data
            kind = r.get("type")
            if kind == "user.message" and isinstance(data.get("content"), str):
                if text := human_text(data["content"]):
                    yield Turn("user", text, ts)
            elif kind == "assistant.message":
                if isinstance(data.get("content"), str) and data["content"].strip():
                    yield Turn("assistant", data["content"], ts, subagent=sub)
                for request in data.get("toolRequests") or ():
                    if isinstance(request, dict):
                        yield Turn("tool_call", arguments_text(request.get("arguments")), ts,
                                   str_or_none(request.get("name")), sub)
            elif kind == "tool.execution_complete":
                result, error = data.get("result"), data.get("error")
                text = (error.get("message") if isinstance(error, dict) else None) or (
                    result.get("content") if isinstance(result, dict) else None)
                yield Turn("tool_result", str(text or ""), ts, subagent=sub)
