"""How sizes, costs and counts read."""

from __future__ import annotations

from session_memory.humanize import human_bytes, human_cost, human_count, human_duration


def test_counts_are_singular_for_one_only() -> None:
    assert [human_count(n, "session") for n in (0, 1, 2, 12345)] == [
        "0 sessions", "1 session", "2 sessions", "12,345 sessions"]


def test_costs_and_sizes() -> None:
    assert (human_cost(None), human_cost(1234.5)) == ("-", "$1,234.50")
    assert (human_bytes(None), human_bytes(512), human_bytes(3 * 2**20)) == (
        "-", "512 B", "3.0 MiB")


def test_durations_read_as_people_say_them() -> None:
    assert [human_duration(s) for s in (None, 9.6, 59.4, 60, 754, 3600, 6269.755, 86400,
                                        3 * 86400 + 7300)] == [
        "-", "10 s", "59 s", "1 min", "12 min", "1 h", "1 h 44 min", "1 d", "3 d 2 h"]
