"""The one send decision (plan.decide): a table of facts and the answer each gives.

Times are instants of a quiet week ahead (tests/dates.py) fed to a pure function:
nothing here depends on the day the tests run.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dates
import pytest

from dripd.plan import decide, durations, schedule, windows

NY = ZoneInfo("America/New_York")
WINDOW = windows.parse_window("mon-fri 09:00-17:00")


def _at(day: date, hour: int) -> datetime:
    """`hour`:00 on `day` in New York."""
    return dates.local(day, hour).astimezone(NY)


# The second Monday of two quiet weeks ahead (no holiday, no clock change since the Saturday
# before it): the days below are that Monday's week.
MONDAY = dates.quiet_monday(weeks=2) + timedelta(weeks=1)
TUESDAY = _at(MONDAY + timedelta(days=1), 10)  # inside the window
WEDNESDAY_9 = _at(MONDAY + timedelta(days=2), 9)
LATE = timedelta(days=2)
# Only the owner's calendar counts: Tuesday is a holiday of the associate who sends
# the email (sam, in another region), not of the contact's owner (mike).
OWNER_HOLIDAYS = frozenset({MONDAY})
ASSOCIATE_HOLIDAYS = frozenset({TUESDAY.date()})
WINDOWED = {"window": WINDOW, "tz": NY}

CASES: list[tuple[str, dict[str, Any], decide.Decision]] = [
    ("nothing against it", {}, decide.GO),
    ("an active contact", {"status": "active"}, decide.GO),
    ("a bounced contact", {"status": "bounced"}, decide.Stop(reason="contact is bounced")),
    (
        "no longer active beats stale",
        {"status": "unsubscribed", "planned_at": TUESDAY - 10 * LATE, "max_late": LATE},
        decide.Stop(reason="contact is unsubscribed"),
    ),
    ("a stopped sequence", {"stopped": True}, decide.Stop(reason=decide.STOPPED)),
    ("planned just now", {"planned_at": TUESDAY, "max_late": LATE}, decide.GO),
    (
        "exactly max_late late still goes",
        {"planned_at": TUESDAY - LATE, "max_late": LATE},
        decide.GO,
    ),
    (
        "a second more is stale",
        {"planned_at": TUESDAY - LATE - timedelta(seconds=1), "max_late": LATE},
        decide.Skip(reason="due 2 days ago, more than max_late 2 days"),
    ),
    (
        "hours late",
        {"planned_at": TUESDAY - timedelta(hours=5), "max_late": timedelta(hours=1)},
        decide.Skip(reason="due 5 hours ago, more than max_late 1 hour"),
    ),
    ("no max_late: never too late", {"planned_at": TUESDAY - 10 * LATE}, decide.GO),
    (
        "a second before the deadline",
        {"planned_at": TUESDAY, "deadline": TUESDAY + timedelta(seconds=1), "anchor": "call_at"},
        decide.GO,
    ),
    (
        "at the deadline",
        {"planned_at": TUESDAY, "deadline": TUESDAY, "anchor": "call_at"},
        decide.Skip(reason="call_at has passed"),
    ),
    (
        "past a deadline with no field (a fixed day)",
        {"planned_at": TUESDAY, "deadline": TUESDAY - timedelta(hours=1)},
        decide.Skip(reason="the date has passed"),
    ),
    (
        "the deadline beats max_late",
        {"planned_at": TUESDAY - 3 * LATE, "deadline": TUESDAY, "max_late": LATE},
        decide.Skip(reason="the date has passed"),
    ),
    (
        "out of office",
        {"away_until": TUESDAY + timedelta(days=1)},
        decide.Wait(until=TUESDAY + timedelta(days=1), reason=decide.WaitReason.AWAY),
    ),
    ("back at this instant", {"away_until": TUESDAY}, decide.GO),
    (
        "stale beats out of office (it would be stale when they are back)",
        {"away_until": TUESDAY + LATE, "planned_at": TUESDAY - 2 * LATE, "max_late": LATE},
        decide.Skip(reason="due 4 days ago, more than max_late 2 days"),
    ),
    (
        "out of office beats the window",
        {**WINDOWED, "now": TUESDAY.replace(hour=20), "away_until": WEDNESDAY_9},
        decide.Wait(until=WEDNESDAY_9, reason=decide.WaitReason.AWAY),
    ),
    ("inside the window", WINDOWED, decide.GO),
    (
        "after hours",
        {**WINDOWED, "now": TUESDAY.replace(hour=17)},
        decide.Wait(until=WEDNESDAY_9, reason=decide.WaitReason.WINDOW),
    ),
    (
        "the owner's holiday closes the window",
        {**WINDOWED, "now": TUESDAY - timedelta(days=1), "holidays": OWNER_HOLIDAYS},
        decide.Wait(until=TUESDAY.replace(hour=9), reason=decide.WaitReason.WINDOW),
    ),
    (
        "the associate's holiday does not: the callers pass the owner's calendar",
        {**WINDOWED, "holidays": OWNER_HOLIDAYS},
        decide.GO,
    ),
    (
        "the window beats the limit",
        {**WINDOWED, "now": TUESDAY.replace(hour=18), "free_at": TUESDAY.replace(hour=19)},
        decide.Wait(until=WEDNESDAY_9, reason=decide.WaitReason.WINDOW),
    ),
    (
        "stale beats the limit: nothing waits for a slot it may not use",
        {"planned_at": TUESDAY - 2 * LATE, "max_late": LATE, "free_at": TUESDAY + LATE},
        decide.Skip(reason="due 4 days ago, more than max_late 2 days"),
    ),
    (
        "at the limit",
        {"free_at": TUESDAY + timedelta(minutes=5)},
        decide.Wait(until=TUESDAY + timedelta(minutes=5), reason=decide.WaitReason.LIMIT),
    ),
    ("the limit frees at this instant", {"free_at": TUESDAY}, decide.GO),
]


@pytest.mark.parametrize(("facts", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_decision(facts: dict[str, Any], expected: decide.Decision) -> None:
    facts = dict(facts)
    now = facts.pop("now", TUESDAY)
    assert decide.decide(now, **facts) == expected


def test_the_associates_calendar_would_have_held_it() -> None:
    """What the table's associate row guards against: sam's calendar closes Tuesday."""
    verdict = decide.decide(TUESDAY, **WINDOWED, holidays=ASSOCIATE_HOLIDAYS)
    assert verdict == decide.Wait(until=WEDNESDAY_9, reason=decide.WaitReason.WINDOW)


def test_going_is_one_shared_answer() -> None:
    """The answer of nearly every call is not a new object each time."""
    assert decide.decide(TUESDAY, status="active", **WINDOWED) is decide.GO


# -- the reference time: Due.planned (the schedule's plan, moved into the window only) --


def _due(nominal: datetime, hold_until: datetime | None = None) -> schedule.Due:
    step = schedule.StepPlan(
        id="hello", timing=schedule.Wait(duration=durations.parse_duration("0m")), windowed=True
    )
    ctx = schedule.Context(
        tz=NY, enrolled_at=nominal, fields={}, window=WINDOW, hold_until=hold_until
    )
    item = schedule.sequential_item(step, schedule.Progress(), ctx)
    assert isinstance(item, schedule.Due)
    return item


SATURDAY = _at(MONDAY - timedelta(days=2), 12)
MONDAY_9 = _at(MONDAY, 9)


@pytest.mark.parametrize(
    ("hold_until", "now", "stale"),
    [
        # A weekend outside the window makes nothing late: lateness counts from Monday 09:00.
        (None, MONDAY_9 + LATE, None),
        (None, MONDAY_9 + LATE + timedelta(minutes=1), "due 2 days ago, more than max_late 2 days"),
        # A rep's vacation does: held to Thursday, still planned for Monday.
        (
            MONDAY_9 + timedelta(days=3),
            MONDAY_9 + timedelta(days=3),
            "due 3 days ago, more than max_late 2 days",
        ),
        (MONDAY_9 + timedelta(days=1), MONDAY_9 + timedelta(days=1), None),
    ],
    ids=["weekend-wait", "weekend-then-late", "vacation-made-it-stale", "short-vacation"],
)
def test_lateness_counts_from_the_plan(
    hold_until: datetime | None, now: datetime, stale: str | None
) -> None:
    due = _due(SATURDAY, hold_until)
    assert due.planned == MONDAY_9
    assert due.due_at == max(MONDAY_9, hold_until or MONDAY_9)
    verdict = decide.decide(now, planned_at=due.planned, max_late=LATE)
    assert verdict == (decide.GO if stale is None else decide.Skip(reason=stale))
    assert schedule.is_stale(due, now, max_late=LATE) == stale  # the planner's reading of a Due


def test_an_email_queued_after_a_vacation_is_late_from_its_plan_at_the_claim_too() -> None:
    """Held by a one-day vacation, queued when it ended (not stale then), then kept in the
    outbox by the mailbox's rate limit: at the claim, lateness still counts from the plan
    (Monday 09:00), not from the hold (Tuesday): what the sender reads from `planned_at`."""
    due = _due(SATURDAY, hold_until=MONDAY_9 + timedelta(days=1))
    queued_at = due.due_at
    assert decide.decide(queued_at, planned_at=due.planned, max_late=LATE) is decide.GO
    claim_at = queued_at + timedelta(days=1, hours=1)
    assert decide.decide(claim_at, planned_at=due.planned, max_late=LATE) == decide.Skip(
        reason="due 2 days ago, more than max_late 2 days"
    )
    assert decide.decide(claim_at, planned_at=due.due_at, max_late=LATE) is decide.GO  # was
