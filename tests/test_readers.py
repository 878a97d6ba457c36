"""The run splitter cuts exactly at Aider's run headers, whatever the block boundaries."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory.readers import FP_BYTES, BytesContent, Content, PlainContent, RunSplitter

MARKER = b"# aider chat started at"


def _runs(data: bytes, cuts: list[int]) -> tuple[list[bytes], int]:
    """The runs a file is cut into when read in blocks ending at `cuts`, and how many
    bytes at its end are held back for the next pass."""
    splitter = RunSplitter(MARKER, b"", at_start=True)
    runs: list[bytes] = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        for piece, starts_run in splitter.split(data[a:b]):
            if starts_run or not runs:
                runs.append(b"")
            runs[-1] += piece
    for piece, starts_run in splitter.flush():
        if starts_run or not runs:
            runs.append(b"")
        runs[-1] += piece
    return runs, splitter.held()


def _expected(data: bytes) -> tuple[list[bytes], int]:
    # Held back: a last line that is, or could still become, a header without its end.
    last = data[data.rfind(b"\n") + 1:]
    held = len(last) if last and (MARKER.startswith(last) or last.startswith(MARKER)) else 0
    body = data[: len(data) - held]
    starts = [0] if body.startswith(MARKER) else []
    i = body.find(b"\n" + MARKER)
    while i != -1:
        starts.append(i + 1)
        i = body.find(b"\n" + MARKER, i + 1)
    if not starts:  # no header: blank lines wait for one, any other text is a run
        return ([body], held) if body.strip() else ([], len(data))
    bounds = sorted({0, *starts[1:], len(body)})  # what precedes the first header is its
    return [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a], held


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([MARKER + b" 2025-01-01 10:00:00\n", b"#### do it\n", b"text",
                                 b"\n", b"# aider", b" chat started at", b"> Tokens: 1k\n"]),
                max_size=30),
       st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_runs_do_not_depend_on_block_boundaries(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    runs, held = _runs(data, cuts)
    assert b"".join(runs) + data[len(data) - held:] == data
    assert (runs, held) == _expected(data)


def _reads(content: Content, offset: int, steps: list[int]) -> list[object]:
    """What a reader gives: the prefix up to `offset`, then reads and skips in turn, then
    the same once rewound."""
    out: list[object] = [content.prefix(offset)]
    for i, n in enumerate(steps):
        if i % 3 == 2:
            content.skip(n)
        else:
            out.append(content.read(n))
    content.rewind()
    out.append(content.read(2 * FP_BYTES))
    return out


@settings(deadline=None, max_examples=60)
@given(st.binary(max_size=3 * FP_BYTES), st.integers(0, 4 * FP_BYTES),
       st.lists(st.integers(0, 2 * FP_BYTES), max_size=6))
def test_a_file_read_whole_already_reads_as_the_file_does(data: bytes, offset: int,
                                                          steps: list[int]) -> None:
    """The bytes the read ahead took whole stand in for the file: every read gives what
    reading the file would (a prefix past its end too)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        fd = os.open(f.name, os.O_RDONLY)
        try:
            assert _reads(BytesContent(data), offset, steps) == _reads(
                PlainContent(fd), offset, steps)
        finally:
            os.close(fd)
