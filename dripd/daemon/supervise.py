"""The daemon's long-running tasks, supervised: none dies in silence.

A task that raises is logged once, with the mailbox it concerns, kept in
`failures` (for `dripd status` and the STATUS= line) and run again after a
rest that doubles with each failure in a row. An error that means the
daemon as a whole cannot go on (a DripdError, a lost database, or any
failure of an essential task such as the fleet's leases) is kept in
`fatal` and `failed` is set: the daemon stops at once and `dripd run`
exits non-zero, so systemd starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa

from dripd import errors

logger = logging.getLogger("dripd.supervise")

RESTART = (1.0, 60.0)  # seconds: first and longest rest before a failed task runs again
STEADY = 60.0  # seconds a task must run before its failures in a row are forgotten

Work = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A task that failed and was restarted: how often, and its last error."""

    task: str
    rep: str | None
    count: int
    error: str

    def line(self) -> str:
        times = "once" if self.count == 1 else f"{self.count} times"
        return f"task {self.task} failed {times} and was restarted (last: {self.error})"


class Supervisor:
    """Starts named tasks and restarts them when they fail (see the module)."""

    def __init__(
        self, stop: asyncio.Event, on_failure: Callable[[Failure], None] | None = None
    ) -> None:
        self.stop = stop
        self.on_failure = on_failure
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.failures: dict[str, Failure] = {}
        self.fatal: BaseException | None = None
        self.failed = asyncio.Event()  # set with `fatal`

    def start(
        self,
        name: str,
        work: Work,
        *,
        rep: str | None = None,
        essential: bool = False,
        halt: asyncio.Event | None = None,
    ) -> asyncio.Task[None]:
        """Run `work()` as task `name`, after the task of that name it replaces has ended.

        `halt`: the task's own stop (a reload replacing it); once it or the
        daemon's stop is set, a failed task is not started again.
        """
        previous = self.tasks.get(name)
        task = asyncio.create_task(
            self._supervised(name, work, rep, essential, halt, previous), name=name
        )
        self.tasks[name] = task
        return task

    def raise_if_failed(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    async def _supervised(
        self,
        name: str,
        work: Work,
        rep: str | None,
        essential: bool,
        halt: asyncio.Event | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:  # the one a reload replaces finishes what it was doing
            await asyncio.wait([previous])
        in_a_row = 0
        while True:
            started = time.monotonic()
            try:
                await work()
                return
            except Exception as exc:
                if essential or _fatal(exc):
                    self._stop_all(name, rep, exc)
                    return
                in_a_row = 1 if time.monotonic() - started > STEADY else in_a_row + 1
                rest = min(RESTART[0] * 2 ** (in_a_row - 1), RESTART[1])
                self._note(name, rep, exc, rest)
            waits = [self.stop] + ([halt] if halt is not None else [])
            if await _any_set(waits, rest):
                return

    def _note(self, name: str, rep: str | None, exc: Exception, rest: float) -> None:
        before = self.failures.get(name)
        failure = Failure(
            task=name, rep=rep, count=(before.count if before else 0) + 1, error=describe(exc)
        )
        self.failures[name] = failure
        logger.error(
            "task failed, restarting it",
            extra={
                "action": "task_failed",
                "task": name,
                "rep": rep or "-",
                "error": failure.error,
                "restart_in": f"{rest:.0f}s",
            },
        )
        logger.debug("task %s failed", name, exc_info=exc)
        if self.on_failure is not None:
            try:
                self.on_failure(failure)
            except Exception as note_exc:
                logger.warning("cannot record the failure: %s", describe(note_exc))

    def _stop_all(self, name: str, rep: str | None, exc: Exception) -> None:
        if self.fatal is None:
            logger.error(
                "task failed: dripd stops",
                extra={
                    "action": "task_fatal",
                    "task": name,
                    "rep": rep or "-",
                    "error": describe(exc),
                },
            )
            logger.debug("task %s failed", name, exc_info=exc)
            self.fatal = exc
        self.failed.set()


def _fatal(exc: Exception) -> bool:
    """A failure no restart of one task can mend: a user's problem, or the database gone."""
    return isinstance(exc, errors.DripdError | sa.exc.OperationalError | sa.exc.InterfaceError)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _any_set(events: list[asyncio.Event], seconds: float) -> bool:
    """Wait up to `seconds` for any of `events`; whether one is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)
    return any(e.is_set() for e in events)
