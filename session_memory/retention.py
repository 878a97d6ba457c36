"""The retention sweep: backstop by age, budget to the soft cap, overflow over the hard cap.

Plan and apply are one walk over the candidates, taken from partial indexes in the order
each pass evicts them. Every eviction happens inside a Tier 1 transaction, and after each
one the size the file will have once its free pages are returned is read from SQLite's own
page counts (`page_count - freelist_count`), so a pass stops exactly when the projection
reaches its cap, with no guess about how many pages a session's chunks really held. A real
sweep commits every BATCH_SESSIONS evictions; a dry run keeps everything in one transaction
and rolls it back. Both walk the same code over the same rows, which is why `sweep
--dry-run` names exactly what a real sweep started at the same moment would evict. (The one
thing a dry run assumes rather than does: that the overflow pass's analysis succeeds, at
the sweep's start time.)

Durability order for a real sweep:

1. Tier 1 eviction batches commit one by one; the first also writes the `sweep_pending`
   marker (the report id and start time) in the same transaction. Budget and backstop only
   take sessions in state `analyzed`, which the analyzer sets after the digest committed in
   Tier 2, and each candidate's digest is looked up in Tier 2 again before it goes.
2. Free pages are returned (incremental vacuum, WAL checkpoint) and the footprint measured.
3. The report commits in Tier 2.
4. Tier 1 records `last_sweep_at` and drops the marker.

A kill between 1 and 3 leaves evictions without a report, but the marker survives: the
next sweep (or `check --repair`) rebuilds a report from the sessions evicted at that start
time. A kill between 3 and 4 leaves a marker whose report exists; it is simply dropped.

A real sweep holds an exclusive lock on `sweep.lock` in the data folder while it runs, so a
marker is only taken for an interrupted sweep once no process holds that lock: the kernel
drops it with the process, however the process ends. A second real sweep meanwhile is
refused as busy.

A sweep asked to stop (the daemon stopping) ends between two evictions: the batch in hand
commits what it evicted, no further pass runs, the files shrink and the report, saying it
stopped, is stored as ever. Its overflow analysis is never cut short (the evictions after
it count on what it analyzed): a stop is asked before it, and again after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from session_memory import log
from session_memory.config import Settings
from session_memory.errors import StoreBusyError
from session_memory.humanize import human_bytes, human_count
from session_memory.store import db
from session_memory.store.tier1 import Tier1, is_busy
from session_memory.store.tier2 import Tier2

logger = log.get("session_memory.retention")

BATCH_SESSIONS = 500
"""Evictions per Tier 1 transaction: short enough that ingest never waits long for the lock."""
PENDING_KEY = "sweep_pending"
LAST_SWEEP_KEY = "last_sweep_at"
LOCK_FILE = "sweep.lock"
DAY = 86400.0
REPORT_ROOM_BYTES = 64 * 1024
"""What the sweep's own writes after it has measured the disk take of it (its report, a
few pages in Tier 2's WAL): where keep_free's floor sets the budget, the budget pass leaves
this much more free, or the floor is short of them once the report is stored (12 KB in
test_keep_free_on_a_real_filesystem, where the evictions had left 8 KB to spare)."""


class AnalyzeOutcome(Protocol):
    analyzed: list[str]
    failed: dict[str, str]
    """Session id -> why its analysis failed."""


Analyze = Callable[[list[str]], AnalyzeOutcome]
DiskSpace = Callable[[Path], tuple[int, int]]

def disk_space(path: Path) -> tuple[int, int]:
    """Free and total bytes of the filesystem that holds `path` (or its nearest ancestor)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    import psutil  # here: a command that never sweeps starts without it (20 ms)

    usage = psutil.disk_usage(str(path))
    return int(usage.free), int(usage.total)


@dataclass(frozen=True)
class Caps:
    """The limits one sweep applied, as they stood when it started."""

    soft_cap_bytes: int
    hard_cap_bytes: int
    effective_soft_cap_bytes: int
    """The soft cap, lowered (as journald's SystemKeepFree does) so the disk keeps its floor."""
    keep_free_bytes: int
    disk_free_bytes: int
    disk_total_bytes: int
    max_age_days: float
    distilled_cap_bytes: int


def caps_for(settings: Settings, usage_bytes: int, disk_free: int, disk_total: int) -> Caps:
    ret = settings.retention
    floor = ret.keep_free.floor_bytes(disk_total)
    # What Tier 1 may hold and still leave `floor` free: its own bytes count as freeable.
    room = max(0, usage_bytes + disk_free - floor)
    return Caps(soft_cap_bytes=ret.raw_soft_cap, hard_cap_bytes=ret.raw_hard_cap,
                effective_soft_cap_bytes=min(ret.raw_soft_cap, room), keep_free_bytes=floor,
                disk_free_bytes=disk_free, disk_total_bytes=disk_total,
                max_age_days=ret.raw_max_age_days, distilled_cap_bytes=ret.distilled_cap)


@dataclass(frozen=True)
class Eviction:
    session_id: str
    pass_name: str  # backstop | budget | overflow (overflow means data loss)
    raw_bytes: int
    stored_bytes: int


def new_report_id(now: float) -> str:
    import secrets  # here, as psutil: only a sweep names a report

    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Batches:
    """Eviction transactions: committed batch by batch in a real sweep; in a dry run, one
    outer transaction rolled back at the end, with a savepoint standing in for each batch so
    a failing batch is undone the same way in both."""

    tier1: Tier1
    dry_run: bool
    report_id: str
    started_at: float
    committed: list[Eviction] = field(default_factory=list)
    _pending: list[Eviction] = field(default_factory=list)
    _outer_open: bool = False
    _marked: bool = False  # the pending marker is committed
    _marking: bool = False  # ... or written in the open transaction

    def _begin(self) -> None:
        try:
            self.tier1.begin_write()
        except Exception as e:
            if is_busy(e):
                raise StoreBusyError("the store is busy: another process holds it; "
                                     "try again") from e
            raise

    @contextlib.contextmanager
    def batch(self, pass_name: str = "evict") -> Iterator[None]:
        if self.dry_run:
            if not self._outer_open:
                # Without spilling, uncommitted pages never reach the WAL: nothing on disk moves.
                self.tier1.set_cache_spill(False)
                self._begin()
                self._outer_open = True
            try:
                with self.tier1.savepoint("sweep_batch"):
                    yield
            except BaseException:
                self._pending.clear()
                raise
            self.committed += self._pending
            self._pending.clear()
            return
        self._begin()
        try:
            yield
            db.crashpoint("before-commit:sweep-evict")
            db.crashpoint(f"before-commit:sweep-{pass_name}")  # one kill point a pass
            self.tier1.commit()
        except BaseException:
            self.tier1.rollback()
            self._pending.clear()
            self._marking = False
            raise
        self._marked = self._marked or self._marking
        db.crashpoint("after-commit:sweep-evict")
        db.crashpoint(f"after-commit:sweep-{pass_name}")
        for ev in self._pending:
            if ev.pass_name == "overflow":
                logger.error("evicted an un-analyzed session: its raw bytes are lost",
                             session=ev.session_id, raw_bytes=ev.raw_bytes,
                             stored_bytes=ev.stored_bytes)
        self.committed += self._pending
        self._pending.clear()

    def record(self, eviction: Eviction) -> None:
        """Called inside a batch, right after the eviction's statements."""
        if not self.dry_run and not (self._marked or self._marking):
            # In the transaction of the first eviction: no eviction commits unmarked.
            self.tier1.set_meta(PENDING_KEY, json.dumps(
                {"id": self.report_id, "started_at_epoch": self.started_at}))
            self._marking = True
        self._pending.append(eviction)

    def finish(self) -> None:
        """End a dry run's transaction, undoing every eviction it made."""
        if self._outer_open:
            self.tier1.rollback()
            self.tier1.set_cache_spill(True)
            self._outer_open = False


def _lock_path(tier1: Tier1) -> Path:
    return tier1.path.parent / LOCK_FILE


@contextlib.contextmanager
def sweep_lock(tier1: Tier1) -> Iterator[None]:
    """Held for the whole of a real sweep; StoreBusyError when another process holds it."""
    fd = os.open(_lock_path(tier1), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusyError("the store is busy: another process is sweeping it; "
                                 "try again") from None
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def sweep_running(tier1: Tier1) -> bool:
    """Whether a process (this one included) holds the sweep lock right now."""
    try:
        with sweep_lock(tier1):
            return False
    except StoreBusyError:
        return True


class Sweep:
    """One retention sweep over Tier 1 as it stands at `now`."""

    def __init__(self, tier1: Tier1, tier2: Tier2, settings: Settings, now: float, *,
                 dry_run: bool = False, analyze: Analyze | None = None,
                 disk: DiskSpace | None = None, stop: Callable[[], bool] | None = None
                 ) -> None:
        self.tier1, self.tier2, self.settings, self.now = tier1, tier2, settings, now
        self.dry_run = dry_run
        self.analyze = analyze
        self.stop = stop
        self.stopped = False
        self.disk = disk or disk_space
        self.report_id = new_report_id(now)
        self.batches = _Batches(tier1, dry_run, self.report_id, now)
        self.overflow_analyzed: list[str] = []
        self.overflow_failed: dict[str, str] = {}
        self._busy = False  # the store stayed locked: the sweep stops where it is
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self._assumed_digests: set[str] = set()  # a dry run's stand-in for overflow analysis
        self._page_size = tier1.pragma_int("page_size")
        self._shm_bytes = _size(f"{tier1.path}-shm")

    # -- measuring --------------------------------------------------------------------

    def projected_usage(self) -> int:
        """Tier 1's footprint once free pages are returned and the WAL is checkpointed away,
        and the packs holding evicted sessions rewritten without them (each batch ends so,
        and this is measured again)."""
        pages = self.tier1.pragma_int("page_count")
        free = self.tier1.pragma_int("freelist_count")
        return ((pages - free) * self._page_size + self._shm_bytes
                - self.tier1.dead_pack_bytes())

    @property
    def idle_before(self) -> float:
        return self.now - self.settings.idle_seconds

    # -- the passes -------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """The sweep and its stored report. StoreBusyError when another process sweeps, or
        when the store stayed locked mid-way (the report of what was done is stored first)."""
        if self.dry_run:
            return self._run()
        with sweep_lock(self.tier1):
            report = self._run()
        if self._busy:
            raise StoreBusyError(f"the store is busy (another process holds it); the sweep "
                                 f"stopped early, its report is {report['id']}; try again")
        return report

    def _run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self._busy = False
        self.stopped = False
        if not self.dry_run:
            try:
                recovered = _recover(self.tier1, self.tier2)
            except Exception as e:
                self._failed("recover", e)
            else:
                if recovered:
                    self.warnings.append(f"the sweep {recovered} was interrupted before its "
                                         "report was stored; a report was rebuilt from Tier 1")
        usage_before = self.tier1.usage_bytes()
        stored_before = self.tier1.totals()["stored_bytes"]
        free, total = self.disk(self.tier1.path.parent)
        caps = caps_for(self.settings, usage_before, free, total)
        passes: list[tuple[str, Callable[[Caps], None]]] = [
            ("backstop", self._backstop), ("budget", self._budget), ("overflow", self._overflow)]
        for name, run_pass in passes:
            if self._busy:
                break  # each further wait for the lock would only time out again
            if self._stop_asked():
                break
            try:
                run_pass(caps)
            except Exception as e:  # one pass failing must not stop the others
                self._failed(name, e)
        try:
            final_usage = self._finish()
        finally:
            self.batches.finish()  # a dry run's transaction never outlives the sweep
        report = self._report(caps, usage_before, stored_before, final_usage, started)
        self._store(report)
        if not self.dry_run and not self._busy:
            self._prune_reports()
        return report

    def _stop_asked(self) -> bool:
        """Whether the sweep was asked to stop (once so, it stays so)."""
        if not self.stopped and self.stop is not None and self.stop():
            self.stopped = True
            logger.info("sweep stopping early, as asked", report=self.report_id)
        return self.stopped

    def _failed(self, step: str, e: Exception) -> None:
        if is_busy(e) or isinstance(e, StoreBusyError):
            self._busy = True
            logger.warning("sweep step found the store busy", sweep_step=step)
        else:
            logger.exception("sweep step failed", sweep_step=step)
        self.errors.append(f"{step}: {type(e).__name__}: {e}")

    def _prune_reports(self) -> None:
        """Reports past report_max_age_days go, except those that record data loss."""
        days = self.settings.retention.report_max_age_days
        if days <= 0:  # 0 keeps every report
            return
        try:
            pruned = self.tier2.prune_reports(self.now - days * DAY)
        except Exception:
            logger.warning("pruning old eviction reports failed", exc_info=True)
            return
        if pruned:
            logger.info("pruned old eviction reports", reports=pruned)

    def _backstop(self, caps: Caps) -> None:
        if caps.max_age_days <= 0:  # 0 turns the age limit off, as journald's MaxRetentionSec
            return
        cutoff = self.now - caps.max_age_days * DAY
        self._evict_in_order("backstop", {"cutoff": cutoff}, lambda: False)

    def _budget(self, caps: Caps) -> None:
        target = caps.effective_soft_cap_bytes
        if target < caps.soft_cap_bytes:  # the disk's floor sets it: room for the report
            target = max(0, target - REPORT_ROOM_BYTES)
        self._evict_in_order("budget", {},
                             lambda: self.projected_usage() <= target)

    def _overflow(self, caps: Caps) -> None:
        if self.projected_usage() <= caps.hard_cap_bytes:
            return
        ids = self.tier1.ended_unanalyzed(self.idle_before)
        if ids and self.analyze is None:
            self.warnings.append("over the hard cap, but no analyzer is available to analyze "
                                 f"{len(ids)} ended sessions first")
        elif ids:
            self._analyze_now(ids)
            self._budget(caps)
        if self.projected_usage() <= caps.hard_cap_bytes:
            return
        hard = caps.hard_cap_bytes
        self._evict_in_order("overflow", {"idle_before": self.idle_before},
                             lambda: self.projected_usage() <= hard)

    def _analyze_now(self, ids: list[str]) -> None:
        assert self.analyze is not None
        if self.dry_run:
            # Stand in for the analysis inside the dry run's transaction: the sessions become
            # analyzed now, which is what the analyzer would record.
            with self.batches.batch():
                self.tier1.assume_analyzed(ids, self.now)
            self._assumed_digests.update(ids)
            self.overflow_analyzed = list(ids)
            return
        try:
            outcome = self.analyze(ids)
        except Exception as e:
            logger.exception("overflow analysis failed")
            self.errors.append(f"overflow analysis: {type(e).__name__}: {e}")
            return
        self.overflow_analyzed = list(outcome.analyzed)
        self.overflow_failed = dict(outcome.failed)
        for sid, why in self.overflow_failed.items():
            self.warnings.append(f"{sid}: overflow analysis failed: {why}")

    def _evict_in_order(self, pass_name: str, params: dict[str, Any],
                        reached: Callable[[], bool]) -> None:
        """Evict candidates in the query's order, a batch per transaction, until `reached`.

        Keyset pagination (`after`) rather than OFFSET: evicted rows leave the partial
        index, and a candidate skipped for a missing digest must not come round again.
        """
        after: tuple[float, str] = (-math.inf, "")
        # Probe outside any transaction: an empty pass takes no lock and writes nothing.
        if (reached() or self._stop_asked()
                or not self.tier1.sweep_candidates(pass_name, params, after, 1)):
            return
        while True:
            with self.batches.batch(pass_name):
                rows = self.tier1.sweep_candidates(pass_name, params, after, BATCH_SESSIONS)
                for sid, raw_bytes, _stored, key in rows:
                    if reached() or self._stop_asked():
                        break
                    after = (key, sid)
                    if pass_name != "overflow" and not self._digest_is_safe(sid):
                        continue
                    freed = self.tier1.evict(sid, self.now)
                    self.batches.record(Eviction(sid, pass_name, int(raw_bytes), freed))
                # Packed sessions' bytes go when their packs are rewritten without them.
                self.tier1.compact_packs()
            # The projection counted their shares: a rewritten pack may free less.
            if len(rows) < BATCH_SESSIONS or reached() or self.stopped:
                return

    def _digest_is_safe(self, session_id: str) -> bool:
        if session_id in self._assumed_digests or self.tier2.has_digest(session_id):
            return True
        self.warnings.append(f"{session_id}: analyzed but its digest is not in Tier 2; "
                             "kept (`check --repair` re-queues it for analysis)")
        return False

    # -- finishing --------------------------------------------------------------------

    def _finish(self) -> int:
        if self.dry_run:
            projected = self.projected_usage()
            self.batches.finish()
            return projected
        if not self._busy:
            try:
                self.tier1.reclaim()
            except Exception as e:
                self._failed("reclaim", e)
        return self.tier1.usage_bytes()

    def _report(self, caps: Caps, usage_before: int, stored_before: int, final_usage: int,
                started: float) -> dict[str, Any]:
        evictions = self.batches.committed
        by_pass = {name: [e for e in evictions if e.pass_name == name]
                   for name in ("backstop", "budget", "overflow")}
        tier2_usage = self.tier2.usage_bytes()
        tier2_over = tier2_usage > caps.distilled_cap_bytes
        warnings = list(self.warnings)
        if self.stopped:
            warnings.append("the sweep was asked to stop and ended early: what it evicted "
                            "is listed; the next sweep takes up the rest")
        if tier2_over:
            warnings.append(f"Tier 2 holds {human_bytes(tier2_usage)}, over distilled_cap "
                            f"({human_bytes(caps.distilled_cap_bytes)}); digests are never "
                            "evicted: raise the cap or `forget` sessions")
        if final_usage > caps.effective_soft_cap_bytes:
            warnings.append(f"Tier 1 stays over its soft cap ({human_bytes(final_usage)} of "
                            f"{human_bytes(caps.effective_soft_cap_bytes)}): what is left is "
                            "un-analyzed, active or pinned")
        bytes_freed = sum(e.stored_bytes for e in evictions)
        return {
            "id": self.report_id,
            "dry_run": self.dry_run,
            "stopped": self.stopped,
            "started_at": iso(self.now),
            "started_at_epoch": self.now,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "backstop_evicted": [e.session_id for e in by_pass["backstop"]],
            "budget_evicted": [e.session_id for e in by_pass["budget"]],
            "overflow_analyzed": self.overflow_analyzed,
            "overflow_analysis_failed": [{"id": sid, "error": why}
                                         for sid, why in self.overflow_failed.items()],
            "overflow_data_loss": [e.session_id for e in by_pass["overflow"]],
            "bytes_freed": bytes_freed,
            "final_usage_bytes": final_usage,
            "over_hard_cap": final_usage > caps.hard_cap_bytes,
            "tier2_over_cap": tier2_over,
            "warnings": warnings,
            "errors": list(self.errors),
            "pass_bytes": {name: sum(e.stored_bytes for e in evs)
                           for name, evs in by_pass.items()},
            "evictions": [{"id": e.session_id, "pass": e.pass_name, "raw_bytes": e.raw_bytes,
                           "stored_bytes": e.stored_bytes} for e in evictions],
            "usage_before_bytes": usage_before,
            "stored_before_bytes": stored_before,
            "tier2_usage_bytes": tier2_usage,
            "caps": asdict(caps),
        }

    def _store(self, report: dict[str, Any]) -> None:
        try:
            self.tier2.put_report(report)
        except Exception as e:
            # Leave the pending marker: the next sweep rebuilds this report from Tier 1.
            logger.exception("storing the eviction report failed", report=report["id"])
            report["errors"].append(f"report: {type(e).__name__}: {e}")
            return
        if self.dry_run or self._busy:
            return  # a marker left behind is dropped by the next sweep: its report exists
        try:
            with self.tier1.transaction("sweep-done"):
                if not self.stopped:  # one stopped early is due again, as if it had not run
                    self.tier1.set_meta(LAST_SWEEP_KEY, self.now)
                self.tier1.delete_meta(PENDING_KEY)
        except Exception:
            # The report is safe; a marker left behind is dropped by the next sweep.
            logger.warning("recording the sweep's end in Tier 1 failed", exc_info=True)
            return
        # Keep the file at the size just reported: the meta write must not linger in the WAL.
        with contextlib.suppress(Exception):
            self.tier1.checkpoint()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def pending_sweep(tier1: Tier1) -> dict[str, Any] | None:
    value = tier1.get_meta(PENDING_KEY)
    return json.loads(value) if value else None


def interrupted_sweep(tier1: Tier1) -> str | None:
    """The id of a sweep that left its marker and that no process runs any more."""
    pending = pending_sweep(tier1)
    if pending is None or sweep_running(tier1):
        return None
    return str(pending["id"])


def recover_interrupted(tier1: Tier1, tier2: Tier2) -> str | None:
    """Store a report for a sweep killed after evicting but before its report was stored.
    Returns that sweep's id, or None when there was nothing to recover (a sweep that
    another process is running is left alone)."""
    if pending_sweep(tier1) is None:
        return None
    try:
        with sweep_lock(tier1):
            return _recover(tier1, tier2)
    except StoreBusyError:
        return None  # live: its own end drops the marker


def _recover(tier1: Tier1, tier2: Tier2) -> str | None:
    """recover_interrupted, the sweep lock already held by the caller."""
    pending = pending_sweep(tier1)
    if pending is None:
        return None
    rid, started = str(pending["id"]), float(pending["started_at_epoch"])
    if tier2.report(rid) is None:
        evicted = tier1.evicted_at(started)
        safe = [sid for sid in evicted if tier2.has_digest(sid)]
        lost = [sid for sid in evicted if sid not in set(safe)]
        for sid in lost:
            logger.error("evicted an un-analyzed session: its raw bytes are lost",
                         session=sid, sweep=rid, recovered=True)
        tier2.put_report({
            "id": rid, "dry_run": False, "started_at": iso(started),
            "started_at_epoch": started, "duration_ms": None,
            "backstop_evicted": [], "budget_evicted": [], "overflow_analyzed": [],
            "overflow_data_loss": lost, "evicted_unattributed": safe,
            "bytes_freed": None, "final_usage_bytes": None, "over_hard_cap": None,
            "tier2_over_cap": None, "warnings": [], "recovered": True,
            "errors": ["the sweep was interrupted before its report was stored; this report "
                       "was rebuilt from Tier 1: the pass of each eviction (those with a "
                       "digest are in evicted_unattributed) and the bytes freed are unknown"],
        })
    with tier1.transaction("sweep-recover"):
        tier1.delete_meta(PENDING_KEY)
    return rid


# -- what a sweep did, in words -------------------------------------------------------

def pass_sentences(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """What each pass of a sweep did, for those that did something: (a sentence, the
    sessions it names), in the order the passes ran; for the CLI's report and the
    daemon's log line alike. A dry run's sentences say what a sweep would have done."""
    caps = report.get("caps") or {}
    freed = report.get("pass_bytes") or {}
    would = "would " if report.get("dry_run") else ""

    def size(n: Any) -> str:
        return human_bytes(n, missing="an unknown size")

    def evicted(ids: list[str], what: str) -> str:
        verb = "evict" if would else "evicted"
        return f"{would}{verb} {human_count(len(ids), what)}"

    out: list[tuple[str, list[str]]] = []
    ids = list(report.get("backstop_evicted") or [])
    if ids:
        age = caps.get("max_age_days")
        older = f" that ended over {age:g} days ago" if age is not None else ""
        out.append((f"backstop, by age: {evicted(ids, 'analyzed session')}{older} "
                    f"({size(freed.get('backstop'))})", ids))
    ids = list(report.get("budget_evicted") or [])
    if ids:
        soft, effective = caps.get("soft_cap_bytes"), caps.get("effective_soft_cap_bytes")
        cap = "" if effective is None else f" of {size(effective)}"
        if soft is not None and effective is not None and effective < soft:
            cap = (f" of {size(soft)}, lowered to {size(effective)} to keep "
                   f"{size(caps.get('keep_free_bytes'))} of the disk free")
        out.append((f"budget, to the soft cap{cap}: {evicted(ids, 'analyzed session')}, "
                    f"oldest-analyzed first ({size(freed.get('budget'))})", ids))
    hard = caps.get("hard_cap_bytes")
    past = "overflow, past the hard cap" + ("" if hard is None else f" of {size(hard)}")
    ids = list(report.get("overflow_analyzed") or [])
    if ids:
        verb = "analyze" if would else "analyzed"
        out.append((f"{past}: {would}{verb} {human_count(len(ids), 'ended session')} now, "
                    "for the budget pass to evict", ids))
    failed = report.get("overflow_analysis_failed") or []
    if failed:
        out.append((f"{past}: the analysis of {human_count(len(failed), 'session')} failed "
                    "(see the warnings)", [f["id"] for f in failed]))
    ids = list(report.get("overflow_data_loss") or [])
    if ids:
        out.append((f"DATA LOSS, {past}: {evicted(ids, 'un-analyzed session')}, "
                    f"their raw bytes lost ({size(freed.get('overflow'))})", ids))
    ids = list(report.get("evicted_unattributed") or [])
    if ids:
        out.append((f"{evicted(ids, 'analyzed session')} in a pass not known (the sweep "
                    "was interrupted before its report was stored)", ids))
    return out
