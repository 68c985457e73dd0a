"""The sd_notify protocol against real AF_UNIX datagram sockets bound by the test.

- Datagrams reach a socket named by path and an abstract one (`@name`).
- Without NOTIFY_SOCKET nothing is sent and nothing fails; a socket that is
  gone is logged once, never raised (dripd keeps running).
- WATCHDOG_USEC/WATCHDOG_PID: the ping interval, only for this process.
- The service task pings only while the loop's heartbeat holds, stops when it
  is late (one error line), starts again when the loop does; STATUS= only
  when the text changed.

`dripd run` itself, as systemd runs it, is in tests/acceptance/test_service.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dripd.daemon import heartbeat as heartbeat_mod
from dripd.daemon import notify


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket (a short path: AF_UNIX paths are limited to 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="dripd-notify-", dir="/tmp")
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def _drain(sock: socket.socket) -> list[str]:
    messages: list[str] = []
    sock.settimeout(0.0)
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(sock.recv(4096).decode())
    sock.settimeout(2.0)
    return messages


def test_each_notification_is_one_datagram_of_key_value_lines(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = notify.Notifier(path)
    assert notifier.enabled
    notifier.ready("sending: 2 queued")
    notifier.status("inboxes: mike\nwatching")  # a newline must not start another field
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()
    got = [sock.recv(4096).decode() for _ in range(5)]
    assert got[0] == "READY=1\nSTATUS=sending: 2 queued"
    assert got[1] == "STATUS=inboxes: mike watching"
    assert got[2] == "WATCHDOG=1"
    reloading, monotonic = got[3].split("\n")
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=")
    assert abs(int(monotonic.split("=")[1]) - time.monotonic_ns() // 1000) < 5_000_000
    assert got[4] == "STOPPING=1"


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"dripd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        notifier = notify.Notifier(f"@{name}")
        notifier.ready()
        notifier.close()
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = notify.Notifier.from_environment()
    assert not notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()


def test_a_socket_that_is_gone_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = notify.Notifier(str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.WARNING, "dripd.notify"):
        for _ in range(3):
            notifier.watchdog()
    notifier.close()
    assert [r.getMessage() for r in caplog.records] == ["cannot notify the service manager"]


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert notify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert notify.watchdog_interval() is None


async def _collect(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Datagrams received over `seconds`, with their arrival time."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
            got.append((time.monotonic(), data.decode()))
    return got


def test_pings_stop_while_the_loop_is_stuck_and_resume_when_it_runs(
    listener: tuple[socket.socket, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock, path = listener
    monkeypatch.setattr(heartbeat_mod, "STATUS_EVERY", 0.2)
    calls: list[float] = []

    def status() -> str:
        calls.append(time.monotonic())
        return "sending: 0 queued" if len(calls) <= 3 else "sending: 1 queued"

    async def scenario() -> tuple[list[tuple[float, str]], list[tuple[float, str]], float]:
        heartbeat, stop = heartbeat_mod.Heartbeat(), asyncio.Event()
        heartbeat.expect_within(0.5)  # the loop checks in, then hangs
        notifier = notify.Notifier(path)
        tending = asyncio.create_task(
            heartbeat_mod.tend(notifier, heartbeat, status, stop, ping_every=0.05)
        )
        stuck = await _collect(sock, 1.5)
        heartbeat.expect_within(60)  # running again
        resumed_at = time.monotonic()
        running = await _collect(sock, 0.5)
        stop.set()
        await tending
        notifier.close()
        return stuck, running, resumed_at

    with caplog.at_level(logging.INFO, "dripd.service"):
        stuck, running, resumed_at = asyncio.run(scenario())

    started = stuck[0][0]
    pings = [at - started for at, text in stuck if text == "WATCHDOG=1"]
    assert len(pings) >= 5, stuck
    assert max(pings) < 0.6, "a ping after the loop was late"
    assert sum(text == "WATCHDOG=1" for _, text in running) >= 5
    assert min(at for at, text in running if text == "WATCHDOG=1") - resumed_at < 0.2
    # STATUS= whenever the text changed, stuck or not; not at every look
    assert len(calls) >= 6
    assert [text for _, text in stuck + running if text.startswith("STATUS=")] == [
        "STATUS=sending: 0 queued",
        "STATUS=sending: 1 queued",
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "main loop stalled: watchdog pings stopped",
        "main loop running again",
    ]
    assert caplog.records[0].levelno == logging.ERROR
