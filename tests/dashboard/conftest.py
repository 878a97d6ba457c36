from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from session_memory import dashboard
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.dashboard.store import HOUR, START, SweptStore, build


@pytest.fixture
def swept(home: Path) -> SweptStore:
    return build(home)


@pytest.fixture
def swept_memory(swept: SweptStore) -> Iterator[Memory]:
    with Memory(swept.settings, clock=FixedClock(START + 5 * HOUR)) as memory:
        yield memory


@pytest.fixture
def page(swept_memory: Memory, tmp_path: Path) -> Path:
    path = tmp_path / "dashboard.html"
    dashboard.write(swept_memory, path)
    return path
