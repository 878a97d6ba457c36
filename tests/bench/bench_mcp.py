"""MCP server benchmark (run on demand): how fast `session-memory mcp` starts, and how fast
search_sessions answers over a memory of 100,000 digests.

    .venv/bin/python -m tests.bench.bench_mcp [--digests 100000] [--runs 7]

Digests are written straight into Tier 2 (as the analyzer stores them), shaped like a heavy
user's: a title and prompts in words of a Zipf-distributed vocabulary with the terms of
programming work, 3-20 file paths among a few thousand, commands, an error now and then, a
last reply, 300 project folders, a year of start times.

Figures, each the median of paired runs (the machine is shared):
- start: spawning the server until it has answered `initialize` and `tools/list`, against
  the baseline of a bare interpreter importing the SDK (what no server can avoid);
- search: a search_sessions round trip through the SDK's stdio client, per kind of query,
  against the baseline of the same search through the library in this process (so the
  ratio is what the protocol and the server add), with the CPU time the server spent on
  each call (psutil; the load of a shared machine stretches wall time). Target: under
  100 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from session_memory import config
from session_memory.analyze.digest import analyzer_version
from session_memory.memory import TIER1_FILE, TIER2_FILE, Memory
from session_memory.store.tier1 import Tier1
from session_memory.store.tier2 import Tier2
from tests.bench.installed import compile_package
from tests.conftest import OUTSIDE_VARS, home_environ
from tests.mcp_client import mcp_client

NOW = 1_800_000_000.0
BATCH = 5_000
_TERMS = """
error test fix build deploy config login auth token database migration schema query index
cache timeout retry flaky failing crash memory leak race condition lock deadlock async
await thread worker queue job scheduler cron webhook api endpoint route handler middleware
request response header cookie session user account billing invoice payment stripe refund
subscription email notification template render component hook state props redux store
docker compose kubernetes helm terraform pipeline ci github actions release version bump
lint format typecheck mypy ruff eslint prettier jest pytest coverage fixture mock snapshot
refactor rename extract split module package dependency upgrade security vulnerability
performance latency profile benchmark optimize pagination search filter sort export csv
"""
_FILLER = "the a to of and in is it for that this with on be as are you we can"
TERMS, FILLER = _TERMS.split(), _FILLER.split()
EXTS = ("py", "ts", "tsx", "go", "rs", "md", "toml", "yaml", "json", "sql")


def _words(rnd: random.Random, vocab: list[str], weights: list[float], n: int) -> str:
    return " ".join(rnd.choices(vocab, weights=weights, k=n))


def digests(n: int, seed: int = 7) -> list[tuple[str, str, dict[str, Any]]]:
    rnd = random.Random(seed)
    vocab = TERMS + FILLER + [f"w{i}" for i in range(4000)]  # a long tail of rare words
    weights = [1 / (i + 1) ** 0.9 for i in range(len(vocab))]
    rnd.shuffle(weights)
    projects = [f"/home/dev/{rnd.choice(['work', 'src', 'code'])}/proj-{i}" for i in range(300)]
    files = ["src/billing/invoice_total.py"] + [
        f"src/{rnd.choice(TERMS)}/{rnd.choice(TERMS)}_{i}.{rnd.choice(EXTS)}"
        for i in range(4000)]
    out = []
    for i in range(n):
        started = NOW - rnd.uniform(0, 365 * 86400)
        prompts = [_words(rnd, vocab, weights, rnd.randrange(6, 60))
                   for _ in range(rnd.randrange(1, 6))]
        edited = rnd.sample(files, rnd.randrange(0, 8))
        digest = {
            "title": prompts[0][:80], "first_prompt": prompts[0], "prompts": prompts,
            "cwd": rnd.choice(projects), "git_branch": "main", "models": ["claude-sonnet-4-5"],
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "ended_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + 1800)),
            "duration_s": 1800, "user_turns": len(prompts), "tool_calls": {"Bash": 3},
            "files_edited": edited, "files_read": rnd.sample(files, rnd.randrange(3, 13)),
            "commands": [f"pytest -q tests/test_{rnd.choice(TERMS)}.py"
                         for _ in range(rnd.randrange(0, 10))],
            "tool_errors": 0,
            "errors": [{"tool": "Bash", "snippet": _words(rnd, vocab, weights, 20)}
                       for _ in range(rnd.randrange(0, 3) // 2)],
            "tokens": {"input": 1000, "output": 500, "cache_creation": 0, "cache_read": 0,
                       "reasoning": 0},
            "outcome": "completed",
            "last_assistant_message": _words(rnd, vocab, weights, rnd.randrange(10, 80)),
            "subagents": [], "analyzer_version": analyzer_version(1),
        }
        out.append((f"bench:{i:06d}", "bench", digest))
    return out


def build(data: Path, n: int) -> None:
    Tier1(data / TIER1_FILE).close()
    tier2 = Tier2(data / TIER2_FILE)
    items = digests(n)
    for start in range(0, n, BATCH):
        tier2.put_digests(items[start:start + BATCH], NOW)
    tier2.close()


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("rare word", {"query": "w3021"}),
    ("common word", {"query": "error"}),
    ("two words", {"query": "flaky test"}),
    ("OR", {"query": "deadlock OR race"}),
    ("file name", {"query": "invoice_total.py"}),
    ("with project", {"query": "migration", "project": "proj-42"}),
    ("with since", {"query": "deploy", "since": "30d"}),
]


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _server_process() -> psutil.Process:
    """The server the client spawned: this process's newest child."""
    return max(psutil.Process().children(recursive=True), key=lambda p: p.create_time())


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def bench_search(env: dict[str, str], settings: config.Settings, runs: int) -> None:
    """Wall time of each round trip and of the library call (medians); CPU time of the
    server per call (mean) and of the library call (median), which the load of a shared
    machine inflates less than wall time."""
    from session_memory.usage import parse_when

    print(f"{'query':<14} {'mcp ms':>7} {'server cpu':>10} {'library ms':>10} "
          f"{'library cpu':>11} {'ratio':>6} {'hits':>5}")
    with mcp_client(env) as client, Memory(settings, read_only=True) as memory:
        server = _server_process()
        for label, args in QUERIES:
            since = parse_when(args["since"]) if "since" in args else None
            client.call("search_sessions", **args)  # warm both: the first read pages in
            memory.search(args["query"], 10, project=args.get("project"), since=since)
            mcp_wall, mcp_cpu, lib_wall, lib_cpu = [], [], [], []
            hits = 0
            for _ in range(runs):
                c0, t0 = _cpu(server), time.perf_counter()
                hits = len(client.call("search_sessions", **args))
                t1, c1 = time.perf_counter(), _cpu(server)
                p1 = time.process_time()
                memory.search(args["query"], 10, project=args.get("project"), since=since)
                t2, p2 = time.perf_counter(), time.process_time()
                mcp_wall.append(t1 - t0)
                mcp_cpu.append(c1 - c0)
                lib_wall.append(t2 - t1)
                lib_cpu.append(p2 - p1)
            m, b = median_ms(mcp_wall), median_ms(lib_wall)
            # The server's CPU clock ticks in 10 ms: its mean over the runs, not a median.
            server_ms = round(sum(mcp_cpu) / runs * 1000, 1)
            print(f"{label:<14} {m:>7} {server_ms:>10} {b:>10} "
                  f"{median_ms(lib_cpu):>11} {m / b if b else 0:>6.2f} {hits:>5}")


def bench_start(env: dict[str, str], runs: int) -> None:
    """Wall time until the server has answered, and the CPU time it took to get there,
    paired with a bare interpreter importing the SDK (what no server can avoid)."""
    starts, bases, start_cpu, base_cpu = [], [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        with mcp_client(env) as client:
            client.list_tools()
            t1 = time.perf_counter()
            start_cpu.append(_cpu(_server_process()))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        t2 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], env=env,
                       check=True)
        t3 = time.perf_counter()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        starts.append(t1 - t0)
        bases.append(t3 - t2)
        base_cpu.append(after.ru_utime + after.ru_stime - children.ru_utime
                        - children.ru_stime)
    s, b = median_ms(starts), median_ms(bases)
    sc, bc = median_ms(start_cpu), median_ms(base_cpu)
    print(f"start: the server answers tools/list after {s} ms wall, {sc} ms CPU; importing "
          f"the SDK alone takes {b} ms wall, {bc} ms CPU (ratios {s / b:.2f}, {sc / bc:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--digests", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the store in this folder (and reuse "
                        "it when it is already there) instead of a temporary one")
    args = parser.parse_args()
    compile_package()  # the server starts as an installed package does
    with tempfile.TemporaryDirectory() as tmp:
        home = (args.keep or Path(tmp)) / "home"
        built = home.exists()
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
        env.update(home_environ(home))
        data = Path(env["XDG_DATA_HOME"]) / "session-memory"
        config_file = Path(env["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
        if not built:
            data.mkdir(parents=True)
            config_file.parent.mkdir(parents=True)
            config_file.write_text(f'[storage]\ndata_dir = "{data}"\n')
            t0 = time.perf_counter()
            build(data, args.digests)
            print(f"{args.digests} digests built in {time.perf_counter() - t0:.1f} s")
        tier2 = Tier2(data / TIER2_FILE, read_only=True)
        count = len(tier2.digest_ids())
        tier2.close()
        print(f"{count} digests, tier2 {(data / TIER2_FILE).stat().st_size / 2**20:.0f} MiB")
        bench_start(env, args.runs)
        bench_search(env, config.load(config_file), args.runs)  # the server's settings


if __name__ == "__main__":
    main()
