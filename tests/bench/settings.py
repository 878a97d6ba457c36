"""The settings benchmarks open their stores with: the built-in defaults, over a data
folder of the benchmark's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from session_memory import config


def settings_for(data: Path, root: Path | None = None, **retention: Any) -> config.Settings:
    """The defaults storing in `data`; with `root`, one Claude Code source there (else
    none); `retention`, settings of that table over the defaults."""
    doc = config.default_document()
    doc["storage"] = {"data_dir": str(data)}
    doc["sources"] = {} if root is None else {
        "bench": {"format": "claude-code", "root": str(root)}}
    doc["retention"].update(retention)
    return config.settings_from(doc)
