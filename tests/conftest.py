"""Shared fixtures: a config on disk, databases (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dbguard
import pytest
import sqlalchemy as sa

from dripd.store import engine as store_engine

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CAMPAIGNS = REPO / "campaigns"
POSTGRES_URL = os.environ.get(
    "DRIPD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("DRIPD_TEST_REQUIRE_POSTGRES") == "1"
# `./dev test` runs the suite a second time with the clock years ahead (libfaketime): then
# the tests that talk to a server outside this process tree, which keeps the real clock
# (PostgreSQL, Dovecot), are left out; everything else must pass on any date.
CLOCK_AHEAD = bool(os.environ.get("DRIPD_TEST_CLOCK_AHEAD"))
REAL_CLOCK_FIXTURES = frozenset({"postgres_template", "dovecot", "imap_user", "private_dovecot"})


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


BASE_CONFIG = """
[dripd]
database = "{database}"
campaigns = "{campaigns}"
attachments = "attachments"
timezone = "America/New_York"
send_window = "mon-fri 09:00-17:00"
holidays = ["2026-12-25"]

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


def _postgres_admin() -> sa.Engine | None:
    engine = sa.create_engine(store_engine.engine_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError:
        engine.dispose()
        return None
    return engine


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[tuple[sa.Engine, str]]:
    """A migrated template database; each test clones it (fast, isolated)."""
    admin = _postgres_admin()
    if admin is None:
        if REQUIRE_POSTGRES:
            pytest.fail(
                "PostgreSQL required (DRIPD_TEST_REQUIRE_POSTGRES=1) "
                f"but not reachable at {POSTGRES_URL}"
            )
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    name = f"dripd_tpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = _database_url(name)
    engine = store_engine.open_engine(url)
    engine.dispose()
    yield admin, name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _database_url(name: str) -> str:
    return sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_template: tuple[sa.Engine, str]) -> Iterator[str]:
    """A fresh PostgreSQL database cloned from the migrated template; dropped after the test."""
    admin, template = postgres_template
    name = f"dripd_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _database_url(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
        text = BASE_CONFIG.format(database=url, campaigns=folder) + textwrap.dedent(extra)
        path = tmp_path / "config.toml"
        path.write_text(text, encoding="utf-8")
        (tmp_path / "attachments").mkdir(exist_ok=True)
        return path

    return make
