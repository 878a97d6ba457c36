"""Exceptions that carry their exit code to the CLI."""

from session_memory import exitcodes


class SessionMemoryError(Exception):
    exit_code = exitcodes.ERROR


class ConfigError(SessionMemoryError):
    exit_code = exitcodes.CONFIG


class StoreBusyError(SessionMemoryError):
    exit_code = exitcodes.BUSY


class StoreFullError(SessionMemoryError):
    """SQLITE_FULL: the disk (or the database's size limit) has no room for the write.
    The transaction was rolled back: nothing stored before it is lost."""


FULL_MESSAGE = ("no room left for the store (the disk is full): this write was rolled back "
                "and nothing stored before it is lost; free disk space or run "
                "`session-memory sweep`, then try again")


class NotFoundError(SessionMemoryError):
    pass


class EvictedError(SessionMemoryError):
    """The session's raw bytes are gone; only its digest remains."""


class UnsafePathError(SessionMemoryError):
    pass


class UsageError(SessionMemoryError):
    """A bad argument to a command (a date that is not one, an unknown --by)."""

    exit_code = exitcodes.USAGE
