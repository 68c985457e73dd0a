"""Opening the database: SQLite (WAL, one writer at a time) or PostgreSQL, migrated to head."""

from __future__ import annotations

import contextlib
import select
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dripd import errors

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration's revision. Checked against alembic's own view of the
# migrations folder by a test; comparing it with a plain query lets commands
# skip importing alembic (a third of the CLI's start-up) when nothing is to do.
HEAD = "0013"
SQLITE_BUSY_TIMEOUT = 10_000  # milliseconds a writer waits for the lock
READ_ONLY = "dripd_read_only"  # execution option: this connection never writes
SQLITE_CACHE_KIB = 65_536  # page cache per connection: big imports touch many index pages
# The pool. dripd takes a connection only for a synchronous step, never across
# an await (tests/dbguard.py fails the tests otherwise), so its one event loop
# holds one at a time, two when a step reads beside its transaction: the pool
# does not grow with the mailboxes (docs/operator.md, "Database connections", counts them).
POOL_SIZE = 2  # connections kept open
POOL_OVERFLOW = 3  # opened for a moment beyond those, closed when returned
# seconds a checkout may wait. In the event loop's thread no one else can give
# a connection back meanwhile: waiting longer only freezes every mailbox.
POOL_TIMEOUT = 2.0
# PostgreSQL: a connection back from the pool is tried with a round trip only
# if it sat idle this long (seconds) or the server wrote to it meanwhile
# (see `_check_alive`); pinging at every checkout was a fifth of each claim.
PING_AFTER_IDLE = 10.0
_RETURNED_AT = "dripd_returned_at"  # the pool record's info key: when it was last checked in


def engine_url(url: str) -> str:
    """The SQLAlchemy URL for a config URL: `postgresql://` uses psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL and explicit `BEGIN IMMEDIATE` transactions."""
    url = engine_url(url)
    if not url.startswith("sqlite"):
        engine = sa.create_engine(url, **_pool_options())
        sa.event.listen(engine, "checkin", _checked_in)
        sa.event.listen(engine, "checkout", _check_alive)
        return engine
    _ensure_sqlite_folder(url)
    memory = sa.engine.make_url(url).database in (None, "", ":memory:")  # one connection
    engine = sa.create_engine(url, **({} if memory else _pool_options()))
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _pool_options() -> dict[str, Any]:
    """A small pool; last in, first out, so the connection reused is the one with a warm cache."""
    return {
        "pool_size": POOL_SIZE,
        "max_overflow": POOL_OVERFLOW,
        "pool_timeout": POOL_TIMEOUT,
        "pool_use_lifo": True,
    }


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info[_RETURNED_AT] = time.monotonic()


def _check_alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Before a pooled PostgreSQL connection is used: try it if it may have been lost.

    A backend ended by the server (a restart, `pg_terminate_backend`, an idle
    timeout) writes its FATAL message and closes the socket: readable while
    no query runs, which a poll sees without a round trip. A connection
    dropped in silence (a host or a network gone) shows nothing: one that sat
    idle for PING_AFTER_IDLE is pinged too. A dead one is replaced by the
    pool (DisconnectionError). One lost between this check and its statement
    fails that statement (store/retry.py runs the transaction again when that
    is safe).
    """
    returned = record.info.get(_RETURNED_AT)
    if returned is None:  # just opened
        return
    if not may_be_lost(dbapi_connection, returned):
        return
    try:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # no transaction left open by the ping
        try:
            dbapi_connection.execute("select 1")
        finally:
            dbapi_connection.autocommit = autocommit
    except Exception as exc:  # the driver's errors: the connection is unusable
        raise sa.exc.DisconnectionError(first_line(exc)) from exc


def may_be_lost(dbapi_connection: Any, used_at: float) -> bool:
    """Whether a PostgreSQL connection last used at `used_at` (monotonic) must be tried first.

    Ended by the server, it is readable (its FATAL message, or closed); or it
    sat idle for PING_AFTER_IDLE and may have been dropped in silence.
    """
    return time.monotonic() - used_at >= PING_AFTER_IDLE or _has_input(dbapi_connection)


def _has_input(dbapi_connection: Any) -> bool:
    """Whether the server wrote to an idle connection (or it is closed): it must be tried."""
    try:
        poll = select.poll()
        poll.register(dbapi_connection.fileno(), select.POLLIN)
        return bool(poll.poll(0))
    except Exception:  # closed: no descriptor
        return True


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
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # A writing transaction takes the write lock up front: no deadlock between
    # a reader that later writes and another writer. Connections opened with
    # `reader()` only read: a deferred BEGIN lets them read beside a writer
    # (WAL), e.g. `dripd status` while the daemon sends.
    # Issued on the driver's connection: through exec_driver_sql it was an
    # eighth of each email's claim transaction (16 of 126 µs). Its errors
    # are raised as SQLAlchemy raises those of any statement.
    begin = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection being begun is open"
    try:
        driver.execute(begin)
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(begin, None, exc, sqlite3.Error) from exc


def reader(engine: sa.Engine) -> sa.Engine:
    """The engine for read-only work (no write lock taken on SQLite).

    On PostgreSQL in autocommit: at READ COMMITTED each statement reads its
    own snapshot anyway, and the BEGIN and ROLLBACK around a read were two
    round trips more (the event loop waits on each: a sender's drain reads
    four times).
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT", **{READ_ONLY: True})
    return engine.execution_options(**{READ_ONLY: True})


def claims_engine(engine: sa.Engine, size: int) -> sa.Engine:
    """A second engine on `engine`'s PostgreSQL database: `size` autocommit connections, no more.

    For the claims run in threads (dripd.daemon.claims): one connection per
    thread, so none waits for one, and the main pool stays the event loop's.
    """
    claims = sa.create_engine(
        engine.url,
        pool_size=size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT,
        pool_use_lifo=True,
        isolation_level="AUTOCOMMIT",
    )
    sa.event.listen(claims, "checkin", _checked_in)
    sa.event.listen(claims, "checkout", _check_alive)
    sa.event.listen(claims, "connect", _no_seq_scans)
    return claims


NO_SEQ_SCANS = "SET enable_seqscan = off"


def _no_seq_scans(dbapi_connection: Any, _record: Any) -> None:
    """A claims connection's plans go by index, whatever the tables' size when they were made.

    Its statements each touch a few rows by primary key (the claim, the
    history of sent emails). psycopg prepares a statement at its fifth run,
    and PostgreSQL keeps the generic plan for the connection's life, until
    the table's statistics change (never, with autovacuum off): a plan made
    while the outbox was a page or two reads it whole, the cheapest way
    then, at every claim after (265 buffers, 1.8 ms at 5,000 emails).
    """
    dbapi_connection.execute(NO_SEQ_SCANS)
    if not dbapi_connection.autocommit:
        dbapi_connection.commit()


def alembic_config(engine: sa.Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: sa.Engine) -> str | None:
    """Bring the schema to the newest version; the version it found (None: empty)."""
    from alembic import command

    config = alembic_config(engine)
    with contextlib.redirect_stdout(None):
        command.upgrade(config, "head")
    before = config.attributes.get("before")
    return str(before) if before is not None else None


def is_current(engine: sa.Engine) -> bool:
    """True if the database is at HEAD (a plain query: no alembic import)."""
    return schema_version(engine) == HEAD


def schema_version(engine: sa.Engine) -> str | None:
    """The database's migration revision; None for a new, empty database."""
    with reader(engine).connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        version = connection.execute(sa.text("select version_num from alembic_version")).scalar()
    return str(version) if version is not None else None


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the schema to HEAD if it is older; (version before, version after).

    Safe while other instances run on PostgreSQL (migrations/env.py). A
    database already migrated by a newer dripd is refused: this one would
    not know its tables.
    """
    before = schema_version(engine)
    if before is not None and before > HEAD:  # revisions are zero-padded numbers
        raise errors.StoreError(
            f"the database schema is at {before}, newer than this dripd knows ({HEAD}): "
            "upgrade dripd on this host"
        )
    if before != HEAD:
        before = migrate(engine)  # as found under the migration lock
    return before, HEAD


def alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    config = alembic_config_for_scripts()
    return ScriptDirectory.from_config(config).get_current_head()


def alembic_config_for_scripts() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def open_engine(url: str) -> sa.Engine:
    """An engine on a migrated database; one-line StoreError if it cannot be reached."""
    return _opened(url)[0]


def migrate_url(url: str) -> tuple[str | None, str]:
    """`dripd migrate`: the schema's version before and after bringing it up to date."""
    engine, before = _opened(url)
    engine.dispose()
    return before, HEAD


def _opened(url: str) -> tuple[sa.Engine, str | None]:
    engine = create_engine(url)
    try:
        before, _ = upgrade(engine)
    except errors.StoreError:
        engine.dispose()
        raise
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise errors.StoreError(f"cannot open database {safe_url(url)}: {first_line(exc)}") from exc
    return engine, before


def safe_url(url: str) -> str:
    """`url` as the config gives it, with any password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparsable URL)"


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
