"""Usage benchmark (run on demand): `usage --by day` over the digests of 100,000 sessions.

    .venv/bin/python tests/bench/bench_usage.py [--sessions 100000] [--runs 7]

The store is built through Tier2.put_digests, as analysis writes it: two years of sessions,
each spending over 1 to 6 hours with one or two models, in every quarter hour of them (the
rows by slot of 100,000 sessions come to about 1.3 million), cache reads and writes as
Claude Code's are, and a few sessions past 200k prompt tokens. Each response's key is left
out: the usage queries read the rows by slot, never the response keys, and 5 million keys
would take minutes to write.

Timed, in paired runs (medians; the machine is shared):
- library: Memory.usage("day") in this process, and the same on an empty store (baseline);
- command: `session-memory usage --by day --json` as a new process (startup, imports,
  query, pricing, output), and `session-memory usage --by day --json` on an empty store,
  the baseline that shows what the rows themselves cost.
Goal: the command under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from session_memory.analyze.digest import analyzer_version  # noqa: E402
from session_memory.clock import FixedClock  # noqa: E402
from session_memory.memory import Memory  # noqa: E402
from session_memory.store.tier2 import SLOT_SECONDS  # noqa: E402
from tests.bench.settings import settings_for  # noqa: E402

NOW = 1_800_000_000.0
MODELS = ["claude-sonnet-4-5-20250929", "claude-opus-4-7", "claude-haiku-4-5-20251001",
          "gpt-5-codex", "gpt-5.2", "gemini-2.5-pro"]


def digest(i: int, rng: random.Random) -> tuple[str, str, dict[str, object]]:
    start = NOW - rng.uniform(0, 2 * 365 * 86400)
    hours = rng.choice([1, 1, 1, 2, 2, 3, 4, 6])
    models = rng.sample(MODELS, rng.choice([1, 1, 1, 2]))
    spend = []
    for slot in range(hours * 3600 // SLOT_SECONDS):
        at = start + slot * SLOT_SECONDS
        for model in models:
            responses = rng.randint(2, 15)
            prompt_over = 200_000 if rng.random() < 0.02 else 0
            spend.append([None, int(at // SLOT_SECONDS), model, prompt_over, at, at + 450,
                          responses * rng.randint(1, 50), responses * rng.randint(50, 900),
                          responses * rng.randint(0, 3000), 0,
                          responses * rng.randint(10_000, 90_000), 0, responses])
    source = "codex" if models[0].startswith("gpt") else "claude-code"
    sid = f"{source}:{i:08x}-0000-4000-8000-000000000000"
    return sid, source, {
        "title": f"session {i}", "first_prompt": "make it faster", "cwd": f"/src/p{i % 40}",
        "project": f"/src/p{i % 40}", "models": models,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "ended_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + hours * 3600)),
        "tokens": {"input": 1, "output": 1, "cache_creation": 0, "cache_read": 0,
                   "reasoning": 0},
        "analyzer_version": analyzer_version(1), "spend": spend}


def populate(data: Path, sessions: int) -> int:
    rng = random.Random(13)
    with Memory(settings_for(data), clock=FixedClock(NOW)) as memory:
        for first in range(0, sessions, 5000):
            memory.tier2.put_digests([digest(i, rng) for i in range(
                first, min(first + 5000, sessions))], NOW)
        return len(memory.usage("day"))


def time_library(data: Path) -> float:
    with Memory(settings_for(data), clock=FixedClock(NOW)) as memory:
        began = time.perf_counter()
        memory.usage("day")
        return time.perf_counter() - began


def time_command(data: Path) -> float:
    conf = data / "config.toml"
    conf.write_text(f'[storage]\ndata_dir = "{data}"\n')
    env = {**os.environ, "SESSION_MEMORY_CONFIG": str(conf), "TZ": "Europe/Berlin"}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "session_memory", "usage", "--by", "day", "--json"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        full, empty = Path(tmp) / "full", Path(tmp) / "empty"
        began = time.perf_counter()
        days = populate(full, args.sessions)
        populate(empty, 0)
        print(f"built {args.sessions:,} sessions' digests ({days} days) in "
              f"{time.perf_counter() - began:.0f} s")
        for name, timer in (("library", time_library), ("command", time_command)):
            pairs = [(timer(full), timer(empty)) for _ in range(args.runs)]
            full_s = statistics.median(p[0] for p in pairs)
            empty_s = statistics.median(p[1] for p in pairs)
            ratio = statistics.median(p[0] / p[1] for p in pairs)
            print(f"{name}: usage --by day {full_s:.3f} s over {args.sessions:,} sessions; "
                  f"{empty_s:.3f} s on an empty store; ratio {ratio:.1f}x "
                  f"(medians of {args.runs} paired runs)")


if __name__ == "__main__":
    main()
