"""The quick crash runs, kept in the default suite (marker `crash`): every named commit
killed before and after, then random SIGKILLs against a child running a random mix while
a writer process appends. The long run: `python -m tests.crash.run --kills 500`."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from session_memory.memory import Memory
from tests.crash import harness as h
from tests.daemon_harness import DaemonProcess, NotifySocket

pytestmark = pytest.mark.crash

# Every commit of ingest, seal, analyze, the sweep (each pass, its report, its end, the
# recovery of an interrupted one), forget (both tiers), pin, mark-ended, repair; `digest`,
# `report` and `forget-digest` are the Tier 2 writes.
# `seal-mark` marks sessions stored sealed at ingest; `seal-clean`, `seal-stage`, `seal`
# recompress the others. `dict-retire` retires a dictionary (one an earlier version
# trained: the child plants it) when a session it was trained on is forgotten. `pack` packs small
# sealed sessions together, `repack` rewrites a pack (a forget rewrites them in its own).
COMMITS = ["ingest", "seal-mark", "seal-clean", "seal-stage", "seal", "pack", "repack",
           "digest",
           "mark-analyzed", "pin", "mark-ended", "sweep-backstop", "sweep-budget",
           "sweep-overflow", "report", "sweep-done", "dict-retire", "forget", "forget-digest",
           "forget-done", "repair"]
# Kill points besides the commits: `checkpoint`, a background checkpoint of the WAL starting
# (the child wakes one after every commit).
OTHER_POINTS = ["checkpoint"]
RANDOM_KILLS = 20


def _assert_passes_ran(rig: h.Rig) -> None:
    """The runs really evicted by each pass: otherwise the checks proved little."""
    with Memory(rig.settings()) as m:
        reports = [r for r in m.tier2.reports() if not r["dry_run"]]
    for key in ("backstop_evicted", "budget_evicted", "overflow_data_loss"):
        assert any(r[key] for r in reports), f"no sweep ever filled {key}"


def test_a_kill_at_every_commit_loses_nothing(tmp_path: Path) -> None:
    rig = h.Rig(tmp_path / "rig")
    ledger = h.Ledger()
    points = [f"{when}:{name}" for name in COMMITS
              for when in ("before-commit", "after-commit")] + OTHER_POINTS
    for i, point in enumerate(points):
        h.add_script_files(rig, i)
        out = tmp_path / "out.txt"
        status = h.run_child(rig, out, mode="script", seed=i, crash_at=point)
        assert status == -9, f"{point}: the child never reached it"
        ledger.feed(out.read_text())
        ledger.kills += 1
        assert h.verify(rig, ledger) == [], point
    # A sweep killed after evicting leaves a marker; the next sweep's recovery is a commit
    # of its own: kill that one too, before and after.
    for when in ("before-commit", "after-commit"):
        h.add_script_files(rig, len(points) + ledger.kills)
        for point in ("after-commit:sweep-budget", f"{when}:sweep-recover"):
            out = tmp_path / "out.txt"
            assert h.run_child(rig, out, mode="script", seed=ledger.kills,
                               crash_at=point) == -9, point
            ledger.feed(out.read_text())
            ledger.kills += 1
        assert h.verify(rig, ledger) == [], f"{when}:sweep-recover"
    assert ledger.kills >= 2 * len(COMMITS) + 4
    assert ledger.acks > 50
    _assert_passes_ran(rig)


def test_random_kills_while_a_writer_appends(tmp_path: Path) -> None:
    rig = h.Rig(tmp_path / "rig", soft_cap="200KB", hard_cap="300KB", max_age_days=1)
    ledger = h.Ledger()
    rng = random.Random(6)
    writer = h.AppendingWriter(rig.src, seed=6)
    try:
        # At least RANDOM_KILLS kills, and on until the children have acknowledged enough
        # work to check: a loaded machine gets less done before each kill.
        i = 0
        while i < RANDOM_KILLS or (ledger.acks <= 20 and i < 5 * RANDOM_KILLS):
            out = tmp_path / "out.txt"
            status = h.run_child(rig, out, mode="random", seed=i, kill_after=rng.uniform(0, 0.8))
            assert status == -9
            ledger.feed(out.read_text())
            ledger.kills += 1
            assert h.verify(rig, ledger, carry_on=i % 4 == 3) == [], f"kill {i}"
            i += 1
        # The daemon starts on the killed store and carries on; then it is killed too.
        notify = NotifySocket()
        daemon = DaemonProcess(rig.config, notify, tmp_path / "daemon.log")
        try:
            daemon.wait_ready()
            time.sleep(1.5)
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)
            ledger.kills += 1
            assert h.verify(rig, ledger) == [], "daemon killed"
            notify.messages.clear()
            daemon = DaemonProcess(rig.config, notify, tmp_path / "daemon.log")
            daemon.wait_ready()
        finally:
            assert daemon.stop() == 0, daemon.log()[-3000:]
            notify.close()
        log = (tmp_path / "daemon.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    finally:
        writer.close()
    assert h.verify(rig, ledger) == []
    assert ledger.kills >= RANDOM_KILLS + 1
    assert ledger.acks > 20
