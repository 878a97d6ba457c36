"""Export and restore never write outside their target."""

from __future__ import annotations

from pathlib import Path

import pytest

from session_memory.errors import UnsafePathError
from session_memory.safe_write import TargetExistsError, write_file


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", "a//b", "./a", "a\x00b"])
def test_unsafe_stored_paths_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        write_file(tmp_path / "t", bad, [b"x"], overwrite=True)
    assert not (tmp_path / "x").exists()


def test_symlinked_folder_inside_target_is_not_followed(tmp_path: Path) -> None:
    target, outside = tmp_path / "t", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "proj").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        write_file(target, "proj/s.jsonl", [b"secret"], overwrite=True)
    assert list(outside.iterdir()) == []


def test_symlinked_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (target / "s.jsonl").symlink_to(victim)
    with pytest.raises(TargetExistsError):
        write_file(target, "s.jsonl", [b"new"], overwrite=False)
    write_file(target, "s.jsonl", [b"new"], overwrite=True)
    assert victim.read_bytes() == b"keep"
    assert (target / "s.jsonl").read_bytes() == b"new" and not (target / "s.jsonl").is_symlink()
