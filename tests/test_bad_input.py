"""Bad input never stops an ingest: each odd file is skipped or stored byte-exactly,
with one clear log line, and nothing already stored is lost."""

from __future__ import annotations

import codecs
import ctypes
import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from session_memory.memory import Memory

ODD_BUT_STORED = {
    "binary.jsonl": bytes(range(256)) * 40,
    "nul.jsonl": b'{"a": 1}\n\x00\x00\x00{"b": 2}\n',
    "latin1.jsonl": '{"name": "Müller"}\n'.encode("latin-1"),
    "truncated.jsonl": b'{"a": 1}\n{"b": "cut in the mid',
    "crlf.jsonl": b'{"a": 1}\r\n{"b": 2}\r\n',
    "bom.jsonl": codecs.BOM_UTF8 + b'{"a": 1}\n',
    "gzip.jsonl": gzip.compress(b'{"a": 1}\n' * 100),
    "array.jsonl": b"[1, 2, 3]\n",
}


def _export_all(memory: Memory, out: Path) -> dict[str, bytes]:
    for s in memory.sessions():
        memory.export(s["id"], out)
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_odd_content_is_stored_byte_exactly(memory: Memory, sources: dict[str, Path],
                                            tmp_path: Path, caplog: pytest.LogCaptureFixture
                                            ) -> None:
    root = sources["mytool"]
    for name, data in ODD_BUT_STORED.items():
        (root / name).write_bytes(data)
    summary = memory.ingest()
    assert summary.errors == 0
    assert _export_all(memory, tmp_path / "out") == ODD_BUT_STORED
    assert "binary content" in caplog.text
    assert "not UTF-8 text" in caplog.text
    assert memory.check() == []


def test_a_50_mb_single_line(memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    big = sources["mytool"] / "huge.jsonl"
    with big.open("wb") as f:
        f.write(b'{"blob": "')
        for _ in range(50):
            f.write(os.urandom(512 * 1024).hex().encode())
        f.write(b'"}\n')
    memory.ingest()
    memory.seal()
    memory.export("mytool:huge.jsonl", tmp_path / "out")
    assert (tmp_path / "out" / "huge.jsonl").read_bytes() == big.read_bytes()


def test_special_files_and_symlinks_are_skipped(memory: Memory, sources: dict[str, Path],
                                                tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # an empty file is said at debug: nothing is wrong
    root = sources["mytool"]
    (root / "good.jsonl").write_bytes(b'{"ok": 1}\n')
    (root / "empty.jsonl").write_bytes(b"")
    os.mkfifo(root / "fifo.jsonl")
    secret = tmp_path / "outside" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_bytes(b'{"password": "hunter2"}\n')
    (root / "escape.jsonl").symlink_to(secret)
    (root / "escape-dir").symlink_to(secret.parent)
    (root / "loop").symlink_to(root / "loop")
    (root / "a").mkdir()
    (root / "a" / "up").symlink_to(root)  # a folder loop through a link
    summary = memory.ingest()
    assert [s["id"] for s in memory.sessions()] == ["mytool:good.jsonl"]
    assert summary.errors == 0 and summary.skipped >= 4
    text = caplog.text
    assert "symlink not followed" in text and "not a regular file" in text
    assert "empty file" in text
    # One line per file and reason, not one per pass.
    memory.ingest()
    assert caplog.text.count("escape.jsonl") == text.count("escape.jsonl")


def test_given_path_outside_every_source_is_an_error(memory: Memory, tmp_path: Path) -> None:
    stray = tmp_path / "stray.jsonl"
    stray.write_bytes(b"{}\n")
    assert memory.ingest([stray]).errors == 1


def test_given_paths_are_ingested(memory: Memory, sources: dict[str, Path]) -> None:
    (sources["mytool"] / "d").mkdir()
    (sources["mytool"] / "d" / "one.jsonl").write_bytes(b"{}\n")
    (sources["mytool"] / "two.jsonl").write_bytes(b"{}\n")
    (sources["mytool"] / "three.jsonl").write_bytes(b"{}\n")
    memory.ingest([sources["mytool"] / "d", sources["mytool"] / "two.jsonl"])
    assert sorted(s["id"] for s in memory.sessions()) == ["mytool:d/one.jsonl",
                                                          "mytool:two.jsonl"]


def _without_dac_override() -> None:
    """As root, drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set before
    exec, so the child is refused a mode-000 file the way a normal user is."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_unreadable_file_is_skipped_and_the_rest_ingested(sources: dict[str, Path]) -> None:
    root = sources["mytool"]
    (root / "locked.jsonl").write_bytes(b'{"a": 1}\n')
    (root / "open.jsonl").write_bytes(b'{"b": 2}\n')
    (root / "locked.jsonl").chmod(0)
    run = subprocess.run([sys.executable, "-m", "session_memory", "ingest", "--json"],
                         capture_output=True, text=True, preexec_fn=_without_dac_override,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["errors"] == 1
    assert "cannot read file" in run.stderr and "locked.jsonl" in run.stderr
    listed = subprocess.run([sys.executable, "-m", "session_memory", "sessions", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert [s["id"] for s in json.loads(listed.stdout)] == ["mytool:open.jsonl"]


def test_a_corrupt_zst_among_good_files(memory: Memory, sources: dict[str, Path],
                                        caplog: pytest.LogCaptureFixture) -> None:
    """A read error half-way through one file rolls back only that file, not the files
    committed with it in the same group."""
    import zstandard

    day = sources["codex"] / "sessions" / "2026" / "01" / "01"
    day.mkdir(parents=True)
    good = zstandard.ZstdCompressor().compress(b'{"type":"session_meta","payload":{"id":"g"}}\n')
    (day / "rollout-a-good.jsonl.zst").write_bytes(good)
    (day / "rollout-b-bad.jsonl.zst").write_bytes(good[:-6] + b"\xff" * 40)
    (day / "rollout-c-plain.jsonl").write_bytes(b'{"type":"session_meta","payload":{"id":"c"}}\n')
    summary = memory.ingest()
    assert summary.errors == 1
    assert sorted(s["id"] for s in memory.sessions()) == ["codex:c", "codex:g"]
    assert "bad zstd data" in caplog.text
    assert memory.check() == []


def test_a_wide_root_passes_by_what_holds_no_session(memory: Memory, sources: dict[str, Path],
                                                     tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A source that reads files of one name (its root may be the home folder) has no
    concern with other files, links to files, sockets and pipes among the user's own, nor
    links to folders it would not enter (hidden ones): none is opened, counted, logged or
    named by `check`. A link to a folder may lead to its sessions (a repositories folder
    moved to another disk): that one is still said."""
    root = sources["aider"]
    repo = root / "app"
    repo.mkdir()
    (repo / ".aider.chat.history.md").write_text(
        "\n# aider chat started at 2026-01-02 10:00:00\n\n#### fix the test\n")
    (repo / "main.py").write_text("print('hi')\n")
    (repo / "config.py").symlink_to(repo / "main.py")
    (repo / "hosts").symlink_to("/etc/hosts")
    os.mkfifo(repo / "pipe")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "old").mkdir(parents=True)
    (root / "moved").symlink_to(elsewhere)
    (root / ".dotfiles").symlink_to(elsewhere)  # a folder the walk leaves out: hidden
    summary = memory.ingest()
    assert [s["id"] for s in memory.sessions()] == ["aider:app#20260102T100000"]
    assert (summary.files_seen, summary.skipped, summary.errors) == (1, 1, 0)
    for unconcerned in ("main.py", "config.py", "hosts", "pipe", ".dotfiles"):
        assert unconcerned not in caplog.text
    assert "moved" in caplog.text
    warnings = memory.check_warnings()
    assert [w for w in warnings if str(root) in w] == [f"{root / 'moved'}: symlink, not followed"]
