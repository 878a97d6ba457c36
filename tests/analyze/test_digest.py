"""The digest builder alone: outcome heuristic, caps, usage keys."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session_memory.analyze.digest import MAX_LIST, build
from session_memory.formats.events import Sink

Call = tuple[Any, ...]
"""A sink method's name and its arguments, as a parser would call it."""


def replay(calls: list[Call]) -> Callable[[Sink], None]:
    def parse(out: Sink) -> None:
        for name, *args in calls:
            getattr(out, name)(*args)
    return parse


@pytest.mark.parametrize(("calls", "outcome"), [
    ([], "unknown"),
    ([("prompt", "do it")], "abandoned"),
    ([("prompt", "do it"), ("assistant_text", "done")], "success"),
    ([("prompt", "do it"), ("assistant_text", "on it"), ("failure", "interrupted")],
     "abandoned"),
    ([("prompt", "x"), ("assistant_text", "y"), ("failure", "api_error", "overloaded")], "fail"),
    ([("prompt", "x"), ("tool_result", "c", True, "boom"), ("assistant_text", "I give up")],
     "fail"),
    ([("prompt", "x"), ("tool_result", "c", True, "boom"), ("tool_result", "d", False),
      ("assistant_text", "fixed")], "success"),
    # A subagent's failure does not decide how the session ended.
    ([("prompt", "x"), ("assistant_text", "ok"), ("failure", "api_error", "e", True)],
     "success"),
])
def test_outcome(calls: list[Call], outcome: str) -> None:
    assert build("claude-code", replay(calls), version=1)["outcome"] == outcome


def test_usage_keys_replace_and_none_adds() -> None:
    d = build("x", replay([("usage", "m1", "a", 10, 1), ("usage", "m1", "a", 10, 5),
                           ("usage", None, "b", 3, 3), ("usage", None, "b", 3, 3),
                           ("usage", "m2", None, 1, 1, 2, 4, 8)]), version=1)
    assert d["tokens"] == {"input": 17, "output": 12, "cache_creation": 2, "cache_read": 4,
                           "reasoning": 8}
    assert d["tokens_by_model"]["unknown"]["reasoning"] == 8


def test_lists_are_capped_and_calls_counted_once() -> None:
    calls: list[Call] = [("tool_call", f"c{i}", "Edit", None, [f"/f{i}"])
                         for i in range(MAX_LIST + 50)]
    calls += [("tool_call", "c0", "Edit", None, ["/f0"])]
    d = build("x", replay(calls), version=1)
    assert d["tool_calls"] == {"Edit": MAX_LIST + 50}
    assert len(d["files_edited"]) == MAX_LIST and d["truncated"]["files_edited"] == 50


def test_bounded_memory_still_counts_each_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from session_memory.analyze import digest as digest_mod

    monkeypatch.setattr(digest_mod._Window, "WINDOW", 8)
    calls: list[Call] = []
    for i in range(100):  # each message streamed twice, the last copy final
        calls += [("usage", f"m{i}", "a", 1, 1), ("usage", f"m{i}", "a", 1, 10),
                  ("tool_call", f"c{i}", "Bash")]
    # A subagent file replays early messages and calls long after they left the window.
    calls += [("usage", "m0", "a", 1, 10), ("usage", "m1", "a", 1, 10),
              ("tool_call", "c0", "Bash")]
    builder = digest_mod.DigestBuilder("x")
    replay(calls)(builder)
    d = builder.digest()
    assert d["tokens"]["input"] == 100 and d["tokens"]["output"] == 1000
    assert d["tool_calls"] == {"Bash": 100}
    assert len(builder.usage_by_key.recent) == 8 and len(builder.calls.recent) == 8


def test_a_huge_sessions_responses_are_packed_not_kept_as_objects(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A response with a key costs a few packed numbers once out of the window (76 bytes),
    its slot's usage one sum: a 1 GB session's half a million responses fit in tens of MB.
    Kept as a dict entry and a tuple each (about 700 bytes), this fails."""
    import tracemalloc

    from session_memory.analyze import digest as digest_mod

    monkeypatch.setattr(digest_mod._Window, "WINDOW", 64)
    builder = digest_mod.DigestBuilder("x")
    responses = 50_000
    tracemalloc.start()
    try:
        for i in range(responses):
            builder.spend(f"2026-10-01T{i % 24:02d}:{i % 60:02d}:00Z", f"msg_{i}\0req_{i}",
                          "m", 10, 20 + i % 7, 0, 500)
        builder.spend("2026-10-01T00:00:00Z", "msg_0\0req_0", "m", 10, 99, 0, 500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    filter_bytes = 4 * 2**20
    assert peak < filter_bytes + responses * 120
    keyed = builder.keyed_spend()
    assert len(keyed.hashes) == responses and len(keyed.cells) == 24 * 4  # quarter hours
    # A copy long after its response left the window is a copy, not a new response.
    assert sum(row[8] for row in keyed.sums) == responses
    assert sum(row[3] for row in keyed.sums) == sum(20 + i % 7 for i in range(responses))


def test_seen_filter_is_fixed_size_with_no_false_negatives() -> None:
    """Retired ids of a huge session are remembered in fixed memory: every id added is
    found again, and ids never added are rarely taken for seen."""
    from session_memory.analyze.digest import _SeenFilter

    seen = _SeenFilter()
    size = len(seen.bits)
    added = [f"msg_{i:012x}" for i in range(200_000)]
    for key in added:
        seen.add(key)
    assert all(key in seen for key in added)
    false = sum(f"other_{i}" in seen for i in range(100_000))
    assert false < 20  # expected about 0.3 at this fill
    assert len(seen.bits) == size == 4 * 2**20


_FILTER_STATE = """
import hashlib
from session_memory.analyze.digest import _SeenFilter
seen = _SeenFilter()
for i in range(5000):
    seen.add(f"msg_{i:06d}")
print(hashlib.sha256(seen.bits).hexdigest())
"""


def test_seen_filter_is_the_same_in_every_process() -> None:
    """Two analyses of the same bytes count the same: the filter must not key on Python's
    per-process salted hash()."""
    states = {subprocess.run([sys.executable, "-c", _FILTER_STATE], capture_output=True,
                             text=True, check=True, timeout=120,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
              for seed in ("1", "2", "random")}
    assert len(states) == 1


def test_a_builder_is_freed_as_soon_as_it_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """An analysis pass pauses the collector: a builder in a reference cycle (its window
    calling back into it) would stay, windows and filters and all, until the pass ends."""
    import gc
    import weakref

    from session_memory.analyze import digest as digest_mod

    monkeypatch.setattr(digest_mod._Window, "WINDOW", 2)
    enabled = gc.isenabled()
    gc.disable()
    try:
        builder = digest_mod.DigestBuilder("x")
        replay([("usage", f"m{i}", "a", 1, 1) for i in range(5)]
               + [("spend", "2026-01-01T00:00:00Z", f"k{i}", "a", 1, 1) for i in range(5)]
               )(builder)
        assert builder.digest()["tokens"]["input"] == 5
        freed = weakref.ref(builder)
        del builder
        assert freed() is None
    finally:
        if enabled:
            gc.enable()


_CELLS = [(h, m, c) for h in (490_000, 490_001, 490_007) for m in ("a", "b") for c in (0, 200_000)]


@given(st.lists(st.tuples(st.sampled_from(_CELLS), st.floats(0, 4e9), st.lists(
    st.integers(0, 2**40), min_size=6, max_size=6), st.booleans()), max_size=60),
    st.integers(0, 60))
@settings(deadline=None)
def test_keyed_spend_extend_is_add_one_by_one(responses: list[tuple[Any, ...]],
                                               retired: int) -> None:
    """Responses folded in at once (a session's last window) come out as folded in one at
    a time: the same cells in the same order, sums, and columns; also after some were
    added alone first (the ones that left the window earlier)."""
    from array import array

    from session_memory.analyze.digest import KeyedSpend

    entries = [(when, *cell, *counts, side, counts[0] + counts[1] + counts[2] + counts[4])
               for cell, when, counts, side in responses]
    hashes = array("q", range(len(entries)))
    one, one_cells = KeyedSpend.empty(), {}
    for h, entry in zip(hashes, entries, strict=True):
        one.add(h, entry, one_cells)
    both, both_cells = KeyedSpend.empty(), {}
    for h, entry in zip(hashes[:retired], entries[:retired], strict=True):
        both.add(h, entry, both_cells)
    both.extend(hashes[retired:], entries[retired:], both_cells)
    assert both == one and both_cells == one_cells


def test_key_hash_is_blake2b_of_source_and_key() -> None:
    """What Tier 2 knows a response by, which stores made before keep: the first 8 bytes of
    blake2b-64 of `source NUL key`, big-endian, signed."""
    import hashlib

    from session_memory.analyze.digest import DigestBuilder

    key = "msg_01\0req_é"
    expected = int.from_bytes(hashlib.blake2b(b"claude-code\0" + key.encode(),
                                              digest_size=8).digest(), "big", signed=True)
    assert DigestBuilder("claude-code")._key_hash(key) == expected
    assert DigestBuilder("codex")._key_hash(key) != expected


@given(st.lists(st.text(), max_size=40), st.sampled_from(["claude-code", "codex", "é"]))
@settings(deadline=None)
def test_key_hashes_of_many_are_each_keys_hash(keys: list[str], source: str) -> None:
    """A session's last window is hashed in one pass: the same integers, in order, as the
    one-by-one hash Tier 2 knows each response by."""
    from session_memory.analyze.digest import DigestBuilder, _key_hashes

    builder = DigestBuilder(source)
    keys = [k.encode("utf-8", "replace").decode() for k in keys]  # no lone surrogates
    assert list(_key_hashes(builder._prefix_hash, keys)) == [builder._key_hash(k)
                                                              for k in keys]
