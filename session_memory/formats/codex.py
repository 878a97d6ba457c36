"""Codex CLI: ${CODEX_HOME:-~/.codex}/sessions/YYYY/MM/DD/rollout-*.jsonl (and .jsonl.zst)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from session_memory.formats.base import (
    WHOLE_ROOT,
    FileRole,
    Head,
    Turn,
    arguments_text,
    env_root,
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

NAME = "codex"
WATCH = WHOLE_ROOT
RECORD_TIMES = True
PARSER_VERSION = 1  # bump when parse() reads a session differently (base.py)
hook_target = no_hook
DIGEST_INPUT_INCLUDES_CACHE_READ = True
"""Its digests' `tokens.input` is input as the tool reports it, cached input included
(usage by the time of spend takes that off)."""
_ROLLOUT = re.compile(r"rollout-.*\.jsonl(\.zst)?")
_ANY_JSONL = re.compile(r".*\.jsonl(\.zst)?")
_SESSION_DIRS = {"sessions", "archived_sessions"}
_UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl")
# session_meta's payload id; legacy rollouts start with a bare {"id": …}.
_META_ID = rb'^\{[^\n]*?"type"\s*:\s*"session_meta"[^\n]*?"payload"\s*:\s*\{\s*"id"\s*:\s*"([^"]+)"'
_LEGACY_ID = rb'^\{\s*"id"\s*:\s*"([^"]+)"'


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    m = _ROLLOUT.fullmatch(relpath.name)
    if not m and relpath.parts[0] in _SESSION_DIRS:
        m = _ANY_JSONL.fullmatch(relpath.name)
    if not m:
        return None
    compressed = m.group(1) is not None
    logical = str(relpath)[: -len(".zst")] if compressed else str(relpath)
    native = first_match(_META_ID, head) or first_match(_LEGACY_ID, head)
    if native is None:
        by_name = _UUID.search(relpath.name)
        native = by_name.group(1) if by_name else logical
    return FileRole(native, logical, compressed=compressed)


ROOT_VARIABLE = "CODEX_HOME"  # names the folder the tool writes under, where set


def default_root() -> Path:
    return env_root(ROOT_VARIABLE, "~/.codex")


def prune(dir_relpath: PurePosixPath) -> bool:
    # ~/.codex also holds logs, caches and sqlite state: only rollouts matter.
    return len(dir_relpath.parts) == 1 and dir_relpath.parts[0] in {"log", "cache", "tmp", ".tmp"}


# -- analysis: stored pieces to events -------------------------------------------------

_PATCH_FILE = re.compile(r"^\*\*\* (?:Update|Add) File: (.+)$", re.MULTILINE)
_EXIT_LINE = re.compile(r"(?:Process exited with code|Exit code:) (-?\d+)")
_LEGACY_ITEMS = {"message", "reasoning", "function_call", "function_call_output",
                 "custom_tool_call", "custom_tool_call_output", "local_shell_call",
                 "web_search_call"}


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    for piece in pieces:
        _rollout(piece, out)


class _Item(msgspec.Struct, gc=False):
    """A rollout line, or its payload, as the fields a digest reads: everything else
    (reasoning items and their encrypted content, base instructions) is skipped unbuilt.
    Old rollouts wrote response items bare, at the top of a line: one shape serves both."""

    type: Any = None
    timestamp: Any = None
    payload: _Item | Scalar | list[Any] | msgspec.UnsetType = msgspec.UNSET
    # A response item's:
    role: Any = None
    content: Any = None
    name: Any = None
    call_id: Any = None
    id: Any = None
    input: Any = None
    arguments: Any = None
    action: Any = None
    output: Any = None
    # An event's, a turn context's and session_meta's:
    message: Any = None
    info: Any = None
    reason: Any = None
    model: Any = None
    cwd: Any = None
    git: Any = None
    source: Any = None
    forked_from_id: Any = None


def _rollout(piece: Piece, out: Sink) -> None:
    records = Records(piece.chunks(), _Item)
    first = last = None
    model: str | None = None
    replayed_before: str | None = None
    previous_total: dict[str, Any] | None = None
    for r in records:
        kind, payload = _kind_and_payload(r.type, r.payload, r)
        ts = r.timestamp
        if isinstance(ts, str):
            # Forks and subagents begin with a copy of the parent's records, older than
            # their own session_meta: the parent's digest already counts those.
            if replayed_before and ts < replayed_before:
                if kind == "event_msg" and type(payload) is _Item and (
                        payload.type == "token_count"):
                    # The parent's totals so far: this session's turns are measured from them.
                    info = payload.info
                    total = info.get("total_token_usage") if isinstance(info, dict) else None
                    previous_total = total if isinstance(total, dict) else previous_total
                continue
            first = first or ts
            last = ts
        if type(payload) is not _Item:
            continue
        if kind == "response_item":
            _item(payload, out)
        elif kind == "event_msg":
            _event(payload, model, out)
            if payload.type == "token_count" and isinstance(ts, str):
                previous_total = _spend(payload, ts, model or UNNAMED_MODEL, previous_total,
                                        out)
        elif kind == "turn_context":
            new_model = str_or_none(payload.model)
            if new_model and new_model != model:
                model = new_model
                out.model(model)
        elif kind == "session_meta":
            git = payload.git
            if _begins_with_parent_copy(payload.source, payload.forked_from_id) and (
                    isinstance(ts, str)):
                replayed_before = ts
            out.info(cwd=str_or_none(payload.cwd),
                     git_branch=str_or_none(git.get("branch")) if isinstance(git, dict)
                     else None, subagent_session=_subagent(payload.source))
    out.times(first, last)
    if records.malformed:
        out.malformed(records.malformed)


def _kind_and_payload(kind: Any, payload: Any, record: Any) -> tuple[Any, Any]:
    """A record's type and payload (UNSET: the record has none); old rollouts wrote bare
    response items after an {id} line, each its own payload."""
    if payload is not msgspec.UNSET:
        return kind, payload
    if isinstance(kind, str) and kind in _LEGACY_ITEMS:
        return "response_item", record
    return kind, None


def _subagent(source: Any) -> bool:
    """Whether session_meta's `source` says a subagent's session."""
    return isinstance(source, dict) and "subagent" in source


def _begins_with_parent_copy(source: Any, forked_from: Any) -> bool:
    """Forks and subagents begin with a copy of the parent's records, older than their own
    session_meta (of which these are the `source` and `forked_from_id`)."""
    return _subagent(source) or bool(forked_from)


def _event(p: _Item, model: str | None, out: Sink) -> None:
    kind = p.type
    if kind == "token_count":
        info = p.info
        total = info.get("total_token_usage") if isinstance(info, dict) else None
        if isinstance(total, dict):  # null usage: keep the last real one
            # Cumulative: one fixed key, so the last report replaces all earlier ones.
            out.usage("total", model, as_int(total.get("input_tokens")),
                      as_int(total.get("output_tokens")), 0,
                      as_int(total.get("cached_input_tokens")),
                      as_int(total.get("reasoning_output_tokens")))
    elif kind == "user_message" and isinstance(p.message, str):
        text = human_text(p.message)
        if text:
            out.prompt(text)
    elif kind == "agent_message" and isinstance(p.message, str):
        out.assistant_text(p.message)
    elif kind == "turn_aborted":
        out.failure("aborted", str(p.reason or ""))
    elif kind in ("error", "stream_error"):
        out.failure("api_error", str(p.message or ""))


UNNAMED_MODEL = "gpt-5"
"""The model a rollout's spend is counted under when no line names one: rollouts from
before Codex wrote `turn_context` (0.3x) ran gpt-5, Codex's default then, and ccusage
prices them as that."""

_SPEND_COUNTS = ("input_tokens", "cached_input_tokens", "output_tokens",
                 "reasoning_output_tokens", "total_tokens")


def _spend(p: _Item, ts: str, model: str,
           previous_total: dict[str, Any] | None, out: Sink) -> dict[str, Any] | None:
    """One turn's tokens, as ccusage counts them: its `last_token_usage`, or else what the
    cumulative total grew by. Input as reported includes cached input: that comes off.
    Returns the cumulative total to measure the next turn against."""
    info = p.info
    if not isinstance(info, dict):
        return previous_total
    total, last = info.get("total_token_usage"), info.get("last_token_usage")
    if isinstance(total, dict) and previous_total is not None and all(
            as_int(total.get(k)) == as_int(previous_total.get(k)) for k in _SPEND_COUNTS):
        # Some versions write a turn's token_count line twice: the totals have not moved,
        # so nothing was spent since the line before (ccusage counts it once too).
        return previous_total
    if isinstance(last, dict):
        turn = {k: as_int(last.get(k)) for k in _SPEND_COUNTS}
    elif isinstance(total, dict):
        turn = {k: max(as_int(total.get(k)) - (as_int(previous_total.get(k))
                                                if previous_total else 0), 0)
                for k in _SPEND_COUNTS}
    else:
        return previous_total
    if isinstance(total, dict):
        previous_total = total
    if not any(turn[k] for k in _SPEND_COUNTS[:4]):
        return previous_total
    cached = min(turn["cached_input_tokens"], turn["input_tokens"])
    # A rollout copied into another (a fork) repeats the turn exactly: one key for both.
    key = f"{ts}\0{model}\0" + ",".join(str(turn[k]) for k in _SPEND_COUNTS)
    out.spend(ts, key, model, turn["input_tokens"] - cached, turn["output_tokens"], 0, cached,
              turn["reasoning_output_tokens"])
    return previous_total


def _item(p: _Item, out: Sink) -> None:
    kind = p.type
    if kind == "message":
        text = text_of(p.content)
        if p.role == "assistant":
            out.assistant_text(text)
        elif p.role == "user" and (prompt := human_text(text)):
            out.prompt(prompt, fallback=True)
    elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
        _call(p, out)
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _output(p, out)
    elif kind == "web_search_call":
        out.tool_call(str_or_none(p.id), "web_search")


def _call(p: _Item, out: Sink) -> None:
    name = str_or_none(p.name) or "shell"
    call_id = str_or_none(p.call_id) or str_or_none(p.id)
    command: str | None = None
    edited: list[str] = []
    read: list[str] = []
    args: Any = p.input if p.type == "custom_tool_call" else p.arguments
    if p.type == "local_shell_call":
        action = p.action
        args = {"command": action.get("command")} if isinstance(action, dict) else None
    elif isinstance(args, str) and args.startswith("{"):
        with contextlib.suppress(*JSON_ERRORS):
            args = json_value(args)
    patch = args if isinstance(args, str) else None
    if isinstance(args, dict):
        given = args.get("command", args.get("cmd"))
        if isinstance(given, list):
            if given[:1] == ["apply_patch"] and len(given) > 1:
                patch = str(given[1])
            given = " ".join(str(part) for part in given)
        command = str_or_none(given)
        patch = patch or str_or_none(args.get("input")) or str_or_none(args.get("patch"))
        path = str_or_none(args.get("path")) or str_or_none(args.get("file_path"))
        if path and "read" in name:
            read.append(path)
    if patch and "*** " in patch:
        edited.extend(m.strip() for m in _PATCH_FILE.findall(patch))
    if command and command.startswith("apply_patch"):
        edited.extend(m.strip() for m in _PATCH_FILE.findall(command))
        command = None  # an edit, not a command a person would rerun
    out.tool_call(call_id, name, command, edited, read)


def _output(p: _Item, out: Sink) -> None:
    call_id = str_or_none(p.call_id)
    output = p.output
    if not isinstance(output, str):
        out.tool_result(call_id, False)
        return
    code: Any = None
    ran = None
    if output.startswith("{"):
        with contextlib.suppress(*JSON_ERRORS):
            ran = _ran(output)
        if type(ran) is _Ran:
            meta = ran.metadata
            code = meta.exit_code if type(meta) is _RanMeta else None
    elif m := _EXIT_LINE.search(output[:400]):
        code = int(m.group(1))
    error = isinstance(code, int) and code != 0
    if error and type(ran) is _Ran and ran.output:
        try:
            inner = json_value(ran.output)
        except JSON_ERRORS:
            # Skipped above, the text was not checked whole: it is no JSON, so neither is
            # the output, which then has no exit code (as when it is decoded at once).
            error = False
        else:
            output = inner if isinstance(inner, str) else output
    out.tool_result(call_id, error, output if error else "")


class _RanMeta(msgspec.Struct, gc=False):
    exit_code: Any = None


class _Ran(msgspec.Struct, gc=False):
    """A tool's output as newer Codex writes it, JSON in a string: its exit code, and its
    text, which is decoded only for an error (most of the bytes, skipped unbuilt)."""

    output: msgspec.Raw = msgspec.Raw()
    metadata: _RanMeta | Scalar | list[Any] = None


_ran: Any = msgspec.json.Decoder(_Ran | Scalar | list[Any]).decode


# -- transcript: stored pieces to turns -------------------------------------------------


def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """The response items (messages, calls, outputs) of each rollout, in order; the copy
    of a parent's records a fork or subagent begins with is left out, as in `parse`."""
    for piece in pieces:
        replayed_before: str | None = None
        # Newer rollouts say each message twice, as an event and as a response item; the
        # events are the ones `parse` takes prompts from, so they win where there are any.
        events = _mentions(piece, b'"user_message"')
        for r in Records(piece.chunks(), dict):
            kind, p = _kind_and_payload(r.get("type"), r.get("payload", msgspec.UNSET), r)
            ts = str_or_none(r.get("timestamp"))
            if ts and replayed_before and ts < replayed_before:
                continue
            if not isinstance(p, dict):
                continue
            if kind == "session_meta":
                if _begins_with_parent_copy(p.get("source"), p.get("forked_from_id")) and ts:
                    replayed_before = ts
            elif kind == "response_item":
                yield from _item_turns(p, ts, events)
            elif kind == "event_msg" and events and isinstance(p.get("message"), str):
                if p.get("type") == "user_message" and (text := human_text(p["message"])):
                    yield Turn("user", text, ts)
                elif p.get("type") == "agent_message" and p["message"]:
                    yield Turn("assistant", p["message"], ts)


def _mentions(piece: Piece, needle: bytes) -> bool:
    """Whether the raw bytes hold `needle` (looked for across chunk boundaries too)."""
    carry = b""
    for chunk in piece.chunks():
        if needle in carry + chunk[:len(needle)] or needle in chunk:
            return True
        carry = chunk[-len(needle):]
    return False


def _item_turns(p: dict[str, Any], ts: str | None, events: bool) -> Iterator[Turn]:
    kind = p.get("type")
    if kind == "message" and not events:
        text = text_of(p.get("content"))
        if p.get("role") == "assistant" and text:
            yield Turn("assistant", text, ts)
        elif p.get("role") == "user" and (prompt := human_text(text)):
            yield Turn("user", prompt, ts)
    elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
        args = p.get("input") if kind == "custom_tool_call" else p.get("arguments")
        if kind == "local_shell_call":
            args = p.get("action")
        yield Turn("tool_call", arguments_text(args if args is not None else ""), ts,
                   str_or_none(p.get("name")) or "shell")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = p.get("output")
        if isinstance(output, str) and output.startswith("{"):
            with contextlib.suppress(*JSON_ERRORS):
                parsed = json_value(output)
                if isinstance(parsed, dict) and isinstance(parsed.get("output"), str):
                    output = parsed["output"]
        yield Turn("tool_result", output if isinstance(output, str)
                   else arguments_text(output or ""), ts)
    elif kind == "web_search_call":
        yield Turn("tool_call", arguments_text(p.get("action") or ""), ts, "web_search")
