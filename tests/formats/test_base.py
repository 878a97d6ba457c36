"""formats/base.py's shared helpers: the newest record time in a file's tail, which tells
ingest that a history copied without its mtimes has ended."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from session_memory.formats.base import newest_record_time


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_the_newest_stamp_counts_not_the_last() -> None:
    tail = (b'{"timestamp":"2025-06-01T10:00:00.123Z"}\n'
            b'{"timestamp":"2025-06-02T10:00:00+02:00"}\n'
            b'{"timestamp":"2025-06-01T23:00:00.123456789Z"}\n')
    assert newest_record_time(tail) == _epoch("2025-06-02T08:00:00+00:00")


def test_a_time_quoted_inside_a_string_is_not_a_records_own() -> None:
    quoted = json.dumps({"content": json.dumps({"at": "2030-01-01T00:00:00Z"})})
    assert newest_record_time(quoted.encode()) is None
    # Nor is one without its zone, or a date that does not exist.
    assert newest_record_time(b'"2025-06-01T10:00:00" "2025-02-30T00:00:00Z"') is None


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_time_or_none(tail: bytes) -> None:
    found = newest_record_time(tail)
    assert found is None or isinstance(found, float)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                             timezones=st.just(UTC)), min_size=1, max_size=20),
       st.binary(max_size=64).filter(lambda b: b'"' not in b))
def test_records_with_times_give_their_newest(times: list[datetime], noise: bytes) -> None:
    lines = [json.dumps({"timestamp": t.isoformat().replace("+00:00", "Z"), "n": i}).encode()
             for i, t in enumerate(times)]
    tail = noise + b"\n".join(lines)
    found = newest_record_time(tail)
    assert found is not None
    assert abs(found - max(times).timestamp()) < timedelta(microseconds=1).total_seconds()
