"""A real store for the dashboard's tests: the Claude Code and Codex fixtures ingested and
partly analyzed, then real sweeps with small caps: one that evicts nothing, one by budget,
one by age (backstop), one dry run, and one over the hard cap that loses data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import FIXTURES, sources_toml
from tests.test_retention import projected, set_caps

START = 1_800_000_000.0
HOUR = 3600.0


@dataclasses.dataclass
class SweptStore:
    settings: config.Settings
    config_path: Path
    reports: list[dict[str, Any]]
    data_loss: list[str]


def settings_for(home: Path) -> tuple[config.Settings, Path]:
    path = home / "config.toml"
    path.write_text(f"""
[storage]
data_dir = "{home / 'data'}"
[retention]
keep_free = 0
raw_max_age_days = 36500
""" + sources_toml(claude_code=FIXTURES / "claude-code" / "projects",
                  codex=FIXTURES / "codex", gemini_cli=None, aider=None))
    return config.load(path), path


def build(home: Path) -> SweptStore:
    settings, path = settings_for(home)
    clock = FixedClock(START)
    reports = []
    with Memory(settings, clock=clock) as memory:
        memory.ingest()
        ids = sorted(s["id"] for s in memory.sessions())
        # Codex and every other Claude Code session analyzed; the rest stay un-analyzed.
        analyzed = [i for n, i in enumerate(ids) if i.startswith("codex:") or n % 2]
        memory.analyze(analyzed)
        memory.pin(analyzed[0])  # exempt from every pass: stays in Tier 1
        usage = projected(memory)
        set_caps(memory, raw_soft_cap=usage * 2, raw_hard_cap=usage * 3)
        reports.append(memory.sweep())  # under every cap: evicts nothing
        clock.advance(HOUR)
        set_caps(memory, raw_soft_cap=usage - 8_000)
        reports.append(memory.sweep())  # budget
        clock.advance(HOUR)
        reports.append(memory.sweep(dry_run=True))
        clock.advance(HOUR)
        set_caps(memory, raw_max_age_days=1.0)
        reports.append(memory.sweep())  # backstop: the fixtures are old
        clock.advance(HOUR)
        usage = projected(memory)
        set_caps(memory, raw_soft_cap=usage // 2, raw_hard_cap=usage - 4_000)
        memory.analyze_report = None  # type: ignore[assignment,method-assign]
        reports.append(memory.sweep())  # overflow with no analyzer: data loss
    lost = reports[-1]["overflow_data_loss"]
    return SweptStore(settings, path, reports, lost)
