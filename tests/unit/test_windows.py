"""Sending windows and weekly slots, in the contact's zone and across DST."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dates
import pytest

from dripd.plan import windows

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# The tables name days of a non-leap year that begins on a Thursday, a year or more ahead
# (2 March a Monday, New York's clocks change on 8 March and 1 November, Berlin's on 29 March
# and 25 October): only the year is computed.
Y = dates.thursday_year()
TOKYO = ZoneInfo("Asia/Tokyo")
OFFICE = windows.parse_window("mon-fri 09:00-17:00")


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """A wall time in `tz`, as UTC."""
    return datetime(*args, tzinfo=tz, fold=fold).astimezone(UTC)  # type: ignore[arg-type,misc]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mon-fri 09:00-17:00", "mon-fri 09:00-17:00"),
        ("Mon - Fri 9:00 - 17:00", "mon-fri 09:00-17:00"),
        ("monday-friday 09:00-17:00", "mon-fri 09:00-17:00"),
        ("sat,sun 10:00-12:00", "sat,sun 10:00-12:00"),
        ("mon,wed-fri 08:00-18:00", "mon,wed-fri 08:00-18:00"),
        ("daily 00:00-24:00", "daily 00:00-24:00"),
        ("weekdays 09:00-17:00", "mon-fri 09:00-17:00"),
        ("weekends 10:00-12:00", "sat,sun 10:00-12:00"),
        ("fri-mon 10:00-12:00", "mon,fri-sun 10:00-12:00"),
        ("fri 22:00-02:00", "fri 22:00-02:00"),
        (
            "mon-fri 09:00-12:00; mon-fri 13:00-17:00; sat 10:00-12:00",
            "mon-fri 09:00-12:00; mon-fri 13:00-17:00; sat 10:00-12:00",
        ),
    ],
)
def test_parse_window_round_trips(text: str, canonical: str) -> None:
    window = windows.parse_window(text)
    assert str(window) == canonical
    assert windows.parse_window(str(window)) == window


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "expected DAYS HH:MM-HH:MM"),
        ("mon-fri", "expected DAYS HH:MM-HH:MM"),
        ("mon-fri 09:00", "expected DAYS HH:MM-HH:MM"),
        ("mon-fry 09:00-17:00", 'unknown day "fry"'),
        ("mon-fri 9-5", 'bad time "9"'),
        ("mon-fri 09:00-25:00", 'bad time "25:00"'),
        ("mon-fri 24:00-17:00", 'bad time "24:00"'),
        ("mon-fri 09:60-17:00", 'bad time "09:60"'),
    ],
)
def test_parse_window_errors(text: str, detail: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f'bad window "{text}": ') + f".*{detail}"):
        windows.parse_window(text)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(NY, Y, 3, 4, 9, 0), True),  # Wednesday, opening instant
        (local(NY, Y, 3, 4, 16, 59), True),
        (local(NY, Y, 3, 4, 17, 0), False),  # closing instant is closed
        (local(NY, Y, 3, 4, 8, 59), False),
        (local(NY, Y, 3, 7, 12, 0), False),  # Saturday
    ],
)
def test_is_open_office_hours(at: datetime, expected: bool) -> None:
    assert windows.is_open(at, OFFICE, NY) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Wednesday 18:00 -> Thursday 09:00; Friday 17:30 -> Monday 09:00.
        (local(NY, Y, 3, 4, 18), local(NY, Y, 3, 5, 9)),
        (local(NY, Y, 3, 6, 17, 30), local(NY, Y, 3, 9, 9)),
        (local(NY, Y, 3, 4, 6), local(NY, Y, 3, 4, 9)),
        (local(NY, Y, 3, 4, 12), local(NY, Y, 3, 4, 12)),  # open: itself
        # Across the US spring-forward weekend: still 09:00 local.
        (local(NY, Y, 3, 6, 18), local(NY, Y, 3, 9, 9)),
        (local(NY, Y, 10, 30, 18), local(NY, Y, 11, 2, 9)),
    ],
)
def test_next_open(at: datetime, expected: datetime) -> None:
    result = windows.next_open(at, OFFICE, NY)
    assert result == expected
    assert result.tzinfo is UTC


def test_the_window_is_read_in_the_contacts_zone() -> None:
    # 23:00 UTC Wednesday is Thursday 08:00 in Tokyo: opens an hour later.
    at = datetime(Y, 3, 4, 23, 0, tzinfo=UTC)
    assert windows.next_open(at, OFFICE, TOKYO) == local(TOKYO, Y, 3, 5, 9)
    assert windows.next_open(at, OFFICE, NY) == local(NY, Y, 3, 5, 9)


NIGHT = windows.parse_window("fri 22:00-02:00")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(BERLIN, Y, 3, 6, 21, 59), False),
        (local(BERLIN, Y, 3, 6, 22, 0), True),
        (local(BERLIN, Y, 3, 6, 23, 59), True),
        (local(BERLIN, Y, 3, 7, 1, 59), True),  # Saturday morning: Friday's range
        (local(BERLIN, Y, 3, 7, 2, 0), False),
        (local(BERLIN, Y, 3, 7, 22, 30), False),  # Saturday opens nothing
    ],
)
def test_a_range_crossing_midnight(at: datetime, expected: bool) -> None:
    assert windows.is_open(at, NIGHT, BERLIN) is expected


def test_next_open_inside_a_range_that_crossed_midnight() -> None:
    at = local(BERLIN, Y, 3, 7, 1, 0)
    assert windows.next_open(at, NIGHT, BERLIN) == at
    assert windows.next_open(local(BERLIN, Y, 3, 7, 2, 0), NIGHT, BERLIN) == local(
        BERLIN, Y, 3, 13, 22
    )


def test_whole_days() -> None:
    weekend = windows.parse_window("sat,sun 00:00-24:00")
    assert windows.is_open(local(NY, Y, 3, 8, 23, 59), weekend, NY)
    assert not windows.is_open(local(NY, Y, 3, 9, 0, 0), weekend, NY)
    assert windows.next_open(local(NY, Y, 3, 9), weekend, NY) == local(NY, Y, 3, 14)


def test_split_ranges() -> None:
    window = windows.parse_window("mon-fri 09:00-12:00; mon-fri 13:00-17:00")
    assert windows.next_open(local(NY, Y, 3, 4, 12, 30), window, NY) == local(NY, Y, 3, 4, 13)


HOLIDAYS = frozenset({date(Y, 12, 25), date(Y, 12, 28)})


def test_holidays_close_the_window() -> None:
    christmas_noon = local(NY, Y, 12, 25, 12)
    assert windows.is_open(christmas_noon, OFFICE, NY)
    assert not windows.is_open(christmas_noon, OFFICE, NY, HOLIDAYS)
    # Fri 25 and Mon 28 are holidays: next opening is Tuesday 29.
    assert windows.next_open(christmas_noon, OFFICE, NY, HOLIDAYS) == local(NY, Y, 12, 29, 9)


def test_a_holiday_closes_only_ranges_that_open_that_day() -> None:
    # Friday night's range runs into Saturday; a Saturday holiday doesn't cut it.
    saturday = frozenset({date(Y, 3, 7)})
    assert windows.is_open(local(BERLIN, Y, 3, 7, 1), NIGHT, BERLIN, saturday)
    friday = frozenset({date(Y, 3, 6)})
    assert not windows.is_open(local(BERLIN, Y, 3, 7, 1), NIGHT, BERLIN, friday)


def test_a_window_that_never_opens() -> None:
    sunday_only = windows.parse_window("sun 10:00-12:00")
    start = date(Y, 1, 4)  # a Sunday
    every_sunday = frozenset(start + timedelta(weeks=k) for k in range(80))
    with pytest.raises(ValueError, match="never opens"):
        windows.next_open(local(NY, Y, 1, 1), sunday_only, NY, every_sunday)


def test_a_range_starting_in_the_spring_forward_gap_opens_at_the_gap_end() -> None:
    # 02:00-03:00 doesn't exist on 8 March in New York.
    early = windows.parse_window("daily 02:30-05:00")
    at = local(NY, Y, 3, 8, 1, 0)
    opens = windows.next_open(at, early, NY)
    assert opens == datetime(Y, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert windows.is_open(opens, early, NY)
    assert not windows.is_open(opens - timedelta(seconds=1), early, NY)


def test_a_range_entirely_in_the_gap_is_skipped_that_day() -> None:
    tiny = windows.parse_window("daily 02:10-02:40")
    at = local(NY, Y, 3, 8, 0, 0)
    assert windows.next_open(at, tiny, NY) == local(NY, Y, 3, 9, 2, 10)


def test_berlin_window_across_both_changes() -> None:
    berlin_office = windows.parse_window("mon-sun 09:00-17:00")
    for day in (date(Y, 3, 28), date(Y, 3, 29), date(Y, 10, 24), date(Y, 10, 25)):
        night = local(BERLIN, day.year, day.month, day.day, 3)
        expected = local(BERLIN, day.year, day.month, day.day, 9)
        assert windows.next_open(night, berlin_office, BERLIN) == expected


def test_fall_back_ambiguous_opening_takes_the_first_occurrence() -> None:
    window = windows.parse_window("daily 01:30-01:45")
    opens = windows.next_open(local(NY, Y, 11, 1, 0, 0), window, NY)
    assert opens == datetime(Y, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    # After the first occurrence has closed, the repeated hour doesn't reopen it.
    later = datetime(Y, 11, 1, 6, 35, tzinfo=UTC)  # 01:35 EST
    assert not windows.is_open(later, window, NY)


# Slots


def test_parse_slots() -> None:
    slots = windows.parse_slots("Mon-Fri 07:30; sat 09:00,13:00")
    assert str(slots) == "mon-fri 07:30; sat 09:00,13:00"
    assert windows.parse_slots(str(slots)) == slots


@pytest.mark.parametrize(
    ("text", "detail"),
    [("mon-fri", "expected DAYS HH:MM"), ("mon-fri 7h30", 'bad time "7h30"'), ("x 07:30", "x")],
)
def test_parse_slots_errors(text: str, detail: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f'bad slots "{text}": ') + f".*{detail}"):
        windows.parse_slots(text)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (local(NY, Y, 3, 4, 6), local(NY, Y, 3, 4, 7, 30)),
        (local(NY, Y, 3, 4, 7, 30), local(NY, Y, 3, 5, 7, 30)),  # strictly after
        (local(NY, Y, 3, 6, 8), local(NY, Y, 3, 9, 7, 30)),  # over the weekend + DST
        (local(NY, Y, 10, 30, 8), local(NY, Y, 11, 2, 7, 30)),
    ],
)
def test_next_slot(after: datetime, expected: datetime) -> None:
    slots = windows.parse_slots("mon-fri 07:30")
    assert windows.next_slot(after, slots, NY) == expected


def test_next_slot_several_a_day() -> None:
    slots = windows.parse_slots("daily 07:30,12:00")
    assert windows.next_slot(local(NY, Y, 3, 4, 8), slots, NY) == local(NY, Y, 3, 4, 12)
    assert windows.next_slot(local(NY, Y, 3, 4, 12), slots, NY) == local(NY, Y, 3, 5, 7, 30)
