"""The dashboard: one self-contained HTML page over the library (read-only, like the CLI).

    from session_memory.dashboard import write
    write(memory, Path("session-memory-dashboard.html"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from session_memory import safe_write
from session_memory.dashboard.gather import gather as gather_data
from session_memory.dashboard.page import render
from session_memory.errors import SessionMemoryError
from session_memory.memory import Memory

__all__ = ["gather_data", "render", "write"]


def write(memory: Memory, path: Path) -> dict[str, Any]:
    """Write the page to `path` (replacing it whole: a reader never sees half a page; owner
    read-write only, as it names sessions and projects). Returns what was written: its path
    and size, and how much it covers."""
    data = gather_data(memory)
    html = render(data).encode()
    path = path.expanduser()
    try:
        safe_write.replace_file(path, [html])
    except OSError as e:
        raise SessionMemoryError(f"cannot write the dashboard to {path}: "
                                 f"{e.strerror or e}") from e
    return {"path": str(path.resolve()), "bytes": len(html),
            "sweeps": len(data["sweeps"]["id"]), "sessions": data["now"]["sessions"]["total"],
            "data_loss_sessions": len(data["data_loss"])}
