"""Export and restore never write outside their target."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from session_memory.errors import UnsafePathError
from session_memory.safe_write import TargetExistsError, replace_file, write_file


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


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of its own (tmp_path also holds the isolated home)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


def test_replace_file_sets_its_mode_and_leaves_no_temporary_file(folder: Path) -> None:
    page = folder / "page.html"
    page.write_bytes(b"old")
    page.chmod(0o644)
    replace_file(page, [b"new ", b"page"])
    assert page.read_bytes() == b"new page" and stat.S_IMODE(page.stat().st_mode) == 0o600
    replace_file(page, [b"unit"], mode=0o644)
    assert page.read_bytes() == b"unit" and stat.S_IMODE(page.stat().st_mode) == 0o644
    assert os.listdir(folder) == ["page.html"]


def test_replace_file_replaces_a_symlink_not_its_target(folder: Path) -> None:
    victim = folder / "victim"
    victim.write_bytes(b"keep")
    (folder / "cache.json").symlink_to(victim)
    replace_file(folder / "cache.json", [b"{}"])
    assert victim.read_bytes() == b"keep"
    assert not (folder / "cache.json").is_symlink()


def test_replace_file_makes_no_folder_and_keeps_the_old_file_on_failure(folder: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(folder / "missing" / "page.html", [b"x"])
    assert not (folder / "missing").exists()
    page = folder / "page.html"
    page.write_bytes(b"old")

    def failing() -> Iterator[bytes]:
        yield b"half a page"
        raise OSError("the disk is full")

    with pytest.raises(OSError, match="disk is full"):
        replace_file(page, failing())
    assert page.read_bytes() == b"old" and os.listdir(folder) == ["page.html"]
