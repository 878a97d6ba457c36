"""The run splitter cuts exactly at Aider's run headers, whatever the block boundaries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from session_memory.readers import RunSplitter

MARKER = b"# aider chat started at"


def _runs(data: bytes, cuts: list[int]) -> list[bytes]:
    splitter = RunSplitter(MARKER, b"")
    runs: list[bytes] = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        for piece, starts_run in splitter.split(data[a:b]):
            if starts_run or not runs:
                runs.append(b"")
            runs[-1] += piece
    carry = splitter.flush()
    if carry:
        if not runs:
            runs.append(b"")
        runs[-1] += carry
    return runs


def _expected(data: bytes) -> list[bytes]:
    starts = [0] if data.startswith(MARKER) else []
    i = data.find(b"\n" + MARKER)
    while i != -1:
        starts.append(i + 1)
        i = data.find(b"\n" + MARKER, i + 1)
    bounds = sorted({0, *starts, len(data)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([MARKER + b" 2025-01-01 10:00:00\n", b"#### do it\n", b"text",
                                 b"\n", b"# aider", b" chat started at", b"> Tokens: 1k\n"]),
                max_size=30),
       st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_runs_do_not_depend_on_block_boundaries(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    runs = _runs(data, cuts)
    assert b"".join(runs) == data
    assert runs == _expected(data)
