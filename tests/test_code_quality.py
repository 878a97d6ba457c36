"""ruff and mypy stay clean: the standard is checked, not hoped for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool", [["ruff", "check", "session_memory", "tests"], ["mypy"]])
def test_clean(tool: list[str]) -> None:
    if shutil.which(tool[0], path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"{tool[0]} not installed")
    run = subprocess.run([sys.executable, "-m", *tool], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
