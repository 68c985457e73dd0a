"""Whether an email may go out now, and if not, why and until when: the one send decision.

The planner asks before it renders ahead and before it queues; the sender
asks at the moment of its claim. Each passes what it knows, and the order of
the checks is kept here: the contact (still active, the sequence not
stopped), staleness, the contact's out-of-office, the send window, the
mailbox's rate limit. The planner asks about the contact first, before it
works out the schedule, then about each due step; the sender asks about the
email before its claim, and about the contact only when the claim's own SQL
refused it (that check is atomic with the claim, and no query runs in here).

One holiday rule: the send window skips the holidays of the contact's owner,
in the contact's time zone, also for an email sent `from` another rep. The
window is the recipient's: when to write to a person is a matter of their
clock and their calendar (their zone; their region's holidays, which dripd
knows as their owner's `holidays`, documented as "for that rep's contacts");
the mailbox the email leaves from changes neither. It is also the calendar
the schedule timed the step with (business days, the move into the window),
so the planner and the sender agree on every opening. A rep who is away is a
pause (`dripd pause`), not a holiday.

One staleness rule: lateness counts from when the campaign planned the
email, its timing moved into the send window (`schedule.Due.planned_at`),
not from when it was queued or held. A weekend outside the window makes
nothing late; a rep's vacation, an outage, a mailbox's rate limit or a window
missed while waiting in the outbox do, and an email more than `max_late`
past its plan is skipped, never sent late: at queue time and at the claim
alike. Exactly `max_late` late still goes; at its anchor's deadline it does not.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from dripd.plan import windows

STOPPED = "the sequence was stopped"
_UTC = ZoneInfo("UTC")
_NO_HOLIDAYS: Final[frozenset[date]] = frozenset()


class WaitReason(enum.Enum):
    """Why an email that may go later does not go now."""

    AWAY = "the contact is out of office"
    WINDOW = "outside the sending window"
    LIMIT = "the mailbox is at its sending limit"


@dataclass(frozen=True, slots=True, kw_only=True)
class Go:
    """It may go now."""


GO: Final = Go()  # the one answer most calls give: not made again each time


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """Not now: it may go at `until` (asked again then)."""

    until: datetime
    reason: WaitReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip:
    """Stale: skipped and recorded, never sent late. `reason` is what the rep reads."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Nothing more goes to this contact in this sequence (no longer active, or stopped)."""

    reason: str


Decision = Go | Wait | Skip | Stop


def decide(  # the facts as keywords: no object is made per call
    now: datetime,
    *,
    status: str | None = None,
    stopped: bool = False,
    away_until: datetime | None = None,
    planned_at: datetime | None = None,
    deadline: datetime | None = None,
    anchor: str | None = None,
    max_late: timedelta | None = None,
    window: windows.Window | None = None,
    tz: ZoneInfo = _UTC,
    holidays: Container[date] = _NO_HOLIDAYS,
    free_at: datetime | None = None,
) -> Decision:
    """Whether an email may go at `now`; a fact left out (None) is not checked.

    `status`: the contact's (None: not known here, or an email to the rep);
    `stopped`: its sequence was stopped; `away_until`: its out-of-office end;
    `planned_at`, `deadline`, `anchor`, `max_late`: its timing (see `stale`);
    `window` in `tz` skipping `holidays` (the owner's: see the module);
    `free_at`: when the mailbox's rate limit next allows an email.
    """
    if status is not None and status != "active":
        return Stop(reason=f"contact is {status}")
    if stopped:
        return Stop(reason=STOPPED)
    if planned_at is not None:
        late = stale(
            now, planned_at=planned_at, deadline=deadline, anchor=anchor, max_late=max_late
        )
        if late is not None:
            return Skip(reason=late)
    if away_until is not None and away_until > now:
        return Wait(until=away_until, reason=WaitReason.AWAY)
    if window is not None and not windows.is_open(now, window, tz, holidays):
        opens = windows.next_open(now, window, tz, holidays)
        return Wait(until=opens, reason=WaitReason.WINDOW)
    if free_at is not None and free_at > now:
        return Wait(until=free_at, reason=WaitReason.LIMIT)
    return GO


def stale(
    now: datetime,
    *,
    planned_at: datetime,
    deadline: datetime | None = None,
    anchor: str | None = None,
    max_late: timedelta | None = None,
) -> str | None:
    """Why an email planned for `planned_at` must be skipped rather than sent at `now`, or None.

    At `deadline` (an anchored step's anchor, a greeting's day) it has passed;
    more than `max_late` after `planned_at` it is too late (exactly `max_late` is not).
    """
    if deadline is not None and deadline <= now:
        return f"{anchor or 'the date'} has passed"
    if max_late is not None and now - planned_at > max_late:
        late = humanize(now - planned_at)
        return f"due {late} ago, more than max_late {humanize(max_late)}"
    return None


def humanize(delta: timedelta) -> str:
    """A coarse human length: "3 days", "5 hours", "12 minutes"."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            amount = seconds // size
            return f"{amount} {unit}{'s' if amount != 1 else ''}"
    return f"{seconds} seconds"
