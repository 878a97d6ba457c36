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


class _Positioned(Content):
    """Content read at a position of its own (pread or a slice), not by a stream."""

    pos = 0

    def rewind(self) -> None:
        self.pos = 0

    def skip(self, n: int) -> None:
        self.pos += n


class PlainContent(_Positioned):
    def __init__(self, fd: int) -> None:
        self.fd = fd

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


class BytesContent(_Positioned):
    """A file's content read whole already (by the read ahead): no need to open it again."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def prefix(self, offset: int) -> tuple[bytes | None, bytes]:
        if offset == 0:
            return b"", b""
        if len(self.data) < offset:
            return None, b""
        self.pos = offset
        return self.data[:min(FP_BYTES, offset)], self.data[max(0, offset - FP_BYTES):offset]

    def read(self, n: int) -> bytes:
        data = self.data[self.pos:self.pos + n]
        self.pos += len(data)
        return data


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


MAX_HEADER_BYTES = 4096
"""A run header's line is held back until it is complete, up to this long."""
MAX_PREAMBLE_BYTES = 64 * 1024
"""Bytes before a file's first run header wait for it (they belong to that run), up to this."""


def first_run_header(data: bytes, marker: bytes) -> bytes | None:
    """The first line of `data` that starts with `marker` (a run's header), without its
    newline; None when no line does."""
    at = 0 if data.startswith(marker) else data.find(b"\n" + marker) + 1
    if not at and not data.startswith(marker):
        return None
    end = data.find(b"\n", at)
    return data[at:] if end < 0 else data[at:end]


class RunSplitter:
    """Cuts a stream where a line starts with the run marker (a history's run headers).

    What could still change a run's identity is held back until the next block: a possible
    marker cut by a block boundary, a run header whose line is not complete yet (the run's
    id comes from it), and, at the very start of a file, the bytes before the first header
    (they belong to that first run). What is still held back when the content ends is left
    in the source for the next pass (`flush`), except a preamble that is more than blank
    lines: that is stored as a run of its own."""

    def __init__(self, marker: bytes | None, prev_byte: bytes, *, at_start: bool = False) -> None:
        self.marker = marker
        self.at_line_start = prev_byte in (b"\n", b"")
        self.carry = b""
        self.preamble = at_start and marker is not None

    def split(self, block: bytes) -> list[tuple[bytes, bool]]:
        if not self.marker:
            return [(block, False)]
        marker = self.marker
        data = self.carry + block
        self.carry = b""
        cuts = []
        if self.at_line_start and data.startswith(marker):
            cuts.append(0)
        i = data.find(b"\n" + marker)
        while i != -1:
            cuts.append(i + 1)
            i = data.find(b"\n" + marker, i + 1)
        # Hold back a trailing partial line that could still become a marker, or a header
        # whose line has not ended yet.
        last_nl = data.rfind(b"\n")
        rest = data[last_nl + 1:]
        if rest and (last_nl >= 0 or self.at_line_start) and (
                (len(rest) < len(marker) and marker.startswith(rest))
                or (rest.startswith(marker) and len(rest) < MAX_HEADER_BYTES)):
            self.carry = rest
            data = data[: len(data) - len(rest)]
            cuts = [c for c in cuts if c < len(data)]
        if self.preamble:
            if not cuts:
                if len(data) + len(self.carry) < MAX_PREAMBLE_BYTES:
                    self.carry = data + self.carry  # no header yet: wait for it
                    return []
                self.preamble = False  # no run header after all this: a run of its own
                cuts = [0]
            else:
                # The preamble opens the first run: one piece from byte 0 to the next header.
                self.preamble = False
                cuts = [0, *cuts[1:]]
        if data:
            self.at_line_start = data.endswith(b"\n")
        pieces: list[tuple[bytes, bool]] = []
        bounds = [0, *[c for c in cuts if c > 0], len(data)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if b > a:
                pieces.append((data[a:b], a in cuts))
        return pieces

    def flush(self) -> list[tuple[bytes, bool]]:
        """At the end of the content: what is held back and may be stored now."""
        carry, self.carry = self.carry, b""
        if not self.preamble or not self.marker:
            self.carry = carry  # a header (or the start of one) not complete: the next pass
            return []
        tail = carry[carry.rfind(b"\n") + 1:]
        if not (self.marker.startswith(tail) or tail.startswith(self.marker)):
            tail = b""
        body = carry[: len(carry) - len(tail)]
        if not body.strip():
            self.carry = carry  # blank lines before a first header yet to come: wait
            return []
        self.preamble = False
        self.carry = tail
        return [(body, True)]  # text with no run header: a run of its own

    def held(self) -> int:
        """Bytes read but held back."""
        return len(self.carry)
