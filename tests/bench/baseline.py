"""The baseline the benchmarks pair their runs with: plain `zstd` over the same files."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def zstd_seconds(paths: list[Path], work: Path) -> float:
    """Seconds for `zstd -3 -T1` over the files, in one process (its file list in `work`)."""
    work.mkdir(parents=True, exist_ok=True)
    listing = work / "files.txt"
    listing.write_text("\n".join(str(p) for p in paths))
    t0 = time.perf_counter()
    subprocess.run(["zstd", "-3", "-T1", "-q", "-c", f"--filelist={listing}"],
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0
