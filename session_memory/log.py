"""structlog set up once: JSON lines (journald's <N> prefix under systemd), console on a TTY.

The standard library's loggers (watchdog's among them) go through the same pipeline.

structlog loads, and the pipeline is set up, when something first logs (or `setup` is
called): importing structlog costs a command's start-up 50 ms (it pulls in asyncio and
rich's tracebacks), and most commands log nothing."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
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


class _PriorityRenderer:
    """Prefix each JSON line with <N> so journald files it under the right priority."""

    def __init__(self) -> None:
        import structlog

        self._json = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, name: str, event_dict: dict[str, Any]) -> str:
        level = str(event_dict.get("level", name))
        line = self._json(logger, name, event_dict)
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        return f"<{_PRIORITY.get(level, 6)}>{line}"


def _as_text(logger: Any, name: str, event_dict: MutableMapping[str, Any]
             ) -> dict[str, Any]:
    """For the console: a value's control characters shown, not sent (a session id may be
    a file's name, which may hold an escape sequence); JSON escapes them itself."""
    from session_memory.humanize import shown

    return {key: shown(value) if isinstance(value, str) else value
            for key, value in event_dict.items()}


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup(level: str = "info", *, force_json: bool | None = None) -> None:
    """Route structlog and the standard library (watchdog's loggers too) to stderr."""
    global _configured, _handler
    import structlog

    use_json = force_json if force_json is not None else (
        under_systemd() or not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        renderer: Any = (_PriorityRenderer() if under_systemd()
                         else structlog.processors.JSONRenderer())
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([] if use_json else [_as_text]), renderer],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Ours replaces ours; a handler someone else added (a test's log capture) stays.
    root.handlers[:] = [h for h in root.handlers if h is not _handler] + [handler]
    _handler = handler
    root.setLevel(level.upper())
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True


def _environment_level() -> str:
    return os.environ.get("SESSION_MEMORY_LOG_LEVEL", "info")


def ensure_setup() -> None:
    """Set the pipeline up now if nothing has (the level from SESSION_MEMORY_LOG_LEVEL)."""
    if not _configured:
        setup(_environment_level())


_METHOD_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                  "warn": logging.WARNING, "error": logging.ERROR,
                  "exception": logging.ERROR, "critical": logging.CRITICAL}


def _threshold() -> int:
    """The level below which nothing is logged, known before structlog loads."""
    if _configured:
        return logging.getLogger().level
    level = logging.getLevelName(_environment_level().upper())
    return level if isinstance(level, int) else logging.INFO


def _drop(*args: Any, **kwargs: Any) -> None:
    return None


class _Logger:
    """A module's logger: the structlog logger itself is made on the first call that logs
    (a call below the level, a debug line at info, loads nothing)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:  # only what the instance lacks: info, bind…
        if attr.startswith("__") or attr in ("_name", "_logger"):  # copy, pickle: no logger
            raise AttributeError(attr)
        if self._logger is None:
            level = _METHOD_LEVELS.get(attr)
            if level is not None and level < _threshold():
                return _drop
            import structlog

            ensure_setup()
            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attr)


def get(name: str) -> Any:
    return _Logger(name)
