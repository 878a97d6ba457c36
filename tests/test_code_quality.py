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


def test_all_sql_is_inside_store() -> None:
    """No module outside session_memory/store/ runs a statement of its own."""
    outside = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "session_memory").rglob("*.py"))
               if "store" not in p.relative_to(ROOT / "session_memory").parts
               for n, line in enumerate(p.read_text().splitlines(), 1)
               if ".execute(" in line or ".executemany(" in line]
    assert outside == []
