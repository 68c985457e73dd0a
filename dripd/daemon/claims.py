"""The senders' claims on PostgreSQL, run in a few threads so that their commits overlap.

A claim must be durable before its email goes (outbox.claim), so each one
waits for a WAL flush: ~4 ms on a busy host, against ~0.03 ms for the
statement itself. Run on the event loop, the twelve connections of six
mailboxes waited for their flushes one after another, and the whole daemon
with them. Run here, the claims of every worker are in flight together, and
PostgreSQL's group commit flushes them together (one fsync covers every
commit whose WAL is written by then).

One `Claims` per database, shared by every sender of the process: `SIZE`
threads, each with its own connection from a pool of exactly `SIZE` (no
overflow), so the connections stay bounded whatever the number of mailboxes
(docs/operator.md, "Database connections"). SQLite gets none: its commit
costs no flush (WAL, synchronous=NORMAL) and it has one writer anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import sqlalchemy as sa

from dripd.store import engine as store_engine

T = TypeVar("T")
SIZE = 4  # threads, and connections in their pool: claims in flight at once

_by_engine: weakref.WeakKeyDictionary[sa.Engine, Claims] = weakref.WeakKeyDictionary()


class Claims:
    """`SIZE` threads and their autocommit connections: claims that do not block the loop."""

    def __init__(self, engine: sa.Engine, size: int = SIZE) -> None:
        self.engine = store_engine.claims_engine(engine, size)
        # the same connections in a transaction, for work of several statements
        self._transactions = self.engine.execution_options(isolation_level="READ COMMITTED")
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="dripd-claim")
        self._local = threading.local()  # each thread's kept connection, and when last used
        self._kept: set[sa.Connection] = set()  # every thread's, closed with the threads
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """This thread's autocommit connection, kept checked out from one claim to the next.

        Its statements commit each themselves (the transaction is SQLAlchemy's
        only). Checking a connection out and in at each claim was a fifth of
        the claim's Python. It is tried as the pool tries one it hands out
        (store/engine.py `may_be_lost`), and replaced when lost or in doubt.
        """
        conn = self._connection()
        with conn.begin():
            yield conn
        self._local.used_at = time.monotonic()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A READ COMMITTED transaction on a connection of the pool, for work of several statements.

        This thread's kept connection goes back to the pool first: there are
        no more connections than threads.
        """
        self._give_back()
        with self._transactions.begin() as conn:
            yield conn

    def _connection(self) -> sa.Connection:
        conn: sa.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and (
            conn.invalidated or store_engine.may_be_lost(conn.connection, self._local.used_at)
        ):
            conn.invalidate()  # the pool opens a new one
            self._give_back()
            conn = None
        if conn is None:
            conn = self._local.conn = self.engine.connect()
            self._local.used_at = time.monotonic()
            with self._lock:
                self._kept.add(conn)
        return conn

    def _give_back(self) -> None:
        conn: sa.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._kept.discard(conn)
            conn.close()

    def start(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """`work()` in one of the threads; wait for it with `settled`."""
        return asyncio.get_running_loop().run_in_executor(self._threads, work)

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` in one of the threads, waited for even through a cancellation."""
        future = self.start(work)
        await settled(future)
        return future.result()

    def close(self) -> None:
        """Stop the threads once their work is done, and close the connections."""
        self._threads.shutdown(wait=True)
        for conn in self._kept:  # the threads are gone: no one uses them
            conn.close()
        self._kept.clear()
        self.engine.dispose()


async def settled(future: asyncio.Future[T]) -> None:
    """Wait until `future` is done, even through a cancellation, which is raised after.

    The claim's thread commits or fails whatever happens to the worker that
    started it; leaving before it ends would leave unknown whether the
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
