"""`session-memory mcp`: the memory served to agents over the Model Context Protocol.

A stdio server on the official SDK. Read-only: the stores are opened only to read, each
call reads one snapshot, and nothing ever takes a write lock, so the daemon never waits
for it (and it works whether or not the daemon runs). Redacted: every answer goes through
the digests' redaction before it leaves the process. No tool takes a path: nothing under
the data directory can be reached by one.

The SDK and the stores are imported when the server starts and when a tool is first
called, not when the CLI loads this module.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from session_memory.analyze.redact import redact, redact_all
from session_memory.config import Settings
from session_memory.transcript import MAX_LIMIT as PAGE_MAX

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from session_memory.memory import Memory

NAME = "session-memory"
SEARCH_MAX = 100
LIST_MAX = 500

INSTRUCTIONS = """\
Memory of the coding-agent sessions run on this machine (every agent tool it reads):
what each session was asked, what it did (files, commands, errors),
how it ended and what it cost. Recall with search_sessions, browse with list_sessions,
then get_session for one session's digest or read_transcript for its conversation.
get_usage answers what was spent. Everything is read-only; secrets are redacted."""

SEARCH_DESCRIPTION = """\
Full-text search over the digests of past coding-agent sessions on this machine. Use it
to recall how something was done or fixed before ("how did we fix the flaky login
test"), which session touched a file ("billing.py"), or what was decided about a topic.

Matches titles, the user's prompts, files edited and read, commands run, error
messages and the agent's final reply; titles and prompts rank highest. Every word must
match (put OR between words to accept any); paths, dashes and quotes are taken
literally. Returns a JSON list, best match first, of {id, title, project, started_at
(Unix seconds), snippet}: the snippet shows the matched words in [brackets].

Narrow with `project` (a folder, such as /home/me/app, for sessions run in it or below
it; or a bare folder name, such as app) and `since`. Then call get_session(id) for the
whole digest or read_transcript(id) for the conversation itself."""

LIST_DESCRIPTION = """\
List recorded coding-agent sessions, most recently active first, when you want the
latest sessions rather than ones about a topic (for that, use search_sessions).

Returns a JSON list of {id, source (the agent tool), state (active, ended, analyzed or
evicted: raw transcript gone, digest kept), files, raw_bytes, stored_bytes, started_at,
ended_at, analyzed_at, evicted_at (Unix seconds or null), pinned}.

Narrow with `project` (a folder or a bare folder name; only sessions already analyzed
know their folder), `source` (the agent tool, by the name its ids begin with) and
`since`."""

GET_DESCRIPTION = """\
One session's record and digest: what it was asked (title, first_prompt, user_turns),
where it ran (cwd, git_branch), which models, tools called by name, files edited and
read, commands run, tool errors with snippets, tokens, outcome and the agent's last
message. The digest is null until the session has been analyzed. Ids come from
search_sessions or list_sessions (a unique prefix of an id also works). For the
conversation itself, use read_transcript."""

USAGE_DESCRIPTION = """\
Tokens (and cost in USD where the model's price is known) spent by coding agents on this
machine, from the session digests, so sessions whose raw transcript was evicted still
count. Use it for "what did I spend this week" or "which model/project costs most".

Returns a JSON list of {key, sessions, input, output, cache_creation, cache_read,
reasoning, cost_usd}, one row per key of `by`: day (YYYY-MM-DD), week (YYYY-Www), month
(YYYY-MM), model, source, project or session. `input` never includes cache reads."""

TRANSCRIPT_DESCRIPTION = """\
Page through one session's conversation from its stored raw transcript: the user's
messages, the agent's replies, its tool calls (role tool_call, the arguments as JSON,
`tool` naming the tool) and their results (role tool_result), in order. Long tool
output is summarised: its head and tail are kept with a note of how much was cut.
Secrets are redacted.

Returns {id, messages: [{role, text, timestamp}], next_offset}; call again with
offset=next_offset for the next page, until next_offset is null. A session whose raw
transcript was evicted gives an error: only its digest remains (use get_session)."""

SinceText = Annotated[str | None, Field(
    description="Only sessions active at or after this time: a date (2025-01-31, local "
                "time), an ISO 8601 time, or an age such as 7d, 12h or 30m.")]
ProjectText = Annotated[str | None, Field(
    description="A folder (/home/me/app: sessions run in it or below it) or a bare folder "
                "name (app).")]
SessionId = Annotated[str, Field(
    min_length=1, description="A session id from search_sessions or list_sessions "
                              "(<source>:<the tool's own id>); a unique prefix also works.")]


class ToolFailure(Exception):
    """Raised as the SDK's ToolError: a message the model can act on."""


def parse_time(text: str, name: str) -> float | None:
    """A date (local midnight), an ISO 8601 time or an age such as 7d, as epoch seconds:
    as the CLI's --since reads it."""
    from session_memory.usage import parse_when

    try:
        return parse_when(text)
    except ValueError as e:
        raise ToolFailure(f"{name} {e}") from None


class Tools:
    """The tools' bodies over one read-only Memory, opened at the first call (and again
    after a failed open, so a store created later is found). The SDK runs each call on a
    worker thread: one at a time, as one connection allows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._memory: Memory | None = None
        self._lock = threading.Lock()

    @contextmanager
    def memory(self, *tiers: str) -> Iterator[Memory]:
        """The memory, with one snapshot of each of `tiers` held for the whole call."""
        import apsw

        from session_memory.errors import SessionMemoryError
        from session_memory.memory import Memory

        with self._lock:
            if self._memory is None:
                self._memory = Memory(self.settings, read_only=True)
            memory = self._memory
            try:
                stores = [getattr(memory, tier) for tier in tiers]
                with _snapshots(stores):
                    yield memory
            except SessionMemoryError as e:
                raise ToolFailure(str(e)) from None
            except apsw.Error as e:
                # A store replaced or damaged under us: open afresh at the next call.
                memory.close()
                self._memory = None
                raise ToolFailure(f"the memory could not be read ({e}); try again") from None
            except ValueError as e:
                raise ToolFailure(str(e)) from None

    def close(self) -> None:
        with self._lock:
            if self._memory is not None:
                self._memory.close()
                self._memory = None

    def search_sessions(self, query: str, limit: int = 10, project: str | None = None,
                        since: str | None = None) -> list[dict[str, Any]]:
        if not query.strip():
            raise ToolFailure("query is empty: give the words to search for")
        start = parse_time(since, "since") if since else None
        with self.memory("tier2") as memory:
            hits = memory.search(query, limit, project=project or None, since=start)
        return [{"id": h["id"], "title": h["title"], "project": h["project"],
                 "started_at": h["started_at"], "snippet": h["snippet"]} for h in hits]

    def list_sessions(self, project: str | None = None, source: str | None = None,
                      since: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        start = parse_time(since, "since") if since else None
        with self.memory("tier1", "tier2") as memory:  # tier2: tokens and cost
            return memory.sessions(source=source or None, limit=limit,
                                   project=project or None, since=start)

    def get_session(self, id: str) -> dict[str, Any]:
        with self.memory("tier1", "tier2") as memory:
            return memory.show(id)

    def get_usage(self, by: str = "day", since: str | None = None,
                  until: str | None = None) -> list[dict[str, Any]]:
        with self.memory("tier2") as memory:
            return memory.usage(by, since or None, until or None)

    def read_transcript(self, id: str, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        with self.memory("tier1") as memory:
            return memory.transcript(id, offset, limit)


@contextmanager
def _snapshots(stores: list[Any]) -> Iterator[None]:
    with ExitStack() as snapshots:
        for store in stores:
            snapshots.enter_context(store.snapshot())
        yield


def _answer(data: Any) -> str:
    """What leaves the process: redacted as digests are, as compact JSON."""
    return json.dumps(redact_all(data), ensure_ascii=False, separators=(",", ":"))


def build(settings: Settings) -> tuple[MCPServer, Tools]:
    """The server and the tools behind it (close the tools when done)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    from session_memory import __version__

    tools = Tools(settings)
    server: MCPServer = MCPServer(NAME, version=__version__, instructions=INSTRUCTIONS,
                                  log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                                idempotent_hint=True, open_world_hint=False)

    def run(body: Callable[[], Any]) -> str:
        try:
            return _answer(body())
        except ToolFailure as e:
            raise ToolError(redact(str(e))) from None  # it may quote what it was given

    def register(fn: Callable[..., str], title: str, description: str) -> None:
        server.add_tool(fn, title=title, description=description, annotations=read_only,
                        structured_output=False)

    def search_sessions(
        query: Annotated[str, Field(min_length=1, description=(
            "Words to look for, such as: flaky login test, billing.py, "
            "\"connection refused\". All must match; OR between words accepts any."))],
        limit: Annotated[int, Field(ge=1, le=SEARCH_MAX, description="At most this many "
                                    "results.")] = 10,
        project: ProjectText = None,
        since: SinceText = None,
    ) -> str:
        return run(lambda: tools.search_sessions(query, limit, project, since))

    def list_sessions(
        project: ProjectText = None,
        source: Annotated[str | None, Field(description=(
            "Only sessions of this source: the agent tool's name that session ids begin "
            "with (the part before the colon)."))] = None,
        since: SinceText = None,
        limit: Annotated[int, Field(ge=1, le=LIST_MAX, description="At most this many "
                                    "sessions, newest first.")] = 20,
    ) -> str:
        return run(lambda: tools.list_sessions(project, source, since, limit))

    def get_session(id: SessionId) -> str:
        return run(lambda: tools.get_session(id))

    def get_usage(
        by: Annotated[Literal["day", "week", "month", "model", "source", "project",
                              "session"], Field(description="One row per this.")] = "day",
        since: Annotated[str | None, Field(description=(
            "Only tokens spent at or after this time: a date (2025-01-31, local time), an "
            "ISO 8601 time, or an age such as 7d."))] = None,
        until: Annotated[str | None, Field(description=(
            "Only tokens spent before this time (a date: up to the end of that day)."))
        ] = None,
    ) -> str:
        return run(lambda: tools.get_usage(by, since, until))

    def read_transcript(
        id: SessionId,
        offset: Annotated[int, Field(ge=0, description=(
            "Messages to skip: 0 for the start, else the next_offset of the page "
            "before."))] = 0,
        limit: Annotated[int, Field(ge=1, le=PAGE_MAX, description="Messages in this "
                                    "page.")] = 50,
    ) -> str:
        return run(lambda: tools.read_transcript(id, offset, limit))

    register(search_sessions, "Search past sessions", SEARCH_DESCRIPTION)
    register(list_sessions, "List sessions", LIST_DESCRIPTION)
    register(get_session, "Get one session", GET_DESCRIPTION)
    register(get_usage, "Token usage and cost", USAGE_DESCRIPTION)
    register(read_transcript, "Read a transcript", TRANSCRIPT_DESCRIPTION)
    return server, tools


def serve(settings: Settings) -> None:
    """Serve on stdin/stdout until the client closes them."""
    server, tools = build(settings)
    try:
        server.run("stdio")
    finally:
        tools.close()
