"""Fixtures shared by the acceptance tests (the real `dripd` in subprocesses)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers.smtp_sink


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """dripd processes a test started; any still running at teardown is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[servers.smtp_sink.SmtpSinkProcess]:
    """An aiosmtpd sink in its own process, logging each Message-ID before its 250."""
    sink = servers.smtp_sink.SmtpSinkProcess(tmp_path / "sink.log").start()
    yield sink
    sink.stop()
