"""Load: many writer processes append to many session files while CLI readers and sweeps
run against the running daemon. No error reaches a user, no byte is lost, the daemon's
memory stays flat.

In the suite a scaled-down run (10 writers, 100 files, ~15 s); the full one on demand:

    .venv/bin/python -m tests.test_load --writers 50 --files 500 --seconds 180
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from session_memory import config
from session_memory.memory import Memory
from tests.conftest import isolate_process
from tests.daemon_harness import DaemonProcess, NotifySocket

WRITER = r"""
import json, os, random, sys, time
root, me, writers, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mine = [f"s{i:04d}.jsonl" for i in range(files) if i % writers == me]
rng = random.Random(me)
i = 0
while True:
    i += 1
    name = rng.choice(mine)
    text = f"writer {me} line {i} " + os.urandom(rng.randint(20, 300)).hex()
    line = json.dumps({"type": "user", "i": i, "message": {"role": "user", "content": text}})
    with open(os.path.join(root, name), "ab") as f:
        f.write(line.encode() + b"\n")
    time.sleep(rng.uniform(0.005, 0.05))
"""


@dataclass
class LoadResult:
    commands: int = 0
    failures: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    rss_mb: list[float] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        third = max(1, len(self.rss_mb) // 3)
        return (f"{self.commands} CLI commands ({len(self.failures)} failed, slowest "
                f"{self.slowest_s:.1f}s); {self.files} files, {self.bytes} bytes, "
                f"{len(self.mismatched)} not byte-identical; daemon RSS MiB first third max "
                f"{max(self.rss_mb[:third], default=0):.1f}, last third max "
                f"{max(self.rss_mb[-third:], default=0):.1f}, "
                f"peak {max(self.rss_mb, default=0):.1f}")


def _config(base: Path, root: Path) -> Path:
    path = base / "config.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{base / "data"}"\n'
        '[ingest]\nidle_seconds = 3\nrescan_interval = "30s"\n'
        + "".join(f"[sources.{n}]\nenabled = false\n"
                  for n in ("claude-code", "codex", "gemini-cli", "aider"))
        + f'[sources.mytool]\nformat = "jsonl"\nroot = "{root}"\n')
    return path


def _readers(cfg: Path, out: Path, stop: threading.Event, result: LoadResult) -> None:
    """One user at a terminal: sessions, show, export, status, and now and then a sweep."""
    rng = random.Random(1)
    ids: list[str] = []
    n = 0
    while not stop.is_set():
        n += 1
        choice = n % 5
        if choice == 0 or not ids:
            args = ["sessions", "--json"]
        elif choice == 1:
            args = ["show", rng.choice(ids), "--json"]
        elif choice == 2:
            args = ["export", rng.choice(ids), "-o", str(out / str(n))]
        elif choice == 3:
            args = ["status", "--json"]
        else:
            args = ["sweep", "--json"]
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "session_memory", "--config", str(cfg),
                              *args], capture_output=True, text=True, timeout=120)
        result.slowest_s = max(result.slowest_s, time.monotonic() - started)
        result.commands += 1
        if run.returncode != 0:
            result.failures.append(f"{' '.join(args)} -> {run.returncode}: {run.stderr[-500:]}")
        elif args[0] == "sessions":
            ids = [s["id"] for s in json.loads(run.stdout)]


def run_load(base: Path, *, writers: int, files: int, seconds: float) -> LoadResult:
    root = base / "src"
    root.mkdir(parents=True)
    cfg = _config(base, root)
    result = LoadResult()
    notify = NotifySocket()
    daemon = DaemonProcess(cfg, notify, base / "daemon.log")
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    reader = threading.Thread(target=_readers, args=(cfg, base / "exports", stop, result))
    try:
        daemon.wait_ready()
        ps = psutil.Process(daemon.proc.pid)
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(w),
                                   str(writers), str(files)]) for w in range(writers)]
        reader.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            result.rss_mb.append(ps.memory_info().rss / 2**20)
            time.sleep(0.5)
        for p in procs:
            p.kill()
            p.wait()
        stop.set()
        reader.join()
        _wait_caught_up(cfg, root, timeout=60 + seconds / 2)
        result.rss_mb.append(ps.memory_info().rss / 2**20)
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if reader.is_alive():
            reader.join()
        daemon.stop()
        notify.close()
    _compare(cfg, root, base / "final", result)
    return result


def _sizes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in root.iterdir()}


def _wait_caught_up(cfg: Path, root: Path, timeout: float) -> None:
    want = {f"mytool:{name}": size for name, size in _sizes(root).items()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Memory(config.load(cfg)) as m:
            have = {s["id"]: s["raw_bytes"] for s in m.sessions()}
        if all(have.get(sid) == size for sid, size in want.items()):
            return
        time.sleep(0.5)
    raise AssertionError("the daemon never caught up with the writers")


def _compare(cfg: Path, root: Path, out: Path, result: LoadResult) -> None:
    with Memory(config.load(cfg)) as m:
        for name in sorted(os.listdir(root)):
            m.export(f"mytool:{name}", out)
            data = (root / name).read_bytes()
            result.files += 1
            result.bytes += len(data)
            if (out / name).read_bytes() != data:
                result.mismatched.append(name)


def test_load_scaled_down(tmp_path: Path) -> None:
    result = run_load(tmp_path, writers=10, files=100, seconds=15)
    print(result.summary())
    assert result.failures == []
    assert result.commands >= 5
    assert result.files == 100 and result.mismatched == []
    third = max(1, len(result.rss_mb) // 3)
    # Flat: the last third of the run stays within 40 MiB of the first third's peak.
    assert max(result.rss_mb[-third:]) < max(result.rss_mb[:third]) + 40, result.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description="session-memory load run")
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=180)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="session-memory-load-"))
    isolate_process(base / "home")
    result = run_load(base / "run", writers=args.writers, files=args.files,
                      seconds=args.seconds)
    print(result.summary())
    for failure in result.failures:
        print("FAIL", failure)
    return 1 if result.failures or result.mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
