"""The long crash run, on demand (not in CI):

    .venv/bin/python -m tests.crash.run --kills 500 [--seed N] [--keep DIR]

Random SIGKILLs of a child running a random mix while a writer appends; every 10th kill
is at a named commit instead (or, one time in four, at another kill point: the lists in
tests/crash/test_crash.py), every 50th kills a running daemon. All invariants are
checked after every kill (harness.verify).
Exit 0 when they all held, 1 with the failures listed otherwise."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from session_memory.memory import Memory
from tests.conftest import isolate_process
from tests.crash import harness as h
from tests.crash.test_crash import COMMITS, OTHER_POINTS
from tests.daemon_harness import DaemonProcess, NotifySocket


def _isolate(base: Path) -> None:
    isolate_process(base / "home")


def _kill_daemon(rig: h.Rig, base: Path, rng: random.Random) -> None:
    notify = NotifySocket()
    daemon = DaemonProcess(rig.config, notify, base / "daemon.log")
    try:
        daemon.wait_ready()
        time.sleep(rng.uniform(0.2, 2.0))
        daemon.proc.kill()
        daemon.proc.wait(timeout=10)
    finally:
        daemon.stop()
        notify.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="session-memory-crash-"))
    base.mkdir(parents=True, exist_ok=True)
    _isolate(base)
    rng = random.Random(args.seed)
    rig = h.Rig(base / "rig", soft_cap="300KB", hard_cap="500KB", max_age_days=1)
    ledger = h.Ledger()
    failures: list[str] = []
    writer = h.AppendingWriter(rig.src, seed=args.seed)
    started = time.monotonic()
    print(f"crash run: {args.kills} kills, seed {args.seed}, in {base}", flush=True)
    try:
        for i in range(args.kills):
            out = base / "out.txt"
            kind = "random"
            if i % 50 == 49:
                kind = "daemon"
                _kill_daemon(rig, base, rng)
            elif i % 10 == 9:
                h.add_script_files(rig, i)
                kind = (rng.choice(OTHER_POINTS) if rng.random() < 0.25 else
                        f"{rng.choice(['before', 'after'])}-commit:{rng.choice(COMMITS)}")
                # Past the first time it is reached: the child wakes a checkpoint each commit.
                skip = rng.randrange(8) if kind in OTHER_POINTS else 0
                h.run_child(rig, out, mode="script", seed=i, crash_at=kind, crash_after=skip)
                ledger.feed(out.read_text())
            else:
                h.run_child(rig, out, mode="random", seed=rng.randrange(2**32),
                            kill_after=rng.uniform(0, 1.5))
                ledger.feed(out.read_text())
            ledger.kills += 1
            found = h.verify(rig, ledger, carry_on=rng.random() < 0.3)
            failures += [f"kill {i} ({kind}): {f}" for f in found]
            for line in found:
                print(f"FAIL kill {i} ({kind}): {line}", flush=True)
            if i % 25 == 24:
                print(f"{i + 1} kills, {ledger.acks} acknowledgements, "
                      f"{len(failures)} failures, {time.monotonic() - started:.0f}s", flush=True)
    finally:
        writer.close()
    with Memory(rig.settings()) as m:
        counts = m.tier1.count_by_state(m.idle_before)
        reports = [r for r in m.tier2.reports() if not r["dry_run"]]
    loss = sum(len(r["overflow_data_loss"]) for r in reports)
    evicted = sum(len(r["backstop_evicted"]) + len(r["budget_evicted"]) for r in reports)
    print(f"done: {ledger.kills} kills in {time.monotonic() - started:.0f}s, "
          f"{ledger.acks} acknowledgements checked, sessions {counts}, {len(reports)} sweeps "
          f"evicted {evicted} (+{loss} reported as data loss); {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
