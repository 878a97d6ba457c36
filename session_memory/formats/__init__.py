"""One module per agent tool. Adding a tool means adding a module and listing it here."""

from __future__ import annotations

from types import ModuleType

from session_memory.formats import aider, claude_code, codex, gemini_cli, jsonl

MODULES: dict[str, ModuleType] = {
    m.NAME: m for m in (claude_code, codex, gemini_cli, aider, jsonl)
}


def get(name: str) -> ModuleType:
    return MODULES[name]
