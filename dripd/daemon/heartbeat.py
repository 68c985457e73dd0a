"""Keeping the service manager informed while `dripd run` runs: watchdog pings and status.

The watchdog must mean "the daemon works", not "the process exists": the
main loop promises, at every pass and before every sleep, when it will
check in again (`Heartbeat.expect_within`); WATCHDOG=1 is sent only while
that promise holds. A loop stuck in a pass, or an event loop blocked by a
synchronous call, stops the pings, and systemd restarts dripd after
`WatchdogSec=`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

from dripd.daemon import notify

logger = logging.getLogger("dripd.service")

STATUS_EVERY = 10.0  # seconds between STATUS= updates (sent only when the text changed)
RATE_WINDOW = 60.0  # seconds: "sent in the last minute"


class Heartbeat:
    """When the main loop said it would check in again; late means stuck."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = clock()

    def expect_within(self, seconds: float) -> None:
        self._deadline = self._clock() + seconds

    def alive(self) -> bool:
        return self._clock() <= self._deadline

    def late_by(self) -> float:
        return max(0.0, self._clock() - self._deadline)


class SentRate:
    """How many were sent in the last RATE_WINDOW, from samples of a running total."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def last_window(self, total: int) -> int:
        """Record `total` (sent since start) now; the increase over the last window."""
        now = self._clock()
        self._samples.append((now, total))
        # keep one sample at least RATE_WINDOW old: the base of the difference
        while len(self._samples) > 1 and self._samples[1][0] <= now - RATE_WINDOW:
            self._samples.popleft()
        return max(0, total - self._samples[0][1])


async def tend(
    notifier: notify.Notifier,
    heartbeat: Heartbeat,
    status: Callable[[], str],
    stop: asyncio.Event,
    *,
    ping_every: float | None,
) -> None:
    """Until `stop`: WATCHDOG=1 every `ping_every` s while the loop is alive; STATUS= lines."""
    step = min(ping_every or STATUS_EVERY, STATUS_EVERY)
    last_status, said = -STATUS_EVERY, ""
    stalled = False
    while not stop.is_set():
        if ping_every is not None:
            stalled = _ping(notifier, heartbeat, stalled)
        now = time.monotonic()
        if now - last_status >= STATUS_EVERY:
            last_status, text = now, status()
            if text != said:
                notifier.status(text)
                said = text
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), step)


def _ping(notifier: notify.Notifier, heartbeat: Heartbeat, stalled: bool) -> bool:
    """Ping if the loop is alive; log once when it stops being so. Whether it is stalled."""
    if heartbeat.alive():
        if stalled:
            logger.info("main loop running again", extra={"action": "loop_resumed"})
        notifier.watchdog()
        return False
    if not stalled:
        logger.error(
            "main loop stalled: watchdog pings stopped",
            extra={"action": "loop_stalled", "late": f"{heartbeat.late_by():.0f}s"},
        )
    return True
