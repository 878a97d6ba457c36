"""The agent tools we read: one module per tool in this package (see base.py for what a
module declares). This registry is the one list of formats: the config, the ingest, the
watcher, the daemon, the hook and the analyzer all ask it.

Modules are found by name without importing them, and imported when first asked for: an
analysis worker process starts faster with only the format it reads."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import cast

from session_memory.formats.base import Format, Transcript

CONTRACT_MODULES = frozenset({"base", "events"})
"""Modules of this package that are the contract, not a format."""


@cache
def names() -> tuple[str, ...]:
    """Every format's name, in module order (`claude_code.py` is `claude-code`)."""
    return tuple(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
                 if m.name not in CONTRACT_MODULES and not m.name.startswith("_"))


@cache
def get(name: str) -> Format:
    """The format module called `name`; KeyError for a name that is not one. Cached: ingest
    asks once a file."""
    if name not in names():
        raise KeyError(name)
    return cast(Format, importlib.import_module(f"{__name__}.{name.replace('-', '_')}"))


def transcript(name: str) -> Transcript | None:
    """The format's transcript reader (see base.py), None where it has none."""
    reader: Transcript | None = getattr(get(name), "transcript", None)
    return reader


def root_variables() -> tuple[str, ...]:
    """The environment variables the formats' default roots follow (a module's optional
    ROOT_VARIABLE), each once."""
    found = (getattr(get(name), "ROOT_VARIABLE", None) for name in names())
    return tuple(dict.fromkeys(v for v in found if v))
