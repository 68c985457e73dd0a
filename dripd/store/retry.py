"""Running a transaction again when PostgreSQL aborted it only because of another one.

With several instances on one database, two transactions can wait on each
other's rows (a reply stopping a sequence while the engine advances it):
PostgreSQL aborts one with a deadlock error after `deadlock_timeout`. That
transaction changed nothing, so running it again is safe and is all there
is to do.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
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


def retrying(work: Callable[[], T], what: str) -> T:
    """`work()` (one whole transaction), run again after a transient abort."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except sa.exc.DBAPIError as exc:
            if not transient(exc) or attempt == ATTEMPTS:
                raise
            logger.info(
                "transaction aborted by a concurrent one; running it again",
                extra={"action": "db_retry", "what": what, "attempt": attempt},
            )
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")
