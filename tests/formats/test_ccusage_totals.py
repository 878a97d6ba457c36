"""Copilot CLI's and OpenCode's day × model token totals on their fixtures against ccusage's
(`ccusage copilot daily`, `ccusage opencode daily`), in UTC and in New York time.

Runs where `ccusage` (npm ccusage@20.0.24; .ci/run installs it) is on PATH, else skips
saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import FIXTURES, in_time_zone, write_config

CCUSAGE = shutil.which("ccusage")
pytestmark = pytest.mark.skipif(
    CCUSAGE is None, reason="ccusage is not installed (npm install -g ccusage@20.0.24)")


@pytest.fixture(params=["UTC", "America/New_York"])
def tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, request.param)


def ccusage(tool: str, tz: str, env: dict[str, str]) -> dict[tuple[str, str], tuple[int, ...]]:
    assert CCUSAGE is not None
    proc = subprocess.run([CCUSAGE, tool, "daily", "--json", "--offline", "--timezone", tz],
                          env={"PATH": os.environ["PATH"], "TZ": tz, "NO_COLOR": "1", **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return {(day.get("period") or day["date"], m["modelName"]): (
        m["inputTokens"], m["outputTokens"], m["cacheCreationTokens"], m["cacheReadTokens"])
        for day in json.loads(proc.stdout)["daily"] for m in day["modelBreakdowns"]}


def ours(home: Path, source: str, root: Path) -> dict[tuple[str, str], tuple[int, ...]]:
    write_config(home, f'[sources.{source}]\nroot = "{root}"\n')
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        assert memory.ingest().errors == 0
        assert not memory.analyze_report(include_active=True).failed
        rows: list[dict[str, Any]] = memory.usage("day", breakdown=True)
    return {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"]) for r in rows for m in r["models"]}


def test_copilot_cli_totals_equal_ccusage(home: Path, tz: str) -> None:
    theirs = ccusage("copilot", tz, {"HOME": str(home),
                                     "COPILOT_HOME": str(FIXTURES / "copilot-cli")})
    assert theirs  # the resumed session's two shutdown records
    assert ours(home, "copilot-cli", FIXTURES / "copilot-cli" / "session-state") == theirs


def test_opencode_totals_equal_ccusage(home: Path, tmp_path: Path, tz: str) -> None:
    data = tmp_path / "share" / "opencode"
    shutil.copytree(FIXTURES / "opencode" / "storage", data / "storage")
    theirs = ccusage("opencode", tz, {"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "share"),
                                      "OPENCODE_DATA_DIR": str(data)})
    assert theirs
    assert ours(home, "opencode", data / "storage") == theirs
