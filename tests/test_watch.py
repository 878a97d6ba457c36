"""The watcher: which folders, which events, and what happens at the inotify watch limit."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from session_memory.config import Source
from session_memory.watch import Trouble, Watcher

# watchdog's benign re-registration warning (filtered in production by session_memory.watch).
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


class RecordingSink:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.troubles: list[tuple[str, str]] = []
        self.arrived = threading.Event()

    def changed(self, path: str) -> None:
        self.paths.append(path)
        self.arrived.set()

    def trouble(self, reason: Trouble, root: str) -> None:
        self.troubles.append((reason, root))

    def wait(self, check: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _flush(sink: RecordingSink, sentinel: Path) -> None:
    """Wait until the events of everything done before are in: the watch reports a folder's
    events in order, so once a file written now is reported, earlier events are too. No
    quiet window to guess, however loaded the machine."""
    sentinel.write_text("{}\n")
    assert sink.wait(lambda: str(sentinel) in sink.paths, timeout=30)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def watcher(sink: RecordingSink) -> Iterator[Watcher]:
    w = Watcher(sink)
    yield w
    w.stop()


def test_writes_are_reported_and_reads_are_not(tmp_path: Path, sink: RecordingSink,
                                               watcher: Watcher) -> None:
    root = tmp_path / "projects"
    (root / "-p").mkdir(parents=True)
    session = root / "-p" / "s.jsonl"
    session.write_text("{}\n")
    watcher.sync([Source("claude-code", "claude-code", root)], {})
    with open(session, "a") as f:
        f.write("{}\n")
    assert sink.wait(lambda: str(session) in sink.paths)
    _flush(sink, root / "-p" / "sentinel-1.jsonl")  # every event of the write is in
    sink.paths.clear()
    for _ in range(3):  # what ingest does to a file: open, read, close without writing
        session.read_bytes()
        os.stat(session)
    _flush(sink, root / "-p" / "sentinel-2.jsonl")
    assert str(session) not in sink.paths


def test_folders_created_later_are_watched(tmp_path: Path, sink: RecordingSink,
                                           watcher: Watcher) -> None:
    root = tmp_path / "codex"
    root.mkdir()
    watcher.sync([Source("codex", "codex", root)], {})
    day = root / "sessions" / "2026" / "05" / "01"
    day.mkdir(parents=True)
    rollout = day / "rollout-x.jsonl"
    rollout.write_text("{}\n")
    assert sink.wait(lambda: str(rollout) in sink.paths)
    _flush(sink, day / "sentinel.jsonl")  # the creation's own events are all in
    n = sink.paths.count(str(rollout))
    with open(rollout, "a") as f:
        f.write("{}\n")
    assert sink.wait(lambda: sink.paths.count(str(rollout)) > n)


def test_pruned_folders_are_ignored(tmp_path: Path, sink: RecordingSink,
                                    watcher: Watcher) -> None:
    root = tmp_path / "codex"
    (root / "log").mkdir(parents=True)
    watcher.sync([Source("codex", "codex", root)], {})
    (root / "log" / "codex-tui.log").write_text("noise\n")
    marker = root / "sessions"
    marker.mkdir()
    assert sink.wait(lambda: str(marker) in sink.paths)
    assert not any("/log/" in p for p in sink.paths)


def test_aider_in_the_home_folder_watches_only_known_repositories(home: Path) -> None:
    aider = Source("aider", "aider", home)
    claude = Source("claude-code", "claude-code", home / ".claude" / "projects")
    everything = Source("mytool", "jsonl", home)
    specs = Watcher.specs([aider, claude, everything],
                          {"aider": ["work/api/.aider.chat.history.md",
                                     "work/web/.aider.chat.history.md"]})
    assert [(s.source.name, s.path, s.recursive) for s in specs] == [
        ("aider", str(home / "work" / "api"), False),
        ("aider", str(home / "work" / "web"), False),
        ("claude-code", str(home / ".claude" / "projects"), True),
    ]  # and never a recursive watch on the whole home


def test_aider_watch_reports_only_the_history_file(home: Path, sink: RecordingSink,
                                                   watcher: Watcher) -> None:
    repo = home / "work" / "api"
    repo.mkdir(parents=True)
    history = repo / ".aider.chat.history.md"
    history.write_text("# aider chat started at 2026-05-01 10:00:00\n")
    watcher.sync([Source("aider", "aider", home)], {"aider": ["work/api/.aider.chat.history.md"]})
    (repo / "main.py").write_text("print()\n")
    with open(history, "a") as f:
        f.write("#### hi\n")
    assert sink.wait(lambda: str(history) in sink.paths)
    assert str(repo / "main.py") not in sink.paths


class LimitedObserver(BaseObserver):
    """An inotify observer that has run out of watches."""

    def __init__(self) -> None:
        from watchdog.observers.polling import PollingEmitter

        super().__init__(PollingEmitter)

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_the_watch_limit_degrades_that_root_to_polling(tmp_path: Path,
                                                        sink: RecordingSink) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    for r in roots:
        r.mkdir()
    w = Watcher(sink, inotify_factory=lambda report: LimitedObserver(),
                polling_factory=lambda: PollingObserver(timeout=0.2))
    try:
        sources = [Source("a", "jsonl", roots[0]), Source("b", "jsonl", roots[1])]
        w.sync(sources, {})
        assert w.summary() == {"inotify": 0, "polling": 2, "rescan_only": 0}
        w.sync(sources, {})  # later syncs keep polling, and do not warn again
        assert w.summary()["polling"] == 2
        f = roots[0] / "x.jsonl"
        f.write_text("{}\n")
        assert sink.wait(lambda: str(f) in sink.paths)
    finally:
        w.stop()


def test_a_limit_hit_below_the_root_is_reported(tmp_path: Path, sink: RecordingSink,
                                                watcher: Watcher,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from watchdog.observers import inotify_c

    root = tmp_path / "deep"
    (root / "sub").mkdir(parents=True)
    real = inotify_c.InotifyFD.add_callback

    def add_callback(self: Any, path: bytes, *args: Any) -> Any:
        if path.endswith(b"/sub"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real(self, path, *args)

    monkeypatch.setattr(inotify_c.InotifyFD, "add_callback", add_callback)
    watcher.sync([Source("deep", "jsonl", root)], {})
    assert ("watch-limit", str(root)) in sink.troubles
    watcher.degrade(str(root))
    assert watcher.summary()["polling"] == 1
