"""A hostile tree, through ingest AND analyze: no crash, a logged reason for each odd file,
the rest of the tree stored byte-exactly and analyzed. (tests/test_bad_input.py holds the
foundation list for ingest; this adds analysis and the nastier cases.)"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import zstandard

from session_memory.memory import Memory

UUID = "11111111-2222-3333-4444-555555555555"


def _rec(**kw: object) -> bytes:
    return json.dumps(kw).encode() + b"\n"


def _corpus(sources: dict[str, Path]) -> dict[Path, bytes]:
    """Nasty content in every format's own layout, plus one good file per format."""
    deep = b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"\n"
    huge = _rec(type="user", message={"role": "user", "content": "y" * 5_000_000})
    cc, cx, gm, my = (sources["claude-code"] / "proj", sources["codex"] / "sessions" / "2026"
                      / "01" / "01", sources["gemini-cli"] / "h" / "chats", sources["mytool"])
    files = {
        cc / f"{UUID}.jsonl": deep + huge + b"[1, 2]\n\x00\xff\n",
        cc / "22222222-2222-3333-4444-555555555555.jsonl": _rec(
            type="user", message={"role": "user", "content": "good claude"}),
        cx / "rollout-2026-01-01T00-00-00-deep.jsonl": deep + _rec(
            type="session_meta", payload=[]) + b'{"type": "response_item", "payload": 7}\n',
        cx / "rollout-2026-01-01T00-00-00-gz.jsonl": gzip.compress(b'{"a": 1}\n' * 50),
        gm / "session-bad.json": b'{"messages": ' * 5000,
        gm / "session-arr.jsonl": b'[{"id": 1}]\n"text"\n',
        my / "deep.jsonl": deep,
        my / "huge.jsonl": huge,
        my / "array.jsonl": b"[[[]]]\n" * 3,
        my / "weird\nname.jsonl": _rec(type="user", message={"content": "newline in name"}),
        my / "ünï cødé 😀 \u202e.jsonl": _rec(type="user", message={"content": "unicode"}),
        my / "good.jsonl": _rec(type="user", message={"role": "user", "content": "hello"}),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_a_hostile_tree_is_ingested_and_analyzed(memory: Memory, sources: dict[str, Path],
                                                tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    files = _corpus(sources)
    root = sources["mytool"]
    bad_name = os.fsencode(root) + b"/not-utf8-\xff.jsonl"  # a name that is no text at all
    with open(bad_name, "wb") as f:
        f.write(b'{"a": 1}\n')
    (root / "dir.jsonl").mkdir()  # a folder named like a session file
    os.mkfifo(root / "fifo.jsonl")

    summary = memory.ingest()

    ids = {s["id"] for s in memory.sessions()}
    assert {"mytool:good.jsonl", "mytool:deep.jsonl", "mytool:huge.jsonl",
            "mytool:weird\nname.jsonl", f"claude-code:{UUID}"} <= ids
    assert summary.errors == 0
    result = memory.analyze_report(include_active=True)
    assert result.failed == {}
    assert set(result.analyzed) == ids
    # Each session exports byte-identical to its file.
    out = tmp_path / "out"
    for sid in ids:
        memory.export(sid, out)
    for path, data in files.items():
        rel = next(path.relative_to(r) for r in sources.values() if r in path.parents)
        matches = list(out.rglob(rel.name))
        assert matches and matches[0].read_bytes() == data, rel
    assert memory.show("mytool:good.jsonl")["digest"]["first_prompt"] == "hello"
    assert "not a regular file" in caplog.text
    assert "file name is not valid UTF-8, skipped" in caplog.text
    assert memory.check() == []


def test_a_file_replaced_by_a_folder(memory: Memory, sources: dict[str, Path],
                                     tmp_path: Path) -> None:
    root = sources["mytool"]
    (root / "s.jsonl").write_bytes(b'{"a": 1}\n')
    assert memory.ingest().errors == 0
    (root / "s.jsonl").unlink()
    (root / "s.jsonl").mkdir()
    (root / "s.jsonl" / "inner.jsonl").write_bytes(b'{"b": 2}\n')
    summary = memory.ingest()
    assert summary.errors == 0 and summary.files_changed == 1
    result = memory.analyze_report(include_active=True)
    assert result.failed == {}
    assert sorted(result.analyzed) == ["mytool:s.jsonl", "mytool:s.jsonl/inner.jsonl"]
    memory.export("mytool:s.jsonl", tmp_path / "a")
    assert (tmp_path / "a" / "s.jsonl").read_bytes() == b'{"a": 1}\n'  # the stored copy stays
    memory.export("mytool:s.jsonl/inner.jsonl", tmp_path / "b")
    assert memory.check() == []


def test_rapid_rename_cycles_and_deletes_during_ingest(memory: Memory, sources: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """Codex compresses a finished rollout to .jsonl.zst (and a resume brings it back);
    other files vanish while they are read. Ingest runs throughout: no pass may fail."""
    day = sources["codex"] / "sessions" / "2026" / "01" / "01"
    day.mkdir(parents=True)
    plain = day / "rollout-2026-01-01T00-00-00-spin.jsonl"
    packed = day / "rollout-2026-01-01T00-00-00-spin.jsonl.zst"
    text = _rec(type="session_meta", payload={"id": "spin"}) + b'{"type": "x"}\n' * 2000
    plain.write_bytes(text)
    doomed = sources["mytool"]
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if plain.exists():
                packed.write_bytes(zstandard.ZstdCompressor().compress(text))
                plain.unlink()
            else:
                plain.write_bytes(text)
                packed.unlink(missing_ok=True)
            victim = doomed / f"gone-{n % 5}.jsonl"
            victim.write_bytes(b'{"v": 1}\n' * 5000)
            victim.unlink()
            if n % 7 == 0:
                shutil.rmtree(doomed / "d", ignore_errors=True)
                (doomed / "d").mkdir()
                (doomed / "d" / "x.jsonl").write_bytes(b"{}\n")

    spinner = threading.Thread(target=churn)
    spinner.start()
    try:
        for _ in range(30):
            assert memory.ingest().errors == 0
            assert memory.analyze_report(include_active=True).failed == {}
    finally:
        stop.set()
        spinner.join()
    assert memory.ingest().errors == 0
    memory.export("codex:spin", tmp_path / "out")
    exported = list((tmp_path / "out").rglob("rollout-*"))
    assert [p.read_bytes() for p in exported] == [text]
    assert memory.check() == []
