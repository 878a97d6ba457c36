"""Events to a digest: the contract's `show --json` fields, counted by DESIGN.md's rules.

The builder folds the event stream as it comes. What it keeps grows with the number of
distinct messages and tool calls (a key each, for de-duplication), never with their text:
lists are capped and long texts cut.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import operator
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, groupby
from typing import Any

from session_memory.analyze.fingerprint import fingerprint, snippet
from session_memory.analyze.redact import redact_all
from session_memory.formats import events as ev
from session_memory.prices import PROMPT_TIERS
from session_memory.store.tier2 import SLOT_SECONDS

BUILDER_VERSION = 6
"""Bump when a digest rule common to every format changes (here): every digest whose raw
bytes are still stored is made again. A change to one format's parse bumps that format's
PARSER_VERSION instead, and only its digests are made again."""


def analyzer_version(parser_version: int) -> int:
    """The version a digest records (`analyzer_version`): this builder's and its format's
    parser's, so that a digest made by either's older rules compares lower. Digests made
    before parsers had versions recorded the builder's alone; Tier 2's migration read those
    as the builder's with parser version 1."""
    return BUILDER_VERSION * 1000 + parser_version

MAX_PROMPTS = 20  # kept for search; user_turns counts them all
MAX_PROMPT_CHARS = 2000
MAX_LIST = 200  # files edited, files read, commands
MAX_COMMAND_CHARS = 400
MAX_ERRORS = 50
MAX_MESSAGE_CHARS = 2000
TITLE_CHARS = 100
TOKEN_FIELDS = ("input", "output", "cache_creation", "cache_read", "reasoning")
USAGE_COUNTS = ("input", "output", "cache_creation", "cache_creation_1h", "cache_read",
                "reasoning")
"""A response's counts as spend keeps them (store/tier2.py's USAGE_FIELDS)."""
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

    def _positions(self, key: str | int) -> tuple[int, int, int, int]:
        # A keyed hash of the bytes, not hash(): that is salted per process, and the same
        # session must count the same in every analysis. An int key is such a hash already.
        h = key & 0xFFFF_FFFF_FFFF_FFFF if type(key) is int else int.from_bytes(
            hashlib.blake2b(str(key).encode("utf-8", "surrogatepass"),
                            digest_size=8).digest(), "little")
        g = (h * 0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF_FFFF
        m = self._MASK
        return h & m, (h >> 32) & m, g & m, (g >> 32) & m

    def add(self, key: str | int) -> None:
        bits = self.bits
        a, b, c, d = self._positions(key)
        bits[a >> 3] |= 1 << (a & 7)
        bits[b >> 3] |= 1 << (b & 7)
        bits[c >> 3] |= 1 << (c & 7)
        bits[d >> 3] |= 1 << (d & 7)

    def __contains__(self, key: str | int) -> bool:
        bits = self.bits
        a, b, c, d = self._positions(key)
        return bool(bits[a >> 3] >> (a & 7) & 1 and bits[b >> 3] >> (b & 7) & 1
                    and bits[c >> 3] >> (c & 7) & 1 and bits[d >> 3] >> (d & 7) & 1)


class _Window:
    """Values by key in bounded memory. The newest WINDOW keys are kept exactly (so the last
    of a run of copies wins); older ones are handed to `retire` and remembered only in a
    fixed-size filter, so a
    copy that comes back much later (a subagent file replaying a parent message, a
    re-appended call) is recognised as seen and not counted again."""

    WINDOW = 4096

    def __init__(self, retire: Callable[[Any], None] | None = None) -> None:
        # Ordered: the oldest is taken off the front in constant time (a dict would scan
        # past every key taken off it before, until it next resizes).
        self.recent: OrderedDict[str, Any] = OrderedDict()
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
            self.retire_oldest()

    def retire_oldest(self) -> None:
        oldest, value = self.recent.popitem(last=False)
        if self.retire is not None:
            self.retire(value)
        if self.retired is None:
            self.retired = _SeenFilter()
        self.retired.add(oldest)


@dataclass(slots=True)
class KeyedSpend:
    """A session's responses that have a key, one copy each, as sums by slot and packed
    arrays (76 bytes a response, no object of its own): what Tier 2 needs to count a
    response that other sessions' files hold too only once (store/tier2.py)."""

    cells: list[tuple[int, str, int]]
    """(slot, model, prompt class) of each cell of the sums: the slot is the UTC quarter
    hour (store/tier2.py's SLOT_SECONDS)."""
    sums: list[list[Any]]
    """Each cell's [first_at, last_at, input, output, cache_creation, cache_creation_1h,
    cache_read, reasoning, responses]."""
    hashes: array[int]  # each response's key, hashed (see DigestBuilder._key_hash)
    at: array[float]  # its time, epoch seconds
    cell: array[int]  # its cell
    counts: array[int]  # its 6 counts (as in the sums), 6 a response
    tokens: array[int]  # input + output + cache_creation + cache_read: the copy's weight

    @classmethod
    def empty(cls) -> KeyedSpend:
        return cls([], [], array("q"), array("d"), array("I"), array("q"), array("q"))

    def add(self, key_hash: int, entry: tuple[Any, ...], cells: dict[tuple[int, str, int],
                                                                        int]) -> None:
        """One final response, `entry` as DigestBuilder.spend makes them (see _ENTRY)."""
        when, where, counts = entry[0], entry[1:4], entry[4:10]
        self.hashes.append(key_hash)
        self.at.append(when)
        i = cells.get(where)
        if i is None:
            i = cells[where] = len(self.cells)
            self.cells.append(where)
            self.sums.append([when, when, *counts, 1])
        else:
            _fold(self.sums[i], when, counts)
        self.cell.append(i)
        self.counts.extend(counts)
        self.tokens.append(entry[11])

    def extend(self, hashes: array[int], entries: list[tuple[Any, ...]],
               cells: dict[tuple[int, str, int], int]) -> None:
        """Many final responses, in order, each with its key hash: as `add` each, but
        column by column (each cell's sums taken over its responses at once)."""
        if not entries:
            return
        columns = list(zip(*entries, strict=True))
        whens, counts = columns[0], columns[4:10]
        wheres = list(zip(columns[1], columns[2], columns[3], strict=True))
        for where in dict.fromkeys(wheres):  # new cells in the order `add` would make them
            if where not in cells:
                cells[where] = len(self.cells)
                self.cells.append(where)
                self.sums.append([])
        cell = list(map(cells.__getitem__, wheres))
        if cell.count(cell[0]) == len(cell):
            self._fold_cell(cell[0], whens, counts)
        else:
            # The responses by cell, as runs of indices: sorted and grouped in C, no step
            # of Python a response.
            order = sorted(range(len(cell)), key=cell.__getitem__)
            for c, run in groupby(order, key=cell.__getitem__):
                if len(members := list(run)) == 1:
                    i = members[0]
                    self._fold_cell(c, (whens[i],), [(column[i],) for column in counts])
                else:
                    pick = operator.itemgetter(*members)
                    self._fold_cell(c, pick(whens), list(map(pick, counts)))
        # From lists: an array extends from any other iterable an item at a time, slower.
        self.hashes.extend(hashes)
        self.at.fromlist(list(whens))
        self.cell.fromlist(cell)
        self.counts.fromlist(list(chain.from_iterable(zip(*counts, strict=True))))
        self.tokens.fromlist(list(columns[11]))

    def _fold_cell(self, i: int, whens: Sequence[float], counts: Sequence[Sequence[int]]
                   ) -> None:
        """Responses of cell `i` into its sums, `counts` their 6 columns (an empty row: a
        cell new now)."""
        sums = list(map(sum, counts))
        first, last = min(whens), max(whens)
        row = self.sums[i]
        if not row:
            row[:] = [first, last, *sums, len(whens)]
        else:
            row[0], row[1] = min(row[0], first), max(row[1], last)
            row[2:8] = map(operator.add, row[2:8], sums)
            row[8] += len(whens)


def _add_usage(tokens: dict[str | None, tuple[int, ...]], counts: tuple[Any, ...]) -> None:
    """Final usage, (model, *counts), into the totals by model."""
    model, numbers = counts[0], counts[1:]
    total = tokens.get(model)
    tokens[model] = numbers if total is None else tuple(map(operator.add, total, numbers))


def _fold(row: list[Any], when: float, counts: Sequence[int]) -> None:
    """One more response, at `when` with its 6 counts, into a slot's sums row:
    [first_at, last_at, *counts, responses]."""
    if when < row[0]:
        row[0] = when
    if when > row[1]:
        row[1] = when
    row[2:8] = map(operator.add, row[2:8], counts)
    row[8] += 1


@dataclass(slots=True)
class _Facts:
    cwd: str | None = None
    git_branch: str | None = None
    project: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    subagent_session: bool = False
    parent: str | None = None


class DigestBuilder(ev.Sink):
    """The sink that counts: it folds what a parser reports into a digest as it comes."""

    def __init__(self, source: str, *, record_times: bool = True, version: int = 0) -> None:
        self.source = source
        self.record_times = record_times
        """False: the format times only a session's start, so its duration is unknown."""
        self.version = version
        self.facts = _Facts()
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
        self.files_edited = _Capped(MAX_LIST)
        self.files_read = _Capped(MAX_LIST)
        self.commands = _Capped(MAX_LIST, MAX_COMMAND_CHARS)
        self.tool_errors = 0
        self.errors: dict[str, dict[str, Any]] = {}
        # Usage by key (message id), the last copy winning; once final (out of the window)
        # or without a key, its counts go into the totals by model. (The window is handed
        # the totals, not this builder: a builder in no reference cycle is freed as soon as
        # its digest is made, while the collector is paused for a whole pass.)
        self.tokens: dict[str | None, tuple[int, ...]] = {}
        self.usage_by_key = _Window(retire=functools.partial(_add_usage, self.tokens))
        # Usage by slot (quarter hour) of spend: responses by key (the copy with most tokens
        # wins) in a window of the newest, as usage_by_key keeps them; once final, packed
        # into `spent` by key hash (see _key_hash) and remembered in a fixed-size filter.
        # Keyless spend is summed by (slot, model, prompt class).
        self.spent_recent: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._prefix_hash = _blake2b(f"{source}\0".encode(), digest_size=8)
        self.spent_retired: _SeenFilter | None = None
        self.spent = KeyedSpend.empty()
        self.spent_cells: dict[tuple[int, str, int], int] = {}
        self.spent_keyless: dict[tuple[int, str, int], list[Any]] = {}
        self.last_message: str | None = None
        self.subagents: dict[str, dict[str, Any]] = {}
        self.tool_cost: float | None = None
        self.malformed_lines = 0
        # Outcome state, main thread only.
        self.replied = False
        self.last_kind: str | None = None
        self.unresolved_errors = False

    # -- the sink ---------------------------------------------------------------------

    def info(self, *, cwd: str | None = None, git_branch: str | None = None,
             title: str | None = None, project: str | None = None,
             started_at: str | None = None, ended_at: str | None = None,
             subagent_session: bool = False, parent: str | None = None) -> None:
        facts = self.facts
        facts.parent = facts.parent or parent
        facts.cwd = facts.cwd or cwd
        facts.git_branch = facts.git_branch or git_branch
        facts.project = facts.project or project
        facts.started_at = facts.started_at or started_at
        facts.ended_at = ended_at or facts.ended_at
        facts.subagent_session = facts.subagent_session or subagent_session
        if title:
            self.tool_title = title  # the tool's latest title wins

    def times(self, first: str | None, last: str | None) -> None:
        if first and (self.first_ts is None or first < self.first_ts):
            self.first_ts = first
        if last and (self.last_ts is None or last > self.last_ts):
            self.last_ts = last

    def prompt(self, text: str, fallback: bool = False) -> None:
        if fallback:
            self.fallback_turns += 1
            if len(self.fallback_prompts) < MAX_PROMPTS:
                self.fallback_prompts.append(text[:MAX_PROMPT_CHARS])
        else:
            self.user_turns += 1
            if len(self.prompts) < MAX_PROMPTS:
                self.prompts.append(text[:MAX_PROMPT_CHARS])
        self.last_kind = "prompt"
        self.unresolved_errors = False

    def model(self, name: str) -> None:
        self.models.setdefault(name)

    def tool_call(self, call_id: str | None, name: str, command: str | None = None,
                  edited: Sequence[str] = (), read: Sequence[str] = (),
                  sidechain: bool = False) -> None:
        if call_id is not None:
            if self.calls.seen(call_id):
                return  # a re-appended copy of the same call
            self.calls.put(call_id, name)
        self.tool_calls[name] = self.tool_calls.get(name, 0) + 1
        for path in edited:
            self.files_edited.add(path)
        for path in read:
            self.files_read.add(path)
        if command:
            self.commands.add(command)

    def tool_result(self, call_id: str | None, is_error: bool, text: str = "",
                    tool: str | None = None, sidechain: bool = False) -> None:
        if not sidechain:
            self.last_kind = "tool_error" if is_error else "tool_ok"
            self.unresolved_errors = is_error
        if is_error:
            self.tool_errors += 1
            self._error(tool or (self.calls.get(call_id) if call_id else None) or "unknown",
                        text)

    def _error(self, tool: str, text: str) -> None:
        cut = snippet(text)
        key = f"{tool}\0{fingerprint(cut)}"
        if key in self.errors:
            self.errors[key]["count"] += 1
        elif len(self.errors) < MAX_ERRORS:
            self.errors[key] = {"tool": tool, "snippet": cut, "fingerprint": fingerprint(cut),
                                "count": 1}

    def usage(self, key: str | None, model: str | None, input: int = 0, output: int = 0,
              cache_creation: int = 0, cache_read: int = 0, reasoning: int = 0) -> None:
        counts = (model, input, output, cache_creation, cache_read, reasoning)
        if key is None:
            _add_usage(self.tokens, counts)
            return
        window = self.usage_by_key
        recent = window.recent
        if key in recent:
            recent[key] = counts  # the last copy wins, in the place of the first
        elif window.retired is None or key not in window.retired:
            recent[key] = counts  # window.put, inline: this runs once a response
            if len(recent) > _Window.WINDOW:
                window.retire_oldest()

    def spend(self, at: str | None, key: str | None, model: str | None, input: int = 0,
              output: int = 0, cache_creation: int = 0, cache_read: int = 0,
              reasoning: int = 0, cache_creation_1h: int = 0, sidechain: bool = False) -> None:
        if at is None:
            return  # no slot to put it in (its tokens still count in `tokens`)
        try:  # to_epoch, inline: this runs once a response
            when = _from_iso(at).timestamp()
        except ValueError:
            epoch = to_epoch(at)
            if epoch is None:
                return  # as above
            when = epoch
        prompt = input + cache_creation + cache_read
        prompt_over = (PROMPT_TIERS[_tiers_below(PROMPT_TIERS, prompt) - 1]
                       if prompt > _FIRST_TIER else 0)  # prices.prompt_class, inline
        tokens = prompt + output  # what decides which copy of a response wins
        if (input | output | cache_creation | cache_creation_1h | cache_read | reasoning
                ) >> _COUNT_BITS:  # past 2**48, or below 0: see _storable
            input, output, cache_creation, cache_creation_1h, cache_read, reasoning = map(
                _storable, (input, output, cache_creation, cache_creation_1h, cache_read,
                            reasoning))
            tokens = input + output + cache_creation + cache_read
        if key is None:
            where = (int(when // SLOT_SECONDS), model or UNKNOWN_MODEL, prompt_over)
            counts = (input, output, cache_creation, cache_creation_1h, cache_read, reasoning)
            row = self.spent_keyless.get(where)
            if row is None:
                self.spent_keyless[where] = [when, when, *counts, 1]
            else:
                _fold(row, when, counts)
            return
        # What KeyedSpend keeps of a response, and what decides which copy wins: one flat
        # tuple (see _ENTRY). Its key is hashed only once it is final: the copies of a
        # response (a line for each of its content blocks) cost no hash of their own.
        recent = self.spent_recent
        old = recent.get(key)
        if old is None:
            if self.spent_retired is not None and self._key_hash(key) in self.spent_retired:
                return  # a copy of a response counted already, long after it
        elif not (old[10] != sidechain and old[10] or old[10] == sidechain and tokens > old[11]):
            # The copy kept wins: a main-thread copy beats a sidechain's, then the one with
            # more tokens (ccusage's rule).
            return
        recent[key] = (when, int(when // SLOT_SECONDS), model or UNKNOWN_MODEL, prompt_over,
                       input, output, cache_creation, cache_creation_1h, cache_read,
                       reasoning, sidechain, tokens)
        if old is None and len(recent) > _Window.WINDOW:
            oldest, final = recent.popitem(last=False)
            oldest_hash = self._key_hash(oldest)
            self.spent.add(oldest_hash, final, self.spent_cells)
            if self.spent_retired is None:
                self.spent_retired = _SeenFilter()
            self.spent_retired.add(oldest_hash)

    def _key_hash(self, key: str) -> int:
        """A response's key (with its source) hashed to a signed 64-bit integer, the same
        in every process: what Tier 2 knows the response by. (The hash of the source's
        prefix, copied and fed the key, is the hash of both: it costs a third less than a
        new one, whose many keyword arguments take long to parse.)"""
        state = self._prefix_hash.copy()
        state.update(key.encode())
        result: int = _hash_of(state.digest())[0]
        return result

    def spend_rows(self) -> list[tuple[Any, ...]]:
        """The keyless spend as Tier 2 keeps it: store/tier2.py's SPEND_COLUMNS."""
        return [(None, slot, model, prompt_over, *row)
                for (slot, model, prompt_over), row in self.spent_keyless.items()]

    def keyed_spend(self) -> KeyedSpend:
        """Every response with a key, its counts final now."""
        recent = self.spent_recent
        if recent:
            self.spent.extend(_key_hashes(self._prefix_hash, recent), list(recent.values()),
                              self.spent_cells)
            recent.clear()
        return self.spent

    def cost(self, usd: float) -> None:
        if math.isfinite(usd) and usd >= 0:
            self.tool_cost = (self.tool_cost or 0.0) + usd

    def files(self, edited: Sequence[str] = (), read: Sequence[str] = ()) -> None:
        for path in edited:
            self.files_edited.add(path)
        for path in read:
            self.files_read.add(path)

    def assistant_text(self, text: str, sidechain: bool = False) -> None:
        if sidechain or text.isspace() or not text:
            return
        self.last_message = text  # cut when the digest is made: most are replaced
        self.replied = True
        self.last_kind = "reply"

    def failure(self, kind: str, text: str = "", sidechain: bool = False) -> None:
        if text:
            self._error(kind, text)
        if not sidechain:
            self.last_kind = kind

    def subagent(self, agent_id: str, agent_type: str | None = None,
                 description: str | None = None, session: bool = False) -> None:
        entry = self.subagents.setdefault(agent_id, {"id": agent_id, "type": None,
                                                     "description": None})
        if session:
            # The session it names, which a forget of that session takes out (tier2.linked).
            entry["session_id"] = f"{self.source}:{agent_id}"
        entry["type"] = agent_type or entry["type"]
        entry["description"] = description or entry["description"]

    def malformed(self, lines: int) -> None:
        self.malformed_lines += lines

    # -- the digest -------------------------------------------------------------------

    def tokens_by_model(self) -> dict[str, dict[str, int]]:
        # The window's counts are final now, summed by model (each model's in one pass).
        final = list(self.usage_by_key.recent.values())
        models = dict.fromkeys(map(operator.itemgetter(0), final))
        window = {model: final for model in models} if len(models) == 1 else {
            model: [counts for counts in final if counts[0] == model] for model in models}
        by_model: dict[str, list[int]] = {}
        for model, counts in [*self.tokens.items(),
                              *((m, tuple(map(sum, list(zip(*rows, strict=True))[1:])))
                                for m, rows in window.items())]:
            total = by_model.setdefault(model or UNKNOWN_MODEL, [0] * len(TOKEN_FIELDS))
            for i, n in enumerate(counts):
                total[i] += n
        return {m: dict(zip(TOKEN_FIELDS, map(_storable, c), strict=True))
                for m, c in by_model.items()}

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
        if not turns and not self.facts.subagent_session:
            prompts, turns = self.fallback_prompts, self.fallback_turns
        elif self.facts.subagent_session:
            prompts, turns = [], 0  # an agent wrote every prompt of a subagent thread
        first_prompt = prompts[0] if prompts else None
        # A subagent thread is titled by the task its parent gave it.
        title = next((t for t in (self.tool_title, first_prompt, *self.prompts[:1],
                                  *self.fallback_prompts[:1]) if t), None)
        started = self.facts.started_at or self.first_ts
        ended = self.facts.ended_at or self.last_ts
        by_model = self.tokens_by_model()
        tokens = {f: _storable(sum(c[f] for c in by_model.values())) for f in TOKEN_FIELDS}
        digest = {
            "title": _one_line(title, TITLE_CHARS) if title else None,
            "first_prompt": first_prompt,
            "cwd": self.facts.cwd,
            "git_branch": self.facts.git_branch,
            "models": list(self.models),
            "started_at": started,
            "ended_at": ended,
            "duration_s": _duration(started, ended) if self.record_times else None,
            "user_turns": turns,
            "tool_calls": dict(sorted(self.tool_calls.items(), key=lambda kv: (-kv[1], kv[0]))),
            "files_edited": self.files_edited.as_list(),
            "files_read": self.files_read.as_list(),
            "commands": self.commands.as_list(),
            "tool_errors": self.tool_errors,
            "errors": list(self.errors.values()),
            "tokens": tokens,
            "outcome": self.outcome(),
            "last_assistant_message": self.last_message and self.last_message[
                :MAX_MESSAGE_CHARS],
            "subagents": list(self.subagents.values()),
            "analyzer_version": self.version,
            # More than the contract asks for:
            "source": self.source,
            # A subagent's session of its own links to the session that started it.
            "parent_session": f"{self.source}:{self.facts.parent}" if self.facts.parent
            else None,
            # The tool's own figure, where it writes one (not priced by us).
            "tool_cost_usd": None if self.tool_cost is None else round(self.tool_cost, 6),
            "project": self.facts.project or self.facts.cwd,
            "prompts": prompts,
            "tokens_by_model": by_model,
            "malformed_lines": self.malformed_lines,
            "truncated": {"files_edited": self.files_edited.dropped,
                          "files_read": self.files_read.dropped,
                          "commands": self.commands.dropped},
        }
        result: dict[str, Any] = redact_all(digest)
        # Tier 2 keeps these in its usage tables.
        result["spend"] = self.spend_rows()
        result["spend_keyed"] = self.keyed_spend()
        return result


_blake2b = hashlib.blake2b
_hash_of = struct.Struct(">q").unpack  # 8 bytes, big-endian, to a signed integer

_ENTRY = ("at", "slot", "model", "prompt_over", *USAGE_COUNTS, "sidechain", "tokens")
"""A keyed response as DigestBuilder.spend keeps it until it is final: its time (epoch
seconds), its cell (slot, model, prompt class), its 6 counts (as in KeyedSpend.sums), whether
a sidechain wrote it, and its weight (input + output + cache_creation + cache_read)."""


def _key_hashes(prefix: Any, keys: Iterable[str]) -> array[int]:
    """DigestBuilder._key_hash of each key, in order: the digests joined and read as
    big-endian integers in one step, not each unpacked on its own."""
    digests = []
    for key in keys:
        state = prefix.copy()
        state.update(key.encode())
        digests.append(state.digest())
    hashes = array("q", b"".join(digests))
    if sys.byteorder == "little":
        hashes.byteswap()
    return hashes


def whole_session_spend(digest: dict[str, Any], input_includes_cache_read: bool
                        ) -> list[tuple[Any, ...]]:
    """The usage of a digest made before usage was kept by the hour: each model's tokens
    at the session's start. `input_includes_cache_read`: the format's digest counted
    cache reads in `input` (they come off here)."""
    at = to_epoch(digest.get("started_at")) or to_epoch(digest.get("ended_at"))
    by_model = digest.get("tokens_by_model")
    if at is None or not isinstance(by_model, dict):
        return []
    rows: list[tuple[Any, ...]] = []
    for model, tokens in by_model.items():
        if not isinstance(tokens, dict):
            continue
        count = {f: n if type(n := tokens.get(f)) is int else 0 for f in TOKEN_FIELDS}
        if input_includes_cache_read:
            count["input"] = max(count["input"] - count["cache_read"], 0)
        rows.append((None, int(at // SLOT_SECONDS), str(model), 0, at, at, count["input"],
                     count["output"], count["cache_creation"], 0, count["cache_read"],
                     count["reasoning"], 0))
    return rows


def build(source: str, parse: Callable[[ev.Sink], None], *, version: int,
          record_times: bool = True) -> dict[str, Any]:
    """The redacted digest of what `parse` reports (a format's parse, its pieces bound);
    `version`: its analyzer_version (see analyzer_version: no default, as a digest without
    its own would be made again on every pass)."""
    builder = DigestBuilder(source, record_times=record_times, version=version)
    parse(builder)
    return builder.digest()


_COUNT_BITS = 48
_MAX_COUNT = 1 << _COUNT_BITS
_FIRST_TIER = PROMPT_TIERS[0]
"""A prompt of no more tokens than this is of class 0, without a search of the tiers."""
_tiers_below = bisect.bisect_left


def _storable(count: int) -> int:
    """A count within 2**48 either way: no session comes near it, so anything past it is a
    broken file's, and a million sessions of it still add up within SQLite's integers."""
    return max(-_MAX_COUNT, min(count, _MAX_COUNT))


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def to_epoch(value: Any) -> float | None:
    """An ISO 8601 time (naive ones as local time, as some tools write them) to epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return _from_iso(value).timestamp()  # a final Z is read as UTC (Python 3.11 on)
    except ValueError:
        pass
    try:
        return _from_iso(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_from_iso = datetime.fromisoformat


def _duration(started: str | None, ended: str | None) -> float | None:
    start, end = to_epoch(started), to_epoch(ended)
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)
