"""Daemon benchmark (on demand; not collected by pytest).

    .venv/bin/python -m tests.bench.bench_daemon [--seconds 60] [--writers 20] [--files 5000]

1. Append-to-stored latency, p50/p99: `--writers` processes append to their own Claude
   Code session for `--seconds`; each reports (file, end offset, time of the write), and a
   read-only watcher of Tier 1's cursors notes when the daemon has stored that offset.
2. Idle cost: `--files` session files in 100 project folders, all ingested; then the daemon's
   CPU seconds over `--seconds` of quiet (goal < 0.5 s) and its RSS (goal < 80 MB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import apsw
import psutil

from tests.daemon_harness import DaemonProcess, NotifySocket

WRITER = r"""
import os, random, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    n += 1
    line = ('{"type":"user","sessionId":"%s","n":%d,"pad":"%s"}\n'
            % (os.path.basename(path)[:-6], n, "x" * random.randint(50, 2000))).encode()
    with open(path, "ab") as f:
        f.write(line)
        f.flush()
        size = f.tell()
    print(path, size, time.time(), flush=True)
    time.sleep(random.uniform(0.05, 0.5))
"""


def make_env(base: Path) -> tuple[Path, Path, Path]:
    home = base / "home"
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(home / sub)
    os.environ["HOME"] = str(home)
    root = home / "projects"
    root.mkdir()
    data = home / "data"
    cfg = home / ".config" / "session-memory" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[storage]\ndata_dir = "{data}"\n[ingest]\nidle_seconds = "1h"\n'
                   f'[sources.claude-code]\nroot = "{root}"\n'
                   '[sources.codex]\nenabled = false\n[sources.gemini-cli]\nenabled = false\n'
                   '[sources.aider]\nenabled = false\n')
    return cfg, root, data


def start(cfg: Path, base: Path) -> tuple[DaemonProcess, NotifySocket]:
    notify = NotifySocket()
    daemon = DaemonProcess(cfg, notify, base / "daemon.log",
                           {"SESSION_MEMORY_LOG_LEVEL": "warning"})
    daemon.wait_ready()
    return daemon, notify


def stored_offsets(data: Path) -> dict[str, int]:
    conn = apsw.Connection(str(data / "tier1.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return dict(conn.execute("SELECT coalesce(phys_path, path), offset FROM cursors"))
    finally:
        conn.close()


def bench_latency(seconds: float, writers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg, root, data = make_env(base)
        daemon, notify = start(cfg, base)
        try:
            (root / "-bench").mkdir()
            pending: list[tuple[str, int, float]] = []
            lock = threading.Lock()
            procs = [subprocess.Popen(
                [sys.executable, "-c", WRITER,
                 str(root / "-bench" / f"{i:08d}-0000-0000-0000-000000000000.jsonl"),
                 str(seconds)], stdout=subprocess.PIPE, text=True) for i in range(writers)]

            def collect(proc: subprocess.Popen[str]) -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    path, size, at = line.split()
                    with lock:
                        pending.append((str(Path(path).relative_to(root)), int(size),
                                        float(at)))

            readers = [threading.Thread(target=collect, args=(p,)) for p in procs]
            for t in readers:
                t.start()
            latencies: list[float] = []
            deadline = time.monotonic() + seconds + 10
            while time.monotonic() < deadline:
                time.sleep(0.02)
                try:
                    offsets = stored_offsets(data)
                except apsw.Error:
                    continue
                now = time.time()
                with lock:
                    still = []
                    for rel, size, at in pending:
                        if offsets.get(rel, 0) >= size:
                            latencies.append(now - at)
                        else:
                            still.append((rel, size, at))
                    pending[:] = still
                if all(p.poll() is not None for p in procs) and not pending:
                    break
            for t in readers:
                t.join()
            latencies.sort()
            print(f"latency: {len(latencies)} appends by {writers} writers over {seconds:.0f}s; "
                  f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
                  f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, "
                  f"max {latencies[-1] * 1000:.0f} ms; never stored: {len(pending)}")
        finally:
            daemon.stop()
            notify.close()


def bench_idle(seconds: float, files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cfg, root, data = make_env(base)
        for i in range(files):
            folder = root / f"-work-project-{i % 100:03d}"
            folder.mkdir(exist_ok=True)
            sid = f"{i:08d}-0000-0000-0000-000000000000"
            (folder / f"{sid}.jsonl").write_text(
                f'{{"type":"user","sessionId":"{sid}","message":{{"content":"hi"}}}}\n')
        t0 = time.monotonic()
        daemon, notify = start(cfg, base)
        try:
            while len(stored_offsets(data)) < files:
                time.sleep(0.2)
            print(f"idle: {files} files ingested in {time.monotonic() - t0:.1f}s")
            proc = psutil.Process(daemon.proc.pid)
            time.sleep(2)  # let the post-ingest jobs settle
            before = proc.cpu_times()
            time.sleep(seconds)
            after = proc.cpu_times()
            cpu = (after.user - before.user) + (after.system - before.system)
            rss = proc.memory_info().rss / 1024 / 1024
            print(f"idle: CPU {cpu:.3f} s over {seconds:.0f} s with {files} watched files "
                  f"(goal < 0.5 s); RSS {rss:.1f} MiB (goal < 80 MB); "
                  f"threads {proc.num_threads()}")
        finally:
            daemon.stop()
            notify.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    bench_latency(args.seconds, args.writers)
    bench_idle(args.seconds, args.files)


if __name__ == "__main__":
    main()
