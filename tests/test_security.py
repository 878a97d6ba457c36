"""Each claim of the README's Security section, tested."""

from __future__ import annotations

import configparser
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from session_memory import config, service
from session_memory.cli import cli
from session_memory.errors import UnsafePathError
from session_memory.ingest import compress
from session_memory.memory import Memory

SYSTEMD_UNIT = Path(__file__).resolve().parents[1] / "systemd" / "session-memory.service"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stores_are_private(memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    (sources["mytool"] / "s.jsonl").write_bytes(b'{"a": 1}\n')
    os.umask(0o022)
    memory.ingest()
    memory.analyze(include_active=True)
    assert _mode(memory.data_dir) == 0o700
    for name in ("tier1.db", "tier1.db-wal", "tier1.db-shm", "tier2.db"):
        if (memory.data_dir / name).exists():
            assert _mode(memory.data_dir / name) == 0o600, name
    written = memory.export("mytool:s.jsonl", tmp_path / "out")
    assert [_mode(p) for p in written] == [0o600]


def test_service_install_makes_its_folders_private(sources: dict[str, Path]) -> None:
    """The config folder (the config names every source root) and the data folder are 0700
    however permissive the umask; the unit itself is no secret."""
    os.umask(0o022)
    result = CliRunner().invoke(cli, ["service", "install", "--no-start"])
    assert result.exit_code == 0, result.output
    assert _mode(config.user_config_path().parent) == 0o700
    assert _mode(config.load().data_dir) == 0o700
    assert _mode(service.unit_path()) == 0o644


def test_symlinks_never_lead_ingest_out_of_the_root(memory: Memory, sources: dict[str, Path],
                                                    tmp_path: Path) -> None:
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "key.jsonl").write_bytes(b'{"password": "hunter2"}\n')
    root = sources["mytool"]
    (root / "link.jsonl").symlink_to(secret_dir / "key.jsonl")
    (root / "linkdir").symlink_to(secret_dir)
    summary = memory.ingest()
    memory.ingest([root / "link.jsonl", root / "linkdir"])  # named explicitly, too
    assert memory.sessions() == [] and summary.skipped >= 2
    raw = (memory.data_dir / "tier1.db").read_bytes()
    assert b"hunter2" not in raw


def _forge(memory: Memory, sid: str, path: str, data: bytes = b"evil\n") -> None:
    """A Tier 1 row as a corrupt or tampered store could hold it."""
    t1 = memory.tier1
    with t1.transaction("forge"):
        t1.ensure_session(sid, "mytool", sid.split(":", 1)[1], 0.0, 0.0)
        fid = t1.new_file(sid, "mytool", path, 1, 0, 0.0, 0.0)
        packed, crc, level = compress(data)
        t1.add_chunk(fid, 0, data, packed, level, crc)


@pytest.mark.parametrize(("sid", "path"), [
    ("mytool:../../escape", "../../escape.jsonl"),
    ("mytool:abs", "/tmp/session-memory-abs-escape.jsonl"),
    ("mytool:mid", "a/../../escape.jsonl"),
    ("mytool:dot", "./a.jsonl"),
    ("mytool:nul", "a\x00b.jsonl"),
])
def test_export_and_restore_refuse_paths_that_escape(memory: Memory, sources: dict[str, Path],
                                                     tmp_path: Path, sid: str, path: str) -> None:
    _forge(memory, sid, path)
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafePathError):
        memory.export(sid, target)
    with pytest.raises(UnsafePathError):
        memory.restore(sid, force=True)
    assert not (tmp_path / "escape.jsonl").exists()
    assert not (tmp_path / "deep" / "escape.jsonl").exists()
    assert not Path("/tmp/session-memory-abs-escape.jsonl").exists()
    assert not (sources["mytool"].parent / "escape.jsonl").exists()


def test_export_does_not_follow_a_link_planted_in_the_target(memory: Memory,
                                                             sources: dict[str, Path],
                                                             tmp_path: Path) -> None:
    (sources["mytool"] / "d").mkdir()
    (sources["mytool"] / "d" / "s.jsonl").write_bytes(b'{"a": 1}\n')
    memory.ingest()
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "d").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError):
        memory.export("mytool:d/s.jsonl", out)
    assert list(elsewhere.iterdir()) == []


SECRETS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2" * 9,
    "anthropic": "sk-ant-api03-" + "x" * 40,
    "openai": "sk-proj-" + "Z9" * 15,
    "slack": "xoxb-123456789012-abcdefghij",
    "jwt": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    "url": "postgres://admin:s3cretpass@db.example.com/app",
    "assignment": "API_TOKEN=abcd1234efgh5678",
    "private_key": ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n"
                    "-----END RSA PRIVATE KEY-----"),
}


def test_redaction_covers_every_kind_in_tier2_but_not_tier1(
        memory: Memory, sources: dict[str, Path], tmp_path: Path) -> None:
    text = " ".join(SECRETS.values())
    line = (b'{"type": "user", "message": {"role": "user", "content": '
            + json.dumps(f"deploy with {text}").encode() + b"}}\n")
    (sources["mytool"] / "s.jsonl").write_bytes(line)
    memory.ingest()
    assert memory.analyze(include_active=True) == ["mytool:s.jsonl"]
    tier2 = b"".join(p.read_bytes() for p in memory.data_dir.glob("tier2.db*"))
    shown = str(memory.show("mytool:s.jsonl"))
    for kind, secret in SECRETS.items():
        needle = "s3cretpass" if kind == "url" else secret.split("\n")[1 if "\n" in secret else 0]
        needle = needle.split("=", 1)[-1]
        assert needle not in shown, kind
        assert needle.encode() not in tier2, kind
    assert "[REDACTED:" in shown
    memory.export("mytool:s.jsonl", tmp_path / "out")
    assert (tmp_path / "out" / "s.jsonl").read_bytes() == line  # raw bytes stay exact


def test_the_systemd_unit_hardening(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(SYSTEMD_UNIT.read_text())
    service = unit["Service"]
    expected = {
        "NoNewPrivileges": "yes", "PrivateNetwork": "yes", "RestrictAddressFamilies": "AF_UNIX",
        "ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "PrivateUsers": "yes", "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes", "RestrictNamespaces": "yes", "UMask": "0077",
        "MemoryMax": "384M", "ProtectKernelModules": "yes", "ProtectKernelTunables": "yes",
        "LockPersonality": "yes", "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert service["ReadWritePaths"] == "%h/.local/share/session-memory"
    filters = [line.split("=", 1)[1] for line in SYSTEMD_UNIT.read_text().splitlines()
               if line.startswith("SystemCallFilter=")]
    assert "@system-service" in filters
    assert any(f.startswith("~") and "@privileged" in f and "@mount" in f for f in filters)
