"""The format contract: what every format module in this package declares.

A format module is one agent tool. It provides, as module-level names:

- `NAME`: the format's name in the config (`format = "…"`), the module's name with `-`
  for `_`;
- `default_root() -> Path | None`: where the tool writes its sessions, honouring the
  tool's own environment variable; None where the config must name the root;
- `identify(relpath, head) -> FileRole | None`: which files under the root are session
  files, and whose (the session's native id, how the file grows, what ends the session);
- `prune(dir_relpath) -> bool`: folders never worth walking into (depth, ignores);
- `WATCH: WatchPolicy`: how the daemon watches the root;
- `RECORD_TIMES: bool`: the tool stamps its records with times, so a session's duration
  can be known;
- `PARSER_VERSION: int` (below 1000): bumped when `parse` reads sessions differently, so
  that this format's digests, and only this format's, are made again from their raw bytes
  (analyze/digest.py's analyzer_version);
- `hook_target(payload) -> HookTarget | None`: what the tool's end-of-session hook payload
  names, where the tool has such a hook (None otherwise);
- `parse(pieces, out)`: reads a session's stored pieces and reports each fact to the
  digest builder's Sink (formats/events.py);
- optionally, `transcript(pieces) -> Iterator[Turn]`: the session's messages and tool
  calls in order, for a reader paging through them (the MCP server's read_transcript);
  a format without one says so when asked;
- optionally, for a tool that keeps sessions in a database rather than in files:
  `virtual_databases(root) -> list[Path]` (those there now), `open_virtual(database) ->
  VirtualReader` and `virtual_places(root) -> list[Path]` (the files whose writes mean
  something changed: the watcher watches them, and ingest reads the databases when one
  is named). Each row
  is read as a file of its own (a VirtualFile) under the root, stored, versioned and
  restored as a file rewritten whole is; `restore_path(path) -> str` where it goes
  back under another path than it is stored under;
- optionally, `unread_places(root) -> list[tuple[Path, str]]`: where the tool keeps
  sessions that a source with this root does not read, each with why (`check` warns of
  those no enabled source reads).

The package finds every module in it (formats/__init__.py): adding a tool means adding
one module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import msgspec

from session_memory.formats.events import Piece, Sink

HEAD_BYTES = 64 * 1024

# A JSON string that is one whole ISO 8601 time with its zone: how the tools with
# RECORD_TIMES stamp records. One quoted inside another string never matches: its closing
# quote is escaped, so a backslash stands between the zone and it.
_RECORD_TIME = re.compile(
    rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))"')

Head = Callable[[], bytes]
"""Reads the first bytes of a file's (decompressed) content, only when asked."""


# Structs, not dataclasses: see store.tier1.Cursor.
class FileRole(msgspec.Struct, frozen=True):
    """How a file found under a source root takes part in a session."""

    native_id: str
    logical_path: str
    """The path the content is stored and exported under, relative to the root."""
    compressed: bool = False
    """The file is zstd: its decompressed content is what we store."""
    snapshot: bool = False
    """The tool rewrites the whole file: a new version replaces the previous one."""
    run_marker: bytes | None = None
    """Each line starting with this begins a new session (a history file of many runs)."""
    run_id: Callable[[bytes], str | None] | None = None
    """A run's id from its header line (the line that starts with `run_marker`); None when
    the line names none. The session is `<native_id>#<run id>`, with `-2`, `-3`, … for a
    later run of the same file with the same id."""
    end_record: re.Pattern[bytes] | None = None
    """A record that, once appended to this file, says the session has ended (without it,
    a session ends after `idle_seconds` without writes)."""


class VirtualFile(msgspec.Struct, frozen=True):
    """A file a format makes from another program's database (see open_virtual)."""

    relpath: str
    """Under the source root, apart from any real file's path: below a folder named as the
    database file (one of virtual_places), which is how forget tells that the database
    still holds a forgotten session's rows."""
    stamp_ns: int
    """What changes when its content does (the row's time of writing): kept as its stored
    mtime_ns, and compared with that before `read` is asked."""
    read: Callable[[], bytes]
    """Its content, made only when asked (in the reader's snapshot, before close())."""
    session: str = ""
    """The native id of the session the row is of."""
    covering: bool = False
    """Its stamp stands for the files of its session yielded before it as well (a session
    row's, whose stamp is what a pass compares before it looks at the session's other
    rows): ingest stores it after them, in their commit or a later one, and not in a pass
    that could not store one of them, so that a cut-short pass leaves them to be compared
    again."""
    unreadable: str | None = None
    """Why its row cannot be read as a file (an id that is no UTF-8 text: no path or
    session id can hold it), where it cannot: passed over, said once. `relpath` then
    names it with its odd bytes escaped."""


StoredStamps = Callable[[str, str | None], dict[str, int | None]]
"""stored(prefix, native_id): the stamps of the stored files whose relpath begins with
`prefix`, by relpath; with a native id, of that session's files only (an index lookup:
what a pass that compares one session's rows asks, rather than every row's stamp)."""


class VirtualReader(Protocol):
    """A database read in one snapshot, from open_virtual to close()."""

    path: Path
    """The database it reads."""

    def changed(self, stored: StoredStamps, now: float, *,
                walk: bool) -> Iterator[VirtualFile]:
        """The files whose stamp is not the stored one (None, or no entry: not stored);
        `now` in seconds since the epoch. `walk`: a whole walk's (the rescan behind the
        watcher), which may look further than a pass the watcher asks for."""
        ...

    def close(self) -> None: ...


class WatchPolicy(msgspec.Struct, frozen=True):
    """How the daemon watches a source root. The rescans stay the source of truth: a
    watch only makes the daemon quicker to notice."""

    known_folders_only: bool = False
    """Never watch the whole root (it may be as wide as the home folder): only the folders
    that hold files already stored, each on its own; the rescans find new ones."""
    file_names: frozenset[str] | None = None
    """Only changes to files of these names matter (None: any file not pruned)."""
    max_known_folders: int = 1000

    def wants_file(self, name: str) -> bool:
        return self.file_names is None or name in self.file_names


WHOLE_ROOT = WatchPolicy()


class HookTarget(msgspec.Struct, frozen=True):
    """The session an end-of-session hook names: its native id and the files to store now."""

    native_id: str
    paths: list[Path] = msgspec.field(default_factory=list)


class Format(Protocol):
    """A format module, as the rest of the program sees it."""

    NAME: str
    WATCH: WatchPolicy
    RECORD_TIMES: bool
    PARSER_VERSION: int

    def default_root(self) -> Path | None: ...

    def identify(self, relpath: PurePosixPath, head: Head) -> FileRole | None: ...

    def prune(self, dir_relpath: PurePosixPath) -> bool: ...

    def hook_target(self, payload: dict[str, Any]) -> HookTarget | None: ...

    def parse(self, pieces: Sequence[Piece], out: Sink) -> None: ...


class Turn(msgspec.Struct, frozen=True):
    """One step of a session as a reader of its transcript sees it, in the order it
    happened; what a format's `transcript(pieces)` yields."""

    role: str
    """"user" (what a person wrote), "assistant" (what the agent said), "tool_call"
    (a tool's arguments) or "tool_result" (what the tool gave back)."""
    text: str
    timestamp: str | None = None
    """ISO 8601, as the tool wrote it."""
    tool: str | None = None
    """The tool's name, for a call (and for a result where the record names it)."""
    subagent: bool = False
    """Said by or to a subagent, not in the main conversation."""


Transcript = Callable[[Sequence[Piece]], Iterator[Turn]]
"""A format's `transcript(pieces)`: lazy, so a reader that pages stops early. Raw text:
the caller redacts and shortens it."""


def arguments_text(args: object) -> str:
    """A tool call's arguments as one compact line of JSON (a string stays as it is)."""
    if isinstance(args, str):
        return args
    try:
        return msgspec.json.encode(args).decode()
    except (TypeError, ValueError, OverflowError):
        return str(args)


def env_root(variable: str, default: str, *below: str) -> Path:
    """A root under the folder an environment variable names (when set and not empty),
    else under `default` (with `~` expanded)."""
    base = os.environ.get(variable) or default
    return Path(os.path.expanduser(base), *below)


def no_hook(payload: dict[str, Any]) -> HookTarget | None:
    """For a tool without an end-of-session hook."""
    return None


def first_match(pattern: bytes, head: Head) -> str | None:
    m = re.search(pattern, head())
    return m.group(1).decode("utf-8", "replace") if m else None


def is_hidden(relpath: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relpath.parts)


def newest_record_time(tail: bytes) -> float | None:
    """The newest time stamped in these last bytes of a file of a tool with RECORD_TIMES,
    as seconds since the epoch; None where there is none. Newest, not last: a later
    record may quote an older time, never the other way round."""
    newest: float | None = None
    for match in _RECORD_TIME.finditer(tail):
        try:  # Z and nine digits of a second parse as they are (3.11); month 13 does not
            stamp = datetime.fromisoformat(match[1].decode("ascii")).timestamp()
        except ValueError:
            continue
        if newest is None or stamp > newest:
            newest = stamp
    return newest
