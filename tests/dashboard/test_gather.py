"""What the dashboard gathers from a real swept store, through the library's own calls."""

from __future__ import annotations

import pytest

from session_memory.dashboard import gather as gather_mod
from session_memory.dashboard.gather import gather
from session_memory.memory import Memory
from tests.dashboard.store import SweptStore


def test_sweeps_are_the_real_ones_oldest_first(swept: SweptStore, swept_memory: Memory) -> None:
    data = gather(swept_memory)
    real = [r for r in swept.reports if not r["dry_run"]]
    sweeps = data["sweeps"]
    assert sweeps["id"] == [r["id"] for r in real]
    assert sweeps["before"] == [r["usage_before_bytes"] for r in real]
    assert sweeps["after"] == [r["final_usage_bytes"] for r in real]
    assert sweeps["effective"] == [r["caps"]["effective_soft_cap_bytes"] for r in real]
    assert sweeps["n_budget"] == [len(r["budget_evicted"]) for r in real]
    assert sweeps["n_backstop"] == [len(r["backstop_evicted"]) for r in real]
    assert sweeps["n_overflow"] == [len(r["overflow_data_loss"]) for r in real]
    assert sweeps["freed_overflow"][-1] == real[-1]["pass_bytes"]["overflow"] > 0
    # The table lists every report, the dry run too, newest first.
    assert [r["id"] for r in data["reports"]] == [r["id"] for r in reversed(swept.reports)]


def test_data_loss_is_listed_by_session(swept: SweptStore, swept_memory: Memory) -> None:
    data = gather(swept_memory)
    assert [row["session"] for row in data["data_loss"]] == swept.data_loss
    assert {row["report"] for row in data["data_loss"]} == {swept.reports[-1]["id"]}
    lost = data["details"][swept.reports[-1]["id"]]["evictions"]
    assert [(sid, p) for sid, p, _ in lost] == [(sid, "overflow") for sid in swept.data_loss]


def test_room_counts_only_what_tier1_still_holds(swept_memory: Memory) -> None:
    data = gather(swept_memory)
    sessions = swept_memory.sessions()
    kept = [s for s in sessions if s["state"] != "evicted"]
    assert kept and len(kept) < len(sessions)
    assert {s["id"] for s in data["largest"]} == {s["id"] for s in kept if s["stored_bytes"]}
    sizes = [s["stored_bytes"] for s in data["largest"]]
    assert sizes == sorted(sizes, reverse=True)
    total = sum(s["stored_bytes"] for s in kept)
    assert sum(r["stored_bytes"] for r in data["by_source"]) == total
    assert sum(r["stored_bytes"] for r in data["by_project"]) == total
    pinned = [s for s in data["largest"] if s["pinned"]]
    assert pinned and pinned[0]["project"]  # analyzed: its digest names the project
    listed = {s["id"]: s for s in sessions}
    assert [(r["project"], r["title"]) for r in data["largest"]] == [
        (listed[r["id"]]["project"], listed[r["id"]]["title"]) for r in data["largest"]]
    assert pinned[0]["title"]


def test_spend_is_the_usage_rows_by_day_and_model(swept_memory: Memory) -> None:
    spend = gather(swept_memory)["spend"]
    usage = swept_memory.usage(by="day", breakdown=True)
    assert usage and spend["by_model"] and spend["has_cost"]
    expected = sorted((r["key"], m["model"], m["input"], m["output"], m["cost_usd"])
                      for r in usage for m in r["models"])
    assert sorted((r["day"], r["model"], r["input"], r["output"], r["cost_usd"])
                  for r in spend["rows"]) == expected
    assert sum(r["tokens"] for r in spend["rows"]) == sum(
        r["input"] + r["output"] + r["cache_creation"] + r["cache_read"] for r in usage)


def test_now_is_status(swept_memory: Memory) -> None:
    now = gather(swept_memory)["now"]
    status = swept_memory.status()
    assert now["sessions"] == status["sessions"]
    assert now["tier1"]["usage_bytes"] == status["tier1"]["usage_bytes"]
    assert now["tier1"]["effective_cap_bytes"] <= status["tier1"]["soft_cap_bytes"]
    assert now["daemon"] == {"running": False, "pid": None}
    assert now["last_sweep"]["id"] == status["last_sweep"]["id"]


def test_report_lists_past_the_budget_are_left_out_but_data_loss_never(
        swept: SweptStore, swept_memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gather_mod, "DETAIL_BUDGET_CHARS", 0)
    assert list(gather(swept_memory)["details"]) == [swept.reports[-1]["id"]]


def test_what_leaves_the_process_is_redacted(swept_memory: Memory) -> None:
    secret = "sk-ant-api03-" + "x" * 40
    report = swept_memory.reports(limit=1)[0]
    report["errors"] = [f"analyzer failed: ANTHROPIC_API_KEY={secret}"]
    swept_memory.tier2.put_report(report)
    data = gather(swept_memory)
    assert secret not in repr(data)
    assert "[REDACTED" in data["details"][report["id"]]["errors"][0]


def test_a_huge_report_lists_its_lost_sessions_all_and_the_rest_in_part(
        swept: SweptStore, swept_memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gather_mod, "LISTED_PER_REPORT", 1)
    rows = {r["id"]: r["detail"] for r in gather(swept_memory)["reports"]}
    lossy = rows[swept.reports[-1]["id"]]
    assert [e[0] for e in lossy["evictions"] if e[1] == "overflow"] == swept.data_loss
    budget = next(r for r in swept.reports if len(r["budget_evicted"]) > 1)
    listed = rows[budget["id"]]
    assert len(listed["evictions"]) == 1
    assert listed["omitted"] == len(budget["budget_evicted"]) - 1
