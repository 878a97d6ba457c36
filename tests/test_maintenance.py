"""Repairs between the tiers must never damage what is right: accounting of sealed
sessions (frames) included. Found by the crash harness: `check --repair` recounted the
totals from chunks alone and broke every sealed session's accounting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from session_memory import maintenance
from session_memory.memory import Memory
from session_memory.store.tier2 import Tier2
from tests.store import old_stores
from tests.store.test_tier1 import _similar_sessions, _unpacked


def test_repair_leaves_sealed_accounting_alone(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(3):
        (sources["mytool"] / f"s{i}.jsonl").write_bytes(b'{"type": "user"}\n' * 500)
    memory.ingest()
    assert memory.seal() == 3
    totals = memory.tier1.totals()
    assert memory.repair() == []
    assert memory.tier1.totals() == totals
    assert memory.check() == []


def test_repair_recounts_drift_with_frames(memory: Memory, sources: dict[str, Path]) -> None:
    for i in range(2):
        (sources["mytool"] / f"s{i}.jsonl").write_bytes(b'{"type": "user"}\n' * 500)
    memory.ingest()
    memory.seal()
    (sources["mytool"] / "s0.jsonl").open("ab").write(b'{"more": 1}\n')
    memory.ingest()  # s0: frames plus a new chunk
    good = memory.tier1.totals()
    memory.tier1.conn.execute("UPDATE totals SET raw_bytes = raw_bytes + 7, chunks = 99")
    memory.tier1.conn.execute("UPDATE sessions SET stored_bytes = 1")
    assert memory.check() != []
    assert any("recounted" in fix for fix in memory.repair())
    assert memory.tier1.totals() == good
    assert memory.check() == []


def test_a_forget_cut_short_is_finished_by_the_next_start(memory: Memory,
                                                          sources: dict[str, Path]) -> None:
    """Killed between the Tier 1 commit and the digest's removal, a forget leaves a
    marker; finish_interrupted (which the daemon runs at start) completes it."""
    (sources["mytool"] / "secret.jsonl").write_bytes(b'{"type": "user"}\n')
    memory.ingest()
    assert memory.analyze() == ["mytool:secret.jsonl"]
    # A child session's digest names it as its parent: that goes with its digest.
    memory.tier2.put_digest("mytool:child.jsonl", "mytool", {
        "analyzer_version": 1, "parent_session": "mytool:secret.jsonl"}, memory.clock.now())
    memory.close()
    run = subprocess.run([sys.executable, "-m", "session_memory", "forget", "secret.jsonl"],
                         env=dict(os.environ, SESSION_MEMORY_CRASH_AT="after-commit:forget"),
                         capture_output=True, timeout=60)
    assert run.returncode == -signal.SIGKILL
    assert maintenance.pending_forgets(memory.tier1) == ["mytool:secret.jsonl"]
    assert memory.tier2.has_digest("mytool:secret.jsonl")
    child = memory.tier2.get_digest("mytool:child.jsonl")
    assert child is not None and child["parent_session"] == "mytool:secret.jsonl"
    assert maintenance.finish_interrupted(memory.tier1, memory.tier2) == [
        "finished forgetting mytool:secret.jsonl"]
    assert not memory.tier2.has_digest("mytool:secret.jsonl")
    assert memory.tier2.get_digest("mytool:child.jsonl") == {"analyzer_version": 1,
                                                             "parent_session": None}
    memory.tier2.delete_digest("mytool:child.jsonl")  # a digest of no session, for check
    assert maintenance.pending_forgets(memory.tier1) == []
    assert memory.check() == []


# -- stores from before runs were named by their start ------------------------------------

def _old_store(memory: Memory, sources: dict[str, Path]) -> dict[str, str]:
    """A store as the old ids left it: runs numbered per folder name, so two repositories
    called `app` shared one sequence. Returns old id -> the id ingest gives today."""
    from tests.test_ingest_runs import FIRST, HISTORY, R1, R2, R3, put

    put(sources["aider"], f"a/app/{HISTORY}", FIRST + R1 + R2)
    put(sources["aider"], f"b/app/{HISTORY}", FIRST + R3)
    memory.ingest()
    memory.analyze()
    memory.seal()
    today = {"aider:app#1": "aider:a/app#20250602T114749",
             "aider:app#2": "aider:a/app#20250603T090000",
             "aider:app#3": "aider:b/app#20250604T103000"}
    with memory.tier1.transaction("evict"):
        memory.tier1.evict(today["aider:app#2"], memory.clock.now())
    with memory.tier1.transaction("age"):
        for old, new in today.items():
            memory.tier1.move_session(new, old, old.split(":", 1)[1])
        memory.tier1.conn.execute("DELETE FROM meta WHERE key = ?", (maintenance.RUN_IDS_KEY,))
    memory.tier2.rename_sessions({new: old for old, new in today.items()})
    return today


def test_old_run_ids_are_migrated_in_place(memory: Memory, sources: dict[str, Path]) -> None:
    today = _old_store(memory, sources)
    settings, clock = memory.settings, memory.clock
    before = {s["id"]: s for s in memory.sessions()}
    memory.close()

    with Memory(settings, clock=clock) as fresh:
        after = {s["id"]: s for s in fresh.sessions()}
        assert sorted(after) == sorted(today.values())
        for old, new in today.items():
            assert {**before[old], "id": new} == after[new]
            digest = fresh.tier2.get_digest(new)
            assert digest is not None and not fresh.tier2.has_digest(old)
        assert after[today["aider:app#2"]]["state"] == "evicted"
        assert [h["id"] for h in fresh.search("third")] == [today["aider:app#3"]]
        assert fresh.check() == []
        assert fresh.ingest().bytes_added == 0  # the cursors moved with their sessions
        assert sorted(s["id"] for s in fresh.sessions()) == sorted(today.values())
        assert sum(r["input"] for r in fresh.usage(by="session")) == 1100 + 1100 + 2200


def test_opening_tier1_of_a_store_with_nothing_to_rename_leaves_tier2_closed(
        memory: Memory, sources: dict[str, Path]) -> None:
    """An ingest of a few new bytes has no use for Tier 2: the check that the run ids are
    today's is Tier 1's own."""
    (sources["mytool"] / "s.jsonl").write_bytes(b'{"a": 1}\n')
    memory.ingest()
    settings, clock = memory.settings, memory.clock
    memory.close()
    with Memory(settings, clock=clock) as fresh:
        assert fresh.ingest().files_changed == 0
        assert fresh._tier2 is None


def test_a_new_store_is_marked_as_named_today_and_gets_both_tiers(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A new store has no run to rename: its Tier 1 says so at once, without opening
    Tier 2, which is made beside it for the read-only views that open both."""
    (sources["mytool"] / "s.jsonl").write_bytes(b'{"a": 1}\n')
    assert not (memory.data_dir / "tier1.db").exists()
    assert memory.tier1.get_meta(maintenance.RUN_IDS_KEY) == maintenance.RUN_IDS_VERSION
    assert memory.tier1.get_meta(maintenance.RUN_RENAMES_KEY) is None
    assert memory._tier2 is None  # the migration had no use for it
    memory.ingest()
    settings = memory.settings
    memory.close()
    with Memory(settings, read_only=True) as view:
        assert view.tier2.check() == []
        assert [s["id"] for s in view.sessions()] == ["mytool:s.jsonl"]


def test_a_new_store_whose_tier2_cannot_be_made_fails_before_it_ingests(
        memory: Memory, sources: dict[str, Path]) -> None:
    (sources["mytool"] / "s.jsonl").write_bytes(b'{"a": 1}\n')
    memory.data_dir.mkdir(parents=True)
    (memory.data_dir / "tier2.db").mkdir()  # no database can be created there
    with pytest.raises(IsADirectoryError):
        memory.ingest()
    assert not (memory.data_dir / "tier1.db").exists()


@pytest.mark.parametrize(("point", "after", "made"), [
    ("before-link:new-store", 0, set()),  # Tier 2's copy, not linked yet
    ("after-link:new-store", 0, {"tier2.db"}),
    ("before-link:new-store", 1, {"tier2.db"}),  # Tier 1's, once Tier 2 is linked
    ("after-link:new-store", 1, {"tier2.db", "tier1.db"}),
])
def test_a_kill_while_a_new_store_is_made_never_leaves_tier1_without_tier2(
        memory: Memory, sources: dict[str, Path], point: str, after: int,
        made: set[str]) -> None:
    """Tier 2 is made first, Tier 1 after it: a kill at any point while they are made
    leaves none, Tier 2 alone or both, and the next ingest makes what is missing."""
    (sources["mytool"] / "s.jsonl").write_bytes(b'{"a": 1}\n')
    child = subprocess.run(
        [sys.executable, "-c", "from session_memory import config; "
         "from session_memory.memory import Memory; Memory(config.load()).ingest()"],
        env={**os.environ, "SESSION_MEMORY_CRASH_AT": point,
             "SESSION_MEMORY_CRASH_AFTER": str(after)}, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert {p.name for p in memory.data_dir.glob("tier*.db")} == made
    assert memory.ingest().bytes_added == 9
    assert {p.name for p in memory.data_dir.iterdir() if ".new" in p.name} == set()
    assert memory.check() == []


def test_a_migration_cut_short_between_the_stores_is_finished(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    today = _old_store(memory, sources)
    settings, clock = memory.settings, memory.clock
    memory.close()

    def killed(self: object, renames: dict[str, str]) -> None:
        raise OSError("killed")

    monkeypatch.setattr(Tier2, "rename_sessions", killed)
    with pytest.raises(OSError), Memory(settings, clock=clock) as cut:
        cut.sessions()
    monkeypatch.undo()

    with Memory(settings, clock=clock) as fresh:
        assert sorted(s["id"] for s in fresh.sessions()) == sorted(today.values())
        assert all(fresh.tier2.has_digest(new) for new in today.values())
        assert fresh.check() == []


# -- forget leaves no trace in Tier 1 --------------------------------------------------------

@pytest.mark.parametrize("sealed", [False, True])
def test_forget_leaves_no_trace_of_the_content_in_tier1(
        memory: Memory, sources: dict[str, Path], sealed: bool) -> None:
    """Random bytes stay verbatim through zstd (stored blocks): before the forget they are
    in Tier 1's files, after it in no file of the data folder, free pages and WAL
    included."""
    secret = os.urandom(48 * 1024)
    (sources["mytool"] / "secret.jsonl").write_bytes(secret)
    (sources["mytool"] / "other.jsonl").write_bytes(os.urandom(48 * 1024))
    memory.ingest()
    if sealed:
        assert memory.seal() == 2
    samples = [secret[i:i + 64] for i in range(0, len(secret), 8 * 1024)]

    def found() -> bool:
        blobs = [p.read_bytes() for p in memory.data_dir.iterdir() if p.is_file()]
        return any(s in blob for s in samples for blob in blobs)

    assert found()
    memory.forget("mytool:secret.jsonl")
    assert not found()
    assert memory.check() == []
    assert [s["id"] for s in memory.sessions()] == ["mytool:other.jsonl"]


def test_forget_leaves_no_trace_of_a_session_anywhere_in_the_data_dir(
        memory: Memory, sources: dict[str, Path]) -> None:
    """A unique string planted in many sessions, stored every way Tier 1 stores bytes
    (chunks, frames sealed at ingest, sealed and recompressed frames) and digested; once
    they are all forgotten, no file under the data directory holds it."""
    planted = b"PLANTED-q8z3v-unique-marker"
    proj = sources["claude-code"] / "-p"
    proj.mkdir()
    sids = []
    for n in range(8):
        sid = f"00000000-0000-4000-8000-{n:012d}"
        lines = [{"type": "user", "sessionId": sid, "uuid": f"u{n}-{k}",
                  "message": {"role": "user", "content": f"{planted.decode()} {n} {k} "
                              + "filler words " * (k % 40)}} for k in range(400)]
        path = proj / f"{sid}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        if n % 2:  # live sessions: chunks, sealed later
            os.utime(path, (memory.clock.now(), memory.clock.now()))
        sids.append(f"claude-code:{sid}")
    memory.ingest()
    memory.clock.advance(memory.settings.idle_seconds + 1)  # type: ignore[attr-defined]
    memory.seal()
    memory.analyze()
    memory.deep_seal()
    keep = proj / "00000000-0000-4000-8000-999999999999.jsonl"
    keep.write_text(json.dumps({"type": "user", "message": {"role": "user",
                                                            "content": "kept"}}) + "\n")
    memory.ingest()
    found = [p for p in memory.settings.data_dir.rglob("*") if p.is_file()
             and planted in p.read_bytes()]
    assert found  # planted where the search can see it: the test can fail
    for sid in sids:
        memory.forget(sid)
    found = [p for p in memory.settings.data_dir.rglob("*") if p.is_file()
             and planted in p.read_bytes()]
    assert found == []
    assert memory.check() == []
    assert [s["id"] for s in memory.sessions()] == [
        "claude-code:00000000-0000-4000-8000-999999999999"]


def test_forget_takes_the_session_out_of_the_eviction_reports(
        memory: Memory, sources: dict[str, Path]) -> None:
    """Its id (a file path for a plain JSONL source, a repository's for Aider) was named in
    every report of a sweep that evicted it or would have, and stayed there: a forgotten
    session is named in none, while each report still counts it."""
    from tests.test_retention import analyze, set_caps

    name = "secret-project-q7x2.jsonl"
    (sources["mytool"] / name).write_bytes(os.urandom(20_000).hex().encode() + b"\n")
    (sources["mytool"] / "other.jsonl").write_bytes(os.urandom(20_000).hex().encode() + b"\n")
    memory.ingest()
    memory.clock.advance(memory.settings.idle_seconds + 1)  # type: ignore[attr-defined]
    sid = f"mytool:{name}"
    analyze(memory, sid)
    analyze(memory, "mytool:other.jsonl")
    set_caps(memory, raw_soft_cap=1)
    dry, real = memory.sweep(dry_run=True), memory.sweep()
    assert sid in dry["budget_evicted"] and sid in real["budget_evicted"]

    memory.forget(sid)

    for path in memory.data_dir.iterdir():
        if path.is_file():
            assert b"q7x2" not in path.read_bytes(), path
    for report in (memory.report(dry["id"]), memory.report(real["id"])):
        assert sid not in json.dumps(report)
        assert len(report["budget_evicted"]) == 2 and "mytool:other.jsonl" in json.dumps(report)
    assert memory.check() == []


def test_forget_retires_a_dictionary_trained_on_the_session(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A string planted in many sessions gets into the dictionary an earlier version trained
    on them; once they are all forgotten, no file under the data directory holds it, and the
    sessions that were compressed with that dictionary read back exactly, recompressed
    without it."""
    _unpacked(monkeypatch)
    planted = "PLANTED-d1ct-7k2x-unique-marker"
    doomed = _similar_sessions(sources["mytool"], 12, marker=planted, seed=1)
    kept = _similar_sessions(sources["mytool"], 12, seed=2)
    memory.ingest()
    memory.seal()
    memory.analyze()
    memory.deep_seal()
    dict_id = old_stores.plant_dictionary(memory.tier1, sorted({**doomed, **kept}))
    data = memory.tier1.conn.execute("SELECT data FROM dictionaries").fetchone()[0]
    assert planted.encode() in data  # the dictionary learned it: the test can fail
    assert old_stores.dictionaries(memory.tier1)[0]["frames"] == len(doomed) + len(kept)
    for sid in doomed:
        memory.forget(sid)
    found = [p for p in memory.settings.data_dir.rglob("*") if p.is_file()
             and planted.encode() in p.read_bytes()]
    assert found == []
    assert old_stores.dictionaries(memory.tier1) == []
    assert memory.tier1.conn.execute("SELECT count(*) FROM frames WHERE dict_id = ?",
                                     (dict_id,)).fetchone()[0] == 0
    for sid, raw in kept.items():
        assert b"".join(p for f in memory.tier1.files(sid)
                        for p in memory.tier1.read_file(f.id)) == raw
    assert memory.check() == []
    assert memory.tier1.to_deepen() == []  # recompressed at the deep level already


def test_a_forget_killed_after_retiring_its_dictionary_loses_nothing(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut short between retiring the dictionary and recompressing the sessions using it:
    they still read back (a retired dictionary stays until no frame uses it), and the idle
    recompression takes them off it; the dictionary goes with its last frame."""
    _unpacked(monkeypatch)
    data = _similar_sessions(sources["mytool"], 12)
    memory.ingest()
    memory.seal()
    memory.deep_seal()
    dict_id = old_stores.plant_dictionary(memory.tier1, sorted(data))
    victim = next(iter(data))
    with memory.tier1.transaction("dict-retire"):
        memory.tier1.retire_dictionaries([dict_id])
    for sid, raw in data.items():
        assert b"".join(p for f in memory.tier1.files(sid)
                        for p in memory.tier1.read_file(f.id)) == raw
    assert memory.check() == []
    # The idle work takes them off it, and the retired one goes with its last frame.
    assert set(memory.tier1.to_deepen()) == set(data)
    assert memory.deep_seal() == len(data)
    assert old_stores.dictionaries(memory.tier1) == []
    assert memory.tier1.conn.execute("SELECT count(*) FROM frames WHERE dict_id IS NOT NULL"
                                     ).fetchone()[0] == 0
    assert memory.tier1.to_deepen() == []
    assert memory.check() == []
    memory.forget(victim)
    assert memory.check() == []
    for sid, raw in data.items():
        if sid != victim:
            assert b"".join(p for f in memory.tier1.files(sid)
                            for p in memory.tier1.read_file(f.id)) == raw


def test_forget_names_no_history_file_the_next_ingest_does_not_read_again(
        memory: Memory, sources: dict[str, Path]) -> None:
    """The last run of an Aider history is forgotten: the file's cursor passes to the run
    before it, and the next ingest stores none of the forgotten run again. Forget said it
    would, and told the user to delete the history, every other run of it with it."""
    from tests.test_ingest_runs import FIRST, HISTORY, R1, R2, ids, put

    history = put(sources["aider"], f"app/{HISTORY}", FIRST + R1 + R2)
    memory.ingest()
    first, last = ids(memory)
    assert memory.forget(last)["source_files"] == []
    memory.ingest()
    assert ids(memory) == [first]

    assert memory.forget(first)["source_files"] == [str(history)]  # none left: read again
    memory.ingest()
    assert ids(memory) == [first, last]
