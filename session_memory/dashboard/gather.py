"""What the dashboard shows, gathered through the library calls the CLI uses (status, reports,
sessions, usage): no SQL here. One plain, JSON-ready dict; secrets redacted before it
leaves the process."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from session_memory import retention
from session_memory.analyze.redact import redact_all
from session_memory.memory import Memory

PASSES = ("backstop", "budget", "overflow")
LARGEST_SESSIONS = 50
TOP_PROJECTS = 25
RECENT_REPORTS = 100
LISTED_PER_REPORT = 200  # sessions a report's row lists in the table (data loss: all of them)
DATA_LOSS_ROWS = 1000
# Per-report session lists for the chart's click-through, newest first, up to this many
# characters of JSON (before compression): a year of hourly sweeps must stay under 2 MB.
# Reports that record data loss are always included in full.
DETAIL_BUDGET_CHARS = 600_000
SWEEP_COLUMNS = ("id", "t", "before", "after", "soft", "hard", "effective", "freed_backstop",
                 "freed_budget", "freed_overflow", "n_backstop", "n_budget", "n_overflow")


def gather(memory: Memory) -> dict[str, Any]:
    """Everything the page needs, as of now: one consistent view of each store (a sweep that
    commits meanwhile is on the next page, not half on this one; a read never blocks it)."""
    now = memory.clock.now()
    with memory.tier1.snapshot(), memory.tier2.snapshot():
        status = memory.status()
        reports = memory.reports()  # newest first
        sessions = memory.sessions()  # each with its digest's project and title
        spend = _spend(memory)
    details = [_detail(r) for r in reports]  # each report's sessions, walked once
    data = {
        "generated_at": now,
        "data_dir": status["data_dir"],
        "now": _now(memory, status),
        "sweeps": _sweeps(reports, details),
        "reports": _report_rows(reports, details),
        "details": _details(reports, details),
        "data_loss": _data_loss(reports, details),
        "largest": _largest(sessions, now),
        "by_source": _by_key(sessions, lambda s: s["source"]),
        "by_project": _by_project(sessions),
        "spend": spend,
    }
    return dict(redact_all(data))


def _now(memory: Memory, status: dict[str, Any]) -> dict[str, Any]:
    t1, disk = status["tier1"], status["disk"]
    caps = retention.caps_for(memory.settings, t1["usage_bytes"], disk["free_bytes"],
                              disk["total_bytes"])
    last = status["last_sweep"]
    return {
        "tier1": {"usage_bytes": t1["usage_bytes"], "soft_cap_bytes": t1["soft_cap_bytes"],
                  "hard_cap_bytes": t1["hard_cap_bytes"],
                  "effective_cap_bytes": caps.effective_soft_cap_bytes,
                  "keep_free_bytes": caps.keep_free_bytes,
                  "raw_bytes": t1.get("raw_bytes"), "stored_bytes": t1.get("stored_bytes")},
        "tier2": status["tier2"],
        "sessions": status["sessions"],
        "disk": disk,
        "daemon": status["daemon"],
        "last_sweep": None if last is None else _report_row(last),
    }


def _evictions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each eviction with its pass and bytes; older or rebuilt reports hold only id lists."""
    if report.get("evictions") is not None:
        return list(report["evictions"])
    out = []
    for pass_name, key in (("backstop", "backstop_evicted"), ("budget", "budget_evicted"),
                           ("overflow", "overflow_data_loss"), (None, "evicted_unattributed")):
        out += [{"id": sid, "pass": pass_name, "stored_bytes": None}
                for sid in report.get(key) or []]
    return out


def _sweeps(reports: list[dict[str, Any]],
            details: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Real sweeps, oldest first, as columns (one list a field): compact for a year of them."""
    columns: dict[str, list[Any]] = {name: [] for name in SWEEP_COLUMNS}
    for r, detail in zip(reversed(reports), reversed(details), strict=True):
        if r.get("dry_run"):
            continue
        caps = r.get("caps") or {}
        pass_bytes = r.get("pass_bytes") or {}
        counts = {p: 0 for p in PASSES}
        for _sid, pass_name, _stored in detail["evictions"]:
            if pass_name in counts:
                counts[pass_name] += 1
        row = {
            "id": r["id"], "t": r.get("started_at_epoch"),
            "before": r.get("usage_before_bytes"), "after": r.get("final_usage_bytes"),
            "soft": caps.get("soft_cap_bytes"), "hard": caps.get("hard_cap_bytes"),
            "effective": caps.get("effective_soft_cap_bytes"),
            **{f"freed_{p}": pass_bytes.get(p, 0) for p in PASSES},
            **{f"n_{p}": counts[p] for p in PASSES},
        }
        for name in SWEEP_COLUMNS:
            columns[name].append(row[name])
    return columns


def _report_row(r: dict[str, Any]) -> dict[str, Any]:
    evictions = _evictions(r)
    return {
        "id": r["id"], "t": r.get("started_at_epoch"), "dry_run": bool(r.get("dry_run")),
        "evicted": len(evictions),
        "data_loss": len(r.get("overflow_data_loss") or []),
        "bytes_freed": r.get("bytes_freed"), "before": r.get("usage_before_bytes"),
        "after": r.get("final_usage_bytes"),
        "warnings": len(r.get("warnings") or []), "errors": len(r.get("errors") or []),
    }


def _report_rows(reports: list[dict[str, Any]],
                 details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reports the page lists as a table: the newest, and every one that lost data or
    failed (those matter however old they are)."""
    rows = []
    for i, (r, detail) in enumerate(zip(reports, details, strict=True)):
        if i < RECENT_REPORTS or r.get("overflow_data_loss") or r.get("errors"):
            rows.append(_report_row(r) | {"detail": _limited(detail, LISTED_PER_REPORT)})
    return rows


def _detail(r: dict[str, Any]) -> dict[str, Any]:
    """A report's sessions (pass, stored bytes), warnings and errors."""
    return {
        "evictions": [[e["id"], e.get("pass"), e.get("stored_bytes")] for e in _evictions(r)],
        "omitted": 0,
        "analyzed": list(r.get("overflow_analyzed") or []),
        "warnings": list(r.get("warnings") or []),
        "errors": list(r.get("errors") or []),
    }


def _limited(detail: dict[str, Any], limit: int) -> dict[str, Any]:
    """The detail with at most `limit` sessions besides those lost, which are always all
    there."""
    evictions = detail["evictions"]
    if len(evictions) <= limit:
        return detail
    lost = [e for e in evictions if e[1] == "overflow"]
    kept = [e for e in evictions if e[1] != "overflow"][:max(0, limit - len(lost))]
    return detail | {"evictions": lost + kept,
                     "omitted": len(evictions) - len(lost) - len(kept)}


def _details(reports: list[dict[str, Any]],
             details: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each report's sessions, warnings and errors, newest first until the budget is spent;
    a report that lost data always."""
    out: dict[str, dict[str, Any]] = {}
    spent = 0
    for r, detail in zip(reports, details, strict=True):
        size = len(json.dumps(detail))
        if spent + size <= DETAIL_BUDGET_CHARS or r.get("overflow_data_loss"):
            out[r["id"]] = detail
            spent += size
    return out


def _data_loss(reports: list[dict[str, Any]],
               details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r, detail in zip(reports, details, strict=True):
        if r.get("dry_run") or not r.get("overflow_data_loss"):
            continue
        sizes = {sid: stored for sid, _pass, stored in detail["evictions"]}
        for sid in r["overflow_data_loss"]:
            rows.append({"session": sid, "report": r["id"], "t": r.get("started_at_epoch"),
                         "stored_bytes": sizes.get(sid)})
    return rows[:DATA_LOSS_ROWS]


def _largest(sessions: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The sessions that take the most room in Tier 1 now."""
    kept = [s for s in sessions if s["state"] != "evicted" and s["stored_bytes"]]
    kept.sort(key=lambda s: (-s["stored_bytes"], s["id"]))
    rows = []
    for s in kept[:LARGEST_SESSIONS]:
        since = s["ended_at"] if s["ended_at"] is not None else s.get("last_write")
        rows.append({"id": s["id"], "source": s["source"], "state": s["state"],
                     "project": s["project"], "title": s["title"], "pinned": s["pinned"],
                     "stored_bytes": s["stored_bytes"], "raw_bytes": s["raw_bytes"],
                     "age_days": None if since is None else max(0.0, (now - since) / 86400)})
    return rows


def _by_key(sessions: list[dict[str, Any]],
            key: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for s in sessions:
        if s["state"] == "evicted":
            continue
        acc = sums[key(s)]
        acc[0] += 1
        acc[1] += s["stored_bytes"] or 0
        acc[2] += s["raw_bytes"] or 0
    rows: list[dict[str, Any]] = [
        {"key": k, "sessions": n, "stored_bytes": stored, "raw_bytes": raw}
        for k, (n, stored, raw) in sums.items()]
    rows.sort(key=lambda r: (-r["stored_bytes"], r["key"]))
    return rows


def _by_project(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored bytes by project; sessions not analyzed yet have no known project."""
    rows = _by_key(sessions, lambda s: s["project"] or "(not analyzed yet)")
    if len(rows) <= TOP_PROJECTS:
        return rows
    rest = rows[TOP_PROJECTS - 1:]
    other = {"key": f"({len(rest)} other projects)",
             "sessions": sum(r["sessions"] for r in rest),
             "stored_bytes": sum(r["stored_bytes"] for r in rest),
             "raw_bytes": sum(r["raw_bytes"] for r in rest)}
    return rows[:TOP_PROJECTS - 1] + [other]


TOKEN_FIELDS = ("input", "output", "cache_creation", "cache_read")


def _spend(memory: Memory) -> dict[str, Any]:
    """Tokens and cost by day (local time, as `usage` counts them), each model its part."""
    rows = []
    for r in memory.usage(by="day", breakdown=True):
        for part in r.get("models") or [r | {"model": None}]:
            rows.append(_spend_row(r["key"], part.get("model"), part))
    return {"rows": rows,
            "by_model": any(r["model"] is not None for r in rows),
            "has_cost": any(r["cost_usd"] is not None for r in rows)}


def _spend_row(day: str, model: str | None, r: dict[str, Any]) -> dict[str, Any]:
    tokens = {f: int(r.get(f) or 0) for f in TOKEN_FIELDS}
    return {"day": day, "model": model, **tokens, "tokens": sum(tokens.values()),
            "cost_usd": r.get("cost_usd")}
