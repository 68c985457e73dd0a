"""What every test server here shares: the loopback host, free ports, waiting, async clients.

Under pytest tests/ is on sys.path, so the package is `servers`; the benchmarks put
tests/ there too (bench/__init__.py). Only `servers.required` depends on pytest.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"
DOMAIN = "example.test"
START_TIMEOUT = 10.0  # seconds
STOP_TIMEOUT = 10.0  # seconds


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need one up front)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different free ports (one after the other, the kernel may hand out one twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_client(coro: Coroutine[Any, Any, T], *, close_timeout: float = 1.0) -> T:
    """`asyncio.run(coro)`, then wait (up to `close_timeout` s) for its connections to close.

    A TLS connection the client has closed (aiosmtplib after quit() or a failed
    login, aioimaplib after the server answers LOGOUT) finishes its shutdown a
    few loop turns later; plain `asyncio.run` closes the loop first, and the
    half-closed sockets surface later as ResourceWarning, which is an error
    under `filterwarnings = error`.
    """

    async def main() -> T:
        try:
            return await coro
        finally:
            await _connections_closed(close_timeout)

    return asyncio.run(main())


async def _connections_closed(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    # CPython's selector loops keep fd -> transport; a transport drops its
    # socket once connection_lost has run.
    transports = getattr(loop, "_transports", {})
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(getattr(t, "_sock", None) is None for t in list(transports.values())):
            return
        await asyncio.sleep(0.001)
