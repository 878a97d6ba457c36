"""Exceptions that carry their exit code to the CLI."""

from session_memory import exitcodes


class SessionMemoryError(Exception):
    exit_code = exitcodes.ERROR


class ConfigError(SessionMemoryError):
    exit_code = exitcodes.CONFIG


class StoreBusyError(SessionMemoryError):
    exit_code = exitcodes.BUSY


class NotFoundError(SessionMemoryError):
    pass


class UnsafePathError(SessionMemoryError):
    pass
