"""Every test runs with XDG_* and HOME pointed at a temp dir: nothing touches the real home."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory

# Every property test: no per-example deadline and no "too slow" health check. A loaded
# 2-core machine is slow now and then; timing belongs in the benchmarks.
settings.register_profile("suite", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.load_profile("suite")

# Copies of ../shared/fixtures (real sessions, with their SOURCES.md and licences), so a
# bare clone of the repository tests itself.
FIXTURES = Path(__file__).resolve().parent / "fixtures"


_XDG_DIRS = (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
             ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache"),
             ("XDG_RUNTIME_DIR", "run"))
# Variables a test must not inherit: they would reach a real socket, config or crash point.
OUTSIDE_VARS = ("NOTIFY_SOCKET", "SESSION_MEMORY_CONFIG", "JOURNAL_STREAM", "INVOCATION_ID",
                "SESSION_MEMORY_CRASH_AT")


def home_environ(home: Path) -> dict[str, str]:
    """HOME and every XDG_* variable pointed at folders under `home` (created, 0700)."""
    env = {"HOME": str(home)}
    for var, sub in _XDG_DIRS:
        path = home / sub
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[var] = str(path)
    return env


def isolate_process(home: Path) -> None:
    """For on-demand runs outside pytest: this process's environment, as the fixture sets it."""
    os.environ.update(home_environ(home))
    for var in OUTSIDE_VARS:
        os.environ.pop(var, None)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for var, value in home_environ(home).items():
        monkeypatch.setenv(var, value)
    for var in OUTSIDE_VARS:
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


def stored_raw(memory: Memory, sid: str) -> bytes:
    """Every raw byte Tier 1 holds of a session, read back from its files in order."""
    return b"".join(p for f in memory.tier1.files(sid) for p in memory.tier1.read_file(f.id))


def evict(memory: Memory, *sids: str) -> None:
    """The sessions' raw bytes dropped in one Tier 1 transaction, as a sweep drops them."""
    with memory.tier1.transaction("evict"):
        for sid in sids:
            memory.tier1.evict(sid, memory.clock.now())


def write_config(home: Path, text: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sources_toml(**roots: Path | None) -> str:
    """`[sources.<name>]` tables, a keyword's underscores read as hyphens: a root where one
    is given, `enabled = false` for None."""
    return "".join(
        f"[sources.{name.replace('_', '-')}]\n"
        + (f'root = "{root}"\n' if root is not None else "enabled = false\n")
        for name, root in roots.items())


def in_time_zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> Iterator[str]:
    """For a fixture: the process's local time is `zone` (SQLite and time.mktime read TZ)."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    yield zone
    monkeypatch.undo()
    time.tzset()


def fixture_config(home: Path) -> None:
    """Sources pointing at the shared, read-only fixtures."""
    write_config(home, sources_toml(claude_code=FIXTURES / "claude-code" / "projects",
                                    codex=FIXTURES / "codex", gemini_cli=None,
                                    aider=FIXTURES / "aider"))


@pytest.fixture
def sources(home: Path) -> dict[str, Path]:
    """A config whose five sources point at empty folders under the temp home."""
    roots = {name: home / "src" / name for name in
             ("claude-code", "codex", "gemini-cli", "aider", "mytool")}
    for root in roots.values():
        root.mkdir(parents=True)
    write_config(home, "\n".join(
        f'[sources.{name}]\nformat = "{"jsonl" if name == "mytool" else name}"\n'
        f'root = "{root}"\n' for name, root in roots.items()))
    return roots


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(1_800_000_000.0)


@pytest.fixture
def memory(sources: dict[str, Path], clock: FixedClock) -> Iterator[Memory]:
    with Memory(config.load(), clock=clock) as m:
        yield m
