"""Aider digests: `#### ` prompts, `> Tokens:` lines as printed, edit blocks' file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory.formats import aider
from session_memory.formats.events import Piece, Sink, lines
from session_memory.memory import Memory
from tests.analyze.helpers import digest_of, write
from tests.formats.test_events import blocks_of, chunked

HISTORY = """
# aider chat started at 2025-09-01 14:00:00

> Aider v0.86.0
> Main model: anthropic/claude-sonnet-4 with diff edit format, prompt cache
> Added src/app.py to the chat

#### rename foo to bar
#### everywhere in app.py

I will rename it.

src/app.py
```python
<<<<<<< SEARCH
def foo():
=======
def bar():
>>>>>>> REPLACE
```

> Tokens: 2.3k sent, 1.1k cache write, 12k cache hit, 340 received. Cost: $0.01 message.
> Applied edit to src\\app.py

#### Add file to the chat? (Y)es/(N)o [Yes]: y

#### /run pytest -q
> Error: tests failed

#### thanks

Done, the tests pass now.

> Tokens: 1.5M sent, 85 received.
"""


def test_written_run(memory: Memory, sources: dict[str, Path]) -> None:
    write(sources["aider"], "myrepo/.aider.chat.history.md", HISTORY)
    d = digest_of(memory, "aider:myrepo#20250901T140000")
    assert d["tokens"] == {"input": 2300 + 1_500_000, "output": 340 + 85,
                           "cache_creation": 1100, "cache_read": 12000, "reasoning": 0}
    assert d["user_turns"] == 2  # the two-line prompt and "thanks"; not y, not /run
    assert d["first_prompt"] == "rename foo to bar\neverywhere in app.py"
    assert d["files_edited"] == ["src/app.py"]  # both spellings are one file
    assert d["files_read"] == ["src/app.py"]
    assert d["tool_calls"] == {"/run": 1}
    assert d["commands"] == ["pytest -q"]
    assert d["tool_errors"] == 1
    assert d["models"] == ["anthropic/claude-sonnet-4"]
    assert d["started_at"] == d["ended_at"] == "2025-09-01T14:00:00"
    assert d["duration_s"] is None
    assert d["project"] == "myrepo"
    assert d["last_assistant_message"] == "Done, the tests pass now."
    assert d["outcome"] == "success"


def test_fixture_runs(fixtures: Memory) -> None:
    ids = ["aider:mozgoslav#20260422T224047", "aider:mozgoslav#20260422T231303",
           "aider:Monochromatic#20250602T114749"]
    assert sorted(fixtures.analyze(ids)) == sorted(ids)
    run2, run3, setup = (fixtures.tier2.get_digest(i) for i in ids)
    assert run2 is not None and run3 is not None and setup is not None
    # 1.8k+1.9k+2.8k+3.3k+3.6k+4.1k+8.5k sent; 653+2.4k+2.4k+1.2k+1.7k+1.3k+1.9k received.
    assert run2["tokens"]["input"] == 26_000 and run2["tokens"]["output"] == 11_553
    assert run2["user_turns"] == 6  # two "Add file to the chat?" answers are not prompts
    assert run2["first_prompt"] == "hi"
    assert run2["models"] == ["lm_studio/qwen3.6-35b-a3b-uncensored-hauhaucs-aggressive"]
    assert run2["started_at"] == "2026-04-22T22:40:47"
    # 1.8k+5.6k+6.0k+7.4k+11k+13k+13k sent; 2.6k+958+1.2k+1.2k+4.2k+639+3.2k received.
    assert run3["tokens"]["input"] == 57_800 and run3["tokens"]["output"] == 13_997
    assert run3["user_turns"] == 4  # a 100-line prompt is one turn
    # The first run only installed a browser feature: nobody asked anything.
    assert setup["user_turns"] == 0 and setup["outcome"] == "unknown"


def test_usage_lands_at_the_run_start(memory: Memory, sources: dict[str, Path]) -> None:
    write(sources["aider"], "myrepo/.aider.chat.history.md", HISTORY)
    digest_of(memory, "aider:myrepo#20250901T140000")
    (row,) = memory.usage("day", breakdown=True)
    # A run has only its header's time (local): all its replies are spent then.
    assert (row["key"], row["input"], row["output"], row["cache_creation"],
            row["cache_read"]) == ("2025-09-01", 2300 + 1_500_000, 340 + 85, 1100, 12000)
    (model,) = row["models"]
    assert model["model"] == "anthropic/claude-sonnet-4"
    assert model["prices"]["anthropic/claude-sonnet-4"].startswith("genai-prices ")
    assert row["cost_usd"] is not None and row["cost_usd"] > 0


class Recorder:
    """A sink that keeps every call a parser makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def _line_by_line(piece: Piece, out: Sink) -> None:
    """Aider's parser as it was before it took reply lines as runs and decoded blocks of
    them (37cbcd5): each line on its own, what the faster one must match call for call."""
    model: str | None = None
    started: str | None = None
    prompt: list[str] = []
    reply: list[str] = []
    reply_chars = 0
    prompted = False
    before: list[str] = ["", ""]
    for raw in lines(piece.chunks()):
        line = bytes(raw).decode("utf-8", "replace").rstrip()
        if prompt and not line.startswith("####"):
            aider._prompt("\n".join(prompt).strip(), out)
            prompt = []
        if line == "####" or line.startswith("#### "):
            prompt.append(line[5:])
            prompted = True
            continue
        if reply and (line.startswith("> ") or line.startswith("# aider chat")):
            out.assistant_text("\n".join(reply))
            reply, reply_chars = [], 0
        if (at := aider._started_at(line)) is not None:
            started = at
            out.info(started_at=at, ended_at=at)
            out.times(at, at)
        elif line.startswith("> "):
            body = line[2:]
            if m := aider._TOKENS.search(body):
                counts = (aider._count(m[1], m[2]), aider._count(m[7], m[8]),
                          aider._count(m[3], m[4]), aider._count(m[5], m[6]))
                out.usage(None, model, *counts)
                out.spend(started, None, model, *counts)
            elif body.startswith(("Model: ", "Main model: ")) and (
                    m := aider._MODEL.match(body)):
                model = m[1]
                out.model(model)
            elif body.startswith("Applied edit to "):
                out.files(edited=[aider._path(body[len("Applied edit to "):])])
            elif body.startswith("Added ") and body.endswith(" to the chat"):
                out.files(read=[aider._path(body[len("Added "):-len(" to the chat")])])
            elif body.startswith("litellm."):
                out.failure("api_error", body)
            elif aider._ERROR.match(body):
                out.tool_result(None, True, body, tool="aider")
        elif line.strip() == "<<<<<<< SEARCH":
            name = before[-1] if before[-1] else before[-2]
            if name and " " not in name.strip():
                out.files(edited=[aider._path(name)])
        elif line and prompted and reply_chars < aider._MAX_REPLY_CHARS:
            reply.append(line)
            reply_chars += len(line)
        if not line.lstrip().startswith(aider._FENCE):
            before = [before[-1], line]
    if prompt:
        aider._prompt("\n".join(prompt).strip(), out)
    if reply:
        out.assistant_text("\n".join(reply))


_HISTORY_LINES = st.one_of(
    st.sampled_from([
        b"", b"   ", b"\t", b"#### rename foo", b"####", b"#### ", b"####x", b" #### no",
        b"#### Add file to the chat? (Y)es/(N)o [Yes]: y", b"#### /run pytest -q",
        b"# aider chat started at 2025-09-01 14:00:00", b"# aider chat", b"> ", b">",
        b"> Tokens: 2.3k sent, 1.1k cache write, 12k cache hit, 340 received.",
        b"> Tokens: 1.5M sent, 85 received.", b"> Main model: a/b with diff edit format",
        b"> Model: m", b"> Applied edit to src\\app.py", b"> Added x.py to the chat",
        b"> litellm.APIError: boom", b"> Error: tests failed", b"> ValueError: x",
        b"<<<<<<< SEARCH", b"  <<<<<<< SEARCH  ", b"\x1c<<<<<<< SEARCH",
        "\u2028<<<<<<< SEARCH".encode(), b"=======", b">>>>>>> REPLACE", b"```python",
        b"  ```", b"src/app.py", b"src/my app.py", b"I will rename it.  ", b"done\r",
        b"\xff\xfe broken", "caf\u00e9 \u2014 ok".encode(), b"x" * 1500]),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=20))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_HISTORY_LINES, max_size=40), st.booleans(),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
       st.sampled_from([1, 16, 2**20]))
def test_the_parser_calls_what_parsing_line_by_line_calls(
        history: list[bytes], final_newline: bool, cuts: list[int], block: int) -> None:
    data = b"\n".join(history) + (b"\n" if final_newline else b"")
    piece = Piece("repo/.aider.chat.history.md", lambda: chunked(data, cuts))
    expected, got = Recorder(), Recorder()
    _line_by_line(piece, expected)
    with blocks_of(block):
        aider._run(piece, got)
    assert got.calls == expected.calls
