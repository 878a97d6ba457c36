"""Analyzing one session, as the analyzer's worker processes do it.

Kept apart from the rest of the analyzer so that a worker process starts fast: it imports
the formats, the digest builder and the Tier 1 store, and nothing else (no logging, no config).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from session_memory import formats
from session_memory.analyze.digest import build
from session_memory.analyze.events import Piece
from session_memory.errors import SessionMemoryError, StoreBusyError
from session_memory.store.tier1 import StoredFile, Tier1


def pieces(tier1: Tier1, files: list[StoredFile]) -> list[Piece]:
    """The session's stored pieces, each readable (again) straight from Tier 1, within the
    snapshot `files` were listed in."""
    return [Piece(f.path, functools.partial(tier1.read_file, f.id, f)) for f in files]


def digest_or_error(tier1: Tier1, formats_by_source: dict[str, str | None],
                    row: dict[str, Any]) -> dict[str, Any] | str:
    """The digest of the session `row` names, or why it could not be made."""
    try:
        fmt = formats_by_source.get(row["source"])
        if fmt is None:
            raise SessionMemoryError(f"source {row['source']!r} is not in the config")
        with tier1.snapshot():  # one consistent state, even if a seal switches meanwhile
            parse = formats.get(fmt).parse
            return build(row["source"], functools.partial(
                parse, pieces(tier1, tier1.files(row["id"]))))
    except StoreBusyError:
        raise
    except Exception as e:  # a corrupt chunk or a parser bug must not stop the pass
        return f"{type(e).__name__}: {e}"


_state: dict[str, Any] = {}


def init(tier1_path: Path, formats_by_source: dict[str, str | None]) -> None:
    """A worker process's start: its own connection to Tier 1."""
    _state["tier1"] = Tier1(tier1_path)
    _state["formats"] = formats_by_source


def digest(row: dict[str, Any]) -> dict[str, Any] | str:
    return digest_or_error(_state["tier1"], _state["formats"], row)
