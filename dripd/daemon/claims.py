"""The senders' claims on PostgreSQL, several at once on the event loop's own connections.

A claim must be durable before its email goes (outbox.claim), so each one
waits for a WAL flush: ~4 ms on a busy host, against ~0.03 ms for the
statement itself. Waited for one after another, the twelve connections of
six mailboxes made the whole daemon wait on each flush. Here each claim
runs on one of `SIZE` asynchronous connections and its worker awaits it
while the others send: the claims of every worker are in flight together,
and PostgreSQL's group commit flushes them together (one fsync covers every
commit whose WAL is written by then). Until session 13 they ran in threads:
each hand-off and the threads' fight for the GIL cost the loop more than
the claim's own Python (docs/developer.md, "session 13").

A sender's reads between its batches (its pauses, its ready emails:
`OnLoop.fetch`) are awaited on the same connections: read synchronously,
each round trip held up every mailbox's workers.

The history written after sending (several statements, through SQLAlchemy,
about once a second per mailbox) still runs in a thread, `HISTORY` of them
with a connection each.

One `Claims` per database, shared by every sender of the process, so the
connections stay bounded whatever the number of mailboxes (docs/operator.md,
"Database connections"). SQLite gets none: its commit costs no flush (WAL,
synchronous=NORMAL) and it has one writer anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa

from dripd.store import engine as store_engine
from dripd.store import statements

T = TypeVar("T")
# SIZE + HISTORY: the 4 connections an instance has for its claims (docs/operator.md)
SIZE = 3  # the event loop's connections: claims in flight at once
HISTORY = 1  # threads, and connections in their pool, for the history of sent emails

_by_engine: weakref.WeakKeyDictionary[sa.Engine, Claims] = weakref.WeakKeyDictionary()


class Claims:
    """The claims' connections on the event loop, and the history's threads."""

    def __init__(self, engine: sa.Engine, size: int = SIZE) -> None:
        self.size = size
        self.engine = store_engine.claims_engine(engine, HISTORY)
        # the history: a READ COMMITTED transaction, several statements
        self._transactions = self.engine.execution_options(isolation_level="READ COMMITTED")
        self._threads = ThreadPoolExecutor(HISTORY, thread_name_prefix="dripd-history")
        self._on_loop: OnLoop | None = None

    def on_loop(self) -> OnLoop:
        """The connections the running event loop claims on (made for it at its first claim)."""
        loop = asyncio.get_running_loop()
        found = self._on_loop
        if found is None or found.loop is not loop:
            if found is not None:
                found.close()  # an earlier loop's (tests run several, one after another)
            found = self._on_loop = OnLoop(self.engine, loop, self.size)
        return found

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A READ COMMITTED transaction on a connection of the history's pool."""
        with self._transactions.begin() as conn:
            yield conn

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` in one of the history's threads, waited for even through a cancellation."""
        future = asyncio.get_running_loop().run_in_executor(self._threads, work)
        await settled(future)
        return future.result()

    def close(self) -> None:
        """Stop the threads once their work is done, and close the connections."""
        self._threads.shutdown(wait=True)
        if self._on_loop is not None:
            self._on_loop.close()
            self._on_loop = None
        self.engine.dispose()


class OnLoop:
    """`SIZE` asynchronous autocommit connections: claims run on the event loop, several at once.

    A claim is one statement that commits itself: on a connection of the
    event loop it costs no thread hand-off, and its Python runs between the
    other workers' steps, not against them for the GIL. The connections are
    psycopg's own, opened with the arguments SQLAlchemy opens its own with;
    each is tried before use as the pool tries one (store/engine.py
    `may_be_lost`), and a lost one is dropped, its error raised as
    SQLAlchemy raises one (store/retry.py tells them apart).
    """

    def __init__(self, engine: sa.Engine, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.dialect = engine.dialect
        cargs, self._cparams = engine.dialect.create_connect_args(engine.url)
        assert not cargs, cargs
        self._free = asyncio.Semaphore(size)
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []  # and when last used
        self._open: set[psycopg.AsyncConnection[Any]] = set()

    async def execute(self, sql: str, params: Any) -> int:
        """Run one autocommit statement; the number of rows it changed.

        Its errors are raised as SQLAlchemy's, a lost connection's with
        `connection_invalidated` (the connection dropped): the caller runs
        it again with store/retry.py `retrying_async`.
        """
        return await self._on_connection(lambda conn: self.run_on(conn, sql, params), sql, params)

    async def fetch(self, query: statements.Query[T]) -> T:
        """`query`'s value, read in autocommit as the reader engine reads (store/engine.py).

        A sender's reads between its batches: done synchronously they held up
        every mailbox's loop for a round trip each. Errors as `execute`'s.
        """
        sql, params = query.driver_statement(self.dialect)
        rows = await self._on_connection(lambda conn: self.fetch_on(conn, sql, params), sql, params)
        return query.converted(self.dialect, rows)

    async def run_on(self, conn: psycopg.AsyncConnection[Any], sql: str, params: Any) -> int:
        """The statement on `conn`; the rows it changed."""
        cursor = conn.cursor()
        await cursor.execute(sql, params)
        return cursor.rowcount

    async def fetch_on(
        self, conn: psycopg.AsyncConnection[Any], sql: str, params: Any
    ) -> list[tuple[Any, ...]]:
        """The SELECT on `conn`; its rows as the driver reads them."""
        cursor = conn.cursor()
        await cursor.execute(sql, params)
        return await cursor.fetchall()

    async def _on_connection(
        self,
        work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        sql: str,
        params: Any,
    ) -> T:
        """`work` on a connection taken for it, given back after (dropped if left in doubt)."""
        async with self._free:
            conn = await self._take()
            try:
                done = await work(conn)
            except psycopg.Error as exc:
                raise self._failed(conn, exc, sql, params) from exc
            except BaseException:  # cancelled during the statement: its state is unknown
                self._drop(conn)
                raise
            self._idle.append((conn, time.monotonic()))
            return done

    def _failed(
        self, conn: psycopg.AsyncConnection[Any], exc: psycopg.Error, sql: str | None, params: Any
    ) -> sa.exc.StatementError:
        """`exc` as SQLAlchemy raises it; the connection dropped if lost, else kept."""
        lost = conn.broken or conn.closed
        if lost:
            self._drop(conn)
        else:
            self._idle.append((conn, time.monotonic()))
        return sa.exc.DBAPIError.instance(
            sql, params, exc, psycopg.Error, connection_invalidated=lost
        )

    async def _take(self) -> psycopg.AsyncConnection[Any]:
        """An idle connection, tried first if it may be lost (engine.may_be_lost); or a new one."""
        while self._idle:
            conn, used_at = self._idle.pop()
            if not store_engine.may_be_lost(conn, used_at):
                return conn
            try:
                await conn.execute("select 1")
                return conn
            except BaseException as exc:  # dead; or cancelled during the ping: in doubt
                self._drop(conn)
                if not isinstance(exc, psycopg.Error):
                    raise
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._cparams)
        except psycopg.Error as exc:  # nothing ran: running it again is safe
            raise sa.exc.DBAPIError.instance(
                None, None, exc, psycopg.Error, connection_invalidated=True
            ) from exc
        self._open.add(conn)
        try:
            await conn.execute(store_engine.NO_SEQ_SCANS)
        except BaseException as exc:
            self._drop(conn)
            if not isinstance(exc, psycopg.Error):
                raise
            raise sa.exc.DBAPIError.instance(
                None, None, exc, psycopg.Error, connection_invalidated=True
            ) from exc
        return conn

    def _drop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._open.discard(conn)
        conn.pgconn.finish()

    def close(self) -> None:
        """Close every connection (no statement runs: the claims are done, or their loop is)."""
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()


async def settled(future: asyncio.Future[T]) -> None:
    """Wait until `future` is done, even through a cancellation, which is raised after.

    The claim (its own task) commits or fails whatever happens to the worker
    that started it; leaving before it ends would leave unknown whether the
    emails it marks `sent` were committed (they are given back if not).
    """
    interrupted: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def of(engine: sa.Engine) -> Claims | None:
    """The claims of the database `engine` opens; None on SQLite (claimed on the loop).

    Made at the first claim, closed when `engine` is disposed.
    """
    if engine.dialect.name != "postgresql":
        return None
    claims = _by_engine.get(engine)
    if claims is None:
        claims = _by_engine[engine] = Claims(engine)
        sa.event.listen(engine, "engine_disposed", lambda _engine: _close(engine))
    return claims


def _close(engine: sa.Engine) -> None:
    claims = _by_engine.pop(engine, None)
    if claims is not None:
        claims.close()
