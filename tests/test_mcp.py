"""`session-memory mcp` as a real subprocess, driven by the SDK's stdio client, over a store
ingested and analyzed from the fixtures by the real CLI; answers checked against the CLI's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, OUTSIDE_VARS, home_environ
from tests.daemon_harness import DaemonProcess, NotifySocket
from tests.mcp_client import Client, ToolFailed, mcp_client

OLD_MTIME = 1_700_000_000
PLANTED_ID = "claude-code:0badc0de-0000-4000-8000-00000000feed"
# Each in the planted session's raw text; none may leave the server.
SECRETS = [
    "AKIAQWERTYUIOPASDFGH",
    "ghp_" + "Zx9" * 12,
    "sk-ant-api03-" + "q7W" * 14,
    "hunter2sesame",
    "MIIEowIBAAKCAQEAplanted",
    "PLANTEDdeployTOKEN42value",
]
TOOLS = {"search_sessions", "list_sessions", "get_session", "get_usage", "read_transcript"}


def planted_session(turns: int, output_chars: int = 10_000) -> str:
    """A Claude Code transcript with secrets in a prompt, a reply, a tool call and a long
    tool result; `turns` more exchanges after that for paging."""
    sid = PLANTED_ID.split(":", 1)[1]
    records: list[dict[str, Any]] = []

    def rec(kind: str, content: Any, i: int) -> None:
        records.append({"type": kind, "sessionId": sid, "uuid": f"u{len(records)}",
                        "timestamp": f"2024-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                        "cwd": "/work/billing-app", "gitBranch": "main",
                        "message": {"role": kind, "id": f"m{len(records)}",
                                    "model": "claude-sonnet-4-5", "content": content,
                                    **({"usage": {"input_tokens": 100, "output_tokens": 20}}
                                       if kind == "assistant" else {})}})

    rec("user", f"Deploy the zanzibar billing service; the AWS key is {SECRETS[0]}", 0)
    rec("assistant", [{"type": "text", "text": f"Using the token {SECRETS[1]} to push."}], 1)
    rec("assistant", [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {
        "command": f"curl -H 'x-api-key: {SECRETS[2]}' https://api.example.com"}}], 2)
    # Secrets in the head and the tail that are kept, and one where the cut falls.
    long_output = (f"postgres://admin:{SECRETS[3]}@db/prod\n"
                   f"-----BEGIN RSA PRIVATE KEY-----\n{SECRETS[4]}\n"
                   "-----END RSA PRIVATE KEY-----\n" + "x" * (output_chars // 2)
                   + f"\nhunter {SECRETS[0]}\n" + "y" * (output_chars // 2)
                   + "\nDEPLOY_TOKEN=" + SECRETS[5] + "\n")
    rec("user", [{"type": "tool_result", "tool_use_id": "t1", "content": long_output}], 3)
    for i in range(turns):
        rec("user", f"zanzibar step {i}: carry on", 4 + 2 * i)
        rec("assistant", [{"type": "text", "text": f"Step {i} done."}], 5 + 2 * i)
    return "".join(json.dumps(r) + "\n" for r in records)


def write_planted(root: Path, turns: int, output_chars: int = 10_000) -> Path:
    path = root / "-work-billing-app" / f"{PLANTED_ID.split(':', 1)[1]}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(planted_session(turns, output_chars))
    os.utime(path, (OLD_MTIME, OLD_MTIME))
    return path


class Home:
    """An isolated home with a config and a store, and the CLI run inside it."""

    def __init__(self, home: Path, sources: str) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
        self.env.update(home_environ(home))
        config = Path(self.env["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(sources)

    def cli(self, *args: str) -> Any:
        run = subprocess.run([sys.executable, "-m", "session_memory", *args, "--json"],
                             env=self.env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)


def make_home(home: Path, turns: int, fixtures: bool, output_chars: int = 10_000,
              extra: str = "") -> Home:
    planted = home / "planted"
    write_planted(planted, turns, output_chars)
    # idle_seconds = 0: the fixtures were written at checkout, yet they have ended.
    sources = f"""
[ingest]
idle_seconds = 0
[sources.claude-code]
root = "{FIXTURES / 'claude-code' / 'projects' if fixtures else home / 'none'}"
enabled = {str(fixtures).lower()}
[sources.codex]
root = "{FIXTURES / 'codex'}"
enabled = {str(fixtures).lower()}
[sources.aider]
root = "{FIXTURES / 'aider'}"
enabled = {str(fixtures).lower()}
[sources.gemini-cli]
enabled = false
[sources.planted]
format = "claude-code"
root = "{planted}"
{extra}"""
    h = Home(home, sources)
    h.cli("ingest")
    h.cli("analyze")
    return h


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = tmp_path_factory.mktemp("mcp") / "home"
    home.mkdir()
    return make_home(home, turns=60, fixtures=True)


@pytest.fixture(scope="module")
def client(store: Home) -> Iterator[Client]:
    with mcp_client(store.env) as c:
        yield c


PLANTED = PLANTED_ID.replace("claude-code:", "planted:")


def test_tools_and_their_schemas(client: Client) -> None:
    tools = {t.name: t for t in client.list_tools()}
    assert set(tools) == TOOLS
    params = {name: t.input_schema["properties"] for name, t in tools.items()}
    assert set(params["search_sessions"]) == {"query", "limit", "project", "since"}
    assert tools["search_sessions"].input_schema["required"] == ["query"]
    assert params["search_sessions"]["limit"]["maximum"] >= 10
    assert params["search_sessions"]["limit"]["default"] == 10
    assert set(params["list_sessions"]) == {"project", "source", "since", "limit"}
    assert params["list_sessions"]["limit"]["default"] == 20
    assert set(params["get_session"]) == {"id"}
    assert set(params["get_usage"]) == {"by", "since", "until"}
    assert {"day", "week", "month", "model", "source", "project"} <= set(
        params["get_usage"]["by"]["enum"])
    assert set(params["read_transcript"]) == {"id", "offset", "limit"}
    assert params["read_transcript"]["offset"]["minimum"] == 0
    for tool in tools.values():
        assert len(tool.description or "") > 200, tool.name  # written for a model
        assert tool.annotations is not None and tool.annotations.read_only_hint
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), (tool.name, name)


def test_search_matches_the_cli(store: Home, client: Client) -> None:
    for query in ("hello world", "decorator", "zanzibar"):
        cli_hits = store.cli("search", *query.split(), "--limit", "5")
        hits = client.call("search_sessions", query=query, limit=5)
        assert cli_hits, query
        assert [h["id"] for h in hits] == [h["id"] for h in cli_hits]
        for hit, want in zip(hits, cli_hits, strict=True):
            assert set(hit) == {"id", "title", "project", "started_at", "snippet"}
            assert (hit["title"], hit["project"], hit["started_at"]) == (
                want["title"], want["project"], want["started_at"])
            assert "[" in hit["snippet"] and len(hit["snippet"]) < 400


def test_search_narrows_by_project_and_since(client: Client) -> None:
    everywhere = {h["id"] for h in client.call("search_sessions", query="function", limit=50)}
    assert len(everywhere) > 1
    in_project = client.call("search_sessions", query="function", project="/project",
                             limit=50)
    assert in_project and all(h["project"] == "/project" for h in in_project)
    by_name = client.call("search_sessions", query="zanzibar", project="billing-app")
    assert [h["id"] for h in by_name] == [PLANTED]
    assert client.call("search_sessions", query="zanzibar", project="/work/billing") == []
    assert client.call("search_sessions", query="zanzibar", project="/work") != []
    assert client.call("search_sessions", query="zanzibar", since="2024-02-01") != []
    assert client.call("search_sessions", query="zanzibar", since="2024-04-01") == []


def test_title_outranks_a_passing_mention(client: Client) -> None:
    hits = client.call("search_sessions", query="zanzibar billing")
    assert hits[0]["id"] == PLANTED


def test_list_sessions_matches_the_cli(store: Home, client: Client) -> None:
    assert client.call("list_sessions", limit=500) == store.cli("sessions")
    assert client.call("list_sessions", source="codex", limit=3) == store.cli(
        "sessions", "--source", "codex", "--limit", "3")
    listed = client.call("list_sessions")
    assert len(listed) == 20
    newest_first = [s["last_write"] for s in listed]
    assert newest_first == sorted(newest_first, reverse=True)
    mine = client.call("list_sessions", project="billing-app")
    assert [s["id"] for s in mine] == [PLANTED]
    assert client.call("list_sessions", project="/work/billing-app/") == mine
    since = client.call("list_sessions", since="2024-02-20", limit=500)
    assert PLANTED in {s["id"] for s in since}
    assert len(since) < len(client.call("list_sessions", limit=500))


def test_get_session_matches_show(store: Home, client: Client) -> None:
    for sid in ("codex:test-session", "claude-code:sample_session",
                "aider:mozgoslav#20260422T224047"):
        got = client.call("get_session", id=sid)
        want = store.cli("show", sid)
        assert got == want
        assert got["digest"]["title"]


def test_get_usage_matches_the_cli(store: Home, client: Client) -> None:
    assert client.call("get_usage") == store.cli("usage")
    assert client.call("get_usage", by="source") == store.cli("usage", "--by", "source")
    by_day = client.call("get_usage", since="2024-03-01")
    assert by_day == store.cli("usage", "--since", "2024-03-01")
    assert sum(r["output"] for r in client.call("get_usage", by="model")) > 0
    window = ("--since", "2024-01-01", "--until", "2024-12-31")
    for by in ("week", "month", "session"):
        got = client.call("get_usage", by=by, since="2024-01-01", until="2024-12-31")
        assert got == store.cli("usage", "--by", by, *window)
        assert got and all("cost_usd" in row for row in got)
    assert PLANTED in {r["key"] for r in client.call("get_usage", by="session")}


def test_read_transcript_pages_in_order(client: Client) -> None:
    whole = client.call("read_transcript", id=PLANTED, limit=200)
    messages = whole["messages"]
    assert whole["id"] == PLANTED and whole["next_offset"] is None
    assert [m["role"] for m in messages[:4]] == ["user", "assistant", "tool_call",
                                                 "tool_result"]
    assert messages[0]["text"].startswith("Deploy the zanzibar billing service")
    assert messages[0]["timestamp"] == "2024-03-01T10:00:00.000Z"
    assert messages[2]["tool"] == "Bash"
    assert len(messages) == 4 + 2 * 60
    assert messages[-1]["text"] == "Step 59 done."
    # Long tool output: head and tail kept, with how much was cut.
    result = messages[3]["text"]
    assert "characters cut" in result and len(result) < 2_500
    assert result.startswith("postgres://admin:[REDACTED:url_password]@db/prod")
    assert result.rstrip().endswith("DEPLOY_TOKEN=[REDACTED:assignment]")
    pages, offset = [], 0
    while offset is not None:
        page = client.call("read_transcript", id=PLANTED, offset=offset, limit=7)
        assert len(page["messages"]) <= 7
        pages += page["messages"]
        offset = page["next_offset"]
    assert pages == messages


def test_read_transcript_of_each_format(store: Home, client: Client) -> None:
    for sid in ("claude-code:sample_session", "codex:test-session",
                "aider:mozgoslav#20260422T224047"):
        digest = store.cli("show", sid)["digest"]
        messages = client.call("read_transcript", id=sid)["messages"]
        users = [m["text"] for m in messages if m["role"] == "user"]
        assert users and users[0] == digest["first_prompt"], sid
        assert any(m["role"] == "assistant" for m in messages), sid


def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(client: Client) -> None:
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("get_session", {"id": "claude-code:no-such-session"}, "no session"),
        ("read_transcript", {"id": "nope-nope"}, "no session"),
        ("search_sessions", {"query": ""}, "query"),
        ("search_sessions", {"query": "   "}, "query is empty"),
        ("search_sessions", {"query": "x", "limit": 10**9}, "limit"),
        ("list_sessions", {"limit": 0}, "limit"),
        ("read_transcript", {"id": PLANTED, "offset": -1}, "offset"),
        ("read_transcript", {"id": PLANTED, "limit": 10**6}, "limit"),
        ("search_sessions", {"query": "x", "since": "last tuesday"}, "since"),
        ("get_usage", {"by": "planet"}, "by"),
        ("get_session", {}, "id"),
        ("no_such_tool", {}, "no_such_tool"),
    ]
    for name, args, says in bad:
        failed, text = client.text(name, args)
        assert failed, (name, args)
        assert says in text, (name, args, text)
        assert "Traceback" not in text
        assert client.call("list_sessions", limit=1)  # still serving
    assert client.call("read_transcript", id=PLANTED, offset=10**6)["messages"] == []
    assert client.call("search_sessions", query='"unbalanced AND OR (') == []


def test_no_planted_secret_leaves_the_server(client: Client) -> None:
    answers = [client.text("search_sessions", {"query": "zanzibar"})[1],
               client.text("search_sessions", {"query": "AKIAQWERTYUIOPASDFGH"})[1],
               client.text("list_sessions", {"project": "billing-app"})[1],
               client.text("get_session", {"id": PLANTED})[1],
               client.text("get_usage", {"by": "session"})[1],
               client.text("get_usage", {"by": "project"})[1],
               client.text("get_session", {"id": SECRETS[1]})[1]]
    offset: int | None = 0
    while offset is not None:
        failed, text = client.text("read_transcript", {"id": PLANTED, "offset": offset,
                                                       "limit": 3})
        assert not failed
        answers.append(text)
        offset = json.loads(text)["next_offset"]
    everything = "\n".join(answers)
    for secret in SECRETS:
        assert secret not in everything
    for kind in ("aws_access_key", "github_token", "anthropic_key", "url_password",
                 "private_key", "assignment"):
        assert f"[REDACTED:{kind}]" in everything, kind


def test_evicted_session_says_only_its_digest_remains(tmp_path: Path) -> None:
    h = make_home(tmp_path / "h", turns=2, fixtures=False,
                  extra="[retention]\nraw_max_age_days = 1\n")
    assert h.cli("sweep")["backstop_evicted"] == [PLANTED]
    with mcp_client(h.env) as c:
        with pytest.raises(ToolFailed) as failed:
            c.call("read_transcript", id=PLANTED)
        assert "only its digest remains" in str(failed.value)
        assert "get_session" in str(failed.value)
        assert c.call("get_session", id=PLANTED)["state"] == "evicted"
        assert c.call("search_sessions", query="zanzibar")[0]["id"] == PLANTED


def test_no_store_yet_is_a_clear_error_then_found_once_made(tmp_path: Path) -> None:
    h = Home(tmp_path / "h", f'[sources.planted]\nformat = "claude-code"\n'
                             f'root = "{tmp_path / "h" / "planted"}"\n')
    write_planted(tmp_path / "h" / "planted", turns=1)
    with mcp_client(h.env) as c:
        with pytest.raises(ToolFailed, match="no store yet"):
            c.call("list_sessions")
        assert not (Path(h.env["XDG_DATA_HOME"]) / "session-memory" / "tier1.db").exists()
        h.cli("ingest")
        h.cli("analyze")
        assert [s["id"] for s in c.call("list_sessions")] == [PLANTED]


def test_ingest_finishes_while_a_client_pages_a_long_transcript(tmp_path: Path) -> None:
    """The server holds no lock between calls and only read snapshots during one: an ingest
    (the daemon's writer) of new sessions completes while a client pages through a long
    transcript, one call after another."""
    h = make_home(tmp_path / "h", turns=3000, fixtures=False, output_chars=2_000)
    more = tmp_path / "h" / "planted" / "-work-other"
    more.mkdir()
    for i in range(20):
        (more / f"0badc0de-0000-4000-8000-0000000010{i:02d}.jsonl").write_text(
            planted_session(200, 50_000).replace(PLANTED_ID.split(":")[1], f"other-{i}"))
    with mcp_client(h.env) as c:
        ingest = subprocess.Popen([sys.executable, "-m", "session_memory", "ingest", "--json"],
                                  env=h.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        pages = 0
        offset: int | None = 0
        try:
            while ingest.poll() is None or pages < 3:
                page = c.call("read_transcript", id=PLANTED, offset=offset or 0, limit=50)
                pages += 1
                offset = page["next_offset"] if page["next_offset"] is not None else 0
            out, err = ingest.communicate(timeout=120)
        finally:
            if ingest.poll() is None:
                ingest.kill()
        assert ingest.returncode == 0, err
        assert json.loads(out)["errors"] == 0
        assert pages >= 3
        assert len(c.call("list_sessions", limit=100)) == 21  # a fresh snapshot sees them


def test_a_running_daemon_stores_new_bytes_while_a_client_pages(tmp_path: Path) -> None:
    """The real daemon keeps ingesting a growing session while a client pages through a
    long transcript, call after call: the server never makes it wait."""
    h = make_home(tmp_path / "h", turns=3000, fixtures=False, output_chars=2_000,
                  extra="[retention]\nraw_max_age_days = 36500\n")  # no eviction at start
    config = Path(h.env["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
    growing = tmp_path / "h" / "planted" / "-work-other" / "0badc0de-grow.jsonl"
    growing.parent.mkdir()
    notify = NotifySocket()
    daemon = DaemonProcess(config, notify, tmp_path / "daemon.log", h.env)
    try:
        daemon.wait_ready()
        with mcp_client(h.env) as c:
            written = 0
            offset: int | None = 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                page = c.call("read_transcript", id=PLANTED, offset=offset or 0, limit=50)
                offset = page["next_offset"]
                if written < 20:
                    with growing.open("a") as f:
                        f.write(planted_session(0).splitlines()[0] + "\n")
                    written += 1
                    continue
                stored = {s["id"]: s for s in c.call("list_sessions", limit=10)}
                if stored.get("planted:0badc0de-grow", {}).get("raw_bytes") == (
                        growing.stat().st_size):
                    break
            else:
                raise AssertionError(f"the daemon did not store the appends; log:\n"
                                     f"{daemon.log()}")
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
        notify.close()
    log = (tmp_path / "daemon.log").read_text(errors="replace").lower()
    assert "busy" not in log and '"level": "error"' not in log, log
