"""Aider: .aider.chat.history.md in each repository; each run is its own session."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from session_memory.formats.base import FileRole, Head, Turn, WatchPolicy, is_hidden, no_hook
from session_memory.formats.events import Piece, Sink, line_blocks, lines

NAME = "aider"
HISTORY = ".aider.chat.history.md"
RUN_MARKER = b"# aider chat started at"
# The root is a folder of repositories, the home folder by default: watching all of it
# would mean watching everything; only repositories known to hold a history are watched.
WATCH = WatchPolicy(known_folders_only=True, file_names=frozenset({HISTORY}))
RECORD_TIMES = False  # only a run's start time is written: its duration is unknown
PARSER_VERSION = 1  # bump when parse() reads a session differently (base.py)
hook_target = no_hook
# The root is usually a folder of repositories (or ~): don't wander into build trees.
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", "target", "dist", "build", "site-packages"}
MAX_DEPTH = 5


_HEADER_TIME = re.compile(
    re.escape(RUN_MARKER) + rb" (\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)")


def identify(relpath: PurePosixPath, head: Head) -> FileRole | None:
    if relpath.name != HISTORY:
        return None
    # The repository's folder relative to the root: two repositories of the same name in
    # different folders are different projects.
    repo = str(relpath.parent)
    return FileRole(repo, str(relpath), run_marker=RUN_MARKER, run_id=run_id)


def run_id(header: bytes) -> str | None:
    """A run's id: its header's start time, `# aider chat started at 2025-06-02 11:47:49`
    -> `20250602T114749`."""
    m = _HEADER_TIME.match(header)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (g.decode() for g in m.groups())
    return f"{y}{mo}{d}T{h}{mi}{sec}"


_HEADER = RUN_MARKER.decode() + " "


def _started_at(line: str) -> str | None:
    """A run's start time (ISO 8601) where the line is a run's header, else None."""
    if not line.startswith(_HEADER):
        return None
    return line[len(_HEADER):].strip().replace(" ", "T")


def default_root() -> Path:
    return Path.home()


def prune(dir_relpath: PurePosixPath) -> bool:
    return (
        len(dir_relpath.parts) > MAX_DEPTH
        or is_hidden(dir_relpath)
        or dir_relpath.name in _SKIP_DIRS
    )


# -- analysis: stored pieces to events -------------------------------------------------

_TOKENS = re.compile(
    r"Tokens: ([\d.]+)([kM]?) sent(?:, ([\d.]+)([kM]?) cache write)?"
    r"(?:, ([\d.]+)([kM]?) cache hit)?, ([\d.]+)([kM]?) received")
_MODEL = re.compile(r"(?:Main model|Model): (\S+)")
_ERROR = re.compile(r"(?:litellm\.\w+|[A-Z]\w*Error|Error):")
_UNITS = {"": 1, "k": 1_000, "M": 1_000_000}
_FENCE = "```"
_MAX_REPLY_CHARS = 4000


def parse(pieces: Sequence[Piece], out: Sink) -> None:
    for piece in pieces:
        repo = piece.path.rsplit("/", 2)[-2] if "/" in piece.path else None
        if repo:
            out.info(project=repo)
        _run(piece, out)


def _count(number: str | None, unit: str | None) -> int:
    """Aider prints rounded figures ("2.3k"): counted as printed."""
    return round(float(number) * _UNITS[unit or ""]) if number else 0


def _run(piece: Piece, out: Sink) -> None:
    """A run is Markdown: `#### ` lines are the person, `> ` lines are aider itself,
    anything else is the model's reply (with SEARCH/REPLACE blocks under a file name).

    Most lines are the model's reply, and all a reply line can do is join the reply (its
    first _MAX_REPLY_CHARS) and be the file name an edit block is under: the lines
    between two that may do more are taken as one run, the reply from its first lines
    and the file name from its last ones. Each other line is taken on its own."""
    model: str | None = None
    started: str | None = None
    prompt: list[str] = []
    reply: list[str] = []
    reply_chars = 0
    prompted = False  # text before the first prompt is aider's start-up, not a reply
    before: list[str] = ["", ""]  # the two last non-fence lines, for an edit block's file
    for block in line_blocks(piece.chunks()):
        # Decoded a block at a time or a line at a time, the same text: no character's
        # bytes hold a newline, and a broken one is replaced the same either way.
        text = "\n" + str(block, "utf-8", "replace")  # each line follows a newline, the first too
        pos, end = 1, len(text)  # pos: where the next line to take starts
        while pos <= end:
            m = _MAY_DO_MORE.search(text, pos - 1)
            start = end + 1 if m is None else m.start() + 1
            if start > pos:  # reply lines (or blank ones) up to the next line that may do more
                plain = text[pos:start - 1].split("\n")
                if prompt:
                    _prompt("\n".join(prompt).strip(), out)
                    prompt = []
                if prompted and reply_chars < _MAX_REPLY_CHARS:
                    said = [line for line in map(str.rstrip, plain) if line]
                    chars = sum(map(len, said))
                    if reply_chars + chars < _MAX_REPLY_CHARS:
                        reply += said
                        reply_chars += chars
                    else:  # the reply reaches its cap within these lines
                        for line in said:
                            reply.append(line)
                            reply_chars += len(line)
                            if reply_chars >= _MAX_REPLY_CHARS:
                                break
                before = _last_names(plain, before)
            if m is None:
                break
            stop = text.find("\n", start)
            stop = end if stop < 0 else stop
            line = text[start:stop].rstrip()
            pos = stop + 1
            if prompt and not line.startswith("####"):
                _prompt("\n".join(prompt).strip(), out)
                prompt = []
            if line == "####" or line.startswith("#### "):
                prompt.append(line[5:])
                prompted = True
                continue
            if reply and (line.startswith("> ") or line.startswith("# aider chat")):
                out.assistant_text("\n".join(reply))
                reply, reply_chars = [], 0
            if (at := _started_at(line)) is not None:
                started = at
                out.info(started_at=at, ended_at=at)
                out.times(at, at)
            elif line.startswith("> "):
                body = line[2:]
                if tokens := _TOKENS.search(body):
                    counts = (_count(tokens[1], tokens[2]), _count(tokens[7], tokens[8]),
                              _count(tokens[3], tokens[4]), _count(tokens[5], tokens[6]))
                    out.usage(None, model, *counts)
                    out.spend(started, None, model, *counts)  # a run has only its start time
                elif body.startswith(("Model: ", "Main model: ")) and (
                        named := _MODEL.match(body)):
                    model = named[1]
                    out.model(model)
                elif body.startswith("Applied edit to "):
                    out.files(edited=[_path(body[len("Applied edit to "):])])
                elif body.startswith("Added ") and body.endswith(" to the chat"):
                    out.files(read=[_path(body[len("Added "):-len(" to the chat")])])
                elif body.startswith("litellm."):
                    out.failure("api_error", body)
                elif _ERROR.match(body):
                    out.tool_result(None, True, body, tool="aider")
            elif line.strip() == "<<<<<<< SEARCH":
                name = before[-1] if before[-1] else before[-2]
                if name and " " not in name.strip():
                    out.files(edited=[_path(name)])
            elif line and prompted and reply_chars < _MAX_REPLY_CHARS:
                reply.append(line)
                reply_chars += len(line)
            if not line.lstrip().startswith(_FENCE):
                before = [before[-1], line]
    if prompt:
        _prompt("\n".join(prompt).strip(), out)
    if reply:
        out.assistant_text("\n".join(reply))


_MAY_DO_MORE = re.compile(r"\n(?:####|# aider chat|> |[^\S\n]*<<<<<<< SEARCH)")
"""The newline before a line that may be more than a reply line: a prompt, a run's
header, aider's own output, an edit block's start (`\\s` is what str.strip strips).
Some that match are reply lines after all: each is taken on its own, and does what a
reply line does."""


def _last_names(lines: list[str], before: list[str]) -> list[str]:
    """`before` (the two last non-fence lines) after `lines`, as each line (right-stripped)
    would leave it."""
    found: list[str] = []
    for line in reversed(lines):
        line = line.rstrip()
        if not line.lstrip().startswith(_FENCE):
            found.append(line)
            if len(found) == 2:
                return [found[1], found[0]]
    return [before[-1], found[0]] if found else before


def _path(name: str) -> str:
    """Aider names a file with the OS's separator; one spelling per file."""
    return name.strip().replace("\\", "/")


def _prompt(text: str, out: Sink) -> None:
    if not text or "(Y)es/(N)o" in text:
        return  # an answer to aider's own question, not a prompt
    if text.startswith("/"):
        command, _, rest = text.partition(" ")
        runs = command in ("/run", "/test", "/git")
        out.tool_call(None, command, command=(rest.strip() or None) if runs else None)
    elif text.startswith("!"):
        out.tool_call(None, "/run", command=text[1:].strip() or None)
    else:
        out.prompt(text)


# -- transcript: stored pieces to turns -------------------------------------------------

def transcript(pieces: Sequence[Piece]) -> Iterator[Turn]:
    """`#### ` lines are the person (a `/command` or `!shell` line is a tool call, as in
    `parse`), `> ` lines aider's own output (command results, edits applied), the rest
    the model's replies; each run of lines is one turn, stamped with the run's start."""
    for piece in pieces:
        at: str | None = None
        role: str | None = None
        text: list[str] = []
        prompted = False
        for raw in lines(piece.chunks()):
            line = bytes(raw).decode("utf-8", "replace").rstrip()
            if (started := _started_at(line)) is not None:
                at = started
                continue
            if line == "####" or line.startswith("#### "):
                kind, body = "user", line[5:]
                prompted = True
            elif not prompted:
                continue  # aider's start-up banner
            elif line == ">" or line.startswith("> "):
                kind, body = "tool_result", line[2:]
            else:
                kind, body = "assistant", line
            if kind != role:
                if role:
                    yield from _turn(role, "\n".join(text).strip(), at)
                role, text = kind, []
            text.append(body)
        if role:
            yield from _turn(role, "\n".join(text).strip(), at)


def _turn(role: str, text: str, at: str | None) -> Iterator[Turn]:
    if not text:
        return
    if role == "user" and "(Y)es/(N)o" in text:
        yield Turn("tool_result", text, at, "aider")  # an answer to aider's own question
    elif role == "user" and text.startswith(("/", "!")):
        command, _, rest = text.partition(" ")
        if text.startswith("!"):
            command, rest = "/run", text[1:]
        yield Turn("tool_call", rest.strip(), at, command)
    else:
        yield Turn(role, text, at, "aider" if role == "tool_result" else None)
