"""Holidays: named calendars worked out for any year, mixed with explicit dates.

`holidays = ["US-NY", "2027-07-05"]` in the config names the public holidays
of a country or one of its subdivisions (from the well-kept `holidays`
package, which computes them for any year, observed days included) and adds
single dates. A config written today still has its holidays in 2031: no list
of dates runs out.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Iterable
from datetime import date

NAME_FORM = "a country code like 'US' or 'DE', or a subdivision like 'US-NY' or 'DE-BY'"


@dataclasses.dataclass(frozen=True, slots=True)
class Holidays:
    """Days that are not business days: `day in holidays`.

    The named calendars are worked out a year at a time, when a day of that
    year is first asked about, and kept.
    """

    names: tuple[str, ...] = ()
    dates: frozenset[date] = frozenset()
    _years: dict[int, frozenset[date]] = dataclasses.field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def __contains__(self, day: object) -> bool:
        if day in self.dates:
            return True
        if not self.names or not isinstance(day, date):
            return False
        year = self._years.get(day.year)
        if year is None:
            year = self._years[day.year] = _named_days(self.names, day.year)
        return day in year

    def __bool__(self) -> bool:
        return bool(self.names or self.dates)

    def in_year(self, year: int) -> list[date]:
        """Every holiday of `year`, in order (for `dripd check` and the docs)."""
        named = _named_days(self.names, year) if self.names else frozenset()
        return sorted(named | {d for d in self.dates if d.year == year})


NONE = Holidays()


def parse(entries: Iterable[str | date]) -> Holidays:
    """Holidays from config entries: calendar names and dates; ValueError names a bad one.

    The same list gives the same `Holidays` (cached): every rep with that list
    shares the years worked out, and hot paths may call this per contact.
    """
    return _parse(tuple(entries))


@functools.lru_cache(maxsize=64)
def _parse(entries: tuple[str | date, ...]) -> Holidays:
    names: list[str] = []
    dates: set[date] = set()
    for entry in entries:
        if isinstance(entry, date):
            dates.add(entry)
        elif _looks_like_date(entry):
            dates.add(_date(entry))
        else:
            names.append(check_name(entry))
    return Holidays(names=tuple(dict.fromkeys(names)), dates=frozenset(dates))


def check_name(name: str) -> str:
    """`name` in its canonical form ("us-ny" → "US-NY"); ValueError with a suggestion if unknown."""
    canonical = name.strip().upper().replace("_", "-")
    if canonical in _known():
        return canonical
    near = _near(canonical)
    hint = f" — did you mean {near!r}?" if near else f" (use {NAME_FORM})"
    raise ValueError(f"unknown holiday calendar {name!r}{hint}")


def _near(name: str) -> str | None:
    """The known name a person most likely meant: "USA" → "US", "DE-BAY" → "DE-BY"."""
    country, dash, subdivision = name.partition("-")
    if country in _known() and dash:
        subdivisions = [k.partition("-")[2] for k in _known() if k.startswith(country + "-")]
        close = difflib.get_close_matches(subdivision, subdivisions, n=1, cutoff=0.5)
        return f"{country}-{close[0]}" if close else country
    if len(country) == 3 and country[:2] in _known():  # an ISO alpha-3 code: "USA", "DEU"
        return country[:2]
    countries = [k for k in _known() if "-" not in k]
    close = difflib.get_close_matches(country, countries, n=1, cutoff=0.75)
    return close[0] if close else None


def check_entry(entry: str | date) -> str | date:
    """A config entry as it will be read: a date, or a known calendar name."""
    if isinstance(entry, date):
        return entry
    if _looks_like_date(entry):
        return _date(entry)
    return check_name(entry)


def _looks_like_date(text: str) -> bool:
    return text[:1].isdigit()


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither a date (YYYY-MM-DD) nor a calendar name") from exc


@functools.cache
def _known() -> frozenset[str]:
    import holidays as library

    names: set[str] = set()
    for country, subdivisions in library.list_supported_countries().items():
        names.add(country)
        names.update(f"{country}-{sub}" for sub in subdivisions)
    return frozenset(names)


def _named_days(names: tuple[str, ...], year: int) -> frozenset[date]:
    import holidays as library

    days: set[date] = set()
    for name in names:
        country, _, subdivision = name.partition("-")
        calendar = library.country_holidays(country, subdiv=subdivision or None, years=year)
        days.update(calendar.keys())
    return frozenset(days)


def library_version() -> str:
    """The `holidays` package's version: a new one may move a holiday, so plans note it."""
    from importlib import metadata

    return metadata.version("holidays")
