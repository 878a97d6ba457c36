"""Which sessions to analyze, and analyzing one: Tier 1 raw -> events -> digest -> Tier 2.

Durability rule: the digest is committed to Tier 2 first, and only then is the session
marked analyzed in Tier 1. A crash between the two leaves an un-analyzed session whose
digest exists; the next pass analyzes it again and replaces the digest, so nothing is
lost and the sweep never sees "analyzed" without a digest behind it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from session_memory import formats, log
from session_memory.analyze import worker
from session_memory.analyze.digest import analyzer_version, to_epoch
from session_memory.clock import Clock
from session_memory.config import Settings
from session_memory.store.tier1 import Tier1
from session_memory.store.tier2 import Tier2

_log = log.get(__name__)
_T = TypeVar("_T")


@dataclass
class AnalyzeResult:
    analyzed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Session id -> why it was not analyzed."""
    failed: dict[str, str] = field(default_factory=dict)


def select(tier1: Tier1, idle_before: float, ids: list[str] | None, *, include_active: bool,
           force: bool, stale: set[str] | frozenset[str] = frozenset()
           ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The sessions one `analyze` pass covers, and why named ones are left out. `stale`:
    analyzed sessions whose digest an older analyzer made, analyzed again from their raw
    bytes where those are still stored."""
    wanted = {"ended"} | ({"active"} if include_active or ids else set()) | (
        {"analyzed"} if force else set())
    rows = tier1.sessions(idle_before, ids=ids)
    skipped: dict[str, str] = {}
    if ids is not None:
        found = {r["id"] for r in rows}
        skipped.update({sid: "no such session" for sid in ids if sid not in found})
    chosen = []
    for row in sorted(rows, key=lambda r: (r["last_write"], r["id"])):
        if row["state"] in wanted or (row["state"] == "analyzed" and row["id"] in stale):
            chosen.append(row)
        elif ids is not None:
            skipped[row["id"]] = ("raw bytes evicted; the digest is kept"
                                  if row["state"] == "evicted"
                                  else "already analyzed (use --force)")
    return chosen, skipped


def analyze(tier1: Tier1, tier2: Tier2, settings: Settings, clock: Clock, idle_before: float,
            ids: list[str] | None = None, *, include_active: bool = False,
            force: bool = False, stop: Callable[[], bool] | None = None,
            parallel: bool = True) -> AnalyzeResult:
    """Analyze ended, un-analyzed sessions (or the ones named); one failure never stops
    the others. An active session gets a digest but stays un-analyzed: it is analyzed
    again once it ends. Digests are committed in batches, each batch before its sessions
    are marked analyzed. `stop` is asked before each session is parsed or taken from a
    worker; once it says so, the digests made so far commit and the pass ends (the
    next one takes up the rest). `parallel`: a large pass may be shared with worker
    processes (see _digests)."""
    chosen, skipped = select(tier1, idle_before, ids, include_active=include_active,
                             force=force, stale=tier2.stale_digest_ids(current_versions(settings)))
    result = AnalyzeResult(skipped=skipped)
    formats_by_source = {source: format_of(settings, source)
                         for source in {row["source"] for row in chosen}}
    batch: list[tuple[dict[str, Any], dict[str, Any]]] = []
    batch_bytes = 0
    digests = _digests(tier1, formats_by_source, chosen, parallel)
    with tier2.bulk_writes(), worker.pass_conditions(), contextlib.closing(digests):
        # A digest is made as it is asked for: `stop` asked first, no session is parsed
        # only to be dropped, and the pass closed at once, the workers take no more.
        for item in digests if stop is None else _until(stop, digests):
            if item is None:  # nothing for this process to parse: write meanwhile
                if batch:
                    result.analyzed += _commit(tier1, tier2, clock, batch)
                    batch, batch_bytes = [], 0
                tier2.checkpoint()  # the pass's WAL, while the workers finish (see bulk_writes)
                continue
            row, outcome = item
            if isinstance(outcome, str):
                _log.error("analysis failed", session=row["id"], error=outcome)
                result.failed[row["id"]] = outcome
                continue
            batch.append((row, outcome))
            batch_bytes += row["raw_bytes"]
            if len(batch) >= BATCH_SESSIONS or batch_bytes >= BATCH_BYTES:
                result.analyzed += _commit(tier1, tier2, clock, batch)
                batch, batch_bytes = [], 0
        if batch:
            result.analyzed += _commit(tier1, tier2, clock, batch)
    return result


BATCH_SESSIONS = 256
BATCH_BYTES = 128 * 2**20
"""A batch is committed at BATCH_SESSIONS sessions, or sooner once they hold this many raw
bytes: what a batch holds until then (a digest, and 76 bytes a keyed response) stays a few
MB. Fewer, larger commits write the usage tables' pages fewer times."""
PARALLEL_MIN_BYTES = 64 * 2**20  # below this, starting worker processes costs more than it saves
MAX_WORKERS = 4


def _commit(tier1: Tier1, tier2: Tier2, clock: Clock,
            batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    now = clock.now()
    # A digest names other sessions only while they are held (tier2.linked).
    tier2.put_digests([(row["id"], row["source"], digest) for row, digest in batch], now,
                      known=tier1.holds)
    # Only now, the digests committed: the sessions they cover are marked analyzed.
    for sid in tier1.mark_all_analyzed(
            [(row["id"], to_epoch(digest["started_at"]), to_epoch(digest["ended_at"]),
              row["raw_bytes"]) for row, digest in batch if row["state"] == "ended"], now):
        _log.info("session grew while analyzed; it will be analyzed again", session=sid)
    return [row["id"] for row, _ in batch]


def current_versions(settings: Settings) -> dict[str, int]:
    """The analyzer_version a digest of each source gets now: of each configured source,
    and of each source named after a format (as format_of reads one since removed)."""
    formats_by_source = {name: name for name in formats.names()} | {
        source: configured.format for source, configured in settings.sources.items()}
    return {source: analyzer_version(formats.get(fmt).PARSER_VERSION)
            for source, fmt in formats_by_source.items()}


def format_of(settings: Settings, source: str) -> str | None:
    configured = settings.sources.get(source)
    if configured is not None:
        return configured.format
    return source if source in formats.names() else None  # a built-in one since removed


def read_order(tier1: Tier1, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows in the order a pass reads them: sessions in packs as their packs hold them
    (each pack is then unpacked once, see Tier1.pack_order), after the others, largest
    first."""
    packed = tier1.pack_order()
    return sorted(rows, key=lambda r: (packed.get(r["id"], -1), -r["raw_bytes"]))


def _until(stop: Callable[[], bool], items: Generator[_T]) -> Iterator[_T]:
    """`items` until `stop` says so, asked before each is taken; then `items` is closed."""
    while not stop():
        try:
            item = next(items)
        except StopIteration:
            return
        yield item
    items.close()


def _digests(tier1: Tier1, formats_by_source: dict[str, str | None],
             rows: list[dict[str, Any]], parallel: bool = True
             ) -> Generator[tuple[dict[str, Any], dict[str, Any] | str] | None]:
    """Each row with its digest (or why it failed). A large pass is shared with worker
    processes (see analyze/worker.py): they take from one end of the list, this process
    from the other, between its own writes. None: this process has nothing left to parse
    and would only wait for the workers' last sessions, or for them to exit (a time to
    write). A session is parsed here only as its digest is asked for; closing the generator
    ends the pass."""
    rows = read_order(tier1, rows)
    workers = min(os.cpu_count() or 1, MAX_WORKERS, len(rows)) - 1 if parallel else 0
    if workers < 1 or sum(r["raw_bytes"] for r in rows) < PARALLEL_MIN_BYTES:
        for row in rows:
            yield row, worker.digest_or_error(tier1, formats_by_source, row)
        return
    with worker.SharedPass(tier1.path, formats_by_source, rows, workers) as shared:
        while (i := shared.take()) is not None:
            yield rows[i], worker.digest_or_error(tier1, formats_by_source, rows[i])
            for j, outcome in shared.ready():
                yield rows[j], outcome
        yield None
        for j, outcome in shared.rest():
            yield rows[j], outcome
        yield None  # their last digests are written while they exit (close waits for that)
    for j, why in shared.lost():
        yield rows[j], why
