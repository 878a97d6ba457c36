"""The shared, read-only fixtures, ingested once per test that asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import fixture_config


@pytest.fixture
def fixtures(home: Path) -> Iterator[Memory]:
    fixture_config(home)
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        memory.ingest()
        yield memory


def digest(memory: Memory, sid: str) -> dict[str, Any]:
    """An analyzed session's digest."""
    shown = memory.show(sid)["digest"]
    assert shown is not None, sid
    return dict(shown)
