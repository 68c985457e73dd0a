"""Per-mailbox sending limits: pure, and fed from the database at start.

Three sliding windows: a day (`max_per_day`), an hour (`max_per_hour`) and
ten minutes (a sixth of the hour's allowance), so a backlog after an outage
goes out spread over the hour instead of in one burst.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from datetime import datetime, timedelta

BURST_SPAN = timedelta(minutes=10)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_NAMES = (  # the windows, as `holding` says them
    "{limit} sent in the last 10 minutes (a backlog is spread over the hour)",
    "{limit} sent in the last hour (max_per_hour)",
    "{limit} sent in the last day (max_per_day)",
)


class RateLimit:
    """Counts sends in sliding windows; says when the next send is allowed."""

    def __init__(self, *, per_hour: int, per_day: int) -> None:
        self.windows = (
            (BURST_SPAN, max(1, math.ceil(per_hour / 6))),
            (HOUR, per_hour),
            (DAY, per_day),
        )
        self._sent: list[datetime] = []

    def load(self, times: Iterable[datetime]) -> None:
        self._sent = sorted(times)

    def record(self, at: datetime) -> None:
        bisect.insort(self._sent, at)

    def release(self, at: datetime) -> None:
        """Undo one `record(at)`: a send reserved before its claim, which was refused."""
        index = bisect.bisect_left(self._sent, at)
        if index < len(self._sent) and self._sent[index] == at:
            del self._sent[index]

    def next_free(self, now: datetime) -> datetime:
        """`now` if one more send is allowed now, else the first instant it will be."""
        self._forget(now)
        earliest = now
        total = len(self._sent)
        for span, limit in self.windows:
            start = bisect.bisect_right(self._sent, now - span)
            if total - start >= limit:
                # the send that must leave the window before one more fits
                earliest = max(earliest, self._sent[total - limit] + span)
        return earliest

    def holding(self, now: datetime) -> str | None:
        """The limit that keeps the next send back longest, in words; None if one may go."""
        self._forget(now)
        total = len(self._sent)
        longest: tuple[datetime, str] | None = None
        for (span, limit), name in zip(self.windows, _NAMES, strict=True):
            if self.count(now, span) >= limit:
                until = self._sent[total - limit] + span
                if longest is None or until > longest[0]:
                    longest = (until, name.format(limit=limit))
        return None if longest is None else longest[1]

    def count(self, now: datetime, span: timedelta) -> int:
        return len(self._sent) - bisect.bisect_right(self._sent, now - span)

    def _forget(self, now: datetime) -> None:
        cut = bisect.bisect_right(self._sent, now - DAY)
        if cut:
            del self._sent[:cut]
