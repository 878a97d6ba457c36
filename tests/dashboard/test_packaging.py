"""The wheel carries what the page inlines: the chart library, its licences, the template."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_vendored_library_and_its_licences(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path), str(ROOT)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    (wheel,) = tmp_path.glob("session_memory-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("vendor/vega.min.js", "vendor/vega-lite.min.js", "vendor/LICENSE-vega",
                 "vendor/LICENSE-vega-lite", "vendor/THIRD_PARTY_LICENSES.txt",
                 "vendor/VERSIONS", "template.html", "page.js", "page.css"):
        assert f"session_memory/dashboard/{name}" in names, name
