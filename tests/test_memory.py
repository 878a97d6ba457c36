"""Memory's own methods that no command test reaches in full: the short ids of a table."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory.memory import Memory

# Native ids that begin alike, differ in case only, hold LIKE's wildcards, or are a run's
# id and the next run's (`…#T` and `…#T-2`).
NATIVE = st.text(alphabet="aAbB0_%#-", min_size=1, max_size=12)
SESSIONS = st.lists(st.tuples(st.sampled_from(["mytool", "my", "tool"]), NATIVE),
                    min_size=1, max_size=40, unique=True)


def _store(memory: Memory, sessions: list[tuple[str, str]]) -> list[str]:
    with memory.tier1.transaction():
        for source, native in sessions:
            memory.tier1.ensure_session(f"{source}:{native}", source, native, 1.0, 1.0)
    return [f"{source}:{native}" for source, native in sessions]


# Each example empties the sessions first: the store the fixture made serves them all.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=SESSIONS, least=st.integers(min_value=1, max_value=8))
def test_each_short_id_names_its_session_alone(memory: Memory,
                                               sessions: list[tuple[str, str]],
                                               least: int) -> None:
    with memory.tier1.transaction():
        memory.tier1.conn.execute("DELETE FROM sessions")
    ids = _store(memory, sessions)
    short = memory.short_ids([*ids, "mytool:not-stored"], least)
    assert short["mytool:not-stored"] == "mytool:not-stored"
    for sid in ids:
        assert sid.startswith(short[sid])
        assert len(short[sid]) >= min(len(sid), sid.index(":") + 1 + least)
        assert memory.resolve_id(short[sid]) == sid


def test_short_ids_read_the_sessions_once_not_once_an_id(memory: Memory) -> None:
    """One lookup per id, each reading every session (LIKE without an index), took `sessions`
    a minute on a narrow terminal with 20,000 sessions stored."""
    ids = _store(memory, [("mytool", f"{n:05d}-{n % 7}") for n in range(300)])
    statements = []

    def count(*args: Any) -> bool:
        statements.append(args)
        return True

    memory.tier1.conn.exec_trace = count
    try:
        short = memory.short_ids(ids)
    finally:
        memory.tier1.conn.exec_trace = None
    assert len(statements) <= 2
    assert short["mytool:00042-0"] == "mytool:00042-0"[:len("mytool:") + 8]
