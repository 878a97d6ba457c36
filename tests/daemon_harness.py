"""The daemon as a real subprocess, a real notify socket, real writer processes.

Readiness comes from the datagram socket the daemon notifies (as systemd would see it),
never from polling; teardown always terminates, then kills, the subprocess (as datasette's
server tests do).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT = 20.0


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's notify socket. A thread reads it
    all the time, as the manager does: an unread socket fills up and drops messages."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:  # the abstract namespace: no path length limit, nothing to clean up
            name = f"session-memory-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages: list[str] = []
        self._arrived = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        self.sock.settimeout(0.1)  # a blocked recv would not notice close()
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._arrived:
                self.messages.append(data.decode())
                self._arrived.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first message (seen before or arriving within timeout) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching notification; got {self.messages[-20:]!r}")
                self._arrived.wait(left)

    def wait_line(self, line: str, timeout: float = 10.0) -> str:
        return self.wait_for(lambda m: line in m.splitlines(), timeout)

    def close(self) -> None:
        self._closed = True
        self._reader.join(timeout=2)
        self.sock.close()


class DaemonProcess:
    def __init__(self, config_path: Path, notify: NotifySocket, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.notify = notify
        self.log_path = log_path
        env = dict(os.environ, NOTIFY_SOCKET=notify.address, SESSION_MEMORY_LOG_LEVEL="debug")
        env.update(extra_env or {})
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "session_memory", "--config", str(config_path), "daemon"],
            env=env, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)

    def wait_ready(self) -> str:
        try:
            return self.notify.wait_line("READY=1", START_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"daemon never became ready; log:\n{self.log()}") from None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int | None:
        """Terminate, then kill: whatever the test did, no daemon outlives it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


WRITER = r"""
import sys
# One command a line: "a|w<TAB><path><TAB><text>". a: open, append a line, close (as
# Claude Code writes); w: open, write the whole file anew, close (as OpenCode writes).
for line in sys.stdin:
    mode, _, rest = line.rstrip("\n").partition("\t")
    path, _, text = rest.partition("\t")
    with open(path, "ab" if mode == "a" else "wb") as f:
        f.write(text.encode() + (b"\n" if mode == "a" else b""))
    print("ok", flush=True)
"""


class Writer:
    """A separate process that appends to session files when told to."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def append(self, path: Path, text: str) -> None:
        self._command("a", path, text)

    def rewrite(self, path: Path, text: str) -> None:
        """The whole file anew, in place (`text` on one line: JSON without newlines)."""
        self._command("w", path, text)

    def _command(self, mode: str, path: Path, text: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{mode}\t{path}\t{text}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
