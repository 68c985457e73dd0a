"""Weekly sending windows ("mon-fri 09:00-17:00") and weekly slots ("mon-fri 07:30").

Everything is evaluated on the wall clock of a time zone, so a 09:00 opening is
09:00 local on both sides of a daylight-saving change. Each range of each day
becomes an interval of instants [opens, closes): a wall time that does not exist
(spring-forward gap) maps to the first valid instant after it, an ambiguous one
(fall-back) to its first occurrence. `is_open` and `next_open` use the very same
intervals, so `next_open` can never return an instant that `is_open` rejects.

Window grammar: one or more `DAYS HH:MM-HH:MM` joined by `;`. DAYS is a comma
list of day names (`mon`..`sun` or full names) and ranges (`mon-fri`, wrapping
`fri-mon` too), or `daily`, `weekdays`, `weekends`. A range whose end is at or
before its start crosses midnight: `fri 22:00-02:00` is open from Friday 22:00
to Saturday 02:00 (the day names the day it opens). `24:00` is allowed as an
end. Slots grammar: `DAYS HH:MM[,HH:MM...]` joined by `;`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MINUTES_PER_DAY = 24 * 60
MAX_SCAN_DAYS = 400  # a window still closed after this many days never opens
SLOT_SCAN_DAYS = 9  # every slot recurs weekly, so one week and a bit always finds one

_DAY_GROUPS = {"daily": tuple(range(7)), "weekdays": tuple(range(5)), "weekends": (5, 6)}
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
_WINDOW_FORM = 'expected DAYS HH:MM-HH:MM[; ...], e.g. "mon-fri 09:00-17:00"'
_SLOTS_FORM = 'expected DAYS HH:MM[,HH:MM][; ...], e.g. "mon-fri 07:30"'


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenRange:
    """One `DAYS HH:MM-HH:MM` part; times are minutes after midnight."""

    days: tuple[int, ...]  # date.weekday() numbers, sorted, unique
    start: int  # minutes after midnight, 0..1439
    end: int  # minutes after midnight, 0..1440; <= start means it ends the next day

    @property
    def length(self) -> int:
        """Wall-clock minutes the range stays open."""
        return (
            self.end - self.start
            if self.end > self.start
            else self.end + MINUTES_PER_DAY - self.start
        )

    def __str__(self) -> str:
        return f"{_format_days(self.days)} {_format_clock(self.start)}-{_format_clock(self.end)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A weekly set of open ranges, e.g. "mon-fri 09:00-12:00; mon-fri 13:00-17:00"."""

    ranges: tuple[OpenRange, ...]
    # (start, length) in minutes per weekday, sorted: computed once, used per email.
    by_weekday: tuple[tuple[tuple[int, int], ...], ...] = field(
        init=False, repr=False, compare=False
    )
    # Per weekday: does a range opening that day stay open past midnight?
    crosses_midnight: tuple[bool, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ValueError("a window needs at least one range")
        table = tuple(
            tuple(sorted((r.start, r.length) for r in self.ranges if day in r.days))
            for day in range(7)
        )
        object.__setattr__(self, "by_weekday", table)
        crosses = tuple(
            any(start + length > MINUTES_PER_DAY for start, length in spans) for spans in table
        )
        object.__setattr__(self, "crosses_midnight", crosses)

    def __str__(self) -> str:
        return "; ".join(str(r) for r in self.ranges)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotTimes:
    """One `DAYS HH:MM[,HH:MM]` part of a slot list."""

    days: tuple[int, ...]
    times: tuple[int, ...]  # minutes after midnight, sorted, unique

    def __str__(self) -> str:
        return f"{_format_days(self.days)} {','.join(_format_clock(t) for t in self.times)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Slots:
    """Weekly wall-clock times, e.g. "mon-fri 07:30" (when the rep's digest goes out)."""

    parts: tuple[SlotTimes, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("a slot list needs at least one time")

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.parts)

    def times_on(self, weekday: int) -> list[int]:
        """Sorted slot times (minutes after midnight) on a weekday."""
        return sorted({t for p in self.parts if weekday in p.days for t in p.times})


class _BadText(Exception):
    """A parse problem; the public parser adds the quoted text and the expected form."""


def parse_window(text: str) -> Window:
    """Parse a sending window; raises ValueError quoting `text` when it is malformed."""
    try:
        return Window(ranges=tuple(_parse_range(part) for part in _parts(text)))
    except _BadText as exc:
        raise ValueError(f'bad window "{text}": {str(exc) or _WINDOW_FORM}') from None


def parse_slots(text: str) -> Slots:
    """Parse weekly slots such as "mon-fri 07:30; sat 09:00,13:00"."""
    try:
        return Slots(parts=tuple(_parse_slot_times(part) for part in _parts(text)))
    except _BadText as exc:
        raise ValueError(f'bad slots "{text}": {str(exc) or _SLOTS_FORM}') from None


def _parse_range(part: str) -> OpenRange:
    days, clocks = _split_part(part)
    start, sep, end = clocks.partition("-")
    if not sep:
        raise _BadText()
    return OpenRange(
        days=_parse_days(days),
        start=_parse_clock(start, allow_24=False),
        end=_parse_clock(end, allow_24=True),
    )


def _parse_slot_times(part: str) -> SlotTimes:
    days, clocks = _split_part(part)
    times = {_parse_clock(clock, allow_24=False) for clock in clocks.split(",")}
    return SlotTimes(days=_parse_days(days), times=tuple(sorted(times)))


def is_open(
    at: datetime, window: Window, tz: ZoneInfo, holidays: Container[date] = frozenset()
) -> bool:
    """True when `at` lies inside one of the window's ranges in `tz`."""
    at = at.astimezone(UTC)
    for day in _first_days(at, window, tz)[:2]:
        for opens, closes in _intervals(day, window, tz, holidays):
            if opens <= at < closes:
                return True
    return False


def next_open(
    at: datetime, window: Window, tz: ZoneInfo, holidays: Container[date] = frozenset()
) -> datetime:
    """`at` (as UTC) if the window is open then, else the instant it next opens.

    Raises ValueError if the window stays closed for MAX_SCAN_DAYS days (e.g.
    every open day is a holiday).
    """
    at = at.astimezone(UTC)
    first = _first_days(at, window, tz)[0]
    # Intervals come in order of opening, so the first one not yet closed is the
    # one containing `at` or, if none does, the next one to open.
    for offset in range(MAX_SCAN_DAYS):
        for opens, closes in _intervals(first + timedelta(days=offset), window, tz, holidays):
            if closes > at:
                return max(opens, at)
    raise ValueError(f'window "{window}" never opens within {MAX_SCAN_DAYS} days of {at:%Y-%m-%d}')


def _first_days(at: datetime, window: Window, tz: ZoneInfo) -> tuple[date, ...]:
    """The days whose ranges may contain `at`: its local day, and the day before
    when a range of that day crosses midnight."""
    today = at.astimezone(tz).date()
    yesterday = today - timedelta(days=1)
    if window.crosses_midnight[yesterday.weekday()]:
        return (yesterday, today)
    return (today,)


def next_slot(after: datetime, slots: Slots, tz: ZoneInfo) -> datetime:
    """The first slot instant strictly after `after`, as aware UTC."""
    after = after.astimezone(UTC)
    first = after.astimezone(tz).date()
    for offset in range(SLOT_SCAN_DAYS):
        day = first + timedelta(days=offset)
        for minute in slots.times_on(day.weekday()):
            instant = first_valid_instant(_wall(day, minute), tz)
            if instant > after:
                return instant
    raise AssertionError("unreachable: a slot list always has a time each week")


def first_valid_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall time; a time in a gap maps to the gap's end.

    Ambiguous (fall-back) times take their first occurrence.
    """
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In a gap, fold=1 reads the wall with the later offset (an instant before
    # the transition) and fold=0 with the earlier one (after it): bisect between.
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    high = int(instant.timestamp())
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(high, UTC)


def _intervals(
    day: date, window: Window, tz: ZoneInfo, holidays: Container[date]
) -> tuple[tuple[datetime, datetime], ...]:
    """The non-empty [opens, closes) instants of the ranges that open on `day`."""
    if day in holidays:
        return ()
    return _day_intervals(day, window.by_weekday[day.weekday()], tz)


# Contacts share zones and windows, so the same few days are converted again and
# again (next_open runs per email): caching them makes a 10,000-contact
# projection several times faster.
@functools.lru_cache(maxsize=8192)
def _day_intervals(
    day: date, spans: tuple[tuple[int, int], ...], tz: ZoneInfo
) -> tuple[tuple[datetime, datetime], ...]:
    intervals = []
    for start, length in spans:
        opens = first_valid_instant(_wall(day, start), tz)
        closes = first_valid_instant(_wall(day, start + length), tz)
        if opens < closes:  # a range entirely inside a DST gap never opens
            intervals.append((opens, closes))
    return tuple(intervals)


def _wall(day: date, minute: int) -> datetime:
    return datetime.combine(day, time()) + timedelta(minutes=minute)


def _parts(text: str) -> list[str]:
    # Squeeze spaces around "-" and "," so "mon - fri 09:00 - 17:00" reads too.
    normal = re.sub(r"\s*([,-])\s*", r"\1", text.strip().lower())
    parts = [p.strip() for p in normal.split(";")]
    if not any(parts):
        raise _BadText()
    return [p for p in parts if p]


def _split_part(part: str) -> tuple[str, str]:
    words = part.split()
    if len(words) != 2:
        raise _BadText()
    return words[0], words[1]


def _parse_days(spec: str) -> tuple[int, ...]:
    if spec in _DAY_GROUPS:
        return _DAY_GROUPS[spec]
    days: set[int] = set()
    for item in spec.split(","):
        first, sep, last = item.partition("-")
        start = _parse_day(first)
        end = _parse_day(last) if sep else start
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return tuple(sorted(days))


def _parse_day(name: str) -> int:
    for names in (DAY_NAMES, FULL_DAY_NAMES):
        if name in names:
            return names.index(name)
    raise _BadText(f'unknown day "{name}" (use mon, tue, ... sun, or daily)')


def _parse_clock(clock: str, *, allow_24: bool) -> int:
    match = _CLOCK_RE.fullmatch(clock)
    if match is None:
        raise _BadText(f'bad time "{clock}", expected HH:MM')
    hour, minute = int(match.group(1)), int(match.group(2))
    if allow_24 and (hour, minute) == (24, 0):
        return MINUTES_PER_DAY
    if hour > 23 or minute > 59:
        raise _BadText(f'bad time "{clock}", expected 00:00 to 23:59')
    return hour * 60 + minute


def _format_days(days: tuple[int, ...]) -> str:
    if days == _DAY_GROUPS["daily"]:
        return "daily"
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(_format_run(run) for run in runs)


def _format_run(run: list[int]) -> str:
    if len(run) == 1:
        return DAY_NAMES[run[0]]
    if len(run) == 2:
        return f"{DAY_NAMES[run[0]]},{DAY_NAMES[run[1]]}"
    return f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}"


def _format_clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
