"""Durations ("3 business days", "24h") and calendar arithmetic in a time zone.

Minutes and hours are elapsed time: they are added in UTC, so "24 hours" before
a 10:00 appointment lands at 09:00 or 11:00 local across a daylight-saving
change. Days, weeks and months are calendar units: the wall-clock date moves in
the contact's zone and the wall-clock time is kept, so "1 day" before a 10:00
appointment is 10:00 the day before, whatever the clocks did in between.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

Unit = Literal["minutes", "hours", "days", "business_days", "weeks", "months"]

UNITS: tuple[Unit, ...] = get_args(Unit)
SATURDAY = 5  # date.weekday() of the first weekend day

# Every spelling a user may write, after lower-casing and squeezing spaces.
_UNIT_NAMES: dict[str, Unit] = {
    **dict.fromkeys(["m", "min", "mins", "minute", "minutes"], "minutes"),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], "hours"),
    **dict.fromkeys(["d", "day", "days"], "days"),
    **dict.fromkeys(["bd", "business day", "business days"], "business_days"),
    **dict.fromkeys(["w", "wk", "wks", "week", "weeks"], "weeks"),
    **dict.fromkeys(["mo", "mos", "month", "months"], "months"),
}
_DURATION_RE = re.compile(r"(\d+)\s*([a-z][a-z ]*?)")
_EXPECTED = (
    "expected N minutes|hours|days|business days|weeks|months (or 30m, 24h, 2d, 2bd, 2w, 3mo)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Duration:
    """An amount of one unit; calendar units are applied in a time zone by `add`."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"bad duration: amount {self.amount} is negative")
        if self.unit not in UNITS:
            raise ValueError(f'bad duration: unknown unit "{self.unit}"')

    def __str__(self) -> str:
        name = self.unit.replace("_", " ")
        if self.amount == 1:
            name = name[:-1]
        return f"{self.amount} {name}"

    def times(self, k: int) -> Duration:
        """This duration repeated `k` times (same unit, so months stay calendar months)."""
        return Duration(amount=self.amount * k, unit=self.unit)


def parse_duration(text: str) -> Duration:
    """Parse "3 business days", "1 month", "30m", "24h", "2bd", "3mo" (case-insensitive)."""
    normal = " ".join(text.lower().split())
    match = _DURATION_RE.fullmatch(normal)
    unit = _UNIT_NAMES.get(match.group(2).strip()) if match else None
    if match is None or unit is None:
        raise ValueError(f'bad duration "{text}": {_EXPECTED}')
    return Duration(amount=int(match.group(1)), unit=unit)


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall-clock time in `tz`.

    A wall time inside a spring-forward gap moves forward by the gap (02:30 on
    the US change day is 03:30 EDT); an ambiguous fall-back time takes its first
    occurrence. Both are what PEP 495's fold=0 gives.
    """
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def is_business_day(day: date, holidays: Container[date]) -> bool:
    """True on Monday to Friday unless `day` is one of `holidays`."""
    return day.weekday() < SATURDAY and day not in holidays


def add(
    start: datetime,
    duration: Duration,
    *,
    tz: ZoneInfo,
    holidays: Container[date] = frozenset(),
) -> datetime:
    """`start` plus `duration`, as aware UTC (calendar units in `tz`)."""
    return _shift(start, duration, 1, tz, holidays)


def subtract(
    start: datetime,
    duration: Duration,
    *,
    tz: ZoneInfo,
    holidays: Container[date] = frozenset(),
) -> datetime:
    """`start` minus `duration`, as aware UTC: the mirror of `add`."""
    return _shift(start, duration, -1, tz, holidays)


def _shift(
    start: datetime, duration: Duration, sign: int, tz: ZoneInfo, holidays: Container[date]
) -> datetime:
    amount = sign * duration.amount
    if duration.unit == "minutes":
        return start.astimezone(UTC) + timedelta(minutes=amount)
    if duration.unit == "hours":
        return start.astimezone(UTC) + timedelta(hours=amount)
    # Arithmetic on an aware datetime is wall-clock arithmetic that resets fold
    # to 0, which is exactly the calendar-unit rule; astimezone then resolves
    # gaps and folds like `localize`.
    local = start.astimezone(tz)
    if duration.unit == "days":
        local += timedelta(days=amount)
    elif duration.unit == "weeks":
        local += timedelta(weeks=amount)
    elif duration.unit == "months":
        local += relativedelta(months=amount)
    else:
        day = step_business_days(local.date(), amount, holidays)
        local = datetime.combine(day, local.time(), tzinfo=tz)
    return local.astimezone(UTC)


def step_business_days(day: date, amount: int, holidays: Container[date]) -> date:
    """The |amount|-th business day after (amount > 0) or before (< 0) `day`.

    `day` itself need not be a business day: 1 business day after a Saturday is
    the Monday. Zero returns `day` unchanged.
    """
    step = timedelta(days=1 if amount > 0 else -1)
    remaining = abs(amount)
    while remaining:
        day += step
        if is_business_day(day, holidays):
            remaining -= 1
    return day
