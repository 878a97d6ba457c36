"""Config: defaults merged under the user's file, one clear error naming the key, exit 78."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from session_memory import config
from session_memory.errors import ConfigError
from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "session_memory", *args],
                          capture_output=True, text=True, timeout=60)


def test_defaults_follow_the_contract(home: Path) -> None:
    s = config.load()
    assert s.retention.raw_soft_cap == 4 * 1024**3
    assert s.retention.raw_hard_cap == 6 * 1024**3
    assert s.retention.raw_max_age_days == 45
    assert s.retention.distilled_cap == 1024**3
    assert s.retention.keep_free.percent == 5
    assert s.retention.sweep_interval == 3600
    assert s.idle_seconds == 1800 and s.rescan_interval == 300
    assert s.data_dir == home / ".local" / "share" / "session-memory"
    assert {n: (x.format, x.root) for n, x in s.sources.items()} == {
        "claude-code": ("claude-code", home / ".claude" / "projects"),
        "codex": ("codex", home / ".codex"),
        "gemini-cli": ("gemini-cli", home / ".gemini" / "tmp"),
        "aider": ("aider", home),
        "copilot-cli": ("copilot-cli", home / ".copilot" / "session-state"),
        "opencode": ("opencode", home / ".local" / "share" / "opencode" / "storage"),
    }


def test_the_documented_file_is_the_packaged_default(tmp_path: Path) -> None:
    """The wheel carries config/config.toml where default_config_text() reads it first
    (an editable install would read the source file itself and prove nothing)."""
    from hatchling.builders.wheel import WheelBuilder

    wheel = next(iter(WheelBuilder(str(REPO)).build(directory=str(tmp_path),
                                                     versions=["standard"])))
    with zipfile.ZipFile(wheel) as built:
        packaged = built.read("session_memory/default_config.toml").decode("utf-8")
    assert packaged == (REPO / "config" / "config.toml").read_text(encoding="utf-8")
    assert config.settings_from(tomllib.loads(packaged)) == config.load(defaults_only=True)


def test_default_document_builds_the_defaults_and_is_a_copy() -> None:
    doc = config.default_document()
    assert config.settings_from(doc) == config.load(defaults_only=True)
    doc["retention"]["raw_soft_cap"] = "1MiB"
    doc["sources"] = {}
    changed = config.settings_from(doc)
    assert changed.retention.raw_soft_cap == 2**20 and changed.sources == {}
    assert config.default_document()["retention"]["raw_soft_cap"] == "4GiB"


def test_user_file_merges_over_defaults(home: Path) -> None:
    write_config(home, """
[storage]
data_dir = "~/elsewhere"
[retention]
raw_soft_cap = "500MB"
raw_hard_cap = 1000000000
sweep_interval = "90s"
[sources.aider]
enabled = false
[sources.mytool]
format = "jsonl"
root = "~/logs"
""")
    s = config.load()
    assert s.data_dir == home / "elsewhere"
    assert s.retention.raw_soft_cap == 500_000_000
    assert s.retention.raw_hard_cap == 1_000_000_000
    assert s.retention.raw_max_age_days == 45  # untouched default
    assert s.retention.sweep_interval == 90
    assert s.sources["aider"].enabled is False
    assert s.sources["aider"].root == home  # the rest of the built-in table is kept
    assert s.sources["mytool"].root == home / "logs"
    assert [x.name for x in s.enabled_sources] == ["claude-code", "codex", "gemini-cli",
                                                   "copilot-cli", "opencode", "mytool"]


@pytest.mark.parametrize(("value", "expected"), [
    ("4GiB", 4 * 1024**3), ("500MB", 500 * 1000**2), ("1.5KiB", 1536), (42, 42), ("7", 7)])
def test_sizes(value: object, expected: int) -> None:
    assert config.parse_size(value, "k") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("90s", 90), ("30m", 1800), ("1h", 3600), ("45d", 45 * 86400), (12, 12), (0.5, 0.5)])
def test_durations(value: object, expected: float) -> None:
    assert config.parse_duration(value, "k") == expected


@pytest.mark.parametrize(("toml", "key"), [
    ("[retention]\nraw_soft_cap = \"lots\"", "retention.raw_soft_cap"),
    ("[retention]\nsweep_interval = \"soon\"", "retention.sweep_interval"),
    ("[retention]\nkeep_free = \"150%\"", "retention.keep_free"),
    ("[retention]\nraw_max_age_days = \"x\"", "retention.raw_max_age_days"),
    ("[retention]\nraw_hard_cap = \"1MB\"", "retention.raw_hard_cap"),
    ("[retention]\nsoft_cap = 1", "retention.soft_cap"),
    ("[ingest]\nidle_seconds = true", "ingest.idle_seconds"),
    ("[retention]\nsweep_interval = 0", "retention.sweep_interval"),
    ("[retention]\nsweep_interval = \"0s\"", "retention.sweep_interval"),
    ("[retention]\nsweep_interval = -5", "retention.sweep_interval"),
    ("[ingest]\nrescan_interval = 0", "ingest.rescan_interval"),
    ("[ingest]\nrescan_interval = \"-1m\"", "ingest.rescan_interval"),
    ("[retention]\nreport_max_age_days = -1", "retention.report_max_age_days"),
    ("[retention]\nreport_max_age_days = \"soon\"", "retention.report_max_age_days"),
    ("[nonsense]\na = 1", "nonsense"),
    ("[sources.x]\nformat = \"cursor\"\nroot = \"/x\"", "sources.x.format"),
    ("[sources.x]\nformat = \"jsonl\"", "sources.x.root"),
    ("[sources.claude-code]\nenabled = \"yes\"", "sources.claude-code.enabled"),
    ("[sources.claude-code]\npath = \"/x\"", "sources.claude-code.path"),
    # Relative to each process's working directory: the daemon's and a shell's differ.
    ("[storage]\ndata_dir = \"sm-data\"", "storage.data_dir"),
    ("[sources.mytool]\nformat = \"jsonl\"\nroot = \"logs\"", "sources.mytool.root"),
    ("[sources.mytool]\nformat = \"jsonl\"\nroot = \"$SM_UNSET_VAR/logs\"",
     "sources.mytool.root"),
])
def test_bad_values_name_their_key(home: Path, toml: str, key: str) -> None:
    write_config(home, toml)
    with pytest.raises(ConfigError, match=f"^{key}"):
        config.load()


def test_cli_exits_78_on_bad_config(home: Path) -> None:
    write_config(home, "[retention]\nraw_soft_cap = \"lots\"\n")
    for args in (["config", "check"], ["status"], ["ingest"]):
        run = cli(*args)
        assert run.returncode == 78, args
        assert "retention.raw_soft_cap" in run.stderr
        assert run.stdout == ""


def test_cli_exits_78_on_invalid_toml_and_missing_explicit_file(home: Path) -> None:
    write_config(home, "[retention\n")
    assert cli("config", "check").returncode == 78
    assert cli("--config", str(home / "nope.toml"), "config", "check").returncode == 78


def test_config_show(home: Path) -> None:
    write_config(home, "[retention]\nraw_soft_cap = \"1GiB\"\nraw_hard_cap = \"2GiB\"\n")
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["retention"]["raw_soft_cap"] == 1024**3
    assert shown["retention"]["keep_free"] == "5%"
    defaults = json.loads(cli("config", "show", "--defaults", "--json").stdout)
    assert defaults["retention"]["raw_soft_cap"] == 4 * 1024**3
    assert cli("config", "show", "--defaults").stdout == config.default_config_text()
    assert "raw_soft_cap = 1073741824" in cli("config", "show").stdout


def test_config_show_reads_back_as_the_same_config(home: Path) -> None:
    """What `config show` prints is a config file giving the same settings, written as one
    would write it (whole days and seconds without a decimal point)."""
    write_config(home, "[retention]\nraw_max_age_days = 30\n[ingest]\nidle_seconds = \"45m\"\n")
    text = cli("config", "show").stdout
    assert "raw_max_age_days = 30\n" in text and "idle_seconds = 2700\n" in text
    before = json.loads(cli("config", "show", "--json").stdout)
    write_config(home, text)
    assert json.loads(cli("config", "show", "--json").stdout) == before


def test_a_zero_interval_is_a_bad_config_for_the_cli(home: Path) -> None:
    write_config(home, "[retention]\nsweep_interval = 0\n")
    run = cli("config", "check")
    assert run.returncode == 78
    assert "retention.sweep_interval" in run.stderr


def test_reports_are_kept_365_days_by_default() -> None:
    assert config.load(defaults_only=True).retention.report_max_age_days == 365
    assert "report_max_age_days = 365" in config.default_config_text()
