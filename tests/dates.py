"""Dates for tests, computed from the real today: no test depends on the day it runs.

A literal date slides into the past: a holiday list that has run out, an
appointment that "has passed", a year a parser reads as last year's. So tests
take their days from here. Every base is computed from the clock of the test
process (`today()`), which `./dev test`'s clock-ahead pass moves years ahead
with libfaketime, and keeps the property a test relies on, named in it: the
weekday, whether New York is on standard or daylight time, no holiday and no
clock change in the weeks it spans, 29 February, the day the clocks change.

    monday = dates.quiet_monday(weeks=2)            # a Monday in winter, next year
    at_nine = dates.local(monday, 9)               # 09:00 in New York, aware
    text = f"back on {dates.fmt_long(monday)}"     # "back on Monday, 7 December 2026"
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from dripd.plan import calendars

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# The zones and the holiday calendars the tests' configs use: a quiet week is quiet in all.
ZONES = (NY, BERLIN, ZoneInfo("Europe/London"))
HOLIDAYS = calendars.parse(["US", "DE"])

MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def today() -> date:
    """Today in UTC, from the process's clock (libfaketime moves it)."""
    return datetime.now(UTC).date()


def weekday_after(day: date, weekday: int, *, weeks: int = 0) -> date:
    """The first `weekday` strictly after `day`, then `weeks` weeks later."""
    ahead = (weekday - day.weekday() - 1) % 7 + 1
    return day + timedelta(days=ahead, weeks=weeks)


def weekday_on_or_after(day: date, weekday: int) -> date:
    """`day` if it is a `weekday`, else the next one."""
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def local(day: date, hour: int, minute: int = 0, tz: tzinfo = NY) -> datetime:
    """`hour:minute` on `day` in `tz`, as an aware datetime in UTC (what the store keeps)."""
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def stamp(day: date, hour: int = 10, minute: int = 0) -> str:
    """`day` at `hour:minute` the way a contact field holds it: "2026-12-03 10:00"."""
    return f"{day.isoformat()} {hour:02}:{minute:02}"


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def leap_day(after: date) -> date:
    """The first 29 February after `after`."""
    year = next(y for y in range(after.year, after.year + 9) if is_leap(y))
    found = date(year, 2, 29)
    return found if found > after else leap_day(date(year + 1, 1, 1))


def clock_changes(year: int, tz: ZoneInfo = NY) -> list[date]:
    """The days of `year` on which `tz` changes its offset from UTC, in order."""
    changes = []
    day = date(year, 1, 1)
    previous = _offset(day - timedelta(days=1), tz)
    while day.year == year:
        offset = _offset(day, tz)
        if offset != previous:
            changes.append(day)
        previous = offset
        day += timedelta(days=1)
    return changes


def dst_start(year: int, tz: ZoneInfo = NY) -> date:
    """The day `tz`'s clocks spring forward in `year` (second Sunday of March in New York)."""
    return clock_changes(year, tz)[0]


def dst_end(year: int, tz: ZoneInfo = NY) -> date:
    """The day `tz`'s clocks fall back in `year` (first Sunday of November in New York)."""
    return clock_changes(year, tz)[1]


def _offset(day: date, tz: ZoneInfo) -> timedelta | None:
    """The offset at noon: a day "changes" when its noon differs from the day before's."""
    return datetime.combine(day, time(12), tzinfo=tz).utcoffset()


def is_daylight(day: date, tz: ZoneInfo = NY) -> bool:
    """Whether `tz` is on summer time at noon on `day` (EDT, not EST)."""
    return bool(datetime.combine(day, time(12), tzinfo=tz).dst())


def is_quiet(first: date, days: int) -> bool:
    """No clock change and no public holiday (US, DE) in the `days` from `first`."""
    span = [first + timedelta(days=k) for k in range(days)]
    if any(day in HOLIDAYS or (day.month, day.day) in ((12, 24), (12, 31)) for day in span):
        return False
    return all(_offset(span[0], tz) == _offset(day, tz) for tz in ZONES for day in span)


def quiet_monday(*, weeks: int = 2, daylight: bool = False, years: int = 1) -> date:
    """A Monday about `years` years after today, starting `weeks` quiet weeks (`is_quiet`).

    New York is on daylight time (EDT) throughout when `daylight`, else on standard
    time (EST). The weeks end before 24 December, so the year does not turn in them.
    """
    start = weekday_on_or_after(today() + timedelta(days=365 * years), MONDAY)
    for k in range(80):
        monday = start + timedelta(weeks=k)
        end = monday + timedelta(weeks=weeks)
        if (
            end.year == monday.year
            and is_daylight(monday) == daylight
            and is_quiet(monday, weeks * 7)
        ):
            return monday
    raise AssertionError(f"no {weeks} quiet weeks in the year after {start}")


def spring_forward_monday(*, years: int = 1) -> date:
    """The Monday after New York's clocks sprang forward, in the year `years` after today.

    That Monday and the days after are on EDT (UTC-4); the Friday and the Tuesday before
    it are on EST (UTC-5). No US public holiday falls in that fortnight.
    """
    sunday = dst_start(today().year + years)
    assert sunday.weekday() == SUNDAY, sunday
    return sunday + timedelta(days=1)


def christmas(year: int) -> date:
    """25 December of `year`: a calendar fact, so its month and day are literal."""
    return date(year, 12, 25)


def fmt_long(day: date) -> str:
    """ "Monday, 7 December 2026": the way people write a date in an email."""
    return f"{WEEKDAYS[day.weekday()]}, {day.day} {MONTHS[day.month - 1]} {day.year}"


def fmt_day_month(day: date) -> str:
    """ "7 December": a date without its year."""
    return f"{day.day} {MONTHS[day.month - 1]}"


def fmt_us(day: date) -> str:
    """ "Mon, Nov 23, 2026": the day in a US mail client's "On …, Mike wrote:" line."""
    return f"{WEEKDAYS[day.weekday()][:3]}, {MONTHS[day.month - 1][:3]} {day.day}, {day.year}"


def fmt_short(day: date) -> str:
    """ "Mon 9 Mar": the day as the digest writes it."""
    return f"{WEEKDAYS[day.weekday()][:3]} {day.day} {MONTHS[day.month - 1][:3]}"


def year_when(month: int, day: int, weekday: int, *, years: int = 1) -> int:
    """The first year from `years` after today in which `day` `month` falls on `weekday`.

    For texts that name a weekday with a date ("Monday, 7 December"): in that year the
    wording is true, so the test keeps the words and computes only the year.
    """
    first = today().year + years
    return next(y for y in range(first, first + 28) if date(y, month, day).weekday() == weekday)


def year_starting_on(weekday: int, *, leap: bool = False, years: int = 1) -> int:
    """The first year from `years` after today that begins on `weekday` (and is leap or not).

    Two such years share their whole calendar: every day and month falls on the same
    weekday, and the clocks change on the same dates (New York: the second Sunday of
    March, the first of November; Europe: the last Sundays of March and October). A
    table of days written for one holds for the other; the test computes only the year.
    """
    first = today().year + years
    return next(
        y
        for y in range(first, first + 40)
        if date(y, 1, 1).weekday() == weekday and is_leap(y) == leap
    )


def thursday_year(*, years: int = 1) -> int:
    """A non-leap year from `years` ahead that begins on a Thursday: for tables of days.

    In it 2 March is a Monday; New York springs forward on Sunday 8 March and falls back
    on 1 November, Berlin on 29 March and 25 October. Checked here, so that a change in
    the zones' rules fails loudly instead of moving a test off its clock change.
    """
    year = year_starting_on(THURSDAY, years=years)
    assert (dst_start(year, NY), dst_end(year, NY)) == (date(year, 3, 8), date(year, 11, 1))
    assert (dst_start(year, BERLIN), dst_end(year, BERLIN)) == (
        date(year, 3, 29),
        date(year, 10, 25),
    )
    return year
