"""usage's table: what the store holds printed as written."""

from __future__ import annotations

import pytest

from session_memory import usage as usage_mod
from session_memory.cli import usage_cmd


@pytest.mark.parametrize("key", ["/home/dev/a[/]b", "/home/dev/[wip]", "/srv/[red]x"])
def test_a_key_with_brackets_is_printed_as_written(key: str, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's path (or a session id) may hold brackets: they are no rich markup, which
    would fail on '[/]' and drop '[wip]'."""
    monkeypatch.setenv("COLUMNS", "200")  # each cell on one line
    row = {"key": key, "sessions": 1, **dict.fromkeys(usage_mod.FIELDS, 1), "cost_usd": 0.5}
    usage_cmd._print_table("project", [row], breakdown=False)
    assert key in capsys.readouterr().out
