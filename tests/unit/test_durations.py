"""Durations: parsing, calendar arithmetic in a zone, business days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dates
import pytest

from dripd.plan import durations
from dripd.plan.durations import Duration

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# The tables name days of a non-leap year that begins on a Thursday, a year or more ahead
# (2 March a Monday, New York's clocks change on 8 March and 1 November, Berlin's on 29 March
# and 25 October): only the year is computed.
Y = dates.thursday_year()
LEAP = dates.leap_day(date(Y, 1, 1)).year  # the first leap year from Y


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """A wall time in `tz`, as UTC (ambiguous aware times never compare equal across zones)."""
    return datetime(*args, tzinfo=tz, fold=fold).astimezone(UTC)  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("30 minutes", 30, "minutes"),
        ("1 minute", 1, "minutes"),
        ("30m", 30, "minutes"),
        ("30 min", 30, "minutes"),
        ("0m", 0, "minutes"),
        ("24h", 24, "hours"),
        ("2 hours", 2, "hours"),
        ("1 HOUR", 1, "hours"),
        ("2d", 2, "days"),
        ("1 day", 1, "days"),
        ("3 business days", 3, "business_days"),
        ("1 business day", 1, "business_days"),
        ("  3   Business   Days ", 3, "business_days"),
        ("2bd", 2, "business_days"),
        ("2w", 2, "weeks"),
        ("1 week", 1, "weeks"),
        ("3mo", 3, "months"),
        ("1 month", 1, "months"),
        ("12 Months", 12, "months"),
    ],
)
def test_parse_duration(text: str, amount: int, unit: str) -> None:
    assert durations.parse_duration(text) == Duration(amount=amount, unit=unit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text", ["3 fortnights", "", "days", "-1 day", "1.5 hours", "3 business", "1 m o", "2 mins ago"]
)
def test_parse_duration_errors_quote_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=f'bad duration "{text}": expected N minutes'):
        durations.parse_duration(text)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (Duration(amount=3, unit="business_days"), "3 business days"),
        (Duration(amount=1, unit="business_days"), "1 business day"),
        (Duration(amount=1, unit="months"), "1 month"),
        (Duration(amount=30, unit="minutes"), "30 minutes"),
        (Duration(amount=0, unit="days"), "0 days"),
    ],
)
def test_str_round_trips(duration: Duration, text: str) -> None:
    assert str(duration) == text
    assert durations.parse_duration(str(duration)) == duration


def test_times_keeps_the_unit() -> None:
    assert Duration(amount=2, unit="months").times(3) == Duration(amount=6, unit="months")


def test_negative_amount_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        Duration(amount=-1, unit="days")


D = durations.parse_duration


@pytest.mark.parametrize(
    ("tz", "start", "duration", "expected"),
    [
        # Months are calendar months: the day is clamped to the month's end.
        (NY, local(NY, Y, 1, 31, 10), "1 month", local(NY, Y, 2, 28, 10)),
        (NY, local(NY, LEAP, 1, 31, 10), "1 month", local(NY, LEAP, 2, 29, 10)),
        (NY, local(NY, Y, 1, 31, 10), "2 months", local(NY, Y, 3, 31, 10)),
        (NY, local(NY, Y, 12, 15, 10), "1 month", local(NY, Y + 1, 1, 15, 10)),
        # Days across the US spring-forward (8 March) keep the wall time...
        (NY, local(NY, Y, 3, 7, 10), "1 day", local(NY, Y, 3, 8, 10)),
        # ...hours are elapsed time and don't.
        (NY, local(NY, Y, 3, 7, 10), "24 hours", local(NY, Y, 3, 8, 11)),
        (NY, local(NY, Y, 10, 31, 10), "1 day", local(NY, Y, 11, 1, 10)),
        (NY, local(NY, Y, 10, 31, 10), "24h", local(NY, Y, 11, 1, 9)),
        (BERLIN, local(BERLIN, Y, 3, 28, 10), "1 day", local(BERLIN, Y, 3, 29, 10)),
        (BERLIN, local(BERLIN, Y, 3, 28, 10), "24h", local(BERLIN, Y, 3, 29, 11)),
        (BERLIN, local(BERLIN, Y, 10, 24, 10), "1 week", local(BERLIN, Y, 10, 31, 10)),
        (NY, local(NY, Y, 3, 7, 23, 50), "30m", local(NY, Y, 3, 8, 0, 20)),
        # A wall time in the spring-forward gap moves forward by the gap.
        (NY, local(NY, Y, 3, 7, 2, 30), "1 day", local(NY, Y, 3, 8, 3, 30)),
        # An ambiguous fall-back wall time takes its first occurrence (EDT).
        (NY, local(NY, Y, 10, 31, 1, 30), "1 day", local(NY, Y, 11, 1, 1, 30, fold=0)),
        (NY, local(NY, Y, 11, 1, 1, 30, fold=1), "1 day", local(NY, Y, 11, 2, 1, 30)),
        (NY, local(NY, Y, 3, 3, 10), "0 days", local(NY, Y, 3, 3, 10)),
    ],
)
def test_add(tz: ZoneInfo, start: datetime, duration: str, expected: datetime) -> None:
    result = durations.add(start, D(duration), tz=tz)
    assert result == expected
    assert result.tzinfo is UTC


def test_fold_rule_picks_the_earlier_instant() -> None:
    result = durations.add(local(NY, Y, 10, 31, 1, 30), D("1 day"), tz=NY)
    assert result == datetime(Y, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not EST


@pytest.mark.parametrize(
    ("tz", "start", "duration", "expected"),
    [
        # 1 day before a 10:00 appointment is 10:00 the day before, across DST...
        (NY, local(NY, Y, 3, 8, 10), "1 day", local(NY, Y, 3, 7, 10)),
        (NY, local(NY, Y, 11, 1, 10), "1 day", local(NY, Y, 10, 31, 10)),
        (BERLIN, local(BERLIN, Y, 3, 29, 10), "1 day", local(BERLIN, Y, 3, 28, 10)),
        (BERLIN, local(BERLIN, Y, 10, 25, 10), "1 day", local(BERLIN, Y, 10, 24, 10)),
        # ...and 24 hours before lands at 09:00 or 11:00 local.
        (NY, local(NY, Y, 3, 8, 10), "24 hours", local(NY, Y, 3, 7, 9)),
        (NY, local(NY, Y, 11, 1, 10), "24 hours", local(NY, Y, 10, 31, 11)),
        (BERLIN, local(BERLIN, Y, 3, 29, 10), "24 hours", local(BERLIN, Y, 3, 28, 9)),
        (BERLIN, local(BERLIN, Y, 10, 25, 10), "24 hours", local(BERLIN, Y, 10, 24, 11)),
        (NY, local(NY, Y, 3, 31, 10), "1 month", local(NY, Y, 2, 28, 10)),
        (NY, local(NY, Y, 3, 31, 10), "2 hours", local(NY, Y, 3, 31, 8)),
    ],
)
def test_subtract(tz: ZoneInfo, start: datetime, duration: str, expected: datetime) -> None:
    assert durations.subtract(start, D(duration), tz=tz) == expected


HOLIDAYS = frozenset({date(Y, 12, 25), date(Y, 12, 28)})


@pytest.mark.parametrize(
    ("start", "duration", "holidays", "expected"),
    [
        # Friday + 1 business day is Monday, same wall time.
        (local(NY, Y, 3, 6, 10), "1 business day", frozenset(), local(NY, Y, 3, 9, 10)),
        # Saturday + 1 business day is Monday; Sunday too.
        (local(NY, Y, 3, 7, 10), "1 business day", frozenset(), local(NY, Y, 3, 9, 10)),
        (local(NY, Y, 3, 8, 10), "1 business day", frozenset(), local(NY, Y, 3, 9, 10)),
        (local(NY, Y, 3, 4, 15), "3 business days", frozenset(), local(NY, Y, 3, 9, 15)),
        (local(NY, Y, 3, 2, 9), "5bd", frozenset(), local(NY, Y, 3, 9, 9)),
        # Thu Dec 24 + 2: skip Fri 25 (holiday), the weekend, Mon 28 (holiday).
        (local(NY, Y, 12, 24, 9), "2 business days", HOLIDAYS, local(NY, Y, 12, 30, 9)),
        (local(NY, Y, 12, 24, 9), "1 business day", HOLIDAYS, local(NY, Y, 12, 29, 9)),
        (local(NY, Y, 3, 7, 10), "0 business days", frozenset(), local(NY, Y, 3, 7, 10)),
    ],
)
def test_add_business_days(
    start: datetime, duration: str, holidays: frozenset[date], expected: datetime
) -> None:
    assert durations.add(start, D(duration), tz=NY, holidays=holidays) == expected


def test_subtract_business_days_mirrors_add() -> None:
    monday = local(NY, Y, 3, 9, 10)
    assert durations.subtract(monday, D("1 business day"), tz=NY) == local(NY, Y, 3, 6, 10)
    wed = local(NY, Y, 12, 30, 9)
    got = durations.subtract(wed, D("2 business days"), tz=NY, holidays=HOLIDAYS)
    assert got == local(NY, Y, 12, 24, 9)


def test_business_days_are_counted_in_the_zone() -> None:
    # Friday 23:00 in New York is already Saturday in UTC: the zone decides.
    friday_night = local(NY, Y, 3, 6, 23)
    assert durations.add(friday_night, D("1bd"), tz=NY) == local(NY, Y, 3, 9, 23)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(Y, 3, 6), True),
        (date(Y, 3, 7), False),
        (date(Y, 3, 8), False),
        (date(Y, 12, 25), False),
        (date(Y, 12, 24), True),
    ],
)
def test_is_business_day(day: date, expected: bool) -> None:
    assert durations.is_business_day(day, HOLIDAYS) is expected
