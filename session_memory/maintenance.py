"""Upkeep across the two stores: forgetting a session for good, and checking that the
tiers agree with each other (with repairs for what can be fixed without losing anything)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import msgspec

from session_memory import formats, log
from session_memory.config import Settings
from session_memory.readers import first_run_header
from session_memory.store import db
from session_memory.store.tier1 import DEEP_SEAL_LEVEL, DictionaryInUseError, StoredFile, Tier1

if TYPE_CHECKING:
    # Imported where used: every store's opening asks run_ids_to_migrate, and an ingest
    # has no use for Tier 2 or the sweep.
    from session_memory.store.tier2 import Tier2

logger = log.get("session_memory.maintenance")

FORGET_PREFIX = "forget_pending:"


# -- forget ------------------------------------------------------------------------------

def forget(tier1: Tier1, tier2: Tier2, session_id: str, now: float) -> dict[str, Any]:
    """Remove a session's raw bytes, rows, cursors and digest for good, overwriting the freed
    space (SQLite secure_delete) and checkpointing so no copy lingers in a WAL.

    Order: Tier 1 first, writing a `forget_pending:<id>` marker in the same transaction;
    then the digest in Tier 2; then the marker goes. A kill in between leaves a digest whose
    marker says it is being forgotten: `check` reports it and `check --repair` (or `forget`
    again) finishes the job. The other order would leave an analyzed session without a
    digest, which a repair re-analyzes - bringing the digest back.
    """
    row = tier1.byte_counts(session_id)
    had_digest = tier2.has_digest(session_id)
    with db.secure_delete(tier1.conn):
        for attempt in range(_FORGET_ATTEMPTS):
            _stop_using_dictionaries_of(tier1, session_id)
            try:
                with tier1.transaction("forget"):
                    tier1.forget(session_id)
                    tier1.set_meta(FORGET_PREFIX + session_id, now)
                break
            except DictionaryInUseError:
                # A recompression gave way (its session grew or was resealed meanwhile):
                # try again.
                if attempt == _FORGET_ATTEMPTS - 1:
                    raise
    _forget_digest(tier1, tier2, session_id)
    tier1.reclaim()  # in small steps where a full disk leaves the WAL no room
    db.reclaim(tier2.conn)
    # The command says so itself: at info, a terminal showed it twice.
    logger.debug("forgot a session", session=session_id)
    return {"id": session_id, "raw_bytes": int(row[0]) if row else 0,
            "stored_bytes": int(row[1]) if row else 0, "session_removed": row is not None,
            "digest_removed": had_digest}


_FORGET_ATTEMPTS = 5


def _stop_using_dictionaries_of(tier1: Tier1, session_id: str) -> None:
    """A dictionary trained on the session's bytes (a store made by an earlier version has
    them) holds some of them: retire it, then recompress every other session that uses it,
    without it. The session's own frames and the dictionary then go in the forget's
    transaction. A kill in between loses nothing: each recompression switches over in one
    transaction, a retired dictionary stays readable until no frame uses it, and the idle
    recompression takes the sessions still using it off it."""
    trained = tier1.dictionaries_trained_on(session_id)
    if not trained:
        return
    with tier1.transaction("dict-retire"):
        tier1.retire_dictionaries(trained)
    for other in tier1.sessions_using(trained, besides=session_id):
        tier1.drop_staged_frames(other)
        tier1.seal_session(other, DEEP_SEAL_LEVEL)


def _forget_digest(tier1: Tier1, tier2: Tier2, session_id: str) -> None:
    with db.secure_delete(tier2.conn), tier2.transaction("forget-digest"):
        tier2.delete_digest(session_id)
        tier2.forget_links(session_id)
        tier2.forget_in_reports(session_id)
        # FTS5 keeps deleted terms in its segments until they merge: merge them now.
        tier2.merge_search_index()
    with tier1.transaction("forget-done"):
        tier1.delete_meta(FORGET_PREFIX + session_id)


def pending_forgets(tier1: Tier1) -> list[str]:
    return [key[len(FORGET_PREFIX):] for key in tier1.meta_keys(FORGET_PREFIX)]


# -- cross-tier check and repair ------------------------------------------------------

class Findings(msgspec.Struct):  # not a dataclass: see store.tier1.Cursor
    """What disagrees between the tiers; each list holds session (or file) ids."""

    digest_without_session: list[str]
    files_without_session: list[str]
    chunks_without_file: list[int]
    analyzed_without_digest: list[str]
    accounting_drift: bool
    interrupted_sweep: str | None
    pending_forgets: list[str]

    def problems(self) -> list[str]:
        out = [f"digest without session: {sid}" for sid in self.digest_without_session
               if sid not in self.pending_forgets]
        out += [f"forget of {sid} did not finish: its digest may still be in Tier 2"
                for sid in self.pending_forgets]
        out += [f"chunks without session: files of {sid} belong to no session row"
                for sid in self.files_without_session]
        out += [f"chunks without session: chunks of file {fid} belong to no file"
                for fid in self.chunks_without_file]
        out += [f"analyzed without digest: {sid}" for sid in self.analyzed_without_digest]
        if self.accounting_drift:
            out.append("accounting: stored totals differ from the sums of the chunks")
        if self.interrupted_sweep:
            out.append(f"sweep {self.interrupted_sweep} was interrupted before its report "
                       "was stored")
        return out


def find(tier1: Tier1, tier2: Tier2) -> Findings:
    from session_memory import retention

    digest_orphans, analyzed_orphans = tier1.cross_tier_orphans(tier2.path)
    return Findings(
        digest_without_session=digest_orphans,
        files_without_session=tier1.files_without_session(),
        chunks_without_file=tier1.chunks_without_file(),
        analyzed_without_digest=analyzed_orphans,
        accounting_drift=tier1.accounting_drift(),
        interrupted_sweep=retention.interrupted_sweep(tier1),
        pending_forgets=pending_forgets(tier1),
    )


def cross_check(tier1: Tier1, tier2: Tier2) -> list[str]:
    """Problems between the tiers (the per-tier checks live in Tier1/Tier2.check)."""
    findings = find(tier1, tier2)
    # The per-tier check already names accounting drift and chunks without a file.
    findings.accounting_drift = False
    findings.chunks_without_file = []
    return findings.problems()


def finish_interrupted(tier1: Tier1, tier2: Tier2) -> list[str]:
    """Complete what a kill cut short between the two stores: a forget whose digest is
    still there, a sweep whose report was never stored. The daemon runs this at start."""
    from session_memory import retention

    fixed: list[str] = []
    for sid in pending_forgets(tier1):
        _forget_digest(tier1, tier2, sid)
        fixed.append(f"finished forgetting {sid}")
    recovered = retention.recover_interrupted(tier1, tier2)
    if recovered:
        fixed.append(f"stored a report rebuilt from Tier 1 for sweep {recovered}")
    return fixed


def repair(tier1: Tier1, tier2: Tier2, now: float) -> list[str]:
    """Fix what can be fixed without losing anything the user could still want.
    Returns one line per fix made."""
    f = find(tier1, tier2)
    fixed = finish_interrupted(tier1, tier2)
    with tier1.transaction("repair"):
        for sid in f.files_without_session:
            # The raw bytes are still whole: give them their row back rather than drop them.
            tier1.restore_session_row(sid)
            fixed.append(f"{sid}: recreated the session row of its stored files")
        for fid in f.chunks_without_file:
            # Reachable by no session, so no command could ever export them.
            tier1.delete_chunks_of(fid)
            fixed.append(f"deleted the chunks of file {fid}, which belong to no file")
        for sid in f.analyzed_without_digest:
            # Raw bytes are all there: analyze it again rather than trust the state.
            tier1.requeue_analysis(sid)
            fixed.append(f"{sid}: analyzed without a digest; queued for analysis again")
        for sid in f.digest_without_session:
            if sid in f.pending_forgets:
                continue
            # Tier 2 is the precious tier: give the digest an evicted row to belong to.
            times = tier2.digest_times(sid)
            if times is None:
                continue
            source, analyzed_at, started_at, ended_at = times
            tier1.restore_evicted_row(sid, source, analyzed_at=analyzed_at,
                                      started_at=started_at, ended_at=ended_at, now=now)
            fixed.append(f"{sid}: digest without session; recreated its row as evicted")
        leaked = tier1.free_leaked_frames()
        for sid, n, size in leaked:
            fixed.append(f"{sid}: freed {n} frames ({size} bytes) that no read used")
        for fid in tier1.kill_orphan_members():
            fixed.append(f"file {fid}: its bytes in a pack belong to no file; marked dead")
        if f.accounting_drift or f.chunks_without_file:
            tier1.recount()
            fixed.append("recounted the byte totals from the chunks")
    if leaked:
        tier1.reclaim()  # the file shrinks by what was freed
    return fixed


# -- ids of runs, from run numbers to header times ----------------------------------------

RUN_IDS_KEY = "run_ids"
RUN_IDS_VERSION = 2  # runs named by their header: `<repo folder>#<YYYYMMDDTHHMMSS>[-n]`
RUN_RENAMES_KEY = "run_ids_pending"
_OLD_RUN_ID = re.compile(r"[^#]*#\d+")


def run_ids_to_migrate(tier1: Tier1) -> bool:
    """Whether migrate_run_ids has anything to do (a renaming to make or to finish)."""
    return (tier1.get_meta(RUN_RENAMES_KEY) is not None
            or tier1.get_meta(RUN_IDS_KEY) != RUN_IDS_VERSION)


def migrate_run_ids(tier1: Tier1, tier2: Callable[[], Tier2], settings: Settings) -> list[str]:
    """Stores written before runs were named by their header time (`<tool>:app#2`) get the
    ids ingest gives today (`<tool>:path/to/app#20250602T114749`), in place. Returns one
    line per session renamed. `tier2`: Tier 2, opened only if a run is renamed (a new
    store, which has none, is marked as named today's way without it).

    Crash-safe across the two stores: Tier 1 renames its rows and records the renames in
    one transaction; Tier 2's digests follow (renaming again is harmless); then the record
    goes. A kill in between is finished by the next call."""
    if not run_ids_to_migrate(tier1):
        return []
    pending = tier1.get_meta(RUN_RENAMES_KEY)
    if pending is None:
        renames = _plan_run_renames(tier1, tier2, settings)
        with tier1.transaction("rename-runs"):
            for old, moves in renames.items():
                # The files of other runs (two repositories' runs merged under one old id)
                # go first, to sessions of their own; then the session takes its new id.
                for new, native, file_ids in moves[1:]:
                    tier1.move_session(old, new, native, file_ids)
                new, native, _ = moves[0]
                tier1.move_session(old, new, native)
            flat = {old: moves[0][0] for old, moves in renames.items()}
            if flat:
                tier1.set_meta(RUN_RENAMES_KEY, json.dumps(flat))
            tier1.set_meta(RUN_IDS_KEY, RUN_IDS_VERSION)
        if not flat:
            return []  # as for a new store: Tier 2 is not even opened
        pending = json.dumps(flat)
    flat = json.loads(pending)
    tier2().rename_sessions(flat)
    with tier1.transaction("rename-runs-done"):
        tier1.delete_meta(RUN_RENAMES_KEY)
    for old, new in flat.items():
        logger.info("session renamed: runs are named by their start", old=old, new=new)
    return [f"{old} is now {new}" for old, new in flat.items()]


def _plan_run_renames(tier1: Tier1, tier2: Callable[[], Tier2], settings: Settings
                      ) -> dict[str, list[tuple[str, str, list[int]]]]:
    """Old id -> [(new id, new native id, its file ids)], the first entry the session's own."""
    plan: dict[str, list[tuple[str, str, list[int]]]] = {}
    for source in settings.sources.values():
        taken = {sid for sid, _, _ in tier1.sessions_of_source(source.name)}
        pieces: list[tuple[str, int, int, str, int, str]] = []  # path, version, base, ...
        framed: set[str] = set()
        for sid, native, has_frames in tier1.sessions_of_source(source.name):
            if not _OLD_RUN_ID.fullmatch(native):
                continue
            fmt = formats.get(source.format)
            mine = []
            for f in tier1.files(sid, latest_only=False):
                role = fmt.identify(PurePosixPath(f.path), lambda: b"")
                if role is None or role.run_marker is None or role.run_id is None:
                    break
                run = _run_of(tier1, tier2, f, role.run_marker, role.run_id, sid)
                if run is None:
                    logger.warning("cannot tell when this run started; its id is kept",
                                   session=sid)
                    break
                mine.append((f.path, f.version, f.base_offset, sid, f.id,
                             f"{role.native_id}#{run}"))
            else:
                pieces += mine
            if has_frames:
                framed.add(sid)
        counts: dict[tuple[str, int, str], int] = {}
        for path, version, _, sid, file_id, base in sorted(pieces):
            n = counts[path, version, base] = counts.get((path, version, base), 0) + 1
            native = base if n == 1 else f"{base}-{n}"
            new = f"{source.name}:{native}"
            moves = plan.setdefault(sid, [])
            for entry in moves:
                if entry[0] == new:
                    entry[2].append(file_id)
                    break
            else:
                moves.append((new, native, [file_id]))
        for sid in list(plan):
            moves = plan[sid]
            if len(moves) > 1 and sid in framed:
                # Sealed frames span its files: they cannot be parted; one id for all.
                plan[sid] = [moves[0]]
            plan[sid] = [m for m in plan[sid] if m[0] not in taken or m[0] == sid]
            if not plan[sid] or plan[sid][0][0] == sid:
                del plan[sid]
                continue
            taken.update(m[0] for m in plan[sid])
    return plan


def _run_of(tier1: Tier1, tier2: Callable[[], Tier2], f: StoredFile, marker: bytes,
            run_id: Callable[[bytes], str | None], sid: str) -> str | None:
    """A stored run's id: from its header while its bytes are stored, else from the start
    time its digest kept."""
    if f.raw_bytes:
        head = b""
        for piece in tier1.read_file(f.id):
            head += piece
            if len(head) >= 64 * 1024:
                break
        header = first_run_header(head, marker)
        if header is not None:
            return run_id(header)
    started = tier2().digest_start(sid)
    if started and (stamp := re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)",
                                          started)):
        return "{}{}{}T{}{}{}".format(*stamp.groups())
    return None
