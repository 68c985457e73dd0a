"""Parsing date and date-time field values."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dates as testdates  # tests/dates.py: `dates` here is dripd.plan.dates
import pytest

from dripd.plan import dates

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# Field values in a non-leap year ahead that begins on a Thursday: New York springs forward
# on 8 March and falls back on 1 November (tests/dates.py checks it); only the year is
# computed. LEAP has a 29 February, LEAP - 1 has none. Birth years (1980) are data.
Y = testdates.thursday_year()
LEAP = testdates.leap_day(date(Y, 1, 1)).year


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        # A date alone means 09:00 in the contact's zone.
        (f"{Y}-12-03", NY, datetime(Y, 12, 3, 14, 0, tzinfo=UTC)),
        (f"{Y}-07-03", NY, datetime(Y, 7, 3, 13, 0, tzinfo=UTC)),
        (f"{Y}-12-03", BERLIN, datetime(Y, 12, 3, 8, 0, tzinfo=UTC)),
        (f"{Y}-12-03 10:00", NY, datetime(Y, 12, 3, 15, 0, tzinfo=UTC)),
        (f"{Y}-12-03T10:00", NY, datetime(Y, 12, 3, 15, 0, tzinfo=UTC)),
        (f"{Y}-12-03 10:00:30", NY, datetime(Y, 12, 3, 15, 0, 30, tzinfo=UTC)),
        (f"{Y}-12-03 10:00:30.25", NY, datetime(Y, 12, 3, 15, 0, 30, 250000, tzinfo=UTC)),
        # An explicit offset wins over the contact's zone.
        (f"{Y}-12-03T10:00-05:00", BERLIN, datetime(Y, 12, 3, 15, 0, tzinfo=UTC)),
        (f"{Y}-12-03T10:00Z", NY, datetime(Y, 12, 3, 10, 0, tzinfo=UTC)),
        (f"{Y}-12-03t10:00z", NY, datetime(Y, 12, 3, 10, 0, tzinfo=UTC)),
        (f"{Y}-12-03T10:00+01:00", NY, datetime(Y, 12, 3, 9, 0, tzinfo=UTC)),
        (f"{Y}-12-03T10:00+0100", NY, datetime(Y, 12, 3, 9, 0, tzinfo=UTC)),
        (f"  {Y}-12-03 10:00  ", NY, datetime(Y, 12, 3, 15, 0, tzinfo=UTC)),
        # Gap: 02:30 on the US spring-forward day is 03:30 EDT.
        (f"{Y}-03-08 02:30", NY, datetime(Y, 3, 8, 7, 30, tzinfo=UTC)),
        # Fold: 01:30 on the fall-back day is the first one (EDT).
        (f"{Y}-11-01 01:30", NY, datetime(Y, 11, 1, 5, 30, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, tz: ZoneInfo, expected: datetime) -> None:
    result = dates.parse_when(text, tz)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("tomorrow", "expected YYYY-MM-DD"),
        ("", "expected YYYY-MM-DD"),
        (f"12/03/{Y}", "expected YYYY-MM-DD"),
        (f"{Y}-12-03 10", "expected YYYY-MM-DD"),
        (f"{Y}-12-03 10:00 PM", "expected YYYY-MM-DD"),
        (f"{Y}-02-30", "day is out of range"),
        (f"{Y}-13-01", "month must be in 1..12"),
        (f"{Y}-12-03 24:00", "hour must be in 0..23"),
        (f"{Y}-12-03T10:00+24:00", "offset"),
    ],
)
def test_parse_when_errors_quote_the_text(text: str, detail: str) -> None:
    with pytest.raises(ValueError, match=f'bad date "{re.escape(text)}": .*{detail}'):
        dates.parse_when(text, NY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1980-12-15", date(1980, 12, 15)),
        (f"{LEAP}-02-29", date(LEAP, 2, 29)),
        (f"{Y}-05-01 10:00", date(Y, 5, 1)),
        (f"{Y}-05-01T23:30-05:00", date(Y, 5, 1)),  # the date as written
    ],
)
def test_parse_date(text: str, expected: date) -> None:
    assert dates.parse_date(text) == expected


@pytest.mark.parametrize("text", ["1980-12-32", f"{LEAP - 1}-02-29", "15 Dec", f"{Y}-05-01 25:00"])
def test_parse_date_errors(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f'bad date "{text}"')):
        dates.parse_date(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("12-15", (12, 15)), ("1-5", (1, 5)), ("02-29", (2, 29))]
)
def test_parse_month_day(text: str, expected: tuple[int, int]) -> None:
    assert dates.parse_month_day(text) == expected


@pytest.mark.parametrize("text", ["13-01", "02-30", "12/15", "dec-15", "", f"{Y}-12-15"])
def test_parse_month_day_errors(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f'bad month-day "{text}"')):
        dates.parse_month_day(text)


# -- relative days, fixed when typed ---------------------------------------------------------


def _thursday_at(hour: int) -> datetime:
    """A Thursday years ahead of today, at `hour` in New York (computed, never literal)."""
    day = testdates.weekday_on_or_after(
        testdates.today() + timedelta(days=3 * 365), testdates.THURSDAY
    )
    return datetime.combine(day, time(hour, 0), tzinfo=NY)


@pytest.mark.parametrize(
    ("text", "days", "clock"),
    [
        ("today", 0, None),
        ("tomorrow 15:00", 1, "15:00"),
        ("thu 12:00", 0, "12:00"),  # today, its time still ahead
        ("thu 10:00", 7, "10:00"),  # today's has passed: next week's
        ("Thursday", 0, None),
        ("fri", 1, None),
        ("next mon 09:30", 4, "09:30"),
        ("wednesday at 8:15", 6, "08:15"),
        ("in 3 days", 3, None),
        ("+10d 17:00", 10, "17:00"),
    ],
)
def test_relative_days_become_the_date_people_mean(text: str, days: int, clock: str | None) -> None:
    now = _thursday_at(11)
    day = (now.date() + timedelta(days=days)).isoformat()
    expected = f"{day} {clock}" if clock else day
    assert dates.resolve_relative(text, now, NY) == expected


@pytest.mark.parametrize("text", [f"{Y}-12-03 10:00", "thursdays", "in three days", "soon", ""])
def test_other_text_is_not_a_relative_day(text: str) -> None:
    assert dates.resolve_relative(text, _thursday_at(11), NY) is None


def test_a_relative_day_with_a_bad_time_is_refused() -> None:
    with pytest.raises(ValueError, match='bad date "fri 25:00"'):
        dates.resolve_relative("fri 25:00", _thursday_at(11), NY)
