"""Parsing the date and date-time values kept in a contact's text fields.

Accepted forms (ISO 8601 subset): `2026-12-03`, `2026-12-03 10:00`,
`2026-12-03T10:00`, `2026-12-03 10:00:30` (optionally `.123456`), each
date-time optionally followed by `Z`, `+01:00`, `-05:00` or `-0500`. A value
without an offset is a wall time in the contact's zone; a date-only value means
`DATE_ONLY_TIME` on that date.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from dripd.plan import durations

DATE_ONLY_TIME = time(9, 0)  # a date-only value means 09:00 in the contact's zone
LEAP_YEAR = 2000  # any leap year: lets "02-29" validate as a month-day

_WHEN_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[t ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?"
    r"(?P<offset>z|[+-]\d{2}:?\d{2})?)?"
)
_MONTH_DAY_RE = re.compile(r"(\d{1,2})-(\d{1,2})")
_FORMS = "expected YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS], optionally with Z or +HH:MM"


@functools.lru_cache(maxsize=16_384)
def parse_when(text: str, tz: ZoneInfo) -> datetime:
    """The instant a field value names, as aware UTC; wall times are read in `tz`.

    Cached: the schedule reads the same anchors on every pass, and imports
    meet the same dates (appointment slots, birthdays) many times.
    """
    match = _match(text)
    day = _date_of(text, match)
    if match["hour"] is None:
        return durations.localize(datetime.combine(day, DATE_ONLY_TIME), tz)
    wall = datetime.combine(day, _time_of(text, match))
    if match["offset"] is None:
        return durations.localize(wall, tz)
    return wall.replace(tzinfo=_offset_of(text, match["offset"])).astimezone(UTC)


def parse_date(text: str) -> date:
    """The calendar date a field value names; a time part, if any, is ignored."""
    match = _match(text)
    if match["hour"] is not None:
        _time_of(text, match)  # still reject "2026-12-03 25:00"
    return _date_of(text, match)


def parse_month_day(text: str) -> tuple[int, int]:
    """Parse "12-15" into (12, 15); "02-29" is valid (it falls on Feb 28 in other years)."""
    match = _MONTH_DAY_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f'bad month-day "{text}": expected MM-DD, e.g. "12-15"')
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(LEAP_YEAR, month, day)
    except ValueError as exc:
        raise ValueError(f'bad month-day "{text}": {exc}') from exc
    return month, day


def _match(text: str) -> re.Match[str]:
    match = _WHEN_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f'bad date "{text}": {_FORMS}')
    return match


def _date_of(text: str, match: re.Match[str]) -> date:
    try:
        return date.fromisoformat(match["date"])
    except ValueError as exc:
        raise ValueError(f'bad date "{text}": {exc}') from exc


def _time_of(text: str, match: re.Match[str]) -> time:
    fraction = (match["fraction"] or "0").ljust(6, "0")
    try:
        return time(
            int(match["hour"]), int(match["minute"]), int(match["second"] or 0), int(fraction)
        )
    except ValueError as exc:
        raise ValueError(f'bad date "{text}": {exc}') from exc


def _offset_of(text: str, offset: str) -> timezone:
    if offset == "z":
        return UTC
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if delta >= timedelta(hours=24) or int(digits[2:]) >= 60:
        raise ValueError(f'bad date "{text}": offset {offset} is out of range')
    return timezone(-delta if offset[0] == "-" else delta)


# -- days said the way people say them, fixed when typed -----------------------------------

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RELATIVE_RE = re.compile(
    r"(?:(?P<word>today|tomorrow)"
    r"|(?:next\s+)?(?P<weekday>mon|tue|wed|thu|fri|sat|sun)(?:day|sday|nesday|rsday|urday)?"
    r"|(?:in\s+|\+)(?P<days>\d{1,3})\s*(?:d|days?))"
    r"(?:\s+(?:at\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2}))?"
)


def resolve_relative(text: str, now: datetime, tz: ZoneInfo) -> str | None:
    """`thu 10:00`, `tomorrow 15:00`, `in 3 days` as a date people mean from `now`, else None.

    The result is the absolute form dripd keeps (`2026-12-03 10:00`, a wall
    time in the contact's zone): a relative value is fixed when it is typed,
    so the appointment does not move again tomorrow. A weekday is its next
    occurrence that is still ahead (today, if its time has not come yet).
    """
    match = _RELATIVE_RE.fullmatch(" ".join(text.strip().lower().split()))
    if match is None:
        return None
    local = now.astimezone(tz)
    clock = _clock_of(text, match)
    day = _relative_day(match, local, clock)
    return f"{day.isoformat()} {clock:%H:%M}" if clock is not None else day.isoformat()


def _clock_of(text: str, match: re.Match[str]) -> time | None:
    if match["hour"] is None:
        return None
    try:
        return time(int(match["hour"]), int(match["minute"]))
    except ValueError as exc:
        raise ValueError(f'bad date "{text}": {exc}') from exc


def _relative_day(match: re.Match[str], local: datetime, clock: time | None) -> date:
    today = local.date()
    if match["word"]:
        return today + timedelta(days=1 if match["word"] == "tomorrow" else 0)
    if match["days"]:
        return today + timedelta(days=int(match["days"]))
    ahead = (_WEEKDAYS.index(match["weekday"]) - today.weekday()) % 7
    if ahead == 0 and clock is not None and clock <= local.time():
        ahead = 7  # "thu 10:00" said on Thursday at 11:00: next week's
    return today + timedelta(days=ahead)
