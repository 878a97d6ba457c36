"""Analyzer benchmark (run on demand): throughput against a bare `json.loads` of every line
of the same decompressed bytes, peak RSS analyzing one large session, and Tier 2 bytes per
session.

    .venv/bin/python tests/bench/bench_analyze.py [--case large|workstation] [--corpus DIR]
        [--runs 3] [--big-mib 1024] [--breakdown]

Two histories: `large`, the old large-session corpus (tests/bench/corpus.py, one Claude
Code source, about 225 KB a session), and `workstation`, a generated workstation's
(tests/bench/workstation.py: thousands of sessions of four formats, most of them small).

Each run pairs the baseline with an analysis of a fresh copy of the store, so that both
see the same machine; the ratio reported is the median of the runs. Analysis workers are
spawned, and a spawned process imports the main module first: like the `session-memory`
command's, this one imports the package and everything else only inside its functions.
The package is compiled to bytecode first, as `pip install .` leaves it: otherwise each
worker would compile it again (tests/bench/installed.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

if TYPE_CHECKING:
    from session_memory.memory import Memory

LATER = 4e9  # a clock far past every file: all sessions have ended
WORKSTATION_SOURCES = ("claude-code", "codex", "gemini-cli", "aider")
"""The workstation history's sources, each named for its format (see workstation.build)."""


def open_memory(root: Path, data: Path) -> Memory:
    """The store in `data`: with the workstation history's sources if `root` holds them,
    else one Claude Code source at `root`."""
    from session_memory import config
    from session_memory.clock import FixedClock
    from session_memory.memory import Memory
    from tests.bench.settings import settings_for

    if all((root / name).is_dir() for name in WORKSTATION_SOURCES):
        settings = config.settings_from(
            {**config.default_document(), "storage": {"data_dir": str(data)},
             "sources": {name: {"format": name, "root": str(root / name)}
                         for name in WORKSTATION_SOURCES}})
    else:
        settings = settings_for(data, root)
    return Memory(settings, clock=FixedClock(LATER))


def ingest(root: Path, data: Path) -> None:
    with open_memory(root, data) as memory:
        memory.ingest()
        memory.seal()  # analysis reads sealed 16 MiB frames: the case that needs memory


def bare_json_seconds(memory: Memory) -> tuple[float, int]:
    """json.loads of every line of every session's decompressed bytes (decompression and
    splitting are not timed: the baseline is the parse alone). A whole-file JSON document
    is loaded whole; a file that is not JSON at all (Aider's Markdown) is only decoded
    to text, the least a parser of it does."""
    import json

    seconds, total = 0.0, 0
    for s in memory.tier1.sessions(memory.idle_before):
        for f in memory.tier1.files(s["id"]):
            data = b"".join(memory.tier1.read_file(f.id))
            total += len(data)
            if f.path.endswith(".json"):
                t0 = time.perf_counter()
                json.loads(data)
            elif not f.path.endswith(".jsonl"):
                t0 = time.perf_counter()
                data.decode("utf-8", "replace")
            else:
                split = data.split(b"\n")
                t0 = time.perf_counter()
                for line in split:
                    if line:
                        json.loads(line)
            seconds += time.perf_counter() - t0
    return seconds, total


def file_pass_seconds(memory: Memory) -> float:
    """A bare `json.loads` pass over the source files themselves, as the issue words its
    baseline: each file opened, read line by line and each line loaded (a whole-file JSON
    document loaded whole, any other file only decoded to text), timed whole; a file no
    longer there is left out. Stricter than it, bare_json_seconds times the loads alone."""
    import json

    paths = sorted(path for path in {memory.settings.sources[f.source].root / f.path
                                     for s in memory.tier1.sessions(memory.idle_before)
                                     for f in memory.tier1.files(s["id"])}
                   if path.is_file())  # a file its tool removed since, or a row of a database
    t0 = time.perf_counter()
    for path in paths:
        with open(path, "rb") as file:
            if path.suffix == ".jsonl":
                for line in file:
                    if not line.isspace():
                        json.loads(line)
            elif path.suffix == ".json":
                json.loads(file.read())
            else:
                file.read().decode("utf-8", "replace")
    return time.perf_counter() - t0


def breakdown(memory: Memory) -> dict[str, float]:
    """CPU seconds of one serial pass (no workers) over every ended session, in the order
    analysis reads them, step by step: Tier 1 reads (zstd included); those and the parser
    (decoding included) reporting to a sink that keeps nothing; those and the digest
    builder; and the whole analysis, Tier 2 writes included. Each step is timed over the
    whole pass, and the figure for a step is its difference from the one before."""
    from session_memory import formats
    from session_memory.analyze import run, worker
    from session_memory.formats.events import Sink

    class NullSink(Sink):
        """The protocol's own methods, which keep nothing: parsing without a digest."""

    tier1 = memory.tier1
    rows = run.read_order(tier1, tier1.sessions(memory.idle_before))
    formats_by_source = {source: run.format_of(memory.settings, source)
                         for source in {row["source"] for row in rows}}

    def read() -> None:
        for row in rows:
            with tier1.snapshot():
                for f in tier1.files(row["id"]):
                    for _ in tier1.read_file(f.id, f):
                        pass

    def parse() -> None:
        for row in rows:
            module = formats.get(formats_by_source[row["source"]] or "")
            with tier1.snapshot():
                module.parse(worker.pieces(tier1, tier1.files(row["id"])), NullSink())

    def digest() -> None:
        for row in rows:
            assert isinstance(worker.digest_or_error(tier1, formats_by_source, row), dict)

    def analyze() -> None:
        serial = run.PARALLEL_MIN_BYTES
        run.PARALLEL_MIN_BYTES = 2**62
        try:
            memory.analyze()
        finally:
            run.PARALLEL_MIN_BYTES = serial

    seconds = {}
    with worker.pass_conditions():  # as a pass runs, in every step
        for name, step in (("read", read), ("parse", parse), ("digest", digest),
                           ("analyze", analyze)):
            t0 = time.process_time()
            step()
            seconds[name] = time.process_time() - t0
    return {"Tier 1 read": seconds["read"],
            "decode and parse": seconds["parse"] - seconds["read"],
            "digest builder": seconds["digest"] - seconds["parse"],
            "Tier 2 writes and the rest": seconds["analyze"] - seconds["digest"]}


def rss_child(root: str, data: str) -> None:
    """Analyze the one session of `data` and print this process's peak RSS (KiB)."""
    import json

    from tests.bench import corpus

    with open_memory(Path(root), Path(data)) as memory:
        t0 = time.perf_counter()
        analyzed = memory.analyze(force=True)
        seconds = time.perf_counter() - t0
    print(json.dumps({"analyzed": len(analyzed), "seconds": seconds,
                      "maxrss_kib": corpus.peak_rss_kib()}))


def big_session_rss(mib: int, work: Path) -> dict[str, float]:
    import json
    import subprocess

    from tests.bench import corpus

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
    import argparse
    import shutil
    import statistics
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=("large", "workstation"), default="large",
                    help="The history: large sessions of one format (the default), or a "
                    "workstation's, four formats and mostly small sessions.")
    ap.add_argument("--corpus", type=Path, help="Where the history is generated (and kept "
                    "for the next run); by default sm-bench-corpus or sm-ws in the temp folder.")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=1024,
                    help="Size of the one large session for the RSS run (0: skip).")
    ap.add_argument("--breakdown", action="store_true",
                    help="Also time one serial pass step by step (CPU seconds), after the runs.")
    args = ap.parse_args()
    from tests.bench import corpus, workstation
    from tests.bench.installed import compile_package

    compile_package()
    if args.case == "workstation":
        args.corpus = args.corpus or Path(tempfile.gettempdir()) / "sm-ws"
        paths = workstation.files(workstation.build(args.corpus))
        print(f"corpus: {args.case}, {len(paths)} files", end=", ")
    else:
        args.corpus = args.corpus or Path(tempfile.gettempdir()) / "sm-bench-corpus"
        paths = corpus.build(args.corpus)
        print(f"corpus: {args.case}, {len(paths)} session files", end=", ")
    print(f"{corpus.du(paths) / 2**20:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ingest(args.corpus, work / "data")
        with open_memory(args.corpus, work / "data") as memory:
            memory.tier1.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ratios, pass_ratios = [], []
        for run in range(args.runs):
            data = work / f"run{run}"
            data.mkdir(mode=0o700)
            shutil.copy2(work / "data" / "tier1.db", data / "tier1.db")
            with open_memory(args.corpus, data) as memory:
                bare_s, raw = bare_json_seconds(memory)
                pass_s = file_pass_seconds(memory)
                t0, cpu0 = time.perf_counter(), os.times()
                analyzed = memory.analyze()
                analyze_s, cpu1 = time.perf_counter() - t0, os.times()
                sizes = [len(row[0]) + len(row[1] or "") for row in memory.tier2.conn.execute(
                    "SELECT d.digest, f.prompts || f.files || f.commands || f.errors"
                    " || f.last_message || f.title FROM digests d"
                    " JOIN digests_fts f ON f.session_id = d.session_id")]
                memory.tier2.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                tier2_file = memory.tier2.usage_bytes()
            mib = raw / 2**20
            ratios.append(bare_s / analyze_s)
            pass_ratios.append(pass_s / analyze_s)
            print(f"run {run + 1}: bare json.loads {mib / bare_s:.0f} MiB/s ({bare_s:.2f} s for "
                  f"{mib:.0f} MiB); analyze {mib / analyze_s:.0f} MiB/s ({analyze_s:.2f} s, "
                  f"{len(analyzed)} sessions: Tier 1 read, zstd, parse, digest, Tier 2 write); "
                  f"ratio {bare_s / analyze_s:.2f}; a json.loads pass over the files "
                  f"{pass_s:.2f} s, ratio {pass_s / analyze_s:.2f}; CPU s: this process "
                  f"{cpu1.user + cpu1.system - cpu0.user - cpu0.system:.2f}, workers "
                  f"{sum(cpu1[2:4]) - sum(cpu0[2:4]):.2f}")
            shutil.rmtree(data)
        print(f"throughput ratio analyze / bare json.loads: median {statistics.median(ratios):.2f}"
              f" of {len(ratios)} runs (goal >= 1.5); against a json.loads pass over the"
              f" source files, reading them included: median {statistics.median(pass_ratios):.2f}")
        print(f"tier 2 bytes per session: median {statistics.median(sizes):.0f} "
              f"(digest JSON + indexed text), file {tier2_file / len(analyzed):.0f} per session")
        if args.breakdown:
            data = work / "breakdown"
            data.mkdir(mode=0o700)
            shutil.copy2(work / "data" / "tier1.db", data / "tier1.db")
            with open_memory(args.corpus, data) as memory:
                bare_s, _ = bare_json_seconds(memory)
                steps = breakdown(memory)
            print("one serial pass, CPU s: " + ", ".join(
                f"{name} {s:.2f}" for name, s in steps.items())
                + f"; in all {sum(steps.values()):.2f}, against bare json.loads {bare_s:.2f}")
            shutil.rmtree(data)
        if args.big_mib:
            big = big_session_rss(args.big_mib, work)
            print(f"one {args.big_mib} MiB session: peak RSS {big['maxrss_kib'] / 1024:.0f} MiB "
                  f"(goal <= 150), analyzed in {big['seconds']:.1f} s "
                  f"({args.big_mib / big['seconds']:.0f} MiB/s)")


if __name__ == "__main__":
    main()
