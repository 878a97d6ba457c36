"""A full disk: ingest stops with one clear error and rolls back, nothing stored is lost,
the sweep makes room and ingest resumes (by itself, in the daemon).

A real full filesystem needs a small tmpfs, which only root may mount; elsewhere the
in-process test caps the database with SQLite's max_page_count instead."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from session_memory import config
from session_memory.errors import StoreFullError
from session_memory.memory import Memory
from tests.conftest import write_config
from tests.daemon_harness import DaemonProcess, NotifySocket

OLD = 1_600_000_000.0


def _session_file(path: Path, size: int) -> None:
    """A session of incompressible lines (as hex they compress about 2:1)."""
    with path.open("wb") as f:
        while f.tell() < size:
            f.write(b'{"type": "user", "blob": "' + os.urandom(1024).hex().encode() + b'"}\n')
    os.utime(path, (OLD, OLD))


def _exports(memory: Memory, out: Path) -> dict[str, bytes]:
    for s in memory.sessions():
        if s["state"] != "evicted":
            memory.export(s["id"], out)
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_capped_store_rolls_back_and_the_sweep_makes_room(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    root = sources["mytool"]
    for i in range(4):
        _session_file(root / f"s{i}.jsonl", 600_000)
    memory.ingest()
    memory.seal()
    assert len(memory.analyze()) == 4
    before = _exports(memory, tmp_path / "before")
    pages = memory.tier1.conn.execute("PRAGMA page_count").fetchone()[0]
    memory.tier1.conn.execute(f"PRAGMA max_page_count = {pages + 20}")
    _session_file(root / "big.jsonl", 1_000_000)
    (root / "small.jsonl").write_bytes(b'{"type": "user"}\n')

    with pytest.raises(StoreFullError, match="no room left"):
        memory.ingest()

    assert memory.check() == []
    assert _exports(memory, tmp_path / "after") == before
    settings = memory.settings
    memory.settings = msgspec.structs.replace(settings, retention=msgspec.structs.replace(
        settings.retention, raw_soft_cap=1, raw_hard_cap=1))
    report = memory.sweep()
    assert len(report["backstop_evicted"] + report["budget_evicted"]) == 4
    assert report["errors"] == []
    memory.ingest()
    memory.export("mytool:big.jsonl", tmp_path / "big")
    assert (tmp_path / "big" / "big.jsonl").read_bytes() == (root / "big.jsonl").read_bytes()
    assert memory.check() == []


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the max_page_count test covers the rest")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "session_memory", *args],
                          capture_output=True, text=True, timeout=120)


def _fill(fs: Path, leave: int) -> None:
    """Another program fills the disk, leaving `leave` bytes free."""
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    with (fs / "filler").open("ab") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_full_filesystem_cli_and_daemon(home: Path, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "fs", "24m") as fs:
        root = tmp_path / "src"
        root.mkdir()
        cfg = write_config(home, (
            f'[storage]\ndata_dir = "{fs / "data"}"\n'
            '[retention]\nkeep_free = "60%"\n'
            '[ingest]\nidle_seconds = "1h"\nrescan_interval = "1h"\n'
            + "".join(f"[sources.{n}]\nenabled = false\n"
                      for n in ("claude-code", "codex", "gemini-cli", "aider"))
            + f'[sources.mytool]\nformat = "jsonl"\nroot = "{root}"\n'))
        for i in range(5):
            _session_file(root / f"s{i}.jsonl", 1_200_000)
        assert _cli("ingest").returncode == 0
        assert _cli("analyze").returncode == 0
        with Memory(config.load()) as m:
            before = _exports(m, tmp_path / "before")
        _fill(fs, 1_500_000)
        _session_file(root / "big.jsonl", 3_000_000)
        os.utime(root / "big.jsonl")  # written now: active, so only ingest touches it

        full = _cli("ingest")

        assert full.returncode == 1, full.stderr
        assert "no room left" in full.stderr and "Traceback" not in full.stderr
        checked = _cli("check", "--json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with Memory(config.load()) as m:
            assert _exports(m, tmp_path / "after") == before
            assert "mytool:big.jsonl" not in {s["id"] for s in m.sessions()}

        # The daemon meets the full store at its first rescan, sweeps (keep_free lowers the
        # cap on a full disk), and ingest resumes by itself.
        notify = NotifySocket()
        daemon = DaemonProcess(cfg, notify, tmp_path / "daemon.log")
        size = (root / "big.jsonl").stat().st_size
        try:
            daemon.wait_ready()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with Memory(config.load()) as m:
                    big = [s for s in m.sessions() if s["id"] == "mytool:big.jsonl"]
                if big and big[0]["raw_bytes"] == size:
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"ingest never resumed; log:\n{daemon.log()[-3000:]}")
        finally:
            assert daemon.stop() == 0
            notify.close()
        log = (tmp_path / "daemon.log").read_text()
        assert "store full; sweeping to make room" in log and "Traceback" not in log
        checked = _cli("check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with Memory(config.load()) as m:
            m.export("mytool:big.jsonl", tmp_path / "big")
            evicted = {s["id"] for s in m.sessions(state="evicted")}
            assert evicted and all(m.tier2.has_digest(sid) for sid in evicted)
        assert (tmp_path / "big" / "big.jsonl").read_bytes() == (root / "big.jsonl").read_bytes()
