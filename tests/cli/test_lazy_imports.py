"""A command imports what it runs and no more: the other commands' modules, rich and
structlog load only where they are used. Each check runs in a fresh interpreter (this
process has imported everything already) and asserts which modules are loaded, not time:
an eager import brought back anywhere shows here as a module that should be absent."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click

from session_memory import cli as cli_package
from session_memory.cli import COMMAND_MODULES
from tests.conftest import sources_toml, write_config

NEVER_AT_START = ("rich", "structlog")
"""Top-level packages no command loads before it prints a table, a bar or a log record."""
NOT_FOR_INGEST = ("session_memory.retention", "session_memory.usage", "session_memory.prices",
                  "session_memory.analyze", "session_memory.daemon", "session_memory.watch",
                  "session_memory.mcp", "session_memory.dashboard", "genai_prices", "watchdog",
                  "psutil", "mcp")
"""What an ingest has no use for: the sweep, usage and prices (the price table), analysis,
the daemon's and the other commands' modules. Each costs start-up time where it loads."""


def loaded_modules(code: str) -> list[str]:
    """sys.modules at the end of `code`, run in a new interpreter, the modules it printed."""
    probe = (f"import json, sys\n{code}\n"
             "print(json.dumps(sorted(sys.modules)))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    modules: list[str] = json.loads(run.stdout.splitlines()[-1])
    return modules


def command_modules(modules: list[str]) -> set[str]:
    return {m for m in modules if m.startswith("session_memory.cli.") and m.endswith("_cmd")}


def top_level(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_importing_the_command_line_loads_no_command() -> None:
    modules = loaded_modules("import session_memory.cli")
    assert command_modules(modules) == set()
    assert top_level(modules).isdisjoint(NEVER_AT_START)
    assert "session_memory.memory" not in modules


def test_ingest_loads_its_own_module_only(home: Path, tmp_path: Path) -> None:
    """A whole `ingest --json` run on an empty source, until the command returns."""
    (tmp_path / "empty").mkdir()
    write_config(home, f'[storage]\ndata_dir = "{tmp_path / "data"}"\n' + sources_toml(
        claude_code=tmp_path / "empty", codex=None, gemini_cli=None, aider=None,
        copilot_cli=None, opencode=None))
    modules = loaded_modules(
        "from session_memory.cli import cli\n"
        "cli(['ingest', '--json'], prog_name='session-memory', standalone_mode=False)")
    assert "session_memory.memory" in modules  # it ran: the store was opened
    assert command_modules(modules) == {"session_memory.cli.ingest_cmd"}
    assert top_level(modules).isdisjoint(NEVER_AT_START)
    assert [m for m in modules if m.startswith(NOT_FOR_INGEST)] == []


def test_help_still_lists_every_command() -> None:
    """--help loads every command's module to list them: the table names them all."""
    run = subprocess.run([sys.executable, "-m", "session_memory", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    listed = {line.split()[0] for line in run.stdout.split("Commands:")[1].splitlines()
              if line.strip()}
    assert listed == set(COMMAND_MODULES)


def test_the_table_names_every_command_each_module_registers() -> None:
    """A command added to a module (or a new module) without its line in COMMAND_MODULES
    would be unreachable: every module's `register`, run on a plain group, adds exactly the
    names the table gives that module."""
    registered: dict[str, str] = {}
    for info in pkgutil.iter_modules(cli_package.__path__):
        module = importlib.import_module(f"session_memory.cli.{info.name}")
        if not hasattr(module, "register"):
            continue
        group = click.Group()
        module.register(group)
        assert group.commands, info.name
        registered |= dict.fromkeys(group.commands, info.name)
    assert registered == COMMAND_MODULES
