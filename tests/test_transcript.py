"""Paging, shortening and redacting transcript turns."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory import transcript
from session_memory.formats.base import Turn

TOKEN = "ghp_" + "A1b2" * 9


def test_long_tool_output_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    text = "h" * 5000 + "m" * 5000 + "t" * 5000
    out = transcript.message(Turn("tool_result", text))["text"]
    assert out.startswith("h" * 100) and out.endswith("t" * 100)
    assert f"{15000 - transcript.TOOL_CHARS:,} of 15,000 characters cut" in out
    assert len(out) < transcript.TOOL_CHARS + 100
    short = transcript.message(Turn("user", "x" * 5000))["text"]
    assert short == "x" * 5000  # what a person wrote is kept longer


@given(st.integers(min_value=0, max_value=transcript.TOOL_CHARS * 2))
@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_a_cut_never_leaves_part_of_a_secret(at: int) -> None:
    text = "a " * (at // 2) + TOKEN + " b" * 3000
    out = transcript.message(Turn("tool_result", text))["text"]
    assert TOKEN[:12] not in out
    assert "[REDACTED:github_token]" in out or "characters cut" in out


def test_page_bounds() -> None:
    turns = [Turn("user", str(i)) for i in range(10)]
    page, more = transcript.page(iter(turns), 3, 4)
    assert [m["text"] for m in page] == ["3", "4", "5", "6"] and more
    page, more = transcript.page(iter(turns), 6, 4)
    assert [m["text"] for m in page] == ["6", "7", "8", "9"] and not more
    assert transcript.page(iter(turns), 50, 4) == ([], False)
    for offset, limit in ((-1, 4), (0, 0), (0, transcript.MAX_LIMIT + 1)):
        with pytest.raises(ValueError):
            transcript.page(iter(turns), offset, limit)


def test_page_reads_only_as_far_as_it_needs() -> None:
    read = []

    def turns():  # type: ignore[no-untyped-def]
        for i in range(1000):
            read.append(i)
            yield Turn("assistant", str(i))

    transcript.page(turns(), 0, 5)
    assert len(read) == 6
