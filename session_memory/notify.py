"""The notifier seam: systemd's sd_notify protocol in pure Python (no libsystemd).

A datagram of `KEY=value` lines sent to the AF_UNIX socket named in $NOTIFY_SOCKET; a
name starting with '@' is in the abstract namespace. Without $NOTIFY_SOCKET every call
is a no-op, so the daemon behaves the same in a terminal and under systemd.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol

from session_memory import log

logger = log.get("session_memory.notify")


class Notifier(Protocol):
    def notify(self, message: str) -> bool:
        """Send `KEY=value` lines; True when the service manager got them."""
        ...

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings the manager expects, or None if it expects none."""
        ...


class SdNotifier:
    """Notifies the service manager named by the environment (read once, at construction)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env)
        self._socket: socket.socket | None = None
        self._failed = False

    def notify(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX,
                                             socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never blocking: a manager that does not read must not stall the main loop
            # (a full datagram queue would block sendto); an unread message is dropped.
            self._socket.sendto(message.encode("utf-8", "replace"), socket.MSG_DONTWAIT,
                                self.address)
        except BlockingIOError:
            logger.debug("notify socket full; message dropped", message=message)
            return False
        except OSError as e:
            if not self._failed:  # say it once: a vanished manager is not worth a log storm
                logger.warning("cannot notify the service manager", socket=self.address,
                               reason=e.strerror)
                self._failed = True
            return False
        self._failed = False
        return True

    def watchdog_interval(self) -> float | None:
        # Ping at half the manager's timeout, as sd_watchdog_enabled(3) recommends.
        return self._watchdog_usec / 2_000_000 if self._watchdog_usec else None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other families are not for user services


def _watchdog_usec(env: dict[str, str] | os._Environ[str]) -> int | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were forked or exec'd by the service)
    return int(usec)


def status_line(text: str) -> str:
    """STATUS= takes one line."""
    return "STATUS=" + " ".join(text.split())
