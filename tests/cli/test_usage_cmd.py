"""usage's table: what the store holds printed as written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from session_memory import usage as usage_mod
from session_memory.cli import common, usage_cmd


@pytest.mark.parametrize("key", ["/home/dev/a[/]b", "/home/dev/[wip]", "/srv/[red]x"])
def test_a_key_with_brackets_is_printed_as_written(key: str, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's path (or a session id) may hold brackets: they are no rich markup, which
    would fail on '[/]' and drop '[wip]'."""
    monkeypatch.setenv("COLUMNS", "200")  # each cell on one line
    row = {"key": key, "sessions": 1, **dict.fromkeys(usage_mod.FIELDS, 1), "cost_usd": 0.5}
    usage_cmd._Table("project", [row], breakdown=False).print()
    assert key in capsys.readouterr().out


@pytest.mark.parametrize("width", [80, 100, 200])
def test_numbers_are_never_cut_short_on_a_narrow_line(width: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The table fits the line by leaving columns out (as ccusage's compact tables do), the
    key, input, output and cost never; what it shows is whole."""
    console = Console(record=True, width=width, force_terminal=True)
    monkeypatch.setattr(common, "console", lambda err=False: console)
    rows = [{"key": f"2026-03-{day:02}", "sessions": 1234, "input": 9_876_543 * day,
             "output": 1_234_567 * day, "cache_creation": 98_765_432 * day,
             "cache_read": 987_654_321 * day, "reasoning": 12_345 * day,
             "cost_usd": 1234.56 * day} for day in (1, 2, 3)]
    usage_cmd._Table("day", rows, breakdown=False).print()
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "…" not in text
    for r in rows:
        for shown in (r["key"], f"{r['input']:,}", f"{r['output']:,}", f"${r['cost_usd']:,.2f}"):
            assert shown in text
    assert ("█" in text) == (width >= 200)  # the bars go first
    assert (f"{rows[0]['cache_creation']:,}" in text) == (width >= 100)


def test_blocks_active_without_a_running_block_says_so(sources: dict[str, Path]) -> None:
    """Blocks recorded, none running now: `--active` says that, not that none were recorded."""
    session = sources["claude-code"] / "-work-p" / "5f0c7a8e-1b2c-4d3e-9f00-0123456789ab.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text(json.dumps({
        "type": "assistant", "uuid": "a1", "timestamp": "2026-01-05T10:20:00Z",
        "sessionId": "5f0c7a8e-1b2c-4d3e-9f00-0123456789ab",
        "message": {"id": "m1", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [], "usage": {"input_tokens": 3, "output_tokens": 2}}}) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "session_memory", *args],
                              capture_output=True, text=True, timeout=60, check=True)

    run("ingest")
    run("analyze", "--all")
    assert len(json.loads(run("usage", "blocks", "--json").stdout)) == 1
    active = run("usage", "blocks", "--active")
    assert active.stdout == ""
    assert "no block is running now; the last ended 2026-01-05" in active.stderr
    assert "no billing blocks recorded" not in active.stderr


@pytest.mark.parametrize("width", [80, 100])
def test_a_table_with_a_flexible_column_fits_the_line(width: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The console as the commands make it (soft-wrapped, for messages): a header that
    wraps ("cost (USD)") was widened to one line past what the flexible column was left,
    and `usage --by project` ran 82 columns wide on an 80-column terminal."""
    console = Console(record=True, width=width, force_terminal=True, soft_wrap=True)
    monkeypatch.setattr(common, "console", lambda err=False: console)
    rows = [{"key": f"/home/someone/projects/a-long-project-name-{i}", "sessions": 12,
             "input": 4_808_796, "output": 374_934, "cache_creation": 0,
             "cache_read": 111_011_200, "reasoning": 0, "cost_usd": 23.64} for i in range(3)]
    usage_cmd._Table("project", rows, breakdown=False).print()
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) == width, "\n".join(lines)
    text = "\n".join(lines)
    for shown in ("4,808,796", "374,934", "$23.64", "$70.92"):
        assert shown in text


def test_a_breakdown_piped_has_each_models_part(sources: dict[str, Path]) -> None:
    """`usage --breakdown | …`: a model column after the key, each model's part on a line
    of its own after its row (its sessions left empty), as the table shows them. Piped, the
    flag was taken and its parts left out."""
    session = sources["claude-code"] / "-work-p" / "5f0c7a8e-1b2c-4d3e-9f00-0123456789ab.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text("".join(json.dumps({
        "type": "assistant", "uuid": f"a{n}", "timestamp": f"2026-01-05T10:2{n}:00Z",
        "sessionId": "5f0c7a8e-1b2c-4d3e-9f00-0123456789ab", "requestId": f"r{n}",
        "message": {"id": f"m{n}", "role": "assistant", "model": model, "content": [],
                    "usage": {"input_tokens": tokens, "output_tokens": 2}}}) + "\n"
        for n, (model, tokens) in enumerate([("claude-sonnet-4-5", 300), ("claude-opus-4-1", 40)])))

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "session_memory", *args],
                              capture_output=True, text=True, timeout=60, check=True).stdout

    run("ingest")
    run("analyze", "--all")
    plain = [line.split("\t") for line in run("usage").splitlines()]
    assert [(f[0], f[2]) for f in plain] == [("2026-01-05", "340")]
    lines = [line.split("\t") for line in run("usage", "--breakdown").splitlines()]
    assert [(f[0], f[1], f[2], f[3]) for f in lines[:1]] == [("2026-01-05", "", "1", "340")]
    assert sorted((f[0], f[1], f[2], f[3]) for f in lines[1:]) == [
        ("2026-01-05", "claude-opus-4-1", "", "40"),
        ("2026-01-05", "claude-sonnet-4-5", "", "300")]
    assert {len(f) for f in lines} == {len(plain[0]) + 1}
