"""`dashboard` through a real subprocess: where it writes, --json, --open, bad paths, and
that it reads while another process holds the store's write lock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw

from tests.dashboard.store import SweptStore, build


def cli(store: SweptStore, *args: str, code: int = 0, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "session_memory", "--config",
                          str(store.config_path), "dashboard", *args],
                         capture_output=True, text=True, timeout=120, cwd=cwd,
                         env={**os.environ, **(env or {}),
                              "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert run.returncode == code, run.stderr
    return run


def test_writes_the_default_file_in_the_current_folder(home: Path) -> None:
    store = build(home)
    work = home / "work"
    work.mkdir()
    run = cli(store, cwd=work)
    page = work / "session-memory-dashboard.html"
    assert page.is_file() and "wrote" in run.stderr and run.stdout == ""
    html = page.read_text()
    for report in store.reports:
        assert report["id"] in html
    assert stat.S_IMODE(page.stat().st_mode) == 0o600


def test_json_says_what_was_written(home: Path) -> None:
    store = build(home)
    out = home / "pages" / "dash.html"
    out.parent.mkdir()
    written: dict[str, Any] = json.loads(cli(store, "-o", str(out), "--json").stdout)
    assert written["path"] == str(out.resolve())
    assert written["bytes"] == out.stat().st_size
    assert written["sweeps"] == sum(not r["dry_run"] for r in store.reports)
    assert written["data_loss_sessions"] == len(store.data_loss) > 0
    assert [p.name for p in out.parent.iterdir()] == ["dash.html"]  # no temp file left


def test_open_hands_the_page_to_the_browser(home: Path) -> None:
    store = build(home)
    opened = home / "opened.txt"
    browser = home / "fake-browser"
    browser.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > {opened}\n")
    browser.chmod(0o755)
    out = home / "dash.html"
    cli(store, "-o", str(out), "--open", env={"BROWSER": str(browser)})
    assert opened.read_text() == out.resolve().as_uri()


def test_a_folder_that_does_not_exist_is_a_clear_error(home: Path) -> None:
    store = build(home)
    out = home / "missing" / "dash.html"
    run = cli(store, "-o", str(out), "--json", code=1)
    error = json.loads(run.stdout) if run.stdout.strip() else {}
    assert "missing" in run.stderr and "Traceback" not in run.stderr
    assert error.get("exit_code", 1) == 1
    assert not out.parent.exists()


def test_reads_while_another_process_holds_the_write_locks(home: Path) -> None:
    """As the daemon may, mid-ingest and mid-digest: the page is written all the same (a
    wait would end in exit 75 once the busy timeout ran out)."""
    store = build(home)
    writers = [apsw.Connection(str(store.settings.data_dir / name))
               for name in ("tier1.db", "tier2.db")]
    for writer in writers:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT OR REPLACE INTO meta VALUES ('dashboard-test', 1)")
    try:
        out = home / "dash.html"
        written = json.loads(cli(store, "-o", str(out), "--json").stdout)
        assert written["sessions"] == 22 and out.is_file()
    finally:
        for writer in writers:
            writer.execute("ROLLBACK")
            writer.close()


def test_no_store_yet_is_a_clear_error_and_creates_nothing(home: Path) -> None:
    store = build(home)
    data_dir = store.settings.data_dir
    for name in list(data_dir.iterdir()):
        name.unlink()
    out = home / "dash.html"
    run = cli(store, "-o", str(out), code=1)
    assert "no store yet" in run.stderr
    assert not out.exists() and list(data_dir.iterdir()) == []


def test_open_without_a_browser_says_where_the_page_is(home: Path) -> None:
    store = build(home)
    out = home / "dash.html"
    run = cli(store, "-o", str(out), "--open", env={"BROWSER": "false"})
    assert "no web browser found" in run.stderr and str(out.resolve()) in run.stderr
    assert out.is_file()
