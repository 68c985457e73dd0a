"""Fixtures for real mail servers on 127.0.0.1 (see tests/servers/).

- `smtp_server(tls=..., auth=...)`: an aiosmtpd server in this process, with a fault plan.
- `smtp_sink_process(tls=..., auth=...)`: an aiosmtpd sink in its own process, logging to a file.
- `dovecot`: one Dovecot for the session; `imap_user`: a fresh mailbox on it for each test.
- `private_dovecot`: a Dovecot of the test's own, for tests that kill or restart it.

Without /usr/sbin/dovecot the IMAP tests skip, or fail when DRIPD_TEST_REQUIRE_IMAP=1
(CI: `./dev test` installs Dovecot).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import servers.imap
import servers.smtp
import servers.smtp_sink
from worlds import make_world  # noqa: F401  (a fixture)

REQUIRE_IMAP = os.environ.get("DRIPD_TEST_REQUIRE_IMAP") == "1"

SmtpServerFactory = Callable[..., servers.smtp.SmtpServer]
SmtpSinkFactory = Callable[..., servers.smtp_sink.SmtpSinkProcess]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServerFactory]:
    """Start an `SmtpServer(tls=..., auth=...)`; every one started is stopped at teardown."""
    started: list[servers.smtp.SmtpServer] = []

    def make(**options: Any) -> servers.smtp.SmtpServer:
        server = servers.smtp.SmtpServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def smtp_sink_process(tmp_path: Path) -> Iterator[SmtpSinkFactory]:
    """Start an `SmtpSinkProcess` logging to tmp_path/sink-N.log; stopped at teardown."""
    started: list[servers.smtp_sink.SmtpSinkProcess] = []

    def make(**options: Any) -> servers.smtp_sink.SmtpSinkProcess:
        log = tmp_path / f"sink-{len(started) + 1}.log"
        sink = servers.smtp_sink.SmtpSinkProcess(log, **options).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


def _require_dovecot() -> None:
    if servers.imap.Dovecot.available():
        return
    reason = f"Dovecot not installed ({servers.imap.DOVECOT}); `./dev test` installs it"
    if REQUIRE_IMAP:
        pytest.fail(f"IMAP tests required (DRIPD_TEST_REQUIRE_IMAP=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[servers.imap.Dovecot]:
    """One Dovecot for the whole session; tests keep apart by using their own `imap_user`."""
    _require_dovecot()
    instance = servers.imap.Dovecot().start()
    yield instance
    instance.cleanup()


@pytest.fixture
def imap_user(dovecot: servers.imap.Dovecot) -> servers.imap.ImapAccount:
    """A fresh `user-N-xxxxxx@example.test` with a random password on the session's Dovecot."""
    dovecot.start()  # a no-op unless an earlier test left it stopped
    return dovecot.new_user()


@pytest.fixture
def private_dovecot() -> Iterator[servers.imap.Dovecot]:
    """A Dovecot of this test's own (about 40 ms to start): for kill/restart tests."""
    _require_dovecot()
    instance = servers.imap.Dovecot().start()
    yield instance
    instance.cleanup()
