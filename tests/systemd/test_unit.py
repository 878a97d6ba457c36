"""The user unit as shipped and as `service install` writes it: systemd-analyze verify says
nothing, and `security --offline=yes --user` rates its exposure 2.5 or lower."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from session_memory import service
from session_memory.cli import cli

SHIPPED = Path(__file__).resolve().parents[2] / "systemd" / service.UNIT_NAME
MAX_EXPOSURE = 2.5

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))


def exposure(unit: Path) -> float:
    done = _analyze("security", "--offline=yes", "--user", str(unit))
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert m, done.stdout + done.stderr
    return float(m.group(1))


@pytest.fixture
def runtime_dir(home: Path) -> Path:
    # systemd-analyze --user wants an existing, private runtime dir.
    path = Path(os.environ["XDG_RUNTIME_DIR"])
    path.chmod(0o700)
    return path


def test_shipped_unit_verifies_cleanly(home: Path, runtime_dir: Path) -> None:
    # %h/.local/bin/session-memory: the path a `pip install --user` gives.
    program = home / ".local" / "bin" / "session-memory"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    (home / ".local" / "share" / "session-memory").mkdir(parents=True, exist_ok=True)
    done = _analyze("verify", "--user", str(SHIPPED))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert exposure(SHIPPED) <= MAX_EXPOSURE


def test_installed_unit_verifies_and_is_hardened(sources: dict[str, Path],
                                                 runtime_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["service", "install", "--no-start"])
    assert result.exit_code == 0, result.output
    unit = service.unit_path()
    text = unit.read_text()
    exec_start = re.search(r"(?m)^ExecStart=(.*)$", text)
    assert exec_start and exec_start.group(1).endswith(" daemon")
    program = exec_start.group(1).split()[0]
    assert Path(program).is_file() and os.access(program, os.X_OK), program
    done = _analyze("verify", "--user", str(unit))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    score = exposure(unit)
    print(f"systemd-analyze security exposure: {score}")
    assert score <= MAX_EXPOSURE
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure",
                    "RestartPreventExitStatus=78", "PrivateUsers=yes", "ProtectHome=read-only",
                    "IOSchedulingClass=idle", "MemoryMax="):
        assert setting in text
