"""OpenCode database benchmark (run on demand): ingest of an opencode.db.

    .venv/bin/python tests/bench/bench_opencode_db.py [--runs 3] [--sessions 100]

Builds an opencode.db (OpenCode's tables, tests/formats/opencode_db.py) of `--sessions`
sessions of 20 messages each, every assistant message with 4 parts (text, a tool call with
a few KB of output, step start and finish), and the same sessions as the JSON files
OpenCode wrote before 1.2. Each round, in a fresh home: the first ingest of the database,
a pass with nothing changed (a whole walk, and the daemon's pass when the watcher names
the WAL), a pass after one part of one session changed (its session row touched, as a
step's end does); and the first ingest of the JSON files and a pass over them with
nothing changed, for comparison.
Medians of wall and CPU seconds (this process's user + system)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conftest import isolate_process, write_config  # noqa: E402
from tests.formats import opencode_db  # noqa: E402
from tests.formats.opencode_db import T0  # noqa: E402


def _cpu() -> float:
    usage = os.times()
    return usage.user + usage.system


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), _cpu()
    result = fn()
    return time.perf_counter() - wall, _cpu() - cpu, result


def _home(base: Path) -> Path:
    home = base / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    isolate_process(home)
    write_config(home, "")
    return home


def _change_one_row(db: Path, session: int, text: str) -> None:
    """One part of one session rewritten, its session row touched (as a step's end)."""
    conn = opencode_db.connect(db)
    sid = f"ses_{session:026d}"
    pid = conn.execute("SELECT id FROM part WHERE session_id = ? AND data LIKE '%text%'"
                       " LIMIT 1", (sid,)).fetchone()[0]
    conn.execute("UPDATE part SET data = json_set(data, '$.text', ?),"
                 " time_updated = time_updated + 1 WHERE id = ?", (text, pid))
    conn.execute("UPDATE session SET time_updated = time_updated + 1 WHERE id = ?", (sid,))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=100)
    args = parser.parse_args()
    from session_memory import config
    from session_memory.clock import FixedClock
    from session_memory.memory import Memory

    figures: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        docs = opencode_db.sessions(args.sessions)
        legacy = base / "legacy" / "storage"
        opencode_db.write_files(legacy, docs)
        counts = opencode_db.build(legacy, base / "opencode.db", T0)
        raw = sum(len(json.dumps(d, indent=2)) for _, d in docs)
        print(f"{counts['session']} sessions, {counts['message']} messages, "
              f"{counts['part']} parts; {raw / 1e6:.1f} MB as JSON files; "
              f"database {(base / 'opencode.db').stat().st_size / 1e6:.1f} MB")
        clock = FixedClock(T0 / 1000 + 400 * 86400)
        for _ in range(args.runs):
            home = _home(base)
            data = home / ".local" / "share" / "opencode"
            data.mkdir(parents=True)
            shutil.copy(base / "opencode.db", data / "opencode.db")
            with Memory(config.load(), clock=clock) as memory:
                wal = [data / "opencode.db-wal"]
                for name, fn in (("db first ingest", memory.ingest),
                                 ("db no-change pass", memory.ingest),
                                 ("db no-change, WAL named", partial(memory.ingest, wal))):
                    wall, cpu, summary = _timed(fn)
                    assert summary.errors == 0
                    figures.setdefault(name, []).append((wall, cpu))
                for name, fn in (("db pass, one row changed", memory.ingest),
                                 ("db one row changed, WAL named", partial(memory.ingest, wal))):
                    _change_one_row(data / "opencode.db", args.sessions // 2, name)
                    wall, cpu, summary = _timed(fn)
                    assert summary.new_versions == 2, summary
                    figures.setdefault(name, []).append((wall, cpu))
            home = _home(base)
            shutil.copytree(legacy, home / ".local" / "share" / "opencode" / "storage")
            with Memory(config.load(), clock=clock) as memory:
                wall, cpu, _ = _timed(memory.ingest)
                figures.setdefault("json files first ingest", []).append((wall, cpu))
                wall, cpu, _ = _timed(memory.ingest)
                figures.setdefault("json files no-change pass", []).append((wall, cpu))
    for name, runs in figures.items():
        print(f"{name:32s} wall {statistics.median(w for w, _ in runs):7.3f} s"
              f"   cpu {statistics.median(c for _, c in runs):7.3f} s   ({len(runs)} runs)")


if __name__ == "__main__":
    main()
