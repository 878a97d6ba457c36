"""How a source file's bytes are read: plain or zstd-compressed (a .jsonl.zst is stored
as its decompressed text), and cut where a new run starts (a history file's run headers)."""

from __future__ import annotations

import errno
import os
from pathlib import PurePosixPath
from typing import Any

import zstandard

from session_memory.formats.base import HEAD_BYTES

BLOCK_BYTES = 4 * 1024 * 1024
FP_BYTES = 4096
"""How much of the start and of the end of what was taken the cursor fingerprints."""


def head(fd: int, relpath: PurePosixPath) -> bytes:
    """The first bytes of the content, decompressed for a .zst file."""
    if relpath.name.endswith(".zst"):
        with ZstdContent(fd) as content:
            try:
                return content.read(HEAD_BYTES)
            except OSError:
                return b""
    return os.pread(fd, HEAD_BYTES, 0)


class Content:
    def __enter__(self) -> Content:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def prefix(self, offset: int) -> tuple[bytes | None, bytes]:
        """The first and the last FP_BYTES of the first `offset` bytes, leaving the reader
        at `offset`; (None, b"") when the content is now shorter than that."""
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        raise NotImplementedError

    def rewind(self) -> None:
        raise NotImplementedError

    def skip(self, n: int) -> None:
        raise NotImplementedError


class PlainContent(Content):
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0

    def prefix(self, offset: int) -> tuple[bytes | None, bytes]:
        if offset == 0:
            return b"", b""
        head = os.pread(self.fd, min(FP_BYTES, offset), 0)
        start = max(0, offset - FP_BYTES)
        tail = os.pread(self.fd, offset - start, start)
        if len(tail) != offset - start:
            return None, b""
        self.pos = offset
        return head, tail

    def read(self, n: int) -> bytes:
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data

    def rewind(self) -> None:
        self.pos = 0

    def skip(self, n: int) -> None:
        self.pos += n


class ZstdContent(Content):
    """A .jsonl.zst read as its decompressed text, streamed."""

    def __init__(self, fd: int) -> None:
        self.file = os.fdopen(os.dup(fd), "rb")
        self.reader = self._open()

    def _open(self) -> Any:
        self.file.seek(0)
        return zstandard.ZstdDecompressor().stream_reader(self.file, read_across_frames=True,
                                                          closefd=False)

    def rewind(self) -> None:
        self.reader.close()
        self.reader = self._open()

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.file.close()

    def _read_exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            data = self.reader.read(min(n - got, BLOCK_BYTES))
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def prefix(self, offset: int) -> tuple[bytes | None, bytes]:
        if offset == 0:
            return b"", b""
        head = self._read_exact(min(FP_BYTES, offset))
        got, tail = len(head), head
        while got < offset:
            data = self._read_exact(min(BLOCK_BYTES, offset - got))
            if not data:
                return None, b""
            got += len(data)
            tail = (tail + data)[-FP_BYTES:]
        if got < offset:
            return None, b""
        return head, tail[-FP_BYTES:]

    def read(self, n: int) -> bytes:
        try:
            return self._read_exact(n)
        except zstandard.ZstdError as e:
            raise OSError(errno.EIO, f"bad zstd data: {e}") from e


class RunSplitter:
    """Cuts a stream where a line starts with the run marker (a history file's run headers).
    A possible marker cut by a block boundary is held back until the next block."""

    def __init__(self, marker: bytes | None, prev_byte: bytes) -> None:
        self.marker = marker
        self.at_line_start = prev_byte in (b"\n", b"")
        self.carry = b""

    def split(self, block: bytes) -> list[tuple[bytes, bool]]:
        if not self.marker:
            return [(block, False)]
        data = self.carry + block
        self.carry = b""
        cuts = []
        if self.at_line_start and data.startswith(self.marker):
            cuts.append(0)
        i = data.find(b"\n" + self.marker)
        while i != -1:
            cuts.append(i + 1)
            i = data.find(b"\n" + self.marker, i + 1)
        # Hold back a trailing partial line that could still become a marker.
        last_nl = data.rfind(b"\n")
        rest = data[last_nl + 1:]
        if (rest and len(rest) < len(self.marker) and self.marker.startswith(rest)
                and (last_nl >= 0 or self.at_line_start)):
            self.carry = rest
            data = data[: len(data) - len(rest)]
        if data:
            self.at_line_start = data.endswith(b"\n")
        pieces: list[tuple[bytes, bool]] = []
        bounds = [0, *[c for c in cuts if c > 0], len(data)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if b > a:
                pieces.append((data[a:b], a in cuts))
        return pieces

    def flush(self) -> bytes:
        carry, self.carry = self.carry, b""
        return carry
