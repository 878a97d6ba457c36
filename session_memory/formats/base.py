"""What every format module provides to ingest: which files are sessions, and whose."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

HEAD_BYTES = 64 * 1024

Head = Callable[[], bytes]
"""Reads the first bytes of a file's (decompressed) content, only when asked."""


@dataclass(frozen=True)
class FileRole:
    """How a file found under a source root takes part in a session."""

    native_id: str
    logical_path: str
    """The path the content is stored and exported under, relative to the root."""
    compressed: bool = False
    """The file is zstd: its decompressed content is what we store."""
    snapshot: bool = False
    """The tool rewrites the whole file: a new version replaces the previous one."""
    run_marker: bytes | None = None
    """Each line starting with this begins a new session (Aider's runs)."""


def first_match(pattern: bytes, head: Head) -> str | None:
    m = re.search(pattern, head())
    return m.group(1).decode("utf-8", "replace") if m else None


def is_hidden(relpath: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in relpath.parts)
