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
import weakref
from collections.abc import Callable
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
        self.transactions = self.engine.execution_options(isolation_level="READ COMMITTED")
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="dripd-claim")

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
