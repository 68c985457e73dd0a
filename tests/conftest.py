"""Shared fixtures: a config on disk, databases, the real servers (tests/servers/).

- `make_config`: a config (and optionally a copy of the shipped campaigns) under tmp_path.
- `database_url` (SQLite, and PostgreSQL when reachable), `sqlite_url`, `postgres_url`
  (a clone of a migrated template), `postgres_server`, `postgres_template`.
- `smtp_server(tls=..., auth=...)`: an aiosmtpd server in this process, with a fault plan.
- `smtp_sink_process(tls=..., auth=...)`: an aiosmtpd sink in its own process, logging to a file.
- `dovecot`: one Dovecot for the session; `imap_user`: a fresh mailbox on it for each test.
- `private_dovecot`: a Dovecot of the test's own, for tests that kill or restart it.

A missing PostgreSQL, Dovecot or Chromium skips the tests that need it, or fails
them when CI requires it (tests/servers/required.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dates
import dbguard
import hypothesis
import pytest
import servers.imap
import servers.postgres
import servers.required
import servers.smtp
import servers.smtp_sink
import sqlalchemy as sa

from dripd.store import engine as store_engine

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CAMPAIGNS = REPO / "campaigns"
# `./dev test` runs the suite a second time with the clock years ahead (libfaketime): then
# the tests that talk to a server outside this process tree, which keeps the real clock
# (PostgreSQL, Dovecot), are left out; everything else must pass on any date.
CLOCK_AHEAD = bool(os.environ.get("DRIPD_TEST_CLOCK_AHEAD"))

# CI draws the same Hypothesis examples at every run, so that what fails there fails
# again and what passes is not luck; a developer's run draws new ones each time (the
# fuzz tests of incoming mail go on finding rare damage that way: docs/developer.md).
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")
REAL_CLOCK_FIXTURES = frozenset(
    {"postgres_server", "postgres_template", "dovecot", "imap_user", "private_dovecot"}
)


def pytest_configure(config: pytest.Config) -> None:
    """In the clock-ahead pass, this process's clock must really be ahead (in every worker)."""
    if not CLOCK_AHEAD:
        return
    # The kernel stamps /proc/self with the real time the process started; libfaketime
    # moves only what this process reads as the time.
    moved = time.time() - os.stat("/proc/self").st_ctime
    if abs(moved) < 3600:
        pytest.exit(
            "DRIPD_TEST_CLOCK_AHEAD is set but this process's clock is not moved:"
            " run the tests under faketime, as ./dev test does",
            returncode=3,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not CLOCK_AHEAD:
        return
    kept, left_out = [], []
    for item in items:
        (left_out if _needs_real_clock(item) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _needs_real_clock(item: pytest.Item) -> bool:
    if any(item.get_closest_marker(name) for name in ("realclock", "postgres", "own_clock")):
        return True
    return bool(REAL_CLOCK_FIXTURES & set(getattr(item, "fixturenames", ())))


# No connection held across a network wait, here and in `dripd run` subprocesses
# (tests/dbguard.py): they load the guard from tests/sitehooks and write to GUARD_REPORT.
_handle, _name = tempfile.mkstemp(prefix="dripd-dbguard-", suffix=".txt")
os.close(_handle)
GUARD_REPORT = Path(_name)
dbguard.install()
os.environ["DRIPD_DBGUARD"] = str(GUARD_REPORT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p
    for p in (str(REPO / "tests" / "sitehooks"), str(REPO / "tests"), os.environ.get("PYTHONPATH"))
    if p
)


def pytest_unconfigure(config: pytest.Config) -> None:
    GUARD_REPORT.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def no_connection_held_across_network() -> Iterator[None]:
    """Fail the test if dripd awaited SMTP or IMAP with a database connection checked out."""
    seen = len(dbguard.violations)
    with GUARD_REPORT.open("rb") as report:
        report.seek(0, os.SEEK_END)
        offset = report.tell()
    yield
    with GUARD_REPORT.open("rb") as report:
        report.seek(offset)
        found = dbguard.violations[seen:] + report.read().decode().splitlines()
    if found:
        pytest.fail(
            "a database connection was held across a network wait:\n"
            + "\n".join(sorted(set(found))[:10]),
            pytrace=False,
        )


# A holiday ahead of any day a test runs, so `dripd check` never finds it passed.
CHRISTMAS = dates.christmas(dates.today().year + 1)
BASE_CONFIG = """
[dripd]
database = "{database}"
campaigns = "{campaigns}"
attachments = "attachments"
timezone = "America/New_York"
send_window = "mon-fri 09:00-17:00"
holidays = ["{christmas}"]

[roles]
associate = "sam"

[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@example.com"
signature = "Mike Gulitz\\nMPC Mortgage Planner"

[[reps]]
id = "sam"
name = "Sam Rivera"
email = "sam@example.com"
"""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.postgres.Server]:
    """The PostgreSQL server of DRIPD_TEST_POSTGRES_URL; its databases are dropped at the end."""
    server = servers.required.postgres_server()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: servers.postgres.Server) -> tuple[sa.Engine, str]:
    """A migrated template database (the admin engine, its name); each test clones it (fast)."""
    url = postgres_server.create(prefix="dripd_tpl_")
    store_engine.open_engine(url).dispose()
    return postgres_server.admin, str(sa.engine.make_url(url).database)


@pytest.fixture
def postgres_url(
    postgres_server: servers.postgres.Server, postgres_template: tuple[sa.Engine, str]
) -> Iterator[str]:
    """A fresh PostgreSQL database cloned from the migrated template; dropped after the test."""
    url = postgres_server.create(template=postgres_template[1])
    yield url
    postgres_server.drop(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite, and PostgreSQL when reachable."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dripd.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dripd.db'}"


ConfigFactory = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Write a config (and optionally a copy of the campaigns) under tmp_path; its path."""

    def make(
        database: str | None = None,
        campaigns: Path | None = None,
        extra: str = "",
        copy_campaigns: bool = False,
    ) -> Path:
        folder = campaigns or SHIPPED_CAMPAIGNS
        if copy_campaigns:
            target = tmp_path / "campaigns"
            if not target.exists():
                shutil.copytree(folder, target)
            folder = target
        url = database or f"sqlite:///{tmp_path / 'dripd.db'}"
        text = BASE_CONFIG.format(
            database=url, campaigns=folder, christmas=CHRISTMAS
        ) + textwrap.dedent(extra)
        path = tmp_path / "config.toml"
        path.write_text(text, encoding="utf-8")
        (tmp_path / "attachments").mkdir(exist_ok=True)
        return path

    return make


# -- the real mail servers (tests/servers/) ----------------------------------------

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


@pytest.fixture(scope="session")
def dovecot() -> Iterator[servers.imap.Dovecot]:
    """One Dovecot for the whole session; tests keep apart by using their own `imap_user`."""
    with servers.required.dovecot() as instance:
        yield instance


@pytest.fixture
def imap_user(dovecot: servers.imap.Dovecot) -> servers.imap.ImapAccount:
    """A fresh `user-N-xxxxxx@example.test` with a random password on the session's Dovecot."""
    dovecot.start()  # a no-op unless an earlier test left it stopped
    return dovecot.new_user()


@pytest.fixture
def private_dovecot() -> Iterator[servers.imap.Dovecot]:
    """A Dovecot of this test's own (about 40 ms to start): for kill/restart tests."""
    with servers.required.dovecot() as instance:
        yield instance
