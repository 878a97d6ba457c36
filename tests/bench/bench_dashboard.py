"""Dashboard benchmark (run on demand): the page for a year of hourly sweeps (8,760 eviction
reports) over 50,000 sessions: the time to write it and its size.

    .venv/bin/python tests/bench/bench_dashboard.py [--reports 8760] [--sessions 50000] [--runs 5]

The store is shaped like a year of use: Claude Code-style ids (a UUID each), about 40,000
sessions evicted along the year (most by the backstop, some by the budget, a few reports
with data loss), 9,000 analyzed and 1,000 ended or active still in Tier 1, 80 projects, and
an hour of usage per session over three models. Rows are written straight with SQL so the
store takes seconds to build. Baseline, in the same process: the library calls behind
`status`, `reports`, `sessions` and `usage --breakdown`, each turned into its --json text
(what the four commands print). Reported: medians of paired runs, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from session_memory import config, dashboard  # noqa: E402
from session_memory.analyze.digest import analyzer_version  # noqa: E402
from session_memory.clock import FixedClock  # noqa: E402
from session_memory.memory import Memory  # noqa: E402
from tests.bench.settings import settings_for  # noqa: E402

NOW = 1_800_000_000.0
HOUR = 3600.0
GIB = 1 << 30
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001")


def populate(data: Path, n_reports: int, n_sessions: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    start = NOW - n_reports * HOUR
    ids = [f"claude-code:{uuid.UUID(int=rnd.getrandbits(128), version=4)}"
           for _ in range(n_sessions)]
    n_evicted = n_sessions * 4 // 5
    n_analyzed = n_sessions * 18 // 100
    lost = set(rnd.sample(range(n_evicted), 15))  # un-analyzed, lost over the hard cap
    # Each evicted session goes in one report: the hour it was evicted (sorted along the year).
    evicted_hour = sorted(rnd.randrange(n_reports) for _ in range(n_evicted))
    projects = [f"/home/dev/work/project-{i:02d}" for i in range(80)]
    with Memory(settings_for(data), clock=FixedClock(NOW)) as memory:
        t1, t2 = memory.tier1, memory.tier2
        with t1.transaction("bench"):
            for i, sid in enumerate(ids):
                began = start + rnd.random() * n_reports * HOUR
                if i < n_evicted:
                    state, evicted_at = "evicted", start + evicted_hour[i] * HOUR
                    analyzed_at = None if i in lost else evicted_at - 40 * 86400
                elif i < n_evicted + n_analyzed:
                    state, evicted_at = "analyzed", None
                    analyzed_at = NOW - rnd.random() * 86400 * 40
                else:
                    state, evicted_at, analyzed_at = "open", None, None
                    began = NOW - rnd.random() * 86400 * 3
                t1.conn.execute(
                    "INSERT INTO sessions (id, source, native_id, state, first_seen, last_write,"
                    " started_at, ended_at, analyzed_at, evicted_at) VALUES (?, 'claude-code',"
                    " ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sid, sid.split(":", 1)[1], state, began, began + 1800, began, began + 1800,
                     analyzed_at, evicted_at))
                if state != "evicted":
                    t1.conn.execute(
                        "INSERT INTO files (session_id, source, path, version, mtime, created_at)"
                        " VALUES (?, 'claude-code', ?, 1, ?, ?)",
                        (sid, f"-home-dev-work-project/{sid.split(':', 1)[1]}.jsonl", began,
                         began))
                    size = int(rnd.paretovariate(1.2) * 2000)
                    t1.conn.execute(
                        "INSERT INTO chunks (file_id, offset, raw_len, crc, level, data)"
                        " VALUES (last_insert_rowid(), 0, ?, 0, 3, zeroblob(?))",
                        (size * 5, min(size, 200_000)))
        # Digests through the store (it keeps the hourly usage tables), 2,000 at a time.
        digests = []
        for i, sid in enumerate(ids):
            if i in lost or i >= n_evicted + n_analyzed:
                continue
            began = NOW - (n_sessions - i) * (n_reports * HOUR / n_sessions)
            spend = [[None, int(began // HOUR), model, 0, began, began + 1800,
                      rnd.randrange(5000), rnd.randrange(20000), rnd.randrange(50000), 0,
                      rnd.randrange(500000), 0, rnd.randrange(1, 80)]
                     for model in rnd.sample(MODELS, rnd.choice((1, 1, 2)))]
            digests.append((sid, "claude-code", {
                "analyzer_version": analyzer_version(1), "project": rnd.choice(projects),
                "title": "bench", "started_at": began, "ended_at": began + 1800, "spend": spend}))
        for i in range(0, len(digests), 2000):
            t2.put_digests(digests[i:i + 2000], NOW)
        with t2.transaction("bench"):
            by_hour: dict[int, list[int]] = {}
            for i, hour in enumerate(evicted_hour):
                by_hour.setdefault(hour, []).append(i)
            for h in range(n_reports):
                t = start + h * HOUR
                evictions = [{"id": ids[i], "pass": "overflow" if i in lost else
                              ("budget" if rnd.random() < 0.2 else "backstop"),
                              "raw_bytes": 0, "stored_bytes": rnd.randrange(50_000, 5_000_000)}
                             for i in by_hour.get(h, [])]
                freed = sum(e["stored_bytes"] for e in evictions)
                # Tier 1 hovers under the soft cap; some days keep_free lowers the cap.
                effective = 4 * GIB if (h // 24) % 20 else int(3.5 * GIB)
                before = effective - rnd.randrange(0, 300 << 20) + freed // 2
                after = max(0, before - freed)
                report = _report(t, evictions, before, after, effective)
                t2.conn.execute("INSERT INTO reports VALUES (?, ?, 0, ?)",
                                (report["id"], t, json.dumps(report)))


def _report(t: float, evictions: list[dict[str, Any]], before: int, after: int,
            effective: int) -> dict[str, Any]:
    """A report as retention.Sweep writes it."""
    from session_memory.retention import iso, new_report_id

    by_pass = {p: [e for e in evictions if e["pass"] == p]
               for p in ("backstop", "budget", "overflow")}
    return {
        "id": new_report_id(t), "dry_run": False, "started_at": iso(t), "started_at_epoch": t,
        "duration_ms": 35.0,
        "backstop_evicted": [e["id"] for e in by_pass["backstop"]],
        "budget_evicted": [e["id"] for e in by_pass["budget"]],
        "overflow_analyzed": [], "overflow_data_loss": [e["id"] for e in by_pass["overflow"]],
        "bytes_freed": before - after, "final_usage_bytes": after,
        "over_hard_cap": False, "tier2_over_cap": False,
        "warnings": ["Tier 1 stays over its soft cap"] if after > effective else [],
        "errors": [],
        "pass_bytes": {p: sum(e["stored_bytes"] for e in evs) for p, evs in by_pass.items()},
        "evictions": evictions, "usage_before_bytes": before, "stored_before_bytes": before,
        "tier2_usage_bytes": 300 << 20,
        "caps": {"soft_cap_bytes": 4 * GIB, "hard_cap_bytes": 6 * GIB,
                 "effective_soft_cap_bytes": effective, "keep_free_bytes": 10 * GIB,
                 "disk_free_bytes": 80 * GIB, "disk_total_bytes": 500 * GIB,
                 "max_age_days": 45, "distilled_cap_bytes": GIB},
    }


def baseline(memory: Memory) -> int:
    """What `status`, `reports`, `sessions` and `usage --breakdown` do with --json."""
    docs = [memory.status(), memory.reports(), memory.sessions(),
            memory.usage(by="day", breakdown=True)]
    return sum(len(json.dumps(d, indent=2, ensure_ascii=False, default=str)) for d in docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=8760)
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        began = time.perf_counter()
        populate(data, args.reports, args.sessions)
        print(f"store: {args.reports} reports, {args.sessions} sessions, built in "
              f"{time.perf_counter() - began:.1f} s")
        settings = settings_for(data)
        out = Path(tmp) / "dashboard.html"
        base_s, page_s, ratios = [], [], []
        for _ in range(args.runs):
            with Memory(settings, clock=FixedClock(NOW)) as memory:
                t0 = time.perf_counter()
                json_chars = baseline(memory)
                t1 = time.perf_counter()
            with Memory(settings, clock=FixedClock(NOW)) as memory:
                t2 = time.perf_counter()
                written = dashboard.write(memory, out)
                t3 = time.perf_counter()
            base_s.append(t1 - t0)
            page_s.append(t3 - t2)
            ratios.append((t3 - t2) / (t1 - t0))
        size = out.stat().st_size
        html = out.read_text()
        payload = html.split('id="dashboard-data" data-encoding="gzip+base64">', 1)[1]
        payload = payload.split("</script>", 1)[0]
        print(f"baseline (status+reports+sessions+usage --json, {json_chars / 1e6:.1f} MB of "
              f"JSON): median {statistics.median(base_s):.2f} s")
        print(f"dashboard: median {statistics.median(page_s):.2f} s; "
              f"ratio to baseline (median of {args.runs} paired runs) "
              f"{statistics.median(ratios):.2f}")
        print(f"page: {size:,} bytes ({size / 1e6:.2f} MB; limit 2 MB), of which data "
              f"{len(payload):,} bytes; {written['sweeps']} sweeps; the reports' own JSON is "
              f"{sum(len(json.dumps(r)) for r in _reports(settings)) / 1e6:.1f} MB")
        assert size < 2_000_000, f"the page is {size:,} bytes, over 2 MB"


def _reports(settings: config.Settings) -> list[dict[str, Any]]:
    with Memory(settings, clock=FixedClock(NOW)) as memory:
        return memory.reports()


if __name__ == "__main__":
    main()
