"""Usage by the quarter hour of spend: our numbers against hand-computed ones, the day a token lands
on, once per response, cost, blocks, eviction, old digests, and the command."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from session_memory import config, formats, prices
from session_memory.cli import cli, common, usage_cmd
from session_memory.clock import FixedClock
from session_memory.memory import Memory
from tests import usage_corpus as corpus
from tests.conftest import FIXTURES, in_time_zone, sources_toml, write_config


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The process's local time is New York's (SQLite and time.mktime read TZ)."""
    yield from in_time_zone(monkeypatch, corpus.TZ)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, "UTC")


def configure(home: Path, claude: Path, codex: Path, extra: str = "") -> None:
    write_config(home, sources_toml(claude_code=claude, codex=codex, gemini_cli=None,
                                    aider=None) + extra)


@pytest.fixture
def corpus_home(home: Path) -> Path:
    """The hand-made sessions, written as the tools write them, and a config reading them."""
    data = home / "agents"
    corpus.write_claude_sessions(data / "claude" / "projects")
    corpus.write_codex_sessions(data / "codex")
    configure(home, data / "claude" / "projects", data / "codex")
    return data


def open_memory(now: float = 1_800_000_000.0) -> Memory:
    return Memory(config.load(), clock=FixedClock(now))


def analyzed_memory(now: float = 1_800_000_000.0) -> Memory:
    memory = open_memory(now)
    memory.ingest()
    result = memory.analyze_report()
    assert not result.failed
    return memory


def day_model(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, ...]]:
    """(day, model) -> (input, output, cache_creation, cache_read) from breakdown rows."""
    return {(r["key"], m["model"]): (m["input"], m["output"], m["cache_creation"],
                                     m["cache_read"])
            for r in rows for m in r["models"]}


def test_day_by_model_matches_hand_computed_totals(corpus_home: Path, local_tz: str) -> None:
    with analyzed_memory() as memory:
        rows = memory.usage("day", breakdown=True)
    assert day_model(rows) == {**corpus.CLAUDE_EXPECTED, **corpus.CODEX_EXPECTED}
    # Day rows add their models up; input never holds cache reads (Codex's came off).
    by_day = {r["key"]: r for r in rows}
    assert by_day["2026-03-01"]["input"] == 10 + 800
    assert by_day["2026-03-01"]["cache_read"] == 200
    assert by_day["2026-03-02"]["input"] == 5 + 40 + 700


def test_a_session_across_midnight_lands_on_both_days(corpus_home: Path,
                                                       local_tz: str) -> None:
    with analyzed_memory() as memory:
        first = memory.usage("session", since="2026-03-01", until="2026-03-01")
        second = memory.usage("session", since="2026-03-02", until="2026-03-02")
    crossing = {f"claude-code:{corpus.CLAUDE_A}", f"codex:{corpus.CODEX_ID}"}
    assert crossing <= {r["key"] for r in first}
    assert crossing <= {r["key"] for r in second}
    a_first = next(r for r in first if r["key"] == f"claude-code:{corpus.CLAUDE_A}")
    assert (a_first["input"], a_first["output"]) == (10, 200)  # m1 only, before midnight


def test_the_same_days_in_utc(corpus_home: Path, utc: None) -> None:
    # 04:40Z and 05:10Z are both on 2 March in UTC.
    with analyzed_memory() as memory:
        rows = day_model(memory.usage("day", breakdown=True))
    assert rows[("2026-03-02", corpus.SONNET)] == (15, 500, 1100, 1000)
    assert rows[("2026-03-02", corpus.CODEX_MODEL)] == (1500, 100, 0, 2000)


def test_a_response_two_sessions_hold_counts_once_whichever_is_analyzed_first(
        corpus_home: Path, local_tz: str) -> None:
    with open_memory() as memory:
        memory.ingest()
        # The resumed copy first: the response then moves to the earlier copy's session
        # (equal counts, written earlier), so the day and the session are ccusage's.
        assert memory.analyze([f"claude-code:{corpus.CLAUDE_B}"])
        assert memory.analyze([f"claude-code:{corpus.CLAUDE_A}"])
        rows = memory.usage("session", breakdown=True)
        memory.analyze([f"claude-code:{corpus.CLAUDE_B}"], force=True)  # again: no change
        assert memory.usage("session", breakdown=True) == rows
    sessions = {r["key"]: r for r in rows}
    b = sessions[f"claude-code:{corpus.CLAUDE_B}"]
    assert (b["input"], b["output"], b["cache_read"]) == (7, 70, 500)  # m4 alone
    a = sessions[f"claude-code:{corpus.CLAUDE_A}"]
    assert (a["input"], a["output"]) == (10 + 5 + 40, 200 + 300 + 4)


def test_fixture_days_by_model(home: Path, tmp_path: Path, utc: None) -> None:
    """The Claude Code fixtures, as the tool writes them, in UTC: these totals were worked
    out from the records (one response counted once across edge_cases and todowrite,
    streaming copies once) and agree with ccusage 20.0.24's."""
    claude = tmp_path / "claude"
    corpus.rewrite_tree(FIXTURES / "claude-code" / "projects", claude)
    corpus.rewrite_tree(FIXTURES / "codex", tmp_path / "codex")
    configure(home, claude, tmp_path / "codex")
    with analyzed_memory() as memory:
        rows = day_model(memory.usage("day", breakdown=True))
    assert rows == FIXTURE_DAY_MODEL


FIXTURE_DAY_MODEL = {
    ("2025-06-14", "claude-3-sonnet-20240229"): (320, 350, 0, 0),
    ("2025-06-14", "claude-sonnet-4"): (168, 85, 0, 0),
    ("2025-06-14", "claude-opus-4"): (10, 12, 0, 0),
    ("2025-07-01", "claude-sonnet-4-20250514"): (50, 25, 0, 0),
    ("2025-07-03", "claude-3-sonnet-20240229"): (238, 480, 0, 0),
    ("2025-07-03", "claude-sonnet-4"): (715, 243, 0, 0),
    ("2025-07-19", "claude-opus-4-20250514"): (14, 643, 19749, 36713),
    ("2025-11-19", "claude-sonnet-4-5-20250929"): (9, 738, 164054, 141272),
    ("2026-01-23", "claude-haiku-4-5-20251001"): (4466, 18, 42768, 236968),
    ("2026-01-23", "claude-opus-4-5-20251101"): (2, 2, 7996, 36009),
    ("2026-04-18", "claude-opus-4-7"): (2546, 53458, 398573, 2455695),
    ("2026-06-15", "claude-haiku-4-5-20251001"): (1020, 440, 0, 0),
    ("2026-06-28", "claude-opus-4-8"): (10, 10, 0, 0),
    ("2026-06-28", "claude-sonnet-4-6"): (5, 5, 0, 0),
}


def test_cost_per_row_from_the_price_table(corpus_home: Path, local_tz: str) -> None:
    with analyzed_memory() as memory:
        rows = {r["key"]: r for r in memory.usage("model")}
    sonnet = rows[corpus.SONNET]
    # claude-sonnet-4-5 per million: $3 in, $15 out, $3.75 cache write, $0.30 cache read.
    hand = (22 * 3 + 570 * 15 + 1100 * 3.75 + 1500 * 0.30) / 1e6
    assert sonnet["cost_usd"] == pytest.approx(hand)
    assert sonnet["prices"][corpus.SONNET].startswith("genai-prices ")
    codex = rows[corpus.CODEX_MODEL]
    # gpt-5 pricing: $1.25 in, $10 out, $0.125 cached input.
    assert codex["cost_usd"] == pytest.approx((1500 * 1.25 + 100 * 10 + 2000 * 0.125) / 1e6)


def test_unknown_model_costs_null_and_config_prices_it(home: Path, local_tz: str) -> None:
    projects = home / "agents" / "claude" / "projects"
    corpus._write(projects / "-x" / "dddddddd-0000-4000-8000-00000000000d.jsonl", [
        corpus._claude("dddddddd-0000-4000-8000-00000000000d", "2026-03-05T12:00:00Z", "z1",
                       "rz", "house-model-7b", {"input_tokens": 1000, "output_tokens": 100})])
    configure(home, projects, home / "none")
    with analyzed_memory() as memory:
        row = memory.usage("day")[0]
    assert row["cost_usd"] is None  # never 0
    assert row["prices"] == {"house-model-7b": None}
    assert row["unpriced_models"] == ["house-model-7b"]
    configure(home, projects, home / "none", '[prices."house-*"]\ninput = 2.0\noutput = 8.0\n')
    with open_memory() as memory:
        row = memory.usage("day")[0]
    assert row["cost_usd"] == pytest.approx((1000 * 2 + 100 * 8) / 1e6)
    assert row["prices"] == {"house-model-7b": "config"}


def test_long_prompts_take_the_long_context_price(home: Path, utc: None) -> None:
    projects = home / "agents" / "claude" / "projects"
    sid = "eeeeeeee-0000-4000-8000-00000000000e"
    corpus._write(projects / "-x" / f"{sid}.jsonl", [
        corpus._claude(sid, "2026-03-05T12:00:00Z", "l1", "rl", corpus.SONNET,
                       {"input_tokens": 1000, "output_tokens": 10,
                        "cache_read_input_tokens": 250_000}),
        corpus._claude(sid, "2026-03-05T12:01:00Z", "l2", "rl2", corpus.SONNET,
                       {"input_tokens": 1000, "output_tokens": 10})])
    configure(home, projects, home / "none")
    with analyzed_memory() as memory:
        row = memory.usage("day")[0]
    # Over 200k prompt tokens sonnet-4-5 costs $6 in, $22.50 out, $0.60 cache read.
    long = (1000 * 6 + 10 * 22.5 + 250_000 * 0.6) / 1e6
    short = (1000 * 3 + 10 * 15) / 1e6
    assert row["cost_usd"] == pytest.approx(long + short)


def test_prompt_tiers_cover_every_threshold_in_the_table() -> None:
    assert prices.table_tier_starts() <= set(prices.PROMPT_TIERS)
    assert prices.prompt_class(200_000) == 199_999
    assert prices.prompt_class(200_001) == 200_000
    assert prices.prompt_class(10) == 0


@pytest.mark.parametrize("table", [
    '[prices."m"]\ninput = 1.0\n',  # no output price
    '[prices."m"]\ninput = -1.0\noutput = 1.0\n',
    '[prices."m"]\ninput = 1.0\noutput = "cheap"\n',
    '[prices."m"]\ninput = 1.0\noutput = 1.0\ncache_writes = 2.0\n',
    'prices = 3\n',
])
def test_bad_price_overrides_are_a_bad_config(home: Path, table: str) -> None:
    write_config(home, table)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 78, result.output


def test_blocks_as_ccusage_draws_them(corpus_home: Path, local_tz: str) -> None:
    now = time.mktime((2026, 3, 3, 11, 0, 0, 0, 0, -1))  # 16:00Z, an hour into the last
    with analyzed_memory(now) as memory:
        blocks = memory.usage_blocks()
    assert [(b["id"], b["gap"], b["active"]) for b in blocks] == [
        ("2026-03-02T04:00:00.000Z", False, False),
        ("gap-2026-03-02T10:20:00.000Z", True, False),
        ("2026-03-03T15:00:00.000Z", False, True)]
    first = blocks[0]
    assert (first["input"], first["output"], first["cache_creation"], first["cache_read"]) == (
        55, 504, 1100, 1000)
    assert first["end"] == "2026-03-02T09:00:00.000Z"
    assert first["models"] == [corpus.SONNET, corpus.HAIKU]
    assert first["cost_usd"] == pytest.approx(0.01203)  # as ccusage prices it too


@pytest.fixture
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from in_time_zone(monkeypatch, request.param)


@pytest.mark.parametrize(("zone", "before", "after"), [
    ("Asia/Kolkata", "18:20", "18:40"),  # +05:30: local midnight is 18:30Z
    ("Asia/Kathmandu", "18:05", "18:25"),  # +05:45: 18:15Z
], indirect=["zone"])
def test_local_midnight_within_a_utc_hour_parts_that_hours_responses(
        home: Path, zone: str, before: str, after: str) -> None:
    """Two responses of one UTC hour, either side of local midnight in a zone whose offset
    is not whole hours: kept by the hour, both fell on the day the hour began in."""
    projects = home / "agents" / "claude" / "projects"
    sid = "eeeeeeee-0000-4000-8000-00000000000f"
    corpus._write(projects / "-x" / f"{sid}.jsonl", [
        corpus._claude(sid, f"2026-03-05T{before}:00Z", "q1", "rq1", corpus.SONNET,
                       {"input_tokens": 1, "output_tokens": 10}),
        corpus._claude(sid, f"2026-03-05T{after}:00Z", "q2", "rq2", corpus.SONNET,
                       {"input_tokens": 2, "output_tokens": 20})])
    configure(home, projects, home / "none")
    expected = {("2026-03-05", corpus.SONNET): (1, 10, 0, 0),
                ("2026-03-06", corpus.SONNET): (2, 20, 0, 0)}
    with analyzed_memory() as memory:
        assert day_model(memory.usage("day", breakdown=True)) == expected
        # The same read session by session (a filter), and from local midnight on.
        assert day_model(memory.usage("day", project="/work", breakdown=True)) == expected
        assert [(r["key"], r["output"]) for r in memory.usage("day", since="2026-03-06")] == [
            ("2026-03-06", 20)]
        # A billing block still starts at the hour of its first response.
        assert [b["id"] for b in memory.usage_blocks()] == ["2026-03-05T18:00:00.000Z"]


def test_an_evicted_session_keeps_its_usage_by_slot(corpus_home: Path, local_tz: str) -> None:
    with analyzed_memory() as memory:
        before = {by: memory.usage(by, breakdown=True) for by in ("day", "session", "model")}
        blocks_before = memory.usage_blocks()
        report = memory.sweep()  # 45 days after they ended: the backstop evicts them all
        evicted = report["backstop_evicted"]
        assert sorted(evicted) == sorted([f"claude-code:{corpus.CLAUDE_A}",
                                          f"claude-code:{corpus.CLAUDE_B}",
                                          f"codex:{corpus.CODEX_ID}"])
        assert {s["state"] for s in memory.sessions()} == {"evicted"}
        assert memory.reanalyze_stale() == []
        after = {by: memory.usage(by, breakdown=True) for by in ("day", "session", "model")}
        assert after == before
        assert memory.usage_blocks() == blocks_before


def test_a_parser_change_makes_only_its_formats_digests_again(
        corpus_home: Path, local_tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from session_memory.analyze.digest import analyzer_version
    from session_memory.formats import codex

    with analyzed_memory() as memory:
        ids = {s["id"] for s in memory.sessions()}
        codex_ids = sorted(i for i in ids if i.startswith("codex:"))
        assert codex_ids and len(codex_ids) < len(ids)
        assert memory.reanalyze_stale() == []
        expected = memory.usage("day", breakdown=True)
        monkeypatch.setattr(codex, "PARSER_VERSION", codex.PARSER_VERSION + 1)
        assert sorted(memory.reanalyze_stale()) == codex_ids
        assert memory.reanalyze_stale() == []
        assert {i: (memory.tier2.get_digest(i) or {})["analyzer_version"] for i in ids} == {
            i: analyzer_version(formats.get(i.split(":", 1)[0]).PARSER_VERSION) for i in ids}
        assert memory.usage("day", breakdown=True) == expected


def test_old_digests_are_rederived_from_raw_or_kept_whole(corpus_home: Path,
                                                          local_tz: str) -> None:
    with analyzed_memory() as memory:
        expected = memory.usage("day", breakdown=True)
        sid = f"codex:{corpus.CODEX_ID}"
        old = memory.tier2.get_digest(sid)
        assert old is not None
        # A digest as analyzer 1 made it: no hourly usage; Codex input held cache reads.
        old["analyzer_version"] = 1
        old["tokens_by_model"] = {corpus.CODEX_MODEL: {
            "input": 3500, "output": 100, "cache_creation": 0, "cache_read": 2000,
            "reasoning": 15}}
        memory.tier2.put_digest(sid, "codex", old, memory.clock.now())
        # Raw still there: analyzed again from it, by the hour.
        assert memory.reanalyze_stale() == [sid]
        assert memory.usage("day", breakdown=True) == expected
        # Raw gone: the session's old totals, at its start hour, and said so.
        memory.tier2.put_digest(sid, "codex", old, memory.clock.now())
        with memory.tier1.transaction():
            memory.tier1.evict(sid, memory.clock.now())
        assert memory.reanalyze_stale() == []
        rows = {r["key"]: r for r in memory.usage("session")}
    assert rows[sid]["input"] == 3500 - 2000 and rows[sid]["cache_read"] == 2000
    assert rows[sid]["whole_session_estimates"] == 1


def test_weeks_months_projects_and_sources(corpus_home: Path, local_tz: str) -> None:
    with analyzed_memory() as memory:
        assert [r["key"] for r in memory.usage("week")] == ["2026-W09", "2026-W10"]
        assert [r["key"] for r in memory.usage("month")] == ["2026-03"]
        assert {r["key"] for r in memory.usage("source")} == {"claude-code", "codex"}
        assert [r["key"] for r in memory.usage("project")] == ["/work/app"]
        assert memory.usage("day", project="/elsewhere") == []
        assert [r["key"] for r in memory.usage("day", project="/work/*")] == [
            "2026-03-01", "2026-03-02", "2026-03-03"]
        only = memory.usage("day", project="work/app", until="2026-03-01")
        assert [r["key"] for r in only] == ["2026-03-01"]


def test_sessions_rows_gain_tokens_and_cost(corpus_home: Path, local_tz: str) -> None:
    with analyzed_memory() as memory:
        rows = {r["id"]: r for r in memory.sessions()}
    a = rows[f"claude-code:{corpus.CLAUDE_A}"]
    assert a["tokens"] == {"input": 55, "output": 504, "cache_creation": 1100,
                           "cache_read": 1000, "reasoning": 0}
    assert a["cost_usd"] > 0
    codex = rows[f"codex:{corpus.CODEX_ID}"]
    assert codex["tokens"]["input"] == 1500 and codex["tokens"]["reasoning"] == 15


def test_usage_command_json_and_table(corpus_home: Path, local_tz: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    analyzed_memory().close()
    runner = CliRunner()
    result = runner.invoke(cli, ["usage", "--json", "--by", "month"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert set(row) >= {"key", "sessions", "input", "output", "cache_creation", "cache_read",
                        "reasoning", "cost_usd"}
    blocks = runner.invoke(cli, ["usage", "blocks", "--json"])
    assert blocks.exit_code == 0 and len(json.loads(blocks.stdout)) == 3
    bad = runner.invoke(cli, ["usage", "--json", "--until", "next week"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["exit_code"] == 2
    # On a terminal: a table with a bar a day and a totals row.
    console = Console(record=True, width=160, force_terminal=True)
    monkeypatch.setattr(common, "console", lambda err=False: console)
    with open_memory() as memory:
        usage_cmd._Table("day", memory.usage("day"), False).print()
    text = console.export_text()
    assert "█" in text and "total" in text and "2026-03-02" in text


def test_every_session_report_agrees_with_the_filtered_one(corpus_home: Path,
                                                            local_tz: str) -> None:
    """Over every session, days come from the all-session totals and each session's span;
    with a filter, from each session's hours: both must say the same. A session that
    paused for days (across the change to summer time) counts on its days only."""
    sid = "ffffffff-0000-4000-8000-00000000000f"
    corpus._write(corpus_home / "claude" / "projects" / "-work-app" / f"{sid}.jsonl", [
        corpus._claude(sid, "2026-03-07T12:00:00Z", "g1", "rg1", corpus.HAIKU,
                       {"input_tokens": 3, "output_tokens": 4}),
        corpus._claude(sid, "2026-03-10T12:00:00Z", "g2", "rg2", corpus.HAIKU,
                       {"input_tokens": 5, "output_tokens": 6})])
    with analyzed_memory() as memory:
        for by in ("day", "week", "month"):
            for window in ({}, {"since": "2026-03-02"}, {"until": "2026-03-02"},
                           {"since": "2026-03-02", "until": "2026-03-08"}):
                fast = memory.usage(by, **window)
                filtered = memory.usage(by, project="/work", **window)
                assert fast == filtered, (by, window)
        days = {r["key"]: r["sessions"] for r in memory.usage("day")}
    assert days == {"2026-03-01": 2, "2026-03-02": 2, "2026-03-03": 1, "2026-03-07": 1,
                    "2026-03-10": 1}


def test_no_usage_says_which_sessions_are_not_counted_yet(corpus_home: Path,
                                                           local_tz: str) -> None:
    """Right after a first ingest nothing is analyzed: `usage` says so, not just that
    nothing was recorded."""
    with open_memory() as memory:
        assert memory.ingest().errors == 0
        waiting = len(memory.sessions())
    runner = CliRunner()
    result = runner.invoke(cli, ["usage"])
    assert result.exit_code == 0 and result.stdout == ""
    assert waiting > 1
    assert f"no usage recorded; {waiting} sessions without a digest yet are not" in result.stderr
    assert "analyze --all" in result.stderr
    assert json.loads(runner.invoke(cli, ["usage", "--json"]).stdout) == []
    # Analyzed while still active (analyze --all): counted, so no longer waiting.
    with open_memory(now=0.0) as memory:
        assert {s["state"] for s in memory.sessions()} == {"active"}
        assert not memory.analyze_report(include_active=True).failed
        assert memory.not_analyzed() == 0
    empty = runner.invoke(cli, ["usage", "--until", "2000-01-01"])
    assert empty.stderr.strip() == "no usage recorded in that window"


@pytest.mark.parametrize(("zone", "warned"), [
    ("America/NewYork", True), ("Mars/Olympus", True), (":Europe/Pariss", True),
    ("America", True),  # a folder of zones, no zone
    ("America/New_York", False), (":Europe/Paris", False), ("UTC", False),
    ("EST5EDT", False), ("CET-1CEST,M3.5.0,M10.5.0/3", False), ("", False)])
def test_usage_says_when_tz_is_no_zone_the_system_knows(
        corpus_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, zone: str,
        warned: bool) -> None:
    """A mistyped TZ leaves the C library on UTC without a word: usage says so."""
    zones = tmp_path / "zoneinfo"  # the system's zone files, as far as this test goes
    for known in ("America/New_York", "Europe/Paris", "UTC"):
        (zones / known).parent.mkdir(parents=True, exist_ok=True)
        (zones / known).write_bytes(b"TZif")
    monkeypatch.setenv("TZDIR", str(zones))
    monkeypatch.setenv("TZ", zone)
    result = CliRunner().invoke(cli, ["usage"])
    assert result.exit_code == 0, result.output
    assert ("is no time zone this system knows" in result.stderr) == warned
    assert json.loads(CliRunner().invoke(cli, ["usage", "--json"]).stdout) == []
    blocks = CliRunner().invoke(cli, ["usage", "blocks"])  # its times are local too
    assert ("is no time zone this system knows" in blocks.stderr) == warned


@pytest.mark.parametrize("known", [True, False])
def test_usage_looks_for_tz_where_the_c_library_does(
        corpus_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, known: bool) -> None:
    """In TZDIR when set (else the system's zoneinfo folders), not in Python's tzdata
    package: without the zone's file there, the C library keeps UTC, whatever Python knows."""
    zones = tmp_path / "zoneinfo"
    (zones / "America").mkdir(parents=True)
    if known:
        (zones / "America" / "New_York").write_bytes(b"TZif")
    monkeypatch.setenv("TZDIR", str(zones))
    monkeypatch.setenv("TZ", "America/New_York")
    result = CliRunner().invoke(cli, ["usage"])
    assert result.exit_code == 0, result.output
    assert ("TZ='America/New_York' is no time zone this system knows" in result.stderr
            ) == (not known)
