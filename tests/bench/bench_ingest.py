"""Ingest benchmark (run on demand): speed against plain `zstd -3 -T1`, size against
per-file `zstd -3`, peak RSS on one 1 GB file, and the cost of an unchanged rescan.

    .venv/bin/python tests/bench/bench_ingest.py [--corpus DIR] [--runs 3] [--skip-1gb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from session_memory.clock import FixedClock  # noqa: E402
from session_memory.memory import Memory  # noqa: E402
from tests.bench import corpus  # noqa: E402
from tests.bench.baseline import zstd_seconds  # noqa: E402
from tests.bench.settings import settings_for  # noqa: E402


def zstd_bytes(paths: list[Path], work: Path) -> int:
    """The sum of the files' sizes each compressed alone by `zstd -3`."""
    out = work / "zst"
    out.mkdir(parents=True)
    total = 0
    for i, p in enumerate(paths):
        dst = out / f"{i}.zst"
        subprocess.run(["zstd", "-3", "-T1", "-q", "-f", str(p), "-o", str(dst)], check=True)
        total += dst.stat().st_size
        dst.unlink()
    return total


def ingest_rss_child(path: str, data: str) -> None:
    root = Path(path).parent.parent
    with Memory(settings_for(Path(data), root), clock=FixedClock(4e9)) as memory:
        memory.ingest()
        memory.seal()
    print(corpus.peak_rss_kib())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "sm-bench-corpus")
    ap.add_argument("--skip-1gb", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="Paired speed runs (median reported).")
    args = ap.parse_args()
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        return
    paths = corpus.build(args.corpus)
    size = corpus.du(paths)
    sizes = sorted(os.path.getsize(p) for p in paths)
    print(f"corpus: {len(paths)} files, {size / 2**20:.0f} MiB, median "
          f"{sizes[len(sizes) // 2] / 1024:.0f} KiB, max {sizes[-1] / 2**20:.1f} MiB, "
          f">5MB: {sum(s > 5 * 2**20 for s in sizes)}")
    for p in paths:  # warm the page cache for both runs alike
        p.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        z_bytes = zstd_bytes(paths, work / "zstd-sizes")
        ratios = []
        for run in range(args.runs):  # each run pairs the baseline with a fresh ingest
            z_mbs = size / 2**20 / zstd_seconds(paths, work / f"zstd{run}")
            data = work / f"data{run}"
            with Memory(settings_for(data, args.corpus), clock=FixedClock(4e9)) as memory:
                t0 = time.perf_counter()
                memory.ingest()
                ingest_seconds = time.perf_counter() - t0
            i_mbs = size / 2**20 / ingest_seconds
            ratios.append(i_mbs / z_mbs)
            print(f"run {run + 1}: zstd -3 -T1: {z_mbs:.0f} MiB/s; ingest: {i_mbs:.0f} MiB/s; "
                  f"ratio {i_mbs / z_mbs:.2f}")
            if run:
                shutil.rmtree(data)
        print(f"ingest speed ratio: median {statistics.median(ratios):.2f} of {len(ratios)} "
              "runs (issue 11's goal for the command: >= 0.5)")
        with Memory(settings_for(work / "data0", args.corpus), clock=FixedClock(4e9)) as memory:
            t0 = time.perf_counter()
            memory.seal(workers=os.cpu_count() or 1)  # as `session-memory ingest` does
            seal_seconds = time.perf_counter() - t0
            memory.tier1.reclaim()
            sealed_bytes = memory.tier1.usage_bytes()
            t0 = time.perf_counter()
            memory.deep_seal(workers=os.cpu_count() or 1)  # the daemon's idle-time work
            deep_seconds = time.perf_counter() - t0
            memory.tier1.reclaim()
            tier1_bytes = memory.tier1.usage_bytes()
            stored = memory.tier1.totals()["stored_bytes"]
        print(f"seal (recompression of ended sessions, all cores): {seal_seconds:.1f} s, "
              f"{size / 2**20 / seal_seconds:.0f} MiB/s")
        print(f"deep seal (idle-time recompression, all cores): {deep_seconds:.1f} s, "
              f"{size / 2**20 / deep_seconds:.1f} MiB/s")
        print(f"per-file zstd -3: {z_bytes / 2**20:.1f} MiB; tier1 file once sealed "
              f"{sealed_bytes / 2**20:.1f} MiB: ratio {sealed_bytes / z_bytes:.3f} (goal <= 0.80); "
              f"once deep sealed {tier1_bytes / 2**20:.1f} MiB (frames {stored / 2**20:.1f} MiB): "
              f"ratio {tier1_bytes / z_bytes:.3f} (goal <= 0.65)")
        real_fixtures(work)
        rescan(work)
        if not args.skip_1gb:
            rss_1gb(work)


def real_fixtures(work: Path) -> None:
    """The same size ratio on the real Claude Code sessions in tests/fixtures."""
    root = Path(__file__).resolve().parents[1] / "fixtures" / "claude-code" / "projects"
    files = [p for p in root.rglob("*") if p.is_file()]
    if not files:
        return
    z_bytes = zstd_bytes(files, work / "fixtures-zstd")
    with Memory(settings_for(work / "data-fixtures", root), clock=FixedClock(4e9)) as memory:
        memory.ingest()
        memory.seal()
        memory.deep_seal()
        stored = memory.tier1.totals()["stored_bytes"]
    print(f"real fixtures ({len(files)} Claude Code files): stored {stored} B vs per-file "
          f"zstd -3 {z_bytes} B: ratio {stored / z_bytes:.3f}")


def rescan(work: Path) -> None:
    root = work / "many"
    for i in range(10_000):
        d = root / f"-proj{i % 100}"
        if i < 100:
            d.mkdir(parents=True)
        (d / f"{i:08d}-0000-4000-8000-000000000000.jsonl").write_bytes(b'{"a": 1}\n')
    with Memory(settings_for(work / "data-many", root), clock=FixedClock(4e9)) as memory:
        memory.ingest()
        t0 = time.perf_counter()
        summary = memory.ingest()
        seconds = time.perf_counter() - t0
    assert summary.files_seen == 10_000 and summary.files_changed == 0
    print(f"re-ingest of an unchanged tree of 10,000 files: {seconds:.2f} s (goal <= 1 s)")


def rss_1gb(work: Path) -> None:
    big = work / "big" / "-proj" / "00000000-0000-4000-8000-00000000b16b.jsonl"
    big.parent.mkdir(parents=True)
    seed_file = work / "seed.jsonl"
    corpus.write_session(seed_file, 8 * 2**20, 99)
    chunk = seed_file.read_bytes()
    with big.open("wb") as f:
        for _ in range(2**30 // len(chunk) + 1):
            f.write(chunk)
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
            "from tests.bench.bench_ingest import ingest_rss_child; "
            f"ingest_rss_child({str(big)!r}, {str(work / 'data-big')!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kib = int(out.stdout.strip().splitlines()[-1])
    print(f"peak RSS ingesting (and sealing) one {big.stat().st_size / 2**30:.2f} GiB file: "
          f"{kib / 1024:.0f} MiB (goal <= 150 MB)")
    shutil.rmtree(big.parent.parent)


if __name__ == "__main__":
    main()
