"""Files of many runs (Aider's history): each run is a session whose id comes from its
header and never changes, whatever the order of passes, evictions and restores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from session_memory.errors import SessionMemoryError
from session_memory.memory import Memory
from tests.analyze.helpers import OLD_MTIME
from tests.conftest import evict, stored_raw

HISTORY = ".aider.chat.history.md"


def run(at: str, prompt: str, sent: str = "1.1k", received: str = "100") -> bytes:
    """One run as Aider appends it; a file begins with a blank line (FIRST), which belongs
    to its first run."""
    return (f"# aider chat started at {at}\n\n> Aider v0.86.0\n> Main model: gpt-4o\n\n"
            f"#### {prompt}\n\nDone.\n\n> Tokens: {sent} sent, {received} received.\n\n"
            ).encode()


FIRST = b"\n"


def put(root: Path, rel: str, data: bytes, *, append: bool = False) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab" if append else "wb") as f:
        f.write(data)
    os.utime(path, (OLD_MTIME, OLD_MTIME))
    return path


def ids(memory: Memory) -> list[str]:
    return sorted(s["id"] for s in memory.sessions(source="aider"))


R1, R2, R3 = (run("2025-06-02 11:47:49", "first"), run("2025-06-03 09:00:00", "second"),
              run("2025-06-04 10:30:00", "third", "2.2k", "200"))


def test_ids_are_the_repo_folder_and_the_header_time(memory: Memory,
                                                      sources: dict[str, Path]) -> None:
    put(sources["aider"], f"a/app/{HISTORY}", FIRST + R1 + R2)
    put(sources["aider"], f"b/app/{HISTORY}", FIRST + R1)
    put(sources["aider"], HISTORY, FIRST + R3)
    memory.ingest()
    assert ids(memory) == ["aider:.#20250604T103000", "aider:a/app#20250602T114749",
                           "aider:a/app#20250603T090000", "aider:b/app#20250602T114749"]
    # The blank line before the first header is the first run's, not a run of its own.
    assert stored_raw(memory, "aider:a/app#20250602T114749") == FIRST + R1
    assert stored_raw(memory, "aider:a/app#20250603T090000") == R2
    assert stored_raw(memory, "aider:b/app#20250602T114749") == FIRST + R1


def test_two_repositories_of_the_same_name_keep_their_own_digests(
        memory: Memory, sources: dict[str, Path]) -> None:
    put(sources["aider"], f"a/app/{HISTORY}", FIRST + run("2025-06-02 11:47:49", "in a"))
    memory.ingest()
    assert memory.analyze() == ["aider:a/app#20250602T114749"]
    evict(memory, "aider:a/app#20250602T114749")
    put(sources["aider"], f"b/app/{HISTORY}", FIRST + run("2025-06-02 11:47:49", "in b"))
    memory.ingest()
    assert memory.analyze() == ["aider:b/app#20250602T114749"]
    a = memory.tier2.get_digest("aider:a/app#20250602T114749")
    b = memory.tier2.get_digest("aider:b/app#20250602T114749")
    assert a is not None and b is not None
    assert a["first_prompt"] == "in a" and b["first_prompt"] == "in b"
    assert memory.show("aider:a/app#20250602T114749")["state"] == "evicted"


def test_runs_with_the_same_header_time_are_numbered_in_file_order(
        memory: Memory, sources: dict[str, Path]) -> None:
    same = "2025-06-02 11:47:49"
    put(sources["aider"], f"app/{HISTORY}", FIRST + run(same, "one") + run(same, "two"))
    memory.ingest()
    put(sources["aider"], f"app/{HISTORY}", run(same, "three"), append=True)
    memory.ingest()
    base = "aider:app#20250602T114749"
    assert ids(memory) == [base, f"{base}-2", f"{base}-3"]
    assert stored_raw(memory, f"{base}-3") == run(same, "three")


@pytest.mark.parametrize("cut", [1, 10, 30, 45, 46, 60, 200])
def test_ids_do_not_depend_on_how_the_file_was_read(
        memory: Memory, sources: dict[str, Path], cut: int) -> None:
    """Read at once or in two passes cut anywhere (inside a header line too): the same
    runs, the same ids, the same bytes."""
    whole = FIRST + R1 + R2 + R3
    split = len(FIRST + R1) + cut
    put(sources["aider"], f"app/{HISTORY}", whole[:split])
    memory.ingest()
    put(sources["aider"], f"app/{HISTORY}", whole[split:], append=True)
    memory.ingest()
    assert ids(memory) == ["aider:app#20250602T114749", "aider:app#20250603T090000",
                           "aider:app#20250604T103000"]
    assert [stored_raw(memory, sid) for sid in ids(memory)] == [FIRST + R1, R2, R3]
    assert memory.check() == []


def test_a_header_still_being_written_waits_for_its_line(memory: Memory,
                                                         sources: dict[str, Path]) -> None:
    put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + b"# aider chat started at 2025-06-0")
    memory.ingest()
    assert ids(memory) == ["aider:app#20250602T114749"]
    put(sources["aider"], f"app/{HISTORY}", b"3 09:00:00\n\n#### more\n", append=True)
    memory.ingest()
    assert ids(memory) == ["aider:app#20250602T114749", "aider:app#20250603T090000"]
    assert stored_raw(memory, "aider:app#20250603T090000").startswith(
        b"# aider chat started at 2025-06-03 09:00:00\n")


def test_an_evicted_history_that_grows_keeps_every_id_and_count(
        memory: Memory, sources: dict[str, Path]) -> None:
    put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    memory.analyze()
    evict(memory, "aider:app#20250602T114749", "aider:app#20250603T090000")
    os.utime(sources["aider"] / "app" / HISTORY)  # touched: nothing comes back
    memory.ingest()
    assert {s["state"] for s in memory.sessions(source="aider")} == {"evicted"}

    put(sources["aider"], f"app/{HISTORY}", R3, append=True)  # a new run
    memory.ingest()

    states = {s["id"]: s["state"] for s in memory.sessions(source="aider")}
    assert states == {"aider:app#20250602T114749": "evicted",
                      "aider:app#20250603T090000": "evicted",
                      "aider:app#20250604T103000": "ended"}
    assert stored_raw(memory, "aider:app#20250604T103000") == R3
    assert memory.analyze() == ["aider:app#20250604T103000"]
    tokens = {sid: (memory.tier2.get_digest(sid) or {})["tokens"]["input"] for sid in states}
    assert tokens == {"aider:app#20250602T114749": 1100, "aider:app#20250603T090000": 1100,
                      "aider:app#20250604T103000": 2200}
    assert memory.check() == []


def test_an_evicted_run_that_grows_comes_back_whole(memory: Memory,
                                                    sources: dict[str, Path]) -> None:
    put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    memory.analyze()
    evict(memory, "aider:app#20250603T090000")
    more = b"#### and one more thing\n\nDone again.\n"
    put(sources["aider"], f"app/{HISTORY}", more, append=True)
    memory.ingest()
    assert ids(memory) == ["aider:app#20250602T114749", "aider:app#20250603T090000"]
    assert memory.show("aider:app#20250603T090000")["state"] == "ended"
    assert stored_raw(memory, "aider:app#20250603T090000") == R2 + more
    assert stored_raw(memory, "aider:app#20250602T114749") == FIRST + R1
    assert memory.check() == []


# -- restore ---------------------------------------------------------------------------

def test_restoring_one_run_never_destroys_the_others(memory: Memory,
                                                     sources: dict[str, Path]) -> None:
    history = put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2 + R3)
    memory.ingest()
    second = "aider:app#20250603T090000"

    assert memory.restore(second) == []  # already there, byte for byte
    # The other runs changed on disk: the run's place holds other bytes. Refused, even
    # forced, and the file is left as it was.
    edited = FIRST + R1 + R2.replace(b"second", b"SECOND") + R3
    history.write_bytes(edited)
    for force in (False, True):
        with pytest.raises(SessionMemoryError, match="other runs"):
            memory.restore(second, force=force)
        assert history.read_bytes() == edited

    # The file lost its end (the run and those after it): the run goes back in place.
    history.write_bytes(FIRST + R1)
    memory.restore(second, force=True)
    assert history.read_bytes() == FIRST + R1 + R2

    # The file is gone: every stored run of it goes back, in order.
    history.unlink()
    memory.restore(second)
    assert history.read_bytes() == FIRST + R1 + R2 + R3


def test_restoring_a_run_whose_predecessors_are_evicted_explains_why_not(
        memory: Memory, sources: dict[str, Path]) -> None:
    history = put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    memory.analyze()
    evict(memory, "aider:app#20250602T114749")
    history.unlink()
    with pytest.raises(SessionMemoryError, match="evicted"):
        memory.restore("aider:app#20250603T090000", force=True)
    assert not history.exists()
    history.write_bytes(FIRST + R1)  # what precedes it is back: appended in place
    memory.restore("aider:app#20250603T090000")
    assert history.read_bytes() == FIRST + R1 + R2


# -- usage across sources --------------------------------------------------------------------

def test_usage_adds_up_across_sources(home: Path) -> None:
    """The fixtures of three tools: usage by source, by day, by session and by model are
    the same tokens cut four ways; Aider's are its runs' digests' (a Claude Code response
    two sessions hold counts once, so its total may be below its digests' sum)."""
    from session_memory import config
    from session_memory.clock import FixedClock
    from tests.conftest import fixture_config

    fixture_config(home)
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        memory.ingest()
        assert memory.analyze_report().failed == {}
        by_source = {r["key"]: r for r in memory.usage("source")}
        # The Codex fixtures report no tokens: no usage row for them.
        assert set(by_source) == {"aider", "claude-code"}
        assert not any(any((memory.tier2.get_digest(s["id"]) or {})["tokens"].values())
                       for s in memory.sessions(source="codex"))
        fields = ("input", "output", "cache_creation", "cache_read", "reasoning")
        aider = [memory.tier2.get_digest(s["id"]) or {} for s in memory.sessions(source="aider")]
        for field in fields:
            assert by_source["aider"][field] == sum(d["tokens"][field] for d in aider)
        assert by_source["aider"]["sessions"] == sum(any(d["tokens"].values()) for d in aider)
        for way in ("day", "session", "model"):
            rows = memory.usage(way)
            for field in fields:
                assert sum(r[field] for r in rows) == sum(r[field] for r in by_source.values())


def test_text_before_any_run_header_is_a_run_named_by_the_file_time(
        memory: Memory, sources: dict[str, Path]) -> None:
    import time

    notes = b"\nnotes typed by hand before aider ever ran\n"
    put(sources["aider"], f"app/{HISTORY}", notes)
    memory.ingest()
    first = "aider:app#" + time.strftime("%Y%m%dT%H%M%S", time.localtime(OLD_MTIME))
    assert ids(memory) == [first]
    put(sources["aider"], f"app/{HISTORY}", R1, append=True)
    memory.ingest()
    assert ids(memory) == [first, "aider:app#20250602T114749"]
    assert stored_raw(memory, first) == notes
    assert stored_raw(memory, "aider:app#20250602T114749") == R1


def test_a_run_starts_at_its_header_time_before_it_is_analyzed(
        memory: Memory, sources: dict[str, Path]) -> None:
    """Before analysis a session's start is bounded by its file's mtime; a run's header says
    when it began, and ingest keeps that (every run of a history shared one mtime)."""
    import time

    put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2 + R2)
    memory.ingest()
    started = {s["id"]: s["started_at"] for s in memory.sessions(source="aider")}
    at = {stamp: time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
          for stamp in ("2025-06-02 11:47:49", "2025-06-03 09:00:00")}
    assert started == {"aider:app#20250602T114749": at["2025-06-02 11:47:49"],
                       "aider:app#20250603T090000": at["2025-06-03 09:00:00"],
                       "aider:app#20250603T090000-2": at["2025-06-03 09:00:00"]}


def test_a_run_has_ended_once_the_next_begins(memory: Memory,
                                               sources: dict[str, Path]) -> None:
    """A history written just now: its last run may still be going, but each run before it
    ended where the next began (nothing is appended to it after), so it is not active."""
    path = put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    os.utime(path, (memory.clock.now(), memory.clock.now()))
    memory.ingest()
    states = {s["id"]: s["state"] for s in memory.sessions(source="aider")}
    assert states == {"aider:app#20250602T114749": "ended",
                      "aider:app#20250603T090000": "active"}
    put(sources["aider"], f"app/{HISTORY}", R3, append=True)
    os.utime(path, (memory.clock.now(), memory.clock.now()))
    memory.ingest()
    states = {s["id"]: s["state"] for s in memory.sessions(source="aider")}
    assert states["aider:app#20250603T090000"] == "ended"
    assert states["aider:app#20250604T103000"] == "active"
