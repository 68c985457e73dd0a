"""Holidays that don't expire: named calendars worked out for any year, per rep (SPEC §11).

Every year here is computed from today, years ahead, so that no date in this
file names a year any file of the project lists.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dripd import errors
from dripd.files import config
from dripd.plan import calendars, durations, windows
from dripd.plan.durations import Duration

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
YEAR = date.today().year + 5  # a year no file of the project names


def _christmas_on_a_weekday(after: int) -> int:
    """The first year from `after` whose 25 December is a Tuesday to Thursday."""
    return next(y for y in range(after, after + 20) if date(y, 12, 25).weekday() in (1, 2, 3))


def test_a_named_calendar_holds_its_holidays_in_any_year() -> None:
    us = calendars.parse(["US"])
    for year in (YEAR, YEAR + 20):
        assert date(year, 7, 4) in us or date(year, 7, 4).weekday() >= 5  # observed on Fri/Mon
        assert date(year, 12, 25) in us or date(year, 12, 25).weekday() >= 5
        assert date(year, 3, 17) not in us


def test_subdivisions_and_dates_mix() -> None:
    bavaria = calendars.parse(["DE-BY", f"{YEAR}-07-03"])
    assert date(YEAR, 1, 6) in bavaria  # Epiphany: Bavaria's, not Berlin's
    assert date(YEAR, 1, 6) not in calendars.parse(["DE-BE"])
    assert date(YEAR, 7, 3) in bavaria
    assert calendars.parse(["de-by"]).names == ("DE-BY",)


@pytest.mark.parametrize(
    ("name", "hint"),
    [("US-NYC", "did you mean 'US-NY'?"), ("DE-BAY", "did you mean 'DE-BY'?"), ("Narnia", "use")],
)
def test_an_unknown_calendar_is_refused_with_a_suggestion(name: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f"unknown holiday calendar '{name}'") as caught:
        calendars.parse([name])
    assert hint in str(caught.value)


def test_business_days_skip_the_named_holidays_in_a_year_no_file_names() -> None:
    year = _christmas_on_a_weekday(YEAR)
    us = calendars.parse(["US"])
    eve = datetime(year, 12, 24, 10, 0, tzinfo=NY)
    # 24 Dec (Mon-Wed) + 1 business day skips Christmas Day
    one = Duration(amount=1, unit="business_days")
    assert durations.add(eve, one, tz=NY, holidays=us).date() == date(year, 12, 26)
    assert durations.add(eve, one, tz=NY).date() == date(year, 12, 25)


def test_the_window_stays_shut_on_a_named_holiday() -> None:
    year = _christmas_on_a_weekday(YEAR)
    window = windows.parse_window("mon-fri 09:00-17:00")
    christmas = datetime(year, 12, 25, 10, 0, tzinfo=NY)
    us = calendars.parse(["US"])
    assert windows.is_open(christmas, window, NY)
    assert not windows.is_open(christmas, window, NY, us)
    assert windows.next_open(christmas, window, NY, us).date() == date(year, 12, 26)


# -- in the config ----------------------------------------------------------------------

CONFIG = """\
[dripd]
timezone = "America/New_York"
holidays = {default}

[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@example.com"

[[reps]]
id = "anna"
name = "Anna Berg"
email = "anna@example.com"
timezone = "Europe/Berlin"
holidays = {anna}
"""


def _load(tmp_path: Path, default: str, anna: str = '["DE-BY"]') -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(default=default, anna=anna), encoding="utf-8")
    return config.load(path)


def test_each_rep_has_the_holidays_of_their_own_calendar(tmp_path: Path) -> None:
    cfg = _load(tmp_path, f'["US", "{YEAR}-07-05"]')
    thanksgiving = next(
        d for d in (date(YEAR, 11, 22) + timedelta(days=i) for i in range(7)) if d.weekday() == 3
    )
    assert thanksgiving in cfg.holidays_for("mike")
    assert thanksgiving not in cfg.holidays_for("anna")
    assert date(YEAR, 1, 6) in cfg.holidays_for("anna")
    assert date(YEAR, 7, 5) in cfg.holidays_for("mike")
    assert cfg.holidays_for(None) is cfg.holidays  # a contact without an owner: [dripd]'s


def test_an_unknown_calendar_in_the_config_names_the_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        _load(tmp_path, '["US"]', anna='["DE", "GERMANY-BY"]')
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'config.toml'}: reps[1].holidays[1]: ")
    assert "unknown holiday calendar 'GERMANY-BY'" in message
    assert "\n" not in message


def test_a_bad_date_in_the_list_says_so(tmp_path: Path) -> None:
    with pytest.raises(
        errors.ConfigError, match=rf"dripd\.holidays\[0\]: '{YEAR}-02-30' is neither"
    ):
        _load(tmp_path, f'["{YEAR}-02-30"]')
