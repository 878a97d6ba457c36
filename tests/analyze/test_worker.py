"""Worker processes sharing an analysis pass: each session analyzed once, by whichever
process takes it; a worker that dies loses only the session it was on; none outlives the
process that started it."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from session_memory.analyze import run, worker
from session_memory.memory import Memory
from tests.analyze.helpers import jsonl, write


def claude_session(root: Path, n: int) -> None:
    sid = f"pa{n:02d}"
    write(root, f"-p/{sid}.jsonl", jsonl(
        {"type": "user", "sessionId": sid, "timestamp": "2026-01-01T00:00:00Z",
         "message": {"role": "user", "content": f"task {n}"}},
        {"type": "assistant", "sessionId": sid, "timestamp": "2026-01-01T00:00:09Z",
         "message": {"id": f"m{n}", "model": "m", "content": [], "usage": {
             "input_tokens": n, "output_tokens": 1}}}))


def test_parallel_workers_give_the_serial_digests(memory: Memory, sources: dict[str, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(4):
        claude_session(sources["claude-code"], n)
    memory.ingest()
    ids = sorted(memory.analyze())
    serial = {sid: memory.tier2.get_digest(sid) for sid in ids}
    monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
    # Workers even where the machine has one core: this compares parallel with serial.
    monkeypatch.setattr(run.os, "cpu_count", lambda: 4)
    passes: list[int] = []
    real_pass = worker.SharedPass

    def counted(*args: Any, **kwargs: Any) -> Any:
        passes.append(args[3])
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(worker, "SharedPass", counted)
    assert sorted(memory.analyze(force=True)) == ids
    assert passes == [3]  # three workers beside this process
    assert {sid: memory.tier2.get_digest(sid) for sid in ids} == serial
    assert serial["claude-code:pa03"]["tokens"]["input"] == 3  # type: ignore[index]


def test_a_parallel_pass_checkpoints_tier2_while_its_workers_finish(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Once this process has nothing left to parse, the pass's WAL is copied into Tier 2
    while the workers finish, with the sessions it committed already in it; and once they
    are done, their last digests are committed and copied while they exit."""
    for n in range(6):
        claude_session(sources["claude-code"], n)
    memory.ingest()
    committed: list[int] = []
    checkpoints: list[int] = []
    real_commit = run._commit

    def commit(*args: Any) -> list[str]:
        done = real_commit(*args)
        committed.extend([1] * len(done))
        return done

    monkeypatch.setattr(run, "_commit", commit)
    monkeypatch.setattr(type(memory.tier2), "checkpoint",
                        lambda self: checkpoints.append(len(committed)))
    memory.analyze()  # small: kept in this process, no checkpoint of its own
    assert checkpoints == [] and len(committed) == 6
    monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    assert len(memory.analyze(force=True)) == 6
    assert len(checkpoints) == 2 and 6 <= checkpoints[0] <= 12 and checkpoints[1] == 12


def test_both_ends_take_each_session_once() -> None:
    ends = multiprocessing.get_context("spawn").Array("q", [0, 6])
    taken = [worker.take(ends, front=n % 3 != 0) for n in range(9)]
    assert taken == [6, 0, 1, 5, 2, 3, 4, None, None]
    assert worker.stop(ends) == 4  # the workers' end took 0 to 3


def rows_of(memory: Memory) -> list[dict[str, Any]]:
    return sorted(memory.tier1.sessions(memory.idle_before), key=lambda r: -r["raw_bytes"])


def test_a_worker_alone_delivers_every_session(memory: Memory, sources: dict[str, Path]
                                               ) -> None:
    for n in range(3):
        claude_session(sources["claude-code"], n)
    memory.ingest()
    rows = rows_of(memory)
    with worker.SharedPass(memory.tier1.path, {"claude-code": "claude-code"}, rows, 1) as shared:
        delivered = dict(shared.rest())  # this process takes nothing
    assert sorted(delivered) == [0, 1, 2]
    for i, digest in delivered.items():
        assert isinstance(digest, dict) and digest["first_prompt"] == f"task {rows[i]['id'][-1]}"
    assert list(shared.lost()) == []


def test_a_worker_that_dies_loses_only_the_session_it_was_on(
        memory: Memory, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        claude_session(sources["claude-code"], n)
    memory.ingest()
    # The crash harness's hook: the worker kills itself as it starts on its first session.
    monkeypatch.setenv("SESSION_MEMORY_CRASH_AT", "analyze-worker")
    t0 = time.monotonic()
    with worker.SharedPass(memory.tier1.path, {"claude-code": "claude-code"},
                           rows_of(memory), 1) as shared:
        assert list(shared.rest()) == []  # it returns: the worker is gone
        # Sessions 1 and 2 are left for this process, as `analyze` would take them.
        assert [shared.take(), shared.take(), shared.take()] == [2, 1, None]
    assert time.monotonic() - t0 < 30
    assert list(shared.lost()) == [(0, "the analysis worker exited with code -9")]


def test_an_orphaned_worker_stops(tmp_path: Path) -> None:
    """A worker whose caller was killed must not go on analyzing, nor hang on the results
    nobody reads: it would outlive a `kill -9` of `session-memory analyze`."""
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from session_memory.analyze import worker
        from session_memory.store.tier1 import Tier1
        if __name__ == "__main__":
            Tier1(Path({str(tmp_path / "tier1.db")!r})).close()
            rows = [{{"id": f"s{{i}}", "source": "gone", "raw_bytes": 1}}
                    for i in range(200_000)]
            shared = worker.SharedPass(Path({str(tmp_path / "tier1.db")!r}), {{}}, rows, 1)
            while shared.results.empty():
                pass
            print(shared.processes[0].pid, flush=True)
            os._exit(0)  # as if killed: no clean-up
        """)
    (tmp_path / "orphan.py").write_text(script)
    with subprocess.Popen([sys.executable, str(tmp_path / "orphan.py")], text=True,
                          stdout=subprocess.PIPE) as caller:
        assert caller.stdout is not None
        orphan = psutil.Process(int(caller.stdout.readline()))
        assert caller.wait(timeout=60) == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if orphan.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        orphan.kill()
        pytest.fail("the orphaned worker is still running")


@pytest.mark.skipif(worker._glibc() is None, reason="only glibc's malloc is set")
def test_a_pass_reuses_freed_memory_instead_of_faulting_in_new_pages() -> None:
    """A block larger than glibc's largest mapping threshold, freed and allocated again,
    costs no new page faults while a pass keeps its heap, and a page fault a page
    otherwise; the thresholds are glibc's starting values again once the outermost pass
    ends."""
    import resource

    size = 48 * 2**20
    pages = size // resource.getpagesize()

    def faults_of_a_block() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = b"x" * size  # every page written
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del block
        return faults

    faults_of_a_block()
    assert faults_of_a_block() > pages // 2
    with worker.heap_kept():
        with worker.heap_kept():
            faults_of_a_block()
        assert faults_of_a_block() < pages // 10  # the inner pass left the settings be
    assert worker._kept_depth == 0
    faults_of_a_block()
    assert faults_of_a_block() > pages // 2
