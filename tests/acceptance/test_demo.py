"""`dripd demo` as a newcomer runs it: a simulated week, told as it happens, under a minute."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date, datetime
from email import message_from_bytes, policy
from pathlib import Path

import dates
import pytest

from dripd.cli import demo  # the demo's own simulated week: its dates are the demo's data

DRIPD = str(Path(sys.executable).with_name("dripd"))


def _demo(folder: Path, *, clock: datetime | None = None) -> str:
    """`dripd demo --out FOLDER`'s story; with `clock`, the process's clock starts there."""
    command = [DRIPD, "demo", "--out", str(folder)]
    if clock is not None:
        command = [_faketime(), "-f", f"@{clock:%Y-%m-%d %H:%M:%S}", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKETIME", "LD_PRELOAD"))}
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    return run.stdout


def _faketime() -> str:
    found = shutil.which("faketime")
    if found is None:  # ./dev test installs Debian's faketime: missing is a failure, not a skip
        pytest.fail("faketime is not installed (Debian package faketime; ./dev test installs it)")
    return found


def test_the_demo_shows_the_whole_loop_in_under_a_minute(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    started = time.monotonic()
    story = _demo(folder)
    seconds = time.monotonic() - started
    assert seconds < 60, seconds

    # Emails go out; a reply stops a sequence; an auto-reply doesn't; a bounce; an unsubscribe.
    assert "sent    → ann.lee@acme.example: Thank you for your time, Ann" in story
    assert "ann.lee@acme.example: replied: sequence stopped" in story
    assert f"bob.stone@stone.example: out of office (back {demo.BACK})" in story
    assert "nothing stops" in story
    assert "sent    → bob.stone@stone.example: Re: Thank you for your time, Bob" in story
    assert "carl.diaz@gone.example: bounced: every sequence stopped" in story
    assert "dora.eve@evco.example: unsubscribed: every sequence stopped" in story
    # The digest arrives and the rep's `done` is carried out and confirmed.
    assert "digest  → mike: Your day, Wed 2 Dec: 2 cards" in story
    assert 'mike answers the digest: "done 1 2"' in story
    assert "dripd carried out 1 of 1 line" in story and "marked done" in story
    assert "The pipeline after a week:" in story
    # Every note and email was filled in: the shipped campaigns work for any contact.
    assert "could not be filled in" not in story
    for path in folder.glob("*/*.eml"):
        assert b"could not be filled in" not in path.read_bytes(), path.name

    status = subprocess.run(
        [DRIPD, "--config", str(folder / "config.toml"), "status", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert summary["stages"]["lead"] == 1
    assert summary["statuses"] == {"active": 3, "bounced": 1, "unsubscribed": 1}
    thank_you = next(s for s in summary["steps"] if s["step"] == "thank-you")
    assert (thank_you["sent"], thank_you["replied"], thank_you["bounced"]) == (5, 1, 1)

    # The emails it produced are files a mail client opens.
    sent = sorted((folder / "sent").glob("*.eml"))
    assert len(sent) >= 10
    for path in sent:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message["Message-ID"] and message.get_body(("plain",)) is not None
    digests = [p for p in sent if "your-day" in p.name]
    assert digests and all("to-mike-example-com" in p.name for p in digests)


def _awkward_days(today: date) -> list[datetime]:
    """Clocks years ahead of `today`, on days that break date code: computed, never literal.

    29 February, the day New York's clocks spring forward, the day Europe's
    fall back, and the last seconds of 31 December.
    """
    leap = dates.leap_day(date(today.year + 2, 1, 1))
    new_york = dates.dst_start(today.year + 3, dates.NY)
    europe = dates.dst_end(today.year + 5, dates.BERLIN)
    return [
        datetime.combine(leap, datetime.min.time()).replace(hour=12),
        datetime.combine(new_york, datetime.min.time()).replace(hour=7),  # 03:00 in New York
        datetime.combine(europe, datetime.min.time()).replace(hour=1),  # 02:00 → 02:00 again
        datetime(today.year + 8, 12, 31, 23, 59, 30),
    ]


def _same_story(story: str) -> str:
    """The story without what differs between two runs: ports and the folder."""
    return re.sub(r"127\.0\.0\.1:\d+|/\S*/demo-\w+", "…", story)


@pytest.mark.own_clock
def test_the_demo_tells_the_same_story_whatever_the_date(tmp_path: Path) -> None:
    """The week is the demo's own: a clock years ahead, on awkward days, changes nothing."""
    today = date.today()
    reference = _same_story(_demo(tmp_path / "demo-now"))
    for clock in _awkward_days(today):
        story = _same_story(_demo(tmp_path / f"demo-{clock:%Y%m%d}", clock=clock))
        assert story == reference, f"the story changed with the clock at {clock}"
        assert f"out of office (back {demo.BACK})" in story, clock
