"""Analyzer benchmark (run on demand): throughput against a bare `json.loads` of every line
of the same decompressed bytes, peak RSS analyzing one large session, and Tier 2 bytes per
session.

    .venv/bin/python tests/bench/bench_analyze.py [--corpus DIR] [--big-mib 1024]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from session_memory import config  # noqa: E402
from session_memory.clock import FixedClock  # noqa: E402
from session_memory.memory import Memory  # noqa: E402
from tests.bench import corpus  # noqa: E402

LATER = 4e9  # a clock far past every file: all sessions have ended


def settings_for(root: Path, data: Path) -> config.Settings:
    doc = config._read_toml(config.default_config_text(), "defaults")
    doc["storage"] = {"data_dir": str(data)}
    doc["sources"] = {"bench": {"format": "claude-code", "root": str(root)}}
    return config.settings_from(doc)


def ingest(root: Path, data: Path) -> None:
    with Memory(settings_for(root, data), clock=FixedClock(LATER)) as memory:
        memory.ingest()
        memory.seal()  # analysis reads sealed 16 MiB frames: the case that needs memory


def bare_json_seconds(memory: Memory) -> tuple[float, int]:
    """json.loads of every line of every session's decompressed bytes (decompression and
    splitting are not timed: the baseline is the parse alone)."""
    seconds, total = 0.0, 0
    for s in memory.tier1.sessions(memory.idle_before):
        for f in memory.tier1.files(s["id"]):
            data = b"".join(memory.tier1.read_file(f.id))
            total += len(data)
            split = data.split(b"\n")
            t0 = time.perf_counter()
            for line in split:
                if line:
                    json.loads(line)
            seconds += time.perf_counter() - t0
    return seconds, total


def rss_child(root: str, data: str) -> None:
    """Analyze the one session of `data` and print this process's peak RSS (KiB)."""
    with Memory(settings_for(Path(root), Path(data)), clock=FixedClock(LATER)) as memory:
        t0 = time.perf_counter()
        analyzed = memory.analyze(force=True)
        seconds = time.perf_counter() - t0
    print(json.dumps({"analyzed": len(analyzed), "seconds": seconds,
                      "maxrss_kib": corpus.peak_rss_kib()}))


def big_session_rss(mib: int, work: Path) -> dict[str, float]:
    root, data = work / "big-root", work / "big-data"
    path = root / "-home-dev-big" / "0b000000-0000-4000-8000-000000000001.jsonl"
    t0 = time.perf_counter()
    corpus.write_session(path, mib * 2**20, seed=7)
    generated = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--ingest-child", str(root), str(data)],
                   check=True)
    ingested = time.perf_counter() - t0
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(root), str(data)],
                         check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    path.unlink()
    return result | {"generate_s": generated, "ingest_s": ingested}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] in ("--rss-child", "--ingest-child"):
        if sys.argv[1] == "--rss-child":
            rss_child(sys.argv[2], sys.argv[3])
        else:
            ingest(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path,
                    default=Path(tempfile.gettempdir()) / "sm-bench-corpus")
    ap.add_argument("--big-mib", type=int, default=1024,
                    help="Size of the one large session for the RSS run (0: skip).")
    args = ap.parse_args()
    paths = corpus.build(args.corpus)
    print(f"corpus: {len(paths)} sessions, {corpus.du(paths) / 2**20:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ingest(args.corpus, work / "data")
        with Memory(settings_for(args.corpus, work / "data"),
                    clock=FixedClock(LATER)) as memory:
            bare_s, raw = bare_json_seconds(memory)
            t0 = time.perf_counter()
            analyzed = memory.analyze(force=True)
            analyze_s = time.perf_counter() - t0
            sizes = [len(row[0]) + len(row[1] or "") for row in memory.tier2.conn.execute(
                "SELECT d.digest, f.prompts || f.files || f.commands || f.errors"
                " || f.last_message || f.title FROM digests d"
                " JOIN digests_fts f ON f.session_id = d.session_id")]
            memory.tier2.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            tier2_file = memory.tier2.usage_bytes()
        mib = raw / 2**20
        print(f"bare json.loads: {mib / bare_s:.0f} MiB/s ({bare_s:.1f} s for {mib:.0f} MiB)")
        print(f"analyze:         {mib / analyze_s:.0f} MiB/s ({analyze_s:.1f} s, "
              f"{len(analyzed)} sessions; Tier 1 read, zstd, parse, digest, Tier 2 write)")
        print(f"throughput ratio analyze / bare json.loads: {bare_s / analyze_s:.2f} "
              "(goal >= 1.5)")
        print(f"tier 2 bytes per session: median {statistics.median(sizes):.0f} "
              f"(digest JSON + indexed text), file {tier2_file / len(analyzed):.0f} per session")
        if args.big_mib:
            big = big_session_rss(args.big_mib, work)
            print(f"one {args.big_mib} MiB session: peak RSS {big['maxrss_kib'] / 1024:.0f} MiB "
                  f"(goal <= 150), analyzed in {big['seconds']:.1f} s "
                  f"({args.big_mib / big['seconds']:.0f} MiB/s)")


if __name__ == "__main__":
    main()
