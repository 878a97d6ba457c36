"""The stream helpers every parser stands on: lines across chunks, records, prompts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from session_memory.analyze.events import Records, human_text, lines


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@given(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")),
       st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_lines_are_the_same_however_the_bytes_are_chunked(data: bytes, cuts: list[int]) -> None:
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it does not start one
    assert [bytes(line) for line in lines(chunked(data, cuts))] == expected


def test_a_line_split_over_three_chunks() -> None:
    chunks = [b'{"a": 1}\n{"b"', b': [1, ', b'2]}\n\n{"c": 3}']
    assert [bytes(x) for x in lines(chunks)] == [b'{"a": 1}', b'{"b": [1, 2]}', b"",
                                                 b'{"c": 3}']


def test_records_count_what_is_not_an_object() -> None:
    records = Records([b'{"a": 1}\n{oops\n"text"\n42\n[1]\n   \n{"b": 2}'], dict)
    assert list(records) == [{"a": 1}, {"b": 2}]
    assert records.malformed == 4  # blank lines are not malformed


def test_human_text_drops_injections() -> None:
    assert human_text("<command-name>/clear</command-name>") is None
    assert human_text("  <system-reminder>x</system-reminder>") is None
    assert human_text("<environment_context><cwd>/a</cwd></environment_context>") is None
    assert human_text("# AGENTS.md instructions for /repo\n\n<INSTRUCTIONS>") is None
    assert human_text("   \n") is None
    assert human_text("fix it\n<system-reminder>r</system-reminder>\nplease") == "fix it\nplease"
    assert human_text("why is 1 < 2 in a <b> tag?") == "why is 1 < 2 in a <b> tag?"
