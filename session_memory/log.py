"""structlog set up once: JSON lines (journald's <N> prefix under systemd), console on a TTY.

The standard library's loggers (watchdog's among them) go through the same pipeline."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4,
             "info": 6, "debug": 7}
_configured = False


class _PriorityRenderer:
    """Prefix each JSON line with <N> so journald files it under the right priority."""

    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, name: str, event_dict: dict[str, Any]) -> str:
        level = str(event_dict.get("level", name))
        line = self._json(logger, name, event_dict)
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        return f"<{_PRIORITY.get(level, 6)}>{line}"


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup(level: str = "info", *, force_json: bool | None = None) -> None:
    """Route structlog and the standard library (watchdog's loggers too) to stderr."""
    global _configured
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
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    _configured = True


def get(name: str) -> Any:
    if not _configured:
        setup(os.environ.get("SESSION_MEMORY_LOG_LEVEL", "info"))
    return structlog.get_logger(name)
