"""The format registry: one list of formats, each module declaring the whole contract, and
no tool named anywhere else in the program."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from session_memory import config, formats
from session_memory.errors import ConfigError
from session_memory.formats.base import HookTarget, WatchPolicy
from tests.conftest import write_config

PACKAGE = Path(formats.__file__).resolve().parent.parent
CONTRACT = ("NAME", "WATCH", "RECORD_TIMES", "PARSER_VERSION", "default_root", "identify",
            "prune", "hook_target", "parse")


def test_every_module_in_formats_is_a_format_declaring_the_whole_contract() -> None:
    modules = sorted(p.stem for p in (PACKAGE / "formats").glob("*.py")
                     if p.stem not in formats.CONTRACT_MODULES and not p.stem.startswith("_"))
    assert [m.replace("_", "-") for m in modules] == list(formats.names())
    for name in formats.names():
        module = formats.get(name)
        missing = [attr for attr in CONTRACT if not hasattr(module, attr)]
        assert not missing, f"{name} lacks {missing}"
        assert name == module.NAME
        assert isinstance(module.WATCH, WatchPolicy)
        assert isinstance(module.RECORD_TIMES, bool)
        assert isinstance(module.PARSER_VERSION, int) and 1 <= module.PARSER_VERSION < 1000
    with pytest.raises(KeyError):
        formats.get("base")


def _tool_words() -> list[str]:
    """Each tool's name as it may be spelled: `gemini-cli`, `gemini_cli`, `Gemini`…"""
    words = set()
    for name in formats.names():
        if name == "jsonl":
            continue  # the generic format names no tool
        words |= {name, name.replace("-", "_"), name.replace("-", " "), name.split("-")[0]}
    return sorted(words)


def test_no_package_but_formats_names_a_tool() -> None:
    pattern = re.compile("|".join(re.escape(w) for w in _tool_words()), re.IGNORECASE)
    found = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if not path.is_file() or rel.parts[0] == "formats" or path.suffix in (".pyc", ".so"):
            continue
        for n, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
            if m := pattern.search(line):
                found.append(f"{rel}:{n}: {m.group(0)!r} in {line.strip()}")
    assert _tool_words(), "no tool names to look for"
    assert not found, "\n".join(found)


def test_the_config_knows_exactly_the_registered_formats(home: Path) -> None:
    write_config(home, '[sources.x]\nformat = "no-such-tool"\nroot = "~"\n')
    with pytest.raises(ConfigError) as err:
        config.load()
    assert ", ".join(formats.names()) in str(err.value)
    built_in = {s.format for s in config.load(defaults_only=True).sources.values()}
    assert built_in == set(formats.names()) - {"jsonl"}  # every tool is on by default


def test_default_roots_follow_the_tools_environment_variables(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = config.load()
    assert s.sources["claude-code"].root == home / ".claude" / "projects"
    assert s.sources["codex"].root == home / ".codex"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home / "cc"))
    monkeypatch.setenv("CODEX_HOME", str(home / "cx"))
    s = config.load()
    assert s.sources["claude-code"].root == home / "cc" / "projects"
    assert s.sources["codex"].root == home / "cx"
    write_config(home, '[sources.codex]\nroot = "~/mine"\n')
    assert config.load().sources["codex"].root == home / "mine"  # the config still wins


def test_claude_codes_root_is_the_xdg_one_where_only_that_exists(home: Path) -> None:
    """Some versions of Claude Code write to ~/.config/claude/projects (FORMATS.md)."""
    def root() -> str:
        run = subprocess.run([sys.executable, "-m", "session_memory", "config", "show",
                              "--json"], capture_output=True, text=True, timeout=60, check=True)
        return str(json.loads(run.stdout)["sources"]["claude-code"]["root"])

    xdg = Path(os.environ["XDG_CONFIG_HOME"]) / "claude" / "projects"
    xdg.mkdir(parents=True)
    assert root() == str(xdg)
    (home / ".claude" / "projects").mkdir(parents=True)  # both: the usual one, as before
    assert root() == str(home / ".claude" / "projects")


def test_check_names_claude_codes_other_projects_folder_where_no_source_reads_it(
        home: Path) -> None:
    """Both there (an upgrade moved where Claude Code writes): the source reads one root,
    and check says the other is not read, until a source reads it."""
    def warnings() -> list[str]:
        run = subprocess.run([sys.executable, "-m", "session_memory", "check", "--json"],
                             capture_output=True, text=True, timeout=60, check=True)
        return [w for w in json.loads(run.stdout)["warnings"] if "projects folder" in w]

    xdg = Path(os.environ["XDG_CONFIG_HOME"]) / "claude" / "projects"
    xdg.mkdir(parents=True)
    write_config(home, "")
    assert warnings() == []  # the only one: the source's root
    (home / ".claude" / "projects").mkdir(parents=True)
    assert warnings() == [f"{xdg}: Claude Code's projects folder too, not read by this "
                          'source: add a source for it (format = "claude-code")']
    write_config(home, f'[sources.claude-xdg]\nformat = "claude-code"\nroot = "{xdg}"\n')
    assert warnings() == []


def test_a_jsonl_source_must_name_its_root(home: Path) -> None:
    write_config(home, '[sources.mine]\nformat = "jsonl"\n')
    with pytest.raises(ConfigError, match=r"sources\.mine\.root"):
        config.load()


def test_only_formats_with_a_hook_claim_a_hook_payload(tmp_path: Path) -> None:
    transcript = tmp_path / "abc.jsonl"
    transcript.write_text("{}\n")
    (tmp_path / "abc").mkdir()
    payload = {"session_id": "abc", "transcript_path": str(transcript)}
    claimed = {n: formats.get(n).hook_target(payload) for n in formats.names()}
    assert claimed.pop("claude-code") == HookTarget("abc", [transcript, tmp_path / "abc"])
    assert set(claimed.values()) == {None}


def test_a_known_folders_policy_reports_only_its_files() -> None:
    policy = formats.get("aider").WATCH
    assert policy.known_folders_only
    assert policy.wants_file(".aider.chat.history.md") and not policy.wants_file("main.py")
    assert formats.get("claude-code").WATCH.wants_file("x.jsonl")


def test_formats_do_not_import_the_analyzer() -> None:
    for name in formats.names():
        source = Path(importlib.import_module(
            f"session_memory.formats.{name.replace('-', '_')}").__file__ or "").read_text()
        assert "session_memory.analyze" not in source, name
    assert formats.get("codex").identify(PurePosixPath("notes.txt"), lambda: b"") is None
