"""Analyzing one session, and the worker processes that share a pass with the caller.

Kept apart from the rest of the analyzer so that a worker process starts fast: it imports
the formats, the digest builder and the Tier 1 store, and nothing else (no logging, no
config).

A pass's sessions are one list (the others largest first, then packed ones in pack order:
see run.read_order). Workers take from its front, the calling process from its back (between
its writes to Tier 2), until they meet: every core works until the end, and no process
waits for another to hand it work.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from session_memory import formats
from session_memory.analyze.digest import analyzer_version, build
from session_memory.errors import SessionMemoryError, StoreBusyError
from session_memory.formats.events import Piece
from session_memory.store import db
from session_memory.store.tier1 import StoredFile, Tier1


def pieces(tier1: Tier1, files: list[StoredFile]) -> list[Piece]:
    """The session's stored pieces, each readable (again) straight from Tier 1, within the
    snapshot `files` were listed in."""
    return [Piece(f.path, functools.partial(tier1.read_file, f.id, f), f.mtime) for f in files]


def digest_or_error(tier1: Tier1, formats_by_source: dict[str, str | None],
                    row: dict[str, Any]) -> dict[str, Any] | str:
    """The digest of the session `row` names, or why it could not be made."""
    try:
        fmt = formats_by_source.get(row["source"])
        if fmt is None:
            raise SessionMemoryError(f"source {row['source']!r} is not in the config")
        # One consistent state, even if a seal switches meanwhile. (The collector is off
        # already: both callers, run.analyze and `serve`, run in pass_conditions.)
        with tier1.snapshot():
            module = formats.get(fmt)
            return build(row["source"], functools.partial(
                module.parse, pieces(tier1, tier1.files(row["id"]))),
                record_times=module.RECORD_TIMES,
                version=analyzer_version(module.PARSER_VERSION))
    except StoreBusyError:
        raise
    except Exception as e:  # a corrupt chunk or a parser bug must not stop the pass
        return f"{type(e).__name__}: {e}"


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off, for an analysis pass or a worker's share of one.
    Parsing, folding and writing make many short-lived tuples and no reference cycles, yet
    each few hundred of them alive start a collection, and every tenth of those walks what
    the pass holds (its rows, a batch of digests): a sixth of a session's parse, and more
    of the writes, for nothing to collect. Nested, only the outermost turns it back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


HEAP_BLOCK_MAX = 64 * 2**20
"""During a pass, blocks up to this size come from malloc's heap (see heap_kept)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc's malloc.h)
_GLIBC_START = 128 * 1024
"""Both thresholds' starting value in glibc (DEFAULT_MMAP_THRESHOLD_MIN, and the trim
threshold's default), which heap_kept sets them back to: mallopt has no getter, so what they
were cannot be read. Nor can glibc's dynamic threshold be turned back on: setting either
threshold turns it off for the life of the process (mallopt(3)). So after the first pass,
a process keeps its thresholds at 128 KiB where glibc would have raised them (up to 32 MiB
on 64-bit, as blocks that size are freed): larger blocks are mapped afresh each time, and
memory freed is given back sooner."""
_kept_depth = 0


@contextlib.contextmanager
def heap_kept() -> Iterator[None]:
    """glibc's malloc set, for an analysis pass or a worker's share of one, to serve blocks
    up to HEAP_BLOCK_MAX from its heap and to keep there what is freed. A pass allocates
    and frees blocks of the same sizes over and over (each file's bytes, decoded blocks of
    records); by default each one over 128 KiB is a new mapping, every page of which faults
    when first written: half a pass's page faults, about a tenth of its CPU. After the
    pass both thresholds are set to glibc's starting values (not to what they were, nor
    dynamic again: see _GLIBC_START) and the memory it freed is given back. Nested, only
    the outermost does this; where the C library is not glibc, nothing."""
    global _kept_depth
    libc = _glibc() if _kept_depth == 0 else None
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
    _kept_depth += 1
    try:
        yield
    finally:
        _kept_depth -= 1
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_START)
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_START)
            libc.malloc_trim(0)


@contextlib.contextmanager
def pass_conditions() -> Iterator[None]:
    """This process set as an analysis pass, or a worker's share of one, runs best: the
    collector paused and malloc's heap kept (see each)."""
    with collector_paused(), heap_kept():
        yield


@functools.cache
def _glibc() -> Any:
    """The C library, if it is glibc (whose mallopt takes the parameters above)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError):  # not a GNU system: the name is unknown
        return None
    import ctypes

    return ctypes.CDLL(None)


class SharedPass:
    """Worker processes sharing one pass's sessions, `rows`, in the order given, with the
    calling process: workers take from the front, the caller from the back (`take`)."""

    EXIT_SECONDS = 10.0  # after the pass, for a worker to finish the session it is on

    def __init__(self, tier1_path: Path, formats_by_source: dict[str, str | None],
                 rows: list[dict[str, Any]], workers: int) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited connections or threads
        self.ends = context.Array("q", [0, len(rows) - 1])
        self.work, self.results = context.Queue(), context.Queue()
        self.processes = [
            context.Process(target=serve, daemon=True, name="session-memory-analyze",
                            args=(tier1_path, formats_by_source, os.getpid(), self.work,
                                  self.ends, self.results))
            for _ in range(workers)]
        self.running = workers
        self.delivered: set[int] = set()
        self.workers_took = 0
        try:
            for process in self.processes:
                process.start()
                # Handed over by the queue's own thread: a long list passed as an argument
                # would hold this process up until the worker had started and read it all.
                self.work.put(rows)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SharedPass:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self) -> int | None:
        return take(self.ends, front=False)

    def ready(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        """What the workers have delivered so far, without waiting."""
        while self.running and not self.results.empty():
            if (delivered := self._receive(self.results.get())) is not None:
                yield delivered

    def rest(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        """What the workers deliver until they are done, or gone."""
        while self.running:
            try:
                item = self.results.get(timeout=0.1)
            except queue.Empty:
                if all(p.exitcode is not None for p in self.processes) and (
                        self.results.empty()):
                    return  # one died without a word: killed, or out of memory
                continue
            if (delivered := self._receive(item)) is not None:
                yield delivered

    def _receive(self, item: tuple[int, Any] | None) -> tuple[int, dict[str, Any] | str] | None:
        """A worker's (index, outcome), or None for its last word."""
        if item is None:
            self.running -= 1
            return None
        i, outcome = item
        if isinstance(outcome, BaseException):
            raise outcome
        self.delivered.add(i)
        return i, outcome

    def lost(self) -> Iterator[tuple[int, str]]:
        """Sessions a worker took and died on, with why (after `close`)."""
        codes = ", ".join(map(str, sorted({p.exitcode for p in self.processes if p.exitcode})))
        for i in range(self.workers_took):
            if i not in self.delivered:
                yield i, f"the analysis worker exited with code {codes or '?'}"

    def close(self) -> None:
        self.workers_took = stop(self.ends)
        deadline = time.monotonic() + self.EXIT_SECONDS
        while (alive := [p for p in self.processes if p.is_alive()]) and (
                time.monotonic() < deadline):
            while not self.results.empty():
                self.results.get()  # a worker exits only once what it put is read
            multiprocessing.connection.wait([p.sentinel for p in alive], timeout=0.01)
        for process in self.processes:
            if process.is_alive():
                process.kill()
            if process.pid is not None:  # started
                process.join()
        # If a worker died before it read its rows, this lets the queue's thread end.
        self.work.close()
        self.work.cancel_join_thread()


def take(ends: Any, front: bool) -> int | None:
    """The index of the next session to analyze, from the front (workers) or the back (the
    calling process) of what is left; None once nothing is. `ends` is a shared array of
    two integers: the first index left and the last."""
    with ends.get_lock():
        first, last = ends[0], ends[1]
        if first > last:
            return None
        if front:
            ends[0] = first + 1
            return int(first)
        ends[1] = last - 1
        return int(last)


def stop(ends: Any) -> int:
    """Leave nothing more to take; returns how many the workers took."""
    with ends.get_lock():
        took = int(ends[0])
        ends[0] = max(took, ends[1] + 1)
        return took


def serve(tier1_path: Path, formats_by_source: dict[str, str | None], parent: int,
          work: Any, ends: Any, results: Any) -> None:
    """A worker process: analyze sessions from the front of the rows it gets from `work`
    and put each (index, digest or error) on `results`, then None. A busy store is put as
    the error itself, for the calling process to raise. An orphan stops: nobody would
    read what it puts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle: it stops us
    tier1 = Tier1(tier1_path)
    try:
        rows = work.get()
        with pass_conditions():
            while os.getppid() == parent and (i := take(ends, front=True)) is not None:
                db.crashpoint("analyze-worker")
                try:
                    results.put((i, digest_or_error(tier1, formats_by_source, rows[i])))
                except StoreBusyError as e:
                    results.put((i, e))
                    stop(ends)
    finally:
        tier1.close()
        if os.getppid() == parent:
            results.put(None)
        else:
            results.cancel_join_thread()
