"""Writing files whole: stored files back out without ever leaving the target folder, and
our own files (the price cache, the dashboard, the systemd unit) replaced atomically."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from session_memory.errors import SessionMemoryError, UnsafePathError


class TargetExistsError(SessionMemoryError):
    pass


def checked_relpath(relpath: str) -> PurePosixPath:
    """Refuse absolute paths, `..`, empty parts and NUL: a stored path must stay inside."""
    p = PurePosixPath(relpath)
    if (not relpath or "\x00" in relpath or p.is_absolute()
            or any(part in ("..", ".", "") for part in relpath.split("/"))):
        raise UnsafePathError(f"refusing unsafe stored path {relpath!r}")
    return p


def write_file(target: Path, relpath: str, chunks: Iterable[bytes], *, overwrite: bool) -> Path:
    """Write `chunks` to target/relpath atomically. Every folder below `target` is opened
    with O_NOFOLLOW, so a symlink planted inside the target cannot redirect the write."""
    rel = checked_relpath(relpath)
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    dir_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=dir_fd)
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=dir_fd)
            except OSError as e:
                raise UnsafePathError(f"{target / rel}: {part!r} is not a plain folder") from e
            os.close(dir_fd)
            dir_fd = next_fd
        _replace_in(dir_fd, rel.name, chunks, overwrite=overwrite, mode=None,
                    shown=str(target / rel), tmp=f".{rel.name}.session-memory-tmp")
        return target / rel
    finally:
        os.close(dir_fd)


def replace_file(path: Path, chunks: Iterable[bytes], *, mode: int = 0o600) -> None:
    """Replace `path` whole (or create it) in its folder, which must exist: a reader sees
    the old file or the new one, never a part. The file gets `mode`: 0o600, owner only,
    for anything that names sessions or holds what they did. The temporary file's name
    holds the process id, so processes writing the same file at once do not share one."""
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _replace_in(dir_fd, path.name, chunks, overwrite=True, mode=mode, shown=str(path),
                    tmp=f".{path.name}.{os.getpid()}.session-memory-tmp")
    finally:
        os.close(dir_fd)


def _replace_in(dir_fd: int, name: str, chunks: Iterable[bytes], *, overwrite: bool,
                mode: int | None, shown: str, tmp: str) -> None:
    """Write `name` in the folder `dir_fd` through `tmp` there: written, fsynced, renamed
    over it. `mode` None: a new file is private, a replaced file of the user's keeps its mode."""
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and not overwrite:
        raise TargetExistsError(f"{shown} exists (use --force to overwrite)")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as out:
            if mode is not None:
                os.fchmod(fd, mode)  # whatever the umask, whatever was there
            elif existing is not None and stat.S_ISREG(existing.st_mode):
                # A file of the user's, replaced: it keeps its mode (a new one stays private).
                os.fchmod(fd, stat.S_IMODE(existing.st_mode))
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
