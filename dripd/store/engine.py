"""Opening the database: SQLite (WAL, one writer at a time) or PostgreSQL, migrated to head."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dripd import errors

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT = 10_000  # milliseconds a writer waits for the lock


def engine_url(url: str) -> str:
    """The SQLAlchemy URL for a config URL: `postgresql://` uses psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL and explicit `BEGIN IMMEDIATE` transactions."""
    url = engine_url(url)
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, future=True)
    _ensure_sqlite_folder(url)
    engine = sa.create_engine(url, future=True)
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _ensure_sqlite_folder(url: str) -> None:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        folder = Path(database).parent
        if not folder.exists():
            raise errors.StoreError(f"database folder {folder} does not exist")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit
    # transactions would start them lazily, after the first read).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT}")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # Every transaction takes the write lock up front: no deadlock between a
    # reader that later writes and another writer.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(engine: sa.Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest version."""
    with contextlib.redirect_stdout(None):
        command.upgrade(alembic_config(engine), "head")


def is_current(engine: sa.Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def open_engine(url: str) -> sa.Engine:
    """An engine on a migrated database; one-line StoreError if it cannot be reached."""
    engine = create_engine(url)
    try:
        if not is_current(engine):
            migrate(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise errors.StoreError(f"cannot open database {_safe(url)}: {_first_line(exc)}") from exc
    return engine


@contextlib.contextmanager
def transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.begin() as connection:
        yield connection


def _safe(url: str) -> str:
    """`url` with any password hidden."""
    try:
        return sa.engine.make_url(engine_url(url)).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparsable URL)"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
