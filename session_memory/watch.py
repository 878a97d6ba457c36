"""Watching the source roots: watchdog observers that only tell the daemon which paths moved.

Observer threads never touch the stores: every event becomes a call on a `Sink`, which the
daemon turns into a queue entry for its main loop. The watcher only makes the daemon fast;
the periodic full rescan stays the source of truth, so a lost event costs latency, never data.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from session_memory import formats, log
from session_memory.config import Source

logger = log.get("session_memory.watch")

# Writes, creations and renames only: opening or reading a file (ours included) and
# closing it without writing are not even subscribed to, so they never wake us.
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]
POLL_INTERVAL = 5.0
# watchdog re-adds a watch it already holds when a new folder's events race its own walk of
# that folder, and warns about it; the watch is fine, the warning is noise in the journal.
warnings.filterwarnings("ignore", message="Callback with id .* already exists",
                        category=RuntimeWarning)
Trouble = Literal["overflow", "watch-limit", "root-gone"]
Mode = Literal["inotify", "polling", "rescan-only"]


class Sink(Protocol):
    """Where the observer threads report; must be safe to call from any thread."""

    def changed(self, path: str) -> None: ...

    def trouble(self, reason: Trouble, root: str) -> None: ...


@dataclass(frozen=True)
class WatchSpec:
    """One folder to watch for one source."""

    source: Source
    path: str
    recursive: bool
    files: frozenset[str] | None = None
    """Only changes to these files directly in `path` matter (a database a format reads:
    its folder may hold much else, which is not watched)."""


@dataclass
class _Active:
    spec: WatchSpec
    mode: Mode
    observed: ObservedWatch | None
    identity: tuple[int, int]


class Watcher:
    def __init__(self, sink: Sink, *,
                 inotify_factory: Callable[[Callable[[Trouble, str], None]], BaseObserver]
                 | None = None,
                 polling_factory: Callable[[], BaseObserver] | None = None) -> None:
        self.sink = sink
        self._inotify_factory = inotify_factory or inotify_observer
        self._polling_factory = polling_factory or (lambda: PollingObserver(timeout=POLL_INTERVAL))
        self._inotify: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        self._active: dict[tuple[str, str], _Active] = {}
        self._degraded: set[str] = set()  # roots that hit the watch limit: polled for good
        self._rescan_only: set[str] = set()

    # -- what to watch ------------------------------------------------------------------

    @staticmethod
    def specs(sources: list[Source], known_files: dict[str, list[str]]) -> list[WatchSpec]:
        """The folders to watch: each root, recursively, unless its format watches only
        the folders known to hold its files (`known_files`, by source, relative to the
        root), each on its own; new folders are then found by the rescans. A root that is
        the whole home folder (or above) is left to the rescans."""
        home = os.path.realpath(Path.home())
        out: list[WatchSpec] = []
        for source in sources:
            root = os.path.realpath(source.root)
            fmt = formats.get(source.format)
            places = getattr(fmt, "virtual_places", None)
            if places is not None:  # the files that hold its database: their folders alone
                by_folder: dict[str, set[str]] = {}
                for place in places(Path(root)):
                    by_folder.setdefault(os.path.realpath(place.parent), set()).add(place.name)
                out += [WatchSpec(source, folder, False, frozenset(names))
                        for folder, names in sorted(by_folder.items())]
            policy = fmt.WATCH
            if policy.known_folders_only:
                known = known_files.get(source.name, [])
                dirs = sorted({str(Path(root, rel).parent) for rel in known})
                out += [WatchSpec(source, d, False) for d in dirs[:policy.max_known_folders]]
            elif root == home or home.startswith(root.rstrip("/") + "/"):
                continue  # a whole home (or above) is left to the rescans
            else:
                out.append(WatchSpec(source, root, True))
        return out

    def sync(self, sources: list[Source], known_files: dict[str, list[str]]) -> None:
        """Make the watches match the config and what exists now. Called from the main loop
        at start, after each rescan and after a reload; cheap when nothing changed."""
        wanted = {(s.source.name, s.path): s for s in self.specs(sources, known_files)}
        for key in list(self._active):
            act = self._active[key]
            replaced = _identity(act.spec.path) != act.identity
            if key not in wanted or wanted[key] != act.spec or replaced:
                self._remove(key)  # gone from the config, or the folder was replaced
        for key, spec in wanted.items():
            if key not in self._active:
                self._add(spec)
        self._rescan_only = {s.name for s in sources if not any(
            k[0] == s.name for k in self._active)}

    def _add(self, spec: WatchSpec) -> None:
        identity = _identity(spec.path)
        if identity is None:
            return  # not there yet: a later rescan looks again
        handler = _Handler(spec, self.sink)
        mode: Mode = "polling" if spec.path in self._degraded else "inotify"
        observed = None
        if mode == "inotify":
            try:
                observed = self._observer("inotify").schedule(
                    handler, spec.path, recursive=spec.recursive, event_filter=EVENT_FILTER)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EMFILE, errno.ENOMEM):
                    logger.warning("cannot watch folder; the rescans cover it", path=spec.path,
                                   reason=e.strerror)
                    return
                self._warn_limit(spec.path, e.strerror or str(e))
                mode = "polling"
        if mode == "polling":
            observed = self._observer("polling").schedule(
                handler, spec.path, recursive=spec.recursive, event_filter=EVENT_FILTER)
        self._active[(spec.source.name, spec.path)] = _Active(spec, mode, observed, identity)

    def _remove(self, key: tuple[str, str]) -> None:
        act = self._active.pop(key)
        observer = self._inotify if act.mode == "inotify" else self._polling
        if observer is not None and act.observed is not None:
            try:
                observer.unschedule(act.observed)
            except (KeyError, OSError) as e:
                logger.debug("unschedule failed", path=act.spec.path, reason=str(e))

    def degrade(self, root: str) -> None:
        """The watch limit was hit below `root`: poll it instead (called from the main loop)."""
        for key, act in list(self._active.items()):
            if act.spec.path == root and act.mode == "inotify":
                self._warn_limit(root, "inotify watch limit reached")
                self._remove(key)
                self._add(act.spec)

    def _warn_limit(self, root: str, reason: str) -> None:
        if root not in self._degraded:
            logger.warning("inotify watch limit reached: polling this folder instead "
                           "(raise fs.inotify.max_user_watches to watch it)", path=root,
                           reason=reason, poll_interval=POLL_INTERVAL)
            self._degraded.add(root)

    def _observer(self, kind: Mode) -> BaseObserver:
        if kind == "inotify":
            if self._inotify is None:
                self._inotify = self._inotify_factory(self.sink.trouble)
                self._inotify.start()
            return self._inotify
        if self._polling is None:
            self._polling = self._polling_factory()
            self._polling.start()
        return self._polling

    def stop(self) -> None:
        for observer in (self._inotify, self._polling):
            if observer is not None:
                observer.stop()
        for observer in (self._inotify, self._polling):
            if observer is not None and observer.is_alive():
                observer.join(timeout=5)
        self._inotify = self._polling = None
        self._active.clear()

    def summary(self) -> dict[str, int]:
        modes = [a.mode for a in self._active.values()]
        return {"inotify": modes.count("inotify"), "polling": modes.count("polling"),
                "rescan_only": len(self._rescan_only)}


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class _Handler(FileSystemEventHandler):
    """Turns one watch's events into paths for the daemon, dropping what the format ignores."""

    def __init__(self, spec: WatchSpec, sink: Sink) -> None:
        self.spec = spec
        self.sink = sink
        self.root = os.path.realpath(spec.source.root)
        self.fmt = formats.get(spec.source.format)

    def dispatch(self, event: FileSystemEvent) -> None:
        paths = [event.src_path]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths = [dest]  # a rename: what matters is the name the file has now
        for raw in paths:
            path = os.fsdecode(raw)
            if isinstance(event, DirDeletedEvent):
                if path == self.spec.path:
                    self.sink.trouble("root-gone", self.spec.path)
                continue
            if self.spec.files is not None:
                folder, _, name = path.rpartition("/")
                if not event.is_directory and folder == self.spec.path and name in self.spec.files:
                    self.sink.changed(path)
                continue
            if self._wanted(path, is_dir=event.is_directory):
                self.sink.changed(path)

    def _wanted(self, path: str, *, is_dir: bool) -> bool:
        if not path.startswith(self.root + "/"):
            return False
        rel = PurePosixPath(path[len(self.root) + 1:])
        dirs = rel.parts if is_dir else rel.parts[:-1]
        if any(self.fmt.prune(PurePosixPath(*dirs[:i])) for i in range(1, len(dirs) + 1)):
            return False
        return is_dir or self.fmt.WATCH.wants_file(rel.name)


# -- inotify with trouble reports ------------------------------------------------------------

def inotify_observer(report: Callable[[Trouble, str], None]) -> BaseObserver:
    """watchdog's inotify observer, made to report what it otherwise only logs or swallows:
    a queue overflow (events were lost: rescan) and the watch limit hit below a root (a
    recursive watch with holes in it: poll that root)."""
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver

    class ReportingEmitter(InotifyEmitter):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            fd = getattr(self, "_inotify_fd", None)
            if fd is not None and hasattr(fd, "add_callback"):
                self._inotify_fd = _ReportingFD(  # type: ignore[assignment]
                    fd, lambda why: report(why, self.watch.path))

    observer = InotifyObserver()
    observer._emitter_class = ReportingEmitter  # watchdog has no public hook for this
    return observer


class _ReportingFD:
    """Stands in for watchdog's InotifyFD in one emitter: adds watches through it, reporting
    a hit watch limit (watchdog ignores it for sub-folders) and queue overflows."""

    def __init__(self, fd: Any, report: Callable[[Trouble], None]) -> None:
        self._fd = fd
        self._report = report
        self._callbacks: dict[Any, _ReportingCallback] = {}

    def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
        # One stand-in per watch group: watchdog calls each distinct callback once per overflow.
        wrapped = self._callbacks.setdefault(id_, _ReportingCallback(callback, self._report))
        try:
            return self._fd.add_callback(path, mask, wrapped, id_)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.ENOMEM):
                self._report("watch-limit")
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fd, name)


class _ReportingCallback:
    def __init__(self, callback: Any, report: Callable[[Trouble], None]) -> None:
        self._callback = callback
        self._report = report

    def on_event(self, event: Any) -> None:
        self._callback.on_event(event)

    def on_watch_deleted(self, wd: Any) -> None:
        self._callback.on_watch_deleted(wd)

    def on_queue_overflow(self) -> None:
        self._report("overflow")
        self._callback.on_queue_overflow()
