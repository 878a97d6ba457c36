"""`hook session-end`, `service install/uninstall/status`, and a busy store's exit 75."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from session_memory import config, service
from session_memory.cli import cli
from session_memory.memory import Memory
from session_memory.store import db

SID = "5f0c7a8e-1b2c-4d3e-9f00-0123456789ab"


def _session(root: Path) -> Path:
    path = root / "-work-p" / f"{SID}.jsonl"
    path.parent.mkdir(parents=True)
    lines = [
        {"type": "user", "uuid": "u1", "sessionId": SID, "timestamp": "2026-05-01T10:00:00Z",
         "cwd": "/work/p", "message": {"role": "user", "content": "rename the module"}},
        {"type": "assistant", "uuid": "a1", "sessionId": SID, "timestamp": "2026-05-01T10:00:05Z",
         "cwd": "/work/p", "message": {"id": "m1", "role": "assistant", "model": "claude-x",
                                       "content": [{"type": "text", "text": "done"}],
                                       "usage": {"input_tokens": 3, "output_tokens": 2}}},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    # A subagent transcript: stored with its session.
    sub = path.with_suffix("") / "subagents" / "agent-x.jsonl"
    sub.parent.mkdir(parents=True)
    sub.write_text(json.dumps(lines[0] | {"isSidechain": True}) + "\n")
    return path


def test_hook_session_end_stores_and_ends_the_session(sources: dict[str, Path]) -> None:
    transcript = _session(sources["claude-code"])
    payload = {"session_id": SID, "transcript_path": str(transcript), "cwd": "/work/p",
               "hook_event_name": "SessionEnd", "reason": "exit"}
    # Through the real entry point, stdin a pipe, as Claude Code runs it.
    done = subprocess.run([sys.executable, "-m", "session_memory", "hook", "session-end",
                           "--json"], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["session_ids"] == [f"claude-code:{SID}"]
    with Memory(config.load()) as memory:
        row = memory.show(f"claude-code:{SID}")
        # Idle time has not passed (idle_seconds is 30 min): the hook is what ended it.
        assert row["state"] == "analyzed" and row["digest"] is not None
        assert sorted(row["files"]) == [f"-work-p/{SID}.jsonl",
                                        f"-work-p/{SID}/subagents/agent-x.jsonl"]


@pytest.mark.parametrize("stdin", ["", "not json", "[1, 2]", '{"transcript_path": "/nope"}',
                                   json.dumps({"session_id": "x", "transcript_path": "/nope"})])
def test_hook_never_fails_the_agent(sources: dict[str, Path], stdin: str) -> None:
    result = CliRunner().invoke(cli, ["hook", "session-end"], input=stdin)
    assert result.exit_code == 0, result.output
    with Memory(config.load()) as memory:
        assert memory.sessions() == []  # nothing stored, nothing marked


def test_hook_says_once_that_a_transcript_is_under_no_root(sources: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """A transcript path with no suffix names the same file as its session folder's path
    (the path without its suffix): it is ingested, or refused, once. Each error was logged
    twice."""
    elsewhere = tmp_path / "elsewhere" / "transcript"
    elsewhere.parent.mkdir()
    elsewhere.write_text("{}\n")
    done = subprocess.run([sys.executable, "-m", "session_memory", "hook", "session-end"],
                          input=json.dumps({"session_id": SID,
                                            "transcript_path": str(elsewhere)}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("not under any enabled source root") == 1, done.stderr


def test_hook_exits_0_on_a_bad_config(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = home / "bad.toml"
    bad.write_text("[ingest]\nidle_seconds = 'soon'\n")
    result = CliRunner().invoke(cli, ["--config", str(bad), "hook", "session-end"],
                                input='{"session_id": "x"}')
    assert result.exit_code == 0
    assert "ingest.idle_seconds" in caplog.text  # it says why it did nothing


def test_service_install_status_uninstall(sources: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["service", "install", "--no-start", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    unit = Path(info["unit_path"])
    assert unit == service.unit_path() and unit.is_file()
    assert str(unit).startswith(str(Path.home()))  # XDG_CONFIG_HOME, never the real home
    assert "systemctl --user enable --now session-memory" in info["commands"]
    assert "loginctl enable-linger" in info["commands"]
    data_dir = config.load().data_dir
    assert data_dir.is_dir()
    assert f"ReadWritePaths={data_dir}" in unit.read_text()

    status = json.loads(runner.invoke(cli, ["service", "status", "--json"]).output)
    assert status["installed"] is True
    assert status["daemon"] == {"running": False, "pid": None}

    text = runner.invoke(cli, ["service", "install", "--no-start"]).output
    assert "systemctl --user enable --now session-memory" in text

    result = runner.invoke(cli, ["service", "uninstall", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["removed"] is True
    assert not unit.exists()


def test_service_install_no_start_does_not_blame_systemd(sources: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-start asks no user manager: it says the unit was not started, not that no
    manager answered (one does here)."""
    monkeypatch.setattr(service, "user_manager_answers", lambda: True)
    result = CliRunner().invoke(cli, ["service", "install", "--no-start"])
    assert result.exit_code == 0, result.output
    assert "no systemd user manager answered" not in result.output
    assert "not started (--no-start); to start it, run:" in result.output
    assert "systemctl --user enable --now session-memory" in result.output


def test_render_unit_quotes_odd_paths() -> None:
    text = service.render_unit(["/opt/my tools/session-memory"], Path("/data/100%/sm"))
    assert 'ExecStart="/opt/my tools/session-memory" daemon' in text
    assert "ReadWritePaths=/data/100%%/sm" in text


def test_the_unit_keeps_the_folders_the_installing_shell_named(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user manager starts the daemon without the shell's environment: a tool's root
    variable and our XDG folders set where the unit was installed are written into it, so
    the daemon reads the roots, config and store the commands do."""
    codex_home = tmp_path / "my codex"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    result = CliRunner().invoke(cli, ["service", "install", "--no-start"])
    assert result.exit_code == 0, result.output
    lines = service.unit_path().read_text().splitlines()
    pinned = dict(line[len("Environment="):].strip('"').split("=", 1) for line in lines
                  if line.startswith("Environment="))
    assert pinned["CODEX_HOME"] == str(codex_home)
    assert "CLAUDE_CONFIG_DIR" not in pinned

    # The daemon's view: only what the unit sets, beside a home of the manager's.
    manager_env = {"HOME": str(home), "PATH": "/usr/bin:/bin", **pinned,
                   **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    shown = subprocess.run([sys.executable, "-m", "session_memory", "config", "show", "--json"],
                           capture_output=True, text=True, env=manager_env, timeout=60,
                           cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    effective = json.loads(shown.stdout)
    assert effective["sources"]["codex"]["root"] == str(codex_home)
    assert effective["storage"]["data_dir"] == str(config.load().data_dir)


def test_a_writer_exits_75_while_the_store_stays_busy(sources: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    with Memory(config.load()) as memory:
        memory.tier1  # noqa: B018 - create the store
    holder = apsw.Connection(str(config.load().data_dir / "tier1.db"))
    holder.execute("BEGIN IMMEDIATE")
    try:
        (sources["claude-code"] / "-p").mkdir()
        (sources["claude-code"] / "-p" / "s.jsonl").write_text('{"sessionId": "s"}\n')
        result = CliRunner().invoke(cli, ["ingest"])
        assert result.exit_code == 75, result.output
        assert "busy" in result.output
    finally:
        holder.execute("ROLLBACK")
        holder.close()
