"""`run --once`'s last line: what happens next, when, and why it waits."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dates
import pytest

from dripd.cli import tables
from dripd.pipeline import reports

# 20:40 on a Monday of quiet weeks ahead in New York, already Tuesday in UTC
NOW = dates.local(dates.quiet_monday(), 20, 40)


def _item(at: datetime, note: str = "", kind: str = "email") -> reports.Scheduled:
    return reports.Scheduled(
        at=at,
        local=at.astimezone(ZoneInfo("America/New_York")),
        email="ann@example.org",
        name="Ann Lee",
        campaign="qualification",
        step="thank-you",
        kind=kind,
        occurrence=1,
        note=note,
    )


@pytest.mark.parametrize(
    ("wait", "soon"),
    [
        (timedelta(hours=11, minutes=20), "in 11 h 20 min"),
        (timedelta(minutes=5), "in 5 min"),
        (timedelta(days=2, hours=3, minutes=4), "in 2 d 3 h"),
        (timedelta(seconds=1), "in 1 min"),
        (timedelta(hours=-1), "now"),
    ],
)
def test_the_wait_is_said_in_days_hours_and_minutes(wait: timedelta, soon: str) -> None:
    line = tables.next_line(_item(NOW + wait), NOW)
    local = (NOW + wait).astimezone(ZoneInfo("America/New_York"))
    assert line == (
        f"next: email qualification/thank-you to ann@example.org, "
        f"{local:%a %Y-%m-%d %H:%M %Z} ({soon}); dripd schedule shows the rest"
    )


def test_a_reason_to_wait_is_given_and_nothing_is_said_plainly() -> None:
    line = tables.next_line(_item(NOW + timedelta(hours=2), "waiting for the sending window"), NOW)
    assert "(in 2 h; waiting for the sending window)" in line
    assert tables.next_line(None, NOW) == "next: nothing scheduled"
