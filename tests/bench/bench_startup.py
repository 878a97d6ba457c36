"""Start-up benchmark (run on demand): how long a command takes before it does its work.

    .venv/bin/python tests/bench/bench_startup.py [--runs 21]

Each command runs as a user runs it (the console script, the package compiled as
`pip install .` leaves it, see installed.py) on an empty source set, its store made
beforehand: `ingest --json` (imports, config, opening both stores, one pass over nothing),
`status --json` and `--help`. Paired in every round with two baselines: a bare interpreter,
and one importing the libraries no ingest can do without (click, msgspec, apsw, zstandard).
Figures are medians of wall and CPU time (user + system) over the rounds; CPU time is the
steadier on a shared machine. Also the number of modules `ingest` loads."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.installed import compile_package  # noqa: E402
from tests.conftest import OUTSIDE_VARS, home_environ, sources_toml  # noqa: E402

PYTHON = REPO / ".venv" / "bin" / "python"
COMMAND = REPO / ".venv" / "bin" / "session-memory"
LIBRARIES = "import click, msgspec, apsw, zstandard"


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run, which must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed")
    return wall, usage.ru_utime + usage.ru_stime


def modules_loaded(env: dict[str, str], cwd: Path) -> int:
    probe = ("import sys\nfrom session_memory.cli import cli\n"
             "cli(['ingest', '--json'], prog_name='session-memory', standalone_mode=False)\n"
             "print(len(sys.modules), file=sys.stderr)\n")
    run = subprocess.run([str(PYTHON), "-c", probe], env=env, cwd=cwd, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(run.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
        env.update(home_environ(home))
        (home / "empty").mkdir()
        config_file = Path(env["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
        config_file.parent.mkdir(parents=True)
        config_file.write_text(f'[storage]\ndata_dir = "{home / "data"}"\n' + sources_toml(
            claude_code=home / "empty", codex=None, gemini_cli=None, aider=None,
            copilot_cli=None, opencode=None))
        cases = {
            "python -c pass": [str(PYTHON), "-c", "pass"],
            f"python -c '{LIBRARIES}'": [str(PYTHON), "-c", LIBRARIES],
            "session-memory ingest --json": [str(COMMAND), "ingest", "--json"],
            "session-memory status --json": [str(COMMAND), "status", "--json"],
            "session-memory --help": [str(COMMAND), "--help"],
        }
        timed(cases["session-memory ingest --json"], env, home)  # makes the stores
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                results[name].append(timed(argv, env, home))
        walls = {n: statistics.median(w for w, _ in r) * 1000 for n, r in results.items()}
        cpus = {n: statistics.median(c for _, c in r) * 1000 for n, r in results.items()}
        floor = f"python -c '{LIBRARIES}'"
        print(f"medians of {args.runs} rounds (ms); ratio: CPU against the libraries' import")
        for name in cases:
            print(f"  {name:44s} wall {walls[name]:6.1f}  CPU {cpus[name]:6.1f}  "
                  f"ratio {cpus[name] / cpus[floor]:.2f}")
        print(f"  modules loaded by ingest: {modules_loaded(env, home)}")


if __name__ == "__main__":
    main()
