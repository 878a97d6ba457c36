"""The file-system walk seam: what is under a source root, without following links."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

import msgspec

EntryKind = Literal["file", "symlink", "special", "error"]


# Not frozen: one is made for every file walked or named (see ingest.Candidate). A Struct,
# not a dataclass: see store.tier1.Cursor.
class Entry(msgspec.Struct):
    relpath: PurePosixPath
    kind: EntryKind
    stat: os.stat_result | None = None
    detail: str = ""


class Walker(Protocol):
    def walk(self, root: Path, prune: Callable[[PurePosixPath], bool]) -> Iterator[Entry]: ...


class OsWalker:
    """os.scandir, depth first; symlinks are reported, never followed (no escape, no loops)."""

    def walk(self, root: Path, prune: Callable[[PurePosixPath], bool]) -> Iterator[Entry]:
        stack = [PurePosixPath()]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(root / rel) as it:
                    entries = list(it)
            except FileNotFoundError:
                continue  # removed since it was listed: nothing there to miss
            except OSError as e:
                if rel != PurePosixPath():
                    yield Entry(rel, "error", detail=f"cannot list folder: {e.strerror}")
                continue
            for entry in sorted(entries, key=lambda e: e.name):
                child = rel / entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted between the listing and now (its stored copy stays)
                except OSError as e:
                    yield Entry(child, "error", detail=f"cannot stat: {e.strerror}")
                    continue
                if stat.S_ISLNK(st.st_mode):
                    yield Entry(child, "symlink", st)
                elif stat.S_ISDIR(st.st_mode):
                    if not prune(child):
                        stack.append(child)
                elif stat.S_ISREG(st.st_mode):
                    yield Entry(child, "file", st)
                else:
                    yield Entry(child, "special", st)
