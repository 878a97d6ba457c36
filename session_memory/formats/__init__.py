"""One module per agent tool. Adding a tool means adding a module and listing it here."""

from __future__ import annotations

import importlib
from types import ModuleType

MODULE_NAMES = {
    "claude-code": "claude_code",
    "codex": "codex",
    "gemini-cli": "gemini_cli",
    "aider": "aider",
    "jsonl": "jsonl",
}
"""Format name -> its module, imported when first asked for: an analysis worker process
starts faster with only the format it reads."""


def get(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{MODULE_NAMES[name]}")
