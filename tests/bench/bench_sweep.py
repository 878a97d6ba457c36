"""Retention sweep benchmark (run on demand): sweep time over stores of 10k, 100k and 1M
sessions, once with nothing to evict and once with 1% to evict, and how it grows.

    .venv/bin/python tests/bench/bench_sweep.py [--sizes 10000,100000,1000000]

Tier 1 rows are written straight with SQL (one small chunk a session; 90% analyzed, each
with a digest row in Tier 2), so a million sessions take seconds to build, not hours.
The goal: near-constant in what is kept, linear in what is evicted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from session_memory import config  # noqa: E402
from session_memory.clock import FixedClock  # noqa: E402
from session_memory.memory import TIER1_FILE, TIER2_FILE, Memory  # noqa: E402
from tests.bench.settings import settings_for as bench_settings  # noqa: E402

NOW = 1_800_000_000.0
CHUNK_BYTES = 200  # stored bytes a session; small so a million fit in a few hundred MB

_SERIES = "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < ?)"


def settings_for(data: Path, soft: int, max_age_days: float = 3650) -> config.Settings:
    return bench_settings(data, raw_soft_cap=soft, raw_hard_cap=max(soft, 1 << 50),
                          raw_max_age_days=max_age_days, keep_free=0)


def populate(data: Path, sessions: int) -> None:
    with Memory(settings_for(data, 1 << 50), clock=FixedClock(NOW)) as memory:
        t1, t2 = memory.tier1, memory.tier2
        with t1.transaction("bench"):
            # Every tenth session un-analyzed; the analyzed ones analyzed in id order.
            t1.conn.execute(
                f"{_SERIES} INSERT INTO sessions (id, source, native_id, state, first_seen, "
                "last_write, ended_at, analyzed_at) SELECT printf('bench:%08d', v), 'bench', "
                "printf('%08d', v), CASE WHEN v % 10 = 0 THEN 'open' ELSE 'analyzed' END, "
                "?2 - 86400 * 30 + v, ?2 - 86400 * 30 + v, ?2 - 86400 * 30 + v, "
                "CASE WHEN v % 10 = 0 THEN NULL ELSE ?2 - 86400 * 20 + v END FROM n",
                (sessions, NOW))
            t1.conn.execute(
                f"{_SERIES} INSERT INTO files (id, session_id, source, path, version, mtime, "
                "created_at) SELECT v, printf('bench:%08d', v), 'bench', "
                "printf('%08d.jsonl', v), 1, ?2, ?2 FROM n", (sessions, NOW))
            t1.conn.execute(
                f"{_SERIES} INSERT INTO chunks (file_id, offset, raw_len, crc, level, data) "
                "SELECT v, 0, 2 * ?2, 0, 3, randomblob(?2) FROM n", (sessions, CHUNK_BYTES))
        with t2.transaction("bench"):
            t2.conn.execute(
                f"{_SERIES} INSERT INTO digests (session_id, source, analyzer_version, "
                "analyzed_at, digest) SELECT printf('bench:%08d', v), 'bench', 1, ?2, '{}' "
                "FROM n WHERE v % 10 != 0", (sessions, NOW))
        t1.reclaim()


def timed_sweep(data: Path, soft: int, *, dry_run: bool = False) -> tuple[float, dict]:  # type: ignore[type-arg]
    with Memory(settings_for(data, soft), clock=FixedClock(NOW)) as memory:
        memory.analyze_report = None  # type: ignore[assignment,method-assign]
        memory.tier1.conn.execute("SELECT count(*) FROM sessions").fetchone()  # warm the cache
        start = time.perf_counter()
        report = memory.sweep(dry_run=dry_run)
        return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'sessions':>10} {'build s':>8} {'db MiB':>7} | {'keep-all ms':>11} | "
          f"{'1% dry ms':>9} {'1% real ms':>10} {'evicted':>8} {'ms/1k ev':>8}")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
            data = Path(tmp) / "data"
            start = time.perf_counter()
            populate(data, n)
            build = time.perf_counter() - start
            size = (data / TIER1_FILE).stat().st_size
            pristine = Path(tmp) / "pristine"
            pristine.mkdir()
            for name in (TIER1_FILE, TIER2_FILE):
                shutil.copy(data / name, pristine / name)

            keep_s, keep = timed_sweep(data, 1 << 50)
            assert not keep["budget_evicted"] and not keep["backstop_evicted"], keep

            for name in (TIER1_FILE, TIER2_FILE):
                shutil.copy(pristine / name, data / name)
            # An eviction frees a session's chunk, not its row: aim at 1% of the chunks.
            soft = int(size - 0.01 * n * CHUNK_BYTES)
            dry_s, dry = timed_sweep(data, soft, dry_run=True)
            real_s, real = timed_sweep(data, soft)
            evicted = len(real["budget_evicted"])
            assert dry["budget_evicted"] == real["budget_evicted"]
            assert real["final_usage_bytes"] <= soft, real
            print(f"{n:>10} {build:>8.1f} {size / 2**20:>7.1f} | {keep_s * 1000:>11.1f} | "
                  f"{dry_s * 1000:>9.1f} {real_s * 1000:>10.1f} {evicted:>8} "
                  f"{real_s * 1e6 / max(evicted, 1):>8.1f}")


if __name__ == "__main__":
    main()
