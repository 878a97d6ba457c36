"""The daemon: one process, one main loop that alone touches the stores.

Watchdog threads and signal handlers only put entries on a queue; the loop drains it and
runs the jobs that are due, in order: reload, ingest debounced paths, full rescan, seal and
analyze ended sessions, digest running ones, sweep. Every job checks the stop flag between
units of work (a file, a session), so SIGTERM waits at most for the transaction in flight.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from session_memory import config, formats, log, maintenance
from session_memory import ingest as ingest_mod
from session_memory.clock import Clock, SystemClock
from session_memory.config import Settings
from session_memory.errors import (
    ConfigError,
    SessionMemoryError,
    StoreBusyError,
    StoreFullError,
)
from session_memory.fswalk import Walker
from session_memory.humanize import human_count
from session_memory.ingest import IngestSummary
from session_memory.memory import DAEMON_LOCK, Memory
from session_memory.notify import Notifier, SdNotifier, status_line
from session_memory.store import db
from session_memory.store.tier1 import Tier1
from session_memory.watch import Trouble, Watcher

logger = log.get("session_memory.daemon")

DEBOUNCE_SECONDS = 0.2  # quiet time after a file's last event before it is read
MAX_HOLD_SECONDS = 1.0  # a file written without pause is still read this often
MAX_SLEEP_SECONDS = 60.0  # wake at least this often: an overdue job runs soon after a suspend
HOUSEKEEPING_SECONDS = 300.0  # look for ended sessions at least this often (hook-ended ones)
RETRY_SECONDS = 5.0  # after a busy store or a failed pass, rescan this soon
OVER_CAP_SWEEP_GAP = 60.0  # over the soft cap, sweep at once, but not more often than this
ANALYZE_BACKOFF = 3600.0  # a session the analyzer failed on is retried after this long
ANALYZE_BATCH = 1024
"""Ended sessions the daemon names to one analysis pass: a backfill's thousands are several
passes, each naming its sessions in one query (well under SQLite's 32766 variables)."""
LIVE_DIGEST_SECONDS = 60.0
"""A running session that grew gets a digest this long after its last (usage, search and
MCP see it a minute behind), a larger one less often: see LIVE_BYTES_PER_SECOND."""
LIVE_BYTES_PER_SECOND = 2**20
"""A running session is digested again at most once per this many of its bytes a second:
parsed whole at some 100 MiB/s, about 1% of a core. Past LIVE_DIGEST_MAX_BYTES it waits
for its end, as the parse would hold up the appends this loop stores."""
LIVE_DIGEST_MAX_BYTES = 128 * 2**20
"""Also what one turn of the loop digests at most (one session at least): the rest wait for
the next turn, the appends stored in between (several large sessions due at once took one
pass some seconds, 1.4 s of CPU a 128 MiB one)."""
DEEP_SEAL_MAX_BYTES = 64 * 2**20  # larger sessions stay at SEAL_LEVEL: a minute at most each
DEEP_SEAL_NICE = 19  # the recompression thread yields to everything else on the machine

LOGGED_IDS = 50
"""Session ids a log line names of one list at most: a journal line past 48 KiB is cut."""
SESSIONS_NAMED = 10
"""Sessions new, ended or analyzed at once that the log names a line each, at info; more (a
backfill) are one line that counts them."""


def _log_sessions(event: str, ids: Collection[str]) -> None:
    """What befell sessions, at info a line each: what a person running the daemon wants
    to see. More than SESSIONS_NAMED at once (a backfill, its analysis) are one line that
    counts them, each at debug."""
    many = len(ids) > SESSIONS_NAMED
    if many:
        logger.info(event, sessions=len(ids))
    for sid in sorted(ids):
        (logger.debug if many else logger.info)(event, session=sid)


def sweep_fields(report: dict[str, Any]) -> dict[str, Any]:
    """A sweep's log fields: what each pass did, in words and by session id (the passes
    that did nothing left out), the bytes freed and Tier 1's size after."""
    from session_memory.retention import pass_sentences

    did = pass_sentences(report)
    fields: dict[str, Any] = {
        "id": report.get("id"),
        "did": "; ".join(sentence for sentence, _ in did) or "nothing evicted or analyzed",
        "bytes_freed": report.get("bytes_freed"),
        "final_usage_bytes": report.get("final_usage_bytes")}
    for key in ("backstop_evicted", "budget_evicted", "overflow_analyzed",
                "overflow_data_loss"):
        ids = list(report.get(key) or [])
        if len(ids) > LOGGED_IDS:
            ids = [*ids[:LOGGED_IDS], f"… {len(ids) - LOGGED_IDS} more: "
                                      f"session-memory reports show {report.get('id')}"]
        if ids:
            fields[key] = ids
    if report.get("stopped"):
        fields["stopped"] = True
    if report.get("errors"):
        fields["errors"] = report["errors"]
    return fields

class DaemonRunningError(SessionMemoryError):
    pass


@contextlib.contextmanager
def daemon_lock(data_dir: Path) -> Iterator[int]:
    """Hold the data dir's lock (our pid inside) for the daemon's lifetime: one daemon per
    data dir. `status` reads the same file to tell whether a daemon runs, and which."""
    db.private_dir(data_dir)
    path = data_dir / DAEMON_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise DaemonRunningError(
                f"another daemon (pid {pid or '?'}) already runs on {data_dir}; "
                "stop it first (`systemctl --user stop session-memory`)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)  # releases the lock


class _QueueSink:
    """What the observer threads call: entries on the main loop's queue, nothing else."""

    def __init__(self, q: queue.SimpleQueue[tuple[str, Any]]) -> None:
        self.q = q

    def changed(self, path: str) -> None:
        self.q.put(("path", path))

    def trouble(self, reason: Trouble, root: str) -> None:
        self.q.put(("trouble", (reason, root)))


class Daemon:
    def __init__(self, settings: Settings, *, config_path: Path | None = None,
                 clock: Clock | None = None, walker: Walker | None = None,
                 notifier: Notifier | None = None,
                 watcher_factory: Callable[[_QueueSink], Watcher] | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.walker = walker
        self.notifier: Notifier = notifier or SdNotifier()
        self.queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.sink = _QueueSink(self.queue)
        self.watcher = (watcher_factory or Watcher)(self.sink)
        self.memory: Memory | None = None
        self.stopping = False
        self._reload_requested = False
        # Debounce: path -> (first event, last event), monotonic seconds.
        self._pending: dict[str, tuple[float, float]] = {}
        now = self.clock.now()
        self._rescan_at = now
        self._idle_check_at = now
        self._sweep_requested = False
        self._last_sweep_local = 0.0
        # session -> (its raw bytes, retry time): the analyzer failed on it as it was.
        self._analyze_failed: dict[str, tuple[int, float]] = {}
        # Running sessions: session -> (its raw bytes, time) at its last live digest.
        self._live: dict[str, tuple[int, float]] = {}
        self._live_at = float("inf")
        self._ended_logged: set[str] = set()
        """Ended sessions whose end was logged, until they are analyzed or grow again."""
        self._sealer: _DeepSealer | None = None
        self._watchdog_interval = self.notifier.watchdog_interval()
        self._last_ping = 0.0
        self._last_ingest: tuple[float, int] | None = None
        self._status = ""

    # -- lifecycle --------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; 0 on a clean stop."""
        previous = self._install_signals()
        try:
            with daemon_lock(self.settings.data_dir):
                self._open()
                try:
                    self.notifier.notify("READY=1\n" + status_line(self._summary()))
                    logger.info("daemon ready", pid=os.getpid(),
                                data_dir=str(self.settings.data_dir), **self.watcher.summary())
                    while not self.stopping:
                        self.step(self._wait_seconds())
                finally:
                    # Tell the manager first, as systemd expects: we are on our way out.
                    self.notifier.notify("STOPPING=1\n" + status_line("stopping"))
                    self._close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        logger.info("daemon stopped")
        return 0

    def _open(self) -> None:
        self.memory = Memory(self.settings, clock=self.clock, walker=self.walker)
        self.memory.tier1  # noqa: B018 - open both stores (and migrate) before READY=1
        self.memory.tier2  # noqa: B018
        self._guard("recover", self._finish_interrupted)
        self._sync_watches()
        self._sealer = _DeepSealer(self.memory.tier1.path, self.clock)
        self._sealer.wake()

    def _finish_interrupted(self) -> None:
        assert self.memory is not None
        for line in maintenance.finish_interrupted(self.memory.tier1, self.memory.tier2):
            logger.info("recovered after an interruption", action=line)

    def _close(self) -> None:
        self.watcher.stop()
        if self._sealer is not None:
            self._sealer.stop()
        if self.memory is not None:
            self.memory.close()

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread: set a flag and queue a wake-up
        # (SimpleQueue.put is reentrant); never anything that takes a lock.
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self.stopping = True
        self.queue.put(("signal", signum))

    # -- the loop -----------------------------------------------------------------------

    def step(self, timeout: float) -> None:
        """Wait up to `timeout` for events, then run whatever is due."""
        self._drain(timeout)
        if self.stopping:
            return
        if self._reload_requested:
            self._reload_requested = False
            self._guard("reload", self._reload)
        self._heartbeat()
        self._guard("ingest", self._flush_pending)
        now = self.clock.now()
        if now >= self._rescan_at and not self.stopping:
            self._guard("rescan", self._rescan)
        if self.clock.now() >= self._idle_check_at and not self.stopping:
            self._guard("analyze", self._seal_and_analyze)
        if self.clock.now() >= self._live_at and not self.stopping:
            self._guard("live digests", self._digest_live)
        if self._sweep_due() and not self.stopping:
            self._guard("sweep", self._sweep)
        self._update_status()

    def _drain(self, timeout: float) -> None:
        try:
            item = self.queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return
        while True:
            self._accept(item)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return

    def _accept(self, item: tuple[str, Any]) -> None:
        kind, value = item
        if kind == "path":
            mono = time.monotonic()
            first, _ = self._pending.get(value, (mono, mono))
            self._pending[value] = (first, mono)
        elif kind == "trouble":
            reason, root = value
            if reason == "watch-limit":
                self.watcher.degrade(root)
            elif reason == "overflow":
                logger.warning("file events were lost (inotify queue overflow): rescanning")
            else:
                logger.info("a watched folder went away: rescanning", path=root)
            self._rescan_at = self.clock.now()

    def _wait_seconds(self) -> float:
        now, mono = self.clock.now(), time.monotonic()
        waits = [MAX_SLEEP_SECONDS, self._rescan_at - now, self._idle_check_at - now,
                 self._live_at - now]
        waits += [min(last + DEBOUNCE_SECONDS, first + MAX_HOLD_SECONDS) - mono
                  for first, last in self._pending.values()]
        if self._watchdog_interval:
            waits.append(self._last_ping + self._watchdog_interval - mono)
        sweep_at = self._next_sweep_at()
        if sweep_at is not None:
            waits.append(sweep_at - now)
        if self._sweep_requested or self._reload_requested:
            waits.append(0.0)
        return max(min(waits), 0.0)

    def _guard(self, job: str, fn: Callable[[], None]) -> None:
        """A failed job is logged and retried later; it never takes the daemon down."""
        try:
            fn()
        except StoreBusyError:
            logger.warning("store busy (another process holds it); retrying soon", job=job)
            self._rescan_at = min(self._rescan_at, self.clock.now() + RETRY_SECONDS)
        except StoreFullError as e:
            # Rolled back, nothing lost: a sweep (keep_free lowers its cap on a full disk)
            # makes room, and the retried rescan picks up where the cursors stand.
            logger.error("store full; sweeping to make room, then retrying", job=job,
                         reason=str(e))
            self._sweep_requested = job != "sweep"
            self._rescan_at = min(self._rescan_at, self.clock.now() + RETRY_SECONDS)
        except Exception:
            logger.exception("job failed; the daemon carries on", job=job)
            self._rescan_at = min(self._rescan_at, self.clock.now() + MAX_SLEEP_SECONDS)

    def _heartbeat(self) -> None:
        """WATCHDOG=1, from the main loop only: a stuck loop must stop the pings."""
        if not self._watchdog_interval:
            return
        mono = time.monotonic()
        if mono - self._last_ping >= self._watchdog_interval:
            self.notifier.notify("WATCHDOG=1")
            self._last_ping = mono

    def _stop_asked(self) -> bool:
        """Whether to stop, for long jobs to ask now and then: the watchdog is fed meanwhile."""
        self._heartbeat()
        return self.stopping

    # -- jobs ---------------------------------------------------------------------------

    def _flush_pending(self) -> None:
        mono = time.monotonic()
        due = [p for p, (first, last) in self._pending.items()
               if mono >= min(last + DEBOUNCE_SECONDS, first + MAX_HOLD_SECONDS)]
        if not due:
            return
        for p in due:
            del self._pending[p]
        # A temp file renamed or deleted before we got to it is no longer there to read.
        paths = [Path(p) for p in due if os.path.lexists(p)]
        if paths:
            try:
                self._ingest(paths)
            except BaseException:
                self._rescan_at = min(self._rescan_at, self.clock.now() + RETRY_SECONDS)
                raise

    def _rescan(self) -> None:
        self._rescan_at = self.clock.now() + self.settings.rescan_interval
        summary = self._ingest(None)
        if not self.stopping:
            self._sync_watches()
        logger.debug("rescan done", **summary.as_dict())

    def _ingest(self, paths: list[Path] | None) -> IngestSummary:
        assert self.memory is not None
        # The pipeline `session-memory ingest` runs: read-ahead, group commits. Asked
        # before each file whether to stop.
        summary = self.memory.ingestor.run(paths, stop=self._stop_asked)
        if summary.bytes_added:
            self._last_ingest = (self.clock.now(), summary.bytes_added)
            # Every append of a running session comes this way: not news (see _log_sessions).
            logger.debug("ingested", bytes=summary.bytes_added, files=summary.files_changed,
                         sessions=len(summary.sessions))
            _log_sessions("new session", summary.new_sessions)
            self._ended_logged -= summary.sessions  # grown: its end is news again
            _log_sessions("session ended", summary.ended)
            self._ended_logged |= summary.ended
            # Sessions that grew end idle_seconds after their last write at the latest;
            # one whose tool wrote its end record has ended now.
            self._idle_check_at = min(self._idle_check_at, self.clock.now() + (
                0.0 if summary.ended else self.settings.idle_seconds + 0.5))
            self._live_at = min(self._live_at, self.clock.now() + LIVE_DIGEST_SECONDS)
            if self.memory.tier1.usage_bytes() > self.settings.retention.raw_soft_cap:
                self._sweep_requested = True
        return summary

    def _seal_and_analyze(self) -> None:
        """Sessions idle for idle_seconds have ended: recompress them, then digest them."""
        assert self.memory is not None
        memory, now = self.memory, self.clock.now()
        self._idle_check_at = now + HOUSEKEEPING_SECONDS
        tier1 = memory.tier1
        # The sealer `session-memory ingest` uses (in this thread, one session at a time),
        # asked once a MiB whether to stop.
        if ingest_mod.seal_ended(tier1, self.settings, self.clock,
                                 interrupted=self._stop_asked) and self._sealer is not None:
            self._sealer.wake()
        if self.stopping:
            return
        self._analyze_ended(now)
        if self.stopping:
            return
        # Digests an older analyzer made, re-derived from raw a batch at a time.
        try:
            memory.reanalyze_stale(stop=self._stop_asked)
        except (StoreBusyError, StoreFullError):
            raise  # _guard's: retried soon, and a full disk asks the sweep for room first
        except Exception:
            logger.exception("re-analysis of older digests failed; retrying later")
        # The next session to end: the oldest write among the active ones, idle_seconds on.
        active = tier1.sessions(memory.idle_before, state="active")
        if active:
            oldest = min(s["last_write"] for s in active)
            self._idle_check_at = min(self._idle_check_at,
                                      oldest + self.settings.idle_seconds + 0.5)

    def _analyze_ended(self, now: float) -> None:
        """Ended sessions analyzed by the pass `session-memory analyze` runs, a batch at a
        time (each in the pass's conditions once), asked between sessions whether to stop.
        In this process only: worker processes would share the service's memory limit and
        take the cores the agents it watches run on. A session the analyzer failed on
        waits ANALYZE_BACKOFF, unless it grows."""
        assert self.memory is not None
        raw_bytes: dict[str, int] = {}
        for row in self.memory.tier1.sessions(self.memory.idle_before, state="ended"):
            failed = self._analyze_failed.get(row["id"])
            if not (failed and failed[0] == row["raw_bytes"] and failed[1] > now):
                raw_bytes[row["id"]] = row["raw_bytes"]
        ids = list(raw_bytes)
        # Ended by going idle (or before this daemon started): the first it hears of it.
        newly_ended = [sid for sid in ids if sid not in self._ended_logged]
        _log_sessions("session ended", newly_ended)
        self._ended_logged.update(newly_ended)
        for start in range(0, len(ids), ANALYZE_BATCH):
            if self._stop_asked():
                return
            try:
                result = self.memory.analyze_report(ids[start:start + ANALYZE_BATCH],
                                                    stop=self._stop_asked, parallel=False)
            except (StoreBusyError, StoreFullError):
                raise  # _guard's: retried soon, and a full disk asks the sweep for room first
            except Exception:
                # Not one session's fault (those are in result.failed): the store's. The
                # next round tries them again, as a failed job is.
                logger.exception("analysis failed; retrying later")
                return
            for sid in result.analyzed:
                self._analyze_failed.pop(sid, None)
            _log_sessions("session analyzed", result.analyzed)
            self._ended_logged.difference_update(result.analyzed)
            for sid in result.failed:  # logged by the pass, with why
                self._analyze_failed[sid] = (raw_bytes[sid], now + ANALYZE_BACKOFF)

    def _digest_live(self) -> None:
        """Running sessions that grew get a digest by the pass `session-memory analyze
        --all` runs: their usage counts before they end. They stay active, and are analyzed
        again once they end. One is digested again LIVE_DIGEST_SECONDS after its last
        digest at the soonest, a larger one later (LIVE_BYTES_PER_SECOND)."""
        assert self.memory is not None
        now = self.clock.now()
        self._live_at = float("inf")
        active = {row["id"]: row["raw_bytes"] for row in
                  self.memory.tier1.sessions(self.memory.idle_before, state="active")}
        self._live = {sid: seen for sid, seen in self._live.items() if sid in active}
        waiting: list[tuple[float, str]] = []  # (last digested, session) of those due
        for sid, raw_bytes in active.items():
            seen_bytes, seen_at = self._live.get(sid, (-1, -float("inf")))
            if seen_bytes == raw_bytes or raw_bytes > LIVE_DIGEST_MAX_BYTES:
                continue
            at = seen_at + max(LIVE_DIGEST_SECONDS, raw_bytes / LIVE_BYTES_PER_SECOND)
            failed = self._analyze_failed.get(sid)
            if failed is not None:  # as an ended one: tried again after ANALYZE_BACKOFF
                at = max(at, failed[1])
            if at <= now:
                waiting.append((seen_at, sid))
            else:
                self._live_at = min(self._live_at, at)
        due: list[str] = []
        total = 0
        for _, sid in sorted(waiting):  # longest waiting first
            if due and total + active[sid] > LIVE_DIGEST_MAX_BYTES:
                self._live_at = now  # the loop's next turn, once it stored what came meanwhile
                break
            due.append(sid)
            total += active[sid]
        if not due:
            return
        try:
            result = self.memory.analyze_report(due, include_active=True,
                                                stop=self._stop_asked, parallel=False)
        except BaseException:
            # The store's fault, not theirs (a busy or full store): they, and any left for
            # the next turn, are due again then, grown or not; not at once, over and over.
            self._live_at = now + LIVE_DIGEST_SECONDS
            raise
        # Each waits until it grows; one that failed, ANALYZE_BACKOFF too, grown or not (it
        # grows all the time), and once ended as long as it has not grown since.
        for sid in [*result.analyzed, *result.failed]:
            self._live[sid] = (active[sid], now)
        for sid in result.analyzed:
            self._analyze_failed.pop(sid, None)
        for sid in result.failed:  # logged by the pass, with why
            self._analyze_failed[sid] = (active[sid], now + ANALYZE_BACKOFF)
        logger.debug("running sessions digested", sessions=len(result.analyzed),
                     failed=len(result.failed))

    def _next_sweep_at(self) -> float | None:
        if self.memory is None:
            return None
        stored = self.memory.tier1.get_meta("last_sweep_at")
        last = max(float(stored) if isinstance(stored, int | float) else 0.0,
                   self._last_sweep_local)
        return last + self.settings.retention.sweep_interval

    def _sweep_due(self) -> bool:
        at = self._next_sweep_at()
        if at is None:
            return False
        now = self.clock.now()
        if self._sweep_requested and now >= self._last_sweep_local + OVER_CAP_SWEEP_GAP:
            return True
        return now >= at

    def _sweep(self) -> None:
        assert self.memory is not None
        over_cap = self._sweep_requested
        self._sweep_requested = False
        # Recorded before the sweep: a sweep that fails is not retried in a tight loop.
        self._last_sweep_local = self.clock.now()
        # Its overflow analysis in this process too, as _analyze_ended's, and the watchdog
        # fed through it: analyzing a backfill over the hard cap can take minutes. Asked
        # between evictions whether to stop (never during that analysis).
        report = self.memory.sweep(dry_run=False, parallel=False, alive=self._heartbeat,
                                   stop=self._stop_asked)
        logger.info("sweep done", reason="over soft cap" if over_cap else "schedule",
                    **sweep_fields(report))

    def _reload(self) -> None:
        assert self.memory is not None
        try:
            new = config.load(self.config_path)
        except ConfigError as e:
            logger.error("config reload failed; keeping the running config", reason=str(e))
            self.notifier.notify(status_line(f"config reload failed, old config kept: {e}"))
            return
        self.notifier.notify("RELOADING=1")
        if new.data_dir != self.settings.data_dir:
            logger.warning("storage.data_dir changed: it takes effect at the next start",
                           running=str(self.settings.data_dir), configured=str(new.data_dir))
            new = msgspec.structs.replace(new, data_dir=self.settings.data_dir)
        self.settings = new
        self.memory.settings = new
        self._sync_watches()
        now = self.clock.now()
        self._rescan_at = now  # new sources, new roots: look at everything once
        self._idle_check_at = now
        logger.info("config reloaded", sources=[s.name for s in new.enabled_sources])
        self.notifier.notify("READY=1\n" + status_line("config reloaded; " + self._summary()))

    def _sync_watches(self) -> None:
        assert self.memory is not None
        known_files = {s.name: [c.phys_path for c in self.memory.tier1.cursors(s.name)]
                       for s in self.settings.enabled_sources
                       if formats.get(s.format).WATCH.known_folders_only}
        self.watcher.sync(self.settings.enabled_sources, known_files)

    # -- status -------------------------------------------------------------------------

    def _summary(self) -> str:
        w = self.watcher.summary()
        parts = [f"watching {human_count(w['inotify'], 'folder')}"]
        if w["polling"]:
            parts.append(f"polling {w['polling']}")
        if w["rescan_only"]:
            parts.append(f"{human_count(w['rescan_only'], 'source')} by rescan only")
        if self.memory is not None:
            counts = self.memory.tier1.count_by_state(self.memory.idle_before)
            parts.append(f"{human_count(counts['total'], 'session')} ({counts['active']} active, "
                         f"{counts['analyzed']} analyzed)")
        if self._last_ingest:
            at, n = self._last_ingest
            parts.append(f"last ingest {time.strftime('%H:%M:%S', time.localtime(at))} "
                         f"(+{n} bytes)")
        return "; ".join(parts)

    def _update_status(self) -> None:
        try:
            text = self._summary()
        except StoreBusyError:
            return
        if text != self._status:
            self._status = text
            self.notifier.notify(status_line(text))


class _DeepSealer:
    """Recompresses sealed sessions at DEEP_SEAL_LEVEL, oldest first, on a thread of its own
    with its own connection, at the lowest priority: the daemon's loop stays as responsive
    as ever (zstd releases the GIL), and a stop interrupts it within a MiB. A session that
    grows or is evicted meanwhile is left as it is (Tier1.seal_session)."""

    def __init__(self, tier1_path: Path, clock: Clock) -> None:
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tier1_path,),
                                        name="deep-seal", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New sealed sessions may be waiting."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self, tier1_path: Path) -> None:
        with contextlib.suppress(OSError):  # lowering one's own priority is always allowed
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DEEP_SEAL_NICE)
        tier1 = Tier1(tier1_path)
        failed: set[str] = set()
        try:
            while self._wake.wait() and not self._stop.is_set():
                self._wake.clear()
                self._seal_waiting(tier1, failed)
        finally:
            tier1.close()

    def _seal_waiting(self, tier1: Tier1, failed: set[str]) -> None:
        try:
            ingest_mod.pack(tier1, self.clock, interrupted=self._stop.is_set)
        except StoreBusyError:
            pass  # the next round packs them
        except StoreFullError as e:
            logger.warning("packing paused: the disk is full", reason=str(e))
        except Exception:
            logger.exception("packing failed; the sessions keep their own frames")
        while not self._stop.is_set():
            todo = tier1.to_deepen(max_raw_bytes=DEEP_SEAL_MAX_BYTES, limit=len(failed) + 16)
            todo = [sid for sid in todo if sid not in failed]
            if not todo:
                return
            for sid in todo:
                if self._stop.is_set():
                    return
                try:
                    # The sealer `session-memory ingest` uses, one session at a time, so
                    # that one that fails is known by its id.
                    ingest_mod.deepen(tier1, [sid], interrupted=self._stop.is_set)
                except StoreBusyError:
                    self._stop.wait(RETRY_SECONDS)
                    break
                except StoreFullError as e:
                    logger.warning("recompression paused: the disk is full", reason=str(e))
                    self._stop.wait(MAX_SLEEP_SECONDS)
                    break
                except Exception:
                    logger.exception("recompression failed; the session stays as it is",
                                     session=sid)
                    failed.add(sid)
