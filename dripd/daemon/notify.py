"""The service manager's notification protocol (sd_notify), in the few lines it takes.

systemd passes `$NOTIFY_SOCKET`: an AF_UNIX datagram socket, a path or, when
it starts with `@`, an abstract name. Each datagram is newline-separated
`KEY=VALUE` lines (READY=1, STATUS=..., WATCHDOG=1, RELOADING=1,
STOPPING=1). Without the variable every call is a no-op, so `dripd run`
behaves the same from a terminal. No dependency: the protocol is one
`sendto`, and the packages that wrap it (sdnotify, systemd-python) are
either unmaintained or need libsystemd headers to build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

logger = logging.getLogger("dripd.notify")


class Notifier:
    """Sends notifications to one socket; does nothing when there is none."""

    def __init__(self, address: str | None) -> None:
        self.address = _socket_address(address) if address else None
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        """One datagram of `KEY=VALUE` fields; a failure is logged once, never raised."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)  # a full queue must not stall the event loop
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "cannot notify the service manager",
                    extra={"action": "notify_failed", "error": exc.strerror or str(exc)},
                )

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *_status(status))

    def status(self, text: str) -> None:
        self.send(*_status(text))

    def reloading(self, status: str | None = None) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload it asked for.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", *_status(status))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _status(text: str | None) -> tuple[str, ...]:
    # one line: a newline would start another field
    return (f"STATUS={' '.join(text.split())}",) if text else ()


def _socket_address(value: str) -> str | bytes:
    """A path, or an abstract socket name (`@name` → a leading NUL byte)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when not asked.

    `$WATCHDOG_PID`, when set, names the process the watchdog is for: another
    process (a child that inherited the environment) must not ping.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2
