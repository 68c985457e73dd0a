"""Running a transaction again when it did not happen and running it again may succeed.

With several instances on one database, two transactions can wait on each
other's rows (a reply stopping a sequence while the engine advances it):
PostgreSQL aborts one with a deadlock error after `deadlock_timeout`. That
transaction changed nothing, so running it again is safe and is all there
is to do.

The same holds for a connection lost during one of the transaction's
statements (the server restarted, or ended that backend): nothing was
committed, and the pool gives the next try a new connection. A connection
lost during COMMIT is different: the server may have committed before the
answer was lost. Only work that the caller declares `idempotent` (running it
again after it did commit changes nothing more, as the sender's claim) is
run again then.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa

logger = logging.getLogger("dripd.store")

T = TypeVar("T")
ATTEMPTS = 5
# deadlock, serialization failure, lock not available
TRANSIENT = frozenset({"40P01", "40001", "55P03"})


def transient(exc: BaseException) -> bool:
    """Whether `exc` is an abort that running the same transaction again may avoid."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    return getattr(exc.orig, "sqlstate", None) in TRANSIENT


def disconnected(exc: BaseException) -> bool:
    """Whether `exc` is the loss of the connection (SQLAlchemy has dropped it from the pool)."""
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def lost_before_commit(exc: BaseException) -> bool:
    """The connection was lost during a statement, before COMMIT: the transaction did not happen.

    SQLAlchemy names the statement that failed; a failed COMMIT has none.
    (Not for work on an autocommit connection, where a statement is its own commit.)
    """
    return disconnected(exc) and getattr(exc, "statement", None) is not None


def retrying(work: Callable[[], T], what: str, *, idempotent: bool = False) -> T:
    """`work()` (one whole transaction), run again after a transient abort or a lost connection.

    `idempotent`: running `work` again after it was committed does no more
    than it did, so it is run again even when the connection was lost
    during its COMMIT.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except sa.exc.DBAPIError as exc:
            if not _again(exc, what, attempt, idempotent):
                raise
            time.sleep(_pause(attempt))
    raise AssertionError("unreachable")


async def retrying_async(
    work: Callable[[], Awaitable[T]], what: str, *, idempotent: bool = False
) -> T:
    """`retrying` for work on the event loop (dripd.daemon.claims)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await work()
        except sa.exc.DBAPIError as exc:
            if not _again(exc, what, attempt, idempotent):
                raise
            await asyncio.sleep(_pause(attempt))
    raise AssertionError("unreachable")


def _again(exc: sa.exc.DBAPIError, what: str, attempt: int, idempotent: bool) -> bool:
    """Whether the work that failed with `exc` is run again (and say so)."""
    lost = disconnected(exc) if idempotent else lost_before_commit(exc)
    if not (lost or transient(exc)) or attempt == ATTEMPTS:
        return False
    logger.info(
        "connection lost; running the transaction again"
        if lost
        else "transaction aborted by a concurrent one; running it again",
        extra={"action": "db_retry", "what": what, "attempt": attempt},
    )
    return True


def _pause(attempt: int) -> float:
    """Seconds before try `attempt` + 1: a little, at random, so two aborted ones part."""
    return random.uniform(0.005, 0.05) * attempt
