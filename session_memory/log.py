"""Logging, set up once: JSON lines on stderr (journald's <N> prefix under systemd), structlog's
console rendering on a terminal. The standard library's loggers (watchdog's among them)
go through the same handler.

A module logs through `get(name)` with structlog's call shape, `logger.info("event",
key=value)`; the record travels through the standard library's logging, its message the
event dict (as structlog's stdlib integration passes it). The JSON line is rendered here,
keys in structlog's order (the call's keys, event, level, logger, timestamp): importing
structlog costs a process 50 ms or more (it loads asyncio, rich and attrs), and a one-shot
command that logs a line (ingest, on a history with an empty file) would pay that. structlog
is loaded only to render for a person at a terminal. Nothing is set up until something logs
(or `setup` is called)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4,
             "info": 6, "debug": 7}
_configured = False
_handler: logging.Handler | None = None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes, as logging's last resort does:
    the pipeline may be set up long after start, under a redirected or captured stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def event_dict(record: logging.LogRecord) -> dict[str, Any]:
    """A record's keys and event: ours carry them as the message, others' a plain text."""
    if isinstance(record.msg, dict):
        return dict(record.msg)
    return {"event": record.getMessage()}


class _JsonFormatter(logging.Formatter):
    """One JSON object a line, as structlog's JSONRenderer writes it (unknown values as
    their repr); under systemd prefixed with <N> so journald files it at its priority."""

    def __init__(self, *, priority_prefix: bool) -> None:
        super().__init__()
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        doc = event_dict(record)
        level = record.levelname.lower()
        doc["level"] = level
        doc["logger"] = record.name
        doc["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat().replace(
            "+00:00", "Z")
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        line = json.dumps(doc, default=repr)
        return f"<{_PRIORITY.get(level, 6)}>{line}" if self.priority_prefix else line


def _console_formatter() -> logging.Formatter:
    """structlog's colored console lines, for a person at a terminal."""
    import structlog

    def lift_keys(logger: Any, name: str, ed: MutableMapping[str, Any]) -> Mapping[str, Any]:
        record = ed["_record"]
        if not isinstance(record.msg, dict):
            return ed
        return {**record.msg, **{k: ed[k] for k in ("_record", "_from_structlog", "exc_info",
                                                     "stack_info") if k in ed}}

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[lift_keys, structlog.stdlib.add_log_level,
                           structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=True)],
    )


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup(level: str = "info", *, force_json: bool | None = None) -> None:
    """Route our loggers and the standard library's (watchdog's too) to stderr."""
    global _configured, _handler
    use_json = force_json if force_json is not None else (
        under_systemd() or not sys.stderr.isatty())
    handler = _StderrHandler()
    handler.setFormatter(_JsonFormatter(priority_prefix=under_systemd()) if use_json
                         else _console_formatter())
    root = logging.getLogger()
    # Ours replaces ours; a handler someone else added (a test's log capture) stays.
    root.handlers[:] = [h for h in root.handlers if h is not _handler] + [handler]
    _handler = handler
    root.setLevel(level.upper())
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    _configured = True


def ensure_setup() -> None:
    """Set the pipeline up now if nothing has (the level from SESSION_MEMORY_LOG_LEVEL)."""
    if not _configured:
        setup(os.environ.get("SESSION_MEMORY_LOG_LEVEL", "info"))


class Logger:
    """A module's logger, called as structlog's are: `logger.warning("event", key=value)`;
    `exc_info=True` (or `exception`) adds the traceback being handled."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, keys: dict[str, Any],
             exc_info: bool = False) -> None:
        ensure_setup()
        if self._logger.isEnabledFor(level):
            exc_info = bool(keys.pop("exc_info", exc_info))
            self._logger.log(level, {**keys, "event": event}, exc_info=exc_info)

    def debug(self, event: str, **keys: Any) -> None:
        self._log(logging.DEBUG, event, keys)

    def info(self, event: str, **keys: Any) -> None:
        self._log(logging.INFO, event, keys)

    def warning(self, event: str, **keys: Any) -> None:
        self._log(logging.WARNING, event, keys)

    warn = warning

    def error(self, event: str, **keys: Any) -> None:
        self._log(logging.ERROR, event, keys)

    def exception(self, event: str, **keys: Any) -> None:
        self._log(logging.ERROR, event, keys, exc_info=True)

    def critical(self, event: str, **keys: Any) -> None:
        self._log(logging.CRITICAL, event, keys)


def get(name: str) -> Logger:
    return Logger(name)
