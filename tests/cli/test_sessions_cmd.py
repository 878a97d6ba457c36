"""The CLI through a real subprocess: data on stdout, messages on stderr, contract JSON."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.memory import Memory

SID = "5c1d7a4e-0000-4000-8000-00000000abcd"
SESSION_KEYS = {"id", "source", "state", "files", "raw_bytes", "stored_bytes", "started_at",
                "ended_at", "analyzed_at", "evicted_at", "pinned"}


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "session_memory", *args],
                         capture_output=True, text=True, timeout=60)
    if ok:
        assert run.returncode == 0, run.stderr
    return run


def on_terminal(columns: int, *args: str) -> str:
    """What the command shows on a terminal this many columns wide (its styles left out)."""
    return on_terminal_with_stderr(columns, *args)[0]


def on_terminal_with_stderr(columns: int, *args: str) -> tuple[str, str]:
    """(what the command shows on a terminal, styles left out; its stderr)."""
    output, stderr = _terminal_output(columns, *args)
    return re.sub(r"\x1b\[[0-9;]*m", "", output), stderr


def _terminal_output(columns: int, *args: str, stderr_too: bool = False) -> tuple[str, str]:
    """(all the command wrote to a terminal this many columns wide, escapes and all; its
    stderr, unless that went to the terminal too: "")."""
    shown, terminal = os.openpty()
    try:
        run = subprocess.run([sys.executable, "-m", "session_memory", *args],
                             stdout=terminal, stderr=terminal if stderr_too else subprocess.PIPE,
                             timeout=120, env={**os.environ, "COLUMNS": str(columns)})
        os.close(terminal)
        output = b""
        with contextlib.suppress(OSError):  # EIO: the terminal is closed and drained
            while chunk := os.read(shown, 65536):
                output += chunk
    finally:
        os.close(shown)
    stderr = (run.stderr or b"").decode()
    assert run.returncode == 0, stderr or output
    return output.decode(), stderr


def as_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def _claude_session(sources: dict[str, Path]) -> Path:
    f = sources["claude-code"] / "-home-dev-app" / f"{SID}.jsonl"
    f.parent.mkdir()
    f.write_bytes(b'{"type":"user","message":{"role":"user","content":"fix it"}}\n')
    (f.parent / SID / "subagents").mkdir(parents=True)
    (f.parent / SID / "subagents" / "agent-1.jsonl").write_bytes(b'{"type":"assistant"}\n')
    return f


def test_ingest_sessions_show_json(sources: dict[str, Path]) -> None:
    f = _claude_session(sources)
    summary = as_json("ingest")
    assert summary["files_changed"] == 2 and summary["bytes_added"] == f.stat().st_size + 21
    rows = as_json("sessions")
    assert len(rows) == 1 and rows[0].keys() >= SESSION_KEYS
    row = rows[0]
    assert row["id"] == f"claude-code:{SID}" and row["source"] == "claude-code"
    assert row["files"] == [f"-home-dev-app/{SID}.jsonl",
                            f"-home-dev-app/{SID}/subagents/agent-1.jsonl"]
    assert row["raw_bytes"] == f.stat().st_size + 21
    assert row["state"] == "active" and row["pinned"] is False
    shown = as_json("show", SID[:8])  # a unique prefix of the native id is enough
    assert SESSION_KEYS | {"digest"} <= shown.keys() and shown["id"] == row["id"]
    assert as_json("sessions", "--state", "ended") == []
    assert as_json("sessions", "--source", "codex") == []


def test_export_restore_pin(sources: dict[str, Path], tmp_path: Path) -> None:
    f = _claude_session(sources)
    original = f.read_bytes()
    cli("ingest")
    out = tmp_path / "out"
    exported = as_json("export", f"claude-code:{SID}", "-o", str(out))
    assert sorted(exported["files"]) == sorted(str(p) for p in out.rglob("*.jsonl"))
    assert (out / "-home-dev-app" / f"{SID}.jsonl").read_bytes() == original
    # The agent tool deletes its copy; restore puts it back, and never overwrites silently.
    f.unlink()
    cli("restore", f"claude-code:{SID}")
    assert f.read_bytes() == original
    assert as_json("restore", f"claude-code:{SID}") == {"files": []}  # all there already
    assert "its files are in place already" in cli("restore", SID).stderr
    f.write_bytes(b"the agent wrote something else\n")
    refused = cli("restore", f"claude-code:{SID}", ok=False)
    assert refused.returncode == 1 and "--force" in refused.stderr and refused.stdout == ""
    assert f.read_bytes() == b"the agent wrote something else\n"
    cli("restore", f"claude-code:{SID}", "--force")
    assert f.read_bytes() == original
    assert as_json("pin", SID) == {"id": f"claude-code:{SID}", "pinned": True}
    assert as_json("sessions")[0]["pinned"] is True
    assert as_json("status")["sessions"]["pinned"] == 1
    cli("unpin", SID)
    assert as_json("sessions")[0]["pinned"] is False


def test_no_sessions_is_said_not_shown_as_an_empty_table(sources: dict[str, Path]) -> None:
    fresh = on_terminal_with_stderr(120, "sessions")
    assert fresh[0].strip() == "" and "no sessions stored yet" in fresh[1]
    assert as_json("sessions") == []
    _claude_session(sources)
    cli("ingest")
    filtered = cli("sessions", "--source", "codex")
    assert filtered.stdout == "" and "no sessions match" in filtered.stderr


def test_export_all_versions_gives_back_a_file_before_it_was_rewritten(
        sources: dict[str, Path], tmp_path: Path) -> None:
    """A file rewritten shorter is a new version; the old one is kept, and export
    --all-versions writes it beside the newest, as PATH.v1 (without it, only the newest)."""
    f = sources["claude-code"] / "-home-dev-app" / f"{SID}.jsonl"
    f.parent.mkdir()
    first = b"".join(b'{"type":"user","message":{"role":"user","content":"first %d"}}\n' % i
                     for i in range(50))
    second = b'{"type":"user","message":{"role":"user","content":"second"}}\n'
    for data in (first, second):  # each ended long ago: stored sealed at once
        f.write_bytes(data)
        os.utime(f, (1_700_000_000, 1_700_000_000))
        cli("ingest")
    out = tmp_path / "out"
    assert len(as_json("export", SID, "-o", str(out))["files"]) == 1
    exported = as_json("export", SID, "-o", str(out), "--all-versions")["files"]
    assert sorted(Path(p).name for p in exported) == [f"{SID}.jsonl", f"{SID}.jsonl.v1"]
    assert (out / "-home-dev-app" / f"{SID}.jsonl").read_bytes() == second
    assert (out / "-home-dev-app" / f"{SID}.jsonl.v1").read_bytes() == first


def test_a_folder_that_cannot_be_written_is_a_clear_error(sources: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """export into a path through a file (or anywhere the system refuses): one message naming
    the path and exit 1, with --json the error document; no traceback."""
    _claude_session(sources)
    cli("ingest")
    (tmp_path / "a-file").write_text("not a folder\n")
    out = tmp_path / "a-file" / "out"
    run = cli("export", SID, "-o", str(out), ok=False)
    assert run.returncode == 1 and run.stdout == ""
    assert "Traceback" not in run.stderr
    assert f"error: {out}: Not a directory" in run.stderr
    run = cli("export", SID, "-o", str(out), "--json", ok=False)
    assert json.loads(run.stdout) == {"error": f"{out}: Not a directory", "exit_code": 1}


@pytest.mark.parametrize("name", ["nope", "no[/]pe", "[bold]nope"])
def test_unknown_session_is_a_clear_error(sources: dict[str, Path], name: str) -> None:
    """The message says the id as given: its brackets are no rich markup."""
    run = cli("show", name, ok=False)
    assert run.returncode == 1 and f"no session '{name}'" in run.stderr and run.stdout == ""


def test_status_json_shape(sources: dict[str, Path]) -> None:
    _claude_session(sources)
    cli("ingest")
    st = as_json("status")
    assert {"usage_bytes", "soft_cap_bytes", "hard_cap_bytes"} <= st["tier1"].keys()
    assert {"usage_bytes", "cap_bytes"} <= st["tier2"].keys()
    assert {"active", "ended", "analyzed", "evicted", "pinned", "total"} <= st["sessions"].keys()
    assert st["sessions"]["total"] == 1 and st["sessions"]["active"] == 1
    assert st["tier1"]["usage_bytes"] > 0 and st["tier1"]["soft_cap_bytes"] == 4 * 1024**3
    assert {"free_bytes", "total_bytes"} <= st["disk"].keys()
    assert st["daemon"] == {"running": False, "pid": None}
    assert "last_sweep" in st


def test_check_and_private_files(sources: dict[str, Path], home: Path) -> None:
    _claude_session(sources)
    cli("ingest")
    assert as_json("check") == {"ok": True, "problems": [], "warnings": []}
    data = Path(os.environ["XDG_DATA_HOME"]) / "session-memory"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for db in data.glob("*.db*"):
        assert stat.S_IMODE(db.stat().st_mode) == 0o600, db


def test_sessions_show_titles_and_cost(sources: dict[str, Path]) -> None:
    """A session with a digest lists its title, project and cost: in JSON, as the last
    field of the plain lines, and in the table on a terminal (cut to the line's width, and
    as written: a prompt's brackets are no markup); `show` says them too."""
    f = sources["claude-code"] / "-home-dev-app" / f"{SID}.jsonl"
    f.parent.mkdir()
    f.write_text("".join(json.dumps(r) + "\n" for r in (
        {"type": "user", "timestamp": "2026-01-05T10:00:00Z", "cwd": "/home/dev/app",
         "message": {"role": "user", "content": "fix the flaky login\ttest in [/]ci[x]"}},
        {"type": "assistant", "timestamp": "2026-01-05T10:00:09Z", "cwd": "/home/dev/app",
         "requestId": "req_1", "message": {
             "id": "msg_1", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
             "content": [{"type": "text", "text": "fixed"}],
             "usage": {"input_tokens": 100000, "output_tokens": 20000}}})))
    os.utime(f, (1767607209, 1767607209))  # written in January: ended
    assert "from 1 changed file (1 seen, 0 new versions, 0 skipped, 0 errors); 1 session " \
        "changed" in cli("ingest").stderr
    assert cli("analyze").stderr == "analyzed 1 session\n"
    row = as_json("sessions")[0]
    shown_json = as_json("show", SID)
    title = shown_json["digest"]["title"]
    assert "flaky login" in title
    assert row["title"] == title and row["project"] == "/home/dev/app"
    assert row["cost_usd"] > 0
    assert {k: shown_json[k] for k in row} == row  # `show` has what `sessions` lists
    assert f"  cost: ${row['cost_usd']:,.2f}\n" in cli("show", SID).stdout
    assert "  duration: 9 s\n" in cli("show", SID).stdout  # not duration_s: 9.0
    assert "  tokens: input 100,000, output 20,000, " in cli("show", SID).stdout  # as usage
    plain = cli("sessions").stdout.rstrip("\n").split("\t")
    assert plain[:2] == [f"claude-code:{SID}", "analyzed"]
    assert plain[-1] == " ".join(title.split())  # one line, whatever the title holds
    lines = [line for line in on_terminal(160, "sessions").splitlines()
             if f"claude-code:{SID}" in line]
    assert len(lines) == 1 and f"${row['cost_usd']:,.2f}" in lines[0]
    assert " ".join(title.split()) in lines[0] and len(lines[0]) <= 160


def test_a_narrow_terminal_shows_ids_cut_to_what_show_takes(sources: dict[str, Path]) -> None:
    """Ids cut as git cuts hashes: 8 characters of the native id, more where another id
    begins the same; the table fits the line, and each cut id names its session."""
    native = {"a": "5c1d7a4e-0000-4000-8000-00000000abcd",
              "b": "5c1d7a4f-0000-4000-8000-000000000000",
              "c": "5c1d7a4e-1000-4000-8000-000000000000"}
    for n in native.values():
        f = sources["claude-code"] / "-home-dev-app" / f"{n}.jsonl"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b'{"type":"user","message":{"role":"user","content":"fix it"}}\n')
    cli("ingest")
    wide = on_terminal(200, "sessions")
    assert all(f"claude-code:{n}" in wide for n in native.values())
    narrow = on_terminal(80, "sessions")
    assert max(len(line) for line in narrow.splitlines()) <= 80
    shown = {"a": "claude-code:5c1d7a4e-0", "b": "claude-code:5c1d7a4f",
             "c": "claude-code:5c1d7a4e-1"}
    for key, short in shown.items():
        assert f"{short} " in narrow
        assert as_json("show", short)["id"] == f"claude-code:{native[key]}"


def test_a_table_shows_ids_with_brackets_as_they_are(sources: dict[str, Path]) -> None:
    """A plain JSONL source's id is a file's path, which may hold brackets: a table read
    them as rich markup, leaving `[wip]` out of the id shown, and `a[/b]` was a traceback."""
    (sources["mytool"] / "[wip] notes.jsonl").write_bytes(b'{"a": 1}\n')
    (sources["mytool"] / "a[").mkdir()
    (sources["mytool"] / "a[" / "b].jsonl").write_bytes(b'{"a": 2}\n')
    cli("ingest")
    table = on_terminal(200, "sessions")
    assert "mytool:[wip] notes.jsonl" in table and "mytool:a[/b].jsonl" in table


def _written_at(when: float, *paths: Path) -> None:
    for path in paths:
        os.utime(path, (when, when))


def test_show_gives_each_version_its_part_of_the_stored_bytes(
        sources: dict[str, Path], clock: Any) -> None:
    """A file in a pack, or in its session's sealed frames, holds part of the session's
    stored bytes as much as one in chunks: each version says how much, and they add up to
    the session's figure (they were 0 but for chunks)."""
    from session_memory import config
    from session_memory.memory import Memory

    root = sources["claude-code"] / "-home-dev-app"

    def session(n: int, lines: int) -> list[Path]:
        sid = f"5c1d7a4e-0000-4000-8000-{n:012d}"
        main, sub = root / f"{sid}.jsonl", root / sid / "subagents" / "agent-1.jsonl"
        sub.parent.mkdir(parents=True)
        main.write_text("".join(json.dumps({"type": "user", "i": i, "text": f"{n} " * 300})
                                + "\n" for i in range(lines)))
        sub.write_text(json.dumps({"type": "assistant", "text": "sub " * 50}) + "\n")
        return [main, sub]

    with Memory(config.load(), clock=clock) as memory:
        # Written long ago: stored in a pack as it is read. Written just now: a live
        # session's chunks, sealed into frames once it has ended; one then grows again.
        packed = session(1, 40)
        _written_at(clock.now() - 10 * 86400, *packed)
        sealed, grown = session(2, 120), session(3, 80)
        _written_at(clock.now(), *sealed, *grown)
        memory.ingest()
        clock.advance(memory.settings.idle_seconds + 1)
        memory.seal()
        with grown[0].open("a") as f:
            f.write(json.dumps({"type": "user", "text": "more"}) + "\n")
        live = session(4, 40)
        _written_at(clock.now(), *grown, *live)
        memory.ingest()
        in_pack = {r[0] for r in memory.tier1.conn.execute(
            "SELECT session_id FROM pack_members WHERE live")}
        in_frames = {r[0] for r in memory.tier1.conn.execute("SELECT session_id FROM frames")}
    ids = {name: f"claude-code:{paths[0].stem}" for name, paths in
           (("packed", packed), ("sealed", sealed), ("grown", grown), ("live", live))}
    assert in_pack == {ids["packed"]} and in_frames == {ids["sealed"], ids["grown"]}
    for sid in ids.values():
        shown = as_json("show", sid)
        versions = shown["versions"]
        assert len(versions) == 2 and all(v["raw_bytes"] > 0 for v in versions), sid
        assert all(v["stored_bytes"] > 0 for v in versions), (sid, versions)
        assert sum(v["stored_bytes"] for v in versions) == shown["stored_bytes"], sid
    # In frames, a file's part goes by its raw bytes: the main file holds far more.
    main, sub = sorted(as_json("show", ids["sealed"])["versions"], key=lambda v: -v["raw_bytes"])
    assert main["stored_bytes"] > 10 * sub["stored_bytes"]


def test_ingest_of_a_path_under_no_source_root_is_a_usage_error(
        sources: dict[str, Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "notes.jsonl"
    elsewhere.parent.mkdir()
    elsewhere.write_text('{"a": 1}\n')
    f = _claude_session(sources)
    refused = cli("ingest", str(f), str(elsewhere), ok=False)
    assert refused.returncode == 2
    assert f"{elsewhere} is under no enabled source root" in refused.stderr
    assert str(sources["claude-code"]) in refused.stderr  # where it would have to be
    assert as_json("sessions") == []  # nothing stored, not even the path that was fine
    assert as_json("ingest", str(f))["files_changed"] == 1


def test_search_shows_each_hit_on_two_lines(sources: dict[str, Path]) -> None:
    """A snippet of a session's commands spans lines (one command a line): shown so, its
    later lines came out flush left, read as hits of their own."""
    f = sources["claude-code"] / "-home-dev-app" / f"{SID}.jsonl"
    f.parent.mkdir()
    calls = [{"type": "tool_use", "id": f"toolu_{i}", "name": "Bash",
              "input": {"command": f"frobnicate --step {i}"}} for i in range(3)]
    f.write_text("".join(json.dumps(r) + "\n" for r in (
        {"type": "user", "timestamp": "2026-01-05T10:00:00Z", "cwd": "/home/dev/app",
         "message": {"role": "user", "content": "run the steps"}},
        {"type": "assistant", "timestamp": "2026-01-05T10:00:09Z", "cwd": "/home/dev/app",
         "message": {"id": "msg_1", "role": "assistant", "model": "claude-x",
                     "content": calls}})))
    os.utime(f, (1767607209, 1767607209))  # written in January: ended
    cli("ingest")
    cli("analyze")
    assert "\n" in as_json("search", "frobnicate")[0]["snippet"]  # as the index holds it
    lines = cli("search", "frobnicate").stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"claude-code:{SID}"), lines
    assert lines[1].startswith("    ") and lines[1].count("frobnicate") == 3, lines
    assert " · " in lines[1]


def test_ingest_of_a_file_that_is_no_session_file_is_a_usage_error(
        sources: dict[str, Path]) -> None:
    """A root may be wide (Aider's is the home folder): a file under one that its source
    takes for no session's file was passed by, and the command exited 0."""
    session = _claude_session(sources)
    notes = sources["claude-code"] / "-home-dev-app" / "notes.txt"
    notes.write_text("not a transcript\n")
    refused = cli("ingest", str(session), str(notes), ok=False)
    assert refused.returncode == 2
    assert f"{notes} is no session file of claude-code" in refused.stderr
    assert as_json("sessions") == []
    # A folder is walked, and what it holds that is no session's file passed by, as ever.
    assert as_json("ingest", str(notes.parent))["files_changed"] == 2


def test_ingest_of_a_fifo_or_a_link_a_wide_root_passes_by(sources: dict[str, Path]) -> None:
    """A FIFO named to `ingest` is not opened to wait for a writer (the command hung for
    good); it is skipped as the pass skips it. A link under a wide root whose name its
    source never reads (Aider's root is the home folder) is no session file: exit 2, as a
    file of that name (the pass passes it by, so the command exited 0 and said nothing)."""
    pipe = sources["mytool"] / "pipe.jsonl"
    os.mkfifo(pipe)
    done = cli("ingest", "--json", str(pipe))
    assert json.loads(done.stdout)["skipped"] == 1
    assert "not a regular file" in done.stderr
    notes = sources["aider"] / "notes.md"
    notes.write_text("not a chat history\n")
    link = sources["aider"] / "todo.md"
    link.symlink_to(notes)
    refused = cli("ingest", str(link), ok=False)
    assert refused.returncode == 2
    assert f"{link} is no session file of aider" in refused.stderr
    # A link of the name it reads is still said, and skipped, as a link.
    history = sources["aider"] / "app" / ".aider.chat.history.md"
    history.parent.mkdir()
    history.symlink_to(notes)
    said = cli("ingest", "--json", str(history))
    assert json.loads(said.stdout)["skipped"] == 1
    assert "symlink not followed" in said.stderr


def test_what_a_session_holds_reaches_the_terminal_as_text_not_as_control(
        sources: dict[str, Path]) -> None:
    """A transcript may hold escape sequences (a tool's colored output, a file the agent
    read): printed as they were, they retitled the terminal, could set its clipboard
    (OSC 52), or hid what followed. Shown as \\xNN instead; JSON keeps them as they are."""
    evil = "fix \x1b]0;pwned\x07 the \x1b]52;c;ZXZpbA==\x07bug\r now"
    f = sources["claude-code"] / "-home-dev-app" / f"{SID}.jsonl"
    f.parent.mkdir()
    f.write_text("".join(json.dumps(r) + "\n" for r in (
        {"type": "user", "timestamp": "2026-01-05T10:00:00Z", "cwd": "/home/dev/app",
         "message": {"role": "user", "content": evil}},
        {"type": "assistant", "timestamp": "2026-01-05T10:00:09Z", "cwd": "/home/dev/app",
         "message": {"id": "msg_1", "role": "assistant", "model": "claude-x",
                     "content": [{"type": "text", "text": f"done: {evil}"}]}})))
    os.utime(f, (1767607209, 1767607209))  # written in January: ended
    cli("ingest")
    cli("analyze")
    assert "\x1b]52" in as_json("show", SID)["digest"]["first_prompt"]
    outputs = {"show": cli("show", SID).stdout, "search": cli("search", "pwned").stdout,
               "sessions": cli("sessions").stdout,
               "table": on_terminal(200, "sessions"), "search on a terminal":
               on_terminal(200, "search", "pwned")}
    for name, out in outputs.items():
        out = out.replace("\r\n", "\n")  # a terminal's line ends
        assert "\x07" not in out and "\x1b]" not in out and "\r" not in out, (name, out)
    assert "first prompt: fix \\x1b]0;pwned\\x07 the \\x1b]52;c;ZXZpbA==\\x07bug\\x0d now" \
        in outputs["show"]


def test_ingest_on_a_terminal_counts_its_progress_in_the_units_of_its_summary(
        sources: dict[str, Path]) -> None:
    """The bar counted MB (10^6) and MB/s, the line after it MiB: two sizes for one pass."""
    root = sources["claude-code"] / "-home-dev-app"
    root.mkdir()
    for i in range(40):
        (root / f"5c1d7a4e-0000-4000-8000-{i:012d}.jsonl").write_text(
            json.dumps({"type": "user", "text": f"{i} " * 50_000}) + "\n")
    output, _ = _terminal_output(100, "ingest", stderr_too=True)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", output)
    bars = [line for line in re.split(r"[\r\n]", text) if line.startswith("ingesting")]
    assert bars and any("MiB" in bar for bar in bars), text
    assert not any(re.search(r"\d (kB|MB)\b", bar) for bar in bars), bars
    assert "ingested 5.2 MiB from 40 changed files" in text


def test_show_says_how_many_lines_it_could_not_read_and_export_keeps_them(
        sources: dict[str, Path], tmp_path: Path) -> None:
    f = sources["claude-code"] / "-home-dev-app" / f"{SID}.jsonl"
    f.parent.mkdir()
    good = b'{"type":"user","timestamp":"2025-01-01T00:00:00Z","message":{"role":"user",' \
           b'"content":"fix it"}}\n'
    f.write_bytes(good + b'{"type":"assistant", cut short\n' + b"\x00\xff not json\n" + good)
    os.utime(f, (1_700_000_000, 1_700_000_000))
    cli("ingest")
    cli("analyze")
    assert as_json("show", SID)["digest"]["malformed_lines"] == 2
    assert "malformed lines: 2 (left out of this digest" in cli("show", SID).stdout
    assert "`export` gives them back" in cli("show", SID).stdout
    cli("export", SID, "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "-home-dev-app" / f"{SID}.jsonl").read_bytes() == f.read_bytes()
    # Evicted, the lines are gone with the rest of the raw bytes: export has none to give.
    with Memory(config.load()) as memory, memory.tier1.transaction("evict"):
        memory.tier1.evict(f"claude-code:{SID}", memory.clock.now())
    shown = cli("show", SID).stdout
    assert "malformed lines: 2 (left out of this digest; evicted" in shown
    assert "export" not in shown


def test_show_prints_the_tokens_its_cost_is_counted_from(sources: dict[str, Path]) -> None:
    """A Codex session reports `input_tokens` with its cache reads in them. `show` prints
    the tokens that `usage` counts and its cost is priced from (input without cache reads),
    as `show --json` and `sessions --json` give them under `tokens`; it printed the digest's
    as reported, cache reads counted twice beside the cost."""
    from tests.usage_corpus import CODEX_ID, write_codex_sessions

    write_codex_sessions(sources["codex"])
    cli("ingest")
    cli("analyze", "--all")
    shown = as_json("show", CODEX_ID)
    assert shown["digest"]["tokens"]["input"] == 3500  # as reported
    assert shown["tokens"]["input"] == 1500 and shown["tokens"]["cache_read"] == 2000
    text = cli("show", CODEX_ID).stdout
    assert "  tokens: input 1,500, output 100, cache_creation 0, cache_read 2,000, " \
        "reasoning 15\n  cost: $" in text, text


def test_sessions_of_a_source_no_config_names_says_which_there_are(
        sources: dict[str, Path]) -> None:
    """`--source claude` (a name cut short) finds nothing: it says no source has that name,
    and which do; a source that is configured but holds nothing is only "no sessions match"."""
    (sources["mytool"] / "a.jsonl").write_bytes(b'{"x": 1}\n')
    cli("ingest")
    typo = cli("sessions", "--source", "claude")
    assert typo.stdout == ""
    assert "no source is named 'claude'" in typo.stderr and "claude-code" in typo.stderr
    empty = cli("sessions", "--source", "codex")
    assert empty.stdout == "" and empty.stderr == "no sessions match\n"
    assert as_json("sessions", "--source", "claude") == []
