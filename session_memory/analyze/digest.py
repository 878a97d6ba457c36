"""Events to a digest: the contract's `show --json` fields, counted by DESIGN.md's rules.

The builder folds the event stream as it comes. What it keeps grows with the number of
distinct messages and tool calls (a key each, for de-duplication), never with their text:
lists are capped and long texts cut.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from session_memory.analyze import events as ev
from session_memory.analyze.fingerprint import fingerprint, snippet
from session_memory.analyze.redact import redact_all

ANALYZER_VERSION = 1
"""Bump when a digest rule changes: `analyze --force` re-derives old digests."""

MAX_PROMPTS = 20  # kept for search; user_turns counts them all
MAX_PROMPT_CHARS = 2000
MAX_LIST = 200  # files edited, files read, commands
MAX_COMMAND_CHARS = 400
MAX_ERRORS = 50
MAX_MESSAGE_CHARS = 2000
TITLE_CHARS = 100
TOKEN_FIELDS = ("input", "output", "cache_creation", "cache_read", "reasoning")
UNKNOWN_MODEL = "unknown"


class _Capped:
    """An ordered set of at most `limit` strings; `total` counts every distinct one offered
    while under the cap, and every one offered after it (so it is a lower bound)."""

    def __init__(self, limit: int, cut: int = 0) -> None:
        self.items: dict[str, None] = {}
        self.limit, self.cut, self.dropped = limit, cut, 0

    def add(self, item: str) -> None:
        if self.cut:
            item = item[: self.cut]
        if item in self.items:
            return
        if len(self.items) < self.limit:
            self.items[item] = None
        else:
            self.dropped += 1

    def as_list(self) -> list[str]:
        return list(self.items)


class _SeenFilter:
    """A fixed-size Bloom filter: set membership for any number of keys in 4 MiB.

    A key never added is taken for seen with odds of about 1 in 6,000 after a million keys
    (none below the window's 4,096, which are exact); memory no longer grows with the
    session, which is what a 1 GB session needs."""

    BITS = 1 << 25
    _MASK = BITS - 1

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS // 8)

    def _positions(self, key: str) -> tuple[int, int, int, int]:
        h = hash(key) & 0xFFFF_FFFF_FFFF_FFFF
        g = (h * 0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF_FFFF
        m = self._MASK
        return h & m, (h >> 32) & m, g & m, (g >> 32) & m

    def add(self, key: str) -> None:
        bits = self.bits
        for p in self._positions(key):
            bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str) -> bool:
        bits = self.bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))


class _Window:
    """Values by key in bounded memory. The newest WINDOW keys are kept exactly (so the last
    of a run of copies wins); older ones are handed to `retire` and remembered only in a
    fixed-size filter, so a
    copy that comes back much later (a subagent file replaying a parent message, a
    re-appended call) is recognised as seen and not counted again."""

    WINDOW = 4096

    def __init__(self, retire: Callable[[Any], None] | None = None) -> None:
        self.recent: dict[str, Any] = {}
        self.retired: _SeenFilter | None = None  # made when first needed: most sessions never
        self.retire = retire

    def seen(self, key: str) -> bool:
        return key in self.recent or (self.retired is not None and key in self.retired)

    def get(self, key: str) -> Any:
        return self.recent.get(key)

    def put(self, key: str, value: Any) -> None:
        recent = self.recent
        recent[key] = value
        if len(recent) > self.WINDOW:
            oldest = next(iter(recent))
            if self.retire is not None:
                self.retire(recent.pop(oldest))
            else:
                del recent[oldest]
            if self.retired is None:
                self.retired = _SeenFilter()
            self.retired.add(oldest)


class DigestBuilder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.info = ev.Info()
        self.tool_title: str | None = None
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.prompts: list[str] = []
        self.user_turns = 0
        self.fallback_prompts: list[str] = []
        self.fallback_turns = 0
        self.models: dict[str, None] = {}
        self.calls = _Window()  # call id -> tool name: each call counted once
        self.tool_calls: dict[str, int] = {}
        self.edited = _Capped(MAX_LIST)
        self.read = _Capped(MAX_LIST)
        self.commands = _Capped(MAX_LIST, MAX_COMMAND_CHARS)
        self.tool_errors = 0
        self.errors: dict[str, dict[str, Any]] = {}
        # Usage by key (message id), the last copy winning; once final (out of the window)
        # or without a key, its counts go into the totals by model.
        self.usage = _Window(retire=self._add_usage)
        self.tokens: dict[str | None, tuple[int, ...]] = {}
        self.last_message: str | None = None
        self.subagents: dict[str, dict[str, Any]] = {}
        self.malformed = 0
        # Outcome state, main thread only.
        self.replied = False
        self.last_kind: str | None = None
        self.unresolved_errors = False
        self._handlers = {
            ev.Info: self._info, ev.Times: self._times, ev.Prompt: self._prompt,
            ev.Model: self._model, ev.ToolCall: self._tool_call, ev.ToolResult: self._tool_result,
            ev.Usage: self._usage, ev.Files: self._files, ev.AssistantText: self._assistant,
            ev.Failure: self._failure, ev.Subagent: self._subagent, ev.Malformed: self._malformed,
        }

    def feed(self, events: Iterable[ev.Event]) -> DigestBuilder:
        handlers = self._handlers
        for event in events:
            handlers[type(event)](event)  # type: ignore[operator]
        return self

    # -- handlers ---------------------------------------------------------------------

    def _info(self, e: ev.Info) -> None:
        info = self.info
        info.cwd = info.cwd or e.cwd
        info.git_branch = info.git_branch or e.git_branch
        info.project = info.project or e.project
        info.started_at = info.started_at or e.started_at
        info.ended_at = e.ended_at or info.ended_at
        info.subagent_session = info.subagent_session or e.subagent_session
        if e.title:
            self.tool_title = e.title  # the tool's latest title wins

    def _times(self, e: ev.Times) -> None:
        if e.first and (self.first_ts is None or e.first < self.first_ts):
            self.first_ts = e.first
        if e.last and (self.last_ts is None or e.last > self.last_ts):
            self.last_ts = e.last

    def _prompt(self, e: ev.Prompt) -> None:
        if e.fallback:
            self.fallback_turns += 1
            if len(self.fallback_prompts) < MAX_PROMPTS:
                self.fallback_prompts.append(e.text[:MAX_PROMPT_CHARS])
        else:
            self.user_turns += 1
            if len(self.prompts) < MAX_PROMPTS:
                self.prompts.append(e.text[:MAX_PROMPT_CHARS])
        self.last_kind = "prompt"
        self.unresolved_errors = False

    def _model(self, e: ev.Model) -> None:
        self.models.setdefault(e.name)

    def _tool_call(self, e: ev.ToolCall) -> None:
        if e.call_id is not None:
            if self.calls.seen(e.call_id):
                return  # a re-appended copy of the same call
            self.calls.put(e.call_id, e.name)
        self.tool_calls[e.name] = self.tool_calls.get(e.name, 0) + 1
        for path in e.edited:
            self.edited.add(path)
        for path in e.read:
            self.read.add(path)
        if e.command:
            self.commands.add(e.command)

    def _tool_result(self, e: ev.ToolResult) -> None:
        if not e.sidechain:
            self.last_kind = "tool_error" if e.is_error else "tool_ok"
            self.unresolved_errors = e.is_error
        if e.is_error:
            self.tool_errors += 1
            tool = e.tool or (self.calls.get(e.call_id) if e.call_id else None) or "unknown"
            self._error(tool, e.text)

    def _error(self, tool: str, text: str) -> None:
        cut = snippet(text)
        key = f"{tool}\0{fingerprint(cut)}"
        if key in self.errors:
            self.errors[key]["count"] += 1
        elif len(self.errors) < MAX_ERRORS:
            self.errors[key] = {"tool": tool, "snippet": cut, "fingerprint": fingerprint(cut),
                                "count": 1}

    def _usage(self, e: ev.Usage) -> None:
        counts = (e.model, e.input, e.output, e.cache_creation, e.cache_read, e.reasoning)
        if e.key is None:
            self._add_usage(counts)
        elif e.key in self.usage.recent or not self.usage.seen(e.key):
            self.usage.put(e.key, counts)

    def _add_usage(self, counts: tuple[Any, ...]) -> None:
        model, numbers = counts[0], counts[1:]
        total = self.tokens.get(model)
        self.tokens[model] = numbers if total is None else tuple(map(operator.add, total,
                                                                        numbers))

    def _files(self, e: ev.Files) -> None:
        for path in e.edited:
            self.edited.add(path)
        for path in e.read:
            self.read.add(path)

    def _assistant(self, e: ev.AssistantText) -> None:
        if e.sidechain or not e.text.strip():
            return
        self.last_message = e.text[:MAX_MESSAGE_CHARS]
        self.replied = True
        self.last_kind = "reply"

    def _failure(self, e: ev.Failure) -> None:
        if e.text:
            self._error(e.kind, e.text)
        if not e.sidechain:
            self.last_kind = e.kind

    def _subagent(self, e: ev.Subagent) -> None:
        entry = self.subagents.setdefault(e.agent_id, {"id": e.agent_id, "type": None,
                                                       "description": None})
        entry["type"] = e.agent_type or entry["type"]
        entry["description"] = e.description or entry["description"]

    def _malformed(self, e: ev.Malformed) -> None:
        self.malformed += e.lines

    # -- the digest -------------------------------------------------------------------

    def tokens_by_model(self) -> dict[str, dict[str, int]]:
        by_model: dict[str, tuple[int, ...]] = {}
        final = [(model, counts) for model, counts in self.tokens.items()]
        final += [(c[0], c[1:]) for c in self.usage.recent.values()]  # the window: final now
        for model, counts in final:
            name = model or UNKNOWN_MODEL
            total = by_model.get(name)
            by_model[name] = counts if total is None else tuple(map(operator.add, total, counts))
        return {m: dict(zip(TOKEN_FIELDS, c, strict=True)) for m, c in by_model.items()}

    def outcome(self) -> str:
        """How the session ended, from its main thread (subagents do not decide it):

        - unknown: no prompt and no reply, nothing to judge by;
        - abandoned: it ends on a prompt nobody answered, or the person interrupted it;
        - fail: it ends on an agent failure (API error, aborted turn), or the tool errors
          of its last turn were never followed by a tool call that worked;
        - success: the agent answered last and its last tool calls worked.
        """
        prompted = self.user_turns or self.fallback_turns
        if not prompted and not self.replied:
            return "unknown"
        if self.last_kind in ("prompt", "interrupted"):
            return "abandoned"
        if self.last_kind in ("api_error", "aborted", "tool_error") or self.unresolved_errors:
            return "fail"
        return "success" if self.replied else "unknown"

    def digest(self) -> dict[str, Any]:
        prompts, turns = self.prompts, self.user_turns
        if not turns and not self.info.subagent_session:
            prompts, turns = self.fallback_prompts, self.fallback_turns
        elif self.info.subagent_session:
            prompts, turns = [], 0  # an agent wrote every prompt of a subagent thread
        first_prompt = prompts[0] if prompts else None
        # A subagent thread is titled by the task its parent gave it.
        title = next((t for t in (self.tool_title, first_prompt, *self.prompts[:1],
                                  *self.fallback_prompts[:1]) if t), None)
        started = self.info.started_at or self.first_ts
        ended = self.info.ended_at or self.last_ts
        by_model = self.tokens_by_model()
        tokens = {f: sum(c[f] for c in by_model.values()) for f in TOKEN_FIELDS}
        digest = {
            "title": _one_line(title, TITLE_CHARS) if title else None,
            "first_prompt": first_prompt,
            "cwd": self.info.cwd,
            "git_branch": self.info.git_branch,
            "models": list(self.models),
            "started_at": started,
            "ended_at": ended,
            "duration_s": _duration(started, ended) if self.source != "aider" else None,
            "user_turns": turns,
            "tool_calls": dict(sorted(self.tool_calls.items(), key=lambda kv: (-kv[1], kv[0]))),
            "files_edited": self.edited.as_list(),
            "files_read": self.read.as_list(),
            "commands": self.commands.as_list(),
            "tool_errors": self.tool_errors,
            "errors": list(self.errors.values()),
            "tokens": tokens,
            "outcome": self.outcome(),
            "last_assistant_message": self.last_message,
            "subagents": list(self.subagents.values()),
            "analyzer_version": ANALYZER_VERSION,
            # More than the contract asks for:
            "source": self.source,
            "project": self.info.project or self.info.cwd,
            "prompts": prompts,
            "tokens_by_model": by_model,
            "malformed_lines": self.malformed,
            "truncated": {"files_edited": self.edited.dropped, "files_read": self.read.dropped,
                          "commands": self.commands.dropped},
        }
        result: dict[str, Any] = redact_all(digest)
        return result


def build(source: str, events: Iterable[ev.Event]) -> dict[str, Any]:
    """The redacted digest of one session's event stream."""
    return DigestBuilder(source).feed(events).digest()


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def to_epoch(value: Any) -> float | None:
    """An ISO 8601 time (naive ones as local time, as Aider writes them) to epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _duration(started: str | None, ended: str | None) -> float | None:
    start, end = to_epoch(started), to_epoch(ended)
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)
