"""Claude Code: ~/.claude/projects/<encoded-cwd>/<sessionId>.jsonl and <sessionId>/…"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec

from session_memory.formats.base import (
    WHOLE_ROOT,
    FileRole,
    Head,
    HookTarget,
    Turn,
    arguments_text,
    env_root,
    first_match,
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

NAME = "claude-code"
WATCH = WHOLE_ROOT
RECORD_TIMES = True
PARSER_VERSION = 2  # bump when parse() reads a session differently (base.py)
BILLING_BLOCK_HOURS = 5
"""Claude bills in 5-hour windows: `usage blocks` draws them for this format's sources."""
# Older versions wrote subagents flat beside sessions; their lines carry the parent's id.
_SESSION_ID = rb'"sessionId"\s*:\s*"([^"]+)"'
_SESSION_FOLDER = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
"""A session id, as Claude Code names a session's transcript and folder: a UUID."""


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
    # Everything under <project>/<sessionId>/ belongs to that session. A root that holds
    # transcripts deeper (a copy of another machine's projects folder, an archive of
    # sessions in folders of their own) is read the same way: a transcript named by its
    # id is that session, else a file belongs to the session whose folder it is in, and an
    # older version's `agent-*` file its parent's.
    if (session := _named_transcript(parts) or _session_folder(parts)) is not None:
        return FileRole(session, str(relpath))
    name = parts[-1]
    if name.startswith("agent-") and name.endswith(".jsonl") and "subagents" not in parts:
        return FileRole(first_match(_SESSION_ID, head) or name[: -len(".jsonl")],
                        str(relpath))
    return FileRole(parts[1], str(relpath))


def _named_transcript(parts: Sequence[str]) -> str | None:
    """The session whose main transcript the file at `parts` is, by its name: its id (a
    UUID) and `.jsonl`, outside a subagents folder."""
    name = parts[-1]
    if name.endswith(".jsonl") and "subagents" not in parts and _SESSION_FOLDER.fullmatch(
            stem := name[: -len(".jsonl")]):
        return stem
    return None


def _session_folder(parts: Sequence[str]) -> str | None:
    """The session whose folder (named by its id, a UUID) holds the file at `parts`: the
    innermost such folder (those further up may be anything's); the root's own folders,
    the first part, are projects'."""
    return next((folder for folder in reversed(parts[1:-1])
                 if _SESSION_FOLDER.fullmatch(folder)), None)


ROOT_VARIABLE = "CLAUDE_CONFIG_DIR"  # names the folder the tool writes under, where set


def _project_folders() -> tuple[Path, Path]:
    """Where Claude Code writes its projects, as its version has it: ~/.claude/projects,
    and $XDG_CONFIG_HOME/claude/projects (~/.config/claude/projects), which some versions
    use (ccusage reads both)."""
    return (Path("~/.claude/projects").expanduser(),
            Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"),
                 "claude", "projects"))


def default_root() -> Path:
    """$CLAUDE_CONFIG_DIR/projects where that is set; else ~/.claude/projects, or the XDG
    one where only that exists (see _project_folders)."""
    if os.environ.get(ROOT_VARIABLE):
        return env_root(ROOT_VARIABLE, "~/.claude", "projects")
    usual, xdg = _project_folders()
    return xdg if xdg.is_dir() and not usual.is_dir() else usual


def unread_places(root: Path) -> list[tuple[Path, str]]:
    """Where the root is one of Claude Code's two projects folders and the other is there
    too: the other, which this source does not read (a source has one root), said so that
    its sessions are not taken for none."""
    folders = [Path(os.path.realpath(folder)) for folder in _project_folders()]
    if root not in folders:
        return []
    return [(folder, "Claude Code's projects folder too, not read by this source: add a "
                     'source for it (format = "claude-code")')
            for folder in folders if folder != root and folder.is_dir()]


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


def hook_target(payload: dict[str, Any]) -> HookTarget | None:
    """The SessionEnd hook sends `{"session_id", "transcript_path", "cwd", "reason", …}`:
    the transcript, and its folder of subagent transcripts and tool results beside it."""
    native = payload.get("session_id")
    if not isinstance(native, str) or not native:
        return None
    transcript = payload.get("transcript_path")
    paths: list[Path] = []
    if isinstance(transcript, str) and transcript:
        path = Path(os.path.expanduser(transcript))
        paths = [p for p in (path, path.with_suffix("")) if p.exists()]
    return HookTarget(native, paths)


# -- analysis: stored pieces to events -------------------------------------------------

_EDIT_TOOLS = {"Edit", "MultiEdit", "Write", "NotebookEdit"}
_READ_TOOLS = {"Read", "NotebookRead"}
_INTERRUPTED = "[Request interrupted by user"


# The fields a digest reads; everything else in a record is skipped without being built.
# Decoded JSON holds no reference cycles, so the garbage collector need not track these
# (gc=False): a quarter off decoding.
class _ToolInput(msgspec.Struct, gc=False):
    file_path: Any = None
    notebook_path: Any = None
    command: Any = None


class _CacheCreation(msgspec.Struct, gc=False):
    ephemeral_1h_input_tokens: Any = 0


class _Usage(msgspec.Struct, gc=False):
    input_tokens: Any = 0
    output_tokens: Any = 0
    cache_creation_input_tokens: Any = 0
    cache_read_input_tokens: Any = 0
    cache_creation: _CacheCreation | Scalar | list[Any] = None
    speed: Any = None


class _Block(msgspec.Struct, gc=False):
    type: Any = None
    text: Any = None
    name: Any = None
    id: Any = None
    input: _ToolInput | Scalar | list[Any] = None
    tool_use_id: Any = None
    is_error: Any = None
    content: msgspec.Raw = msgspec.Raw()
    """A tool result's output, most of a transcript's bytes: skipped unbuilt, and decoded
    only when it is an error's."""


class _Message(msgspec.Struct, gc=False):
    id: Any = None
    model: Any = None
    usage: _Usage | Scalar | list[Any] = None
    content: str | list[_Block | Scalar | list[Any]] | dict[str, Any] | None | int | float = None


class _RelayedReply(msgspec.Struct, gc=False):
    """A subagent's response as a progress record relays it: only what its spend needs."""
    id: Any = None
    model: Any = None
    usage: _Usage | Scalar | list[Any] = None


class _RelayedMessage(msgspec.Struct, gc=False):
    type: Any = None
    timestamp: Any = None
    requestId: Any = None
    message: _RelayedReply | Scalar | list[Any] = None


class _Progress(msgspec.Struct, gc=False):
    """A progress record's `data`: `message` is a subagent's record, relayed as it runs
    (`normalizedMessages`, the whole conversation again, is skipped unbuilt)."""
    message: _RelayedMessage | Scalar | list[Any] = None


class _Record(msgspec.Struct, gc=False):
    type: Any = None
    timestamp: Any = None
    isSidechain: Any = None
    agentId: Any = None
    requestId: Any = None
    # Every record repeats these and a digest needs them seldom: kept as they are written.
    uuid: msgspec.Raw = msgspec.Raw()
    cwd: msgspec.Raw = msgspec.Raw()
    gitBranch: msgspec.Raw = msgspec.Raw()
    message: _Message | Scalar | list[Any] = None
    content: Any = None
    summary: Any = None
    customTitle: Any = None
    subtype: Any = None
    isApiErrorMessage: Any = None
    isMeta: Any = None
    isCompactSummary: Any = None
    isVisibleInTranscriptOnly: Any = None
    data: _Progress | Scalar | list[Any] = None


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    """A session: its main transcript, then subagent transcripts and their sidecars. Tool
    results, workflow JSON and other non-JSONL files carry nothing new."""
    for piece in pieces:
        name = piece.path.rsplit("/", 1)[-1]
        if name.endswith(".meta.json"):
            _subagent_meta(piece, name, out)
        elif name.endswith(".jsonl"):
            _transcript(piece, _sidechain_file(piece.path, name), out)


def _sidechain_file(path: str, name: str) -> bool:
    """A subagent's transcript: in a session's folder (its `subagents/`, named for the
    session), or (older versions) `agent-*` beside the sessions."""
    parts = path.split("/")
    return (name.startswith("agent-") or "subagents" in parts[1:-1]
            or (_named_transcript(parts) is None and _session_folder(parts) is not None))


def _subagent_meta(piece: Piece, name: str, out: Sink) -> None:
    try:
        meta = json_value(b"".join(piece.chunks()))
    except JSON_ERRORS:
        out.malformed(1)
        return
    if isinstance(meta, dict):
        out.subagent(name[len("agent-"):-len(".meta.json")] if name.startswith("agent-")
                     else name[:-len(".meta.json")],
                     str_or_none(meta.get("agentType")), str_or_none(meta.get("description")))


def _transcript(piece: Piece, sidechain_file: bool, out: Sink) -> None:
    records = Records(piece.chunks(), _Record)
    first = last = model = None
    have_place = have_agent = False
    for block in records.blocks():
        for r in block:
            ts = r.timestamp
            if type(ts) is str:
                first = first or ts
                last = ts
            side = sidechain_file or r.isSidechain is True
            if not have_place and not side and (cwd := _string(r.cwd)):
                have_place = True
                out.info(cwd=cwd, git_branch=_string(r.gitBranch))
            if side and not have_agent and type(r.agentId) is str:
                have_agent = True
                out.subagent(r.agentId)
            kind, msg = r.type, r.message
            if type(msg) is _Message:
                if kind == "assistant":
                    reply_model = msg.model if type(msg.model) is str and msg.model not in (
                        "", "<synthetic>") else None
                    if reply_model and reply_model != model:
                        model = reply_model
                        out.model(model)
                    _assistant(r, msg, side, reply_model, out)
                elif kind == "user":
                    _user(r, msg, side, out)
            elif kind == "summary" and type(r.summary) is str:
                out.info(title=r.summary)
            elif kind == "custom-title" and type(r.customTitle) is str:
                out.info(title=r.customTitle)
            elif kind == "progress" and type(r.data) is _Progress:
                _relayed(r.data.message, r.timestamp, out)
            if kind == "system" and r.subtype == "api_error":
                out.failure("api_error", text_of(r.content), side)
    out.times(first, last)
    if records.malformed:
        out.malformed(records.malformed)


def _assistant(r: _Record, msg: _Message, side: bool, model: str | None, out: Sink) -> None:
    usage = msg.usage
    # A reply Claude Code wrote itself (an API error, "No response requested.") names the
    # model <synthetic>: no model answered, so there is no spend (nor in ccusage's counts).
    if type(usage) is _Usage and msg.model != "<synthetic>":
        message_id = msg.id if type(msg.id) is str and msg.id else None
        _spend(usage, message_id, message_id or _string(r.uuid), r.requestId, r.timestamp,
               model, side, out)
    content = msg.content
    if r.isApiErrorMessage:
        out.failure("api_error", text_of(_plain(content)), side)
        return
    if type(content) is not list:
        return
    for block in content:
        if type(block) is not _Block:
            continue
        kind = block.type
        if kind == "text" and type(block.text) is str:
            out.assistant_text(block.text, side)
        elif kind == "tool_use" and type(block.name) is str:
            _tool_call(block, side, out)


def _spend(usage: _Usage, message_id: str | None, usage_key: str | None, request: Any,
           at: Any, model: str | None, side: bool, out: Sink) -> None:
    """One copy of a response's usage. One response is written as several lines sharing
    message.id: the last copy wins. as_int of each count, inline: this runs once a copy."""
    fresh, output = usage.input_tokens, usage.output_tokens
    written, read = usage.cache_creation_input_tokens, usage.cache_read_input_tokens
    fresh, output = (fresh if type(fresh) is int else 0, output if type(output) is int else 0)
    written, read = (written if type(written) is int else 0, read if type(read) is int else 0)
    out.usage(usage_key, model, fresh, output, written, read)
    if type(at) is str:
        # The same response in two files (a resumed or forked session) has the same
        # message id and request id: counted once, as ccusage counts it.
        key = f"{message_id}\0{request if type(request) is str else ''}" if (
            message_id) else None
        creation = usage.cache_creation
        spend_model = f"{model}-fast" if model and usage.speed == "fast" else model
        out.spend(at, key, spend_model, fresh, output, written, read, 0,
                  as_int(creation.ephemeral_1h_input_tokens)
                  if type(creation) is _CacheCreation else 0, side)


def _relayed(relayed: Any, at: Any, out: Sink) -> None:
    """A subagent's response that a progress record relays to the parent's transcript, as
    Claude Code 2.1 writes them while a subagent runs. Its spend counts once by message.id
    with every other copy (the subagent's own transcript, when it is there, holds the last
    one); where that transcript is missing, this is the only record of what was spent
    (ccusage counts it too)."""
    if type(relayed) is not _RelayedMessage or relayed.type != "assistant":
        return
    reply = relayed.message
    if (type(reply) is not _RelayedReply or type(reply.usage) is not _Usage
            or type(reply.id) is not str or not reply.id):
        return
    if reply.model == "<synthetic>":
        return  # Claude Code's own reply: no spend (see _assistant)
    model = reply.model if type(reply.model) is str and reply.model else None
    if model:
        out.model(model)
    at = relayed.timestamp if type(relayed.timestamp) is str else at
    _spend(reply.usage, reply.id, reply.id, relayed.requestId, at, model, True, out)


def _tool_call(block: _Block, side: bool, out: Sink) -> None:
    name, args = block.name, block.input
    edited: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    command = None
    if type(args) is _ToolInput:
        path = str_or_none(args.file_path) or str_or_none(args.notebook_path)
        if path and name in _EDIT_TOOLS:
            edited = (path,)
        elif path and name in _READ_TOOLS:
            read = (path,)
        elif name == "Bash":
            command = str_or_none(args.command)
    out.tool_call(str_or_none(block.id), name, command, edited, read, side)


def _user(r: _Record, msg: _Message, side: bool, out: Sink) -> None:
    content = msg.content
    texts: list[str] = []
    if type(content) is str:
        texts.append(content)
    elif type(content) is list:
        for block in content:
            if type(block) is not _Block:
                continue
            if block.type == "tool_result":
                if block.is_error is True:
                    out.tool_result(str_or_none(block.tool_use_id), True,
                                    _result_text(block.content), None, side)
                else:
                    out.tool_result(None, False, "", None, side)
            elif block.type == "text" and type(block.text) is str:
                texts.append(block.text)
    if not texts:
        return
    if any(t.startswith(_INTERRUPTED) for t in texts):
        if not side:
            out.failure("interrupted", "", side)
        return
    # Subagent prompts are written by an agent; meta and compact summaries are injected.
    if side or r.isMeta or r.isCompactSummary or r.isVisibleInTranscriptOnly:
        return
    prompt = [t for t in map(human_text, texts) if t]
    if prompt:
        out.prompt("\n".join(prompt))


def _string(raw: msgspec.Raw) -> str | None:
    return str_or_none(json_value(raw)) if raw else None


def _result_text(output: msgspec.Raw) -> str:
    try:
        return text_of(json_value(output)) if output else ""
    except JSON_ERRORS:
        return ""


def _plain(content: Any) -> Any:
    """Message content as plain JSON values, for text_of."""
    if type(content) is list:
        return [{"text": b.text} if type(b) is _Block else b for b in content]
    return content


# -- transcript: stored pieces to turns -------------------------------------------------


def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """The main conversation, then each subagent's (their files sort after the main one)."""
    for piece in pieces:
        name = piece.path.rsplit("/", 1)[-1]
        if name.endswith(".jsonl"):
            yield from _turns(piece, _sidechain_file(piece.path, name))


def _turns(piece: Piece, sidechain_file: bool) -> Iterator[Turn]:
    for r in Records(piece.chunks(), dict):
        msg = r.get("message")
        if r.get("type") not in ("user", "assistant") or not isinstance(msg, dict):
            continue
        if r.get("isMeta") or r.get("isCompactSummary") or r.get("isVisibleInTranscriptOnly"):
            continue
        ts = str_or_none(r.get("timestamp"))
        side = sidechain_file or r.get("isSidechain") is True
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                if r["type"] == "assistant":
                    yield Turn("assistant", block["text"], ts, subagent=side)
                elif text := human_text(block["text"]):
                    yield Turn("user", text, ts, subagent=side)
            elif kind == "tool_use" and isinstance(block.get("name"), str):
                yield Turn("tool_call", arguments_text(block.get("input")), ts,
                           block["name"], side)
            elif kind == "tool_result":
                result = block.get("content")
                yield Turn("tool_result", text_of(result) or arguments_text(result or ""),
                           ts, subagent=side)
