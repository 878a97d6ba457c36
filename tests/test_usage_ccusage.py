"""Our day × model token totals against ccusage's, on the same files, in the same time zone.

Runs where `ccusage` (npm ccusage@20.0.24; .ci/run installs it) is on PATH, else skips
saying so. The files: the Claude Code, Codex, OpenCode and Copilot CLI fixtures and the
hand-made sessions of tests/usage_corpus.py, rewritten as the tools write them (compact
JSON, millisecond times).

Where ccusage counts differently (each checked against the files, see the tests):
- OpenCode and Gemini CLI: its `outputTokens` leaves out reasoning (thoughts), which it
  still prices as output; our `output` is every output token billed, reasoning included.
- Copilot CLI: it takes each `session.shutdown`'s counts for running totals of the session
  and subtracts the last from the next; they are the counts of one run of the process, so
  a resumed session's runs add up (the fixture's second run reports fewer output tokens
  than the first). And it prices a run's counts as one response, so a model with a dearer
  price for long prompts is charged it on all past the first 200k tokens; we price them
  as the run's `requests.count` requests of equal share (the fixture's models have no
  such price). It also drops a model's `-1m`/`-1m-internal` suffix; we keep the name as
  Copilot writes it (and price it as the base model all the same).
- Gemini CLI: it counts the responses a `$rewindTo` took out of the conversation; DESIGN.md
  has the rewind drop them before anything is counted (the hand-made session's rewound
  response has a model of its own, so the difference is that one model). And it makes a
  subagent's log (chats/<parent sessionId>/) a session of its own; it is its parent's.
- OpenCode: where a message holds a cost above 0, it takes that as the cost; we price the
  tokens (the fixtures hold cost 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from session_memory import config
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests import usage_corpus as corpus
from tests.conftest import FIXTURES, in_time_zone, sources_toml, write_config

CCUSAGE = shutil.which("ccusage")
pytestmark = pytest.mark.skipif(
    CCUSAGE is None, reason="ccusage is not installed (npm install -g ccusage@20.0.24)")


@pytest.fixture(params=["UTC", corpus.TZ])
def tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, request.param)


@pytest.fixture
def agents(home: Path) -> Path:
    """A home as the tools leave it: ~/.claude and ~/.codex."""
    data = home / "agents"
    claude, codex = data / ".claude" / "projects", data / ".codex"
    corpus.rewrite_tree(FIXTURES / "claude-code" / "projects", claude)
    corpus.rewrite_tree(FIXTURES / "codex", codex)
    corpus.write_claude_sessions(claude)
    corpus.write_codex_sessions(codex)
    write_config(home, sources_toml(claude_code=claude, codex=codex, gemini_cli=None,
                                    aider=None))
    return data


def ccusage(agents: Path, tz: str, *args: str) -> Any:
    env = {"PATH": os.environ["PATH"], "HOME": str(agents), "TZ": tz,
           "CLAUDE_CONFIG_DIR": str(agents / ".claude"), "CODEX_HOME": str(agents / ".codex"),
           "NO_COLOR": "1"}
    assert CCUSAGE is not None
    proc = subprocess.run([CCUSAGE, *args, "--json", "--offline", "--timezone", tz], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def ours(by: str = "day") -> Memory:
    memory = Memory(config.load(), clock=FixedClock(1_800_000_000.0))
    memory.ingest()
    assert not memory.analyze_report().failed
    return memory


def test_day_by_model_equals_ccusage_daily(agents: Path, tz: str) -> None:
    report = ccusage(agents, tz, "daily")
    theirs = {(day["period"], m["modelName"]): (m["inputTokens"], m["outputTokens"],
                                                m["cacheCreationTokens"], m["cacheReadTokens"])
              for day in report["daily"] for m in day["modelBreakdowns"]}
    with ours() as memory:
        rows = memory.usage("day", breakdown=True)
    mine = {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"])
            for r in rows for m in r["models"]}
    assert mine == theirs
    assert_equal(our_counts(rows, "day", set()), their_days(report))  # and the cost
    # Both read the hand-made sessions, which cross midnight in New York.
    days = {day for day, model in mine if model == corpus.CODEX_MODEL}
    assert days == ({"2026-03-02"} if tz == "UTC" else {"2026-03-01", "2026-03-02"})


def test_blocks_equal_ccusage_blocks(agents: Path, tz: str) -> None:
    theirs = [(b["id"], b["isGap"], b["tokenCounts"]["inputTokens"],
               b["tokenCounts"]["outputTokens"], b["tokenCounts"]["cacheCreationInputTokens"],
               b["tokenCounts"]["cacheReadInputTokens"])
              for b in ccusage(agents, tz, "blocks")["blocks"]]
    with ours() as memory:
        mine = [(b["id"], b["gap"], b["input"], b["output"], b["cache_creation"],
                 b["cache_read"]) for b in memory.usage_blocks()]
    assert mine == theirs


def test_sessions_equal_ccusage_session(agents: Path, tz: str) -> None:
    """By session, where the two name sessions differently: ccusage names a Codex session
    by its rollout's path (we by the id at its end), and makes a workflow's agent
    transcript (<session>/subagents/workflows/<run>/agent-*.jsonl) a session of its own,
    named by the run, which we count in <session>: DESIGN.md has everything under
    <session>/ be that session's."""
    theirs: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for tool, cost in (("claude", "totalCost"), ("codex", "costUSD")):
        for s in ccusage(agents, tz, tool, "session")["sessions"]:
            sid = s["sessionId"][-36:] if tool == "codex" else s["sessionId"]
            if "/" in (s.get("projectPath") or ""):  # a workflow run, inside its session
                sid = s["projectPath"].split("/")[1]
            row = theirs[sid]
            for n, field in enumerate(("inputTokens", "outputTokens", "cacheCreationTokens",
                                       "cacheReadTokens")):
                row[n] += s[field]
            row[4] += s[cost]
    with ours() as memory:
        mine = {r["key"].split(":", 1)[1]: (r["input"], r["output"], r["cache_creation"],
                                            r["cache_read"], r["cost_usd"])
                for r in memory.usage("session")}
    assert mine.keys() == theirs.keys()
    for sid, (*tokens, cost) in mine.items():
        assert (sid, *tokens) == (sid, *theirs[sid][:4])
        assert cost == pytest.approx(theirs[sid][4], abs=1e-6), sid
    assert "22220000-0000-4000-8000-000000000002" in mine  # holds its workflow run's tokens


INDIA = "Asia/Kolkata"  # +05:30
SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
"""Every real history (tests/fixtures/real holds a subset), where the workspace has them."""


@pytest.fixture(params=["UTC", corpus.TZ, INDIA])
def real_tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The zones the real histories are compared in: India's too, where local midnight is
    half past a UTC hour."""
    yield from in_time_zone(monkeypatch, request.param)


def test_real_histories_equal_ccusage_daily(home: Path, real_tz: str) -> None:
    """Real people's histories as they left them (tests/fixtures/real): Claude Code
    transcripts in folders of their own under the projects folder, and Codex rollouts
    that write each turn's token_count line twice."""
    assert_real_histories_equal(home, FIXTURES / "real", real_tz)


@pytest.mark.skipif(not SHARED_REAL.is_dir(), reason=f"{SHARED_REAL} is not here")
def test_every_real_history_equals_ccusage_daily_in_india(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All of ../shared/fixtures/real in India's time: usage kept by the UTC hour put a
    response of the half hour before or after local midnight on its hour's day, so 4 of
    their 52 day x model rows differed from ccusage's (the subset has none there)."""
    for _ in in_time_zone(monkeypatch, INDIA):
        assert_real_histories_equal(home, SHARED_REAL, INDIA)


def assert_real_histories_equal(home: Path, real: Path, tz: str) -> None:
    claude, codex = home / "agents" / ".claude" / "projects", home / "agents" / ".codex"
    shutil.copytree(real / "claude-code", claude)
    for rollouts in (real / "codex").glob("*/.codex/sessions"):
        shutil.copytree(rollouts, codex / "sessions" / rollouts.parts[-3])
    write_config(home, sources_toml(claude_code=claude, codex=codex, gemini_cli=None,
                                    aider=None))
    report = ccusage(home / "agents", tz, "daily")
    theirs = {(day["period"], m["modelName"]): (m["inputTokens"], m["outputTokens"],
                                                m["cacheCreationTokens"], m["cacheReadTokens"])
              for day in report["daily"] for m in day["modelBreakdowns"]}
    with ours() as memory:
        rows = memory.usage("day", breakdown=True)
    mine = {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"])
            for r in rows for m in r["models"]}
    assert {model for _, model in theirs} >= {"gpt-5-codex", "claude-sonnet-4-5-20250929"}
    assert mine == theirs
    assert_equal(our_counts(rows, "day", set()), their_days(report))  # and the cost


# -- OpenCode, Copilot CLI and Gemini CLI ------------------------------------------------

Counts = dict[tuple[str, str], tuple[Any, ...]]
RUN = "~run"  # a Copilot session's run of the process, in the split copy for ccusage


@pytest.fixture
def others(home: Path) -> Path:
    """A home as OpenCode, Copilot CLI and Gemini CLI leave it, each in its default place."""
    data = home / "agents"
    shutil.copytree(FIXTURES / "opencode" / "storage",
                    data / ".local" / "share" / "opencode" / "storage")
    corpus.write_opencode_session(data / ".local" / "share" / "opencode" / "storage")
    shutil.copytree(FIXTURES / "copilot-cli" / "session-state", data / ".copilot" / "session-state")
    corpus.write_gemini_sessions(data / ".gemini" / "tmp")
    write_config(home, sources_toml(
        claude_code=None, codex=None, aider=None, gemini_cli=data / ".gemini" / "tmp",
        copilot_cli=data / ".copilot" / "session-state",
        opencode=data / ".local" / "share" / "opencode" / "storage"))
    return data


def split_runs(state: Path, into: Path) -> Path:
    """A copy of Copilot's session-state where each run of a session (up to and including
    its shutdown record) is a session folder of its own: ccusage then counts every
    shutdown whole, as we count it."""
    for events in state.glob("*/events.jsonl"):
        runs: list[list[str]] = [[]]
        for line in events.read_text("utf-8").splitlines(keepends=True):
            runs[-1].append(line)
            if json.loads(line).get("type") == "session.shutdown":
                runs.append([])
        for n, run in enumerate(r for r in runs if r):
            folder = into / "session-state" / (events.parent.name + (f"{RUN}{n}" if n else ""))
            folder.mkdir(parents=True)
            (folder / "events.jsonl").write_text("".join(run), "utf-8")
    return into


def run_ccusage(home: Path, tz: str, *args: str, **env: str) -> Any:
    assert CCUSAGE is not None
    proc = subprocess.run([CCUSAGE, *args, "--json", "--offline", "--timezone", tz],
                          env={"PATH": os.environ["PATH"], "HOME": str(home), "TZ": tz,
                               "NO_COLOR": "1", **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def their_days(report: Any) -> Counts:
    return {(day.get("period") or day["date"], m["modelName"]): (
        m["inputTokens"], m["outputTokens"], m["cacheCreationTokens"], m["cacheReadTokens"],
        m["cost"]) for day in report["daily"] for m in day["modelBreakdowns"]}


def their_sessions(report: Any) -> Counts:
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for s in report["sessions"]:
        row = totals[s["sessionId"].split(RUN)[0]]
        for n, field in enumerate(("inputTokens", "outputTokens", "cacheCreationTokens",
                                   "cacheReadTokens", "totalCost")):
            row[n] += s[field]
    return {("", sid): tuple(row) for sid, row in totals.items()}


def our_counts(rows: list[dict[str, Any]], by: str, reasoning_apart: set[str]) -> Counts:
    """Our rows (`usage --by day --breakdown` or `--by session`) keyed as ccusage's, with
    output as ccusage shows it for the tools in `reasoning_apart`: reasoning left out."""
    counts: Counts = {}
    for r in rows:
        if by == "session":
            tool, sid = r["key"].split(":", 1)
            cells = [(("", sid), tool, r)]
        else:
            cells = [((r["key"], m["model"]), MODEL_TOOL.get(m["model"], ""), m)
                     for m in r["models"]]
        for key, tool, c in cells:
            apart = c["reasoning"] if tool in reasoning_apart else 0
            counts[key] = (c["input"], c["output"] - apart, c["cache_creation"],
                           c["cache_read"], c["cost_usd"])
    return counts


MODEL_TOOL = {"claude-sonnet-4-5-20250929": "opencode", corpus.OPENCODE_MODEL: "opencode",
              corpus.GEMINI_PRO: "gemini-cli", corpus.GEMINI_FLASH: "gemini-cli"}


def assert_equal(mine: Counts, theirs: Counts) -> None:
    """Tokens exactly; cost to our six decimals."""
    assert mine.keys() == theirs.keys()
    for key, (*tokens, cost) in mine.items():
        assert (key, *tokens) == (key, *theirs[key][:4])
        assert cost == pytest.approx(theirs[key][4], abs=1e-6), key


def test_other_tools_day_by_model_equal_ccusage_daily(others: Path, tmp_path: Path,
                                                      tz: str) -> None:
    runs = split_runs(others / ".copilot" / "session-state", tmp_path / "runs")
    copilot = run_ccusage(others, tz, "copilot", "daily", COPILOT_HOME=str(runs))
    theirs = {**their_days(run_ccusage(others, tz, "opencode", "daily")),
              **their_days(run_ccusage(others, tz, "gemini", "daily")),
              **their_days(copilot)}
    rewound = theirs.pop(("2026-03-02", corpus.GEMINI_REWOUND))  # counted by ccusage only
    assert rewound[:4] == (3000 - 2000 + 7, 70, 0, 2000)
    with ours() as memory:
        rows = memory.usage("day", breakdown=True)
    assert_equal(our_counts(rows, "day", {"opencode", "gemini-cli"}), theirs)
    # A Copilot run is spent as its requests: as many responses as ccusage counts messages.
    (day,) = copilot["daily"]
    assert sum(m["responses"] for r in rows for m in r["models"] if r["key"] == day["date"]
               and m["model"] in day["modelsUsed"]) == day["messageCount"] == 54 + 16 + 39
    # The hand-made OpenCode message: output 200 and reasoning 300 are 500 output tokens.
    (opencode,) = [m for r in rows for m in r["models"] if m["model"] == corpus.OPENCODE_MODEL]
    assert (opencode["input"], opencode["output"], opencode["cache_read"],
            opencode["reasoning"]) == (1200, 500, 800, 300)
    gemini = {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                       m["cache_read"], m["reasoning"])
              for r in rows for m in r["models"] if MODEL_TOOL.get(m["model"]) == "gemini-cli"}
    assert gemini == (corpus.GEMINI_EXPECTED if tz == corpus.TZ else corpus.GEMINI_EXPECTED_UTC)


def test_other_tools_sessions_equal_ccusage_session(others: Path, tmp_path: Path,
                                                    tz: str) -> None:
    runs = split_runs(others / ".copilot" / "session-state", tmp_path / "runs")
    theirs = {**their_sessions(run_ccusage(others, tz, "opencode", "session")),
              **their_sessions(run_ccusage(others, tz, "gemini", "session")),
              **their_sessions(run_ccusage(others, tz, "copilot", "session",
                                           COPILOT_HOME=str(runs)))}
    # The rewound response, which ccusage alone counts, as its daily report has it.
    rewound = their_days(run_ccusage(others, tz, "gemini", "daily"))[
        ("2026-03-02", corpus.GEMINI_REWOUND)]
    gemini = ("", corpus.GEMINI_ID)
    theirs[gemini] = tuple(a - b for a, b in zip(theirs[gemini], rewound, strict=True))
    # ccusage makes a subagent's log (chats/<parent sessionId>/) a session of its own.
    subagent = theirs.pop(("", corpus.GEMINI_SUBAGENT))
    theirs[gemini] = tuple(a + b for a, b in zip(theirs[gemini], subagent, strict=True))
    with ours() as memory:
        rows = memory.usage("session")
    assert_equal(our_counts(rows, "session", {"opencode", "gemini-cli"}), theirs)


def test_ccusage_subtracts_a_resumed_copilot_sessions_runs(others: Path, tz: str) -> None:
    """On the session as Copilot left it, ccusage 20.0.24 differs from us on one figure
    set: the resumed session's opus counts, where it subtracts run 1's from run 2's field
    by field (what went down counts 0). Run 2 reports 39 requests, its own 39
    assistant.turn_start records, and fewer output tokens than run 1: its counts are its
    own, not a running total."""
    theirs = their_days(run_ccusage(others, tz, "copilot", "daily"))
    with ours() as memory:
        rows = memory.usage("day", breakdown=True)
    mine = {k: v for k, v in our_counts(rows, "day", set()).items() if k in theirs}
    opus = ("2026-03-20", "claude-opus-4.6")
    assert {k for k in theirs if theirs[k][:4] != mine[k][:4]} == {opus}
    run1 = (3832521 - 3399168, 12356, 0, 3399168)
    run2 = (4137889 - 3908170, 8545, 0, 3908170)
    assert mine[opus][:4] == tuple(a + b for a, b in zip(run1, run2, strict=True))
    assert theirs[opus][:4] == tuple(a + max(b - a, 0) for a, b in zip(run1, run2, strict=True))
