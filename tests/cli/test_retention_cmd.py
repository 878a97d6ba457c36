"""`sweep`, `reports`, `reports show`, `forget`, `check --repair` through a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests.conftest import write_config
from tests.test_retention import add_session, analyze

REPORT_KEYS = {"id", "dry_run", "started_at", "duration_ms", "backstop_evicted",
               "budget_evicted", "overflow_analyzed", "overflow_data_loss", "bytes_freed",
               "final_usage_bytes", "over_hard_cap", "tier2_over_cap", "warnings", "errors"}


def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "session_memory", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == code, run.stderr
    return run


def as_json(*args: str, code: int = 0) -> Any:
    return json.loads(cli(*args, "--json", code=code).stdout)


def _config(home: Path, hard_cap: str) -> None:
    root = home / "src" / "mytool"
    write_config(home, f'[retention]\nraw_soft_cap = 1\nraw_hard_cap = {hard_cap}\n'
                       f'[sources.mytool]\nformat = "jsonl"\nroot = "{root}"\n'
                       + "".join(f"[sources.{name}]\nenabled = false\n"
                                 for name in ("claude-code", "codex", "gemini-cli", "aider")))


def _store(home: Path) -> list[str]:
    """Three ended sessions, two analyzed; a soft cap that only their eviction can meet."""
    (home / "src" / "mytool").mkdir(parents=True)
    _config(home, '"1GiB"')
    # The subprocess reads the real clock: the sessions must have ended by it too.
    with Memory(config.load(), clock=FixedClock(time.time())) as memory:
        ids = [add_session(memory, f"s{i}", size=20_000, age_days=3 - i) for i in range(3)]
        memory.ingest()
        analyze(memory, ids[0], at=time.time() - 20)
        analyze(memory, ids[1], at=time.time() - 10)
    return ids


def test_sweep_dry_run_then_sweep_then_reports(home: Path) -> None:
    ids = _store(home)

    dry = as_json("sweep", "--dry-run")
    assert set(dry) >= REPORT_KEYS and dry["dry_run"] is True
    assert dry["budget_evicted"] == ids[:2]
    assert {s["id"]: s["state"] for s in as_json("sessions")}[ids[0]] == "analyzed"

    real = as_json("sweep")
    assert real["budget_evicted"] == ids[:2] and real["dry_run"] is False
    assert real["bytes_freed"] == dry["bytes_freed"] > 0

    listed = as_json("reports")
    assert {r["id"] for r in listed} == {dry["id"], real["id"]}
    assert as_json("reports", "--limit", "1")[0]["id"] in {dry["id"], real["id"]}
    assert as_json("reports", "show", real["id"]) == real
    assert as_json("status")["last_sweep"]["id"] in {dry["id"], real["id"]}

    text = cli("reports").stdout  # not a TTY: one tab-separated line per report
    assert real["id"] in text and dry["id"] in text
    shown = cli("reports", "show", real["id"]).stdout
    assert ids[0] in shown and "budget" in shown
    assert "; raw bytes evicted 20" in cli("show", ids[0]).stdout  # why it shows 0 B now

    missing = cli("reports", "show", "no-such-report", code=1)
    assert "no report" in missing.stderr and missing.stdout == ""


def test_sweep_human_output_names_data_loss(home: Path) -> None:
    ids = _store(home)
    _config(home, "1")  # a hard cap that nothing but data loss can meet
    with Memory(config.load()) as memory:
        memory.analyze_report = None  # type: ignore[assignment,method-assign]
        rid = memory.sweep()["id"]
    out = cli("reports", "show", rid[:12]).stdout
    assert "DATA LOSS, overflow, past the hard cap of 1 B: evicted 1 un-analyzed session, " \
           "their raw bytes lost" in out
    assert out.index("DATA LOSS") < out.index(ids[2])


def test_sweep_human_output_says_what_each_pass_did(home: Path) -> None:
    """Each pass that did something says what and why, naming its sessions: an old one
    evicted by age, one to meet the soft cap, one analyzed at once over the hard cap."""
    ids = _store(home)  # ended 3, 2 and 1 days ago; the first two analyzed
    _config(home, "1")
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
    path.write_text(path.read_text().replace("[retention]\n",
                                             "[retention]\nraw_max_age_days = 2.5\n"))
    out = cli("sweep").stdout
    lines = out.splitlines()
    said = {line.strip(): i for i, line in enumerate(lines)}

    def named_under(sentence: str, sid: str) -> None:
        at = next(i for text, i in said.items() if text.startswith(sentence))
        assert lines[at + 1].strip() == sid, out

    named_under("backstop, by age: evicted 1 analyzed session that ended over 2.5 days ago",
                ids[0])
    named_under("overflow, past the hard cap of 1 B: analyzed 1 ended session now", ids[2])
    # The budget pass ran twice: before the overflow's analysis, and after.
    budget = [text for text in said if text.startswith("budget, to the soft cap of 1 B: "
                                                       "evicted 2 analyzed sessions")]
    assert len(budget) == 1 and ids[1] in out and "DATA LOSS" not in out, out
    assert as_json("sweep")["backstop_evicted"] == []  # --json stays the contract's


def test_forget_and_check_repair(home: Path) -> None:
    ids = _store(home)
    gone = as_json("forget", ids[0])
    assert gone["id"] == ids[0] and gone["digest_removed"] and gone["session_removed"]
    assert ids[0] not in {s["id"] for s in as_json("sessions")}
    assert as_json("check") == {"ok": True, "problems": [], "warnings": []}
    cli("forget", "mytool:never-was.jsonl", code=1)

    with Memory(config.load()) as memory:
        memory.tier2.put_digest("mytool:orphan.jsonl", "mytool", {"analyzer_version": 1},
                                time.time())
    unhealthy = as_json("check", code=1)
    assert unhealthy["ok"] is False
    assert any("digest without session" in p for p in unhealthy["problems"])
    repaired = as_json("check", "--repair")
    assert repaired["ok"] is True and repaired["repaired"]


def test_forget_names_the_files_that_would_bring_the_session_back(home: Path) -> None:
    """Forgotten while the tool still keeps its files, a session is stored again by the next
    ingest: forget says so, naming them, and counts its raw bytes as raw."""
    ids = _store(home)
    source_file = home / "src" / "mytool" / "s0.jsonl"
    run = cli("forget", ids[0])
    # What it did is a message, on stderr as pin's is: stdout is for data.
    assert f"forgot {ids[0]}: 19.5 KiB of raw data" in run.stderr and run.stdout == ""
    assert "1 of its files is still in the agent tool's folder" in run.stderr
    assert str(source_file) in run.stderr and "delete it there" in run.stderr
    assert "forgot a session" not in run.stderr  # said once, not logged too
    cli("ingest")
    assert ids[0] in {s["id"] for s in as_json("sessions")}  # as it said

    (home / "src" / "mytool" / "s1.jsonl").unlink()
    gone = cli("forget", ids[1], "--json")
    assert json.loads(gone.stdout)["source_files"] == [] and "still in" not in gone.stderr


def test_a_sweep_killed_between_the_stores_is_reported_by_the_next(home: Path) -> None:
    ids = _store(home)
    killed = subprocess.run([sys.executable, "-m", "session_memory", "sweep", "--json"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SESSION_MEMORY_CRASH_AT":
                                 "after-commit:sweep-evict"})
    assert killed.returncode == -signal.SIGKILL
    assert as_json("reports") == []
    assert any("interrupted" in p for p in as_json("check", code=1)["problems"])

    after = as_json("sweep")

    assert any("interrupted" in w for w in after["warnings"])
    rebuilt = [r for r in as_json("reports") if r.get("recovered")]
    assert len(rebuilt) == 1 and rebuilt[0]["evicted_unattributed"] == ids[:2]
    assert as_json("check")["ok"] is True


def test_sweep_on_a_busy_store_exits_75(home: Path) -> None:
    ids = _store(home)
    with Memory(config.load()) as other, other.tier1.transaction("hold"):
        # Another process holds the write lock for longer than the busy timeout.
        run = cli("sweep", "--json", code=75)
    error = json.loads(run.stdout)
    assert error["exit_code"] == 75 and "busy" in error["error"]
    assert "busy" in run.stderr
    # Nothing was evicted while it could not write; the next sweep does the work.
    assert as_json("sweep")["budget_evicted"] == ids[:2]


def test_check_warns_of_odd_source_files_without_failing(home: Path) -> None:
    _store(home)
    os.symlink("/etc/passwd", home / "src" / "mytool" / "link.jsonl")
    os.mkfifo(home / "src" / "mytool" / "pipe.jsonl")
    report = as_json("check")
    assert report["ok"] is True and report["problems"] == []
    assert any("link.jsonl" in w and "symlink" in w for w in report["warnings"])
    assert any("pipe.jsonl" in w for w in report["warnings"])
    # A file's name is the user's to choose, control characters and all: shown, not sent.
    os.mkfifo(home / "src" / "mytool" / "\x1b]0;pwned\x07.jsonl")
    shown = cli("check").stdout
    assert "\\x1b]0;pwned\\x07.jsonl" in shown and "\x1b" not in shown


def _opencode_sessions(root: Path, parents: Iterable[tuple[str, str | None]]) -> None:
    """An OpenCode session file for each (session, its parent), each titled "<id> work"."""
    for sid, parent_id in parents:
        path = root / "session" / "p1" / f"{sid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"id": sid, "parentID": parent_id, "title": f"{sid} work",
                                    "directory": "/w", "time": {"created": 0}}))


def test_forget_of_a_parent_leaves_no_trace_in_its_childrens_digests(home: Path) -> None:
    """An OpenCode subagent's session of its own names its parent in its digest: a forget
    of the parent clears that, in the digest and in every byte of Tier 2."""
    root = home / "src" / "opencode" / "storage"
    write_config(home, f'[sources.opencode]\nroot = "{root}"\n')
    parent, child, other = "ses_forgottenparent", "ses_child", "ses_otherchild"
    _opencode_sessions(root, ((parent, None), (child, parent), (other, "ses_someoneelse"),
                              ("ses_someoneelse", None)))
    cli("ingest")
    cli("analyze", "--all")
    assert as_json("show", child)["digest"]["parent_session"] == f"opencode:{parent}"
    forgotten = as_json("forget", f"opencode:{parent}")
    assert forgotten["digest_removed"] is True
    assert as_json("show", child)["digest"]["parent_session"] is None
    # Another session's parent stays, and so does the rest of the child's digest.
    assert as_json("show", other)["digest"]["parent_session"] == "opencode:ses_someoneelse"
    assert as_json("show", child)["digest"]["title"] == f"{child} work"
    _assert_nowhere_in_tier2(parent)


def _assert_nowhere_in_tier2(text: str) -> None:
    data = Path(os.environ["XDG_DATA_HOME"]) / "session-memory"
    for tier2_file in data.glob("tier2.db*"):
        assert text.encode() not in tier2_file.read_bytes(), tier2_file.name


def test_a_forgotten_parent_stays_out_of_its_child_analyzed_again(home: Path) -> None:
    """The child's own bytes name its parent still: analyzed again (--force, or a new
    analyzer), its digest names the parent only while the parent is held. Forget keeps no
    list of what it forgot (that list would be a trace): the id is in no byte of Tier 2,
    nor in what show, search, sessions or the MCP server give."""
    from session_memory.mcp import Tools

    root = home / "src" / "opencode" / "storage"
    write_config(home, f'[sources.opencode]\nroot = "{root}"\n')
    parent, child = "ses_forgottenparent", "ses_child"
    _opencode_sessions(root, ((parent, None), (child, parent)))
    cli("ingest")
    cli("analyze", "--all")
    assert as_json("show", child)["digest"]["parent_session"] == f"opencode:{parent}"
    (root / "session" / "p1" / f"{parent}.json").unlink()  # gone from the tool too
    as_json("forget", f"opencode:{parent}")
    cli("ingest")
    assert as_json("analyze", "--force", f"opencode:{child}")["analyzed"] == [
        f"opencode:{child}"]
    assert as_json("show", child)["digest"]["parent_session"] is None
    assert as_json("show", child)["digest"]["title"] == f"{child} work"
    _assert_nowhere_in_tier2(parent)
    for args in (("show", child), ("search", "work"), ("sessions",)):
        for json_flag in ((), ("--json",)):
            out = cli(*args, *json_flag).stdout
            assert child in out and parent not in out, args
    tools = Tools(config.load())
    try:
        answers = [tools.get_session(f"opencode:{child}"), tools.search_sessions("work"),
                   tools.list_sessions()]
    finally:
        tools.close()
    assert child in json.dumps(answers) and parent not in json.dumps(answers)


def _opencode_task(root: Path, parent: str, child: str) -> None:
    """In `parent`, a call of OpenCode's task tool that ran as the session `child`."""
    message = root / "message" / parent / "msg_task.json"
    message.parent.mkdir(parents=True, exist_ok=True)
    message.write_text(json.dumps({"id": "msg_task", "sessionID": parent,
                                   "role": "assistant", "time": {"created": 1}}))
    part = root / "part" / "msg_task" / "prt_task.json"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_text(json.dumps(
        {"id": "prt_task", "sessionID": parent, "messageID": "msg_task", "type": "tool",
         "tool": "task", "callID": "call_task",
         "state": {"status": "completed", "input": {"subagent_type": "explore",
                                                    "description": "look around"},
                   "metadata": {"sessionId": child}}}))


def test_a_forgotten_subagent_session_leaves_no_trace_in_its_parents_digest(
        home: Path) -> None:
    """A parent's digest names the session each of its OpenCode subagents ran as: a forget
    of that session takes it out, and the parent analyzed again (its bytes name the child
    still) names it only while it is held."""
    root = home / "src" / "opencode" / "storage"
    write_config(home, f'[sources.opencode]\nroot = "{root}"\n')
    parent, child, kept = "ses_parent", "ses_forgottenchild", "ses_keptchild"
    _opencode_sessions(root, ((parent, None), (child, parent), (kept, parent)))
    _opencode_task(root, parent, child)
    task = root / "part" / "msg_task" / "prt_task.json"
    second = json.loads(task.read_text())
    second["id"], second["callID"] = "prt_task2", "call_task2"
    second["state"]["metadata"]["sessionId"] = kept
    (task.parent / "prt_task2.json").write_text(json.dumps(second))
    cli("ingest")
    cli("analyze", "--all")
    named = [s["session_id"] for s in as_json("show", parent)["digest"]["subagents"]]
    assert named == [f"opencode:{child}", f"opencode:{kept}"]
    (root / "session" / "p1" / f"{child}.json").unlink()  # gone from the tool too
    as_json("forget", f"opencode:{child}")
    assert [s["id"] for s in as_json("show", parent)["digest"]["subagents"]] == [kept]
    _assert_nowhere_in_tier2(child)
    cli("ingest")
    assert as_json("analyze", "--force", f"opencode:{parent}")["analyzed"] == [
        f"opencode:{parent}"]
    assert [s["id"] for s in as_json("show", parent)["digest"]["subagents"]] == [kept]
    _assert_nowhere_in_tier2(child)
    assert child not in cli("show", parent).stdout
    shown = cli("show", parent, "--json").stdout
    assert kept in shown and child not in shown


def test_show_names_a_parent_only_while_it_is_held(home: Path) -> None:
    """A digest written before, naming a parent this memory does not hold (forgotten, or
    never stored): shown without it."""
    sid, other, _ = _store(home)
    with Memory(config.load(), clock=FixedClock(2_000_000_000)) as memory:
        digest = memory.tier2.get_digest(sid)
        assert digest is not None
        memory.tier2.put_digest(sid, "mytool", digest | {"parent_session": "mytool:gone"},
                                memory.clock.now())
        assert memory.show(sid)["digest"]["parent_session"] is None
        memory.tier2.put_digest(sid, "mytool", digest | {"parent_session": other},
                                memory.clock.now())
        assert memory.show(sid)["digest"]["parent_session"] == other


def test_reports_table_fits_a_narrow_terminal(home: Path) -> None:
    from tests.cli.test_sessions_cmd import on_terminal

    _store(home)
    dry, real = as_json("sweep", "--dry-run"), as_json("sweep")
    for width, left_out in ((80, ("when", "usage after")), (140, ())):
        shown = on_terminal(width, "reports")
        assert max(len(line) for line in shown.splitlines()) <= width, shown
        for rid in (dry["id"], real["id"]):
            assert rid in shown  # whole
        assert "data" in shown and "loss" in shown and "errors" in shown
        for header in ("when", "after"):
            assert (header in shown) == (header not in " ".join(left_out)), (width, shown)


def test_reports_before_any_sweep_says_so(home: Path) -> None:
    """A new install's `reports`: a line on stderr that says why there is none and how to
    get one, as `sessions` and `usage` say; not an empty table, nor silence when piped."""
    from tests.cli.test_sessions_cmd import on_terminal_with_stderr

    (home / "src" / "mytool").mkdir(parents=True)
    _config(home, '"1GiB"')
    piped = cli("reports")
    assert piped.stdout == ""
    assert "no eviction reports yet" in piped.stderr and "sweep" in piped.stderr
    assert as_json("reports") == []
    shown, said = on_terminal_with_stderr(100, "reports")
    assert shown.strip() == "" and "no eviction reports yet" in said


def test_a_sweep_with_errors_under_json_has_the_error_in_its_report(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its report is its document: with --json it holds the error and exit code too, as
    every failing --json command's does, and stdout is still that one document."""
    from click.testing import CliRunner

    from session_memory import retention
    from session_memory.cli import cli as main_group

    _store(home)

    def broken(self: retention.Sweep, caps: retention.Caps) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(retention.Sweep, "_backstop", broken)
    run = CliRunner().invoke(main_group, ["sweep", "--json"])
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert report["errors"] == ["backstop: RuntimeError: disk on fire"]
    assert report["exit_code"] == 1 and "disk on fire" in report["error"]
    assert "disk on fire" in run.stderr
    assert {"id", "dry_run", "backstop_evicted", "budget_evicted"} <= report.keys()
