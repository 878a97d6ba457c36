"""The command tree against the contract (DESIGN.md), as sqlite-utils' test_docs does:
every command exists, has help, is in the README, and takes --json where it prints data."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest

from session_memory.cli import cli
from tests.conftest import write_config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()

CONTRACT = ["daemon", "ingest", "analyze", "sweep", "status", "sessions", "show", "export",
            "restore", "reports", "reports show", "search", "usage", "hook session-end", "pin",
            "unpin", "forget", "check", "config show", "config check", "service install",
            "service uninstall", "service status", "dashboard", "mcp"]
# Commands that print data (the contract: "every command that prints data takes --json").
DATA = ["ingest", "analyze", "sweep", "status", "sessions", "show", "export", "restore",
        "reports", "reports show", "search", "usage", "pin", "unpin", "forget", "check",
        "config show", "config check", "service status", "dashboard"]


def subcommand(group: click.Group, name: str) -> click.Command | None:
    """Looked up as click does when it runs one: the top-level group loads a command's
    module only then, so its `commands` holds only what was asked for."""
    return group.get_command(click.Context(group), name)


def command(path: str) -> click.Command:
    cmd: click.Command = cli
    for name in path.split():
        assert isinstance(cmd, click.Group), path
        sub = subcommand(cmd, name)
        assert sub is not None, f"missing command: {path}"
        cmd = sub
    return cmd


@pytest.mark.parametrize("path", CONTRACT)
def test_contract_command_exists_with_help(path: str) -> None:
    cmd = command(path)
    assert (cmd.help or "").strip(), f"{path} has no help"
    assert f"session-memory {path}" in README or f"`{path}" in README, f"{path} not in README"


@pytest.mark.parametrize("path", DATA)
def test_data_commands_take_json(path: str) -> None:
    assert any("--json" in p.opts for p in command(path).params), f"{path} lacks --json"


def test_every_command_has_help() -> None:
    def walk(cmd: click.Command, prefix: str) -> list[str]:
        missing = [] if (cmd.help or "").strip() else [prefix]
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                sub = subcommand(cmd, name)
                assert sub is not None, f"listed but missing: {prefix} {name}"
                missing += walk(sub, f"{prefix} {name}".strip())
        return missing

    assert walk(cli, "") == []


# -- a failing --json command still prints one JSON document ------------------------------

def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "session_memory", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "code", "words"), [
    (["show", "no-such-session"], 1, "no session"),
    (["export", "no-such-session", "-o", "out"], 1, "no session"),
    (["reports", "show", "no-such-report"], 1, "no report"),
    (["forget", "no-such-session"], 1, "no session"),
    (["sessions", "--state", "bogus"], 2, "bogus"),
    (["sessions", "--limit", "0"], 2, "--limit"),
    (["ingest", "/no/such/folder"], 2, "/no/such/folder"),
    (["ingest", "/"], 2, "/ is under no enabled source root"),
    (["search", ""], 2, "QUERY is empty"),
    (["search", " ", "  "], 2, "QUERY is empty"),
])
def test_a_failing_json_command_prints_its_error_as_json(
        home: Path, args: list[str], code: int, words: str) -> None:
    run = _run(*args, "--json")
    assert run.returncode == code, run.stderr
    assert json.loads(run.stdout) == {"error": json.loads(run.stdout)["error"],
                                      "exit_code": code}
    assert words in json.loads(run.stdout)["error"]
    assert words in run.stderr


def test_a_bad_config_under_json_prints_its_error_as_json(home: Path) -> None:
    write_config(home, "[retention]\nraw_soft_cap = \"lots\"\n")
    for args in (["config", "check"], ["status"], ["sessions"]):
        run = _run(*args, "--json")
        assert run.returncode == 78, args
        error = json.loads(run.stdout)
        assert error["exit_code"] == 78 and "retention.raw_soft_cap" in error["error"]
        assert "retention.raw_soft_cap" in run.stderr


def test_a_command_whose_own_document_says_it_failed_has_the_error_in_it(
        sources: dict[str, Path]) -> None:
    """check (unhealthy) and analyze (a session it could not read) exit 1 after printing
    their own document: with --json it holds the error and the exit code too, as every
    failing --json command's does, and stdout is still that one document."""
    (sources["mytool"] / "a.jsonl").write_bytes(b'{"x": 1}\n' * 100)  # written now: chunks
    assert _run("ingest").returncode == 0
    data_dir = Path(os.environ["XDG_DATA_HOME"]) / "session-memory"
    with sqlite3.connect(data_dir / "tier1.db") as db:  # damage, as a failing disk leaves it
        db.execute("DROP TRIGGER chunk_added")
        db.execute("UPDATE chunks SET crc = crc + 1")
    for args, keys in ((["check"], {"ok", "problems", "warnings"}),
                       (["analyze", "--all"], {"analyzed", "skipped", "failed"})):
        run = _run(*args, "--json")
        assert run.returncode == 1, run.stdout + run.stderr
        document = json.loads(run.stdout)
        assert keys <= document.keys() and document["exit_code"] == 1, document
        assert document["error"] and document["error"] in run.stderr.replace("\n", " ")
    assert json.loads(_run("check", "--json").stdout)["ok"] is False


def test_a_command_that_only_reports_what_it_did_says_so_on_stderr(
        sources: dict[str, Path], tmp_path: Path) -> None:
    """Data on stdout, messages on stderr: pin, unpin, forget, dashboard and the service
    commands print nothing on stdout without --json (they wrote "forgot …", "wrote …",
    "removed …" there, where pin said "pinned" on stderr)."""
    (sources["mytool"] / "a.jsonl").write_bytes(b'{"x": 1}\n')
    assert _run("ingest").returncode == 0
    for args, said in ((["pin", "mytool:a.jsonl"], "pinned"),
                       (["unpin", "mytool:a.jsonl"], "unpinned"),
                       (["forget", "mytool:a.jsonl"], "forgot mytool:a.jsonl"),
                       (["dashboard", "-o", str(tmp_path / "d.html")], "wrote"),
                       (["service", "install", "--no-start"], "wrote"),
                       (["service", "uninstall"], "removed")):
        run = _run(*args)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "" and said in run.stderr, (args, run.stdout, run.stderr)


@pytest.mark.parametrize("where", ["before", "after", "after="])
def test_config_is_taken_before_or_after_the_command(home: Path, tmp_path: Path,
                                                     where: str) -> None:
    """DESIGN.md: the config is at $XDG_CONFIG_HOME/session-memory/config.toml "or --config
    PATH"; a command line that names it after the command means the same."""
    config_file = tmp_path / "elsewhere.toml"
    config_file.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    args = {"before": ["--config", str(config_file), "config", "show", "--json"],
            "after": ["config", "show", "--config", str(config_file), "--json"],
            "after=": ["config", "show", "--json", f"--config={config_file}"]}[where]
    run = _run(*args)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["storage"]["data_dir"] == str(tmp_path / "data")
    config_file.write_text("[retention]\nsweep_interval = 0\n")
    bad = _run("status", "--json", "--config", str(config_file))
    assert bad.returncode == 78 and json.loads(bad.stdout)["exit_code"] == 78


def test_json_given_to_the_group_is_the_subcommands_too(home: Path) -> None:
    """`reports --json show RID` printed the report as text (and `reports --json show nope`
    its error as text only), where `usage --json blocks` printed JSON."""
    assert _run("sweep", "--dry-run").returncode == 0
    [report] = json.loads(_run("reports", "--json").stdout)
    shown = _run("reports", "--json", "show", report["id"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == report["id"]
    missing = _run("reports", "--json", "show", "no-such-report")
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == {"error": "no report 'no-such-report'", "exit_code": 1}
    assert json.loads(_run("usage", "--json", "blocks").stdout) == []


def test_ingest_says_its_counts_with_thousands_separated(sources: dict[str, Path]) -> None:
    """Every count in ingest's line is written alike: "1,001 seen" beside "1,001 changed
    files" (it said "1001 seen" and "1001 sealed" there)."""
    for n in range(1_001):
        (sources["mytool"] / f"s{n:04}.jsonl").write_bytes(b'{"x": 1}\n')
    run = _run("ingest")
    assert run.returncode == 0, run.stderr
    assert "from 1,001 changed files (1,001 seen, 0 new versions, 0 skipped, 0 errors); " \
        "1,001 sessions changed, " in run.stderr, run.stderr
    assert "1001" not in run.stderr
