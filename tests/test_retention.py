"""The retention sweep on real SQLite stores built from real files: every pass, every
exemption, keep_free, dry run against real, reclaimed disk, reports, forget, check --repair."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_memory import config, retention
from session_memory.analyze.run import AnalyzeResult
from session_memory.clock import FixedClock
from session_memory.config import Source
from session_memory.errors import StoreBusyError
from session_memory.memory import Memory
from session_memory.store import db
from session_memory.store import tier1 as tier1_mod
from tests.conftest import stored_raw, write_config

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture(autouse=True)
def _frames_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session in frames of its own, so that each eviction frees exactly its stored
    bytes; test_sweep_frees_what_packed_sessions_held covers packs."""
    monkeypatch.setattr(tier1_mod, "PACK_MEMBER_MAX", 0)


# -- building stores ----------------------------------------------------------------------

def add_session(memory: Memory, name: str, *, size: int = 16_000, age_days: float = 1.0) -> str:
    """A plain-JSONL session file whose last write was `age_days` before the clock."""
    root = memory.settings.sources["mytool"].root
    path = root / f"{name}.jsonl"
    # Random hex: zstd halves it and no more. Seeded, so hypothesis can replay an example.
    noise = random.Random(f"{name}:{size}").randbytes(size // 2)
    path.write_bytes(noise.hex().encode() + b"\n")
    mtime = memory.clock.now() - age_days * DAY
    os.utime(path, (mtime, mtime))
    return f"mytool:{name}.jsonl"


def analyze(memory: Memory, sid: str, at: float | None = None, **digest: Any) -> None:
    """What the analyzer does: the digest commits in Tier 2 first, then Tier 1's state."""
    at = memory.clock.now() if at is None else at
    memory.tier2.put_digest(sid, "mytool", {"analyzer_version": 1, **digest}, at)
    raw = memory.tier1.session(sid, memory.idle_before)["raw_bytes"]
    assert memory.tier1.mark_analyzed(sid, at, started_at=None, ended_at=None,
                                      seen_raw_bytes=raw)


def fake_analyzer(memory: Memory, fail: set[str] | None = None) -> Any:
    """Stands in for memory.analyze_report in the overflow pass (the analyzer has its own
    tests): the sessions in `fail` fail, with a reason."""
    def run(ids: list[str] | None = None, **_: Any) -> AnalyzeResult:
        result = AnalyzeResult()
        for sid in ids or []:
            if sid in (fail or set()):
                result.failed[sid] = "ValueError: not a session"
            else:
                analyze(memory, sid)
                result.analyzed.append(sid)
        return result
    return run


def set_caps(memory: Memory, **caps: Any) -> None:
    memory.settings = msgspec.structs.replace(
        memory.settings, retention=msgspec.structs.replace(memory.settings.retention, **caps))


def projected(memory: Memory) -> int:
    """Tier 1's footprint once its free pages are returned (what the sweep aims at)."""
    return retention.Sweep(memory.tier1, memory.tier2, memory.settings,
                           memory.clock.now()).projected_usage()


def states(memory: Memory) -> dict[str, str]:
    return {s["id"]: s["state"] for s in memory.sessions()}


def stored(memory: Memory) -> dict[str, int]:
    return {s["id"]: s["stored_bytes"] for s in memory.sessions()}


def evicted(report: dict[str, Any]) -> list[str]:
    ids: list[str] = (report["backstop_evicted"] + report["budget_evicted"]
                      + report["overflow_data_loss"])
    return ids


def on_disk(memory: Memory) -> int:
    return db.file_footprint(memory.tier1.path)


@pytest.fixture
def store(memory: Memory) -> Memory:
    """Ten ended sessions of ~30 KB stored each, the oldest written ten days ago."""
    for i in range(10):
        add_session(memory, f"s{i}", size=60_000, age_days=10 - i)
    memory.ingest()
    return memory


# -- the passes -------------------------------------------------------------------------

def test_budget_evicts_oldest_analyzed_first_until_under_the_soft_cap(store: Memory) -> None:
    # Analyzed in this order, which is the order of eviction (not the order of age).
    order = ["mytool:s3.jsonl", "mytool:s1.jsonl", "mytool:s4.jsonl", "mytool:s0.jsonl"]
    for n, sid in enumerate(order):
        analyze(store, sid, at=NOW - 100 + n)
    sizes = stored(store)
    target = projected(store) - sizes[order[0]] - sizes[order[1]] // 2
    set_caps(store, raw_soft_cap=target, raw_hard_cap=target * 10)

    report = store.sweep()

    assert report["budget_evicted"] == order[:2]
    assert report["backstop_evicted"] == report["overflow_data_loss"] == []
    assert report["final_usage_bytes"] <= target
    assert on_disk(store) == report["final_usage_bytes"]
    assert {sid for sid, s in states(store).items() if s == "evicted"} == set(order[:2])
    assert report["bytes_freed"] == sizes[order[0]] + sizes[order[1]]
    assert report["pass_bytes"]["budget"] == report["bytes_freed"]
    # The digests stay; the raw bytes are gone.
    assert all(store.tier2.has_digest(sid) for sid in order[:2])
    assert store.tier1.totals()["stored_bytes"] == sum(sizes.values()) - report["bytes_freed"]
    assert store.check() == []


def test_budget_never_touches_unanalyzed_sessions(store: Memory) -> None:
    analyze(store, "mytool:s0.jsonl")
    set_caps(store, raw_soft_cap=1, raw_hard_cap=10**9)
    report = store.sweep()
    assert report["budget_evicted"] == ["mytool:s0.jsonl"]
    assert report["final_usage_bytes"] > 1
    assert any("over its soft cap" in w for w in report["warnings"])
    assert sum(s == "evicted" for s in states(store).values()) == 1


def test_backstop_evicts_analyzed_sessions_older_than_max_age(memory: Memory) -> None:
    old = add_session(memory, "old", age_days=50)
    old_unanalyzed = add_session(memory, "old-raw", age_days=60)
    young = add_session(memory, "young", age_days=40)
    memory.ingest()
    analyze(memory, old)
    analyze(memory, young)
    set_caps(memory, raw_max_age_days=45)

    report = memory.sweep()

    assert report["backstop_evicted"] == [old]
    assert report["budget_evicted"] == report["overflow_data_loss"] == []
    assert states(memory) == {old: "evicted", young: "analyzed", old_unanalyzed: "ended"}
    assert report["pass_bytes"]["backstop"] == report["bytes_freed"] > 0


def test_backstop_age_runs_from_the_recorded_end_before_the_file_time(memory: Memory) -> None:
    sid = add_session(memory, "copied", age_days=1)  # a recent copy of an old session
    memory.ingest()
    analyze(memory, sid)
    memory.tier1.conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?",
                              (NOW - 90 * DAY, sid))
    assert memory.sweep()["backstop_evicted"] == [sid]


def test_backstop_zero_days_is_off(memory: Memory) -> None:
    sid = add_session(memory, "ancient", age_days=900)
    memory.ingest()
    analyze(memory, sid)
    set_caps(memory, raw_max_age_days=0)
    assert evicted(memory.sweep()) == []


def test_overflow_analyzes_ended_sessions_then_reruns_the_budget(store: Memory) -> None:
    store.analyze_report = fake_analyzer(store)  # type: ignore[method-assign]
    active = add_session(store, "active", age_days=0)
    store.ingest()
    base = projected(store)
    set_caps(store, raw_soft_cap=base - 40_000, raw_hard_cap=base - 1)

    report = store.sweep()

    assert sorted(report["overflow_analyzed"]) == sorted(f"mytool:s{i}.jsonl" for i in range(10))
    assert report["overflow_data_loss"] == []
    assert 0 < len(report["budget_evicted"]) < 10
    assert set(report["budget_evicted"]) <= set(report["overflow_analyzed"])
    assert report["final_usage_bytes"] <= base - 40_000
    assert states(store)[active] == "active"  # never analyzed early, never evicted


def test_a_sweep_kept_in_its_process_analyzes_there(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the daemon sweeps: its overflow analysis starts no worker, however large."""
    from session_memory.analyze import run as analyze_run
    from session_memory.analyze import worker

    def no_workers(*args: Any) -> None:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(analyze_run, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(worker, "SharedPass", no_workers)
    base = projected(store)
    set_caps(store, raw_soft_cap=base - 40_000, raw_hard_cap=base - 1)

    report = store.sweep(parallel=False)

    assert report["errors"] == []
    assert sorted(report["overflow_analyzed"]) == sorted(f"mytool:s{i}.jsonl" for i in range(10))


def test_a_sweeps_overflow_analysis_says_it_is_alive_before_each_session(
        store: Memory) -> None:
    """The daemon's watchdog is fed through a long overflow analysis (a backfill over the
    hard cap), which is never cut short: the evictions after it count on it."""
    base = projected(store)
    set_caps(store, raw_soft_cap=base - 40_000, raw_hard_cap=base - 1)
    calls = 0

    def alive() -> None:
        nonlocal calls
        calls += 1

    report = store.sweep(parallel=False, alive=alive)

    assert len(report["overflow_analyzed"]) == 10
    assert calls >= 10
    assert report["overflow_data_loss"] == []


def test_a_stop_ends_the_sweep_between_evictions_and_its_report_is_stored(
        store: Memory) -> None:
    """As a daemon asked to stop mid-sweep: what was evicted before the stop, and only
    that, is gone, the accounting exact, the report stored and saying it stopped."""
    for i in range(10):
        analyze(store, f"mytool:s{i}.jsonl", at=NOW - 100 + i)
    sizes = stored(store)
    set_caps(store, raw_soft_cap=1, raw_hard_cap=10**12)
    k = 3

    def after_k_evictions() -> bool:
        return list(states(store).values()).count("evicted") >= k

    report = store.sweep(stop=after_k_evictions)

    assert report["stopped"]
    assert report["budget_evicted"] == [f"mytool:s{i}.jsonl" for i in range(k)]
    assert list(states(store).values()).count("evicted") == k
    assert report["bytes_freed"] == sum(sizes[sid] for sid in report["budget_evicted"])
    assert store.tier1.totals()["stored_bytes"] == sum(sizes.values()) - report["bytes_freed"]
    assert not store.tier1.accounting_drift()
    assert store.check() == []
    assert on_disk(store) == report["final_usage_bytes"]
    assert store.report(report["id"]) == report
    assert any("asked to stop" in w for w in report["warnings"])
    assert retention.pending_sweep(store.tier1) is None
    assert store.tier1.get_meta(retention.LAST_SWEEP_KEY) is None  # due again
    # The next sweep takes up the rest.
    rest = store.sweep()
    assert not rest["stopped"]
    assert rest["budget_evicted"] == [f"mytool:s{i}.jsonl" for i in range(k, 10)]


def test_a_stop_during_the_overflow_analysis_lets_it_finish_and_evicts_nothing_after(
        store: Memory) -> None:
    """The evictions after the overflow analysis count on it: a stop never cuts it short;
    it takes effect before the next eviction."""
    base = projected(store)
    set_caps(store, raw_soft_cap=base - 40_000, raw_hard_cap=base - 1)
    stop_asked = False

    def alive() -> None:  # the daemon's SIGTERM arrives while the analysis runs
        nonlocal stop_asked
        stop_asked = True

    report = store.sweep(parallel=False, alive=alive, stop=lambda: stop_asked)

    assert report["stopped"]
    assert len(report["overflow_analyzed"]) == 10
    assert evicted(report) == []
    assert set(states(store).values()) == {"analyzed"}
    assert store.check() == []


def test_overflow_last_resort_evicts_unanalyzed_as_data_loss(
        store: Memory, caplog: pytest.LogCaptureFixture) -> None:
    store.analyze_report = fake_analyzer(store, fail={f"mytool:s{i}.jsonl"  # type: ignore[method-assign]
                                               for i in range(10)})
    base = projected(store)
    hard = base - 40_000
    set_caps(store, raw_soft_cap=hard // 2, raw_hard_cap=hard)

    with caplog.at_level(logging.ERROR):
        report = store.sweep()

    lost = report["overflow_data_loss"]
    assert lost[:2] == ["mytool:s0.jsonl", "mytool:s1.jsonl"]  # oldest first
    assert report["final_usage_bytes"] <= hard and not report["over_hard_cap"]
    assert report["pass_bytes"]["overflow"] == sum(e["stored_bytes"] for e in report["evictions"])
    assert len(lost) < 10  # only until under the hard cap
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for sid in lost:
        assert any(sid in line for line in logged)


def test_without_an_analyzer_overflow_goes_straight_to_the_last_resort(store: Memory) -> None:
    store.analyze_report = None  # type: ignore[assignment,method-assign]
    base = projected(store)
    set_caps(store, raw_soft_cap=base // 2, raw_hard_cap=base - 10_000)
    report = store.sweep()
    assert report["overflow_analyzed"] == [] and report["overflow_data_loss"]
    assert any("no analyzer" in w for w in report["warnings"])


# -- exemptions ---------------------------------------------------------------------------

def test_pinned_sessions_are_exempt_from_every_pass(store: Memory) -> None:
    store.analyze_report = None  # type: ignore[assignment,method-assign]
    analyze(store, "mytool:s0.jsonl")
    analyze(store, "mytool:s1.jsonl")
    for sid in ("mytool:s0.jsonl", "mytool:s5.jsonl"):
        store.pin(sid)
    set_caps(store, raw_soft_cap=1, raw_hard_cap=1, raw_max_age_days=1)
    report = store.sweep()
    assert "mytool:s1.jsonl" in report["backstop_evicted"]
    assert "mytool:s0.jsonl" not in evicted(report)  # analyzed, old, pinned
    assert "mytool:s5.jsonl" not in evicted(report)  # un-analyzed, pinned
    assert states(store)["mytool:s0.jsonl"] == "analyzed"


def test_active_sessions_are_exempt_from_every_pass(memory: Memory) -> None:
    memory.analyze_report = fake_analyzer(memory)  # type: ignore[method-assign]
    active = add_session(memory, "writing-now", age_days=0)
    memory.ingest()
    set_caps(memory, raw_soft_cap=1, raw_hard_cap=1, raw_max_age_days=1)
    report = memory.sweep()
    assert report["overflow_analyzed"] == [] and evicted(report) == []
    assert states(memory)[active] == "active"
    assert report["over_hard_cap"]


# -- keep_free, tier 2 cap ------------------------------------------------------------------

def _short_of_the_floor(store: Memory, monkeypatch: pytest.MonkeyPatch, sessions: int,
                        short: int) -> int:
    """`sessions` analyzed sessions under caps no wider than the disk, which has `short`
    bytes less free than keep_free's 1 MB floor; returns Tier 1's usage."""
    for i in range(sessions):
        analyze(store, f"mytool:s{i}.jsonl")
    store.tier1.reclaim()
    set_caps(store, raw_soft_cap=10**12, raw_hard_cap=10**12,
             keep_free=config.KeepFree(bytes=1_000_000))
    monkeypatch.setattr(retention, "disk_space", lambda path: (1_000_000 - short, 10**9))
    return store.tier1.usage_bytes()


def test_keep_free_lowers_the_soft_cap_when_the_disk_fills(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The disk has only 970 KB free: Tier 1 must give back 30 KB to keep its 1 MB floor.
    usage = _short_of_the_floor(store, monkeypatch, 6, 30_000)
    report = store.sweep()
    caps = report["caps"]
    assert caps["keep_free_bytes"] == 1_000_000
    assert caps["effective_soft_cap_bytes"] == usage - 30_000
    assert report["budget_evicted"]
    assert report["final_usage_bytes"] <= usage - 30_000


def test_where_the_disk_sets_the_budget_the_sweep_leaves_room_for_its_report(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report, stored in Tier 2 after the disk was measured, would take its pages out
    of keep_free's floor: the budget leaves REPORT_ROOM_BYTES more. Not so under a soft cap
    the disk does not lower, which is Tier 1's size alone."""
    # 10 KB short of the floor: one session (about 30 KB) would give that back.
    usage = _short_of_the_floor(store, monkeypatch, 10, 10_000)
    report = store.sweep()
    assert report["caps"]["effective_soft_cap_bytes"] == usage - 10_000
    assert report["final_usage_bytes"] <= usage - 10_000 - retention.REPORT_ROOM_BYTES
    assert len(report["budget_evicted"]) > 1
    # Under the soft cap alone, no more than the cap asks.
    set_caps(store, raw_soft_cap=report["final_usage_bytes"] - 10_000)
    monkeypatch.setattr(retention, "disk_space", lambda path: (10**9, 10**9))
    again = store.sweep()
    assert len(again["budget_evicted"]) == 1


def test_status_reads_the_disk_as_the_sweep_does(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "disk_space", lambda path: (970_000, 10**9))
    assert store.status()["disk"] == {"free_bytes": 970_000, "total_bytes": 10**9}
    caps = store.sweep(dry_run=True)["caps"]
    assert (caps["disk_free_bytes"], caps["disk_total_bytes"]) == (970_000, 10**9)


def test_keep_free_as_a_percentage_of_the_filesystem(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    set_caps(store, keep_free=config.KeepFree(percent=10))
    monkeypatch.setattr(retention, "disk_space", lambda path: (50 * 10**9, 100 * 10**9))
    report = store.sweep()
    assert report["caps"]["keep_free_bytes"] == 10 * 10**9
    assert report["caps"]["effective_soft_cap_bytes"] == report["caps"]["soft_cap_bytes"]
    assert evicted(report) == []


def test_tier2_over_distilled_cap_warns_and_evicts_nothing(store: Memory) -> None:
    analyze(store, "mytool:s0.jsonl")
    set_caps(store, distilled_cap=1)
    report = store.sweep()
    assert report["tier2_over_cap"] is True
    assert any("distilled_cap" in w for w in report["warnings"])
    assert evicted(report) == [] and store.tier2.has_digest("mytool:s0.jsonl")


# -- dry run, idempotence, disk -----------------------------------------------------------

def _mixed(memory: Memory, analyzer: Any = None) -> None:
    """Old, analyzed and un-analyzed sessions under caps that leave room for none of them."""
    memory.analyze_report = analyzer  # type: ignore[method-assign]
    for i in range(4):
        analyze(memory, f"mytool:s{i}.jsonl")
    memory.tier1.conn.execute("UPDATE sessions SET ended_at = ? WHERE id = 'mytool:s0.jsonl'",
                              (NOW - 100 * DAY,))
    set_caps(memory, raw_soft_cap=1, raw_hard_cap=1, raw_max_age_days=45)


def test_dry_run_names_exactly_what_the_real_sweep_evicts_and_changes_nothing(
        store: Memory) -> None:
    _mixed(store)
    before = (store.sessions(), store.tier1.totals(), store.tier2.digest_ids())
    files_before = {s: os.stat(f"{store.tier1.path}{s}").st_size for s in ("", "-wal", "-shm")}

    dry = store.sweep(dry_run=True)

    assert (store.sessions(), store.tier1.totals(), store.tier2.digest_ids()) == before
    assert {s: os.stat(f"{store.tier1.path}{s}").st_size
            for s in ("", "-wal", "-shm")} == files_before
    assert store.tier1.get_meta(retention.LAST_SWEEP_KEY) is None
    assert dry["backstop_evicted"] and dry["budget_evicted"] and dry["overflow_data_loss"]

    real = store.sweep()

    for key in ("backstop_evicted", "budget_evicted", "overflow_analyzed",
                "overflow_data_loss", "bytes_freed", "pass_bytes", "final_usage_bytes"):
        assert dry[key] == real[key], key
    assert dry["caps"]["effective_soft_cap_bytes"] == real["caps"]["effective_soft_cap_bytes"]
    assert dry["dry_run"] and not real["dry_run"]
    assert store.tier1.get_meta(retention.LAST_SWEEP_KEY) == NOW


def test_dry_run_with_overflow_analysis_assumes_it_succeeds(store: Memory) -> None:
    _mixed(store, fake_analyzer(store, fail={"mytool:s9.jsonl"}))
    dry = store.sweep(dry_run=True)
    assert store.tier2.digest_ids() == {f"mytool:s{i}.jsonl" for i in range(4)}
    real = store.sweep()
    assert real["overflow_analyzed"] == dry["overflow_analyzed"][:-1]
    assert dry["overflow_analyzed"][-1] == "mytool:s9.jsonl"
    assert dry["overflow_data_loss"] == [] and real["overflow_data_loss"] == ["mytool:s9.jsonl"]
    assert dry["budget_evicted"] == real["budget_evicted"] + ["mytool:s9.jsonl"]


def test_a_second_sweep_evicts_nothing(store: Memory) -> None:
    _mixed(store)
    first = store.sweep()
    assert evicted(first)
    second = store.sweep()
    assert evicted(second) == [] and second["bytes_freed"] == 0
    assert second["final_usage_bytes"] <= first["final_usage_bytes"]


def test_evicting_really_shrinks_the_file(store: Memory) -> None:
    for i in range(10):
        analyze(store, f"mytool:s{i}.jsonl")
    store.tier1.reclaim()
    before = on_disk(store)
    cap = before // 2
    set_caps(store, raw_soft_cap=cap, raw_hard_cap=cap)
    report = store.sweep()
    assert report["budget_evicted"]
    assert on_disk(store) == report["final_usage_bytes"] <= cap < before
    assert os.stat(store.tier1.path).st_size < before
    assert os.stat(f"{store.tier1.path}-wal").st_size == 0


def test_nothing_to_evict_takes_no_write_lock(store: Memory) -> None:
    other = Memory(store.settings, clock=store.clock)
    with other.tier1.transaction("hold"):  # another process holds the write lock
        report = store.sweep(dry_run=True)
    other.close()
    assert evicted(report) == [] and report["errors"] == []


def test_a_failing_pass_is_recorded_and_the_others_still_run(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    analyze(store, "mytool:s0.jsonl")
    set_caps(store, raw_soft_cap=1, raw_hard_cap=10**9)

    def broken(self: retention.Sweep, caps: retention.Caps) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(retention.Sweep, "_backstop", broken)
    report = store.sweep()
    assert report["errors"] == ["backstop: RuntimeError: disk on fire"]
    assert report["budget_evicted"] == ["mytool:s0.jsonl"]


def test_an_analyzed_session_without_digest_is_never_evicted(store: Memory) -> None:
    row = store.tier1.session("mytool:s0.jsonl", store.idle_before)
    store.tier1.mark_analyzed("mytool:s0.jsonl", NOW, started_at=None, ended_at=None,
                              seen_raw_bytes=row["raw_bytes"])
    set_caps(store, raw_soft_cap=1, raw_hard_cap=10**9, raw_max_age_days=1)
    report = store.sweep()
    assert evicted(report) == []
    assert any("digest is not in Tier 2" in w for w in report["warnings"])


# -- reports ------------------------------------------------------------------------------

def test_reports_are_kept_in_tier2_newest_first_and_outlive_tier1(store: Memory) -> None:
    analyze(store, "mytool:s0.jsonl")
    set_caps(store, raw_soft_cap=1)
    dry = store.sweep(dry_run=True)
    store.clock.advance(3600)  # type: ignore[attr-defined]
    real = store.sweep()
    assert [r["id"] for r in store.reports()] == [real["id"], dry["id"]]
    assert store.reports(limit=1) == [real]
    assert store.report(dry["id"]) == dry
    assert store.report(real["id"][:-2])["id"] == real["id"]
    assert store.last_sweep() == real
    contract = {"id", "dry_run", "started_at", "duration_ms", "backstop_evicted",
                "budget_evicted", "overflow_analyzed", "overflow_data_loss", "bytes_freed",
                "final_usage_bytes", "over_hard_cap", "tier2_over_cap", "warnings", "errors"}
    assert contract <= set(real)
    assert real["started_at"] == "2027-01-15T09:00:00Z"
    json.dumps(real)  # plain data
    settings_ = store.settings
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{settings_.data_dir / 'tier1.db'}{suffix}").unlink(missing_ok=True)
    with Memory(settings_, clock=FixedClock(NOW)) as fresh:
        assert [r["id"] for r in fresh.reports()] == [real["id"], dry["id"]]


def test_report_times_come_from_the_clock_frozen_with_freezegun(sources: dict[str, Path]) -> None:
    with freeze_time("2030-02-03 04:05:06"), Memory(config.load()) as memory:
        report = memory.sweep(dry_run=True)
    assert report["started_at"] == "2030-02-03T04:05:06Z"
    assert report["id"].startswith("20300203T040506Z-")


def test_a_sweep_killed_before_its_report_is_rebuilt_from_tier1(
        store: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    analyze(store, "mytool:s0.jsonl")
    set_caps(store, raw_soft_cap=1)

    def lost(report: dict[str, Any]) -> None:
        raise OSError("killed")

    monkeypatch.setattr(store.tier2, "put_report", lost)
    first = store.sweep()
    assert first["budget_evicted"] == ["mytool:s0.jsonl"]
    monkeypatch.undo()
    assert store.reports() == []
    assert any("interrupted" in p for p in store.check())

    second = store.sweep()

    assert any("interrupted" in w for w in second["warnings"])
    rebuilt = store.report(first["id"])
    assert rebuilt["evicted_unattributed"] == ["mytool:s0.jsonl"] and rebuilt["recovered"]
    assert store.check() == []


# -- forget and check ---------------------------------------------------------------------

def test_forget_removes_raw_and_digest_for_good(store: Memory) -> None:
    sid = "mytool:s0.jsonl"
    analyze(store, sid, title="zebra-unicorn-secret")
    store.tier1.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    result = store.forget(sid)
    assert result["session_removed"] and result["digest_removed"] and result["stored_bytes"] > 0
    assert sid not in states(store)
    assert store.tier2.get_digest(sid) is None and not store.search("zebra")
    assert store.tier1.cursor("mytool", "s0.jsonl") is None
    assert store.check() == []
    for suffix in ("", "-wal"):
        path = Path(f"{store.tier2.path}{suffix}")
        assert b"zebra-unicorn-secret" not in path.read_bytes()


def test_forget_finishes_a_forget_cut_short(store: Memory) -> None:
    sid = "mytool:s1.jsonl"
    analyze(store, sid)
    with store.tier1.transaction():  # killed after Tier 1, before Tier 2
        store.tier1.forget(sid)
        store.tier1.set_meta("forget_pending:" + sid, NOW)
    assert any("did not finish" in p for p in store.check())
    store.forget(sid)
    assert store.tier2.get_digest(sid) is None and store.check() == []


def test_check_finds_and_repairs_disagreements_between_the_tiers(store: Memory) -> None:
    conn = store.tier1.conn
    # analyzed in Tier 1, but the digest never reached Tier 2
    row = store.tier1.session("mytool:s0.jsonl", store.idle_before)
    store.tier1.mark_analyzed("mytool:s0.jsonl", NOW, started_at=None, ended_at=None,
                              seen_raw_bytes=row["raw_bytes"])
    # a digest whose Tier 1 row is gone (Tier 1 is a cache: it may be deleted)
    store.tier2.put_digest("mytool:gone.jsonl", "mytool", {"analyzer_version": 1}, NOW)
    # stored chunks whose session row is gone
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("DELETE FROM sessions WHERE id = 'mytool:s1.jsonl'")
    conn.execute("PRAGMA foreign_keys = ON")
    # accounting drift
    conn.execute("UPDATE totals SET raw_bytes = raw_bytes + 7")

    problems = store.check()
    assert any("analyzed without digest: mytool:s0.jsonl" in p for p in problems)
    assert any("digest without session: mytool:gone.jsonl" in p for p in problems)
    assert any("chunks without session" in p and "mytool:s1.jsonl" in p for p in problems)
    assert any("accounting" in p for p in problems)

    assert store.check(repair=True) == []
    assert states(store)["mytool:s0.jsonl"] == "ended"  # queued for analysis again
    assert states(store)["mytool:gone.jsonl"] == "evicted"  # the digest is kept
    assert states(store)["mytool:s1.jsonl"] == "ended"  # its raw bytes are reachable again
    assert store.tier2.has_digest("mytool:gone.jsonl")


# -- the property ---------------------------------------------------------------------------

@dataclasses.dataclass
class _Spec:
    size: int
    age_days: float
    analyzed: bool
    pinned: bool
    active: bool


_specs = st.lists(st.builds(
    _Spec, size=st.integers(200, 40_000), age_days=st.floats(1, 90), analyzed=st.booleans(),
    pinned=st.integers(0, 4).map(lambda n: n == 0), active=st.integers(0, 4).map(lambda n: n == 0)),
    min_size=1, max_size=10)


@contextlib.contextmanager
def _scratch_memory() -> Iterator[Memory]:
    """A store of its own for each example (hypothesis runs many in one test)."""
    defaults = config.load(defaults_only=True)
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(retention, "disk_space", lambda path: (10**15, 10**16)):
        root = Path(tmp) / "src"
        root.mkdir()
        settings_ = msgspec.structs.replace(defaults, data_dir=Path(tmp) / "data",
                                        sources={"mytool": Source("mytool", "jsonl", root)})
        with Memory(settings_, clock=FixedClock(NOW)) as memory:
            yield memory


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=_specs, soft_frac=st.floats(0, 1.2), extra_frac=st.floats(0, 0.6),
       max_age=st.sampled_from([0, 30, 60]), analyzer=st.sampled_from(["none", "ok", "fails"]))
def test_sweep_properties(specs: list[_Spec], soft_frac: float, extra_frac: float,
                          max_age: int, analyzer: str) -> None:
    with _scratch_memory() as memory:
        ids = [add_session(memory, f"p{i}", size=spec.size,
                           age_days=0 if spec.active else spec.age_days)
               for i, spec in enumerate(specs)]
        memory.ingest()
        for n, (sid, spec) in enumerate(zip(ids, specs, strict=True)):
            if spec.analyzed and not spec.active:
                analyze(memory, sid, at=NOW - 1000 + n)
            if spec.pinned:
                memory.pin(sid)
        memory.analyze_report = (None if analyzer == "none"  # type: ignore[assignment,method-assign]
                          else fake_analyzer(memory, fail=set(ids) if analyzer == "fails"
                                             else None))
        base = projected(memory)
        soft = int(base * soft_frac)
        set_caps(memory, raw_soft_cap=soft, raw_hard_cap=soft + int(base * extra_frac),
                 raw_max_age_days=max_age)
        before = {s["id"]: s for s in memory.sessions()}
        stored_before = memory.tier1.totals()["stored_bytes"]

        dry = memory.sweep(dry_run=True)
        report = memory.sweep()

        after = {s["id"]: s for s in memory.sessions()}
        gone = {sid for sid in ids if after[sid]["state"] == "evicted"}
        assert gone == set(evicted(report))
        lost = set(report["overflow_data_loss"])
        for sid in gone:
            assert not before[sid]["pinned"] and before[sid]["state"] != "active"
            # Nothing un-analyzed is evicted unless it is reported as data loss.
            if sid not in lost:
                assert memory.tier2.has_digest(sid)
            if before[sid]["state"] != "analyzed" and sid not in report["overflow_analyzed"]:
                assert sid in lost
        for sid in lost:
            assert not memory.tier2.has_digest(sid)
        # Over the soft cap only when no analyzed, unexempt session is left to evict.
        caps = report["caps"]
        if report["final_usage_bytes"] > caps["effective_soft_cap_bytes"]:
            assert not [s for s in after.values() if s["state"] == "analyzed"
                        and not s["pinned"] and s["stored_bytes"] > 0]
        if report["over_hard_cap"]:
            assert not [s for s in after.values() if s["state"] in ("ended", "analyzed")
                        and not s["pinned"] and s["stored_bytes"] > 0]
        # The report's bytes are what left the store, and its usage what is on disk.
        removed = stored_before - memory.tier1.totals()["stored_bytes"]
        assert report["bytes_freed"] == removed == sum(report["pass_bytes"].values())
        assert report["final_usage_bytes"] == on_disk(memory)
        if analyzer != "fails":
            for key in ("backstop_evicted", "budget_evicted", "overflow_analyzed",
                        "overflow_data_loss", "bytes_freed", "final_usage_bytes"):
                assert dry[key] == report[key], key
        assert memory.check() == []


# -- a sweep running in another process, busy stores, old reports ------------------------

# A real sweep in a child process, paused inside its overflow pass (after its budget pass
# committed an eviction, so its marker is in Tier 1) until the parent closes its stdin.
_PAUSED_SWEEP = """
import msgspec, sys
from session_memory import config
from session_memory.analyze.run import AnalyzeResult
from session_memory.memory import Memory

def pause(ids):
    print("paused", flush=True)
    sys.stdin.read()
    return AnalyzeResult()

settings = config.load()
settings = msgspec.structs.replace(settings, retention=msgspec.structs.replace(
    settings.retention, raw_soft_cap=1, raw_hard_cap=1))
with Memory(settings) as memory:
    memory.analyze_report = pause
    print(memory.sweep()["id"], flush=True)
"""


def test_a_sweep_running_in_another_process_is_not_taken_for_an_interrupted_one(
        home: Path) -> None:
    root = home / "src" / "mytool"
    root.mkdir(parents=True)
    write_config(home, f'[sources.mytool]\nformat = "jsonl"\nroot = "{root}"\n'
                 + "".join(f"[sources.{name}]\nenabled = false\n"
                           for name in ("claude-code", "codex", "gemini-cli", "aider")))
    with Memory(config.load(), clock=FixedClock(time.time())) as memory:
        ids = [add_session(memory, f"s{i}", size=20_000, age_days=3 - i) for i in range(3)]
        memory.ingest()
        analyze(memory, ids[0])
    child = subprocess.Popen([sys.executable, "-c", _PAUSED_SWEEP], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "paused"
        with Memory(config.load()) as other:
            assert retention.pending_sweep(other.tier1) is not None  # its marker is there
            assert not any("interrupted" in p for p in other.check())
            assert any("running" in w for w in other.check_warnings())
            assert retention.recover_interrupted(other.tier1, other.tier2) is None
            assert other.repair() == []
            assert retention.pending_sweep(other.tier1) is not None  # left to its owner
            with pytest.raises(StoreBusyError, match="sweeping"):
                other.sweep()
            assert other.reports() == []  # no bogus "recovered" report
        child.stdin.close()
        rid = child.stdout.readline().strip()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with Memory(config.load()) as after:
        assert [r["id"] for r in after.reports()] == [rid]
        assert not after.reports()[0].get("recovered")
        assert retention.pending_sweep(after.tier1) is None
        assert after.check() == []


def test_old_reports_are_pruned_except_those_with_data_loss(store: Memory) -> None:
    store.analyze_report = fake_analyzer(store, fail={  # type: ignore[method-assign]
        f"mytool:s{i}.jsonl" for i in range(10)})
    base = projected(store)
    set_caps(store, raw_soft_cap=base // 2, raw_hard_cap=base - 10_000)
    lossy = store.sweep()
    assert lossy["overflow_data_loss"]
    set_caps(store, raw_soft_cap=10**12, raw_hard_cap=10**12)
    plain = store.sweep()
    dry = store.sweep(dry_run=True)
    store.clock.advance(364 * DAY)  # type: ignore[attr-defined]
    kept = store.sweep()
    assert {r["id"] for r in store.reports()} == {lossy["id"], plain["id"], dry["id"], kept["id"]}

    store.clock.advance(2 * DAY)  # type: ignore[attr-defined]
    latest = store.sweep()

    assert {r["id"] for r in store.reports()} == {lossy["id"], kept["id"], latest["id"]}
    set_caps(store, report_max_age_days=0)  # 0 keeps every report
    store.clock.advance(1000 * DAY)  # type: ignore[attr-defined]
    store.sweep()
    assert len(store.reports()) == 4


def test_overflow_analysis_failures_are_listed_with_why(store: Memory) -> None:
    broken = {"mytool:s0.jsonl", "mytool:s5.jsonl"}
    store.analyze_report = fake_analyzer(store, fail=broken)  # type: ignore[method-assign]
    base = projected(store)
    set_caps(store, raw_soft_cap=base - 40_000, raw_hard_cap=base - 1)

    report = store.sweep()

    failed = {f["id"]: f["error"] for f in report["overflow_analysis_failed"]}
    assert failed == dict.fromkeys(broken, "ValueError: not a session")
    assert set(report["overflow_analyzed"]).isdisjoint(broken)
    for sid in broken:
        assert any(sid in w and "not a session" in w for w in report["warnings"])
    assert store.report(report["id"])["overflow_analysis_failed"] == \
        report["overflow_analysis_failed"]


def test_the_real_analyzer_reports_its_failures_to_the_sweep(store: Memory) -> None:
    store.settings.sources["mytool"].root.joinpath("s0.jsonl").write_bytes(b"")
    with store.tier1.transaction("break"):  # a stored chunk that fails its checksum
        store.tier1.conn.execute(
            "UPDATE chunks SET crc = crc + 1 WHERE file_id IN "
            "(SELECT id FROM files WHERE session_id = 'mytool:s0.jsonl')")
        # A frame (an ended file is stored sealed at once): its zstd checksum, zeroed.
        store.tier1.conn.execute(
            "UPDATE frames SET data = CAST(substr(data, 1, length(data) - 4) || x'00000000' "
            "AS BLOB) WHERE session_id = 'mytool:s0.jsonl'")
    base = projected(store)
    set_caps(store, raw_soft_cap=base - 40_000, raw_hard_cap=base - 1)
    report = store.sweep()
    failed = {f["id"]: f["error"] for f in report["overflow_analysis_failed"]}
    assert list(failed) == ["mytool:s0.jsonl"] and "checksum" in failed["mytool:s0.jsonl"]


def test_a_recovered_sweep_logs_its_data_loss_at_error_level(
        store: Memory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    store.analyze_report = fake_analyzer(store, fail={  # type: ignore[method-assign]
        f"mytool:s{i}.jsonl" for i in range(10)})
    base = projected(store)
    set_caps(store, raw_soft_cap=base // 2, raw_hard_cap=base - 40_000)

    def lost(report: dict[str, Any]) -> None:
        raise OSError("killed")

    monkeypatch.setattr(store.tier2, "put_report", lost)
    first = store.sweep()
    monkeypatch.undo()
    assert first["overflow_data_loss"]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert retention.recover_interrupted(store.tier1, store.tier2) == first["id"]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for sid in first["overflow_data_loss"]:
        assert any(sid in line for line in logged), sid
    assert store.report(first["id"])["overflow_data_loss"] == sorted(first["overflow_data_loss"])


# -- keep_free on a real filesystem ---------------------------------------------------------

# Run inside a mount namespace of its own (unshare), with the data folder on a 16 MiB tmpfs:
# a real filesystem that fills up, measured by the sweep itself (psutil), nothing faked.
_ON_A_SMALL_DISK = """
import json, os, sys
from pathlib import Path
from session_memory import config
from session_memory.memory import Memory

data = Path(sys.argv[1])
with Memory(config.load()) as memory:
    memory.ingest()
    assert len(memory.analyze()) == 10
    memory.tier1.reclaim()
    relaxed = memory.sweep(dry_run=True)
    # Fill the disk until 1 MiB less than the floor (half of it) is free.
    st = os.statvfs(data)
    floor = st.f_blocks * st.f_frsize // 2
    with open(data / "filler", "wb") as f:
        f.write(b"\\0" * (st.f_bavail * st.f_frsize - (floor - 2**20)))
        f.flush()
        os.fsync(f.fileno())
    report = memory.sweep()
    st = os.statvfs(data)
print(json.dumps({"relaxed": relaxed, "report": report, "floor": floor,
                  "free_after": st.f_bavail * st.f_frsize}))
"""


def test_keep_free_on_a_real_filesystem(home: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) (util-linux) to mount a small filesystem")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here to mount a small filesystem in: {probe.stderr}")
    root = home / "src" / "mytool"
    root.mkdir(parents=True)
    data = home / "small-disk"
    data.mkdir()
    write_config(home, f'[storage]\ndata_dir = "{data}"\n[retention]\nkeep_free = "50%"\n'
                 f'[sources.mytool]\nformat = "jsonl"\nroot = "{root}"\n'
                 + "".join(f"[sources.{name}]\nenabled = false\n"
                           for name in ("claude-code", "codex", "gemini-cli", "aider")))
    old = time.time() - 3 * DAY
    for i in range(10):
        path = root / f"s{i}.jsonl"
        path.write_bytes(json.dumps({"type": "user", "blob": os.urandom(150_000).hex()}
                                    ).encode() + b"\n")
        os.utime(path, (old + i, old + i))
    run = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         f'mount -t tmpfs -o size=16m tmpfs "{data}" && exec "$0" -c "$1" "{data}"',
         sys.executable, _ON_A_SMALL_DISK], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    relaxed, report = out["relaxed"], out["report"]
    assert evicted(relaxed) == []  # the disk had room: nothing to do
    caps = report["caps"]
    assert caps["keep_free_bytes"] == out["floor"] == caps["disk_total_bytes"] // 2
    assert caps["effective_soft_cap_bytes"] < caps["soft_cap_bytes"]
    assert report["budget_evicted"]  # oldest-analyzed first, under the 4 GiB soft cap
    assert report["budget_evicted"] == sorted(report["budget_evicted"],
                                              key=lambda sid: int(sid[8:-6]))
    assert report["final_usage_bytes"] <= caps["effective_soft_cap_bytes"]
    assert out["free_after"] >= out["floor"]  # the floor is free again


def test_sweep_frees_what_packed_sessions_held(memory: Memory,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions packed together: the sweep rewrites the packs without the sessions it
    evicts, before each batch commits, so that their bytes are really freed; its dry run
    names what it then does."""
    monkeypatch.setattr(tier1_mod, "PACK_MEMBER_MAX", 1 << 20)
    ids = [add_session(memory, f"p{i}", size=40_000, age_days=10 - i) for i in range(8)]
    memory.ingest()
    assert memory.tier1.conn.execute("SELECT count(*) FROM packs").fetchone() == (1,)
    for n, sid in enumerate(ids):
        analyze(memory, sid, at=NOW - 100 + n)
    before = projected(memory)
    target = before - before // 3
    set_caps(memory, raw_soft_cap=target, raw_hard_cap=target * 10)
    dry = memory.sweep(dry_run=True)
    report = memory.sweep()
    assert report["budget_evicted"] == dry["budget_evicted"] == ids[:len(dry["budget_evicted"])]
    assert 0 < len(report["budget_evicted"]) < len(ids)
    assert report["bytes_freed"] == dry["bytes_freed"] > 0
    assert report["final_usage_bytes"] <= target
    assert on_disk(memory) == report["final_usage_bytes"]
    assert memory.tier1.dead_pack_bytes() == 0
    kept = [sid for sid in ids if sid not in report["budget_evicted"]]
    for sid in kept:
        path = memory.settings.sources["mytool"].root / sid.split(":", 1)[1]
        assert stored_raw(memory, sid) == path.read_bytes()
    assert memory.tier1.totals()["stored_bytes"] == sum(stored(memory).values())
    assert memory.check() == []
