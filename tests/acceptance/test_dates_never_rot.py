"""Nothing a newcomer copies stops working next year (SPEC §11, "Dates never rot").

The README's quick start, run as written on the shipped config, campaigns and
example contacts, with the clock of every `dripd` process moved years ahead
(libfaketime): the appointments are still ahead, nothing "has passed", and
`dripd check` accepts the shipped files. Then `check` on holidays and on
templates that fail for a contact with only an email address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIPD = str(Path(sys.executable).with_name("dripd"))
NY = ZoneInfo("America/New_York")


def _faketime() -> str:
    found = shutil.which("faketime")
    if found is None:  # ./dev test installs Debian's faketime: missing is a failure, not a skip
        pytest.fail("faketime is not installed (Debian package faketime; ./dev test installs it)")
    return found


def _clocks() -> list[object]:
    """The real clock, then clocks years ahead: a Thursday after its 10:00, a Sunday night.

    The moved ones set their clock themselves: ./dev test's clock-ahead pass runs them once.
    """
    today = date.today()
    thursday = today + timedelta(days=3 * 365 + (3 - today.weekday()) % 7)
    sunday = today + timedelta(days=7 * 365)
    sunday += timedelta(days=(6 - sunday.weekday()) % 7)
    own = pytest.mark.own_clock
    return [
        pytest.param(None, id="today"),
        pytest.param(
            datetime.combine(thursday, datetime.min.time()).replace(hour=11, tzinfo=NY),
            id="thursday-ahead",
            marks=own,
        ),
        pytest.param(
            datetime.combine(sunday, datetime.min.time()).replace(hour=23, minute=30, tzinfo=NY),
            id="sunday-ahead",
            marks=own,
        ),
    ]


def _without_faketime(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("FAKETIME", "LD_PRELOAD"))}


class QuickStart:
    """A folder laid out as the README's quick start has it, and `dripd` run there."""

    def __init__(self, folder: Path, clock: datetime | None) -> None:
        self.folder = folder
        folder.mkdir()
        shutil.copy(REPO / "config.example.toml", folder / "config.toml")
        shutil.copytree(REPO / "campaigns", folder / "campaigns")
        shutil.copytree(REPO / "examples", folder / "examples")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPD_")}
        self.prefix: list[str] = []
        if clock is not None:
            # Each `dripd` starts at `clock` (and its clock runs on from there): an
            # absolute start, so that this holds also when the suite itself runs with
            # its clock moved (./dev test's second pass)
            at = clock.astimezone(UTC)
            self.prefix = [_faketime(), "-f", f"@{at:%Y-%m-%d %H:%M:%S}"]
            self.env["TZ"] = "UTC"
            self.env = _without_faketime(self.env)  # the suite's own moved clock, if any
        self.now = clock or datetime.now(UTC)

    def run(self, *args: str, code: int = 0) -> str:
        result = subprocess.run(
            [*self.prefix, DRIPD, *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == code, f"dripd {' '.join(args)}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout + result.stderr


@pytest.mark.parametrize("clock", _clocks())
def test_the_quick_start_shows_appointments_ahead_whenever_it_runs(
    tmp_path: Path, clock: datetime | None
) -> None:
    quick = QuickStart(tmp_path / "quick", clock)
    checked = quick.run("check")
    assert "error" not in checked and "ok:" in checked
    imported = quick.run(
        "contacts", "import", "examples/contacts.csv", "--enroll", "qualification", code=1
    )
    assert "5 created, 0 updated, 5 enrolled, 2 row(s) with problems" in imported

    shown = json.loads(quick.run("contacts", "show", "ann.lee@example.org", "--json"))
    appointment = datetime.fromisoformat(shown["fields"]["appointment_at"]).replace(tzinfo=NY)
    assert quick.now < appointment < quick.now + timedelta(days=8)

    plan = json.loads(quick.run("schedule", "--days", "14", "--json"))["items"]
    confirms = [i for i in plan if i["step"] in ("confirm-call", "confirm-email")]
    assert {i["contact"] for i in confirms} == {
        "ann.lee@example.org", "bob.stone@example.net", "dev.patel@example.com"
    }  # fmt: skip
    for item in plan:
        assert datetime.fromisoformat(item["at"]) >= quick.now - timedelta(minutes=5), item

    preview = quick.run(
        "preview", "qualification", "confirm-email", "--contact", "ann.lee@example.org"
    )
    assert f"{appointment:%A, %B} {appointment.day}" in preview  # "See you Thursday, …"
    for text in (checked, imported, preview):
        assert "has passed" not in text and "could not be filled in" not in text


def _check(folder: Path, config: str) -> subprocess.CompletedProcess[str]:
    (folder / "config.toml").write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPD_")}
    return subprocess.run(
        [DRIPD, "--config", str(folder / "config.toml"), "check"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _one_campaign(folder: Path, note: str) -> str:
    campaigns = folder / "campaigns"
    campaigns.mkdir()
    (campaigns / "hello.toml").write_text(
        f'name = "Hello"\n\n[[steps]]\nid = "call"\nkind = "call"\nwait = "1 day"\n'
        f"note = {json.dumps(note)}\n",
        encoding="utf-8",
    )
    return f'[dripd]\ncampaigns = "{campaigns}"\n{{holidays}}\n\n' + (
        '[[reps]]\nid = "mike"\nname = "Mike"\nemail = "mike@example.com"\n'
    )


def test_check_names_an_unknown_holiday_calendar_with_a_suggestion(tmp_path: Path) -> None:
    config = _one_campaign(tmp_path, "Call {{ contact.first_name }}.")
    result = _check(tmp_path, config.replace("{holidays}", 'holidays = ["US", "DE-BAY"]'))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"dripd: {tmp_path / 'config.toml'}: dripd.holidays[1]: "
        "unknown holiday calendar 'DE-BAY' — did you mean 'DE-BY'?"
    )


def test_check_warns_when_every_holiday_date_is_past(tmp_path: Path) -> None:
    config = _one_campaign(tmp_path, "Call {{ contact.first_name }}.")
    past = [(date.today() - timedelta(days=d)).isoformat() for d in (40, 400)]
    result = _check(tmp_path, config.replace("{holidays}", f"holidays = {json.dumps(past)}"))
    assert result.returncode == 0, result.stderr
    assert "dripd.holidays: every date is past" in result.stdout
    ahead = config.replace("{holidays}", f'holidays = ["{date.today() + timedelta(days=40)}"]')
    assert "every date is past" not in _check(tmp_path, ahead).stdout


@pytest.mark.parametrize(
    ("note", "verdict", "says"),
    [
        ("{% if contact.referred_by %}Thank {{ contact.referred_by }}.{% endif %}", 0, "ok:"),
        ("Ask about {{ contact.hot_buttons }}.", 0, "needs the contact field 'hot_buttons'"),
        ("Call {{ contact.first_name + 1 }}.", 1, "step 'call': hello/call note:"),
    ],
)
def test_check_renders_every_step_for_a_contact_with_only_an_email(
    tmp_path: Path, note: str, verdict: int, says: str
) -> None:
    result = _check(tmp_path, _one_campaign(tmp_path, note).replace("{holidays}", ""))
    assert result.returncode == verdict, result.stdout + result.stderr
    assert says in result.stdout
    assert "Traceback" not in result.stderr


TEAM = """\
[dripd]
database = "sqlite:///dripd.db"
campaigns = "campaigns"
timezone = "Europe/Berlin"
holidays = ["US"]

[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@example.com"

[[reps]]
id = "anna"
name = "Anna Berg"
email = "anna@example.com"
holidays = ["DE-BY"]
"""
NEXT_DAY = """\
name = "Next day"
send_window = "mon-fri 09:00-17:00"

[[steps]]
id = "note"
kind = "email"
wait = "1 business day"
subject = "Hello"
body = "Hello {{ contact.first_name }}"
"""


@pytest.mark.own_clock
def test_each_reps_contacts_follow_that_reps_holidays_in_a_year_no_file_names(
    tmp_path: Path,
) -> None:
    """Epiphany (6 January) is a holiday in Bavaria, not in the US: Anna's contact waits."""
    year = next(y for y in range(date.today().year + 4, date.today().year + 20)
                if date(y, 1, 6).weekday() in (1, 2, 3))  # fmt: skip
    berlin = ZoneInfo("Europe/Berlin")
    quick = QuickStart(tmp_path / "team", datetime(year, 1, 5, 12, 0, tzinfo=berlin))
    (quick.folder / "config.toml").write_text(TEAM, encoding="utf-8")
    shutil.rmtree(quick.folder / "campaigns")
    (quick.folder / "campaigns").mkdir()
    (quick.folder / "campaigns" / "next-day.toml").write_text(NEXT_DAY, encoding="utf-8")
    (quick.folder / "team.csv").write_text(
        "email,first_name,owner\nus@example.org,Uma,mike\nde@example.org,Dirk,anna\n",
        encoding="utf-8",
    )
    quick.run("contacts", "import", "team.csv", "--enroll", "next-day")
    plan = json.loads(quick.run("schedule", "--days", "10", "--json"))["items"]
    due = {i["contact"]: datetime.fromisoformat(i["local"]).date() for i in plan}
    assert due == {"us@example.org": date(year, 1, 6), "de@example.org": date(year, 1, 7)}
