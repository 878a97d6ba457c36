"""Kill a child at random moments (or at a named commit) and check every invariant after.

The child (`tests/crash/child.py`) prints one line per acknowledged operation to a file,
flushed at once; a SIGKILL can only cut the last line. The parent reads that file into a
Ledger, reopens the stores and checks, after every kill:

- `PRAGMA integrity_check` is ok on both tiers;
- `Memory.check()` names no problem other than the two a kill is allowed to leave for the
  next sweep or `check --repair` to finish (an interrupted sweep, an unfinished forget),
  and none at all once repaired (accounting included);
- every session in state `evicted` is named by a real sweep's report, and has its digest
  in Tier 2 unless a report lists it in `overflow_data_loss`;
- every byte the child acknowledged is still exported byte-identical (the file may have
  grown since: the acknowledged prefix must match), unless a report says the session was
  evicted or the child was told to forget it (the one operation in doubt at the kill is
  taken as either done or not);
- the program carries on: ingest, seal, analyze and sweep all succeed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from session_memory import config
from session_memory.errors import NotFoundError, SessionMemoryError
from session_memory.memory import Memory

PROJECT = Path(__file__).resolve().parents[2]
# What a kill may leave behind on purpose, for the next sweep or `check --repair`.
RECOVERABLE = ("was interrupted before its report was stored", "did not finish")
BUILTIN_SOURCES = ("claude-code", "codex", "gemini-cli", "aider")


@dataclass
class Rig:
    """One crash run's folders and config files."""

    base: Path
    soft_cap: str = "1KB"
    hard_cap: str = "1KB"
    idle: str = "1s"
    max_age_days: int = 30

    def __post_init__(self) -> None:
        for d in (self.src, self.legacy, self.exports):
            d.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._config_text(legacy=True))
        self.child_config.write_text(self._config_text(legacy=False))

    @property
    def src(self) -> Path:
        return self.base / "src"

    @property
    def legacy(self) -> Path:
        return self.base / "legacy"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def exports(self) -> Path:
        return self.base / "exports"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def child_config(self) -> Path:
        """The same, without the `legacy` source: its sessions cannot be analyzed there,
        so an overflow pass evicts them as data loss."""
        return self.base / "child-config.toml"

    def _config_text(self, *, legacy: bool) -> str:
        text = (f'[storage]\ndata_dir = "{self.data}"\n'
                f'[retention]\nraw_soft_cap = "{self.soft_cap}"\nraw_hard_cap = "{self.hard_cap}"\n'
                f"raw_max_age_days = {self.max_age_days}\nkeep_free = 0\n"
                f'sweep_interval = "1h"\n'
                f'[ingest]\nidle_seconds = "{self.idle}"\nrescan_interval = "1s"\n')
        text += "".join(f"[sources.{name}]\nenabled = false\n" for name in BUILTIN_SOURCES)
        text += f'[sources.mytool]\nformat = "jsonl"\nroot = "{self.src}"\n'
        if legacy:
            text += f'[sources.legacy]\nformat = "jsonl"\nroot = "{self.legacy}"\n'
        return text

    def settings(self) -> config.Settings:
        return config.load(self.config)


@dataclass
class Ledger:
    """What the children acknowledged, across every run against one store."""

    stored: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    kills: int = 0
    acks: int = 0

    def feed(self, text: str) -> None:
        lines = text.split("\n")[:-1]  # a line cut by the kill has no newline: not acknowledged
        in_doubt: list[str] | None = None
        for line in lines:
            kind, *args = line.split("\t")
            if kind == "begin":
                in_doubt = args
            elif kind == "end":
                in_doubt = None
            elif kind == "stored":
                sid, path, n, sha = args
                self.stored[(sid, path)] = (int(n), sha)
                self.forgotten.discard(sid)
                self.acks += 1
            elif kind == "forgot":
                self._forget(args[0])
        if in_doubt and in_doubt[0] == "forget":
            self._forget(in_doubt[1])  # done or not: neither outcome is an error

    def _forget(self, sid: str) -> None:
        self.forgotten.add(sid)
        for key in [k for k in self.stored if k[0] == sid]:
            del self.stored[key]


def run_child(rig: Rig, out: Path, *, mode: str, seed: int, crash_at: str | None = None,
              crash_after: int = 0, kill_after: float | None = None,
              timeout: float = 60.0) -> int:
    """Run the child; with `kill_after`, SIGKILL it that many seconds after it is ready.
    Returns its exit status (-9 when killed)."""
    env = dict(os.environ)
    env.pop("SESSION_MEMORY_CRASH_AT", None)
    if crash_at:
        env["SESSION_MEMORY_CRASH_AT"] = crash_at
        env["SESSION_MEMORY_CRASH_AFTER"] = str(crash_after)
    cfg = rig.child_config if mode == "script" else rig.config
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.child", str(cfg), mode, str(seed),
             str(rig.exports)], cwd=PROJECT, env=env, stdout=sink, stderr=subprocess.PIPE)
        try:
            if kill_after is not None:
                deadline = time.monotonic() + timeout
                while b"ready\n" not in out.read_bytes()[:64] and proc.poll() is None:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                time.sleep(kill_after)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the child failed ({proc.returncode}):\n"
                             f"{err.decode(errors='replace')[-4000:]}")
    return proc.returncode


def _reports(m: Memory) -> tuple[set[str], set[str]]:
    """Sessions real sweeps say they evicted, and those of them evicted as data loss."""
    evicted: set[str] = set()
    loss: set[str] = set()
    for r in m.tier2.reports():
        if r.get("dry_run"):
            continue
        for key in ("backstop_evicted", "budget_evicted", "overflow_data_loss",
                    "evicted_unattributed"):
            evicted.update(r.get(key) or [])
        loss.update(r.get("overflow_data_loss") or [])
    return evicted, loss


def verify(rig: Rig, ledger: Ledger, *, carry_on: bool = True) -> list[str]:
    """Every invariant after a kill; one line per failure (empty: all hold)."""
    failures: list[str] = []
    with Memory(rig.settings()) as m:
        for name, conn in (("tier1", m.tier1.conn), ("tier2", m.tier2.conn)):
            result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                failures.append(f"{name} integrity_check: {result[:5]}")
        problems = m.check()
        failures += [f"check: {p}" for p in problems
                     if not any(ok in p for ok in RECOVERABLE)]
        if problems:
            m.repair()
            failures += [f"check after repair: {p}" for p in m.check()]
        evicted_by_report, data_loss = _reports(m)
        for row in m.tier1.sessions(m.idle_before, state="evicted"):
            sid = row["id"]
            if sid not in evicted_by_report:
                failures.append(f"{sid}: evicted, but no sweep report says so")
            if not m.tier2.has_digest(sid) and sid not in data_loss:
                failures.append(f"{sid}: evicted without its digest, not reported as data loss")
        failures += _check_acknowledged(m, ledger, evicted_by_report)
        if carry_on:
            try:
                m.ingest()
                m.seal()
                m.analyze()
                report = m.sweep()
            except (SessionMemoryError, OSError) as e:
                failures.append(f"carrying on failed: {type(e).__name__}: {e}")
            else:
                failures += [f"sweep after the kill: {e}" for e in report["errors"]]
                failures += [f"check after carrying on: {p}" for p in m.check()]
    return failures


def _check_acknowledged(m: Memory, ledger: Ledger, evicted_by_report: set[str]) -> list[str]:
    failures: list[str] = []
    by_session: dict[str, list[tuple[str, int, str]]] = {}
    for (sid, path), (n, sha) in ledger.stored.items():
        if sid not in ledger.forgotten and sid not in evicted_by_report:
            by_session.setdefault(sid, []).append((path, n, sha))
    with tempfile.TemporaryDirectory(dir=m.data_dir.parent) as tmp:
        for sid, files in sorted(by_session.items()):
            out = Path(tmp) / str(len(os.listdir(tmp)))
            try:
                m.export(sid, out)
            except (NotFoundError, SessionMemoryError) as e:
                failures.append(f"{sid}: acknowledged as stored, export fails: {e}")
                continue
            for path, n, sha in files:
                target = out / path
                data = target.read_bytes() if target.is_file() else b""
                if len(data) < n or hashlib.sha256(data[:n]).hexdigest() != sha:
                    failures.append(f"{sid} {path}: {n} acknowledged bytes not exported "
                                    f"byte-identical (export has {len(data)})")
    return failures


WRITER = r"""
import json, os, random, sys, time
root, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
live, n, i = [], 0, 0
while True:
    if not live or rng.random() < 0.02:
        n += 1
        live.append(f"w{seed % 1000:03d}-{n:04d}.jsonl")
        live = live[-4:]
    name = rng.choice(live)
    i += 1
    line = json.dumps({"type": "user", "i": i, "message": {"role": "user",
                       "content": os.urandom(rng.randint(10, 200)).hex()}}) + "\n"
    with open(os.path.join(root, name), "ab") as f:
        if rng.random() < 0.1:  # a line written in two pieces, as a slow writer does
            f.write(line[:20].encode()); f.flush(); time.sleep(0.002)
            f.write(line[20:].encode())
        else:
            f.write(line.encode())
    time.sleep(rng.uniform(0.002, 0.03))
"""


class AppendingWriter:
    """A separate process appending to a few live session files, starting new ones as it
    goes (the old ones end once they are idle)."""

    def __init__(self, root: Path, seed: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(seed)])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def add_script_files(rig: Rig, round_no: int) -> None:
    """Fresh work for one scripted run: an old session (backstop), a recent ended one
    (budget), an active one, and one in the `legacy` source the child cannot analyze
    (overflow, data loss). The legacy one is ingested here, with the full config.
    The active one is dated ahead: on a loaded machine, `idle` (1 s) can pass before the
    child reaches mark-ended."""
    now = time.time()
    old = rig.src / f"old-{round_no:03d}.jsonl"
    recent = rig.src / f"recent-{round_no:03d}.jsonl"
    active = rig.src / f"active-{round_no:03d}.jsonl"
    lost = rig.legacy / f"lost-{round_no:03d}.jsonl"
    spare = rig.src / f"spare-{round_no:03d}.jsonl"  # ended: for the child to forget early
    rng = random.Random(round_no)
    for path, mtime in ((old, now - 60 * 86400), (recent, now - 30), (active, now + 600),
                        (lost, now - 30), (spare, now - 40)):
        # The spare one too large to pack (see child.py): it keeps frames of its own.
        lines = [f'{{"type": "user", "message": {{"role": "user", "content": '
                 f'"{path.stem} {k} {rng.randbytes(40).hex()}"}}}}\n'
                 for k in range(80 if path == spare else 20)]
        path.write_text("".join(lines))
        os.utime(path, (mtime, mtime))
    with Memory(rig.settings()) as m:
        m.ingest([rig.legacy])
