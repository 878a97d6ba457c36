"""Tier 1 benchmark (issue 11), on three histories: a generated workstation's (thousands of
sessions across four formats, tests/bench/workstation.py), the old large-session corpus
(tests/bench/corpus.py), and the real histories in ../shared/fixtures/real/.

For each, in one run on the same files, paired with its baselines:
- `session-memory ingest` until it exits (a real subprocess) against `zstd -3 -T1` over
  the same files: throughput ratio (goal >= 0.5);
- Tier 1 on disk right after that ingest, and after the daemon's idle work, against the
  sum of per-file `zstd -3` (goals <= 0.80 and <= 0.65);
- CPU seconds of all compression work (the ingest process, then the idle work), per GB;
- the append path: new bytes of active files, ingested, against zstd over those bytes, as
  the daemon meets them (its store open, the sessions written just now); the first round,
  which reopens sessions the idle work had packed, is reported apart;
- with `--floor`, what the strongest general-purpose compressors reach over the whole set
  as one stream (every repeat across sessions in reach), against the same per-file
  `zstd -3`: a size goal below that is out of reach of any store built on them.

    .venv/bin/python tests/bench/bench_tier1.py [--case workstation|large|real] [--runs 3]
        [--append-only] [--floor]

`--append-only` ingests each case once (with the idle work after it, as the full run does)
and measures only the append path: the same files grown alike, against the same baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from session_memory import config  # noqa: E402
from session_memory.clock import FixedClock  # noqa: E402
from session_memory.memory import Memory  # noqa: E402
from tests.bench import corpus, workstation  # noqa: E402
from tests.bench.baseline import zstd_seconds  # noqa: E402
from tests.bench.installed import compile_package  # noqa: E402

SHARED_REAL = REPO.parent / "shared" / "fixtures" / "real"
FORMAT_OF = {"claude-code": "claude-code", "codex": "codex", "gemini-cli": "gemini-cli",
             "aider": "aider"}


def case_roots(case: str, where: Path) -> dict[str, Path]:
    if case == "workstation":
        return workstation.build(where / "sm-ws")
    if case == "large":
        corpus.build(where / "sm-bench-corpus")
        return {"claude-code": where / "sm-bench-corpus"}
    return {name: SHARED_REAL / name for name in ("claude-code", "codex")
            if (SHARED_REAL / name).is_dir()}


def case_files(case: str, roots: dict[str, Path]) -> list[Path]:
    if case == "workstation":
        return workstation.files(roots)
    return sorted(p for r in roots.values() for p in r.rglob("*") if p.is_file())


def write_config(home: Path, roots: dict[str, Path]) -> Path:
    text = f'[storage]\ndata_dir = "{home / "data"}"\n[ingest]\nidle_seconds = 60\n'
    for name in ("claude-code", "codex", "gemini-cli", "aider"):
        if name in roots:
            text += f'[sources.{name}]\nformat = "{FORMAT_OF[name]}"\nroot = "{roots[name]}"\n'
        else:
            text += f"[sources.{name}]\nenabled = false\n"
    path = home / "config.toml"
    path.write_text(text)
    return path


def per_file_zstd3(paths: list[Path]) -> int:
    """Sum of each file compressed alone at level 3, as `zstd -3 FILE` writes it."""
    c = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    return sum(len(c.compress(p.read_bytes())) for p in paths)


def whole_set_floor(paths: list[Path]) -> dict[str, tuple[int, float]]:
    """The whole set as one stream at `zstd -19 --long=27` and at `xz -9e`: (bytes, CPU
    seconds) each. Streamed, a file at a time: memory stays flat."""
    import lzma

    params = zstandard.ZstdCompressionParameters.from_level(
        19, window_log=27, enable_ldm=True)
    coders = {"zstd -19 --long=27": zstandard.ZstdCompressor(
                  compression_params=params).compressobj(),
              "xz -9e": lzma.LZMACompressor(preset=9 | lzma.PRESET_EXTREME)}
    out = {}
    for name, coder in coders.items():
        cpu0, size = time.process_time(), 0
        for p in paths:
            size += len(coder.compress(p.read_bytes()))
        size += len(coder.flush())
        out[name] = (size, time.process_time() - cpu0)
    return out


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ingest(home: Path, cfg: Path) -> tuple[float, float]:
    """`session-memory ingest` until it exits: (wall seconds, CPU seconds)."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / "xdg-config"),
               XDG_DATA_HOME=str(home / "xdg-data"), XDG_STATE_HOME=str(home / "xdg-state"))
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run([str(REPO / ".venv" / "bin" / "session-memory"), "--config", str(cfg),
                    "ingest", "--json"], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - cpu0


def idle_work(cfg: Path) -> tuple[float, int, int]:
    """The daemon's idle work, done at once: (CPU seconds, disk bytes, stored bytes)."""
    with Memory(config.load(cfg), clock=FixedClock(4e9)) as memory:
        cpu0 = time.process_time()
        memory.seal()  # sessions still open when the ingest ended
        memory.deep_seal()
        memory.tier1.reclaim()
        cpu = time.process_time() - cpu0
        return cpu, memory.tier1.usage_bytes(), memory.tier1.totals()["stored_bytes"]


def footprint(cfg: Path) -> tuple[int, int, int]:
    with Memory(config.load(cfg), clock=FixedClock(4e9)) as memory:
        return (memory.tier1.usage_bytes(), memory.tier1.totals()["stored_bytes"],
                memory.tier1.totals()["raw_bytes"])


def append_round(memory: Memory, picked: list[Path], work: Path) -> float:
    """Grow the picked session files by about 10% each (copies of their own lines, as an
    agent's next turns look), ingest, and compare with zstd -3 -T1 over just the new bytes."""
    new_parts = work / "appended"
    new_parts.mkdir(parents=True)
    added = 0
    for i, p in enumerate(picked):
        data = p.read_bytes()
        extra = data[len(data) // 2: len(data) // 2 + max(len(data) // 10, 2000)]
        extra = extra[extra.find(b"\n") + 1:] or extra
        with p.open("ab") as f:
            f.write(extra)
        (new_parts / f"{i}.jsonl").write_bytes(extra)
        added += len(extra)
    z = zstd_seconds(sorted(new_parts.iterdir()), work)
    t0 = time.perf_counter()
    summary = memory.ingest(picked)  # the files that changed, as the watcher names them
    seconds = time.perf_counter() - t0
    assert summary.bytes_added == added, (summary.bytes_added, added)
    return z / seconds


def append_path(cfg: Path, picked: list[Path], work: Path, rounds: int) -> list[float]:
    """As the daemon meets appends: its store open, on the system clock, so that sessions
    written now are active. Round 0 reopens sessions the idle work had sealed and packed
    (an ended session's first new bytes); the rounds after it append to active ones."""
    with Memory(config.load(cfg)) as memory:
        return [append_round(memory, picked, work / f"round{k}") for k in range(rounds + 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=("workstation", "large", "real"), action="append")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--where", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--append-only", action="store_true",
                    help="measure only the append path (after one ingest and the idle work)")
    ap.add_argument("--floor", action="store_true",
                    help="also compress the whole set as one stream at zstd -19 --long=27 "
                    "and xz -9e (slow: about 1 and 2 CPU minutes per 100 MiB)")
    args = ap.parse_args()
    compile_package()  # the ingest subprocess starts as an installed package does
    for case in args.case or ["workstation", "large", "real"]:
        if args.append_only:
            bench_append(case, args.where, args.runs)
        else:
            bench_case(case, args.where, args.runs, args.floor)


def bench_append(case: str, where: Path, runs: int) -> None:
    roots = case_roots(case, where)
    paths = case_files(case, roots)
    print(f"== {case}: {len(paths)} files (append path only)")
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        work = Path(tmp)
        home = work / "run0"
        home.mkdir()
        cfg = write_config(home, roots)
        run_ingest(home, cfg)
        idle_work(cfg)
        append_ratios(cfg, paths, work, runs)


def append_ratios(cfg: Path, paths: list[Path], work: Path, runs: int) -> None:
    picked = [p for p in paths if p.suffix == ".jsonl"][:: max(1, len(paths) // 200)]
    sizes = {p: p.stat().st_size for p in picked}
    try:
        reopen, *ratios = append_path(cfg, picked, work / "append", runs)
    finally:  # the corpus is the bench's own: put the files back as they were
        for p, n in sizes.items():
            with p.open("rb+") as f:
                f.truncate(n)
    print(f"  append path / zstd -3 -T1 over the new bytes, {len(picked)} active files: "
          f"{' '.join(f'{r:.3f}' for r in ratios)}; median "
          f"{statistics.median(ratios):.3f} (goal >= 0.7); reopening them once ended and "
          f"packed: {reopen:.3f}")


def bench_case(case: str, where: Path, runs: int, floor: bool = False) -> None:
    roots = case_roots(case, where)
    paths = case_files(case, roots)
    size = sum(p.stat().st_size for p in paths)
    print(f"== {case}: {len(paths)} files, {size / 2**20:.0f} MiB")
    for p in paths:  # warm the page cache for every run alike
        p.read_bytes()
    z3 = per_file_zstd3(paths)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        work = Path(tmp)
        speed, cpus = [], []
        for run in range(runs):
            home = work / f"run{run}"
            home.mkdir()
            cfg = write_config(home, roots)
            z_s = zstd_seconds(paths, home)
            i_s, i_cpu = run_ingest(home, cfg)
            speed.append(z_s / i_s)
            cpus.append(i_cpu)
            print(f"  run {run + 1}: zstd -3 -T1 {z_s:.2f} s, ingest {i_s:.2f} s "
                  f"({i_cpu:.1f} CPU s): ratio {z_s / i_s:.3f}")
            if run:
                shutil.rmtree(home)
        cfg = work / "run0" / "config.toml"
        disk, stored, raw = footprint(cfg)
        assert raw == size, (raw, size)
        idle_cpu, idle_disk, idle_stored = idle_work(cfg)
        gb = size / 1e9
        print(f"  ingest throughput / zstd -3 -T1: median {statistics.median(speed):.3f} "
              f"(goal >= 0.5)")
        print(f"  per-file zstd -3: {z3 / 2**20:.1f} MiB; tier1 on disk after ingest "
              f"{disk / 2**20:.1f} MiB (stored {stored / 2**20:.1f}): {disk / z3:.3f} "
              f"(goal <= 0.80); after idle work {idle_disk / 2**20:.1f} MiB "
              f"(stored {idle_stored / 2**20:.1f}): {idle_disk / z3:.3f} (goal <= 0.65)")
        print(f"  CPU: ingest {statistics.median(cpus):.1f} s + idle {idle_cpu:.1f} s = "
              f"{(statistics.median(cpus) + idle_cpu) / gb:.0f} s/GB (goal <= 30)")
        if floor:
            print("  the whole set as one stream, against per-file zstd -3: " + "; ".join(
                f"{name} {size / z3:.3f} ({cpu / gb:.0f} CPU s/GB)"
                for name, (size, cpu) in whole_set_floor(paths).items()))
        if case != "real":
            append_ratios(cfg, paths, work, runs)


if __name__ == "__main__":
    main()
