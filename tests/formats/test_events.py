"""The stream helpers every parser stands on: lines across chunks, records, prompts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory.formats import events
from session_memory.formats.events import Records, human_text, lines


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@contextlib.contextmanager
def blocks_of(size: int) -> Iterator[None]:
    """events.line_blocks' block size set to `size` (a function-scoped fixture cannot
    serve a property test's every example)."""
    previous = events._BLOCK_BYTES
    events._BLOCK_BYTES = size
    try:
        yield
    finally:
        events._BLOCK_BYTES = previous


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")),
       st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_lines_are_the_same_however_the_bytes_are_chunked(data: bytes, cuts: list[int]) -> None:
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it does not start one
    assert [bytes(line) for line in lines(chunked(data, cuts))] == expected


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=12),
       st.sampled_from([1, 4, 64, 2**20]))
def test_line_blocks_split_into_the_lines(data: bytes, cuts: list[int], block: int) -> None:
    """Blocks hold whole lines, however the bytes are chunked and however large a block is:
    split at their newlines, they are the lines, blank ones too."""
    with blocks_of(block):
        blocks = [bytes(b) for b in events.line_blocks(chunked(data, cuts))]
    assert [line for b in blocks for line in b.split(b"\n")] == [
        bytes(line) for line in lines(chunked(data, cuts))]


def test_a_line_split_over_three_chunks() -> None:
    chunks = [b'{"a": 1}\n{"b"', b': [1, ', b'2]}\n\n{"c": 3}']
    assert [bytes(x) for x in lines(chunks)] == [b'{"a": 1}', b'{"b": [1, 2]}', b"",
                                                 b'{"c": 3}']


def test_records_count_what_is_not_an_object() -> None:
    records = Records([b'{"a": 1}\n{oops\n"text"\n42\n[1]\n   \n{"b": 2}'], dict)
    assert list(records) == [{"a": 1}, {"b": 2}]
    assert records.malformed == 4  # blank lines are not malformed


_LINES = st.one_of(
    st.dictionaries(st.sampled_from("abc"), st.integers() | st.text(max_size=5), max_size=3)
    .map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b"", b"  ", b"{oops", b"42", b"[1]", b'"s"', b"\xff{}", b"{}\r"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, max_size=30), st.booleans(),
       st.lists(st.integers(min_value=0, max_value=600), max_size=12),
       st.sampled_from([4, 64, 2**20]))
def test_records_are_the_same_however_the_bytes_are_chunked(
        lines_: list[bytes], final_newline: bool, cuts: list[int], block: int) -> None:
    """Decoding a block of lines at once gives what decoding each line gives: the same
    objects in order, the same count of malformed lines, wherever chunks and blocks end."""
    data = b"\n".join(lines_) + (b"\n" if final_newline and lines_ else b"")
    expected, malformed = [], 0
    for line in data.split(b"\n"):
        try:
            value = json.loads(line)
        except ValueError:
            malformed += bool(line.strip())
            continue
        if isinstance(value, dict):
            expected.append(value)
        else:
            malformed += 1
    with blocks_of(block):
        records = Records(chunked(data, cuts), dict)
        assert list(records) == expected
        assert records.malformed == malformed


def test_human_text_drops_injections() -> None:
    assert human_text("<command-name>/clear</command-name>") is None
    assert human_text("  <system-reminder>x</system-reminder>") is None
    assert human_text("<environment_context><cwd>/a</cwd></environment_context>") is None
    assert human_text("# AGENTS.md instructions for /repo\n\n<INSTRUCTIONS>") is None
    assert human_text("   \n") is None
    assert human_text("fix it\n<system-reminder>r</system-reminder>\nplease") == "fix it\nplease"
    assert human_text("why is 1 < 2 in a <b> tag?") == "why is 1 < 2 in a <b> tag?"
    assert human_text("<command-message>init</command-message>\n"
                      "<command-name>/init</command-name>\n<command-args></command-args>") is None
    assert human_text("<bash-stdout></bash-stdout><bash-stderr>x</bash-stderr>") is None
    assert human_text("<br/>") is None


def test_a_prompt_that_begins_with_a_tag_is_a_prompt() -> None:
    prompt = "<div> is misaligned, please fix the CSS"
    assert human_text(prompt) == prompt
    assert human_text("<b>bold</b> text is too light") == "<b>bold</b> text is too light"
    assert human_text("<Button onClick> never fires\n</Button>?") is not None
