"""The daemon end to end: a subprocess, a notify socket, writer processes, the real stores."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from session_memory import config
from session_memory import daemon as daemon_mod
from session_memory.analyze import worker
from session_memory.clock import FixedClock
from session_memory.daemon import ANALYZE_BACKOFF, LIVE_DIGEST_SECONDS, Daemon
from session_memory.errors import NotFoundError
from session_memory.memory import Memory
from session_memory.store.tier1 import DEEP_SEAL_LEVEL, PACK_MIN_RAW_BYTES
from tests.daemon_harness import DaemonProcess, NotifySocket, Writer

VISIBLE_WITHIN = 20.0
"""How long the tests wait for an append to be stored: generous, for a loaded machine. The
latency itself (well under two seconds) is measured by tests/bench/bench_daemon.py."""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Env:
    """Three source roots, a data dir and a config, all under the test's temp home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.roots = {name: home / "src" / name for name in ("claude-code", "codex", "gemini-cli")}
        for root in self.roots.values():
            root.mkdir(parents=True)
        self.data_dir = home / "data"
        self.config_path = Path(os.environ["XDG_CONFIG_HOME"]) / "session-memory" / "config.toml"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.extra = ""

    def write_config(self, *, idle: str = "1h", sweep: str = "1h", rescan: str = "5m",
                     extra: str = "") -> None:
        sources = "\n".join(f'[sources.{name}]\nformat = "{name}"\nroot = "{root}"\n'
                            for name, root in self.roots.items())
        self.config_path.write_text(
            f'[storage]\ndata_dir = "{self.data_dir}"\n'
            f'[ingest]\nidle_seconds = "{idle}"\nrescan_interval = "{rescan}"\n'
            f'[retention]\nsweep_interval = "{sweep}"\n'
            f'{sources}\n[sources.aider]\nenabled = false\n{extra}')

    def memory(self) -> Memory:
        return Memory(config.load(self.config_path))


@pytest.fixture
def env(home: Path) -> Env:
    return Env(home)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def start(env: Env, notify: NotifySocket, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def _start(**extra_env: str) -> DaemonProcess:
        d = DaemonProcess(env.config_path, notify, tmp_path / "daemon.log", extra_env)
        started.append(d)
        d.wait_ready()
        return d

    yield _start
    for d in started:
        d.stop()


@pytest.fixture
def writer() -> Iterator[Writer]:
    w = Writer()
    yield w
    w.close()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except NotFoundError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.03)


def assert_visible(memory: Memory, sid: str, root: Path, rel: str, out: Path) -> float:
    """Poll `export` until the stored copy equals the source file; the seconds it took."""
    t0 = time.monotonic()
    want = (root / rel).read_bytes()

    def same() -> bool:
        memory.export(sid, out)
        return (out / rel).is_file() and (out / rel).read_bytes() == want

    wait_until(same, VISIBLE_WITHIN, f"{sid} {rel} stored")
    return time.monotonic() - t0


def claude_record(sid: str, text: str, kind: str = "user") -> str:
    if kind == "user":
        msg: dict[str, Any] = {"role": "user", "content": text}
    else:
        msg = {"id": f"msg_{uuid.uuid4().hex[:8]}", "role": "assistant", "model": "claude-x",
               "content": [{"type": "text", "text": text}],
               "usage": {"input_tokens": 10, "output_tokens": 5}}
    return json.dumps({"type": kind, "uuid": str(uuid.uuid4()), "sessionId": sid,
                       "timestamp": _now_iso(), "cwd": "/work/p", "message": msg})


def write_ended(path: Path, text: str) -> None:
    """A session file last written a day ago: ended, whatever idle_seconds is."""
    old = time.time() - 86400
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (old, old))


class PassCounter:
    """How many analysis passes ran: each sets worker.pass_conditions once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        conditions = worker.pass_conditions

        @contextlib.contextmanager
        def counted() -> Iterator[None]:
            self.count += 1
            with conditions():
                yield

        monkeypatch.setattr(worker, "pass_conditions", counted)


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> PassCounter:
    return PassCounter(monkeypatch)


@contextlib.contextmanager
def opened(env: Env, clock: FixedClock) -> Iterator[Daemon]:
    """The daemon with its store open in this process, as its start leaves it: the test
    runs its jobs one at a time."""
    daemon = Daemon(config.load(env.config_path), config_path=env.config_path, clock=clock)
    daemon._open()
    try:
        yield daemon
    finally:
        daemon._close()


def test_appends_reach_the_store_within_two_seconds(env: Env, start: Callable[..., DaemonProcess],
                                                    writer: Writer, notify: NotifySocket,
                                                    tmp_path: Path) -> None:
    env.write_config()
    daemon = start(WATCHDOG_USEC="1000000")
    notify.wait_line("WATCHDOG=1", 5)  # pinged from the main loop at half the interval
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in notify.messages)

    cc_id, cx_id, gm_id = (str(uuid.uuid4()) for _ in range(3))
    cc_rel = f"-work-p/{cc_id}.jsonl"
    cx_rel = f"sessions/2026/01/02/rollout-2026-01-02T10-00-00-{cx_id}.jsonl"
    gm_rel = f"{'ab' * 32}/chats/session-2026-01-02T10-00-{gm_id[:8]}.jsonl"
    for root, rel in ((env.roots["claude-code"], cc_rel), (env.roots["codex"], cx_rel),
                      (env.roots["gemini-cli"], gm_rel)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    appends = {
        ("claude-code", cc_rel, f"claude-code:{cc_id}"): [
            claude_record(cc_id, "fix the bug"), claude_record(cc_id, "done", "assistant"),
            claude_record(cc_id, "thanks")],
        ("codex", cx_rel, f"codex:{cx_id}"): [
            json.dumps({"timestamp": _now_iso(), "type": "session_meta",
                        "payload": {"id": cx_id, "cwd": "/work/p"}}),
            json.dumps({"timestamp": _now_iso(), "type": "response_item", "payload": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "hi"}]}}),
            json.dumps({"timestamp": _now_iso(), "type": "event_msg",
                        "payload": {"type": "task_complete"}})],
        ("gemini-cli", gm_rel, f"gemini-cli:{gm_id}"): [
            json.dumps({"sessionId": gm_id, "projectHash": "ab" * 32, "startTime": _now_iso(),
                        "lastUpdated": _now_iso(), "kind": "main"}),
            json.dumps({"id": "m1", "timestamp": _now_iso(), "type": "user", "content": "hi"}),
            json.dumps({"id": "m2", "timestamp": _now_iso(), "type": "gemini",
                        "content": "hello", "model": "gemini-x"})],
    }
    latencies = []
    with env.memory() as memory:
        for step in range(3):
            for (source, rel, sid), lines in appends.items():
                writer.append(env.roots[source] / rel, lines[step])
                latencies.append(assert_visible(memory, sid, env.roots[source], rel,
                                                tmp_path / "out"))

        # A project folder created after the start is watched too.
        new_id = str(uuid.uuid4())
        new_rel = f"-work-new-project/{new_id}.jsonl"
        (env.roots["claude-code"] / "-work-new-project").mkdir()
        writer.append(env.roots["claude-code"] / new_rel, claude_record(new_id, "first"))
        latencies.append(assert_visible(memory, f"claude-code:{new_id}",
                                        env.roots["claude-code"], new_rel, tmp_path / "out"))
        writer.append(env.roots["claude-code"] / new_rel, claude_record(new_id, "second"))
        latencies.append(assert_visible(memory, f"claude-code:{new_id}",
                                        env.roots["claude-code"], new_rel, tmp_path / "out"))

        assert memory.status()["daemon"] == {"running": True, "pid": daemon.proc.pid}

    # One daemon per data dir: a second one refuses, clearly, and leaves the first alone.
    second = subprocess.run(
        [sys.executable, "-m", "session_memory", "--config", str(env.config_path), "daemon"],
        capture_output=True, text=True, timeout=20,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
    assert second.returncode == 1
    assert f"pid {daemon.proc.pid}" in second.stderr and "already runs" in second.stderr
    assert daemon.proc.poll() is None

    # A CLI writer works while the daemon runs (WAL and a busy timeout).
    pin = subprocess.run([sys.executable, "-m", "session_memory", "--config",
                          str(env.config_path), "pin", f"claude-code:{cc_id}"],
                         capture_output=True, text=True, timeout=30)
    assert pin.returncode == 0, pin.stderr
    with env.memory() as memory:
        assert memory.show(f"claude-code:{cc_id}")["pinned"] is True

    daemon.signal(signal.SIGTERM)
    notify.wait_line("STOPPING=1", 10)
    assert daemon.proc.wait(timeout=10) == 0
    with env.memory() as memory:
        assert memory.status()["daemon"]["running"] is False
    print("append-to-stored latencies (s):", [round(x, 3) for x in latencies])


def test_idle_sessions_get_digests(env: Env, start: Callable[..., DaemonProcess],
                                   writer: Writer) -> None:
    env.write_config(idle="1s")
    # A history of ended sessions, enough of them (PACK_MIN_RAW_BYTES) to be packed.
    history = {}
    for k in range(3):
        hid = str(uuid.uuid4())
        hpath = env.roots["claude-code"] / "-work-old" / f"{hid}.jsonl"
        write_ended(hpath, "".join(claude_record(hid, f"step {k}.{i} " + uuid.uuid4().hex * 1500)
                                   for i in range(64)))
        history[f"claude-code:{hid}"] = hpath
    assert sum(p.stat().st_size for p in history.values()) > PACK_MIN_RAW_BYTES
    start()
    sid = str(uuid.uuid4())
    path = env.roots["claude-code"] / "-work-p" / f"{sid}.jsonl"
    path.parent.mkdir()
    writer.append(path, claude_record(sid, "add a test for the parser"))
    writer.append(path, claude_record(sid, "added it", "assistant"))
    with env.memory() as memory:
        digest = wait_until(lambda: memory.show(f"claude-code:{sid}")["digest"], 15,
                            "a digest for the idle session")
        assert digest["first_prompt"] == "add a test for the parser"
        # The digest commits in Tier 2 first, then the state in Tier 1: a moment apart.
        wait_until(lambda: memory.show(f"claude-code:{sid}")["state"] == "analyzed", 15,
                   "the session marked analyzed")
        memory.export(f"claude-code:{sid}", env.home / "out")
        assert (env.home / "out" / "-work-p" / f"{sid}.jsonl").read_bytes() == path.read_bytes()
        # With nothing else to do, the daemon packs the ended sessions together, harder.
        packed = wait_until(lambda: [hid for hid in history if memory.tier1.conn.execute(
            "SELECT p.level FROM pack_members m JOIN packs p ON p.id = m.pack_id "
            "WHERE m.session_id = ? AND m.live", (hid,)
        ).fetchone() == (DEEP_SEAL_LEVEL,)], 30, "the history packed at the deep level")
        for hid in packed:
            out = env.home / "out" / hid.split(":")[1]
            memory.export(hid, out)
            assert (out / "-work-old" / history[hid].name).read_bytes() == \
                history[hid].read_bytes()


def test_ended_sessions_are_analyzed_in_one_pass_and_a_failed_one_waits(
        env: Env, passes: PassCounter) -> None:
    """The daemon analyzes the ended sessions in one pass, as `session-memory analyze` does
    (the pass's conditions set once, not once a session); one the analyzer fails on is
    tried again only after ANALYZE_BACKOFF."""
    def session(root: Path) -> str:
        sid = str(uuid.uuid4())
        write_ended(root / "-work-p" / f"{sid}.jsonl", claude_record(sid, f"task {sid}")
                    + "\n" + claude_record(sid, "done", "assistant") + "\n")
        return sid

    good = {f"claude-code:{session(env.roots['claude-code'])}" for _ in range(3)}
    gone_root = env.home / "src" / "gone"
    gone = f"gone:{session(gone_root)}"
    env.write_config(extra=f'[sources.gone]\nformat = "claude-code"\nroot = "{gone_root}"\n')
    with env.memory() as memory:
        memory.ingest()
    env.write_config()  # its source left the config: that session cannot be analyzed
    clock = FixedClock(time.time())
    with opened(env, clock) as daemon:
        assert daemon.memory is not None
        daemon._seal_and_analyze()
        states = {sid: daemon.memory.show(sid)["state"] for sid in [*good, gone]}
        assert states == {**dict.fromkeys(good, "analyzed"), gone: "ended"}
        assert passes.count == 1
        daemon._seal_and_analyze()
        assert passes.count == 1  # the failed one waits
        clock.advance(ANALYZE_BACKOFF + 1)
        daemon._seal_and_analyze()
        assert passes.count == 2
        assert daemon.memory.show(gone)["state"] == "ended"


def test_sweeps_run_on_schedule(env: Env, start: Callable[..., DaemonProcess]) -> None:
    env.write_config(sweep="1s")
    start()
    with env.memory() as memory:
        first = wait_until(lambda: memory.tier1.get_meta("last_sweep_at"), 10, "a first sweep")
        later = wait_until(lambda: (memory.tier1.get_meta("last_sweep_at") or 0) > first, 10,
                           "a second sweep, a second later")
        assert later
        assert memory.status()["last_sweep"] is not None


def test_the_log_at_info_tells_what_befell_sessions_not_every_append(
        env: Env, start: Callable[..., DaemonProcess], writer: Writer, tmp_path: Path) -> None:
    """Under a service manager the journal keeps every line: each append at info flooded it.
    At info: a session new, ended, analyzed; a sweep, with what each of its passes did."""
    env.write_config(idle="2s", sweep="2s")
    env.config_path.write_text(env.config_path.read_text().replace(
        "[retention]\n", "[retention]\nraw_max_age_days = 0.5\n"))
    old_id = str(uuid.uuid4())
    record = json.loads(claude_record(old_id, "an old question"))
    record["timestamp"] = "2026-01-02T10:00:00Z"  # its age counts from its last record
    write_ended(env.roots["claude-code"] / "-work-old" / f"{old_id}.jsonl",
                json.dumps(record) + "\n")
    daemon = start(SESSION_MEMORY_LOG_LEVEL="info")
    sid = str(uuid.uuid4())
    rel = f"-work-p/{sid}.jsonl"
    (env.roots["claude-code"] / "-work-p").mkdir()
    with env.memory() as memory:
        for text in ("fix the parser", "and its tests", "thanks"):
            writer.append(env.roots["claude-code"] / rel, claude_record(sid, text))
            assert_visible(memory, f"claude-code:{sid}", env.roots["claude-code"], rel,
                           tmp_path / "out")
        wait_until(lambda: memory.show(f"claude-code:{sid}")["state"] == "analyzed", 30,
                   "the live session analyzed once idle")
        wait_until(lambda: memory.show(f"claude-code:{old_id}")["state"] == "evicted", 30,
                   "the old session evicted by age")
    daemon.stop()
    lines = [json.loads(line) for line in daemon.log_path.read_text().splitlines()
             if line.startswith("{")]
    assert lines and all(line["level"] != "debug" for line in lines)
    assert not [line for line in lines if line["event"] == "ingested"]

    def about(event: str, session: str) -> list[dict[str, Any]]:
        return [line for line in lines
                if line["event"] == event and line.get("session") == f"claude-code:{session}"]

    assert len(about("new session", sid)) == 1 and about("new session", old_id)
    assert about("session ended", sid) and about("session analyzed", sid)
    sweeps = [line for line in lines if line["event"] == "sweep done"
              and line.get("backstop_evicted") == [f"claude-code:{old_id}"]]
    assert len(sweeps) == 1, [line for line in lines if line["event"] == "sweep done"]
    assert sweeps[0]["did"].startswith("backstop, by age: evicted 1 analyzed session that "
                                       "ended over 0.5 days ago")


def test_an_overdue_sweep_runs_at_start(env: Env, start: Callable[..., DaemonProcess]) -> None:
    env.write_config(sweep="1h")
    long_ago = time.time() - 2 * 3600
    with env.memory() as memory, memory.tier1.transaction("test"):
        memory.tier1.set_meta("last_sweep_at", long_ago)
    start()
    with env.memory() as memory:
        wait_until(lambda: (memory.tier1.get_meta("last_sweep_at") or 0) > long_ago, 10,
                   "the overdue sweep")


def test_sighup_reloads_and_a_bad_config_keeps_the_old(env: Env,
                                                       start: Callable[..., DaemonProcess],
                                                       writer: Writer, notify: NotifySocket,
                                                       tmp_path: Path) -> None:
    env.write_config()
    daemon = start()
    extra_root = env.home / "src" / "mytool"
    extra_root.mkdir(parents=True)
    env.write_config(extra=f'[sources.mytool]\nformat = "jsonl"\nroot = "{extra_root}"\n')
    daemon.signal(signal.SIGHUP)
    notify.wait_for(lambda m: "READY=1" in m.splitlines() and "config reloaded" in m, 10)
    with env.memory() as memory:
        writer.append(extra_root / "run.jsonl", '{"n": 1}')
        assert_visible(memory, "mytool:run.jsonl", extra_root, "run.jsonl", tmp_path / "out")

        env.config_path.write_text('[ingest]\nidle_seconds = "soon"\n')
        daemon.signal(signal.SIGHUP)
        notify.wait_for(lambda m: "config reload failed" in m, 10)
        assert daemon.proc.poll() is None
        writer.append(extra_root / "run.jsonl", '{"n": 2}')
        assert_visible(memory, "mytool:run.jsonl", extra_root, "run.jsonl", tmp_path / "out")
    assert "config reload failed" in daemon.log()

    daemon.signal(signal.SIGINT)
    notify.wait_line("STOPPING=1", 10)
    assert daemon.proc.wait(timeout=10) == 0


def test_a_bad_config_exits_78(env: Env, tmp_path: Path) -> None:
    env.config_path.write_text('[retention]\nraw_soft_cap = "lots"\n')
    done = subprocess.run([sys.executable, "-m", "session_memory", "--config",
                           str(env.config_path), "daemon"], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 78
    assert "raw_soft_cap" in done.stderr


def test_notify_socket_by_path(env: Env, tmp_path: Path) -> None:
    """A plain socket path works as well as an abstract name."""
    env.write_config()
    short = Path("/tmp") / f"sm-{uuid.uuid4().hex[:8]}.sock"
    sock = NotifySocket(short)
    try:
        d = DaemonProcess(env.config_path, sock, tmp_path / "daemon.log")
        try:
            d.wait_ready()
        finally:
            assert d.stop() == 0
        sock.wait_line("STOPPING=1", 5)
    finally:
        sock.close()
        short.unlink(missing_ok=True)


def test_recompression_holds_up_neither_appends_nor_a_stop(
        env: Env, start: Callable[..., DaemonProcess], writer: Writer, tmp_path: Path) -> None:
    from tests.bench.corpus import write_session

    env.write_config(idle="1s")
    # The generated records are dated weeks ago: no age limit must evict them meanwhile.
    env.config_path.write_text(env.config_path.read_text().replace(
        "[retention]\n", "[retention]\nraw_max_age_days = 3650\n"))
    big_sid = str(uuid.uuid4())
    big = env.roots["claude-code"] / "-work-big" / f"{big_sid}.jsonl"
    write_session(big, 10 * 2**20, seed=3)
    os.utime(big, (time.time() - 3600, time.time() - 3600))  # ended an hour ago
    with env.memory() as memory:
        memory.ingest()
        memory.seal()
        assert memory.tier1.to_deepen() == [f"claude-code:{big_sid}"]
    daemon = start()  # it starts recompressing the big session at once: seconds of work
    with env.memory() as memory:
        sid = str(uuid.uuid4())
        path = env.roots["claude-code"] / "-work-p" / f"{sid}.jsonl"
        path.parent.mkdir()
        writer.append(path, claude_record(sid, "still heard"))
        took = assert_visible(memory, f"claude-code:{sid}", env.roots["claude-code"],
                              f"-work-p/{sid}.jsonl", tmp_path / "out")
        assert took < VISIBLE_WITHIN
        # A stop during the recompression interrupts it within a MiB; on a fast machine
        # it may have finished already. Either way the session is whole.
        assert daemon.stop() == 0
        assert memory.tier1.to_deepen() in ([f"claude-code:{big_sid}"], [])
        assert memory.tier1.conn.execute("SELECT count(*) FROM frames f JOIN sessions s"
                                         " ON s.id = f.session_id"
                                         " WHERE f.generation != s.frame_gen").fetchone()[0] <= 1
        memory.export(f"claude-code:{big_sid}", tmp_path / "big")
        assert (tmp_path / "big" / "-work-big" / f"{big_sid}.jsonl").read_bytes() \
            == big.read_bytes()
        assert memory.check() == []


def copilot_record(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "data": data, "id": str(uuid.uuid4()),
                       "timestamp": _now_iso(), "parentId": None})


def test_an_appending_and_a_rewriting_tool(env: Env, start: Callable[..., DaemonProcess],
                                           writer: Writer, tmp_path: Path) -> None:
    """Copilot CLI appends events (and ends a session with a record of its own, long before
    idle_seconds); OpenCode rewrites small JSON files whole, in place."""
    cp_root, oc_root = env.home / "src" / "copilot", env.home / "src" / "opencode"
    env.write_config(idle="1h", extra=f'[sources.copilot-cli]\nroot = "{cp_root}"\n'
                                      f'[sources.opencode]\nroot = "{oc_root}"\n')
    native = str(uuid.uuid4())
    (cp_root / native).mkdir(parents=True)
    (oc_root / "session" / "p1").mkdir(parents=True)
    start()
    events, sid = f"{native}/events.jsonl", f"copilot-cli:{native}"
    with env.memory() as memory:
        for line in (
                copilot_record("session.start", {"sessionId": native,
                                                 "context": {"cwd": "/work/p"}}),
                copilot_record("user.message", {
                    "content": "port the parser",
                    "transformedContent": "<current_datetime>now</current_datetime>\n\n"
                                          "port the parser"}),
                copilot_record("assistant.message", {"content": "ported", "toolRequests": []})):
            writer.append(cp_root / events, line)
            assert_visible(memory, sid, cp_root, events, tmp_path / "out")
        assert memory.show(sid)["state"] == "active"
        writer.append(cp_root / events, copilot_record("session.shutdown", {"modelMetrics": {
            "gpt-x": {"usage": {"inputTokens": 100, "outputTokens": 7, "cacheReadTokens": 40,
                                "cacheWriteTokens": 0}}}}))
        digest = wait_until(lambda: memory.show(sid)["digest"], 15,
                            "a digest for the session its shutdown record ended")
        wait_until(lambda: memory.show(sid)["state"] == "analyzed", 15,
                   "the session marked analyzed")
        assert digest["first_prompt"] == "port the parser"
        assert digest["tokens"]["input"] == 60 and digest["tokens"]["cache_read"] == 40

        ses, rel = "ses_daemon", "session/p1/ses_daemon.json"
        oc_sid = f"opencode:{ses}"
        for title in ("New session", "Porting the parser", "Porting the parser to msgspec"):
            writer.rewrite(oc_root / rel, json.dumps({"id": ses, "title": title,
                                                      "directory": "/work/p"}))
            assert_visible(memory, oc_sid, oc_root, rel, tmp_path / "out")
        message = f"message/{ses}/msg_1.json"
        (oc_root / message).parent.mkdir(parents=True)
        writer.rewrite(oc_root / message, json.dumps({"id": "msg_1", "sessionID": ses,
                                                      "role": "assistant"}))
        assert_visible(memory, oc_sid, oc_root, message, tmp_path / "out")
        # Each file is stored as its latest version only.
        stored = sorted(f.path for f in memory.tier1.files(oc_sid))
        assert stored == [message, rel]


def test_a_row_opencode_writes_to_its_database_is_picked_up(
        env: Env, start: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    """OpenCode 1.2+ writes its sessions to opencode.db (WAL) beside storage/: the daemon
    watches that file and its WAL (not the folder's other files), and stores a changed row
    long before the next rescan."""
    from tests.conftest import FIXTURES
    from tests.formats import opencode_db

    data = env.home / "src" / "opencode"
    data.mkdir(parents=True)
    opencode_db.build(FIXTURES / "opencode" / "storage", data / "opencode.db", 1_800_000_000_000)
    env.write_config(extra=f'[sources.opencode]\nroot = "{data / "storage"}"\n')
    start()
    sid, part = "opencode:ses_53993b312ffeefelTsBlbUVXV8", "prt_ac66c5292002SbCM7ar8NO0NND"
    rel = f"opencode.db/part/msg_ac66c4cf3002T0gm14NtIKnwOm/{part}.json"

    def text() -> str | None:
        with env.memory() as memory:
            try:
                memory.export(sid, tmp_path / "out")
            except NotFoundError:
                return None
        return str(json.loads((tmp_path / "out" / rel).read_bytes()).get("text"))

    first = wait_until(text, VISIBLE_WITHIN, "the database's sessions stored")
    conn = opencode_db.connect(data / "opencode.db")
    row = json.loads(conn.execute("SELECT data FROM part WHERE id = ?", (part,)).fetchone()[0])
    row["text"] = "written while the daemon watched"
    conn.execute("UPDATE part SET data = ?, time_updated = time_updated + 1 WHERE id = ?",
                 (opencode_db.compact(row), part))
    conn.execute("UPDATE session SET time_updated = time_updated + 1 WHERE id = ?",
                 (sid.split(":")[1],))
    wait_until(lambda: text() == "written while the daemon watched", VISIBLE_WITHIN,
               "the changed row stored")
    conn.close()
    assert first != "written while the daemon watched"


def test_a_full_disk_while_analyzing_asks_the_sweep_for_room(env: Env) -> None:
    """Digests that find no room in Tier 2 are not a session's fault: the round ends, nothing
    is marked analyzed, and the daemon sweeps to make room before it tries again."""
    env.write_config()
    sid = str(uuid.uuid4())
    # Prompts of words no page holds yet: their digest and index rows need new pages.
    write_ended(env.roots["claude-code"] / "-work-p" / f"{sid}.jsonl",
                "".join(claude_record(sid, " ".join(uuid.uuid4().hex for _ in range(40)))
                        + "\n" + claude_record(sid, "done", "assistant") + "\n"
                        for _ in range(30)))
    with env.memory() as memory:
        memory.ingest()
    with opened(env, FixedClock(time.time())) as daemon:
        assert daemon.memory is not None
        tier2 = daemon.memory.tier2.conn
        pages = tier2.execute("PRAGMA page_count").fetchone()[0]
        tier2.execute(f"PRAGMA max_page_count = {pages}")
        daemon._guard("analyze", daemon._seal_and_analyze)
        assert daemon._sweep_requested
        assert daemon.memory.show(f"claude-code:{sid}")["state"] == "ended"
        tier2.execute("PRAGMA max_page_count = 1073741823")
        daemon._seal_and_analyze()
        assert daemon.memory.show(f"claude-code:{sid}")["state"] == "analyzed"


def test_a_sweep_the_daemon_runs_asks_its_stop_flag_between_evictions(env: Env) -> None:
    """SIGTERM sets the flag the sweep asks before each eviction: the daemon stops within
    one eviction, the sweep's report stored, saying it stopped."""
    env.write_config()
    ids = []
    for n in range(3):
        sid = str(uuid.uuid4())
        ids.append(f"claude-code:{sid}")
        write_ended(env.roots["claude-code"] / "-work-p" / f"{sid}.jsonl",
                    claude_record(sid, f"task {n}") + "\n"
                    + claude_record(sid, "done", "assistant") + "\n")
    with env.memory() as memory:
        memory.ingest()
        assert sorted(memory.analyze()) == sorted(ids)
    with opened(env, FixedClock(time.time())) as daemon:
        memory, sealer = daemon.memory, daemon._sealer
        assert memory is not None and sealer is not None
        sealer.stop()  # its recompression would take the write lock the sweep waits for
        retention = msgspec.structs.replace(memory.settings.retention, raw_soft_cap=1)
        memory.settings = msgspec.structs.replace(memory.settings, retention=retention)
        daemon.stopping = True
        daemon._sweep()
        report = memory.last_sweep()
        assert report is not None and report["stopped"]
        assert report["budget_evicted"] == []
        assert {memory.show(sid)["state"] for sid in ids} == {"analyzed"}


def test_running_sessions_are_digested_as_they_grow(env: Env, passes: PassCounter,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A session still being written gets a digest LIVE_DIGEST_SECONDS after it grew, so
    `usage` and `show` count it before it ends; it stays active, is digested again only
    once it grew again, a large one less often, and is analyzed once it ends."""
    env.write_config(idle="1h")
    sid = str(uuid.uuid4())
    path = env.roots["claude-code"] / "-work-p" / f"{sid}.jsonl"
    path.parent.mkdir()
    path.write_text(claude_record(sid, "fix the build") + "\n"
                    + claude_record(sid, "fixed", "assistant") + "\n")

    def output_tokens(memory: Memory) -> int:
        return sum(row["output"] for row in memory.usage(by="session"))

    clock = FixedClock(time.time())
    with opened(env, clock) as daemon:
        memory = daemon.memory
        assert memory is not None
        daemon._rescan()
        assert memory.show(f"claude-code:{sid}")["digest"] is None
        assert daemon._wait_seconds() <= LIVE_DIGEST_SECONDS
        clock.advance(LIVE_DIGEST_SECONDS)
        daemon.step(0.0)  # the loop's turn: the digest is due
        shown = memory.show(f"claude-code:{sid}")
        assert shown["state"] == "active"
        assert shown["digest"]["first_prompt"] == "fix the build"
        assert output_tokens(memory) == 5 and passes.count == 1
        # Not grown: not digested again, however long it waits.
        clock.advance(LIVE_DIGEST_SECONDS / 2)
        daemon._digest_live()
        assert passes.count == 1
        # Grown: digested again a minute on, and not sooner.
        with path.open("a") as f:
            f.write(claude_record(sid, "and the tests", "assistant") + "\n")
        daemon._ingest([path])
        daemon._digest_live()  # called early: the session is not due yet
        assert passes.count == 1 and output_tokens(memory) == 5
        clock.advance(LIVE_DIGEST_SECONDS / 2)
        daemon._digest_live()
        assert passes.count == 2 and output_tokens(memory) == 10
        # A larger session waits a second per LIVE_BYTES_PER_SECOND of its bytes.
        size = memory.show(f"claude-code:{sid}")["raw_bytes"]
        monkeypatch.setattr(daemon_mod, "LIVE_BYTES_PER_SECOND", size / 600)
        with path.open("a") as f:
            f.write(claude_record(sid, "and the docs", "assistant") + "\n")
        daemon._ingest([path])
        clock.advance(LIVE_DIGEST_SECONDS)
        daemon._digest_live()
        assert passes.count == 2
        assert daemon._live_at > clock.now() + 400
        clock.advance(daemon._live_at - clock.now())
        daemon._digest_live()
        assert passes.count == 3 and output_tokens(memory) == 15
        # Past LIVE_DIGEST_MAX_BYTES, it waits for its end.
        monkeypatch.setattr(daemon_mod, "LIVE_DIGEST_MAX_BYTES", size)
        with path.open("a") as f:
            f.write(claude_record(sid, "and the changelog", "assistant") + "\n")
        daemon._ingest([path])
        clock.advance(3600)
        daemon._digest_live()
        assert passes.count == 3 and output_tokens(memory) == 15
        # Ended: analyzed whole, as any ended session.
        clock.advance(3600)
        daemon._seal_and_analyze()
        assert memory.show(f"claude-code:{sid}")["state"] == "analyzed"
        assert output_tokens(memory) == 20


def write_running(env: Env, count: int, body: Callable[[str], str]) -> list[str]:
    """`count` Claude Code sessions written just now, each `body(its id)`: their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for sid in ids:
        path = env.roots["claude-code"] / "-work-p" / f"{sid}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body(sid))
    return ids


def raw_sizes(memory: Memory, ids: list[str]) -> list[int]:
    return [memory.show(f"claude-code:{sid}")["raw_bytes"] for sid in ids]


def test_a_live_digest_that_finds_no_room_is_tried_again(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live digest the store refused (Tier 2 full) is not the sessions' fault: they are
    tried again a minute on, though they have not grown since; not at once, over and over
    (also when some were left for the loop's next turn)."""
    env.write_config(idle="1h")
    # Prompts of words no page holds yet: their digest and index rows need new pages.
    ids = write_running(env, 2, lambda sid: "".join(
        claude_record(sid, " ".join(uuid.uuid4().hex for _ in range(40))) + "\n"
        + claude_record(sid, "done", "assistant") + "\n" for _ in range(30)))
    clock = FixedClock(time.time())
    with opened(env, clock) as daemon:
        memory = daemon.memory
        assert memory is not None
        daemon._rescan()
        sizes = raw_sizes(memory, ids)
        monkeypatch.setattr(daemon_mod, "LIVE_DIGEST_MAX_BYTES", max(sizes))  # one a turn
        tier2 = memory.tier2.conn
        pages = tier2.execute("PRAGMA page_count").fetchone()[0]
        tier2.execute(f"PRAGMA max_page_count = {pages}")
        clock.advance(LIVE_DIGEST_SECONDS)
        daemon._guard("live digests", daemon._digest_live)
        assert [memory.show(f"claude-code:{sid}")["digest"] for sid in ids] == [None, None]
        assert clock.now() < daemon._live_at <= clock.now() + LIVE_DIGEST_SECONDS
        tier2.execute("PRAGMA max_page_count = 1073741823")
        clock.advance(daemon._live_at - clock.now())
        daemon.step(0.0)
        daemon.step(0.0)  # the other, on the loop's next turn
        for sid in ids:
            shown = memory.show(f"claude-code:{sid}")
            assert shown["state"] == "active" and shown["digest"] is not None


def test_a_running_session_the_analyzer_fails_on_waits_as_an_ended_one(
        env: Env, passes: PassCounter) -> None:
    """A running session the analyzer fails on is tried again after ANALYZE_BACKOFF, as an
    ended one is, though it keeps growing: not a failed pass, and an error logged, a minute."""
    gone_root = env.home / "src" / "gone"
    sid = str(uuid.uuid4())
    path = gone_root / "-work-p" / f"{sid}.jsonl"
    path.parent.mkdir(parents=True)
    gone = f'[sources.gone]\nformat = "claude-code"\nroot = "{gone_root}"\n'

    def grow(text: str) -> None:
        with path.open("a") as f:
            f.write(claude_record(sid, text) + "\n")
        env.write_config(idle="2h", extra=gone)
        with env.memory() as memory:
            memory.ingest()
        env.write_config(idle="2h")  # its source left the config: it cannot be analyzed

    grow("fix the build")
    clock = FixedClock(time.time())
    with opened(env, clock) as daemon:
        clock.advance(LIVE_DIGEST_SECONDS)
        daemon._digest_live()
        assert passes.count == 1  # tried, and failed
        grow("and the tests")
        clock.advance(LIVE_DIGEST_SECONDS)
        daemon._digest_live()
        assert passes.count == 1  # grown, but it failed a minute ago
        assert daemon._live_at <= clock.now() + ANALYZE_BACKOFF
        clock.advance(ANALYZE_BACKOFF)
        daemon._digest_live()
        assert passes.count == 2
        assert daemon.memory is not None
        assert daemon.memory.show(f"gone:{sid}")["state"] == "active"


def test_running_sessions_due_together_are_digested_over_several_turns(
        env: Env, passes: PassCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running sessions due at once are digested LIVE_DIGEST_MAX_BYTES a turn of the loop,
    the longest waiting first: the appends that came meanwhile are stored between turns,
    not held up for all their parses."""
    env.write_config(idle="1h")
    ids = write_running(env, 3, lambda sid: claude_record(sid, "fix the build") + "\n"
                        + claude_record(sid, "fixed", "assistant") + "\n")
    clock = FixedClock(time.time())
    with opened(env, clock) as daemon:
        memory = daemon.memory
        assert memory is not None
        daemon._rescan()
        sizes = raw_sizes(memory, ids)
        monkeypatch.setattr(daemon_mod, "LIVE_DIGEST_MAX_BYTES", max(sizes) + min(sizes) - 1)
        clock.advance(LIVE_DIGEST_SECONDS)

        def digested() -> int:
            return sum(memory.show(f"claude-code:{sid}")["digest"] is not None for sid in ids)

        for turn in (1, 2, 3):
            assert daemon._live_at <= clock.now()
            daemon.step(0.0)
            assert passes.count == turn and digested() == turn
        assert daemon._live_at == float("inf")  # none due until it grows
