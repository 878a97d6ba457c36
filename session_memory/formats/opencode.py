"""OpenCode: ${XDG_DATA_HOME:-~/.local/share}/opencode/storage/, one small JSON file per
thing, each rewritten whole as it changes:

    session/<projectID>/<sessionID>.json      the session (title, directory, parentID)
    message/<sessionID>/<messageID>.json      a message (role, model, tokens, cost)
    part/<messageID>/<partID>.json            a piece of one (text, tool call, patch, …)
    session_diff/<sessionID>.json             what the session changed

A session is its session file, its message files, their part files and its diff. A child
session (a subagent's, `parentID`) is a session of its own, linked to its parent.

OpenCode 1.2 and later keep sessions, messages and parts in an SQLite database beside
storage/ instead, `opencode.db` (WAL), and copy the JSON files into it once (the files
stay). A release channel other than latest, beta and prod (a dev build's, `local`, …)
keeps its own, `opencode-<channel>.db`, with the same tables (packages/opencode/src/
storage/db.ts, getChannelPath: the channel's name with each character but [A-Za-z0-9._-]
made `-`). Each row of each is read as the JSON file OpenCode would have written for it
(the ids put back in), under the database's name in the root (`opencode.db/message/
<sessionID>/<messageID>.json`, `opencode-dev.db/…`): the same session (its id is the
session's own, whichever database holds it), and a changed row is a new version of its
file, as a rewritten file is. Where a message or part is in a database and a JSON file,
the database's copy is read; where it is in two databases, the copy written last.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import msgspec

from session_memory.formats.base import (
    WHOLE_ROOT,
    FileRole,
    Head,
    StoredStamps,
    Turn,
    VirtualFile,
    arguments_text,
    env_root,
    first_match,
    no_hook,
)
from session_memory.formats.events import (
    JSON_ERRORS,
    Piece,
    Scalar,
    Sink,
    as_int,
    human_text,
    str_or_none,
)

if TYPE_CHECKING:
    from session_memory.store.foreign import ForeignDatabase

NAME = "opencode"
WATCH = WHOLE_ROOT
RECORD_TIMES = True
PARSER_VERSION = 2  # bump when parse() reads a session differently (base.py)
hook_target = no_hook
_SESSION_ID = rb'"sessionID"\s*:\s*"([^"]+)"'


ROOT_VARIABLE = "XDG_DATA_HOME"  # names the folder the tool writes under, where set


def default_root() -> Path:
    return env_root(ROOT_VARIABLE, "~/.local/share", "opencode", "storage")


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    parts = relpath.parts
    if parts and _DATABASE.fullmatch(parts[0]):  # a row of a database, as its JSON file
        parts = parts[1:]
    if not relpath.name.endswith(".json") or len(parts) < 2:
        return None
    kind, stem = parts[0], relpath.name[: -len(".json")]
    native: str | None = None
    if kind == "session" and len(parts) == 3:
        native = stem
    elif kind in ("message", "session_diff") and len(parts) == (3 if kind == "message" else 2):
        native = parts[1] if kind == "message" else stem
    elif kind == "part" and len(parts) == 3:
        native = first_match(_SESSION_ID, head)  # part/<messageID>/: the part names its session
    elif kind == "part" and len(parts) == 4:
        native = parts[1]  # older releases: part/<sessionID>/<messageID>/<partID>.json
    return FileRole(native, str(relpath), snapshot=True) if native else None


def prune(dir_relpath: PurePosixPath) -> bool:
    return False


def unread_places(root: Path) -> list[tuple[Path, str]]:
    """A database beside storage/ that is a link (not followed, as no source file is):
    said, so a user does not take the missing sessions for none."""
    return [(db, "OpenCode's session database is a link, not followed: not read")
            for db in virtual_databases(root) if db.is_symlink()]


# -- the database: its rows as the files OpenCode wrote before it ---------------------

DB_NAME = "opencode.db"
"""The database of OpenCode's releases (the latest and beta channels)."""
VIRTUAL_PREFIX = DB_NAME + "/"
_DATABASE = re.compile(r"opencode(?:-[A-Za-z0-9._-]+)?\.db")
"""A database's name: DB_NAME, or a channel's (see the module's docstring)."""
RECHECK_MS = 15 * 60 * 1000
"""A session whose row was written this recently has its messages and parts compared on
every pass, even when its row has not changed since: OpenCode updates the session row
when a prompt starts and a step ends, not as each part is written."""
SETTLE_MS = 1000
"""A row's time_updated is the time of its write to the millisecond: two writes of a row
in one (a message's step end, then its completion) stamp it the same. A row stamped this
close to the snapshot may be written again with the same stamp: its file's stored stamp
is one ns short, so that the first pass a second or more later reads it again (the same
bytes store nothing; a pass within that second takes the same short stamp)."""
RECHECK_WALK_MS = 24 * 3600 * 1000
"""As RECHECK_MS, for a whole walk (every few minutes): a step that ends with no write of
the session row (stopped by the user, a tool run or a question left open longer than
RECHECK_MS) writes its last message and part rows that long after the row."""


def virtual_databases(root: Path) -> list[Path]:
    """The databases beside the root (OpenCode's data folder): opencode.db, then each
    channel's, links too (which are not read, and said so)."""
    try:
        names = os.listdir(root.parent)
    except OSError:
        return []
    return sorted((root.parent / name for name in names if _DATABASE.fullmatch(name)),
                  key=lambda db: (db.name != DB_NAME, db.name))


def virtual_places(root: Path) -> list[Path]:
    """The files whose writes mean rows may have changed: each database and its WAL
    (opencode.db's even before it is made)."""
    dbs = virtual_databases(root)
    if root.parent / DB_NAME not in dbs:
        dbs.insert(0, root.parent / DB_NAME)
    return [place for db in dbs for place in (db, db.with_name(db.name + "-wal"))]


def restore_path(path: str) -> str:
    """A row goes back as the JSON file it was before the database: OpenCode reads those
    when it makes its database (so a restore is seen by a release that has none yet)."""
    first, _, rest = path.partition("/")
    return rest if rest and _DATABASE.fullmatch(first) else path


def open_virtual(database: Path) -> DatabaseReader:
    """One database, read in one snapshot until close(). ForeignReadError where it cannot
    be read (a link, locked, damaged, not OpenCode's)."""
    from session_memory.store.foreign import ForeignDatabase  # here: only ingest reads it

    return DatabaseReader(ForeignDatabase(database))


class DatabaseReader:
    """What changed in opencode.db since the rows stored: each session row is compared
    with its stored file (the session table is small); only a session that changed, or
    was written in the last RECHECK_MS (RECHECK_WALK_MS on a whole walk), has its message
    and part rows (by session_id, indexed) compared, by time_updated alone; only a
    changed row is read and made JSON."""

    def __init__(self, db: ForeignDatabase) -> None:
        from session_memory.store.foreign import ForeignReadError

        self.db = db
        self.path = db.path
        self.prefix = db.path.name + "/"
        """Where its rows' files are, under the root."""
        try:
            self._session_columns = db.columns("session")  # in the order `SELECT *` gives
            if not {"id", "project_id", "time_updated"} <= set(self._session_columns) or not (
                    {"id", "session_id", "time_updated", "data"} <= set(db.columns("message"))
                    and {"id", "message_id", "session_id", "time_updated", "data"}
                    <= set(db.columns("part"))):
                raise ForeignReadError(db.path,
                                       "not OpenCode's tables (session, message, part)")
        except BaseException:
            db.close()  # no reader to close it: its snapshot ends here
            raise

    def changed(self, stored: StoredStamps, now: float, *,
                walk: bool) -> Iterator[VirtualFile]:
        recent = now * 1000 - (RECHECK_WALK_MS if walk else RECHECK_MS)
        stamp_of = partial(_stamp, settled_before=now * 1000 - SETTLE_MS)
        # Ids as bytes: one that is no UTF-8 is that row's problem, not the whole table's.
        sessions = list(self.db.rows("SELECT CAST(id AS BLOB), CAST(project_id AS BLOB),"
                                     " time_updated FROM session"))
        stored_sessions = stored(f"{self.prefix}session/", None)
        for sid_bytes, project, updated in sessions:
            sid = _id(sid_bytes)
            # The project only names the folder the file goes back to: kept, escaped.
            path = f"{self.prefix}session/{_shown(project)}/{_shown(sid_bytes)}.json"
            if sid is None:  # its messages and parts name it as it is: not read either
                yield _unreadable(path, "session row whose id is no UTF-8 text (nor its "
                                        "messages and parts)")
                continue
            stamp = stamp_of(updated)
            if stored_sessions.get(path) == stamp and not (isinstance(updated, int)
                                                           and updated >= recent):
                continue
            own = stored(self.prefix, sid)
            said: set[bytes | None] = set()  # the messages whose ids are no UTF-8 text
            for m_bytes, m_updated in list(self.db.rows(
                    "SELECT CAST(id AS BLOB), time_updated FROM message WHERE session_id = ?",
                    (sid,))):
                m_path = f"{self.prefix}message/{sid}/{_shown(m_bytes)}.json"
                if (mid := _id(m_bytes)) is None:  # its parts name it as it is
                    said.add(m_bytes)
                    yield _unreadable(m_path, "message row whose id is no UTF-8 text (nor "
                                              "its parts)")
                elif own.get(m_path) != (m_stamp := stamp_of(m_updated)):
                    yield VirtualFile(m_path, m_stamp, partial(self._message, sid, mid), sid)
            for p_bytes, pm_bytes, p_updated in list(self.db.rows(
                    "SELECT CAST(id AS BLOB), CAST(message_id AS BLOB), time_updated"
                    " FROM part WHERE session_id = ?", (sid,))):
                p_path = f"{self.prefix}part/{_shown(pm_bytes)}/{_shown(p_bytes)}.json"
                pid, mid = _id(p_bytes), _id(pm_bytes)
                if mid is None and pm_bytes in said:
                    continue  # its message's line said so
                if pid is None or mid is None:
                    yield _unreadable(p_path, "part row whose id or message id is no UTF-8 "
                                              "text")
                elif own.get(p_path) != (p_stamp := stamp_of(p_updated)):
                    yield VirtualFile(p_path, p_stamp, partial(self._part, sid, mid, pid), sid)
            if own.get(path) != stamp:  # its stamp is what the next pass compares first
                yield VirtualFile(path, stamp, partial(self._session, sid), sid, covering=True)

    def _data(self, table: str, row_id: str) -> dict[str, Any]:
        # As bytes: a TEXT value need not be UTF-8 (read as text, it would stop the row);
        # made text as _text does, so that such a byte spoils its string, not the document.
        for (data,) in self.db.rows(f"SELECT CAST(data AS BLOB) FROM {table} WHERE id = ?",
                                    (row_id,)):
            text = _text(data) if isinstance(data, bytes) else data
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except (ValueError, RecursionError):  # not JSON (or nested past all reason):
                value = text  # kept as its text (a pass must not stop at it)
            return value if isinstance(value, dict) else {"data": value}
        return {}  # deleted since the snapshot began: cannot be, but an empty record reads

    def _message(self, sid: str, mid: str) -> bytes:
        # As OpenCode's JSON migration took it apart: the document less id and sessionID.
        return _json_file({"id": mid, "sessionID": sid, **self._data("message", mid)})

    def _part(self, sid: str, mid: str, pid: str) -> bytes:
        return _json_file({"id": pid, "sessionID": sid, "messageID": mid,
                           **self._data("part", pid)})

    def _session(self, sid: str) -> bytes:
        # Text and BLOBs as bytes, as _data reads them: a title that is no UTF-8 is kept.
        quoted = ['"' + c.replace('"', '""') + '"' for c in self._session_columns]
        columns = ", ".join(f"CASE WHEN typeof({c}) IN ('text', 'blob') THEN CAST({c} AS "
                            f"BLOB) ELSE {c} END" for c in quoted)
        for row in self.db.rows(f"SELECT {columns} FROM session WHERE id = ?", (sid,)):
            values = [_text(v) if isinstance(v, bytes) else v for v in row]
            return _json_file(_session_document(dict(zip(self._session_columns, values,
                                                         strict=True))))
        return _json_file({"id": sid})

    def close(self) -> None:
        self.db.close()


def _id(value: bytes | None) -> str | None:
    """A row's id read as bytes, as text; None where it is none (no UTF-8, or NULL)."""
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _shown(value: bytes | None) -> str:
    """An id read as bytes, as text whatever it holds (its odd bytes escaped as \\xNN)."""
    return "" if value is None else value.decode("utf-8", "backslashreplace")


def _text(value: bytes) -> str:
    """Text read as bytes: what is no UTF-8 kept byte for byte, as lone surrogates (a
    JSON file escapes them, \\udcNN)."""
    return value.decode("utf-8", "surrogateescape")


def _unreadable(relpath: str, why: str) -> VirtualFile:
    return VirtualFile(relpath, 0, lambda: b"", unreadable=why)


def _stamp(time_updated: Any, settled_before: float) -> int:
    """A row's time_updated (epoch ms) as the stored file's mtime_ns; one short where the
    row was written at or after `settled_before` (see SETTLE_MS)."""
    if type(time_updated) is not int:
        return 0
    return time_updated * 1_000_000 - (time_updated >= settled_before)


def _session_document(row: dict[str, Any]) -> dict[str, Any]:
    """A session row as OpenCode's fromRow (session/index.ts) makes it its document, the
    one its JSON storage held: absent values left out, JSON columns decoded."""
    summary = None
    if any(row.get(k) is not None for k in ("summary_additions", "summary_deletions",
                                            "summary_files")):
        summary = {"additions": row.get("summary_additions") or 0,
                   "deletions": row.get("summary_deletions") or 0,
                   "files": row.get("summary_files") or 0,
                   "diffs": _decoded(row.get("summary_diffs"))}
        summary = _present(summary)
    doc = {
        "id": row.get("id"), "slug": row.get("slug"), "projectID": row.get("project_id"),
        "workspaceID": row.get("workspace_id"), "directory": row.get("directory"),
        "path": row.get("path"), "parentID": row.get("parent_id"), "title": row.get("title"),
        "version": row.get("version"), "summary": summary,
        "share": {"url": row["share_url"]} if row.get("share_url") else None,
        "revert": _decoded(row.get("revert")), "permission": _decoded(row.get("permission")),
        "time": _present({"created": row.get("time_created"),
                          "updated": row.get("time_updated"),
                          "compacting": row.get("time_compacting"),
                          "archived": row.get("time_archived")}),
    }
    return _present(doc)


def _present(doc: dict[str, Any]) -> dict[str, Any]:
    """Without the keys whose value is absent (JSON.stringify leaves out undefined)."""
    return {k: v for k, v in doc.items() if v is not None}


def _decoded(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # as _data: kept as its text
        return value


def _json_file(doc: dict[str, Any]) -> bytes:
    """As OpenCode wrote its JSON files: JSON.stringify(doc, null, 2), no final newline.
    (A float may be spelled otherwise, 1e-05 for 0.00001: the same number.)"""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON.stringify escapes too
        return json.dumps(doc, indent=2).encode("ascii")


# -- analysis: stored pieces to events -------------------------------------------------

_EDIT_TOOLS = {"edit", "write", "multiedit", "patch"}
_READ_TOOLS = {"read"}
_SHELL_TOOLS = {"bash"}


class _Time(msgspec.Struct, gc=False):
    created: Any = None
    updated: Any = None
    completed: Any = None


class _Cache(msgspec.Struct, gc=False):
    read: Any = 0
    write: Any = 0


class _Tokens(msgspec.Struct, gc=False):
    input: Any = 0
    output: Any = 0
    reasoning: Any = 0
    cache: _Cache | Scalar | list[Any] = None


class _State(msgspec.Struct, gc=False):
    status: Any = None
    input: Any = None
    error: Any = None
    metadata: Any = None
    # `output` (most of the bytes) is left undecoded.


class _Record(msgspec.Struct, gc=False):
    """A session, message or part file: the fields a digest reads from any of them."""

    id: Any = None
    sessionID: Any = None
    messageID: Any = None
    parentID: Any = None
    title: Any = None
    directory: Any = None
    role: Any = None
    modelID: Any = None
    providerID: Any = None
    time: _Time | Scalar | list[Any] = None
    tokens: _Tokens | Scalar | list[Any] = None
    cost: Any = None
    error: Any = None
    path: Any = None
    type: Any = None
    text: Any = None
    synthetic: Any = None
    ignored: Any = None
    tool: Any = None
    callID: Any = None
    state: _State | Scalar | list[Any] = None
    files: Any = None


class _ReadState(_State, gc=False):
    output: Any = None


class _ReadRecord(_Record, gc=False):
    """For a reader of the transcript: tool output too."""

    state: _ReadState | Scalar | list[Any] = None


_decode = msgspec.json.Decoder(_Record).decode
_decode_for_reading = msgspec.json.Decoder(_ReadRecord).decode


class _Tree:
    """A session's files decoded: its session record(s), and its messages in the order
    written, each with its parts in order (ids grow with time)."""

    def __init__(self, pieces: Sequence[Piece],
                 decode: Callable[[bytes], _Record] = _decode) -> None:
        self.sessions: list[_Record] = []
        self.malformed = 0
        messages: list[_Record] = []
        parts: dict[str, list[_Record]] = {}
        decoded: list[tuple[str, tuple[float, str] | None, _Record]] = []
        for piece in pieces:
            relpath = restore_path(piece.path)
            kind = relpath.split("/", 1)[0]
            if kind not in ("session", "message", "part"):
                continue  # the diff repeats what the patch parts say
            # A database's copy (None: a JSON file's) is ranked: the least is read.
            rank = None if relpath == piece.path else (-(piece.mtime or 0.0), piece.path)
            record = _decoded_file(b"".join(piece.chunks()), decode)
            if record is None:
                self.malformed += 1
            else:
                decoded.append((kind, rank, record))
        # A thing both in a JSON file and in a database (OpenCode's migration to it leaves
        # the files) is read once: from the database, which has its last state; in two
        # databases (two channels'), from the one that wrote it last.
        read: dict[tuple[str, str], tuple[float, str]] = {}
        for kind, rank, r in decoded:
            if rank is not None and isinstance(r.id, str):
                read[kind, r.id] = min(rank, read.get((kind, r.id), rank))
        for kind, rank, record in decoded:
            if isinstance(record.id, str) and read.get((kind, record.id), rank) != rank:
                continue
            if kind == "session":
                self.sessions.append(record)
            elif kind == "message":
                messages.append(record)
            elif isinstance(record.messageID, str):
                parts.setdefault(record.messageID, []).append(record)
        messages.sort(key=lambda m: (_ms(m.time, "created") or 0, str(m.id)))
        self.messages = [(m, sorted(parts.pop(str(m.id), ()), key=lambda p: str(p.id)))
                         for m in messages]
        self.orphans = sorted((p for ps in parts.values() for p in ps), key=lambda p: str(p.id))
        """Parts whose message file is not stored (yet): still what the agent did."""


def _decoded_file(data: bytes, decode: Callable[[bytes], _Record]) -> _Record | None:
    """A file decoded; None where it is no JSON object. msgspec refuses half a surrogate
    pair escaped (\\udcNN: how _json_file keeps a database's byte that is no UTF-8, and
    JSON.stringify a string cut inside a pair): such a file is read again with each half
    as U+FFFD, so that one odd character does not lose the whole file's record."""
    try:
        return decode(data)
    except (*JSON_ERRORS, msgspec.ValidationError):
        pass
    try:
        text = json.dumps(json.loads(data), ensure_ascii=False)
        return decode(text.encode("utf-16-le", "surrogatepass")
                      .decode("utf-16-le", "replace").encode())
    except (*JSON_ERRORS, ValueError, msgspec.ValidationError):
        return None


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    tree = _Tree(pieces)
    if tree.malformed:
        out.malformed(tree.malformed)
    for session in tree.sessions:
        _session(session, out)
    for message, parts in tree.messages:
        _message(message, parts, out)
    for part in tree.orphans:
        _part(part, out)


def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """Each message's text, tool calls and their results, in the order written."""
    tree = _Tree(pieces, _decode_for_reading)
    sub = any(str_or_none(s.parentID) for s in tree.sessions)
    for message, parts in [*tree.messages, (None, tree.orphans)]:
        ts = _iso(_ms(message.time, "created")) if message else None
        if message is not None and message.role == "user":
            if prompt := _prompt(parts):
                yield Turn("user", prompt, ts, subagent=sub)
            continue
        for p in parts:
            yield from _part_turns(p, ts, sub)


def _part_turns(p: _Record, ts: str | None, sub: bool) -> Iterator[Turn]:
    if p.type == "text" and isinstance(p.text, str) and not p.synthetic:
        yield Turn("assistant", p.text, ts, subagent=sub)
    elif p.type == "tool" and isinstance(p.tool, str):
        state = p.state if isinstance(p.state, _State) else _State()
        yield Turn("tool_call", arguments_text(state.input), ts, p.tool, sub)
        if state.status in ("completed", "error"):
            output = state.error if state.status == "error" else getattr(state, "output", None)
            yield Turn("tool_result", str(output or ""), ts, p.tool, sub)


def _prompt(parts: list[_Record]) -> str | None:
    """What the person wrote in a user message: its text parts, less the tool's own."""
    return human_text("\n".join(p.text for p in parts if p.type == "text"
                                 and isinstance(p.text, str) and not p.synthetic
                                 and not p.ignored))


def _ms(time: Any, field: str) -> int | None:
    value = getattr(time, field, None) if isinstance(time, _Time) else None
    return value if type(value) is int else None


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
            .replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def _session(s: _Record, out: Sink) -> None:
    parent = str_or_none(s.parentID)
    out.info(cwd=str_or_none(s.directory), title=str_or_none(s.title),
             subagent_session=parent is not None, parent=parent)
    out.times(_iso(_ms(s.time, "created")), _iso(_ms(s.time, "updated")))


def _message(m: _Record, parts: list[_Record], out: Sink) -> None:
    out.times(_iso(_ms(m.time, "created")),
              _iso(_ms(m.time, "completed") or _ms(m.time, "created")))
    if m.role == "user":
        if prompt := _prompt(parts):
            out.prompt(prompt)
        return
    if m.role != "assistant":
        return
    model = str_or_none(m.modelID)
    if model:
        out.model(model)
    if isinstance(m.cost, int | float) and not isinstance(m.cost, bool):
        out.cost(float(m.cost))
    tokens = m.tokens
    if isinstance(tokens, _Tokens):
        cache = tokens.cache if isinstance(tokens.cache, _Cache) else _Cache()
        counts = (as_int(tokens.input), as_int(tokens.output), as_int(cache.write),
                  as_int(cache.read), as_int(tokens.reasoning))
        if any(counts):  # a failed request spends nothing
            out.usage(str_or_none(m.id), model, *counts)
            # OpenCode's `output` leaves out the reasoning it bills at the output price.
            fresh, output, cache_write, cache_read, reasoning = counts
            out.spend(_iso(_ms(m.time, "created")), str_or_none(m.id), model, fresh,
                      output + reasoning, cache_write, cache_read, reasoning)
    for part in parts:
        _part(part, out)
    if isinstance(m.error, dict):
        data = m.error.get("data")
        message = data.get("message") if isinstance(data, dict) else None
        out.failure("aborted" if m.error.get("name") == "MessageAbortedError" else "api_error",
                    str(message or m.error.get("name") or ""))


def _part(p: _Record, out: Sink) -> None:
    if p.type == "text" and isinstance(p.text, str) and not p.synthetic:
        out.assistant_text(p.text)
    elif p.type == "patch" and isinstance(p.files, list):
        out.files(edited=[f for f in p.files if isinstance(f, str) and f])
    elif p.type == "tool" and isinstance(p.tool, str):
        _tool(p, out)


def _tool(p: _Record, out: Sink) -> None:
    name, call_id = str(p.tool), str_or_none(p.callID)
    state = p.state if isinstance(p.state, _State) else _State()
    args = state.input if isinstance(state.input, dict) else {}
    path = str_or_none(args.get("filePath")) or str_or_none(args.get("path"))
    command = str_or_none(args.get("command")) if name in _SHELL_TOOLS else None
    out.tool_call(call_id, name, command,
                  edited=[path] if path and name in _EDIT_TOOLS else [],
                  read=[path] if path and name in _READ_TOOLS else [])
    if name == "task":
        meta = state.metadata if isinstance(state.metadata, dict) else {}
        child = str_or_none(meta.get("sessionId")) or str_or_none(meta.get("sessionID"))
        if child:
            out.subagent(child, str_or_none(args.get("subagent_type")),
                         str_or_none(args.get("description")), session=True)
    if state.status in ("completed", "error"):
        failed = state.status == "error"
        out.tool_result(call_id, failed, str(state.error or "") if failed else "", tool=name)
